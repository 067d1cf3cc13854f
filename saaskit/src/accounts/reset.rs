//! Password reset: a single-use key, valid one hour, mailed to the account's address and never
//! shown in a response. Confirming it sets the new password, ends every other session of the
//! user and opens a new one. It also proves the address: the key went only to its mailbox.

use chrono::Duration;
use thiserror::Error;

use super::keys::{self, KeyProblem};
use super::{ClientInfo, Session, open_session};
use crate::app::App;
use crate::domain::{Email, Invalid, Password};
use crate::mail;
use crate::ratelimit;
use crate::store::one_time_keys;
use crate::store::{members, tokens, users};

pub const PURPOSE: &str = "password_reset";
pub const KEY_LIFETIME: Duration = Duration::hours(1);

/// A reset link, mailed on request.
pub static MAILED: keys::MailedKey = keys::MailedKey {
    purpose: PURPOSE,
    lifetime: KEY_LIFETIME,
    ip_bucket: "reset-ip",
    email_bucket: "reset",
    path: "/reset-password",
    render: |user, link| {
        mail::PasswordReset {
            first_name: &user.first_name,
            email: &user.email,
            link,
        }
        .render()
    },
    what: "password reset",
};

/// Mails a reset link if `email` belongs to an active account; does nothing otherwise. The
/// caller answers the same either way ([`keys::request_mailed`]).
pub async fn request_reset(
    app: &crate::app::AppState,
    email: &str,
    client: &ClientInfo,
) -> Result<(), ResetError> {
    Ok(keys::request_mailed(app, &MAILED, email, client).await??)
}

#[derive(Debug, Error)]
pub enum ResetError {
    #[error(transparent)]
    Key(#[from] KeyProblem),
    #[error("the new password is not acceptable: {}", .0.message)]
    Password(Invalid),
    #[error("the account has no business to open a session for")]
    NoBusiness,
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ResetError {
    fn from(err: sqlx::Error) -> Self {
        ResetError::Unexpected(err.into())
    }
}

/// Sets a new password with a reset key; returns a new session.
pub async fn confirm_reset(
    app: &App,
    presented: &str,
    new_password: &str,
    client: ClientInfo,
) -> Result<Session, ResetError> {
    let attempt = ratelimit::key_attempt(app, &client).await??;
    let session = confirm(app, presented, new_password, client).await?;
    attempt.refund(app).await?;
    Ok(session)
}

/// How many new passwords a reset key may see refused before it dies.
pub const MAX_FAILED_ATTEMPTS: i64 = 5;

async fn confirm(
    app: &App,
    presented: &str,
    new_password: &str,
    client: ClientInfo,
) -> Result<Session, ResetError> {
    let (key, user) = {
        let mut tx = app.db.read().await?;
        let key = keys::find_usable(tx.conn(), PURPOSE, presented, app.clock.now()).await??;
        let user_id = key
            .user_id
            .ok_or_else(|| anyhow::anyhow!("reset key {} has no user", key.id))?;
        let user = users::find(tx.conn(), user_id)
            .await?
            .filter(|u| u.is_active)
            .ok_or(KeyProblem::NotFound)?;
        (key, user)
    };
    let email = Email::parse(&user.email).ok();
    let password = match Password::parse(new_password, email.as_ref()) {
        Ok(password) => password,
        Err(invalid) => {
            // A key refuses only so many passwords: then it dies, and a new one is needed.
            let mut tx = app.db.begin().await?;
            one_time_keys::count_failure(tx.conn(), key.id, MAX_FAILED_ATTEMPTS, app.clock.now())
                .await?;
            tx.commit_quietly().await?;
            return Err(ResetError::Password(invalid));
        }
    };
    let password_hash = app.hasher.hash(password.expose()).await?;

    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    if !one_time_keys::consume(tx.conn(), key.id, now).await? {
        // Used (or expired) between the check and now: look again to say which.
        keys::find_usable(tx.conn(), PURPOSE, presented, now).await??;
        return Err(KeyProblem::Used.into());
    }
    users::set_password_hash(tx.conn(), user.id, &password_hash, now).await?;
    if key.email.as_deref() == Some(user.email_key.as_str()) {
        users::mark_email_verified(tx.conn(), user.id, now).await?;
    }
    tokens::revoke_all_of_user(tx.conn(), user.id, now).await?;
    ratelimit::forget_login_failures(tx.conn(), &user.email_key).await?;
    let business_id = members::default_business_of(tx.conn(), user.id)
        .await?
        .ok_or(ResetError::NoBusiness)?;
    let session = open_session(app, &mut tx, user.id, business_id, now, client).await?;
    crate::audit::record(
        tx.conn(),
        now,
        crate::audit::Event::new(
            crate::audit::Action::PasswordReset,
            crate::audit::Actor::User(user.id),
        )
        .target("user", user.id),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "password reset");
    Ok(session)
}
