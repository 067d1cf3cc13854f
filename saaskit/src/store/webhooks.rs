use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

/// A business's webhook endpoint. `secret` and `previous_secret` are sealed.
#[derive(Debug, Clone, FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub business_id: Uuid,
    pub url: String,
    pub description: String,
    /// A JSON array of the event types it receives.
    pub events: String,
    pub enabled: bool,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<Timestamp>,
    pub failing_since: Option<Timestamp>,
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

const ENDPOINT_COLUMNS: &str = "id, business_id, url, description, events, enabled, secret, \
    previous_secret, previous_secret_expires_at, failing_since, disabled_reason, created_at, \
    updated_at";

pub async fn insert_endpoint(c: Conn<'_>, e: &Endpoint) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO webhook_endpoints (id, business_id, url, description, events, enabled, secret, \
         previous_secret, previous_secret_expires_at, failing_since, disabled_reason, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(e.id)
    .bind(e.business_id)
    .bind(&e.url)
    .bind(&e.description)
    .bind(&e.events)
    .bind(e.enabled)
    .bind(&e.secret)
    .bind(&e.previous_secret)
    .bind(e.previous_secret_expires_at)
    .bind(e.failing_since)
    .bind(&e.disabled_reason)
    .bind(e.created_at)
    .bind(e.updated_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Writes every changeable field of `e` back.
pub async fn update_endpoint(c: Conn<'_>, e: &Endpoint) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE webhook_endpoints SET url = $2, description = $3, events = $4, enabled = $5, \
         secret = $6, previous_secret = $7, previous_secret_expires_at = $8, failing_since = $9, \
         disabled_reason = $10, updated_at = $11 WHERE id = $1",
    )
    .bind(e.id)
    .bind(&e.url)
    .bind(&e.description)
    .bind(&e.events)
    .bind(e.enabled)
    .bind(&e.secret)
    .bind(&e.previous_secret)
    .bind(e.previous_secret_expires_at)
    .bind(e.failing_since)
    .bind(&e.disabled_reason)
    .bind(e.updated_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn list_endpoints(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<Vec<Endpoint>> {
    let sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE business_id = $1 ORDER BY id"
    );
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(business_id)
        .fetch_all(&mut *c)
        .await)
}

/// An endpoint of `business_id` (`None` for another business's).
pub async fn find_endpoint(
    c: Conn<'_>,
    business_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<Endpoint>> {
    let sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND business_id = $2"
    );
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(business_id)
        .fetch_optional(&mut *c)
        .await)
}

/// An endpoint by id alone: for the delivery worker.
pub async fn get_endpoint(c: Conn<'_>, id: Uuid) -> sqlx::Result<Option<Endpoint>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *c)
        .await)
}

pub async fn delete_endpoint(c: Conn<'_>, business_id: Uuid, id: Uuid) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "DELETE FROM webhook_endpoints WHERE id = $1 AND business_id = $2",
    )
    .bind(id)
    .bind(business_id)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() > 0))
}

/// The enabled endpoints of these businesses, with the event types each receives: who hears an
/// event. `(endpoint id, business id, events)`.
pub async fn subscribers(
    mut c: Conn<'_>,
    business_ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, Uuid, String)>> {
    let mut out = Vec::new();
    for chunk in business_ids.chunks(500) {
        let list = crate::db::values_list(c.backend(), chunk.len(), 1, &[]).replace(['(', ')'], "");
        // Only placeholders are spliced in; every value is bound.
        let sql = format!(
            "SELECT id, business_id, events FROM webhook_endpoints \
             WHERE enabled AND business_id IN ({list})"
        );
        on_conn!(c.reborrow(), c => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(q.fetch_all(&mut *c).await?);
        });
    }
    Ok(out)
}

/// Notes a failed attempt on an endpoint: returns since when it has been failing (now, if it
/// was not).
pub async fn endpoint_failed(c: Conn<'_>, id: Uuid, now: Timestamp) -> sqlx::Result<Timestamp> {
    on_conn!(c, c => sqlx::query_scalar(
        "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $2) WHERE id = $1 \
         RETURNING failing_since",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *c)
    .await
    .map(|since: Option<Timestamp>| since.unwrap_or(now)))
}

