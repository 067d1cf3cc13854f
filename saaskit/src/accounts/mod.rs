//! Accounts: signing up (a user, their business, its owner membership and first subscription),
//! logging in and out, and turning a presented token into the caller's identity.

pub mod cache;
pub mod hashing;
pub mod identities;
pub mod keys;
pub mod magic;
pub mod mfa;
pub mod passkeys;
pub mod reset;
pub mod sessions;
pub mod verification;

use chrono::Duration;
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use crate::app::App;
use crate::audit::{self, Action, Actor, Event};
use crate::db::Timestamp;
use crate::domain::{BusinessName, Email, Password, PersonName, Role, Scope, Scopes};
use crate::store::businesses::{self, Business};
use crate::store::members::{self, Member};
use crate::store::plans::{self, Limits, Plan};
use crate::store::subscriptions::{self, Subscription};
use crate::store::tokens::{self, AuthRow, Token};
use crate::store::users::{self, User};
use crate::{ratelimit, secret};

/// The marker at the start of every session token.
pub const SESSION_MARKER: &str = "sks";

/// What a signup needs, already parsed.
#[derive(Debug)]
pub struct NewAccount {
    pub email: Email,
    pub password: Password,
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub business_name: BusinessName,
}

/// Where a session was opened from, remembered so people can recognise their sessions.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Where a request came from, as received: the peer and the two headers that tell, kept without
/// copying (header values are shared buffers) and turned into a [`ClientInfo`] only when asked.
#[derive(Clone)]
pub struct Origin {
    peer: Option<std::net::IpAddr>,
    user_agent: Option<axum::http::HeaderValue>,
    forwarded_for: Vec<axum::http::HeaderValue>,
    /// For `SAASKIT_TRUSTED_PROXIES` (a shared handle: nothing is copied per request).
    app: crate::app::AppState,
}

impl Origin {
    pub fn new(
        peer: Option<std::net::IpAddr>,
        headers: &axum::http::HeaderMap,
        app: crate::app::AppState,
    ) -> Origin {
        Origin {
            peer,
            user_agent: headers.get(axum::http::header::USER_AGENT).cloned(),
            forwarded_for: headers.get_all("x-forwarded-for").iter().cloned().collect(),
            app,
        }
    }

    /// The client's address (through trusted proxies) and user agent.
    pub fn resolve(&self) -> ClientInfo {
        let user_agent = self
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // A proxy may append its own header line instead of extending the first: read them all,
        // in order. A line that is not text spoils the whole header (then only the peer counts).
        let forwarded_for = self
            .forwarded_for
            .iter()
            .map(|v| v.to_str().ok())
            .collect::<Option<Vec<&str>>>()
            .filter(|lines| !lines.is_empty())
            .map(|lines| lines.join(","));
        let ip = self.peer.map(|peer| {
            self.app
                .config
                .trusted_proxies
                .client_address(peer, forwarded_for.as_deref())
                .to_string()
        });
        ClientInfo { user_agent, ip }
    }
}

/// A new session: the secret is shown to the client once and never again.
#[derive(Debug)]
pub struct Session {
    pub token: String,
    pub token_id: Uuid,
    pub expires_at: Timestamp,
}

#[derive(Debug)]
pub struct SignedUp {
    /// `None` when the email must be verified first (`SAASKIT_REQUIRE_VERIFIED_EMAIL`).
    pub session: Option<Session>,
    pub user: User,
    pub business: Business,
    pub subscription: Subscription,
    pub plan: Plan,
}

#[derive(Debug, Error)]
pub enum SignupError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SignupError {
    fn from(err: sqlx::Error) -> Self {
        SignupError::Unexpected(err.into())
    }
}

