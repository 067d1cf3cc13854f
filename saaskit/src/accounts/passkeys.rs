//! Passkeys (WebAuthn, with webauthn-rs as the relying party): a person registers credentials
//! their devices keep, then signs in with one and nothing else — a discoverable credential names
//! its account, and unlocking it (user verification) is the second factor, so a passkey also
//! satisfies a business's two-factor rule.
//!
//! Each ceremony has two halves: `start` answers the options for `navigator.credentials.create`
//! or `.get` and keeps the server's half (the challenge) sealed in `passkey_ceremonies` for five
//! minutes, under an id the client sends back with the authenticator's answer to `finish`, which
//! takes it once. The relying party is `SAASKIT_PUBLIC_URL`: its host is the RP id and it is the
//! one origin accepted (so it must be a host name: browsers refuse an IP address as an RP id).
//! Authenticators know a person by a random handle, not by their account id.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use serde_json::{Value, json};
use thiserror::Error;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};

use super::{ClientInfo, LoggedIn, Principal};
use crate::app::App;
use crate::audit::{self, Action, Actor, Event};
use crate::db::{Timestamp, Tx};
use crate::domain::Invalid;
use crate::ratelimit;
use crate::store::passkeys::{self as store, StoredPasskey};
use crate::store::users;

pub const CEREMONY_LIFETIME: Duration = Duration::minutes(5);
const NAME_MAX: usize = 64;
const REGISTRATION: &str = "registration";
const SIGN_IN: &str = "sign_in";

#[derive(Debug, Error)]
pub enum PasskeyError {
    #[error("only people have passkeys")]
    NotAPerson,
    #[error("passkeys are not available here: {0}")]
    Unavailable(String),
    /// Unknown, used, expired, or another person's: one answer.
    #[error("the passkey ceremony is over; start again")]
    CeremonyExpired,
    #[error("the authenticator's answer was refused: {0}")]
    Rejected(String),
    #[error("no such passkey")]
    NotFound,
    #[error("the name is not acceptable: {}", .0.message)]
    Name(Invalid),
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for PasskeyError {
    fn from(err: sqlx::Error) -> Self {
        PasskeyError::Unexpected(err.into())
    }
}

/// What a client hands to the browser (`options`) and sends back with its answer (`ceremony`).
#[derive(Debug, Clone)]
pub struct Started {
    pub ceremony: Uuid,
    pub options: Value,
}

/// The relying party `SAASKIT_PUBLIC_URL` describes.
fn relying_party(app: &App) -> Result<Webauthn, PasskeyError> {
    let url = Url::parse(&app.config.public_url)
        .map_err(|e| PasskeyError::Unavailable(format!("SAASKIT_PUBLIC_URL is not a URL: {e}")))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || bare.parse::<std::net::IpAddr>().is_ok() {
        return Err(PasskeyError::Unavailable(
            "SAASKIT_PUBLIC_URL must name a host (such as localhost), not an IP address: \
             browsers refuse an address as a passkey's site"
                .into(),
        ));
    }
    WebauthnBuilder::new(&host, &url)
        .and_then(|b| b.rp_name(&app.config.totp_issuer).build())
        .map_err(|e| PasskeyError::Unavailable(format!("relying party {host}: {e:?}")))
}

fn person(principal: &Principal) -> Result<&super::Membership, PasskeyError> {
    principal.person().ok_or(PasskeyError::NotAPerson)
}

fn seal_context(ceremony: Uuid) -> Vec<u8> {
    format!("passkey_ceremony:{ceremony}").into_bytes()
}

async fn keep(
    app: &App,
    tx: &mut Tx,
    kind: &str,
    user: Option<Uuid>,
    state: &impl serde::Serialize,
    now: Timestamp,
) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    let state = serde_json::to_string(state)?;
    let sealed = app.sealer.seal(&state, &seal_context(id));
    store::insert_ceremony(
        tx.conn(),
        id,
        kind,
        user,
        &sealed,
        now,
        now.plus(CEREMONY_LIFETIME),
    )
    .await?;
    Ok(id)
}

