//! Signing in with an identity provider (`crate::oidc`), and the identities linked to people.
//!
//! A sign-in starts with a state, a nonce and a PKCE verifier kept server-side for ten minutes
//! (the state as a digest, the other two sealed) and used once. When the provider sends the
//! person back, what it vouches for leads to one of:
//! - the identity is linked already: its person signs in (their second factor still applies);
//! - the sign-in was started by a signed-in person: the identity is linked to them;
//! - nobody has the identity and the provider says the address is verified, but an account has
//!   that address: nothing is linked silently. The account's address is mailed a single-use
//!   link, and opening it (a button, then a POST) links and signs in;
//! - the same with an address the provider does not vouch for: refused (link it from the
//!   account, signed in);
//! - nobody has the address: a new account (no password) with its business, signed in.
//!
//! An identity is never removed when it is the last way to sign in (no usable password, no
//! other identity, no passkey).

use chrono::Duration;
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use super::keys::KeyProblem;
use super::{ClientInfo, LoginError, Principal, SignIn};
use crate::app::App;
use crate::audit::{self, Action, Actor, Event};
use crate::db::{Timestamp, Tx};
use crate::domain::Email;
use crate::oidc::{FlowSecrets, ProvidedIdentity, Provider, ProviderError};
use crate::ratelimit;
use crate::store::identities::{self as store, Identity, LinkKey, PendingSignIn};
use crate::store::{members, users};

/// How long a sign-in may spend at the provider.
pub const SIGN_IN_LIFETIME: Duration = Duration::minutes(10);
/// How long the mailed link that confirms a link to an existing account works.
pub const LINK_KEY_LIFETIME: Duration = Duration::minutes(30);
/// The method logins through a provider are recorded with.
pub const METHOD: &str = "oidc";
const LINK_KEY_MARKER: &str = "skl";

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("no identity provider of that name is configured")]
    UnknownProvider,
    /// The callback's state is unknown, used, expired, or was started in another browser.
    #[error("this sign-in is unknown, expired or already used")]
    InvalidState,
    /// The provider sent the person back with an error (they declined, say).
    #[error("the identity provider did not sign the person in: {0}")]
    Denied(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A new identity without an address we could make an account for.
    #[error("the identity provider gave no usable email address")]
    NoEmail,
    /// Linking an identity that is linked to another account already.
    #[error("this identity is linked to another account")]
    LinkedElsewhere,
    #[error("only people link identities")]
    NotAPerson,
    #[error("no such identity")]
    NotFound,
    #[error("this is the last way to sign in to the account")]
    LastSignInMethod,
    #[error(transparent)]
    Key(#[from] KeyProblem),
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for IdentityError {
    fn from(err: sqlx::Error) -> Self {
        IdentityError::Unexpected(err.into())
    }
}

/// Where to send the browser, and the state to bind to it (a cookie: a callback must come back
/// to the browser that started it).
#[derive(Debug)]
pub struct Started {
    pub url: String,
    pub state: String,
}

/// How a callback ended.
#[derive(Debug)]
pub enum Finished {
    /// Signed in (or on to the second step); then to `next`.
    SignIn { sign_in: SignIn, next: String },
    /// Linked to the signed-in person who started it (`already`: it was theirs before).
    Linked { provider: String, already: bool },
    /// An account has the (verified) address: a confirmation went to it.
    ConfirmationMailed { email: String },
    /// An account has the address, which the provider does not vouch for: nothing done.
    Refused { provider: String },
}

/// The callback address of `provider`, as registered with it.
pub fn redirect_uri(app: &App, provider: &str) -> String {
    format!("{}/auth/{provider}/callback", app.config.public_base())
}

fn provider<'a>(app: &'a App, name: &str) -> Result<&'a Provider, IdentityError> {
    app.identity_providers
        .get(name)
        .map(|p| &**p)
        .ok_or(IdentityError::UnknownProvider)
}

fn seal_context(id: Uuid) -> Vec<u8> {
    [
        b"identity_sign_ins.secrets_sealed:".as_slice(),
        id.as_bytes(),
    ]
    .concat()
}