/// Creates the user, their business, the owner membership, a subscription to the default plan,
/// the email verification mail and a first session (unless the email must be verified first),
/// all in one transaction.
pub async fn signup(
    app: &App,
    new: NewAccount,
    client: ClientInfo,
) -> Result<SignedUp, SignupError> {
    ratelimit::hit(
        app,
        app.config.rate_limit_signup_ip,
        ratelimit::address_bucket("signup-ip", client.ip.as_deref()),
    )
    .await??;
    // Hash before taking the write lock: it is the slow part and needs no database.
    let password_hash = app.hasher.hash(new.password.expose()).await?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let user = User {
        id: Uuid::now_v7(),
        email: new.email.as_str().to_owned(),
        email_key: new.email.key().to_owned(),
        first_name: new.first_name.as_str().to_owned(),
        last_name: new.last_name.as_str().to_owned(),
        is_active: true,
        is_staff: false,
        email_verified_at: None,
        created_at: now,
        updated_at: now,
    };
    let NewAccountRows {
        business,
        subscription,
        plan,
    } = match open_account(
        app,
        &mut tx,
        &user,
        &password_hash,
        new.business_name.as_str(),
        now,
    )
    .await?
    {
        Opened::Made(rows) => rows,
        Opened::EmailTaken(rows) => {
            if !app.config.require_verified_email {
                // Signup hands out a session, so it cannot hide that the address is taken.
                return Err(SignupError::EmailTaken);
            }
            // Nobody gets a session before verifying: answer as if the account were new, and
            // tell the address's owner instead.
            drop(tx);
            notify_account_exists(app, &new.email, now).await?;
            return Ok(SignedUp {
                session: None,
                user,
                business: rows.business,
                subscription: rows.subscription,
                plan: rows.plan,
            });
        }
    };

    verification::issue(app, &mut tx, &user, now).await?;
    let session = if verification::may_open_session(app, &user) {
        Some(open_session(app, &mut tx, user.id, business.id, now, client).await?)
    } else {
        None
    };
    audit::record(
        tx.conn(),
        now,
        Event::new(Action::UserSignedUp, Actor::User(user.id)).business(business.id),
    )
    .await?;
    // Only new rows: nothing any cached auth context depends on.
    tx.commit_quietly().await?;
    app.mail_queued.notify_one();
    tracing::info!(user_id = %user.id, business_id = %business.id, "signed up");
    Ok(SignedUp {
        session,
        user,
        business,
        subscription,
        plan,
    })
}

#[derive(Debug)]
pub struct LoggedIn {
    pub session: Session,
    pub user: User,
    pub business: Business,
}

/// Where a first factor (a password, a magic link) leads: a session, or the second step when
/// the person signs in with two factors ([`mfa::complete_login`]).
#[derive(Debug)]
pub enum SignIn {
    Session(Box<LoggedIn>),
    SecondFactor(mfa::Challenge),
}

