use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

#[derive(Debug, Clone, FromRow)]
pub struct Token {
    pub id: Uuid,
    /// `session`, `api_key` or `bot`.
    pub kind: String,
    /// SHA-256 of the secret; the secret itself is never stored.
    pub hash: Vec<u8>,
    pub prefix: String,
    pub name: Option<String>,
    pub user_id: Option<Uuid>,
    pub business_id: Option<Uuid>,
    /// JSON array of scope names.
    pub scopes: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// During an API key rotation's overlap: the key this old secret was rotated into.
    pub replaced_by: Option<Uuid>,
    pub created_by: Option<Uuid>,
    /// `revoked`, `rotated`, `leaked`, `logout`… for people reading a key's history.
    pub revoked_reason: Option<String>,
}

pub async fn insert(c: Conn<'_>, token: &Token) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO tokens (id, kind, hash, prefix, name, user_id, business_id, scopes, \
         user_agent, ip, created_at, last_used_at, expires_at, revoked_at, replaced_by, \
         created_by, revoked_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(token.id)
    .bind(&token.kind)
    .bind(&token.hash)
    .bind(&token.prefix)
    .bind(&token.name)
    .bind(token.user_id)
    .bind(token.business_id)
    .bind(&token.scopes)
    .bind(&token.user_agent)
    .bind(&token.ip)
    .bind(token.created_at)
    .bind(token.last_used_at)
    .bind(token.expires_at)
    .bind(token.revoked_at)
    .bind(token.replaced_by)
    .bind(token.created_by)
    .bind(&token.revoked_reason)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Revokes one token; returns whether it was live until now.
pub async fn revoke(c: Conn<'_>, id: Uuid, now: Timestamp) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// [`touch`]'s statement: `$1` the token, `$2` now, `$3` the time before which a use is stale.
pub const TOUCH: &str = "UPDATE tokens SET last_used_at = $2 \
                         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)";

/// Records use of a token, at most once per `min_interval` (the condition makes concurrent
/// requests write once, and most requests not at all).
pub async fn touch(
    c: Conn<'_>,
    id: Uuid,
    now: Timestamp,
    stale_before: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(TOUCH)
    .bind(id)
    .bind(now)
    .bind(stale_before)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Everything a request needs to know about who is calling, found from the token's digest in
/// one query: the token, the business, its current subscription with the plan's limits and,
/// for a person's or a bot's token, the user and their membership. API keys belong to the
/// business, not to whoever created them, so they carry no user. Tokens that are revoked,
/// expired, or whose user, membership or business is inactive, find nothing.
#[derive(Debug, Clone, FromRow)]
pub struct AuthRow {
    pub token_id: Uuid,
    pub token_kind: String,
    pub token_scopes: String,
    pub token_last_used_at: Option<Timestamp>,
    pub token_expires_at: Option<Timestamp>,
    pub user_id: Option<Uuid>,
    pub user_email: Option<String>,
    pub user_first_name: Option<String>,
    pub user_last_name: Option<String>,
    pub user_is_staff: Option<bool>,
    pub user_email_verified_at: Option<Timestamp>,
    pub user_created_at: Option<Timestamp>,
    pub business_id: Uuid,
    pub business_name: String,
    pub business_created_at: Timestamp,
    pub business_require_mfa: bool,
    /// Whether the user signs in with a second factor (null for an API key).
    pub user_has_mfa: Option<bool>,
    pub member_id: Option<Uuid>,
    pub member_role: Option<String>,
    pub subscription_id: Option<Uuid>,
    pub subscription_status: Option<String>,
    pub subscription_period_start: Option<Timestamp>,
    pub subscription_period_end: Option<Timestamp>,
    pub plan_id: Option<Uuid>,
    pub plan_code: Option<String>,
    pub plan_limits: Option<String>,
}

/// `idle_before`: a session last used before this has lapsed.
pub async fn find_auth(
    c: Conn<'_>,
    hash: &[u8],
    now: Timestamp,
    idle_before: Timestamp,
) -> sqlx::Result<Option<AuthRow>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT t.id AS token_id, t.kind AS token_kind, t.scopes AS token_scopes, \
         t.last_used_at AS token_last_used_at, t.expires_at AS token_expires_at, \
         u.id AS user_id, u.email AS user_email, u.first_name AS user_first_name, \
         u.last_name AS user_last_name, u.is_staff AS user_is_staff, \
         u.email_verified_at AS user_email_verified_at, u.created_at AS user_created_at, \
         b.id AS business_id, b.name AS business_name, b.created_at AS business_created_at, \
         b.require_mfa AS business_require_mfa, \
         CASE WHEN u.id IS NULL THEN NULL ELSE (EXISTS (SELECT 1 FROM user_totp x \
              WHERE x.user_id = u.id AND x.confirmed_at IS NOT NULL) \
              OR EXISTS (SELECT 1 FROM passkeys k WHERE k.user_id = u.id)) END AS user_has_mfa, \
         m.id AS member_id, m.role AS member_role, \
         s.id AS subscription_id, s.status AS subscription_status, \
         s.current_period_start AS subscription_period_start, \
         s.current_period_end AS subscription_period_end, s.plan_id AS plan_id, \
         p.code AS plan_code, CAST(p.limits AS TEXT) AS plan_limits \
         FROM tokens t \
         JOIN businesses b ON b.id = t.business_id \
         LEFT JOIN users u ON u.id = t.user_id AND t.kind <> 'api_key' \
         LEFT JOIN members m ON m.business_id = t.business_id AND m.user_id = t.user_id \
              AND t.kind <> 'api_key' \
         LEFT JOIN subscriptions s ON s.business_id = b.id AND s.is_current \
         LEFT JOIN plans p ON p.id = s.plan_id \
         WHERE t.hash = $1 AND t.revoked_at IS NULL \
         AND (t.expires_at IS NULL OR t.expires_at > $2) AND b.is_active \
         AND (t.kind <> 'session' OR t.last_used_at IS NULL OR t.last_used_at >= $3) \
         AND (t.kind = 'api_key' OR (u.is_active AND m.status = 'active'))",
    )
    .bind(hash)
    .bind(now)
    .bind(idle_before)
    .fetch_optional(&mut *c)
    .await)
}

