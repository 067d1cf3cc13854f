//! Two-factor sign-in: a TOTP authenticator (RFC 6238: SHA-1, six digits, 30-second steps) and
//! ten single-use recovery codes, the login's second step, and a business's rule that its
//! members have a second factor.
//!
//! The seed must be read back to check codes, so it is sealed (`seal.rs`, bound to its user);
//! recovery codes are only compared, so only their digests are kept. A code is accepted for the
//! current step and one either side (clocks drift), and each step once per person: the newest
//! step taken is kept with the seed and a code of that step or an older one is refused, so a
//! code seen over someone's shoulder is spent.
//!
//! The login's second step is a one-time key (`mfa_login`, five minutes, dead after five wrong
//! codes); wrong codes also count against the login limits, like wrong passwords.

use chrono::Duration;
use rand::TryRngCore as _;
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use super::keys;
use super::{ClientInfo, LoggedIn, Principal};
use crate::app::App;
use crate::audit::{self, Action, Actor, Event};
use crate::db::{Conn, Timestamp, Tx};
use crate::ratelimit;
use crate::store::one_time_keys;
use crate::store::{mfa as store, users};

pub const CHALLENGE_PURPOSE: &str = "mfa_login";
pub const CHALLENGE_LIFETIME: Duration = Duration::minutes(5);
/// Wrong codes a login's second step takes before its key dies.
pub const MAX_WRONG_CODES: i64 = 5;
pub const RECOVERY_CODES: usize = 10;
const STEP_SECS: u64 = 30;
const DIGITS: u8 = 6;
/// Steps accepted either side of the current one.
const SKEW: u8 = 1;
/// 160 bits, the size RFC 4226 recommends and every authenticator app takes.
const SEED_BYTES: usize = 20;

/// What a login's second step accepts.
pub const METHODS: [&str; 2] = ["totp", "recovery_code"];

#[derive(Debug, Error)]
pub enum MfaError {
    #[error("only people sign in with a second factor")]
    NotAPerson,
    #[error("two-factor sign-in is already on")]
    AlreadyEnabled,
    #[error("no two-factor set-up is waiting for a code")]
    SetupRequired,
    #[error("two-factor sign-in is off")]
    NotEnabled,
    #[error("the code is not the authenticator's current code")]
    InvalidCode,
    #[error("the password is wrong")]
    WrongPassword,
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for MfaError {
    fn from(err: sqlx::Error) -> Self {
        MfaError::Unexpected(err.into())
    }
}

impl From<super::sessions::SessionError> for MfaError {
    fn from(err: super::sessions::SessionError) -> Self {
        use super::sessions::SessionError as E;
        match err {
            E::NotAPerson => MfaError::NotAPerson,
            E::WrongPassword => MfaError::WrongPassword,
            E::Limited(limited) => MfaError::Limited(limited),
            E::Unexpected(e) => MfaError::Unexpected(e),
            other => MfaError::Unexpected(anyhow::anyhow!("{other}")),
        }
    }
}

/// A person's second factors, as they see them.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub totp_enabled: bool,
    pub recovery_codes_remaining: i64,
}

