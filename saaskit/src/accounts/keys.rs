//! The life of a single-use key (reset, invitation, verification): what makes one unusable.

use uuid::Uuid;

use crate::db::{Conn, Timestamp, Tx};
use crate::secret::NewSecret;
use crate::store::one_time_keys::{self, OneTimeKey};
use crate::store::users::User;

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

/// The key of `purpose` that `presented` is, if it can be used at `now`; a key that is not
/// even plausible is not looked up. Callers write `find_usable(…).await??`.
pub async fn find_usable(
    c: Conn<'_>,
    purpose: &str,
    presented: &str,
    now: Timestamp,
) -> sqlx::Result<Result<OneTimeKey, KeyProblem>> {
    if !plausible(presented) {
        return Ok(Err(KeyProblem::NotFound));
    }
    let hash = crate::secret::digest(presented);
    Ok(
        match one_time_keys::find_by_hash(c, purpose, &hash).await? {
            Some(key) => check(&key, now).map(|()| key),
            None => Err(KeyProblem::NotFound),
        },
    )
}

/// Mints a key of `purpose` for `user` (reset, verification), valid for `lifetime`, on the
/// caller's transaction. The user's earlier keys of that purpose die: only the newest mailed link
/// works. Returns the secret to put in the link.
pub async fn mint_for_user(
    tx: &mut Tx,
    purpose: &str,
    user: &User,
    lifetime: chrono::Duration,
    now: Timestamp,
) -> sqlx::Result<NewSecret> {
    one_time_keys::revoke_for_user(tx.conn(), user.id, purpose, now).await?;
    let secret = crate::secret::generate("");
    one_time_keys::insert(
        tx.conn(),
        &OneTimeKey {
            id: Uuid::now_v7(),
            purpose: purpose.to_owned(),
            hash: secret.hash.clone(),
            user_id: Some(user.id),
            business_id: None,
            // The address the key is for: once the account has another, it proves nothing.
            email: Some(user.email_key.clone()),
            role: None,
            created_by: None,
            failed_attempts: 0,
            created_at: now,
            expires_at: now.plus(lifetime),
            used_at: None,
            revoked_at: None,
        },
    )
    .await?;
    Ok(secret)
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
