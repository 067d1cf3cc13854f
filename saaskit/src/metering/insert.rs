//! The fast path for a metered row: insert one row of a product's table and consume a per-cycle
//! meter for it, atomically, in as few steps as each database allows. This is what an SDK's
//! writes go through (`POST /api/v1/recordings`), so it is built for throughput:
//!
//! - on SQLite, the write is one job of the batching writer ([`crate::db::writer`]): many
//!   writes share one commit, and their statements run on the writer's thread without a hop;
//! - on PostgreSQL, the requirement check, the conditional counter increment and the insert are
//!   one statement, so a write without an idempotency key is one round trip (in its own
//!   implicit transaction); with a key, that statement runs inside the key's transaction.
//!
//! The limit stays exact: the counter only moves when the increment fits (see
//! [`usage::ADD_TO_COUNTER`]), and the row is only inserted when the counter moved.

use serde::Serialize;
use thiserror::Error;
use uuid::Uuid;

use super::idempotency::{self, IdempotencyKey, KeyReused, Stored};
use super::{Consumed, MAX_QUANTITY, Meter, MeterKind, QuotaError, live_subscription, refusal};
use crate::accounts::Principal;
use crate::app::App;
use crate::db::direct::Param;
use crate::db::writer::Batch;
use crate::db::{Conn, Db, Timestamp};
use crate::store::usage::{self, UNLIMITED};

/// A value of a metered row, stored the same way as sqlx stores it on either database.
#[derive(Debug, Clone)]
pub enum Value {
    Uuid(Uuid),
    Text(String),
    Int(i64),
    Time(Timestamp),
}

impl Value {
    fn param(&self) -> Param<'_> {
        match self {
            Value::Uuid(id) => Param::uuid(id),
            Value::Text(s) => Param::Text(s),
            Value::Int(n) => Param::Int(*n),
            Value::Time(at) => Param::time(*at),
        }
    }
}

/// One row to insert, and what it consumes. The SQL parts (`requires`, `table`, `columns`)
/// are the code's own constants and become part of a statement; only `values` come from input.
#[derive(Debug, Clone)]
pub struct MeteredInsert {
    /// A per-cycle meter (gauges go through [`super::consume`]).
    pub meter: Meter<'static>,
    pub quantity: i64,
    /// A query (parameters `$1`…) that must find a row for the insert to go ahead, such as
    /// "the application exists and belongs to this business"; checked in the same transaction.
    pub requires: Option<(&'static str, Vec<Value>)>,
    pub table: &'static str,
    pub columns: &'static [&'static str],
    pub values: Vec<Value>,
}

#[derive(Debug, Error)]
pub enum MeteredError {
    /// The row named by [`MeteredInsert::requires`] does not exist.
    #[error("a row the insert requires does not exist")]
    Missing,
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error("the idempotency key was used for another request")]
    KeyReused,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for MeteredError {
    fn from(err: sqlx::Error) -> Self {
        MeteredError::Unexpected(err.into())
    }
}

impl From<KeyReused> for MeteredError {
    fn from(_: KeyReused) -> Self {
        MeteredError::KeyReused
    }
}

/// Why a write did not happen, decided where it ran.
enum Refused {
    Missing,
    /// Over the limit; the details are read afterwards, outside the hot path.
    Limit,
}