/// What an authenticator app needs to be set up: the seed (base32), the `otpauth://` URI and that
/// URI as a QR code (SVG).
#[derive(Debug, Clone)]
pub struct Setup {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

fn person(principal: &Principal) -> Result<(Uuid, &str), MfaError> {
    principal
        .person()
        .map(|m| (m.user_id, m.email.as_str()))
        .ok_or(MfaError::NotAPerson)
}

pub async fn status(app: &App, principal: &Principal) -> Result<Status, MfaError> {
    let (user, _) = person(principal)?;
    let mut tx = app.db.read().await?;
    let totp = store::find_totp(tx.conn(), user).await?;
    let remaining = store::count_unused_recovery_codes(tx.conn(), user).await?;
    Ok(Status {
        totp_enabled: totp.is_some_and(|t| t.confirmed_at.is_some()),
        recovery_codes_remaining: remaining,
    })
}

/// Whether `user` signs in with an authenticator app: a password (or a magic link) then asks for
/// its code.
pub async fn has_totp(c: Conn<'_>, user: Uuid) -> sqlx::Result<bool> {
    Ok(store::find_totp(c, user)
        .await?
        .is_some_and(|t| t.confirmed_at.is_some()))
}

/// Whether `user` has a second factor, as a business's rule counts them: an authenticator app
/// or a passkey (which proves possession and, unlocked, the person: two factors in one).
pub async fn has_second_factor(mut c: Conn<'_>, user: Uuid) -> sqlx::Result<bool> {
    Ok(has_totp(c.reborrow(), user).await?
        || crate::store::passkeys::count_of_user(c, user).await? > 0)
}

/// Starts setting up an authenticator: a new seed, kept unconfirmed until a code from it comes
/// back ([`confirm`]). Again replaces the seed waiting.
pub async fn setup(app: &App, principal: &Principal) -> Result<Setup, MfaError> {
    let (user, email) = person(principal)?;
    let mut seed = [0u8; SEED_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| anyhow::anyhow!("the random number generator failed: {e}"))?;
    let shown = shown(seed.to_vec(), &app.config.totp_issuer, email)?;
    let sealed = app.sealer.seal(&shown.secret, &seal_context(user));
    let mut tx = app.db.begin().await?;
    if !store::put_pending_totp(tx.conn(), user, &sealed, app.clock.now()).await? {
        return Err(MfaError::AlreadyEnabled);
    }
    // A seed waiting for its first code changes nobody's sign-in.
    tx.commit_quietly().await?;
    Ok(shown)
}

/// A seed as an authenticator app takes it: base32 text, `otpauth://` URI, QR code.
fn shown(seed: Vec<u8>, issuer: &str, email: &str) -> anyhow::Result<Setup> {
    let totp = authenticator(seed, issuer, email)?;
    let otpauth_uri = totp
        .to_url()
        .map_err(|e| anyhow::anyhow!("otpauth URI: {e}"))?;
    let qr_svg = qrcode::QrCode::new(otpauth_uri.as_bytes())
        .map_err(|e| anyhow::anyhow!("QR code: {e}"))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(Setup {
        secret: totp.secret().to_base32(),
        otpauth_uri,
        qr_svg,
    })
}

/// The seed of `totp`, unsealed.
fn open_seed(app: &App, totp: &store::Totp) -> anyhow::Result<Vec<u8>> {
    let user = totp.user_id;
    let secret = app
        .sealer
        .open(&totp.secret_sealed, &seal_context(user))
        .map_err(|e| anyhow::anyhow!("the TOTP seed of {user} cannot be opened: {e}"))?;
    let seed = totp_rs::Secret::try_from_base32(&secret)
        .map_err(|e| anyhow::anyhow!("the TOTP seed of {user} is not base32: {e:?}"))?;
    Ok(seed.as_bytes().to_vec())
}

/// Turns two-factor sign-in on with a first code from the authenticator set up by [`setup`];
/// returns the recovery codes, shown this once.
pub async fn confirm(
    app: &App,
    principal: &Principal,
    code: &str,
) -> Result<Vec<String>, MfaError> {
    let (user, _) = person(principal)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    users::lock(tx.conn(), user).await?;
    let totp = match store::find_totp(tx.conn(), user).await? {
        None => return Err(MfaError::SetupRequired),
        Some(t) if t.confirmed_at.is_some() => return Err(MfaError::AlreadyEnabled),
        Some(t) => t,
    };
    let step = matching_step(app, &totp, code, now)?.ok_or(MfaError::InvalidCode)?;
    if !store::take_step(tx.conn(), user, step, true, now).await? {
        return Err(MfaError::InvalidCode);
    }
    let codes = new_recovery_codes(&mut tx, user, now).await?;
    audit::record(
        tx.conn(),
        now,
        Event::by(Action::TotpEnabled, principal).target("user", user),
    )
    .await?;
    notify_person(app, &mut tx, principal, "on", now).await?;
    tx.commit().await?;
    app.mail_queued.notify_one();
    tracing::info!(user_id = %user, "two-factor sign-in turned on");
    Ok(codes)
}

/// Turns two-factor sign-in off, after checking the caller's password.
pub async fn disable(app: &App, principal: &Principal, password: &str) -> Result<(), MfaError> {
    let (user, _) = super::sessions::check_password(app, principal, password).await?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    users::lock(tx.conn(), user).await?;
    if !store::delete_totp(tx.conn(), user).await? {
        return Err(MfaError::NotEnabled);
    }
    store::delete_recovery_codes(tx.conn(), user).await?;
    audit::record(
        tx.conn(),
        now,
        Event::by(Action::TotpDisabled, principal).target("user", user),
    )
    .await?;
    notify_person(app, &mut tx, principal, "off", now).await?;
    tx.commit().await?;
    app.mail_queued.notify_one();
    tracing::info!(user_id = %user, "two-factor sign-in turned off");
    Ok(())
}

/// A new set of recovery codes (the old ones stop working), after checking the password.
pub async fn regenerate_recovery_codes(
    app: &App,
    principal: &Principal,
    password: &str,
) -> Result<Vec<String>, MfaError> {
    let (user, _) = super::sessions::check_password(app, principal, password).await?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    users::lock(tx.conn(), user).await?;
    if !has_totp(tx.conn(), user).await? {
        return Err(MfaError::NotEnabled);
    }
    let codes = new_recovery_codes(&mut tx, user, now).await?;
    let event = Event::by(Action::RecoveryCodesRegenerated, principal).target("user", user);
    audit::record(tx.conn(), now, event).await?;
    tx.commit_quietly().await?;
    Ok(codes)
}

/// Turns off the two-factor sign-in of the person with `email`, for someone who lost both their
/// authenticator and their recovery codes: by staff (`by`) or an operator (`None`, the CLI's
/// `saaskit user reset-mfa`). Whether it was on. The person is mailed, as when they do it.
pub async fn reset(app: &App, email: &str, by: Option<Uuid>) -> anyhow::Result<bool> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let user = users::find_by_email_key(tx.conn(), &crate::domain::Email::key_of(email))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user with the email {email:?}"))?;
    users::lock(tx.conn(), user.id).await?;
    let was_on = store::delete_totp(tx.conn(), user.id).await?;
    store::delete_recovery_codes(tx.conn(), user.id).await?;
    if was_on {
        let mut event = Event::new(Action::TotpDisabled, Actor::Staff(by))
            .target("user", user.id)
            .details(json!({"reset": true}));
        // Shown to the business the person signs in to first, as their own change would be.
        if let Some(business) =
            crate::store::members::default_business_of(tx.conn(), user.id).await?
        {
            event = event.business(business);
        }
        audit::record(tx.conn(), now, event).await?;
        notify(app, &mut tx, &user.first_name, &user.email, "off", now).await?;
    }
    tx.commit().await?;
    app.mail_queued.notify_one();
    Ok(was_on)
}

