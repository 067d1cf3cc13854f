use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

#[derive(Debug, Clone, FromRow)]
pub struct LedgerEntry {
    pub id: Uuid,
    pub business_id: Uuid,
    /// `grant`, `renewal_charge`, `proration_credit`, `refund` or `adjustment`.
    pub kind: String,
    /// Minor units; charges are negative.
    pub amount: i64,
    pub currency: String,
    pub subscription_id: Option<Uuid>,
    pub period_start: Option<Timestamp>,
    pub note: Option<String>,
    /// `user`, `admin` or `system`.
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub created_at: Timestamp,
}

pub async fn insert(c: Conn<'_>, e: &LedgerEntry) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO ledger_entries (id, business_id, kind, amount, currency, subscription_id, \
         period_start, note, actor_kind, actor_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(e.id)
    .bind(e.business_id)
    .bind(&e.kind)
    .bind(e.amount)
    .bind(&e.currency)
    .bind(e.subscription_id)
    .bind(e.period_start)
    .bind(&e.note)
    .bind(&e.actor_kind)
    .bind(e.actor_id)
    .bind(e.created_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// `(when, amount)` of every entry of a business made at or before `until`.
pub async fn amounts_until(
    c: Conn<'_>,
    business_id: Uuid,
    until: Timestamp,
) -> sqlx::Result<Vec<(Timestamp, i64)>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT created_at, amount FROM ledger_entries \
         WHERE business_id = $1 AND created_at <= $2 ORDER BY created_at",
    )
    .bind(business_id)
    .bind(until)
    .fetch_all(&mut *c)
    .await)
}

/// The latest `limit` entries of a business, newest first.
pub async fn recent(c: Conn<'_>, business_id: Uuid, limit: i64) -> sqlx::Result<Vec<LedgerEntry>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, business_id, kind, amount, currency, subscription_id, period_start, note, \
         actor_kind, actor_id, created_at FROM ledger_entries \
         WHERE business_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(business_id)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// The balance: the sum of every entry, computed, never stored.
pub async fn balance(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_entries WHERE business_id = $1",
    )
    .bind(business_id)
    .fetch_one(&mut *c)
    .await)
}

pub async fn list(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<Vec<LedgerEntry>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, business_id, kind, amount, currency, subscription_id, period_start, note, \
         actor_kind, actor_id, created_at FROM ledger_entries \
         WHERE business_id = $1 ORDER BY created_at, id",
    )
    .bind(business_id)
    .fetch_all(&mut *c)
    .await)
}

/// `(business, when, amount)` of the entries, made at or before `until`, of every business with
/// a current subscription in the sweep page `(from, to]` (cursors in `(period end, id)` order).
pub async fn amounts_for_page(
    c: Conn<'_>,
    from: (Timestamp, Uuid),
    to: (Timestamp, Uuid),
    until: Timestamp,
) -> sqlx::Result<Vec<(Uuid, Timestamp, i64)>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT l.business_id, l.created_at, l.amount FROM ledger_entries l \
         WHERE l.created_at <= $5 AND l.business_id IN \
         (SELECT s.business_id FROM subscriptions s WHERE s.is_current \
          AND (s.current_period_end, s.id) > ($1, $2) AND (s.current_period_end, s.id) <= ($3, $4))",
    )
    .bind(from.0)
    .bind(from.1)
    .bind(to.0)
    .bind(to.1)
    .bind(until)
    .fetch_all(&mut *c)
    .await)
}

/// Inserts many entries in one statement.
pub async fn insert_many(mut c: Conn<'_>, entries: &[LedgerEntry]) -> sqlx::Result<()> {
    const COLS: usize = 11;
    for chunk in entries.chunks(1000) {
        let rows = crate::db::values_list(c.backend(), chunk.len(), COLS, &[]);
        // Only placeholders are spliced in; every value is bound.
        let sql = format!(
            "INSERT INTO ledger_entries (id, business_id, kind, amount, currency, subscription_id, \
             period_start, note, actor_kind, actor_id, created_at) VALUES {rows}"
        );
        on_conn!(c.reborrow(), c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for e in chunk {
                q = q
                    .bind(e.id)
                    .bind(e.business_id)
                    .bind(&e.kind)
                    .bind(e.amount)
                    .bind(&e.currency)
                    .bind(e.subscription_id)
                    .bind(e.period_start)
                    .bind(&e.note)
                    .bind(&e.actor_kind)
                    .bind(e.actor_id)
                    .bind(e.created_at);
            }
            q.execute(&mut *c).await?;
        });
    }
    Ok(())
}