/// Inserts `row` for the caller's business if its plan's limit for `row.meter` allows it, and
/// answers with `respond(usage after)` serialized under `status`. With `key`, a retry of the
/// same request gets the stored answer back and consumes nothing (see [`idempotency`]).
pub async fn insert_metered<T>(
    app: &App,
    principal: &Principal,
    row: MeteredInsert,
    key: Option<&IdempotencyKey>,
    fingerprint: &[u8],
    status: u16,
    respond: impl FnOnce(Consumed) -> T + Send + 'static,
) -> Result<Stored, MeteredError>
where
    T: Serialize,
{
    let now = app.clock.now();
    if !(1..=MAX_QUANTITY).contains(&row.quantity) || row.meter.kind() != MeterKind::PerCycle {
        return Err(anyhow::anyhow!(
            "{} × {} is not a per-cycle use",
            row.quantity,
            row.meter.name()
        )
        .into());
    }
    let sub = live_subscription(principal, now)?;
    let plan_limit = sub.limits.get(row.meter.name()).copied();
    let (row_meter, quantity) = (row.meter, row.quantity);
    let counter = Counter {
        business: principal.business_id,
        meter: row.meter.name(),
        period_start: sub.current_period_start,
        period_end: sub.current_period_end,
        quantity: row.quantity,
        limit: plan_limit.unwrap_or(UNLIMITED),
        now,
    };
    // What the write used, to tell afterwards whether it crossed a threshold of the limit.
    let used_after = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(-1));
    let noted = used_after.clone();
    let consumed_of = move |used: i64| Consumed {
        meter: counter.meter.to_owned(),
        used,
        limit: plan_limit,
        remaining: plan_limit.map(|l| (l - used).max(0)),
        resets_at: Some(counter.period_end),
    };
    let consumed = move |used: i64| {
        noted.store(used, std::sync::atomic::Ordering::Relaxed);
        consumed_of(used)
    };
    let outcome: Result<Stored, Rejected> = match &app.db {
        Db::Sqlite(pool) => {
            let writer = app.sqlite_writer.get(pool).await?;
            let key = key.map(|k| k.as_str().to_owned());
            let fingerprint = fingerprint.to_vec();
            writer
                .run(move |batch| {
                    write_direct(batch, &counter, &row, key, &fingerprint, status, |used| {
                        serde_json::to_string(&respond(consumed(used)))
                            .map_err(|e| anyhow::anyhow!("serializing a metered response: {e}"))
                    })
                })
                .await
        }
        Db::Postgres(pool) => match key {
            None => {
                let mut conn = pool.acquire().await?;
                match write_postgres(Conn::Postgres(&mut conn), &counter, &row).await {
                    Ok(used) => serde_json::to_string(&respond(consumed(used)))
                        .map(|body| Stored {
                            status,
                            body,
                            replayed: false,
                        })
                        .map_err(|e| anyhow::anyhow!("serializing a metered response: {e}").into()),
                    Err(e) => Err(e),
                }
            }
            Some(key) => {
                idempotency::run(
                    app,
                    counter.business,
                    Some(key),
                    fingerprint,
                    status,
                    async |tx| -> Result<T, Rejected> {
                        let used = write_postgres(tx.conn(), &counter, &row).await?;
                        Ok(respond(consumed(used)))
                    },
                )
                .await
            }
        },
    };
    match outcome {
        Ok(stored) => {
            let used = used_after.load(std::sync::atomic::Ordering::Relaxed);
            if let Some(limit) = plan_limit.filter(|_| !stored.replayed && used >= 0)
                && crate::webhooks::crosses_threshold(used - quantity, used, limit)
            {
                // The write marked the threshold in its own transaction; its event becomes
                // deliveries now (or at the worker's next pass, should this stop first).
                crate::webhooks::emit_waiting_marks(app).await?;
            }
            Ok(stored)
        }
        Err(Rejected::Failed(e)) => Err(e),
        Err(Rejected::Refused(Refused::Missing)) => Err(MeteredError::Missing),
        Err(Rejected::Refused(Refused::Limit)) => {
            let mut tx = app.db.read().await?;
            let refusal = refusal(
                tx.conn(),
                counter.business,
                sub,
                row_meter,
                plan_limit.unwrap_or(UNLIMITED),
                quantity,
            )
            .await?;
            Err(refusal.into())
        }
    }
}

/// The counter a write moves.
#[derive(Debug, Clone, Copy)]
struct Counter {
    business: Uuid,
    meter: &'static str,
    period_start: Timestamp,
    period_end: Timestamp,
    quantity: i64,
    limit: i64,
    now: Timestamp,
}

/// Why a write did not happen: refused (the transaction or savepoint is rolled back, which
/// also releases an idempotency key's claim, then the refusal is answered) or failed.
enum Rejected {
    Refused(Refused),
    Failed(MeteredError),
}