/// Notes a successful attempt: the endpoint is no longer failing.
pub async fn endpoint_succeeded(c: Conn<'_>, id: Uuid) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
    )
    .bind(id)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Disables an enabled endpoint; false when it already was.
pub async fn disable_endpoint(
    c: Conn<'_>,
    id: Uuid,
    reason: &str,
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $2, updated_at = $3 \
         WHERE id = $1 AND enabled",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() > 0))
}

/// One event for one endpoint.
#[derive(Debug, Clone, FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub business_id: Uuid,
    pub event_type: String,
    /// The JSON body, exactly as signed and sent.
    pub body: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    pub response_status: Option<i64>,
    pub response_body: Option<String>,
    pub duration_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

const DELIVERY_COLUMNS: &str = "id, endpoint_id, business_id, event_type, body, status, attempts, \
    next_attempt_at, last_attempt_at, response_status, response_body, duration_ms, last_error, \
    created_at, delivered_at";

/// Queues deliveries, in one statement per hundred.
pub async fn insert_deliveries(mut c: Conn<'_>, deliveries: &[Delivery]) -> sqlx::Result<()> {
    const COLS: usize = 8;
    for chunk in deliveries.chunks(100) {
        let rows = crate::db::values_list(c.backend(), chunk.len(), COLS, &[]);
        // Only placeholders are spliced in; every value is bound.
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, endpoint_id, business_id, event_type, body, \
             status, next_attempt_at, created_at) VALUES {rows}"
        );
        on_conn!(c.reborrow(), c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for d in chunk {
                q = q
                    .bind(d.id)
                    .bind(d.endpoint_id)
                    .bind(d.business_id)
                    .bind(&d.event_type)
                    .bind(&d.body)
                    .bind(&d.status)
                    .bind(d.next_attempt_at)
                    .bind(d.created_at);
            }
            q.execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// Claims up to `limit` deliveries due at `now` to enabled endpoints, oldest due first: counts
/// the attempt and pushes the next one to `lease_until`, so a worker that dies mid-send leaves
/// them to be tried again then, and other workers skip them meanwhile. PostgreSQL skips rows
/// another worker is claiming; SQLite has one writer at a time.
pub async fn claim_due(
    c: Conn<'_>,
    now: Timestamp,
    lease_until: Timestamp,
    limit: i64,
) -> sqlx::Result<Vec<Delivery>> {
    let lock = match c.backend() {
        crate::db::Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        crate::db::Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $2, \
         last_attempt_at = $1 \
         WHERE id IN (SELECT d.id FROM webhook_deliveries d \
                      WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
                      AND EXISTS (SELECT 1 FROM webhook_endpoints e \
                                  WHERE e.id = d.endpoint_id AND e.enabled) \
                      ORDER BY d.next_attempt_at, d.id LIMIT $3 {lock}) \
         RETURNING {DELIVERY_COLUMNS}"
    );
    on_conn!(c, c => {
        let mut claimed: Vec<Delivery> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?;
        // RETURNING keeps no order: send in the order they fell due.
        claimed.sort_by_key(|d| (d.last_attempt_at, d.id));
        Ok(claimed)
    })
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: Uuid,
    /// The delivery's attempt count when this attempt was claimed: the outcome is recorded only
    /// if no claim came since (a retry asked for meanwhile, or another worker after the lease).
    pub attempts: i64,
    /// `pending` (to retry at `next_attempt_at`), `delivered` or `failed`.
    pub status: &'static str,
    pub next_attempt_at: Timestamp,
    pub response_status: Option<i64>,
    pub response_body: Option<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

/// Records the outcomes of many attempts, each unless its delivery was claimed again since;
/// the caller's transaction makes them one commit. SQLite: one prepared statement stepped per
/// attempt on the calling thread (`db::direct`); PostgreSQL: one statement over arrays.
pub async fn record_attempts(c: Conn<'_>, attempts: &[Attempt]) -> sqlx::Result<u64> {
    if attempts.is_empty() {
        return Ok(0);
    }
    match c {
        Conn::Sqlite(c) => {
            use crate::db::direct::{Param, execute_many};
            fn text(t: &Option<String>) -> Param<'_> {
                t.as_deref().map_or(Param::Null, Param::Text)
            }
            let rows = attempts.iter().map(|a| {
                vec![
                    Param::uuid(&a.id),
                    Param::Text(a.status),
                    Param::time(a.next_attempt_at),
                    a.response_status.map_or(Param::Null, Param::Int),
                    text(&a.response_body),
                    Param::Int(a.duration_ms),
                    text(&a.error),
                    a.delivered_at.map_or(Param::Null, Param::time),
                    Param::Int(a.attempts),
                ]
            });
            execute_many(
                c,
                "UPDATE webhook_deliveries SET status = $2, next_attempt_at = $3, \
                 response_status = $4, response_body = $5, duration_ms = $6, last_error = $7, \
                 delivered_at = COALESCE($8, delivered_at) WHERE id = $1 AND attempts = $9",
                rows,
            )
            .await
        }
        Conn::Postgres(c) => {
            let col =
                |f: fn(&Attempt) -> Option<String>| attempts.iter().map(f).collect::<Vec<_>>();
            let time = |f: fn(&Attempt) -> Option<Timestamp>| {
                attempts
                    .iter()
                    .map(|a| f(a).map(Timestamp::as_datetime))
                    .collect::<Vec<_>>()
            };
            let int = |f: fn(&Attempt) -> Option<i64>| attempts.iter().map(f).collect::<Vec<_>>();
            sqlx::query(
                "UPDATE webhook_deliveries AS d SET status = v.status, next_attempt_at = v.next, \
                 response_status = v.response_status, response_body = v.response_body, \
                 duration_ms = v.duration_ms, last_error = v.error, \
                 delivered_at = COALESCE(v.delivered_at, d.delivered_at) \
                 FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], \
                             $5::bigint[], $6::text[], $7::bigint[], $8::text[], \
                             $9::timestamptz[]) \
                      AS v(id, attempts, status, next, response_status, response_body, \
                           duration_ms, error, delivered_at) \
                 WHERE d.id = v.id AND d.attempts = v.attempts",
            )
            .bind(attempts.iter().map(|a| a.id).collect::<Vec<Uuid>>())
            .bind(int(|a| Some(a.attempts)))
            .bind(col(|a| Some(a.status.to_owned())))
            .bind(time(|a| Some(a.next_attempt_at)))
            .bind(int(|a| a.response_status))
            .bind(col(|a| a.response_body.clone()))
            .bind(int(|a| Some(a.duration_ms)))
            .bind(col(|a| a.error.clone()))
            .bind(time(|a| a.delivered_at))
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
        }
    }
}

/// Makes an endpoint's pending deliveries due at `now`.
/// Those attempted since `held_since` are left alone: a worker may still be sending them (its
/// lease pushed their next attempt ahead), and making them due would have another send them too.
pub async fn make_pending_due(
    c: Conn<'_>,
    endpoint_id: Uuid,
    now: Timestamp,
    held_since: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = $2 \
         WHERE endpoint_id = $1 AND status = 'pending' AND next_attempt_at > $2 \
         AND (last_attempt_at IS NULL OR last_attempt_at <= $3)",
    )
    .bind(endpoint_id)
    .bind(now)
    .bind(held_since)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Gives back a claimed delivery unsent: its attempt uncounted, due at `due`.
pub async fn release_claim(
    c: Conn<'_>,
    id: Uuid,
    attempts: i64,
    due: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE webhook_deliveries SET attempts = attempts - 1, next_attempt_at = $3 \
         WHERE id = $1 AND attempts = $2 AND status = 'pending'",
    )
    .bind(id)
    .bind(attempts)
    .bind(due)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// A page of an endpoint's deliveries, newest first, before the delivery `before` (ids are
/// time-ordered), optionally of one status and one event type.
pub async fn list_deliveries(
    c: Conn<'_>,
    endpoint_id: Uuid,
    status: Option<&str>,
    event_type: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 \
         AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR event_type = $3) \
         AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
    );
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(endpoint_id)
        .bind(status)
        .bind(event_type)
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *c)
        .await)
}

