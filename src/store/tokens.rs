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
}

pub async fn insert(c: Conn<'_>, token: &Token) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO tokens (id, kind, hash, prefix, name, user_id, business_id, scopes, \
         user_agent, ip, created_at, last_used_at, expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
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

/// Records use of a token, at most once per `min_interval` (the condition makes concurrent
/// requests write once, and most requests not at all).
pub async fn touch(
    c: Conn<'_>,
    id: Uuid,
    now: Timestamp,
    stale_before: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE tokens SET last_used_at = $2 \
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(id)
    .bind(now)
    .bind(stale_before)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Everything a request needs to know about who is calling, found from the token's digest in
/// one query: the token, its user and their membership, the business, and the business's
/// current subscription with its plan. Tokens that are revoked, expired, or whose user,
/// membership or business is inactive, find nothing.
#[derive(Debug, Clone, FromRow)]
pub struct AuthRow {
    pub token_id: Uuid,
    pub token_kind: String,
    pub token_scopes: String,
    pub token_last_used_at: Option<Timestamp>,
    pub token_expires_at: Option<Timestamp>,
    pub user_id: Uuid,
    pub user_email: String,
    pub user_first_name: String,
    pub user_last_name: String,
    pub user_is_staff: bool,
    pub user_email_verified_at: Option<Timestamp>,
    pub user_created_at: Timestamp,
    pub business_id: Uuid,
    pub business_name: String,
    pub business_created_at: Timestamp,
    pub member_id: Uuid,
    pub member_role: String,
    pub subscription_id: Option<Uuid>,
    pub subscription_status: Option<String>,
    pub subscription_period_start: Option<Timestamp>,
    pub subscription_period_end: Option<Timestamp>,
    pub plan_id: Option<Uuid>,
}

pub async fn find_auth(c: Conn<'_>, hash: &[u8], now: Timestamp) -> sqlx::Result<Option<AuthRow>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT t.id AS token_id, t.kind AS token_kind, t.scopes AS token_scopes, \
         t.last_used_at AS token_last_used_at, t.expires_at AS token_expires_at, \
         u.id AS user_id, u.email AS user_email, u.first_name AS user_first_name, \
         u.last_name AS user_last_name, u.is_staff AS user_is_staff, \
         u.email_verified_at AS user_email_verified_at, u.created_at AS user_created_at, \
         b.id AS business_id, b.name AS business_name, b.created_at AS business_created_at, \
         m.id AS member_id, m.role AS member_role, \
         s.id AS subscription_id, s.status AS subscription_status, \
         s.current_period_start AS subscription_period_start, \
         s.current_period_end AS subscription_period_end, s.plan_id AS plan_id \
         FROM tokens t \
         JOIN users u ON u.id = t.user_id \
         JOIN businesses b ON b.id = t.business_id \
         JOIN members m ON m.business_id = t.business_id AND m.user_id = t.user_id \
         LEFT JOIN subscriptions s ON s.business_id = b.id AND s.is_current \
         WHERE t.hash = $1 AND t.revoked_at IS NULL \
         AND (t.expires_at IS NULL OR t.expires_at > $2) \
         AND u.is_active AND b.is_active AND m.status = 'active'",
    )
    .bind(hash)
    .bind(now)
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
