use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

/// A message waiting in (or kept by) the outbox.
#[derive(Debug, Clone, FromRow)]
pub struct OutboxMessage {
    pub id: Uuid,
    /// The RFC 5322 Message-ID, fixed when queued so every retry sends the same message.
    pub message_id: String,
    pub to_address: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub failed_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

pub async fn insert(c: Conn<'_>, m: &OutboxMessage) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO outbox (id, message_id, to_address, subject, body_text, body_html, attempts, \
         next_attempt_at, sent_at, failed_at, last_error, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(m.id)
    .bind(&m.message_id)
    .bind(&m.to_address)
    .bind(&m.subject)
    .bind(&m.body_text)
    .bind(&m.body_html)
    .bind(m.attempts)
    .bind(m.next_attempt_at)
    .bind(m.sent_at)
    .bind(m.failed_at)
    .bind(&m.last_error)
    .bind(m.created_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Claims up to `limit` messages due at `now`: counts the attempt and pushes their next attempt
/// to `lease_until`, so a sender that dies mid-send leaves them to be retried then, and other
/// workers (replicas) skip them meanwhile. PostgreSQL skips rows another worker is claiming;
/// SQLite has one writer at a time (the transaction began IMMEDIATE).
pub async fn claim_due(
    c: Conn<'_>,
    now: Timestamp,
    lease_until: Timestamp,
    limit: i64,
) -> sqlx::Result<Vec<OutboxMessage>> {
    match c {
        Conn::Postgres(c) => {
            sqlx::query_as(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2 \
                 WHERE id IN (SELECT id FROM outbox \
                              WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
                              ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, message_id, to_address, subject, body_text, body_html, attempts, \
                 next_attempt_at, sent_at, failed_at, last_error, created_at",
            )
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(&mut *c)
            .await
        }
        Conn::Sqlite(c) => {
            sqlx::query_as(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2 \
                 WHERE id IN (SELECT id FROM outbox \
                              WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
                              ORDER BY next_attempt_at LIMIT $3) \
                 RETURNING id, message_id, to_address, subject, body_text, body_html, attempts, \
                 next_attempt_at, sent_at, failed_at, last_error, created_at",
            )
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(&mut *c)
            .await
        }
    }
}

/// Marks a message sent. Its bodies are cleared: they may hold single-use links, which have no
/// business staying in the database once delivered.
pub async fn mark_sent(c: Conn<'_>, id: Uuid, now: Timestamp) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE outbox SET sent_at = $2, body_text = '', body_html = '', last_error = NULL \
         WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Schedules the next attempt of a message claimed as attempt `attempt`. Nothing happens if
/// another worker has claimed it since (its lease ran out) or it was sent: a late failure must
/// not cut the new holder's lease short. Whether it applied.
pub async fn schedule_retry(
    c: Conn<'_>,
    id: Uuid,
    attempt: i64,
    next_attempt_at: Timestamp,
    error: &str,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE outbox SET next_attempt_at = $2, last_error = $3 \
         WHERE id = $1 AND attempts = $4 AND sent_at IS NULL",
    )
    .bind(id)
    .bind(next_attempt_at)
    .bind(error)
    .bind(attempt)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Gives up on a message claimed as attempt `attempt`; it stays in the table, with its error,
/// for inspection. Like [`schedule_retry`], nothing happens if it was claimed again or sent.
pub async fn mark_failed(
    c: Conn<'_>,
    id: Uuid,
    attempt: i64,
    now: Timestamp,
    error: &str,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE outbox SET failed_at = $2, last_error = $3 \
         WHERE id = $1 AND attempts = $4 AND sent_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .bind(error)
    .bind(attempt)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Messages neither sent nor given up on.
pub async fn backlog(c: Conn<'_>) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL",
    )
    .fetch_one(&mut *c)
    .await)
}

/// Messages given up on after every retry (kept with their last error).
pub async fn failed_count(c: Conn<'_>) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE failed_at IS NOT NULL",
    )
    .fetch_one(&mut *c)
    .await)
}

/// The bodies of messages not yet cleared (waiting, or kept after failing), by id after
/// `after`, `limit` at a time: for re-sealing under a new key.
pub async fn kept_bodies(
    c: Conn<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, String, String)>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, body_text, body_html FROM outbox \
         WHERE sent_at IS NULL AND ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// Replaces a waiting message's bodies (those given) with re-sealed ones.
pub async fn replace_bodies(
    c: Conn<'_>,
    id: Uuid,
    text: Option<&str>,
    html: Option<&str>,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE outbox SET body_text = COALESCE($2, body_text), body_html = COALESCE($3, body_html) \
         WHERE id = $1 AND sent_at IS NULL",
    )
    .bind(id)
    .bind(text)
    .bind(html)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}