impl From<MeteredError> for Rejected {
    fn from(err: MeteredError) -> Self {
        Rejected::Failed(err)
    }
}

impl From<sqlx::Error> for Rejected {
    fn from(err: sqlx::Error) -> Self {
        Rejected::Failed(err.into())
    }
}

impl From<anyhow::Error> for Rejected {
    fn from(err: anyhow::Error) -> Self {
        Rejected::Failed(err.into())
    }
}

impl From<KeyReused> for Rejected {
    fn from(_: KeyReused) -> Self {
        Rejected::Failed(MeteredError::KeyReused)
    }
}

/// The write as one job of the SQLite writer.
fn write_direct(
    batch: &mut Batch,
    counter: &Counter,
    row: &MeteredInsert,
    key: Option<String>,
    fingerprint: &[u8],
    status: u16,
    body: impl FnOnce(i64) -> anyhow::Result<String>,
) -> Result<Stored, Rejected> {
    let business = Param::uuid(&counter.business);
    if let Some(key) = &key {
        let forget_before = counter
            .now
            .plus(chrono::Duration::hours(-idempotency::KEY_LIFETIME_HOURS));
        batch.execute(
            usage::EXPIRE_IDEMPOTENCY_KEYS,
            &[business, Param::Text(key), Param::time(forget_before)],
        )?;
        let claimed = batch.execute(
            usage::CLAIM_IDEMPOTENCY_KEY,
            &[
                business,
                Param::Text(key),
                Param::Blob(fingerprint),
                Param::time(counter.now),
            ],
        )? == 1;
        if !claimed {
            let stored = batch
                .query_row(
                    usage::FIND_IDEMPOTENCY_KEY,
                    &[business, Param::Text(key)],
                    |r| (r.bytes(0), r.int(1), r.text(2)),
                )?
                .ok_or_else(|| anyhow::anyhow!("idempotency key vanished while claimed"))?;
            return idempotency::replay(fingerprint, &stored.0, stored.1, stored.2);
        }
    }
    if let Some((sql, values)) = &row.requires {
        let params: Vec<Param<'_>> = values.iter().map(Value::param).collect();
        if batch.query_row(sql, &params, |_| ())?.is_none() {
            return Err(Rejected::Refused(Refused::Missing));
        }
    }
    let used = batch.query_row(
        usage::ADD_TO_COUNTER,
        &[
            business,
            Param::Text(counter.meter),
            Param::time(counter.period_start),
            Param::time(counter.period_end),
            Param::Int(counter.quantity),
            Param::Int(counter.limit),
            Param::time(counter.now),
        ],
        |r| r.int(0),
    )?;
    let Some(used) = used else {
        return Err(Rejected::Refused(Refused::Limit));
    };
    let params: Vec<Param<'_>> = row.values.iter().map(Value::param).collect();
    batch.execute(&insert_sql(row), &params)?;
    if counter.limit != UNLIMITED {
        for threshold in crate::webhooks::THRESHOLDS {
            let at = crate::webhooks::threshold_use(counter.limit, threshold);
            if used - counter.quantity < at && used >= at {
                batch.execute(
                    crate::store::webhooks::MARK_THRESHOLD,
                    &[
                        business,
                        Param::Text(counter.meter),
                        Param::time(counter.period_start),
                        Param::Int(threshold),
                        Param::Int(used),
                        Param::Int(counter.limit),
                        Param::time(counter.now),
                        Param::Null,
                    ],
                )?;
            }
        }
    }
    let body = body(used)?;
    if let Some(key) = &key {
        batch.execute(
            usage::COMPLETE_IDEMPOTENCY_KEY,
            &[
                business,
                Param::Text(key),
                Param::Int(i64::from(status)),
                Param::Text(&body),
            ],
        )?;
    }
    Ok(Stored {
        status,
        body,
        replayed: false,
    })
}

/// `INSERT INTO table (columns) VALUES ($1, …)`.
fn insert_sql(row: &MeteredInsert) -> String {
    let values: Vec<String> = (1..=row.values.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        row.table,
        row.columns.join(", "),
        values.join(", ")
    )
}