#[derive(Debug, Error)]
pub enum LoginError {
    /// Unknown email, wrong password, inactive account or no business: deliberately one case,
    /// so the answer never tells which.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The password was right, but `SAASKIT_REQUIRE_VERIFIED_EMAIL` is on and the email is not
    /// verified. Told only to someone who knows the password.
    #[error("the email address is not verified")]
    EmailNotVerified,
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for LoginError {
    fn from(err: sqlx::Error) -> Self {
        LoginError::Unexpected(err.into())
    }
}

/// Checks an email and password and opens a session for the user's default business.
///
/// Guessing is limited three ways (see [`crate::ratelimit`]): failures from the client's
/// address, failures against the account from that address, and failures against the account
/// from addresses it has never logged in from. Each attempt takes its slots before the
/// password is checked (so parallel guesses cannot slip past a limit) and a successful login
/// gives them back. Everything here happens alike for a known and an unknown email: the same
/// buckets, the same Argon2 work, the same answers.
pub async fn login(
    app: &App,
    email: &str,
    password: &str,
    client: ClientInfo,
) -> Result<SignIn, LoginError> {
    let key = Email::key_of(email);
    let ip = client.ip.as_deref();
    let c = &app.config;
    let by_ip = ratelimit::hit(
        app,
        c.rate_limit_login_ip,
        ratelimit::address_bucket("login-ip", ip),
    )
    .await??;
    let by_account = ratelimit::hit(
        app,
        c.rate_limit_login_account,
        ratelimit::bucket_from("login", &key, ip),
    )
    .await??;
    let found = {
        let mut tx = app.db.read().await?;
        users::find_credentials_by_email_key(tx.conn(), &key).await?
    };
    let everywhere = match ratelimit::hit(
        app,
        c.rate_limit_login_account_all,
        ratelimit::bucket("login-any", &key),
    )
    .await?
    {
        Ok(hit) => Some(hit),
        // The account is under attack from elsewhere: its owner's own addresses stay open.
        Err(limited) => {
            // Asked for an unknown email too (of nobody), so both take the same time.
            let user = found.as_ref().map_or(Uuid::nil(), |creds| creds.user.id);
            let known = {
                let mut tx = app.db.read().await?;
                tokens::has_logged_in_from(tx.conn(), user, ip.unwrap_or("-")).await?
            };
            if !known {
                return Err(LoginError::Limited(limited));
            }
            None
        }
    };
    let Some(creds) = found else {
        app.hasher.verify_decoy(password).await?;
        record_failed_login(app, None).await?;
        return Err(LoginError::InvalidCredentials);
    };
    if !app.hasher.verify(password, &creds.password_hash).await? || !creds.user.is_active {
        record_failed_login(app, Some(creds.user.id)).await?;
        return Err(LoginError::InvalidCredentials);
    }
    let user = creds.user;
    // Not a guess after all: the attempt gives its slots back.
    for hit in [Some(by_ip), Some(by_account), everywhere]
        .into_iter()
        .flatten()
    {
        hit.refund(app).await?;
    }
    if !verification::may_open_session(app, &user) {
        return Err(LoginError::EmailNotVerified);
    }
    let now = app.clock.now();
    let tx = app.db.begin().await?;
    after_first_factor(app, tx, user, now, client, "password").await
}

/// The first factor is proven (`method`: `password`, `magic_link`): the session, or the second
/// step if the person has a second factor. Commits `tx`, which may hold the first factor's
/// own writes (a magic link's use).
pub(crate) async fn after_first_factor(
    app: &App,
    mut tx: crate::db::Tx,
    user: User,
    now: Timestamp,
    client: ClientInfo,
    method: &str,
) -> Result<SignIn, LoginError> {
    if mfa::has_totp(tx.conn(), user.id).await? {
        let challenge = mfa::challenge(&mut tx, &user, now).await?;
        tx.commit().await?;
        return Ok(SignIn::SecondFactor(challenge));
    }
    Ok(SignIn::Session(Box::new(
        finish_login(app, tx, user, now, client, method).await?,
    )))
}

/// Opens the session of a login whose factors are all proven, for the user's default business,
/// and records it (`method`: how the last factor was proven). Commits `tx`.
pub(crate) async fn finish_login(
    app: &App,
    mut tx: crate::db::Tx,
    user: User,
    now: Timestamp,
    client: ClientInfo,
    method: &str,
) -> Result<LoggedIn, LoginError> {
    let Some(business_id) = members::default_business_of(tx.conn(), user.id).await? else {
        return Err(LoginError::InvalidCredentials);
    };
    let business = businesses::find(tx.conn(), business_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("business {business_id} vanished during login"))?;
    let session = open_session(app, &mut tx, user.id, business.id, now, client).await?;
    audit::record(
        tx.conn(),
        now,
        Event::new(Action::LoginSucceeded, Actor::User(user.id))
            .business(business.id)
            .target("session", session.token_id)
            .details(json!({"method": method})),
    )
    .await?;
    // A new session changes no other token's auth context.
    tx.commit_quietly().await?;
    Ok(LoggedIn {
        session,
        user,
        business,
    })
}

/// What a new account starts with beside its user.
pub(crate) struct NewAccountRows {
    pub business: Business,
    pub subscription: Subscription,
    pub plan: Plan,
}

/// Whether [`open_account`] made the account, or found its address taken (nothing written; the
/// rows it would have written, for an answer that must not tell).
pub(crate) enum Opened {
    Made(NewAccountRows),
    EmailTaken(NewAccountRows),
}

/// Writes a new account on `tx`, as a signup (and a first sign-in with an identity provider)
/// makes one: `user` with `password_hash`, their business named `business_name`, its owner
/// membership (counted by the members meter), a subscription to the default plan (a trial if
/// the plan does not renew) and its billing event.
pub(crate) async fn open_account(
    app: &App,
    tx: &mut crate::db::Tx,
    user: &User,
    password_hash: &str,
    business_name: &str,
    now: Timestamp,
) -> anyhow::Result<Opened> {
    let plan = plans::find_by_code(tx.conn(), &app.config.default_plan)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the default plan {:?} (SAASKIT_DEFAULT_PLAN) does not exist",
                app.config.default_plan
            )
        })?;
    let business = Business {
        id: Uuid::now_v7(),
        name: business_name.to_owned(),
        is_active: true,
        require_mfa: false,
        created_at: now,
        updated_at: now,
    };
    let subscription = Subscription {
        id: Uuid::now_v7(),
        business_id: business.id,
        plan_id: plan.id,
        // A plan that does not renew is a trial; one that does starts active.
        status: if plan.renews { "active" } else { "trialing" }.to_owned(),
        current_period_start: now,
        current_period_end: now.plus(Duration::days(plan.cycle_days)),
        is_current: true,
        pending_plan_id: None,
        cancel_at_period_end: false,
        ended_at: None,
        created_at: now,
        updated_at: now,
    };
    let rows = NewAccountRows {
        business,
        subscription,
        plan,
    };
    match users::insert(tx.conn(), user, password_hash).await {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            return Ok(Opened::EmailTaken(rows));
        }
        other => other?,
    }
    businesses::insert(tx.conn(), &rows.business).await?;
    members::insert(
        tx.conn(),
        &Member {
            id: Uuid::now_v7(),
            business_id: rows.business.id,
            user_id: user.id,
            role: Role::Owner.as_str().to_owned(),
            status: "active".to_owned(),
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    subscriptions::insert(tx.conn(), &rows.subscription).await?;
    // The owner is the first member, whatever the plan's limit.
    crate::metering::record_unchecked(tx, rows.business.id, crate::metering::MEMBERS, 1).await?;
    crate::billing::events::record(
        tx,
        &rows.subscription,
        "created",
        crate::billing::events::Actor::User(user.id),
        None,
        Some(crate::billing::events::snapshot(
            &rows.subscription,
            &rows.plan.code,
        )),
        now,
    )
    .await?;
    Ok(Opened::Made(rows))
}

/// Mails the owner of `email` that someone tried to sign up with it again.
async fn notify_account_exists(app: &App, email: &Email, now: Timestamp) -> anyhow::Result<()> {
    let link = format!("{}/forgot-password", app.config.public_base());
    let rendered = crate::mail::AccountExists {
        email: email.as_str(),
        link: &link,
    }
    .render()?;
    let mut tx = app.db.begin().await?;
    crate::mail::enqueue(&mut tx, &app.mailer, email.as_str(), rendered, now).await?;
    tx.commit_quietly().await?;
    app.mail_queued.notify_one();
    Ok(())
}

/// A wrong password (`user`: whose) or an unknown email (`None`: the same write, so both cost
/// the same), in a transaction of its own.
async fn record_failed_login(app: &App, user: Option<Uuid>) -> Result<(), sqlx::Error> {
    let actor = user.map_or(Actor::Anonymous, Actor::User);
    let mut tx = app.db.begin().await?;
    audit::record(
        tx.conn(),
        app.clock.now(),
        Event::new(Action::LoginFailed, actor).details(json!({"reason": "invalid_credentials"})),
    )
    .await?;
    tx.commit_quietly().await
}

pub(crate) async fn open_session(
    app: &App,
    tx: &mut crate::db::Tx,
    user_id: Uuid,
    business_id: Uuid,
    now: Timestamp,
    client: ClientInfo,
) -> Result<Session, sqlx::Error> {
    let secret = secret::generate(SESSION_MARKER);
    let expires_at = now.plus(Duration::hours(i64::from(
        app.config.session_lifetime_hours,
    )));
    let token = Token {
        id: Uuid::now_v7(),
        kind: "session".to_owned(),
        hash: secret.hash.clone(),
        prefix: secret.prefix.clone(),
        name: None,
        user_id: Some(user_id),
        business_id: Some(business_id),
        scopes: Scopes::of([Scope::Dashboard]).to_stored(),
        user_agent: client.user_agent.map(|ua| truncate(&ua, 512)),
        ip: client.ip,
        created_at: now,
        last_used_at: Some(now),
        expires_at: Some(expires_at),
        revoked_at: None,
        replaced_by: None,
        created_by: None,
        revoked_reason: None,
    };
    tokens::insert(tx.conn(), &token).await?;
    Ok(Session {
        token: secret.clear,
        token_id: token.id,
        expires_at,
    })
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

/// Who is calling: found from the presented token by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: Uuid,
    /// `session`, `api_key` or `bot`.
    pub token_kind: String,
    pub scopes: Scopes,
    pub business_id: Uuid,
    pub business_name: String,
    pub business_created_at: Timestamp,
    /// Whether the business requires its members to sign in with a second factor.
    pub business_require_mfa: bool,
    /// The person or bot behind the token; `None` for an API key, which belongs to the business.
    pub member: Option<Membership>,
    pub subscription: Option<CurrentSubscription>,
    /// The current subscription's plan, whole (for views that show it).
    pub plan: Option<Plan>,
    /// The `GET /api/v1/me` document, a function of the fields above: made by the first request
    /// that asks and shared by every copy of this principal the auth cache hands out, so a
    /// cached caller's `me` is serialized once (a change makes a new principal, and a new one).
    pub me_document: Memo,
}

/// A value made at most once and shared by every clone (see [`Principal::me_document`]).
#[derive(Clone, Default)]
pub struct Memo(std::sync::Arc<std::sync::OnceLock<axum::body::Bytes>>);

impl Memo {
    /// The value, made by `make` if no clone has made it yet; a failure is returned and not kept.
    pub fn get_or_make<E>(
        &self,
        make: impl FnOnce() -> Result<axum::body::Bytes, E>,
    ) -> Result<axum::body::Bytes, E> {
        if let Some(made) = self.0.get() {
            return Ok(made.clone());
        }
        let made = make()?;
        // Two requests may race to make it: both made the same document, either is kept.
        Ok(self.0.get_or_init(|| made).clone())
    }
}

#[cfg(test)]
mod memo_tests {
    use super::Memo;

    #[test]
    fn a_memo_is_made_once_for_every_clone_and_a_failure_is_not_kept() {
        let memo = Memo::default();
        let copy = memo.clone();
        let failed: Result<_, &str> = copy.get_or_make(|| Err("not now"));
        assert_eq!(failed, Err("not now"));
        let mut made = 0;
        for memo in [&memo, &copy, &memo.clone()] {
            let value = memo.get_or_make(|| -> Result<_, &str> {
                made += 1;
                Ok(axum::body::Bytes::from_static(b"{}"))
            });
            assert_eq!(value.as_deref(), Ok(&b"{}"[..]));
        }
        assert_eq!(
            made, 1,
            "made by the first that asked, shared by the others"
        );
        let fresh = Memo::default();
        let value =
            fresh.get_or_make(|| -> Result<_, &str> { Ok(axum::body::Bytes::from_static(b"[]")) });
        assert_eq!(
            value.as_deref(),
            Ok(&b"[]"[..]),
            "a new memo is a new value"
        );
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Memo(made)"
        } else {
            "Memo(empty)"
        })
    }
}

