//! Logging, set up once at start: human-readable text by default, JSON lines on request.
//! The level comes from `RUST_LOG` (default `info`).
//!
//! Lines are written by a thread of their own (`tracing-appender`'s non-blocking writer) into a
//! buffer that goes to stderr whenever the queue runs empty: a request formats its line and
//! hands it over, and a burst of requests becomes a few large writes instead of one system call
//! (and one stderr lock) each. None is dropped while the process runs: when the queue is full (a
//! stalled terminal or collector), writers wait for it, as they did before. The [`LogGuard`]
//! writes out what is queued when it is dropped, at the end of `main` (tracing-appender gives
//! that a second; lines queued when the process is killed are lost).
//!
//! Each answered request logs one INFO line under the target `saaskit::request`, as
//! `SAASKIT_REQUEST_LOG` says: `all` (the default), `off`, or `1/N` (one request in N).
//! Whatever the setting, an answer with a server error logs an ERROR line, and warnings and
//! errors logged while handling keep the request's id, method and route.
//! `RUST_LOG=info,saaskit::request=off` silences the INFO lines too.
//!
//! The request a line belongs to is not a `tracing` span: a span costs every request a slot in
//! the registry, its fields formatted into a string at creation and a dispatch at each poll,
//! whether or not anything is logged inside it. The request is a task-local
//! ([`RequestScope`], set by the request path) that [`Lines`] reads when, and only when, a line
//! is written, and prints where the span was (`request{method=… route=… request_id=…}:` in text,
//! `"span"` in JSON), so the lines read as before.

mod format;

pub use format::Lines;

use std::sync::atomic::{AtomicU64, Ordering};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Keeps the log writer's thread running; dropping it flushes every queued line.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _worker: Option<WorkerGuard>,
}

/// Lines that may wait for the writer thread before a logging request waits in turn.
const QUEUED_LINES: usize = 64 * 1024;

pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    // Colours for a person at a terminal only: a log file or collector would get escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("saaskit-log")
        // Written out when the writer thread runs out of queued lines (it flushes then) or the
        // buffer fills.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    // A second init (tests, embedding) keeps the first subscriber; its guard is then not needed.
    let installed = match format {
        LogFormat::Text => builder.event_format(Lines::text()).try_init(),
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(Lines::json())
            .try_init(),
    };
    LogGuard {
        _worker: installed.is_ok().then_some(guard),
    }
}

/// Which answered requests get their INFO line (`SAASKIT_REQUEST_LOG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestLog {
    All,
    Off,
    /// One request in N (and every server error).
    OneIn(u64),
}

impl std::str::FromStr for RequestLog {
    type Err = String;

    fn from_str(s: &str) -> Result<RequestLog, String> {
        let s = s.trim();
        match s {
            "all" => return Ok(RequestLog::All),
            "off" => return Ok(RequestLog::Off),
            _ => {}
        }
        s.strip_prefix("1/")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n >= 1)
            .map(|n| {
                if n == 1 {
                    RequestLog::All
                } else {
                    RequestLog::OneIn(n)
                }
            })
            .ok_or_else(|| format!("expected all, off or 1/N (e.g. 1/100), got {s:?}"))
    }
}

impl std::fmt::Display for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestLog::All => f.write_str("all"),
            RequestLog::Off => f.write_str("off"),
            RequestLog::OneIn(n) => write!(f, "1/{n}"),
        }
    }
}

/// Decides, request by request, whether the request line is written.
#[derive(Debug)]
pub struct RequestSampler {
    policy: RequestLog,
    seen: AtomicU64,
}

impl RequestSampler {
    pub fn new(policy: RequestLog) -> RequestSampler {
        RequestSampler {
            policy,
            seen: AtomicU64::new(0),
        }
    }

    /// Whether an answer with `status` is logged.
    pub fn logs(&self, status: u16) -> bool {
        match self.policy {
            RequestLog::All => true,
            RequestLog::Off => false,
            RequestLog::OneIn(n) => {
                status >= 500 || self.seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(n)
            }
        }
    }
}

tokio::task_local! {
    static REQUEST: RequestScope;
}

/// The request a task is handling: what every line it logs names, and where the audit events
/// it records come from.
#[derive(Clone)]
pub struct RequestScope {
    pub method: axum::http::Method,
    /// The route's template (`/api/v1/keys/{id}`), or [`crate::metrics::UNMATCHED`].
    pub route: RouteName,
    pub request_id: axum::http::HeaderValue,
    pub origin: crate::accounts::Origin,
}

/// A route template: the router's own (shared, nothing copied) or a fixed name.
#[derive(Clone)]
pub enum RouteName {
    Matched(axum::extract::MatchedPath),
    Fixed(&'static str),
}

impl RouteName {
    pub fn as_str(&self) -> &str {
        match self {
            RouteName::Matched(path) => path.as_str(),
            RouteName::Fixed(name) => name,
        }
    }
}

impl RequestScope {
    /// Runs `f` as the handling of this request; gives the scope back with its output.
    pub async fn run<F: std::future::Future>(self, f: F) -> (F::Output, RequestScope) {
        let running = REQUEST.scope(self, f);
        tokio::pin!(running);
        let output = (&mut running).await;
        let scope = running
            .as_mut()
            .take_value()
            .unwrap_or_else(|| unreachable!("the scope stays until taken"));
        (output, scope)
    }

    /// Runs `f` (which may log) as part of this request.
    pub fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        REQUEST.sync_scope(self, f)
    }

    /// What `f` makes of the request this task handles, if it handles one.
    pub fn with_current<R>(f: impl FnOnce(&RequestScope) -> R) -> Option<R> {
        REQUEST.try_with(f).ok()
    }

    /// The request this task handles, to hand on to a task it spawns.
    pub fn current() -> Option<RequestScope> {
        RequestScope::with_current(RequestScope::clone)
    }
}

/// Runs `f` in `scope` when there is one (a task spawned by a request keeps naming it).
pub async fn within<F: std::future::Future>(scope: Option<RequestScope>, f: F) -> F::Output {
    match scope {
        Some(scope) => REQUEST.scope(scope, f).await,
        None => f.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_log_settings_parse_and_sample() {
        assert_eq!("all".parse(), Ok(RequestLog::All));
        assert_eq!("off".parse(), Ok(RequestLog::Off));
        assert_eq!("1/100".parse(), Ok(RequestLog::OneIn(100)));
        assert_eq!("1/1".parse(), Ok(RequestLog::All));
        for bad in ["", "1/0", "1/x", "some", "2/3"] {
            assert!(bad.parse::<RequestLog>().is_err(), "{bad:?}");
        }
        let sampler = RequestSampler::new(RequestLog::OneIn(10));
        let logged = (0..100).filter(|_| sampler.logs(200)).count();
        assert_eq!(logged, 10);
        assert!((0..5).all(|_| sampler.logs(503)), "server errors always");
        let off = RequestSampler::new(RequestLog::Off);
        assert!(!off.logs(200) && !off.logs(500));
        assert!(RequestSampler::new(RequestLog::All).logs(200));
    }
}