/// Revokes every live token of a user (after a password reset).
pub async fn revoke_all_of_user(c: Conn<'_>, user_id: Uuid, now: Timestamp) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// A business's API keys (or bot tokens), newest first; the secrets left alive by a rotation's
/// overlap are not keys of their own and are not listed.
pub async fn list_of_business(
    c: Conn<'_>,
    business_id: Uuid,
    kind: &str,
    include_revoked: bool,
) -> sqlx::Result<Vec<Token>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, kind, hash, prefix, name, user_id, business_id, scopes, user_agent, \
         ip, created_at, last_used_at, expires_at, revoked_at, replaced_by, created_by, \
         revoked_reason FROM tokens \
         WHERE business_id = $1 AND kind = $2 AND replaced_by IS NULL \
         AND ($3 OR revoked_at IS NULL) ORDER BY created_at DESC, id DESC",
    )
    .bind(business_id)
    .bind(kind)
    .bind(include_revoked)
    .fetch_all(&mut *c)
    .await)
}

/// One live token of a business, by id and kind.
pub async fn find_live_of_business(
    c: Conn<'_>,
    business_id: Uuid,
    id: Uuid,
    kind: &str,
) -> sqlx::Result<Option<Token>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, kind, hash, prefix, name, user_id, business_id, scopes, user_agent, \
         ip, created_at, last_used_at, expires_at, revoked_at, replaced_by, created_by, \
         revoked_reason FROM tokens \
         WHERE id = $1 AND business_id = $2 AND kind = $3 AND replaced_by IS NULL \
         AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(business_id)
    .bind(kind)
    .fetch_optional(&mut *c)
    .await)
}

/// Revokes a token and the secrets still alive from its rotations; returns how many died.
pub async fn revoke_with_overlaps(
    c: Conn<'_>,
    id: Uuid,
    reason: &str,
    now: Timestamp,
) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET revoked_at = $2, revoked_reason = $3 \
         WHERE (id = $1 OR replaced_by = $1) AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .bind(reason)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Gives a key a new secret, keeping its id. Returns false if the key is no longer live.