/// Starts a sign-in with `provider_name`; `link_to`: the signed-in person who started it, to
/// whom the identity will be linked. `next`: a local path to go to after signing in.
pub async fn start(
    app: &App,
    provider_name: &str,
    link_to: Option<Uuid>,
    next: Option<&str>,
) -> Result<Started, IdentityError> {
    let provider = provider(app, provider_name)?;
    let authorization = app
        .identity_providers
        .authorize(provider, &redirect_uri(app, provider_name))
        .await?;
    let now = app.clock.now();
    let id = Uuid::now_v7();
    let secrets = serde_json::to_string(&authorization.secrets).map_err(anyhow::Error::from)?;
    let pending = PendingSignIn {
        id,
        state_hash: crate::secret::digest(&authorization.state),
        provider: provider_name.to_owned(),
        secrets_sealed: app.sealer.seal(&secrets, &seal_context(id)),
        link_user_id: link_to,
        next: next.map(str::to_owned),
        created_at: now,
        expires_at: now.plus(SIGN_IN_LIFETIME),
        used_at: None,
    };
    let mut tx = app.db.begin().await?;
    // Sign-ins that ended a day ago go: their sealed secrets are worth nothing, but kept no longer.
    store::delete_sign_ins_before(tx.conn(), now.plus(Duration::days(-1))).await?;
    store::insert_sign_in(tx.conn(), &pending).await?;
    tx.commit_quietly().await?;
    Ok(Started {
        url: authorization.url,
        state: authorization.state,
    })
}

/// What the provider sent back to `/auth/{provider}/callback`.
#[derive(Debug, Default)]
pub struct Callback<'a> {
    pub code: Option<&'a str>,
    pub state: Option<&'a str>,
    pub iss: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// Finishes a sign-in (see the module's documentation for where it leads).
pub async fn finish(
    app: &App,
    provider_name: &str,
    callback: Callback<'_>,
    client: ClientInfo,
) -> Result<Finished, IdentityError> {
    let provider = provider(app, provider_name)?;
    let state = callback
        .state
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or(IdentityError::InvalidState)?;
    let now = app.clock.now();
    // Taken (used up) first, whatever follows: a state works once.
    let pending = {
        let mut tx = app.db.begin().await?;
        let taken =
            store::take_sign_in(tx.conn(), &crate::secret::digest(state), provider_name, now)
                .await?;
        tx.commit_quietly().await?;
        taken.ok_or(IdentityError::InvalidState)?
    };
    if let Some(error) = callback.error {
        return Err(IdentityError::Denied(error.chars().take(100).collect()));
    }
    let code = callback
        .code
        .filter(|c| !c.is_empty() && c.len() <= 2048)
        .ok_or_else(|| IdentityError::Denied("no authorization code".into()))?;
    let secrets: FlowSecrets = app
        .sealer
        .open(&pending.secrets_sealed, &seal_context(pending.id))
        .map_err(|e| anyhow::anyhow!("identity sign-in {}: {e}", pending.id))
        .and_then(|clear| serde_json::from_str(&clear).map_err(anyhow::Error::from))?;
    let identity = app
        .identity_providers
        .finish(
            provider,
            &redirect_uri(app, provider_name),
            code,
            callback.iss,
            secrets,
        )
        .await?;
    let label = provider.settings.label.clone();
    let next = pending
        .next
        .clone()
        .unwrap_or_else(|| "/dashboard".to_owned());
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let existing = store::find(tx.conn(), provider_name, &identity.subject).await?;

    if let Some(user_id) = pending.link_user_id {
        return match existing {
            Some(i) if i.user_id == user_id => Ok(Finished::Linked {
                provider: label,
                already: true,
            }),
            Some(_) => Err(IdentityError::LinkedElsewhere),
            None => {
                let user = active_user(&mut tx, user_id).await?;
                link(
                    app,
                    &mut tx,
                    &user,
                    provider_name,
                    &identity,
                    "session",
                    now,
                )
                .await?;
                tx.commit_quietly().await?;
                app.mail_queued.notify_one();
                Ok(Finished::Linked {
                    provider: label,
                    already: false,
                })
            }
        };
    }

    if let Some(linked) = existing {
        let user = active_user(&mut tx, linked.user_id).await?;
        if !super::verification::may_open_session(app, &user) {
            return Err(LoginError::EmailNotVerified.into());
        }
        store::touch(tx.conn(), linked.id, now).await?;
        let sign_in = super::after_first_factor(app, tx, user, now, client, METHOD).await?;
        return Ok(Finished::SignIn { sign_in, next });
    }

    let email = identity
        .email
        .as_deref()
        .and_then(|e| Email::parse(e).ok())
        .ok_or(IdentityError::NoEmail)?;
    if let Some(owner) = users::find_by_email_key(tx.conn(), email.key()).await? {
        if !identity.email_verified || !owner.is_active {
            tracing::info!(user_id = %owner.id, provider = provider_name,
                "identity with an unverified address meets an account: not linked");
            return Ok(Finished::Refused { provider: label });
        }
        mail_link_key(app, &mut tx, &owner, provider_name, &label, &identity, now).await?;
        tx.commit_quietly().await?;
        app.mail_queued.notify_one();
        return Ok(Finished::ConfirmationMailed { email: owner.email });
    }
    drop(tx);
    let user = create_account(app, provider_name, &identity, &email, &client, now).await?;
    if !super::verification::may_open_session(app, &user) {
        return Err(LoginError::EmailNotVerified.into());
    }
    let tx = app.db.begin().await?;
    let sign_in = super::after_first_factor(app, tx, user, now, client, METHOD).await?;
    Ok(Finished::SignIn { sign_in, next })
}