async fn notify_person(
    app: &App,
    tx: &mut Tx,
    principal: &Principal,
    change: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    match principal.person() {
        Some(m) => notify(app, tx, &m.first_name, &m.email, change, now).await,
        None => Ok(()),
    }
}

async fn notify(
    app: &App,
    tx: &mut Tx,
    first_name: &str,
    email: &str,
    change: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let link = format!("{}/account/two-factor", app.config.public_base());
    let rendered = crate::mail::MfaChanged {
        first_name,
        email,
        change,
        link: &link,
    }
    .render()?;
    crate::mail::enqueue(tx, &app.mailer, email, rendered, now).await?;
    Ok(())
}

async fn new_recovery_codes(
    tx: &mut Tx,
    user: Uuid,
    now: Timestamp,
) -> anyhow::Result<Vec<String>> {
    store::delete_recovery_codes(tx.conn(), user).await?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    while codes.len() < RECOVERY_CODES {
        let code = recovery_code()?;
        if codes.contains(&code) {
            continue;
        }
        store::insert_recovery_code(tx.conn(), user, &recovery_digest(&code), now).await?;
        codes.push(code);
    }
    Ok(codes)
}

/// `xxxxx-xxxxx` from the lowercase base32 alphabet: 50 random bits, easy to read out and type.
fn recovery_code() -> anyhow::Result<String> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 10];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the random number generator failed: {e}"))?;
    let mut code = String::with_capacity(11);
    for (i, b) in bytes.iter().enumerate() {
        if i == 5 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    Ok(code)
}

/// A recovery code as typed, reduced to what it is made of: case, spaces and dashes ignored.
fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn recovery_digest(code: &str) -> Vec<u8> {
    crate::secret::digest(&normalize(code))
}

fn seal_context(user: Uuid) -> Vec<u8> {
    format!("user_totp:{user}").into_bytes()
}

fn authenticator(seed: Vec<u8>, issuer: &str, email: &str) -> anyhow::Result<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_secret(seed)
        .with_digits(DIGITS)
        .with_step_duration(STEP_SECS)
        .with_skew(u16::from(SKEW))
        .with_issuer(Some(issuer))
        // An account name may not hold `:`; an email never does, but be sure.
        .with_account_name(email.replace(':', ""))
        .build()
        .map_err(|e| anyhow::anyhow!("TOTP parameters: {e}"))
}

