//! Magic links: a single-use key, valid fifteen minutes, mailed to the account's address; opening
//! it (with a POST: the mailed page only shows a button, so mail scanners that fetch links do not
//! use it) is the first factor instead of the password. A person with two-factor sign-in still
//! gives a code after it. It proves the address too: the key went only to its mailbox.

use chrono::Duration;

use super::keys::{self, KeyProblem};
use super::{ClientInfo, LoginError, SignIn};
use crate::app::App;
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

/// A sign-in link, mailed on request: limited like password resets, in buckets of its own.
pub static MAILED: keys::MailedKey = keys::MailedKey {
    purpose: PURPOSE,
    lifetime: KEY_LIFETIME,
    ip_bucket: "magic-ip",
    email_bucket: "magic",
    path: "/magic-login",
    render: |user, link| {
        mail::MagicLink {
            first_name: &user.first_name,
            email: &user.email,
            valid_minutes: &KEY_LIFETIME.num_minutes().to_string(),
            link,
        }
        .render()
    },
    what: "magic link",
};

/// Mails a sign-in link if `email` belongs to an active account; does nothing otherwise. The
/// caller answers the same either way ([`keys::request_mailed`]).
pub async fn request(
    app: &crate::app::AppState,
    email: &str,
    client: &ClientInfo,
) -> Result<(), MagicLinkError> {
    Ok(keys::request_mailed(app, &MAILED, email, client).await??)
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