async fn active_user(tx: &mut Tx, user_id: Uuid) -> Result<users::User, IdentityError> {
    users::find(tx.conn(), user_id)
        .await?
        .filter(|u| u.is_active)
        .ok_or(IdentityError::Login(LoginError::InvalidCredentials))
}

/// Links `identity` to `user`, with its audit event and the mail that tells them
/// (`proven_by`: how the person showed the account is theirs — `session` or `email`).
async fn link(
    app: &App,
    tx: &mut Tx,
    user: &users::User,
    provider_name: &str,
    identity: &ProvidedIdentity,
    proven_by: &str,
    now: Timestamp,
) -> Result<Identity, IdentityError> {
    let row = Identity {
        id: Uuid::now_v7(),
        user_id: user.id,
        provider: provider_name.to_owned(),
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        created_at: now,
        last_used_at: None,
    };
    match store::insert(tx.conn(), &row).await {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            return Err(IdentityError::LinkedElsewhere);
        }
        other => other?,
    }
    // Shown in the log of the business the person signs in to.
    let mut event = Event::new(Action::IdentityLinked, Actor::User(user.id))
        .target("identity", row.id)
        .details(json!({"provider": provider_name, "proven_by": proven_by}));
    if let Some(business) = members::default_business_of(tx.conn(), user.id).await? {
        event = event.business(business);
    }
    audit::record(tx.conn(), now, event).await?;
    mail_change(app, tx, user, provider_name, "added", now).await?;
    Ok(row)
}

/// "Sign-in with <provider> was added/removed" to the person.
async fn mail_change(
    app: &App,
    tx: &mut Tx,
    user: &users::User,
    provider_name: &str,
    change: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let method = format!(
        "Sign-in with {}",
        app.identity_providers.label_of(provider_name)
    );
    let link = format!("{}/account/identities", app.config.public_base());
    let rendered = crate::mail::SignInMethod {
        first_name: &user.first_name,
        email: &user.email,
        method: &method,
        change,
        link: &link,
    }
    .render()?;
    crate::mail::enqueue(tx, &app.mailer, &user.email, rendered, now).await?;
    Ok(())
}