/// A user's membership of the business a token acts for.
#[derive(Debug, Clone)]
pub struct Membership {
    pub member_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_staff: bool,
    pub email_verified_at: Option<Timestamp>,
    pub user_created_at: Timestamp,
    /// Whether the user signs in with a second factor.
    pub has_second_factor: bool,
}

impl Principal {
    pub fn user_id(&self) -> Option<Uuid> {
        self.member.as_ref().map(|m| m.user_id)
    }

    pub fn role(&self) -> Option<Role> {
        self.member.as_ref().map(|m| m.role)
    }

    /// The person behind a login session: `None` for an API key, a bot, or a bot's token.
    /// What only people do (passwords, their own account, their mailbox) asks for this.
    pub fn person(&self) -> Option<&Membership> {
        self.member
            .as_ref()
            .filter(|m| self.token_kind == "session" && m.role != Role::Bot)
    }

    pub fn is_staff(&self) -> bool {
        self.member.as_ref().is_some_and(|m| m.is_staff)
    }

    /// A person whose business requires a second factor they do not have yet: until they set one
    /// up, they may only do that, read `me` and log out
    /// ([`mfa::api_allows_before_enrolment`], [`mfa::page_allows_before_enrolment`]).
    pub fn mfa_enrollment_required(&self) -> bool {
        self.business_require_mfa && self.person().is_some_and(|m| !m.has_second_factor)
    }
}

