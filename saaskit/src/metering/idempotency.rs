//! Retry-safe metered writes. A client sends `Idempotency-Key: <its own unique string>`; the
//! first request with a key runs and, if it succeeds, its response is stored in the same
//! transaction as the write. A retry with the same key within 24 hours gets that response back
//! and consumes nothing. Refusals (4xx) are not stored, so a retry after one is judged afresh.
//! A key reused for a different request is refused.

use chrono::Duration;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::App;
use crate::db::Tx;
use crate::store::usage;

/// How long a key is remembered.
pub const KEY_LIFETIME_HOURS: i64 = 24;

/// A client's idempotency key: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Option<IdempotencyKey> {
        let ok = (1..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| IdempotencyKey(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What identifies a request for a key: its route and its parsed body.
pub fn fingerprint(route: &str, body: &impl Serialize) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(body).unwrap_or_default());
    h.finalize().to_vec()
}

/// The key was used before for a different request.
#[derive(Debug, Clone, Copy)]
pub struct KeyReused;

/// A response to send: fresh, or the stored one replayed.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: u16,
    /// JSON.
    pub body: String,
    pub replayed: bool,
}

/// Runs `work` in a transaction, under `key` if the client sent one, and returns its result
/// serialized with `status`. Commits only if `work` succeeds.
pub async fn run<T, E>(
    app: &App,
    business_id: Uuid,
    key: Option<&IdempotencyKey>,
    fingerprint: &[u8],
    status: u16,
    work: impl AsyncFnOnce(&mut Tx) -> Result<T, E>,
) -> Result<Stored, E>
where
    T: Serialize,
    E: From<sqlx::Error> + From<KeyReused> + From<anyhow::Error>,
{
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    if let Some(key) = key {
        let forget_before = now.plus(Duration::hours(-KEY_LIFETIME_HOURS));
        usage::expire_idempotency_keys(
            tx.conn(),
            Some(business_id),
            Some(key.as_str()),
            forget_before,
        )
        .await?;
        let claimed =
            usage::claim_idempotency_key(tx.conn(), business_id, key.as_str(), fingerprint, now)
                .await?;
        if !claimed {
            let stored = usage::find_idempotency_key(tx.conn(), business_id, key.as_str())
                .await?
                .ok_or_else(|| anyhow::anyhow!("idempotency key vanished while claimed"))?;
            return replay(fingerprint, &stored.fingerprint, stored.status, stored.body);
        }
    }
    let value = work(&mut tx).await?;
    let body = serde_json::to_string(&value)
        .map_err(|e| anyhow::anyhow!("serializing a metered response: {e}"))?;
    if let Some(key) = key {
        usage::complete_idempotency_key(
            tx.conn(),
            business_id,
            key.as_str(),
            i64::from(status),
            &body,
        )
        .await?;
    }
    // Metered work writes counters, idempotency keys and the product's own rows, none of
    // which is part of an auth context; committing quietly keeps the auth cache warm. Work
    // that changes tokens, members, subscriptions or plans does not belong in here.
    tx.commit_quietly().await?;
    Ok(Stored {
        status,
        body,
        replayed: false,
    })
}

/// The answer to a request whose key was already used: the stored response if the request is
/// the same one, [`KeyReused`] if not.
pub fn replay<E>(
    fingerprint: &[u8],
    stored_fingerprint: &[u8],
    stored_status: i64,
    stored_body: String,
) -> Result<Stored, E>
where
    E: From<KeyReused> + From<anyhow::Error>,
{
    if stored_fingerprint != fingerprint {
        return Err(KeyReused.into());
    }
    let status = u16::try_from(stored_status)
        .ok()
        .filter(|s| (200..300).contains(s))
        .ok_or_else(|| anyhow::anyhow!("idempotency key stored without a response"))?;
    Ok(Stored {
        status,
        body: stored_body,
        replayed: true,
    })
}

/// Forgets every key older than the lifetime; run by the background jobs.
pub async fn purge_expired(app: &App) -> anyhow::Result<u64> {
    let before = app.clock.now().plus(Duration::hours(-KEY_LIFETIME_HOURS));
    let mut tx = app.db.begin().await?;
    let n = usage::expire_idempotency_keys(tx.conn(), None, None, before).await?;
    tx.commit_quietly().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(IdempotencyKey::parse("a").is_some());
        assert!(IdempotencyKey::parse("8e03978e-40d5-43e8-bc93-6894a57f9324").is_some());
        assert!(IdempotencyKey::parse("").is_none());
        assert!(IdempotencyKey::parse("has space").is_none());
        assert!(IdempotencyKey::parse("é").is_none());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_none());
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let a = fingerprint("/recordings", &serde_json::json!({"x": 1}));
        assert_eq!(a, fingerprint("/recordings", &serde_json::json!({"x": 1})));
        assert_ne!(a, fingerprint("/recordings", &serde_json::json!({"x": 2})));
        assert_ne!(a, fingerprint("/usage", &serde_json::json!({"x": 1})));
    }
}
