//! A person's sessions: listing their live tokens, revoking one or all the others, and changing
//! the password (which ends every other session). Each revocation commits with
//! [`Tx::commit`](crate::db::Tx::commit), so the revoked tokens stop working at once on this
//! replica and within the auth cache's TTL on the others.

use thiserror::Error;
use uuid::Uuid;

use super::{Principal, idle_before};
use crate::app::App;
use crate::db::Timestamp;
use crate::domain::{Email, Invalid, Password};
use crate::store::tokens::{self, SessionRow};
use crate::store::users;

#[derive(Debug, Error)]
pub enum SessionError {
    /// The caller is not a person: an API key has no sessions, a bot no password.
    #[error("only people have sessions and passwords")]
    NotAPerson,
    #[error("no such session")]
    NotFound,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("the new password does not meet the policy")]
    Password(Invalid),
    #[error(transparent)]
    Limited(#[from] crate::ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SessionError {
    fn from(err: sqlx::Error) -> Self {
        SessionError::Unexpected(err.into())
    }
}

/// One live token of the caller, with when it lapses.
#[derive(Debug, Clone)]
pub struct SessionListing {
    pub row: SessionRow,
    /// The token the request came with.
    pub current: bool,
    /// When it lapses if unused (sessions only).
    pub idle_expires_at: Option<Timestamp>,
}

fn user_of(principal: &Principal) -> Result<Uuid, SessionError> {
    principal.user_id().ok_or(SessionError::NotAPerson)
}

/// The caller's live sessions (and, for a bot, its tokens), most recently used first.
pub async fn list(app: &App, principal: &Principal) -> Result<Vec<SessionListing>, SessionError> {
    let user = user_of(principal)?;
    let now = app.clock.now();
    let idle = chrono::Duration::hours(i64::from(app.config.session_idle_hours));
    let mut tx = app.db.read().await?;
    let rows = tokens::live_of_user(tx.conn(), user, now, idle_before(app, now)).await?;
    Ok(rows
        .into_iter()
        .map(|row| SessionListing {
            current: row.id == principal.token_id,
            idle_expires_at: (row.kind == "session")
                .then(|| row.last_used_at.unwrap_or(row.created_at).plus(idle)),
            row,
        })
        .collect())
}

/// Revokes one of the caller's sessions (the current one included: that is a logout).
pub async fn revoke(app: &App, principal: &Principal, id: Uuid) -> Result<(), SessionError> {
    let user = user_of(principal)?;
    let mut tx = app.db.begin().await?;
    if !tokens::revoke_of_user(tx.conn(), user, id, app.clock.now(), "session_revoked").await? {
        return Err(SessionError::NotFound);
    }
    tx.commit().await?;
    Ok(())
}

/// Revokes every session of the caller but the current one; returns how many.
pub async fn revoke_others(app: &App, principal: &Principal) -> Result<u64, SessionError> {
    let user = user_of(principal)?;
    let mut tx = app.db.begin().await?;
    let n = tokens::revoke_others_of_user(
        tx.conn(),
        user,
        principal.token_id,
        app.clock.now(),
        "session_revoked",
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// Changes the caller's password after checking the current one, and ends every other session
/// (the current one stays). Returns how many sessions ended.
pub async fn change_password(
    app: &App,
    principal: &Principal,
    current: &str,
    new: &str,
) -> Result<u64, SessionError> {
    let user = user_of(principal)?;
    let member = principal.member.as_ref().ok_or(SessionError::NotAPerson)?;
    if member.role == crate::domain::Role::Bot {
        return Err(SessionError::NotAPerson);
    }
    let creds = {
        let mut tx = app.db.read().await?;
        users::find_credentials_by_email_key(tx.conn(), &Email::key_of(&member.email)).await?
    }
    .filter(|c| c.user.id == user)
    .ok_or(SessionError::NotAPerson)?;
    // Whoever holds a stolen session may not guess the password at leisure: wrong current
    // passwords count like failed logins to the account.
    let attempt = crate::ratelimit::hit(
        app,
        app.config.rate_limit_login_account,
        crate::ratelimit::bucket("password-change", &user.to_string()),
    )
    .await??;
    if !app.hasher.verify(current, &creds.password_hash).await? {
        return Err(SessionError::WrongPassword);
    }
    attempt.refund(app).await?;
    let email = Email::parse(&member.email).ok();
    let password = Password::parse(new, email.as_ref()).map_err(SessionError::Password)?;
    let hash = app.hasher.hash(password.expose()).await?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    users::lock(tx.conn(), user).await?;
    users::set_password_hash(tx.conn(), user, &hash, now).await?;
    let ended =
        tokens::revoke_others_of_user(tx.conn(), user, principal.token_id, now, "password_changed")
            .await?;
    tx.commit().await?;
    Ok(ended)
}