pub async fn replace_secret(
    c: Conn<'_>,
    id: Uuid,
    hash: &[u8],
    prefix: &str,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET hash = $2, prefix = $3, last_used_at = NULL \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(hash)
    .bind(prefix)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// The live token with this digest, whatever its kind (for reports of leaked secrets).
pub async fn find_live_by_hash(
    c: Conn<'_>,
    hash: &[u8],
    now: Timestamp,
) -> sqlx::Result<Option<Token>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, kind, hash, prefix, name, user_id, business_id, scopes, user_agent, \
         ip, created_at, last_used_at, expires_at, revoked_at, replaced_by, created_by, \
         revoked_reason FROM tokens \
         WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(&mut *c)
    .await)
}

/// Revokes one secret reported as leaked, remembering where the report came from.
pub async fn revoke_leaked(
    c: Conn<'_>,
    id: Uuid,
    now: Timestamp,
    reporter_ip: Option<&str>,
    reporter_user_agent: Option<&str>,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET revoked_at = $2, revoked_reason = 'leaked', leak_reported_ip = $3, \
         leak_reported_user_agent = $4 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .bind(reporter_ip)
    .bind(reporter_user_agent)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Revokes every live token a user holds for one business (they left it or were removed).
pub async fn revoke_all_of_member(
    c: Conn<'_>,
    business_id: Uuid,
    user_id: Uuid,
    now: Timestamp,
) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET revoked_at = $3, revoked_reason = 'member_removed' \
         WHERE business_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(business_id)
    .bind(user_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Revokes the old secrets a key's earlier rotations left alive (not the key itself).
pub async fn revoke_overlaps(c: Conn<'_>, id: Uuid, now: Timestamp) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET revoked_at = $2, revoked_reason = 'rotated' \
         WHERE replaced_by = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// A person's (or a bot's) token as the sessions API lists it.
#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub kind: String,
    pub business_id: Option<Uuid>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

/// A user's live tokens (not revoked, not expired, not idle since before `idle_before`),
/// most recently used first.
pub async fn live_of_user(
    c: Conn<'_>,
    user_id: Uuid,
    now: Timestamp,
    idle_before: Timestamp,
) -> sqlx::Result<Vec<SessionRow>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, kind, business_id, user_agent, ip, created_at, last_used_at, expires_at \
         FROM tokens WHERE user_id = $1 AND kind <> 'api_key' AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $2) \
         AND (kind <> 'session' OR last_used_at IS NULL OR last_used_at >= $3) \
         ORDER BY last_used_at DESC, id DESC",
    )
    .bind(user_id)
    .bind(now)
    .bind(idle_before)
    .fetch_all(&mut *c)
    .await)
}

/// Revokes one of a user's tokens; `false` when it is not theirs or not live.
pub async fn revoke_of_user(
    c: Conn<'_>,
    user_id: Uuid,
    id: Uuid,
    now: Timestamp,
    reason: &str,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET revoked_at = $3, revoked_reason = $4 \
         WHERE id = $2 AND user_id = $1 AND kind <> 'api_key' AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(id)
    .bind(now)
    .bind(reason)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Revokes every live token of a user except `keep`.
pub async fn revoke_others_of_user(
    c: Conn<'_>,
    user_id: Uuid,
    keep: Uuid,
    now: Timestamp,
    reason: &str,
) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET revoked_at = $3, revoked_reason = $4 \
         WHERE user_id = $1 AND id <> $2 AND kind <> 'api_key' AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(keep)
    .bind(now)
    .bind(reason)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Whether the user ever opened a session from `ip` (revoked and expired ones count: an
/// address the owner used is theirs).
pub async fn has_logged_in_from(c: Conn<'_>, user_id: Uuid, ip: &str) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM tokens WHERE user_id = $1 AND kind = 'session' AND ip = $2)",
    )
    .bind(user_id)
    .bind(ip)
    .fetch_one(&mut *c)
    .await)
}

/// Revokes every live token of a business: sessions, bots and API keys (it is being closed).
pub async fn revoke_all_of_business(
    c: Conn<'_>,
    business_id: Uuid,
    now: Timestamp,
) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET revoked_at = $2, revoked_reason = 'business_closed' \
         WHERE business_id = $1 AND revoked_at IS NULL",
    )
    .bind(business_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}
