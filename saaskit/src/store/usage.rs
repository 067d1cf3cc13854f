//! Meter counters (per billing cycle), gauges (how many exist now) and idempotency keys.

use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

/// The `limit` given to the conditional writes for a meter the plan does not limit.
pub const UNLIMITED: i64 = i64::MAX / 2;

/// Parameters: business, meter, period start, period end, n, limit, now; returns `used`.
pub const ADD_TO_COUNTER: &str = "INSERT INTO usage_counters (business_id, meter, period_start, period_end, used, updated_at) \
         SELECT $1, $2, $3, $4, $5, $7 WHERE $5 <= $6 \
         ON CONFLICT (business_id, meter, period_start) DO UPDATE \
         SET used = usage_counters.used + excluded.used, updated_at = excluded.updated_at \
         WHERE usage_counters.used + excluded.used <= $6 \
         RETURNING used";

/// Adds `n` to a per-cycle counter if the result stays within `limit`, creating the cycle's
/// row at zero on first use. One statement: the row's lock (PostgreSQL) or the write lock
/// (SQLite) makes the check and the increment one step, so concurrent callers never overshoot.
/// Returns the new total, or `None` when it would exceed the limit.
#[allow(clippy::too_many_arguments)]
pub async fn add_to_counter(
    c: Conn<'_>,
    business_id: Uuid,
    meter: &str,
    period_start: Timestamp,
    period_end: Timestamp,
    n: i64,
    limit: i64,
    now: Timestamp,
) -> sqlx::Result<Option<i64>> {
    on_conn!(c, c => sqlx::query_scalar(
        ADD_TO_COUNTER,
    )
    .bind(business_id)
    .bind(meter)
    .bind(period_start)
    .bind(period_end)
    .bind(n)
    .bind(limit)
    .bind(now)
    .fetch_optional(&mut *c)
    .await)
}

/// How much of a per-cycle meter the cycle starting at `period_start` used.
pub async fn counter(
    c: Conn<'_>,
    business_id: Uuid,
    meter: &str,
    period_start: Timestamp,
) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT used FROM usage_counters \
         WHERE business_id = $1 AND meter = $2 AND period_start = $3",
    )
    .bind(business_id)
    .bind(meter)
    .bind(period_start)
    .fetch_optional(&mut *c)
    .await
    .map(|used| used.unwrap_or(0)))
}

#[derive(Debug, Clone, FromRow)]
pub struct CounterRow {
    pub meter: String,
    pub period_start: Timestamp,
    pub period_end: Timestamp,
    pub used: i64,
}

/// A business's per-cycle counters for the cycle starting at `period_start`.
pub async fn counters_for_period(
    c: Conn<'_>,
    business_id: Uuid,
    period_start: Timestamp,
) -> sqlx::Result<Vec<CounterRow>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT meter, period_start, period_end, used FROM usage_counters \
         WHERE business_id = $1 AND period_start = $2 ORDER BY meter",
    )
    .bind(business_id)
    .bind(period_start)
    .fetch_all(&mut *c)
    .await)
}

/// A business's per-cycle counters, newest cycle first, at most `limit` rows.
pub async fn counters_of(
    c: Conn<'_>,
    business_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<CounterRow>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT meter, period_start, period_end, used FROM usage_counters \
         WHERE business_id = $1 ORDER BY period_start DESC, meter LIMIT $2",
    )
    .bind(business_id)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// Adds `n` to a gauge if the result stays within `limit` (see [`add_to_counter`]).
pub async fn add_to_gauge(
    c: Conn<'_>,
    business_id: Uuid,
    meter: &str,
    n: i64,
    limit: i64,
) -> sqlx::Result<Option<i64>> {
    on_conn!(c, c => sqlx::query_scalar(
        "INSERT INTO gauges (business_id, meter, used) SELECT $1, $2, $3 WHERE $3 <= $4 \
         ON CONFLICT (business_id, meter) DO UPDATE SET used = gauges.used + excluded.used \
         WHERE gauges.used + excluded.used <= $4 \
         RETURNING used",
    )
    .bind(business_id)
    .bind(meter)
    .bind(n)
    .bind(limit)
    .fetch_optional(&mut *c)
    .await)
}

/// Takes `n` off a gauge (never below zero).
pub async fn subtract_from_gauge(
    c: Conn<'_>,
    business_id: Uuid,
    meter: &str,
    n: i64,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE gauges SET used = CASE WHEN used >= $3 THEN used - $3 ELSE 0 END \
         WHERE business_id = $1 AND meter = $2",
    )
    .bind(business_id)
    .bind(meter)
    .bind(n)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

#[derive(Debug, Clone, FromRow)]
pub struct GaugeRow {
    pub meter: String,
    pub used: i64,
}

/// One row of [`dashboard_figures`]: a business's credit balance (`kind` `balance`), a gauge, or
/// a counter of the period asked for (`period_start` set only for counters).
#[derive(Debug, sqlx::FromRow)]
pub struct FigureRow {
    pub business_id: Uuid,
    pub period_start: Option<Timestamp>,
    pub kind: String,
    pub meter: String,
    pub used: i64,
}