pub async fn find_delivery(
    c: Conn<'_>,
    endpoint_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2"
    );
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(endpoint_id)
        .fetch_optional(&mut *c)
        .await)
}

/// Makes a delivery due again at `now`, whatever became of it.
pub async fn retry_delivery(
    c: Conn<'_>,
    endpoint_id: Uuid,
    id: Uuid,
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3 \
         WHERE id = $1 AND endpoint_id = $2",
    )
    .bind(id)
    .bind(endpoint_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() > 0))
}

/// Deliveries waiting to be sent (for the metrics).
pub async fn pending_count(c: Conn<'_>) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'",
    )
    .fetch_one(&mut *c)
    .await)
}

/// A quota threshold reached in a cycle.
#[derive(Debug, Clone, FromRow)]
pub struct QuotaMark {
    pub business_id: Uuid,
    pub meter: String,
    pub period_start: Timestamp,
    pub threshold: i64,
    pub used: i64,
    pub quota_limit: i64,
    pub created_at: Timestamp,
}

/// Marks a threshold reached, waiting to be emitted (`$8` NULL) or emitted at `$8`; changes
/// nothing when the cycle already has the mark. Also run as is by the SQLite batching writer.
pub const MARK_THRESHOLD: &str = "INSERT INTO webhook_quota_marks (business_id, meter, \
    period_start, threshold, used, quota_limit, created_at, emitted_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";