async fn mail_link_key(
    app: &App,
    tx: &mut Tx,
    owner: &users::User,
    provider_name: &str,
    label: &str,
    identity: &ProvidedIdentity,
    now: Timestamp,
) -> anyhow::Result<()> {
    let secret = crate::secret::generate(LINK_KEY_MARKER);
    store::insert_link_key(
        tx.conn(),
        &LinkKey {
            id: Uuid::now_v7(),
            hash: secret.hash.clone(),
            user_id: owner.id,
            provider: provider_name.to_owned(),
            subject: identity.subject.clone(),
            email: identity.email.clone(),
            created_at: now,
            expires_at: now.plus(LINK_KEY_LIFETIME),
            used_at: None,
        },
    )
    .await?;
    let link = format!(
        "{}/auth/link?key={}",
        app.config.public_base(),
        secret.clear
    );
    let minutes = LINK_KEY_LIFETIME.num_minutes().to_string();
    let rendered = crate::mail::IdentityLink {
        first_name: &owner.first_name,
        email: &owner.email,
        provider: label,
        valid_minutes: &minutes,
        link: &link,
    }
    .render()?;
    crate::mail::enqueue(tx, &app.mailer, &owner.email, rendered, now).await?;
    Ok(())
}

/// Uses a mailed link key: links its identity to the account it was mailed to, and signs in
/// (or on to the second step). Presenting keys is limited per client address.
pub async fn confirm_link(
    app: &App,
    presented: &str,
    client: ClientInfo,
) -> Result<SignIn, IdentityError> {
    let attempt = ratelimit::key_attempt(app, &client).await??;
    if !super::keys::plausible(presented) {
        return Err(KeyProblem::NotFound.into());
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let key = store::find_link_key(tx.conn(), &crate::secret::digest(presented))
        .await?
        .ok_or(KeyProblem::NotFound)?;
    if key.used_at.is_some() {
        return Err(KeyProblem::Used.into());
    }
    if now >= key.expires_at {
        return Err(KeyProblem::Expired.into());
    }
    if !store::use_link_key(tx.conn(), key.id, now).await? {
        return Err(KeyProblem::Used.into());
    }
    let mut user = active_user(&mut tx, key.user_id).await?;
    let identity = ProvidedIdentity {
        subject: key.subject.clone(),
        email: key.email.clone(),
        email_verified: true,
        given_name: None,
        family_name: None,
    };
    link(app, &mut tx, &user, &key.provider, &identity, "email", now).await?;
    // The key went to the account's address only: opening it proves the address as well.
    if user.email_verified_at.is_none() {
        users::mark_email_verified(tx.conn(), user.id, now).await?;
        audit::record(
            tx.conn(),
            now,
            Event::new(Action::EmailVerified, Actor::User(user.id)).target("user", user.id),
        )
        .await?;
        user.email_verified_at = Some(now);
    }
    // Heard by every auth cache: the address may now be verified.
    tx.commit().await?;
    app.mail_queued.notify_one();
    let tx = app.db.begin().await?;
    let done = super::after_first_factor(app, tx, user, now, client, METHOD).await?;
    attempt.refund(app).await?;
    Ok(done)
}

/// A new account for a new identity: the user (no password: they sign in with the provider,
/// or set one through "forgot password"), their business, its owner membership and first
/// subscription, like a signup, and the identity linked. Verified if the provider says so.
async fn create_account(
    app: &App,
    provider_name: &str,
    identity: &ProvidedIdentity,
    email: &Email,
    client: &ClientInfo,
    now: Timestamp,
) -> Result<users::User, IdentityError> {
    ratelimit::hit(
        app,
        app.config.rate_limit_signup_ip,
        ratelimit::address_bucket("signup-ip", client.ip.as_deref()),
    )
    .await??;
    let name = |n: Option<&String>| {
        n.and_then(|n| crate::domain::PersonName::parse(n).ok())
            .map(|n| n.as_str().to_owned())
    };
    let local_part = email.as_str().split('@').next().unwrap_or_default();
    let first_name = name(identity.given_name.as_ref())
        .or_else(|| name(Some(&local_part.to_owned())))
        .unwrap_or_else(|| "New".to_owned());
    let last_name = name(identity.family_name.as_ref()).unwrap_or_default();
    let business_name = crate::domain::BusinessName::parse(&format!("{first_name}'s business"))
        .map(|b| b.as_str().to_owned())
        .unwrap_or_else(|_| "My business".to_owned());

    let mut tx = app.db.begin().await?;
    let user = users::User {
        id: Uuid::now_v7(),
        email: email.as_str().to_owned(),
        email_key: email.key().to_owned(),
        first_name,
        last_name,
        is_active: true,
        is_staff: false,
        email_verified_at: identity.email_verified.then_some(now),
        created_at: now,
        updated_at: now,
    };
    // `!`: no password signs in to this account (see `users::find_credentials_by_email_key`).
    let business = match super::open_account(app, &mut tx, &user, "!", &business_name, now).await? {
        super::Opened::Made(rows) => rows.business,
        // The address was taken between the look and now: treat it as the existing account.
        super::Opened::EmailTaken(_) => return Err(IdentityError::InvalidState),
    };
    if user.email_verified_at.is_none() {
        super::verification::issue(app, &mut tx, &user, now).await?;
    }
    audit::record(
        tx.conn(),
        now,
        Event::new(Action::UserSignedUp, Actor::User(user.id))
            .business(business.id)
            .details(json!({"method": METHOD, "provider": provider_name})),
    )
    .await?;
    let row = Identity {
        id: Uuid::now_v7(),
        user_id: user.id,
        provider: provider_name.to_owned(),
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        created_at: now,
        last_used_at: Some(now),
    };
    match store::insert(tx.conn(), &row).await {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            // The same identity came back twice at once: the other callback made the account.
            return Err(IdentityError::InvalidState);
        }
        other => other?,
    }
    audit::record(
        tx.conn(),
        now,
        Event::new(Action::IdentityLinked, Actor::User(user.id))
            .business(business.id)
            .target("identity", row.id)
            .details(json!({"provider": provider_name, "proven_by": "new_account"})),
    )
    .await?;
    // Only new rows: nothing any cached auth context depends on.
    tx.commit_quietly().await?;
    app.mail_queued.notify_one();
    tracing::info!(user_id = %user.id, business_id = %business.id, provider = provider_name,
        "signed up with an identity provider");
    Ok(user)
}

