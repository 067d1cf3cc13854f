//! Magic links: a single-use key, valid fifteen minutes, mailed to the account's address; opening
//! it (with a POST: the mailed page only shows a button, so mail scanners that fetch links do not
//! use it) is the first factor instead of the password. A person with two-factor sign-in still
//! gives a code after it. It proves the address too: the key went only to its mailbox.

use chrono::Duration;

use super::keys::{self, KeyProblem};
use super::{ClientInfo, LoginError, SignIn};
use crate::app::App;
use crate::domain::Email;
use crate::mail;
use crate::ratelimit;
use crate::store::{one_time_keys, users};

pub const PURPOSE: &str = "magic_link";
pub const KEY_LIFETIME: Duration = Duration::minutes(15);

#[derive(Debug, thiserror::Error)]
pub enum MagicLinkError {
    #[error(transparent)]
    Key(#[from] KeyProblem),
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for MagicLinkError {
    fn from(err: sqlx::Error) -> Self {
        MagicLinkError::Unexpected(err.into())
    }
}

/// Mails a sign-in link if `email` belongs to an active account; does nothing otherwise. The
/// caller answers the same either way. Limited like password resets (per client address and per
/// email, known or not), in buckets of its own.
pub async fn request(
    app: &crate::app::AppState,
    email: &str,
    client: &ClientInfo,
) -> Result<(), MagicLinkError> {
    let c = &app.config;
    ratelimit::hit(
        app,
        c.rate_limit_reset_ip,
        ratelimit::address_bucket("magic-ip", client.ip.as_deref()),
    )
    .await??;
    if email.len() > 254 || email.chars().any(char::is_control) {
        return Ok(());
    }
    let key = Email::key_of(email);
    ratelimit::hit(
        app,
        c.rate_limit_reset_account,
        ratelimit::bucket("magic", &key),
    )
    .await??;
    // Answered before the work, as password resets are: the answer's timing must not tell
    // whether the address is registered.
    let app = app.clone();
    let request = crate::telemetry::RequestScope::current();
    app.background
        .clone()
        .spawn(crate::telemetry::within(request, async move {
            if let Err(err) = request_for(&app, &key).await {
                tracing::error!(error = format!("{err:#}"), "magic link request failed");
            }
        }));
    Ok(())
}

async fn request_for(app: &App, key: &str) -> anyhow::Result<()> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let Some(user) = users::find_by_email_key(tx.conn(), key).await? else {
        return Ok(());
    };
    if !user.is_active {
        return Ok(());
    }
    // Only the newest link works: lock the user so concurrent requests revoke in turn.
    users::lock(tx.conn(), user.id).await?;
    let secret = keys::mint_for_user(&mut tx, PURPOSE, &user, KEY_LIFETIME, now).await?;
    let link = format!(
        "{}/magic-login?key={}",
        app.config.public_base(),
        secret.clear
    );
    let minutes = KEY_LIFETIME.num_minutes().to_string();
    let rendered = mail::MagicLink {
        first_name: &user.first_name,
        email: &user.email,
        valid_minutes: &minutes,
        link: &link,
    }
    .render()?;
    mail::enqueue(&mut tx, &app.mailer, &user.email, rendered, now).await?;
    tx.commit().await?;
    app.mail_queued.notify_one();
    tracing::info!(user_id = %user.id, "magic link requested");
    Ok(())
}

/// Uses a magic link's key: a session, or the second step for a person with two factors.
/// Presenting keys is limited per client address like every mailed key.
pub async fn sign_in(
    app: &App,
    presented: &str,
    client: ClientInfo,
) -> Result<SignIn, MagicLinkError> {
    let attempt = ratelimit::key_attempt(app, &client).await??;
    let now = app.clock.now();
    let (key, mut user) = {
        let mut tx = app.db.read().await?;
        let key = keys::find_usable(tx.conn(), PURPOSE, presented, now).await??;
        let user_id = key
            .user_id
            .ok_or_else(|| anyhow::anyhow!("magic link {} has no user", key.id))?;
        let user = users::find(tx.conn(), user_id)
            .await?
            .filter(|u| u.is_active)
            .ok_or(KeyProblem::NotFound)?;
        (key, user)
    };
    if !super::verification::may_open_session(app, &user)
        && key.email.as_deref() != Some(user.email_key.as_str())
    {
        return Err(LoginError::EmailNotVerified.into());
    }
    let mut tx = app.db.begin().await?;
    if !one_time_keys::consume(tx.conn(), key.id, now).await? {
        // Used (or expired) between the check and now: look again to say which.
        keys::find_usable(tx.conn(), PURPOSE, presented, now).await??;
        return Err(KeyProblem::Used.into());
    }
    if key.email.as_deref() == Some(user.email_key.as_str()) && user.email_verified_at.is_none() {
        users::mark_email_verified(tx.conn(), user.id, now).await?;
        crate::audit::record(
            tx.conn(),
            now,
            crate::audit::Event::new(
                crate::audit::Action::EmailVerified,
                crate::audit::Actor::User(user.id),
            )
            .target("user", user.id),
        )
        .await?;
        user.email_verified_at = Some(now);
    }
    // Committed on its own (and heard by every auth cache: the address may now be verified);
    // should the session fail to open, the link is spent all the same, as a used one is.
    tx.commit().await?;
    let tx = app.db.begin().await?;
    let done = super::after_first_factor(app, tx, user, now, client, "magic_link").await?;
    attempt.refund(app).await?;
    Ok(done)
}