#[derive(Debug, Clone)]
pub struct CurrentSubscription {
    pub id: Uuid,
    pub status: String,
    pub current_period_start: Timestamp,
    pub current_period_end: Timestamp,
    pub plan_id: Uuid,
    pub plan_code: String,
    /// The plan's limits as of this request: a change to the plan applies from the next one.
    pub limits: Limits,
}

impl CurrentSubscription {
    /// Whether the subscription gives access now: a trial or an active period that has not
    /// ended, or a payment that is late but still in its grace period (`past_due`).
    pub fn is_live(&self, now: Timestamp) -> bool {
        crate::billing::lifecycle::is_live(&self.status, self.current_period_end, now)
    }
}

/// How often `last_used_at` is written for a token that is in constant use.
const TOUCH_INTERVAL_SECS: i64 = 60;

/// Resolves a presented token (with the current plan, in `Principal::plan`). `None` for
/// anything that is not a live credential. Served from the auth-context cache when it is exact
/// (see [`cache`]), otherwise read and cached.
pub async fn authenticate(app: &App, presented: &str) -> anyhow::Result<Option<Principal>> {
    let now = app.clock.now();
    let hash = secret::digest(presented);
    let stale_before = now.plus(Duration::seconds(-TOUCH_INTERVAL_SECS));
    // The idle lifetime is checked by `find_auth` only: a cached entry lives at most
    // SAASKIT_AUTH_CACHE_TTL_MS (≤ 60 s) and its `last_used_at` is at most a minute older than
    // the read, far inside any idle lifetime (≥ 1 h).
    if let Some(entry) = app.auth_cache.get(&hash, now) {
        if entry.token_last_used_at.is_none_or(|t| t < stale_before) {
            touch(app, entry.principal.token_id, now, stale_before).await?;
            app.auth_cache.touched(&hash, now);
        }
        return Ok(Some(entry.principal));
    }
    // Taken before reading: a commit that lands while we read makes this entry stale at once.
    let generation = crate::db::write_generation();
    let (row, plan) = {
        let mut tx = app.db.read().await?;
        match tokens::find_auth(tx.conn(), &hash, now, idle_before(app, now)).await? {
            None => return Ok(None),
            Some(row) => {
                let plan = match row.plan_id {
                    Some(id) => plans::find(tx.conn(), id).await?,
                    None => None,
                };
                (row, plan)
            }
        }
    };
    let mut principal = principal_from(row.clone())?;
    principal.plan = plan;
    let mut last_used = row.token_last_used_at;
    if last_used.is_none_or(|t| t < stale_before) {
        touch(app, row.token_id, now, stale_before).await?;
        last_used = Some(now);
    }
    app.auth_cache.put(
        &hash,
        principal.clone(),
        last_used,
        row.token_expires_at,
        generation,
        now,
    );
    Ok(Some(principal))
}

