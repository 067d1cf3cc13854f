//! API keys and bots: the credentials that are not a person's login.
//!
//! An API key belongs to its business (not to whoever created it), carries the `sdk` scope and
//! its secret starts with `sk_live_` so secret scanners recognise it. Rotating a key keeps its
//! id and gives it a new secret; the old one works on for the overlap asked for. Anyone holding
//! a leaked secret may revoke it. A bot is a member that is not a person: a user row that can
//! never log in, the `bot` role, and one token with the scopes its creator gave it (never more
//! than the creator's own).

use chrono::Duration;
use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use crate::accounts::{ClientInfo, Principal};
use crate::app::App;
use crate::audit::{self, Action, Actor, Event};
use crate::db::Timestamp;
use crate::domain::{Permission, Role, Scope, Scopes};
use crate::metering::{self, QuotaError};
use crate::secret;
use crate::store::members::{self, Member};
use crate::store::tokens::{self, Token};
use crate::store::users::{self, User};
use crate::teams::members::MemberError;

/// The marker of API key secrets: `sk_live_…`.
pub const API_KEY_MARKER: &str = "sk_live";
/// The marker of bot tokens: `skb_…`.
pub const BOT_MARKER: &str = "skb";
/// The longest overlap a rotation may ask for.
pub const MAX_OVERLAP_SECS: u32 = 7 * 24 * 3600;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("only owners and admins manage keys and bots")]
    Forbidden,
    #[error("no such key")]
    NotFound,
    #[error("the requested scopes are more than the caller has")]
    ScopesTooBroad,
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for KeyError {
    fn from(err: sqlx::Error) -> Self {
        KeyError::Unexpected(err.into())
    }
}

/// A key or bot token as listed: never its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    #[schema(required = true)]
    pub name: Option<String>,
    /// The secret's first characters, to tell keys apart (`sk_live_AbCd`).
    pub prefix: String,
    #[schema(value_type = Vec<crate::domain::Scope>)]
    pub scopes: Vec<&'static str>,
    pub created_at: Timestamp,
    #[schema(required = true)]
    pub last_used_at: Option<Timestamp>,
    #[schema(required = true)]
    pub expires_at: Option<Timestamp>,
    #[schema(required = true)]
    pub revoked_at: Option<Timestamp>,
    #[schema(required = true)]
    pub revoked_reason: Option<String>,
}

impl From<Token> for KeyView {
    fn from(t: Token) -> Self {
        KeyView {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            scopes: Scopes::from_stored(&t.scopes).names(),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            revoked_reason: t.revoked_reason,
        }
    }
}

/// A key with its secret, shown once: at creation and at rotation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewKey {
    pub id: Uuid,
    #[schema(required = true)]
    pub name: Option<String>,
    pub prefix: String,
    /// The secret (`sk_live_…`), shown this once: use it as `Authorization: Bearer <key>`.
    pub key: String,
    #[schema(value_type = Vec<crate::domain::Scope>)]
    pub scopes: Vec<&'static str>,
    pub created_at: Timestamp,
    /// After a rotation: until when the previous secret keeps working (null: it stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_key_expires_at: Option<Timestamp>,
}

fn manager(principal: &Principal) -> Result<Uuid, KeyError> {
    match &principal.member {
        Some(m) if m.role.may(Permission::ManageKeys) => Ok(m.user_id),
        _ => Err(KeyError::Forbidden),
    }
}

