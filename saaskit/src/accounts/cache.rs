//! The auth-context cache: what a token's digest resolved to (the whole [`Principal`] and the
//! current plan), so most requests need no database read to know who is calling.
//!
//! Exact on this replica: an entry is trusted only while no write transaction has committed in
//! this process since it was read (`db::write_generation`), so a logout, revocation, role or
//! plan change made here is seen by the very next request. Writes that cannot change an auth
//! context (a new session, usage counters, the outbox) commit quietly and keep the cache warm.
//! Commits by other replicas (and other processes on one SQLite file, such as the CLI) count
//! as writes here as soon as they are heard of ([`crate::db::changes`]: PostgreSQL
//! LISTEN/NOTIFY, SQLite's `data_version`), within milliseconds; the entry's age, never older
//! than `SAASKIT_AUTH_CACHE_TTL_MS` (default 1,000 ms), is the fallback should a notice be
//! missed.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::db::Timestamp;

use super::Principal;

/// Entries kept at most; past it the cache starts over (a flood of distinct tokens cannot
/// grow memory without bound).
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
pub struct Entry {
    /// With its current plan (`Principal::plan`).
    pub principal: Principal,
    pub token_last_used_at: Option<Timestamp>,
    pub token_expires_at: Option<Timestamp>,
    generation: u64,
    read_at: Timestamp,
}

pub struct AuthCache {
    ttl_micros: i64,
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
}

impl AuthCache {
    pub fn new(ttl_ms: u64) -> Self {
        AuthCache {
            ttl_micros: i64::try_from(ttl_ms.saturating_mul(1000)).unwrap_or(i64::MAX),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        self.ttl_micros > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `hash`, if it is still exact: nothing committed here since it was read,
    /// younger than the TTL, and its token not expired.
    pub fn get(&self, hash: &[u8], now: Timestamp) -> Option<Entry> {
        if !self.enabled() {
            return None;
        }
        let generation = crate::db::write_generation();
        let entries = self.lock();
        let entry = entries.get(hash)?;
        let fresh = entry.generation == generation
            && now.micros().saturating_sub(entry.read_at.micros()) < self.ttl_micros
            && now >= entry.read_at
            && entry.token_expires_at.is_none_or(|t| t > now);
        fresh.then(|| entry.clone())
    }

    /// Remembers what `hash` resolved to, as read from a database state no older than
    /// `generation` (taken before the read).
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        hash: &[u8],
        principal: Principal,
        token_last_used_at: Option<Timestamp>,
        token_expires_at: Option<Timestamp>,
        generation: u64,
        now: Timestamp,
    ) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            hash.to_vec(),
            Entry {
                principal,
                token_last_used_at,
                token_expires_at,
                generation,
                read_at: now,
            },
        );
    }

    /// Records that the token was just used, so the next request does not write it again.
    pub fn touched(&self, hash: &[u8], at: Timestamp) {
        if let Some(entry) = self.lock().get_mut(hash) {
            entry.token_last_used_at = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn principal() -> Principal {
        Principal {
            token_id: Uuid::now_v7(),
            token_kind: "session".into(),
            scopes: crate::domain::Scopes::default(),
            business_id: Uuid::now_v7(),
            business_name: "b".into(),
            business_created_at: at(0),
            business_require_mfa: false,
            member: None,
            subscription: None,
            plan: None,
            me_document: Default::default(),
        }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_micros(1_767_225_600_000_000 + ms * 1000).expect("time")
    }

    #[test]
    fn an_entry_is_served_only_while_exact_and_young() {
        let cache = AuthCache::new(1000);
        let p = principal();
        // Other tests in this process may commit at any moment; retry until a quiet window.
        let served = (0..100).any(|_| {
            let g = crate::db::write_generation();
            cache.put(b"h", p.clone(), None, Some(at(10_000)), g, at(0));
            cache.get(b"h", at(999)).is_some()
        });
        assert!(served, "a fresh entry is served");
        assert!(cache.get(b"h", at(1000)).is_none(), "older than the TTL");
        assert!(cache.get(b"other", at(1)).is_none());

        let g = crate::db::write_generation();
        cache.put(b"h", p.clone(), None, Some(at(10_000)), g, at(0));
        crate::db::note_write();
        assert!(
            cache.get(b"h", at(1)).is_none(),
            "a commit here makes it stale at once"
        );

        let g = crate::db::write_generation();
        cache.put(b"e", p.clone(), None, Some(at(500)), g, at(0));
        assert!(
            cache.get(b"e", at(500)).is_none(),
            "the token itself expired"
        );

        let off = AuthCache::new(0);
        off.put(b"h", p, None, None, crate::db::write_generation(), at(0));
        assert!(
            off.get(b"h", at(0)).is_none(),
            "a TTL of 0 turns the cache off"
        );
    }
}
