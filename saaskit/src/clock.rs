//! The only source of "now". Services ask the clock; tests and `saaskit renew --at` set it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use crate::db::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(Utc::now())
    }
}

/// A clock that only moves when told to: for tests and for simulating time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(Timestamp::from_datetime(start))),
        }
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.lock() = Timestamp::from_datetime(to);
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        *now = now.plus(by);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        // A poisoned lock only means a test panicked while holding it; the value is still sound.
        self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.lock()
    }
}