/// Sessions last used before this have lapsed (`SAASKIT_SESSION_IDLE_HOURS`). `last_used_at` is
/// written at most once a minute, so idleness is measured to the minute.
pub fn idle_before(app: &App, now: Timestamp) -> Timestamp {
    now.plus(Duration::hours(-i64::from(app.config.session_idle_hours)))
}

/// Writes `last_used_at` (at most once a minute per token). A quiet commit: when a token was
/// last used is not part of anyone's auth context.
///
/// On SQLite it goes through the batching writer: under metered load that writer holds the
/// write lock nearly all the time, and a pool transaction waiting for the lock sleeps in
/// SQLite's busy handler (in steps of up to 100 ms, not woken when the lock frees). Those waits
/// were the metered write's worst latencies (up to 443 ms at a million rows); in the writer's
/// next batch the touch waits for nothing.
async fn touch(
    app: &App,
    token_id: Uuid,
    now: Timestamp,
    stale_before: Timestamp,
) -> anyhow::Result<()> {
    if let crate::db::Db::Sqlite(pool) = &app.db {
        use crate::db::direct::Param;
        let writer = app.sqlite_writer.get(pool).await?;
        writer
            .run(move |batch| -> sqlx::Result<()> {
                batch.execute(
                    tokens::TOUCH,
                    &[
                        Param::uuid(&token_id),
                        Param::time(now),
                        Param::time(stale_before),
                    ],
                )?;
                Ok(())
            })
            .await?;
        return Ok(());
    }
    let mut tx = app.db.begin().await?;
    tokens::touch(tx.conn(), token_id, now, stale_before).await?;
    tx.commit_quietly().await?;
    Ok(())
}