/// For each `(business, current period start)` asked: the credit balance, every gauge, and the
/// counters of that period, in one statement. Asks are padded to a power of two (repeating the
/// last), so a few statement texts serve every batch size.
pub async fn dashboard_figures(
    c: Conn<'_>,
    asks: &[(Uuid, Option<Timestamp>)],
) -> sqlx::Result<Vec<FigureRow>> {
    let Some(last) = asks.last() else {
        return Ok(Vec::new());
    };
    let padded = asks.len().next_power_of_two();
    let rows = crate::db::values_list(c.backend(), padded, 2, &["uuid", "timestamptz"]);
    // Only placeholders are spliced in; every value is bound.
    let sql = format!(
        "WITH asks (business_id, period_start) AS (VALUES {rows}), \
              firms AS (SELECT DISTINCT business_id FROM asks), \
              periods AS (SELECT DISTINCT business_id, period_start FROM asks) \
         SELECT f.business_id, CAST(NULL AS TIMESTAMPTZ) AS period_start, 'balance' AS kind, '' AS meter, \
                (SELECT CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) FROM ledger_entries l \
                 WHERE l.business_id = f.business_id) AS used \
         FROM firms f \
         UNION ALL SELECT g.business_id, CAST(NULL AS TIMESTAMPTZ), 'gauge', g.meter, g.used \
         FROM gauges g JOIN firms f ON g.business_id = f.business_id \
         UNION ALL SELECT u.business_id, u.period_start, 'counter', u.meter, u.used \
         FROM usage_counters u JOIN periods p \
         ON u.business_id = p.business_id AND u.period_start = p.period_start"
    );
    on_conn!(c, c => {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for (business_id, period_start) in asks.iter().chain(std::iter::repeat_n(last, padded - asks.len())) {
            q = q.bind(*business_id).bind(*period_start);
        }
        q.fetch_all(&mut *c).await
    })
}

pub async fn gauges_of(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<Vec<GaugeRow>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT meter, used FROM gauges WHERE business_id = $1 ORDER BY meter",
    )
    .bind(business_id)
    .fetch_all(&mut *c)
    .await)
}

pub async fn gauge(c: Conn<'_>, business_id: Uuid, meter: &str) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT used FROM gauges WHERE business_id = $1 AND meter = $2",
    )
    .bind(business_id)
    .bind(meter)
    .fetch_optional(&mut *c)
    .await
    .map(|used| used.unwrap_or(0)))
}

/// What an idempotency key holds: the request it was first used for and, once that request
/// succeeded, its response. A row without a response belongs to a request still in flight.
#[derive(Debug, Clone, FromRow)]
pub struct IdempotencyRow {
    pub fingerprint: Vec<u8>,
    pub status: i64,
    pub body: String,
}

/// Parameters: business, key, fingerprint, now.
pub const CLAIM_IDEMPOTENCY_KEY: &str = "INSERT INTO idempotency_keys (business_id, key, fingerprint, status, body, created_at) \
         VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (business_id, key) DO NOTHING";

/// Claims a key for a request; `false` when the key is already taken. On PostgreSQL a claim
/// racing another transaction's uncommitted claim waits for it to end.
pub async fn claim_idempotency_key(
    c: Conn<'_>,
    business_id: Uuid,
    key: &str,
    fingerprint: &[u8],
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        CLAIM_IDEMPOTENCY_KEY,
    )
    .bind(business_id)
    .bind(key)
    .bind(fingerprint)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Parameters: business, key; returns fingerprint, status, body.
pub const FIND_IDEMPOTENCY_KEY: &str = "SELECT fingerprint, status, body FROM idempotency_keys \
         WHERE business_id = $1 AND key = $2";

pub async fn find_idempotency_key(
    c: Conn<'_>,
    business_id: Uuid,
    key: &str,
) -> sqlx::Result<Option<IdempotencyRow>> {
    on_conn!(c, c => sqlx::query_as(
        FIND_IDEMPOTENCY_KEY,
    )
    .bind(business_id)
    .bind(key)
    .fetch_optional(&mut *c)
    .await)
}

/// Parameters: business, key, status, body.
pub const COMPLETE_IDEMPOTENCY_KEY: &str =
    "UPDATE idempotency_keys SET status = $3, body = $4 WHERE business_id = $1 AND key = $2";

pub async fn complete_idempotency_key(
    c: Conn<'_>,
    business_id: Uuid,
    key: &str,
    status: i64,
    body: &str,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        COMPLETE_IDEMPOTENCY_KEY,
    )
    .bind(business_id)
    .bind(key)
    .bind(status)
    .bind(body)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Parameters: business or NULL, key or NULL, created before.
pub const EXPIRE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE created_at <= $3 \
         AND ($1 IS NULL OR business_id = $1) AND ($2 IS NULL OR key = $2)";

/// Forgets keys created before `before` (one key, or all of them when `key` is `None`).
pub async fn expire_idempotency_keys(
    c: Conn<'_>,
    business_id: Option<Uuid>,
    key: Option<&str>,
    before: Timestamp,
) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        EXPIRE_IDEMPOTENCY_KEYS,
    )
    .bind(business_id)
    .bind(key)
    .bind(before)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}
