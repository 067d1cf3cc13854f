use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

#[derive(Debug, Clone, FromRow)]
pub struct Business {
    pub id: Uuid,
    pub name: String,
    pub is_active: bool,
    /// Whether its members must sign in with a second factor (`PATCH /api/v1/business`).
    pub require_mfa: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub async fn insert(c: Conn<'_>, business: &Business) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO businesses (id, name, is_active, require_mfa, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(business.id)
    .bind(&business.name)
    .bind(business.is_active)
    .bind(business.require_mfa)
    .bind(business.created_at)
    .bind(business.updated_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn find(c: Conn<'_>, id: Uuid) -> sqlx::Result<Option<Business>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, name, is_active, require_mfa, created_at, updated_at FROM businesses \
         WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await)
}

/// Sets a business's name and its second-factor rule.
pub async fn set_settings(
    c: Conn<'_>,
    id: Uuid,
    name: &str,
    require_mfa: bool,
    now: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE businesses SET name = $2, require_mfa = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(require_mfa)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Serialises writers that decide from a business's state (one pending invitation per email):
/// PostgreSQL locks the row until the transaction ends; SQLite's writing transactions already
/// run one at a time.
pub async fn lock(c: Conn<'_>, id: Uuid) -> sqlx::Result<()> {
    match c {
        Conn::Postgres(c) => sqlx::query("SELECT id FROM businesses WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|_| ()),
        Conn::Sqlite(_) => Ok(()),
    }
}

/// A business with what an operator wants to see at a glance.
#[derive(Debug, Clone, FromRow)]
pub struct BusinessSummary {
    pub id: Uuid,
    pub name: String,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub plan: Option<String>,
    pub status: Option<String>,
    pub current_period_start: Option<Timestamp>,
    pub current_period_end: Option<Timestamp>,
    pub credit_balance: i64,
}

/// The columns of a [`BusinessSummary`] and the joins they need; a query adds its `WHERE`.
macro_rules! summary_select {
    () => {
        "SELECT b.id, b.name, b.is_active, b.created_at, p.code AS plan, \
         s.status, s.current_period_start, s.current_period_end, \
         CAST(COALESCE((SELECT SUM(l.amount) FROM ledger_entries l WHERE l.business_id = b.id), 0) \
              AS BIGINT) AS credit_balance \
         FROM businesses b \
         LEFT JOIN subscriptions s ON s.business_id = b.id AND s.is_current \
         LEFT JOIN plans p ON p.id = s.plan_id "
    };
}

pub async fn summary(c: Conn<'_>, id: Uuid) -> sqlx::Result<Option<BusinessSummary>> {
    on_conn!(c, c => sqlx::query_as(
        concat!(summary_select!(), "WHERE b.id = $1"),
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await)
}

/// Businesses whose name contains `name_like` (a LIKE pattern, `\\` escaping, matched against
/// the lower-cased name), or whose id is `id`, or one of whose owners has the email key
/// `owner_email_key`; newest first, at most `limit`.
pub async fn search_summaries(
    c: Conn<'_>,
    name_like: &str,
    id: Option<Uuid>,
    owner_email_key: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<BusinessSummary>> {
    on_conn!(c, c => sqlx::query_as(
        concat!(
            summary_select!(),
            "WHERE LOWER(b.name) LIKE $1 ESCAPE '\\' OR b.id = $2 \
            OR EXISTS (SELECT 1 FROM members m JOIN users u ON u.id = m.user_id \
                       WHERE m.business_id = b.id AND m.role = 'owner' AND u.email_key = $3) \
         ORDER BY b.created_at DESC, b.id DESC LIMIT $4"
        ),
    )
    .bind(name_like)
    .bind(id)
    .bind(owner_email_key)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// Businesses in creation order, `limit` at a time after `after` (keyset pagination).
pub async fn list_summaries(
    c: Conn<'_>,
    after: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<BusinessSummary>> {
    on_conn!(c, c => sqlx::query_as(
        concat!(summary_select!(), "WHERE b.id > $1 ORDER BY b.id LIMIT $2"),
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// Turns a business on or off; returns whether it exists. Its tokens and keys fail while off.
pub async fn set_active(c: Conn<'_>, id: Uuid, active: bool, now: Timestamp) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE businesses SET is_active = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(active)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}