fn principal_from(row: AuthRow) -> anyhow::Result<Principal> {
    let member = match (
        row.member_id,
        row.member_role,
        row.user_id,
        row.user_email,
        row.user_first_name,
        row.user_last_name,
        row.user_created_at,
    ) {
        (
            Some(member_id),
            Some(role),
            Some(user_id),
            Some(email),
            Some(first_name),
            Some(last_name),
            Some(user_created_at),
        ) => Some(Membership {
            member_id,
            user_id,
            role: role
                .parse::<Role>()
                .map_err(|e| anyhow::anyhow!("member {member_id}: {e}"))?,
            email,
            first_name,
            last_name,
            is_staff: row.user_is_staff.unwrap_or(false),
            email_verified_at: row.user_email_verified_at,
            user_created_at,
            has_second_factor: row.user_has_mfa.unwrap_or(false),
        }),
        _ => None,
    };
    let subscription = match (
        row.subscription_id,
        row.subscription_status,
        row.subscription_period_start,
        row.subscription_period_end,
        row.plan_id,
        row.plan_code,
    ) {
        (Some(id), Some(status), Some(start), Some(end), Some(plan_id), Some(plan_code)) => {
            let limits = match row.plan_limits.as_deref() {
                Some(json) => serde_json::from_str(json)
                    .map_err(|e| anyhow::anyhow!("plan {plan_code}: unreadable limits: {e}"))?,
                None => Limits::new(),
            };
            Some(CurrentSubscription {
                id,
                status,
                current_period_start: start,
                current_period_end: end,
                plan_id,
                plan_code,
                limits,
            })
        }
        _ => None,
    };
    Ok(Principal {
        token_id: row.token_id,
        token_kind: row.token_kind,
        scopes: Scopes::from_stored(&row.token_scopes),
        business_id: row.business_id,
        business_name: row.business_name,
        business_created_at: row.business_created_at,
        business_require_mfa: row.business_require_mfa,
        member,
        subscription,
        plan: None,
        me_document: Memo::default(),
    })
}

/// Revokes the session the caller presented.
pub async fn logout(app: &App, principal: &Principal) -> anyhow::Result<()> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    tokens::revoke(tx.conn(), principal.token_id, now).await?;
    let event = Event::by(Action::Logout, principal).target("session", principal.token_id);
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(())
}