/// Creates a named API key for the caller's business.
pub async fn create_api_key(
    app: &App,
    principal: &Principal,
    name: &str,
) -> Result<NewKey, KeyError> {
    let creator = manager(principal)?;
    let now = app.clock.now();
    let secret = secret::generate(API_KEY_MARKER);
    let scopes = Scopes::of([Scope::Sdk]);
    let token = Token {
        id: Uuid::now_v7(),
        kind: "api_key".to_owned(),
        hash: secret.hash.clone(),
        prefix: secret.prefix.clone(),
        name: Some(name.to_owned()),
        user_id: None,
        business_id: Some(principal.business_id),
        scopes: scopes.to_stored(),
        user_agent: None,
        ip: None,
        created_at: now,
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        replaced_by: None,
        created_by: Some(creator),
        revoked_reason: None,
    };
    let mut tx = app.db.begin().await?;
    tokens::insert(tx.conn(), &token).await?;
    crate::webhooks::emit(
        tx.conn(),
        now,
        principal.business_id,
        "api_key.created",
        json!({"business_id": principal.business_id,
               "api_key": {"id": token.id, "name": name, "prefix": secret.prefix}}),
    )
    .await?;
    let event = Event::by(Action::ApiKeyCreated, principal)
        .target("api_key", token.id)
        .details(json!({"name": name, "prefix": secret.prefix}));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    tracing::info!(key_id = %token.id, business_id = %principal.business_id, "API key created");
    Ok(NewKey {
        id: token.id,
        name: token.name,
        prefix: secret.prefix,
        key: secret.clear,
        scopes: scopes.names(),
        created_at: now,
        previous_key_expires_at: None,
    })
}

pub async fn list_api_keys(
    app: &App,
    principal: &Principal,
    include_revoked: bool,
) -> Result<Vec<KeyView>, KeyError> {
    manager(principal)?;
    let mut tx = app.db.read().await?;
    let keys =
        tokens::list_of_business(tx.conn(), principal.business_id, "api_key", include_revoked)
            .await?;
    Ok(keys.into_iter().map(KeyView::from).collect())
}

/// Revokes a key at once, with any old secret a rotation left alive.
pub async fn revoke_api_key(app: &App, principal: &Principal, id: Uuid) -> Result<(), KeyError> {
    manager(principal)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let key = tokens::find_live_of_business(tx.conn(), principal.business_id, id, "api_key")
        .await?
        .ok_or(KeyError::NotFound)?;
    tokens::revoke_with_overlaps(tx.conn(), id, "revoked", now).await?;
    crate::webhooks::emit(
        tx.conn(),
        now,
        principal.business_id,
        "api_key.revoked",
        json!({"business_id": principal.business_id,
               "api_key": {"id": id, "name": key.name, "prefix": key.prefix}}),
    )
    .await?;
    let event = Event::by(Action::ApiKeyRevoked, principal).target("api_key", id);
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    tracing::info!(key_id = %id, business_id = %principal.business_id, "API key revoked");
    Ok(())
}

/// Gives a key a new secret. The old one keeps working for `overlap_secs` (0: not at all).
pub async fn rotate_api_key(
    app: &App,
    principal: &Principal,
    id: Uuid,
    overlap_secs: u32,
) -> Result<NewKey, KeyError> {
    manager(principal)?;
    let overlap_secs = overlap_secs.min(MAX_OVERLAP_SECS);
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    // Two rotations of one key at once would otherwise both replace the secret (PostgreSQL).
    crate::store::businesses::lock(tx.conn(), principal.business_id).await?;
    let old = tokens::find_live_of_business(tx.conn(), principal.business_id, id, "api_key")
        .await?
        .ok_or(KeyError::NotFound)?;
    // Only the secret being replaced now may live on: older ones from earlier rotations die.
    tokens::revoke_overlaps(tx.conn(), id, now).await?;
    let secret = secret::generate(API_KEY_MARKER);
    if !tokens::replace_secret(tx.conn(), id, &secret.hash, &secret.prefix).await? {
        return Err(KeyError::NotFound);
    }
    let previous_key_expires_at = if overlap_secs > 0 {
        let until = now.plus(Duration::seconds(i64::from(overlap_secs)));
        // The old secret lives on as its own row, pointing at the key it was rotated into,
        // so revoking the key kills it too and listings show one key.
        tokens::insert(
            tx.conn(),
            &Token {
                id: Uuid::now_v7(),
                replaced_by: Some(id),
                expires_at: Some(until),
                revoked_reason: None,
                ..old.clone()
            },
        )
        .await?;
        Some(until)
    } else {
        None
    };
    let event = Event::by(Action::ApiKeyRotated, principal)
        .target("api_key", id)
        .details(json!({"prefix": secret.prefix, "overlap_seconds": overlap_secs}));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    tracing::info!(key_id = %id, overlap_secs, "API key rotated");
    Ok(NewKey {
        id,
        name: old.name,
        prefix: secret.prefix,
        key: secret.clear,
        scopes: Scopes::from_stored(&old.scopes).names(),
        created_at: old.created_at,
        previous_key_expires_at,
    })
}