/// The write as one PostgreSQL statement: requirement, conditional increment (the statement
/// of [`usage::ADD_TO_COUNTER`], gated on the requirement) and insert (gated on the increment).
async fn write_postgres(
    c: Conn<'_>,
    counter: &Counter,
    row: &MeteredInsert,
) -> Result<i64, Rejected> {
    let Conn::Postgres(c) = c else {
        return Err(anyhow::anyhow!("write_postgres called on SQLite").into());
    };
    let (requirement, req_values): (String, &[Value]) = match &row.requires {
        Some((sql, values)) => (format!("SELECT EXISTS ({sql}) AS ok"), values),
        None => ("SELECT TRUE AS ok".to_owned(), &[]),
    };
    let b = req_values.len();
    let p = |i: usize| format!("${}", b + i);
    let inserted: Vec<String> = (0..row.values.len()).map(|i| p(8 + i)).collect();
    let sql = format!(
        "WITH req AS ({requirement}), \
         bump AS (\
           INSERT INTO usage_counters (business_id, meter, period_start, period_end, used, updated_at) \
           SELECT {b1}, {b2}, {b3}, {b4}, {b5}, {b7} FROM req WHERE req.ok AND {b5} <= {b6} \
           ON CONFLICT (business_id, meter, period_start) DO UPDATE \
           SET used = usage_counters.used + excluded.used, updated_at = excluded.updated_at \
           WHERE usage_counters.used + excluded.used <= {b6} \
           RETURNING used), \
         ins AS (INSERT INTO {table} ({columns}) SELECT {inserted} FROM bump), \
         marks AS (\
           INSERT INTO webhook_quota_marks (business_id, meter, period_start, threshold, used, \
             quota_limit, created_at) \
           SELECT {b1}, {b2}, {b3}, t.threshold, bump.used, {b6}, {b7} \
           FROM bump, (VALUES (80, {t80}::BIGINT), (100, {t100}::BIGINT)) AS t (threshold, at) \
           WHERE bump.used - {b5} < t.at AND bump.used >= t.at \
           ON CONFLICT DO NOTHING) \
         SELECT req.ok, (SELECT used FROM bump) FROM req",
        b1 = p(1),
        b2 = p(2),
        b3 = p(3),
        b4 = p(4),
        b5 = p(5),
        b6 = p(6),
        b7 = p(7),
        table = row.table,
        columns = row.columns.join(", "),
        inserted = inserted.join(", "),
        t80 = p(8 + row.values.len()),
        t100 = p(9 + row.values.len()),
    );
    // Audited: the SQL is built from the code's own constants (table, columns, requirement);
    // every value is a bound parameter.
    let mut query = sqlx::query_as::<_, (bool, Option<i64>)>(sqlx::AssertSqlSafe(sql));
    for value in req_values {
        query = bind(query, value);
    }
    query = query
        .bind(counter.business)
        .bind(counter.meter)
        .bind(counter.period_start)
        .bind(counter.period_end)
        .bind(counter.quantity)
        .bind(counter.limit)
        .bind(counter.now);
    for value in &row.values {
        query = bind(query, value);
    }
    // The uses at which the thresholds are reached (never, without a limit).
    let at = |percent| {
        if counter.limit == UNLIMITED {
            i64::MAX
        } else {
            crate::webhooks::threshold_use(counter.limit, percent)
        }
    };
    query = query.bind(at(80)).bind(at(100));
    let (ok, used) = query.fetch_one(&mut *c).await?;
    match (ok, used) {
        (false, _) => Err(Rejected::Refused(Refused::Missing)),
        (true, None) => Err(Rejected::Refused(Refused::Limit)),
        (true, Some(used)) => Ok(used),
    }
}

type PgQueryAs<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, (bool, Option<i64>), sqlx::postgres::PgArguments>;

fn bind<'q>(query: PgQueryAs<'q>, value: &Value) -> PgQueryAs<'q> {
    match value {
        Value::Uuid(id) => query.bind(*id),
        Value::Text(s) => query.bind(s.clone()),
        Value::Int(n) => query.bind(*n),
        Value::Time(at) => query.bind(*at),
    }
}
