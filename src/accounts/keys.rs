//! The life of a single-use key (reset, invitation, verification): what makes one unusable.

use crate::db::Timestamp;
use crate::store::one_time_keys::OneTimeKey;

/// Why a presented key cannot be used. `NotFound` is also what a key of another purpose gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("no such key")]
    NotFound,
    #[error("the key was already used")]
    Used,
    #[error("the key was replaced or revoked")]
    Revoked,
    #[error("the key has expired")]
    Expired,
}

/// Whether `key` can be used at `now`.
pub fn check(key: &OneTimeKey, now: Timestamp) -> Result<(), KeyProblem> {
    if key.used_at.is_some() {
        Err(KeyProblem::Used)
    } else if key.revoked_at.is_some() {
        Err(KeyProblem::Revoked)
    } else if now >= key.expires_at {
        Err(KeyProblem::Expired)
    } else {
        Ok(())
    }
}

/// Whether a presented key is even worth hashing and looking up.
pub fn plausible(presented: &str) -> bool {
    !presented.is_empty()
        && presented.len() <= 128
        && presented
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use uuid::Uuid;

    fn key(created: Timestamp) -> OneTimeKey {
        OneTimeKey {
            id: Uuid::nil(),
            purpose: "password_reset".into(),
            hash: vec![],
            user_id: None,
            business_id: None,
            email: None,
            role: None,
            created_by: None,
            failed_attempts: 0,
            created_at: created,
            expires_at: created.plus(Duration::hours(1)),
            used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_key_works_until_it_expires_is_used_or_is_revoked() {
        let t0 = Timestamp::from_micros(1_700_000_000_000_000).expect("valid");
        let k = key(t0);
        assert_eq!(check(&k, t0), Ok(()));
        assert_eq!(check(&k, t0.plus(Duration::minutes(59))), Ok(()));
        assert_eq!(
            check(&k, t0.plus(Duration::hours(1))),
            Err(KeyProblem::Expired)
        );
        let used = OneTimeKey {
            used_at: Some(t0),
            ..k.clone()
        };
        assert_eq!(check(&used, t0), Err(KeyProblem::Used));
        let revoked = OneTimeKey {
            revoked_at: Some(t0),
            ..k
        };
        assert_eq!(check(&revoked, t0), Err(KeyProblem::Revoked));
    }

    #[test]
    fn only_url_safe_keys_are_looked_up() {
        assert!(plausible("abcDEF123-_"));
        assert!(!plausible(""));
        assert!(!plausible("a b"));
        assert!(!plausible("é"));
        assert!(!plausible("a\u{0}"));
        assert!(!plausible(&"a".repeat(129)));
    }
}