/// Revokes whatever live secret `presented` is (API key, bot or session token), for whoever
/// found it leaked; remembers where the report came from. Returns whether it was live.
pub async fn revoke_leaked(
    app: &App,
    presented: &str,
    reporter: &ClientInfo,
) -> Result<bool, KeyError> {
    let now = app.clock.now();
    let hash = secret::digest(presented);
    // Look first without the write lock: most reports of random strings find nothing.
    let found = {
        let mut tx = app.db.read().await?;
        tokens::find_live_by_hash(tx.conn(), &hash, now).await?
    };
    let Some(token) = found else {
        return Ok(false);
    };
    let user_agent = reporter.user_agent.as_deref().map(|ua| {
        ua.chars()
            .filter(|c| !c.is_control())
            .take(512)
            .collect::<String>()
    });
    let mut tx = app.db.begin().await?;
    if !tokens::revoke_leaked(
        tx.conn(),
        token.id,
        now,
        reporter.ip.as_deref(),
        user_agent.as_deref(),
    )
    .await?
    {
        return Ok(false);
    }
    // A key's current secret leaked: the old secrets its rotations left alive die with it.
    if token.replaced_by.is_none() {
        tokens::revoke_with_overlaps(tx.conn(), token.id, "leaked", now).await?;
    }
    if let (Some(business), "api_key") = (token.business_id, token.kind.as_str()) {
        crate::webhooks::emit(
            tx.conn(),
            now,
            business,
            "api_key.revoked",
            json!({"business_id": business,
                   "api_key": {"id": token.id, "name": token.name, "prefix": token.prefix}}),
        )
        .await?;
    }
    let mut event = Event::new(Action::SecretReportedLeaked, Actor::Anonymous)
        .target("token", token.id)
        .details(json!({"kind": token.kind, "prefix": token.prefix}));
    if let Some(business) = token.business_id {
        event = event.business(business);
    }
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    tracing::warn!(
        token_id = %token.id,
        kind = %token.kind,
        prefix = %token.prefix,
        reporter_ip = reporter.ip.as_deref().unwrap_or("-"),
        "secret reported as leaked and revoked"
    );
    Ok(true)
}

/// A bot as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BotView {
    /// The bot's member id.
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub role: Role,
    #[schema(value_type = Vec<crate::domain::Scope>)]
    pub scopes: Vec<&'static str>,
    pub token_prefix: String,
    /// Set when the bot's token was revoked (reported leaked); delete the bot and make another.
    #[schema(required = true)]
    pub token_revoked_at: Option<Timestamp>,
    pub created_at: Timestamp,
    #[schema(required = true)]
    pub last_used_at: Option<Timestamp>,
}

/// A new bot, with its token shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewBot {
    #[serde(flatten)]
    pub bot: BotView,
    /// The bot's token (`skb_…`), shown this once.
    pub token: String,
}