/// Takes the ceremony `id` of `kind` (once), with the server's half of it.
async fn take<T: serde::de::DeserializeOwned>(
    app: &App,
    tx: &mut Tx,
    id: Uuid,
    kind: &str,
    now: Timestamp,
) -> Result<(Option<Uuid>, T), PasskeyError> {
    let found = store::take_ceremony(tx.conn(), id, kind, now)
        .await?
        .ok_or(PasskeyError::CeremonyExpired)?;
    let state = app
        .sealer
        .open(&found.state_sealed, &seal_context(id))
        .map_err(|e| anyhow::anyhow!("passkey ceremony {id} cannot be opened: {e}"))?;
    let state = serde_json::from_str(&state)
        .map_err(|e| anyhow::anyhow!("passkey ceremony {id} is unreadable: {e}"))?;
    Ok((found.user_id, state))
}

fn credential_id(passkey: &Passkey) -> String {
    URL_SAFE_NO_PAD.encode(passkey.cred_id().as_slice())
}

fn parse_passkey(stored: &StoredPasskey) -> anyhow::Result<Passkey> {
    serde_json::from_str(&stored.credential)
        .map_err(|e| anyhow::anyhow!("passkey {} is unreadable: {e}", stored.id))
}

fn parse_name(name: Option<&str>, default: &str) -> Result<String, PasskeyError> {
    match name {
        None => Ok(default.to_owned()),
        Some(name) => {
            let name = crate::domain::parse_text(name, NAME_MAX, "A passkey's name")
                .map_err(PasskeyError::Name)?;
            if name.is_empty() {
                return Err(PasskeyError::Name(Invalid::new(
                    "required",
                    "A passkey's name may not be empty.",
                )));
            }
            Ok(name)
        }
    }
}