/// The step whose code `code` is, within the skew around `now`, if any.
fn matching_step(
    app: &App,
    totp: &store::Totp,
    code: &str,
    now: Timestamp,
) -> anyhow::Result<Option<i64>> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let totp = authenticator(open_seed(app, totp)?, "saaskit", "")?;
    let secs = u64::try_from(now.micros() / 1_000_000).unwrap_or(0);
    Ok(totp.check(&code, secs).and_then(|s| i64::try_from(s).ok()))
}

/// The set-up waiting for its first code, as [`setup`] gave it: the same seed, so a page can show
/// it again (after a wrong code, or a reload) without replacing what was already scanned.
/// `None` when no set-up waits (never started, or already confirmed).
pub async fn pending_setup(app: &App, principal: &Principal) -> Result<Option<Setup>, MfaError> {
    let (user, email) = person(principal)?;
    let pending = {
        let mut tx = app.db.read().await?;
        store::find_totp(tx.conn(), user).await?
    };
    let Some(pending) = pending.filter(|t| t.confirmed_at.is_none()) else {
        return Ok(None);
    };
    Ok(Some(shown(
        open_seed(app, &pending)?,
        &app.config.totp_issuer,
        email,
    )?))
}

// ---------------------------------------------------------------------------------------------
// The business's rule.

/// The API routes a person may still call while their business requires a second factor they
/// have not set up ([`Principal::mfa_enrollment_required`]): set one up (an authenticator app or
/// a passkey), read `me`, log out.
/// Everything else answers 403 `mfa_enrollment_required`.
pub fn api_allows_before_enrolment(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    let path = path.trim_end_matches('/');
    matches!(
        (method, path),
        (&Method::GET, "/api/v1/me" | "/api/v1/mfa" | "/saas/me")
            | (
                &Method::POST,
                "/api/v1/logout"
                    | "/api/v1/mfa/totp/setup"
                    | "/api/v1/mfa/totp/confirm"
                    | "/api/v1/passkeys/register/start"
                    | "/api/v1/passkeys/register/finish"
            )
    )
}

/// The pages such a person may still open: the two-factor set-up, and logging out. Every other
/// page sends them to `/account/two-factor`.
pub fn page_allows_before_enrolment(path: &str) -> bool {
    path == "/logout" || path == "/account/two-factor" || path.starts_with("/account/two-factor/")
}

// ---------------------------------------------------------------------------------------------
// The login's second step.

/// The second step a password (or a magic link) leads to when two-factor sign-in is on.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub token: String,
    pub expires_at: Timestamp,
}

/// Mints the key of a login's second step for `user`, on the caller's transaction.
pub async fn challenge(tx: &mut Tx, user: &users::User, now: Timestamp) -> sqlx::Result<Challenge> {
    let secret = keys::mint_another(tx, CHALLENGE_PURPOSE, user, CHALLENGE_LIFETIME, now).await?;
    let expires_at = now.plus(CHALLENGE_LIFETIME);
    Ok(Challenge {
        token: secret.clear,
        expires_at,
    })
}