/// The caller's linked identities, oldest first.
pub async fn list(app: &App, principal: &Principal) -> Result<Vec<Identity>, IdentityError> {
    let person = principal.person().ok_or(IdentityError::NotAPerson)?;
    let mut tx = app.db.read().await?;
    Ok(store::list_of_user(tx.conn(), person.user_id).await?)
}

/// Removes one of the caller's identities, unless it is their last way to sign in.
pub async fn remove(app: &App, principal: &Principal, id: Uuid) -> Result<(), IdentityError> {
    let person = principal.person().ok_or(IdentityError::NotAPerson)?;
    let user_id = person.user_id;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    // Two removals at once must not both see the other identity still there.
    users::lock(tx.conn(), user_id).await?;
    let identities = store::list_of_user(tx.conn(), user_id).await?;
    if !identities.iter().any(|i| i.id == id) {
        return Err(IdentityError::NotFound);
    }
    let others = identities.len() > 1
        || store::has_usable_password(tx.conn(), user_id).await?
        || crate::store::passkeys::count_of_user(tx.conn(), user_id).await? > 0;
    if !others {
        return Err(IdentityError::LastSignInMethod);
    }
    let removed = store::delete(tx.conn(), id, user_id)
        .await?
        .ok_or(IdentityError::NotFound)?;
    audit::record(
        tx.conn(),
        now,
        Event::by(Action::IdentityRemoved, principal)
            .target("identity", removed.id)
            .details(json!({"provider": removed.provider})),
    )
    .await?;
    let user = users::find(tx.conn(), user_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("user {user_id} vanished"))?;
    mail_change(app, &mut tx, &user, &removed.provider, "removed", now).await?;
    tx.commit_quietly().await?;
    app.mail_queued.notify_one();
    Ok(())
}
