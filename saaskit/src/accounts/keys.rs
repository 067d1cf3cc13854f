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
    mint_another(tx, purpose, user, lifetime, now).await
}

/// Mints a key of `purpose` for `user`, valid for `lifetime`, leaving their earlier keys of that
/// purpose alone (a login's second step: two devices may be signing in at once).
pub async fn mint_another(
    tx: &mut Tx,
    purpose: &str,
    user: &User,
    lifetime: chrono::Duration,
    now: Timestamp,
) -> sqlx::Result<NewSecret> {
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

/// A key mailed on request to whoever owns an address (a password reset, a magic link): how it
/// is limited, where its link leads, and the mail that carries it.
pub struct MailedKey {
    pub purpose: &'static str,
    pub lifetime: chrono::Duration,
    /// The rate-limit buckets: per client address, and per email asked for.
    pub ip_bucket: &'static str,
    pub email_bucket: &'static str,
    /// The page the link opens, `/reset-password`: `?key=` follows.
    pub path: &'static str,
    /// The mail, from the account and the link.
    pub render: fn(&User, &str) -> anyhow::Result<crate::mail::Rendered>,
    /// For the log: `password reset`, `magic link`.
    pub what: &'static str,
}

/// Mails a key of `kind` if `email` belongs to an active account, and does nothing otherwise:
/// the caller answers the same either way. Limited per client address and per email (known or
/// not: the answer must not tell, with the reset limits' rules). Callers write `.await??`.
pub async fn request_mailed(
    app: &crate::app::AppState,
    kind: &'static MailedKey,
    email: &str,
    client: &super::ClientInfo,
) -> anyhow::Result<Result<(), crate::ratelimit::Limited>> {
    use crate::ratelimit;
    let c = &app.config;
    let ip = ratelimit::address_bucket(kind.ip_bucket, client.ip.as_deref());
    if let Err(limited) = ratelimit::hit(app, c.rate_limit_reset_ip, ip).await? {
        return Ok(Err(limited));
    }
    if email.len() > 254 || email.chars().any(char::is_control) {
        return Ok(Ok(()));
    }
    let key = crate::domain::Email::key_of(email);
    let by_email = ratelimit::bucket(kind.email_bucket, &key);
    if let Err(limited) = ratelimit::hit(app, c.rate_limit_reset_account, by_email).await? {
        return Ok(Err(limited));
    }
    // Answered before the work: looking the account up, minting a key and queuing the mail
    // take longer for a registered address than for an unknown one, and the answer's timing
    // must not tell which (measured in the benchmark harness, `bench … http --targets
    // reset-timing`). Everything up to here costs the same for both.
    let app = app.clone();
    // The work goes on after the answer, still as this request: its lines name the request,
    // and its audit events the client.
    let request = crate::telemetry::RequestScope::current();
    app.background
        .clone()
        .spawn(crate::telemetry::within(request, async move {
            if let Err(err) = mail_key(&app, kind, &key).await {
                tracing::error!(error = format!("{err:#}"), "{} request failed", kind.what);
            }
        }));
    Ok(Ok(()))
}

async fn mail_key(app: &crate::app::App, kind: &MailedKey, key: &str) -> anyhow::Result<()> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let Some(user) = crate::store::users::find_by_email_key(tx.conn(), key).await? else {
        return Ok(());
    };
    if !user.is_active {
        return Ok(());
    }
    // Only the newest link works: lock the user so concurrent requests revoke in turn.
    crate::store::users::lock(tx.conn(), user.id).await?;
    let secret = mint_for_user(&mut tx, kind.purpose, &user, kind.lifetime, now).await?;
    let link = format!(
        "{}{}?key={}",
        app.config.public_base(),
        kind.path,
        secret.clear
    );
    let rendered = (kind.render)(&user, &link)?;
    crate::mail::enqueue(&mut tx, &app.mailer, &user.email, rendered, now).await?;
    tx.commit().await?;
    app.mail_queued.notify_one();
    tracing::info!(user_id = %user.id, "{} requested", kind.what);
    Ok(())
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