#[derive(Debug, Error)]
pub enum SecondStepError {
    /// Unknown, expired, used, or dead after too many wrong codes: one answer.
    #[error("the two-factor step is over; sign in again")]
    InvalidToken,
    #[error("the code is wrong")]
    InvalidCode,
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SecondStepError {
    fn from(err: sqlx::Error) -> Self {
        SecondStepError::Unexpected(err.into())
    }
}

/// Completes a login with the code of its second step (a TOTP code or a recovery code).
pub async fn complete_login(
    app: &App,
    token: &str,
    code: &str,
    client: ClientInfo,
) -> Result<LoggedIn, SecondStepError> {
    let c = &app.config;
    let ip = client.ip.as_deref();
    let by_ip = ratelimit::hit(
        app,
        c.rate_limit_login_ip,
        ratelimit::address_bucket("login-ip", ip),
    )
    .await??;
    let now = app.clock.now();
    let (key, user, totp) = {
        let mut tx = app.db.read().await?;
        let key = keys::find_usable(tx.conn(), CHALLENGE_PURPOSE, token, now)
            .await?
            .map_err(|_| SecondStepError::InvalidToken)?;
        let user_id = key.user_id.ok_or(SecondStepError::InvalidToken)?;
        let user = users::find(tx.conn(), user_id)
            .await?
            .filter(|u| u.is_active)
            .ok_or(SecondStepError::InvalidToken)?;
        let totp = store::find_totp(tx.conn(), user_id)
            .await?
            .filter(|t| t.confirmed_at.is_some())
            .ok_or(SecondStepError::InvalidToken)?;
        (key, user, totp)
    };
    let by_account = ratelimit::hit(
        app,
        c.rate_limit_login_account,
        ratelimit::bucket_from("login", &user.email_key, ip),
    )
    .await??;

    let step = matching_step(app, &totp, code, now)?;
    let mut tx = app.db.begin().await?;
    let method = match step {
        Some(step) if store::take_step(tx.conn(), user.id, step, false, now).await? => "totp",
        Some(_) => "",
        None if store::use_recovery_code(tx.conn(), user.id, &recovery_digest(code), now)
            .await? =>
        {
            "recovery_code"
        }
        None => "",
    };
    if method.is_empty() {
        drop(tx);
        let mut tx = app.db.begin().await?;
        one_time_keys::count_failure(tx.conn(), key.id, MAX_WRONG_CODES, now).await?;
        audit::record(
            tx.conn(),
            now,
            Event::new(Action::LoginFailed, Actor::User(user.id))
                .details(json!({"reason": "invalid_mfa_code"})),
        )
        .await?;
        tx.commit_quietly().await?;
        return Err(SecondStepError::InvalidCode);
    }
    if !one_time_keys::consume(tx.conn(), key.id, now).await? {
        return Err(SecondStepError::InvalidToken);
    }
    if method == "recovery_code" {
        let remaining = store::count_unused_recovery_codes(tx.conn(), user.id).await?;
        let mut event = Event::new(Action::RecoveryCodeUsed, Actor::User(user.id))
            .target("user", user.id)
            .details(json!({"remaining": remaining}));
        // In the log of the business the session opens for, beside the login itself.
        if let Some(business) =
            crate::store::members::default_business_of(tx.conn(), user.id).await?
        {
            event = event.business(business);
        }
        audit::record(tx.conn(), now, event).await?;
    }
    let done = super::finish_login(app, tx, user, now, client, method)
        .await
        .map_err(|e| match e {
            super::LoginError::Unexpected(e) => SecondStepError::Unexpected(e),
            // No business to open a session for (any longer).
            super::LoginError::InvalidCredentials => SecondStepError::InvalidToken,
            other => SecondStepError::Unexpected(anyhow::anyhow!("{other}")),
        })?;
    for hit in [by_ip, by_account] {
        hit.refund(app).await?;
    }
    Ok(done)
}

/// Re-seals every TOTP seed under the current key; how many were re-sealed.
pub async fn reseal_secrets(
    db: &crate::db::Db,
    sealer: &crate::seal::Sealer,
) -> anyhow::Result<u64> {
    let all = {
        let mut tx = db.read().await?;
        store::all_sealed(tx.conn()).await?
    };
    let mut count = 0;
    for (user, sealed) in all {
        let Some(resealed) = sealer
            .reseal(&sealed, &seal_context(user))
            .map_err(|e| anyhow::anyhow!("the TOTP seed of {user} cannot be opened: {e}"))?
        else {
            continue;
        };
        let mut tx = db.begin().await?;
        store::set_sealed(tx.conn(), user, &resealed).await?;
        tx.commit_quietly().await?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 seed and the expected codes (eight digits there; the
    /// six-digit code is the same number's last six digits).
    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        let seed = b"12345678901234567890".to_vec();
        let totp = totp_rs::Builder::new()
            .with_secret(seed)
            .with_digits(8)
            .with_step_duration(30)
            .with_skew(0)
            .build()
            .expect("valid parameters");
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp.generate(time).to_string(), code, "at {time}");
            let six = authenticator(b"12345678901234567890".to_vec(), "x", "a@b").expect("ok");
            assert_eq!(
                six.generate(time).to_string(),
                code[2..],
                "six digits at {time}"
            );
        }
    }

    #[test]
    fn recovery_codes_are_typed_loosely_and_drawn_from_a_readable_alphabet() {
        let code = recovery_code().expect("random");
        assert_eq!(code.len(), 11);
        assert_eq!(code.as_bytes()[5], b'-');
        assert!(
            code.chars()
                .all(|c| c == '-' || c.is_ascii_lowercase() || ('2'..='7').contains(&c)),
            "{code}"
        );
        assert_eq!(
            recovery_digest(&code),
            recovery_digest(&format!(" {} ", code.to_uppercase().replace('-', " ")))
        );
        assert_ne!(recovery_digest(&code), recovery_digest("aaaaa-aaaaa"));
    }
}