/// Starts registering a passkey for the caller: the options for `navigator.credentials.create`
/// (a discoverable credential, verified user; the caller's passkeys excluded).
pub async fn start_registration(app: &App, principal: &Principal) -> Result<Started, PasskeyError> {
    let member = person(principal)?;
    let rp = relying_party(app)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    users::lock(tx.conn(), member.user_id).await?;
    let handle = match store::webauthn_handle(tx.conn(), member.user_id).await? {
        Some(handle) => handle,
        None => {
            let handle = Uuid::new_v4();
            store::set_webauthn_handle(tx.conn(), member.user_id, handle).await?;
            handle
        }
    };
    let existing = store::list_of_user(tx.conn(), member.user_id)
        .await?
        .iter()
        .map(|p| parse_passkey(p).map(|k| k.cred_id().clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let display = format!("{} {}", member.first_name, member.last_name);
    let (challenge, state): (_, PasskeyRegistration) = rp
        .start_passkey_registration(handle, &member.email, display.trim(), Some(existing))
        .map_err(|e| anyhow::anyhow!("starting a passkey registration: {e:?}"))?;
    let mut options = serde_json::to_value(&challenge).map_err(anyhow::Error::from)?;
    // A passkey names its account at sign-in: it must be kept on the authenticator.
    let selection = &mut options["publicKey"]["authenticatorSelection"];
    selection["residentKey"] = json!("required");
    selection["requireResidentKey"] = json!(true);
    let ceremony = keep(
        app,
        &mut tx,
        REGISTRATION,
        Some(member.user_id),
        &state,
        now,
    )
    .await?;
    // A ceremony in flight changes nobody's sign-in.
    tx.commit_quietly().await?;
    Ok(Started { ceremony, options })
}

/// Finishes a registration with the authenticator's answer (`PublicKeyCredential.toJSON()`).
pub async fn finish_registration(
    app: &App,
    principal: &Principal,
    ceremony: Uuid,
    credential: Value,
    name: Option<&str>,
) -> Result<StoredPasskey, PasskeyError> {
    let member = person(principal)?;
    let name = parse_name(name, "Passkey")?;
    let rp = relying_party(app)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let (owner, state): (_, PasskeyRegistration) =
        take(app, &mut tx, ceremony, REGISTRATION, now).await?;
    if owner != Some(member.user_id) {
        return Err(PasskeyError::CeremonyExpired);
    }
    let answer: RegisterPublicKeyCredential = serde_json::from_value(credential)
        .map_err(|e| PasskeyError::Rejected(format!("not a WebAuthn registration: {e}")))?;
    let passkey = rp
        .finish_passkey_registration(&answer, &state)
        .map_err(|e| PasskeyError::Rejected(format!("{e:?}")))?;
    let credential_id = credential_id(&passkey);
    if store::find_by_credential_id(tx.conn(), &credential_id)
        .await?
        .is_some()
    {
        return Err(PasskeyError::Rejected(
            "this passkey is registered already".into(),
        ));
    }
    let stored = StoredPasskey {
        id: Uuid::now_v7(),
        user_id: member.user_id,
        credential_id,
        credential: serde_json::to_string(&passkey).map_err(anyhow::Error::from)?,
        name,
        created_at: now,
        last_used_at: None,
    };
    store::insert(tx.conn(), &stored).await?;
    let event = Event::by(Action::PasskeyAdded, principal).target("passkey", stored.id);
    audit::record(tx.conn(), now, event).await?;
    notify(app, &mut tx, member, "added", now).await?;
    // Loud: the person now has a second factor, which a business's rule reads.
    tx.commit().await?;
    app.mail_queued.notify_one();
    Ok(stored)
}

pub async fn list(app: &App, principal: &Principal) -> Result<Vec<StoredPasskey>, PasskeyError> {
    let member = person(principal)?;
    let mut tx = app.db.read().await?;
    Ok(store::list_of_user(tx.conn(), member.user_id).await?)
}

pub async fn rename(
    app: &App,
    principal: &Principal,
    id: Uuid,
    name: &str,
) -> Result<StoredPasskey, PasskeyError> {
    let member = person(principal)?;
    let name = parse_name(Some(name), "")?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    if !store::rename(tx.conn(), id, member.user_id, &name).await? {
        return Err(PasskeyError::NotFound);
    }
    let found = store::list_of_user(tx.conn(), member.user_id)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or(PasskeyError::NotFound)?;
    let event = Event::by(Action::PasskeyRenamed, principal).target("passkey", id);
    audit::record(tx.conn(), now, event).await?;
    tx.commit_quietly().await?;
    Ok(found)
}

pub async fn remove(app: &App, principal: &Principal, id: Uuid) -> Result<(), PasskeyError> {
    let member = person(principal)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    users::lock(tx.conn(), member.user_id).await?;
    if !store::delete(tx.conn(), id, member.user_id).await? {
        return Err(PasskeyError::NotFound);
    }
    let event = Event::by(Action::PasskeyRemoved, principal).target("passkey", id);
    audit::record(tx.conn(), now, event).await?;
    notify(app, &mut tx, member, "removed", now).await?;
    tx.commit().await?;
    app.mail_queued.notify_one();
    Ok(())
}

async fn notify(
    app: &App,
    tx: &mut Tx,
    member: &super::Membership,
    change: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let link = format!("{}/account", app.config.public_base());
    let rendered = crate::mail::SignInMethod {
        first_name: &member.first_name,
        email: &member.email,
        method: "A passkey",
        change,
        link: &link,
    }
    .render()?;
    crate::mail::enqueue(tx, &app.mailer, &member.email, rendered, now).await?;
    Ok(())
}

/// Starts a passwordless sign-in: the options for `navigator.credentials.get`, with no
/// credentials listed (the authenticator offers the passkeys it keeps for this site).
pub async fn start_sign_in(app: &App, client: &ClientInfo) -> Result<Started, PasskeyError> {
    let rp = relying_party(app)?;
    // Every start keeps a row for five minutes: counted like login attempts from the address.
    ratelimit::hit(
        app,
        app.config.rate_limit_login_ip,
        ratelimit::address_bucket("passkey-ip", client.ip.as_deref()),
    )
    .await??;
    let (challenge, state): (_, DiscoverableAuthentication) = rp
        .start_discoverable_authentication()
        .map_err(|e| anyhow::anyhow!("starting a passkey sign-in: {e:?}"))?;
    let mut options = serde_json::to_value(&challenge).map_err(anyhow::Error::from)?;
    // A button asks now; `conditional` would wait for the browser's autofill.
    if let Value::Object(fields) = &mut options {
        fields.remove("mediation");
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let ceremony = keep(app, &mut tx, SIGN_IN, None, &state, now).await?;
    tx.commit_quietly().await?;
    Ok(Started { ceremony, options })
}

/// Finishes a passwordless sign-in with the authenticator's answer: a session for the account
/// the passkey belongs to. A failure counts against the address's login limit.
pub async fn finish_sign_in(
    app: &App,
    ceremony: Uuid,
    credential: Value,
    client: ClientInfo,
) -> Result<LoggedIn, PasskeyError> {
    let rp = relying_party(app)?;
    let by_ip = ratelimit::hit(
        app,
        app.config.rate_limit_login_ip,
        ratelimit::address_bucket("login-ip", client.ip.as_deref()),
    )
    .await??;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let (_, state): (_, DiscoverableAuthentication) =
        take(app, &mut tx, ceremony, SIGN_IN, now).await?;
    // The ceremony is spent whatever follows.
    tx.commit_quietly().await?;
    let verified = verify(app, &rp, state, credential).await;
    let (stored, updated) = match verified {
        Ok(found) => found,
        Err(err) => {
            let mut tx = app.db.begin().await?;
            audit::record(
                tx.conn(),
                now,
                Event::new(Action::LoginFailed, Actor::Anonymous)
                    .details(json!({"reason": "invalid_passkey"})),
            )
            .await?;
            tx.commit_quietly().await?;
            return Err(err);
        }
    };
    let mut tx = app.db.begin().await?;
    let user = users::find(tx.conn(), stored.user_id)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(|| PasskeyError::Rejected("the account is closed".into()))?;
    store::used(tx.conn(), stored.id, updated.as_deref(), now).await?;
    let done = super::finish_login(app, tx, user, now, client, "passkey")
        .await
        .map_err(|e| match e {
            super::LoginError::Unexpected(e) => PasskeyError::Unexpected(e),
            other => PasskeyError::Rejected(other.to_string()),
        })?;
    by_ip.refund(app).await?;
    Ok(done)
}

/// Checks an assertion against the passkey it names: the passkey, and its new stored form if
/// its counters moved.
async fn verify(
    app: &App,
    rp: &Webauthn,
    state: DiscoverableAuthentication,
    credential: Value,
) -> Result<(StoredPasskey, Option<String>), PasskeyError> {
    let answer: PublicKeyCredential = serde_json::from_value(credential)
        .map_err(|e| PasskeyError::Rejected(format!("not a WebAuthn assertion: {e}")))?;
    let (handle, credential_id) = rp
        .identify_discoverable_authentication(&answer)
        .map_err(|e| PasskeyError::Rejected(format!("{e:?}")))?;
    let credential_id = URL_SAFE_NO_PAD.encode(credential_id);
    let stored = {
        let mut tx = app.db.read().await?;
        let stored = store::find_by_credential_id(tx.conn(), &credential_id)
            .await?
            .ok_or_else(|| PasskeyError::Rejected("no such passkey".into()))?;
        if store::user_of_handle(tx.conn(), handle).await? != Some(stored.user_id) {
            return Err(PasskeyError::Rejected(
                "the passkey belongs to another account".into(),
            ));
        }
        stored
    };
    let mut passkey = parse_passkey(&stored)?;
    let result = rp
        .finish_discoverable_authentication_v2(&answer, state, &passkey)
        .map_err(|e| PasskeyError::Rejected(format!("{e:?}")))?;
    if !result.user_verified() {
        return Err(PasskeyError::Rejected(
            "the authenticator did not verify its user".into(),
        ));
    }
    let updated = match passkey.update_credential(&result) {
        Some(true) => Some(serde_json::to_string(&passkey).map_err(anyhow::Error::from)?),
        _ => None,
    };
    Ok((stored, updated))
}
