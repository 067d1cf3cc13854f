//! Email verification: every new account is mailed a single-use link (valid
//! `SAASKIT_EMAIL_VERIFICATION_TTL_HOURS`); using it records that its owner reads that mailbox
//! (`users.email_verified_at`). A logged-in person may ask for a new link, which kills the older
//! ones. A confirmed password reset proves the address too (see [`super::reset`]).
//!
//! With `SAASKIT_REQUIRE_VERIFIED_EMAIL`, an unverified person gets no session: signup and
//! invitation acceptance answer without one, and login refuses them once the password is right.

use chrono::Duration;
use thiserror::Error;

use super::keys::{self, KeyProblem};
use super::{ClientInfo, Principal};
use crate::app::App;
use crate::db::{Timestamp, Tx};
use crate::mail;
use crate::ratelimit;
use crate::store::one_time_keys;
use crate::store::users::{self, User};

pub const PURPOSE: &str = "email_verification";

/// Mints a verification key for `user` and queues the mail with its link, in the caller's
/// transaction; the user's older verification keys die. The caller notifies the mail worker
/// (`app.mail_queued`) after committing.
pub async fn issue(app: &App, tx: &mut Tx, user: &User, now: Timestamp) -> anyhow::Result<()> {
    let valid_hours = i64::from(app.config.email_verification_ttl_hours);
    let secret = keys::mint_for_user(tx, PURPOSE, user, Duration::hours(valid_hours), now).await?;
    let link = format!(
        "{}/verify-email?key={}",
        app.config.public_base(),
        secret.clear
    );
    let rendered = mail::EmailVerification {
        first_name: &user.first_name,
        email: &user.email,
        valid_hours: &valid_hours.to_string(),
        link: &link,
    }
    .render()?;
    mail::enqueue(tx, &app.mailer, &user.email, rendered, now).await?;
    Ok(())
}

/// Whether a session may be handed to `user` (`SAASKIT_REQUIRE_VERIFIED_EMAIL`).
pub fn may_open_session(app: &App, user: &User) -> bool {
    !app.config.require_verified_email || user.email_verified_at.is_some()
}

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error(transparent)]
    Key(#[from] KeyProblem),
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for VerifyError {
    fn from(err: sqlx::Error) -> Self {
        VerifyError::Unexpected(err.into())
    }
}

/// Uses a verification key: the user's email is verified from now on. Failed attempts count
/// against the client's address like every mailed key's.
pub async fn verify(app: &App, presented: &str, client: &ClientInfo) -> Result<User, VerifyError> {
    let attempt = ratelimit::key_attempt(app, client).await??;
    let user = verify_key(app, presented).await?;
    attempt.refund(app).await?;
    Ok(user)
}

async fn verify_key(app: &App, presented: &str) -> Result<User, VerifyError> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let key = keys::find_usable(tx.conn(), PURPOSE, presented, now).await??;
    let user_id = key
        .user_id
        .ok_or_else(|| anyhow::anyhow!("verification key {} has no user", key.id))?;
    let mut user = users::find(tx.conn(), user_id)
        .await?
        .filter(|u| u.is_active && key.email.as_deref() == Some(u.email_key.as_str()))
        .ok_or(KeyProblem::NotFound)?;
    if !one_time_keys::consume(tx.conn(), key.id, now).await? {
        return Err(KeyProblem::Used.into());
    }
    if users::mark_email_verified(tx.conn(), user.id, now).await? {
        user.email_verified_at = Some(now);
        let event = crate::audit::Event::new(
            crate::audit::Action::EmailVerified,
            crate::audit::Actor::User(user.id),
        )
        .target("user", user.id);
        crate::audit::record(tx.conn(), now, event).await?;
    }
    // Not quiet: `email_verified` is part of the cached auth context (`me`).
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "email verified");
    Ok(user)
}

#[derive(Debug, Error)]
pub enum ResendError {
    /// An API key or a bot: nobody reads a mailbox behind it.
    #[error("only people verify an email address")]
    NotAPerson,
    #[error("the email address is already verified")]
    AlreadyVerified,
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ResendError {
    fn from(err: sqlx::Error) -> Self {
        ResendError::Unexpected(err.into())
    }
}

/// Mails the caller a new verification link; the previous ones stop working. Limited per
/// account (`SAASKIT_RATE_LIMIT_VERIFY_ACCOUNT`).
pub async fn resend(app: &App, caller: &Principal) -> Result<User, ResendError> {
    let user_id = caller.person().ok_or(ResendError::NotAPerson)?.user_id;
    let now = app.clock.now();
    let user = {
        let mut tx = app.db.read().await?;
        users::find(tx.conn(), user_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("user {user_id} of a live session vanished"))?
    };
    if user.email_verified_at.is_some() {
        return Err(ResendError::AlreadyVerified);
    }
    ratelimit::hit(
        app,
        app.config.rate_limit_verify_account,
        ratelimit::bucket("verify", &user_id.to_string()),
    )
    .await??;
    let mut tx = app.db.begin().await?;
    // Concurrent requests revoke in turn: one live key remains.
    users::lock(tx.conn(), user.id).await?;
    let user = users::find(tx.conn(), user.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("user {user_id} vanished while resending"))?;
    if user.email_verified_at.is_some() {
        return Err(ResendError::AlreadyVerified);
    }
    issue(app, &mut tx, &user, now).await?;
    // Only new rows and revoked keys: no auth context depends on them.
    tx.commit_quietly().await?;
    app.mail_queued.notify_one();
    tracing::info!(user_id = %user.id, "email verification mailed again");
    Ok(user)
}