/// Marks a quota threshold as reached for a cycle; true only for the first to do so.
pub async fn mark_threshold(
    c: Conn<'_>,
    mark: &QuotaMark,
    emitted_at: Option<Timestamp>,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(MARK_THRESHOLD)
        .bind(mark.business_id)
        .bind(&mark.meter)
        .bind(mark.period_start)
        .bind(mark.threshold)
        .bind(mark.used)
        .bind(mark.quota_limit)
        .bind(mark.created_at)
        .bind(emitted_at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected() > 0))
}

/// Whether any mark waits to be emitted (the partial index answers it).
pub async fn any_waiting_marks(c: Conn<'_>) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM webhook_quota_marks WHERE emitted_at IS NULL)",
    )
    .fetch_one(&mut *c)
    .await)
}

/// Claims up to `limit` marks not emitted yet (skipping those another worker is claiming on
/// PostgreSQL) and records them emitted at `now`; the caller emits them on the same
/// transaction.
pub async fn claim_waiting_marks(
    c: Conn<'_>,
    now: Timestamp,
    limit: i64,
) -> sqlx::Result<Vec<QuotaMark>> {
    let lock = match c.backend() {
        crate::db::Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        crate::db::Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE webhook_quota_marks SET emitted_at = $1 \
         WHERE (business_id, meter, period_start, threshold) IN \
           (SELECT business_id, meter, period_start, threshold FROM webhook_quota_marks \
            WHERE emitted_at IS NULL ORDER BY created_at LIMIT $2 {lock}) \
         RETURNING business_id, meter, period_start, threshold, used, quota_limit, created_at"
    );
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *c)
        .await)
}

/// Endpoints' sealed secrets by id after `after`, `limit` at a time: for re-sealing under a new
/// key. `(id, secret, previous secret)`.
pub async fn sealed_secrets(
    c: Conn<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, String, Option<String>)>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, secret, previous_secret FROM webhook_endpoints \
         WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// Replaces an endpoint's sealed secrets (those given) with re-sealed ones.
pub async fn replace_secrets(
    c: Conn<'_>,
    id: Uuid,
    secret: Option<&str>,
    previous: Option<&str>,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE webhook_endpoints SET secret = COALESCE($2, secret), \
         previous_secret = COALESCE($3, previous_secret) WHERE id = $1",
    )
    .bind(id)
    .bind(secret)
    .bind(previous)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}