/// Adds a bot member to the caller's business, counted against the plan's `members` limit,
/// with a token carrying `scopes` (which must be within the caller's own).
pub async fn create_bot(
    app: &App,
    principal: &Principal,
    name: &str,
    scopes: Scopes,
) -> Result<NewBot, KeyError> {
    let creator = manager(principal)?;
    if !principal.scopes.covers(scopes) {
        return Err(KeyError::ScopesTooBroad);
    }
    let now = app.clock.now();
    let user_id = Uuid::now_v7();
    let user = User {
        id: user_id,
        email: format!("bot-{user_id}@bots.invalid"),
        email_key: format!("bot-{user_id}@bots.invalid"),
        first_name: name.to_owned(),
        last_name: String::new(),
        is_active: true,
        is_staff: false,
        email_verified_at: None,
        created_at: now,
        updated_at: now,
    };
    let member = Member {
        id: Uuid::now_v7(),
        business_id: principal.business_id,
        user_id,
        role: Role::Bot.as_str().to_owned(),
        status: "active".to_owned(),
        created_at: now,
        updated_at: now,
    };
    let secret = secret::generate(BOT_MARKER);
    let token = Token {
        id: Uuid::now_v7(),
        kind: "bot".to_owned(),
        hash: secret.hash.clone(),
        prefix: secret.prefix.clone(),
        name: Some(name.to_owned()),
        user_id: Some(user_id),
        business_id: Some(principal.business_id),
        scopes: scopes.to_stored(),
        user_agent: None,
        ip: None,
        created_at: now,
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        replaced_by: None,
        created_by: Some(creator),
        revoked_reason: None,
    };
    let mut tx = app.db.begin().await?;
    metering::consume(&mut tx, principal, metering::MEMBERS, 1, now).await?;
    users::insert_bot(tx.conn(), &user).await?;
    members::insert(tx.conn(), &member).await?;
    tokens::insert(tx.conn(), &token).await?;
    let event = Event::by(Action::BotCreated, principal)
        .target("member", member.id)
        .details(json!({"name": name, "scopes": token.scopes}));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    tracing::info!(member_id = %member.id, business_id = %principal.business_id, "bot created");
    Ok(NewBot {
        bot: BotView {
            id: member.id,
            user_id,
            name: name.to_owned(),
            role: Role::Bot,
            scopes: scopes.names(),
            token_prefix: secret.prefix,
            token_revoked_at: None,
            created_at: now,
            last_used_at: None,
        },
        token: secret.clear,
    })
}

pub async fn list_bots(app: &App, principal: &Principal) -> Result<Vec<BotView>, KeyError> {
    manager(principal)?;
    let mut tx = app.db.read().await?;
    // Every bot token, revoked ones included: a bot whose token was reported leaked is still a
    // member (and counts against the limit) until it is deleted, so it must stay visible.
    let tokens = tokens::list_of_business(tx.conn(), principal.business_id, "bot", true).await?;
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        let Some(user_id) = t.user_id else { continue };
        let Some(member) = members::find(tx.conn(), principal.business_id, user_id).await? else {
            continue;
        };
        if member.status != "active" {
            continue;
        }
        out.push(BotView {
            id: member.id,
            user_id,
            name: t.name.clone().unwrap_or_default(),
            role: Role::Bot,
            scopes: Scopes::from_stored(&t.scopes).names(),
            token_prefix: t.prefix,
            token_revoked_at: t.revoked_at,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
        });
    }
    Ok(out)
}

/// Removes a bot: its membership ends, its token stops working, and it no longer counts
/// against the `members` limit.
pub async fn delete_bot(app: &App, principal: &Principal, member_id: Uuid) -> Result<(), KeyError> {
    manager(principal)?;
    let is_bot = {
        let mut tx = app.db.read().await?;
        members::find_by_id(tx.conn(), principal.business_id, member_id)
            .await?
            .is_some_and(|m| m.role == Role::Bot.as_str() && m.status == "active")
    };
    if !is_bot {
        return Err(KeyError::NotFound);
    }
    // Removing a bot is removing a member: one mechanism, one set of rules.
    crate::teams::members::remove(app, principal, member_id)
        .await
        .map_err(|err| match err {
            MemberError::NotFound => KeyError::NotFound,
            MemberError::Forbidden(_) => KeyError::Forbidden,
            other => KeyError::Unexpected(anyhow::anyhow!("removing bot {member_id}: {other}")),
        })
}
