//! The audit log's rows and its chain head (`migrations/*/0005_audit_log.sql`).

use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

/// One stored entry, exactly as hashed.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub occurred_at: Timestamp,
    pub action: String,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub business_id: Option<Uuid>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// A JSON object, kept as the text that was hashed.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

const COLUMNS: &str = "seq, occurred_at, action, actor_kind, actor_id, business_id, target_kind, \
                       target_id, ip, user_agent, details, prev_hash, hash";

/// Moves the chain head one step and returns the new sequence number with the previous entry's
/// hash. The UPDATE locks the head row until the transaction ends, so entries are chained in
/// commit order however many replicas write (SQLite transactions are serialized anyway).
pub async fn advance_head(c: Conn<'_>) -> sqlx::Result<(i64, String)> {
    on_conn!(c, c => sqlx::query_as(
        "UPDATE audit_chain SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash",
    )
    .fetch_one(&mut *c)
    .await)
}

pub async fn insert(c: Conn<'_>, e: &Entry) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO audit_log ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    )))
    .bind(e.seq)
    .bind(e.occurred_at)
    .bind(&e.action)
    .bind(&e.actor_kind)
    .bind(e.actor_id)
    .bind(e.business_id)
    .bind(&e.target_kind)
    .bind(&e.target_id)
    .bind(&e.ip)
    .bind(&e.user_agent)
    .bind(&e.details)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Records `hash` as the hash of the head's entry (after [`insert`]).
pub async fn set_head_hash(c: Conn<'_>, hash: &str) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query("UPDATE audit_chain SET hash = $1 WHERE id = 1")
        .bind(hash)
        .execute(&mut *c)
        .await
        .map(|_| ()))
}

/// What a listing asks for: newest first, below `before` when given.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `None`: every business's entries and those of none (staff).
    pub business_id: Option<Uuid>,
    pub action: Option<String>,
    pub before: Option<i64>,
    pub limit: i64,
}

pub async fn list(c: Conn<'_>, f: &Filter) -> sqlx::Result<Vec<Entry>> {
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_log \
         WHERE ($1 IS NULL OR business_id = $1) AND ($2 IS NULL OR action = $2) \
           AND ($3 IS NULL OR seq < $3) \
         ORDER BY seq DESC LIMIT $4"
    )))
    .bind(f.business_id)
    .bind(&f.action)
    .bind(f.before)
    .bind(f.limit)
    .fetch_all(&mut *c)
    .await)
}

/// Entries with `seq > after`, oldest first, at most `limit` (the verifier's pages).
pub async fn page(c: Conn<'_>, after: i64, limit: i64) -> sqlx::Result<Vec<Entry>> {
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// The chain head: the last entry's sequence number and hash.
pub async fn head(c: Conn<'_>) -> sqlx::Result<(i64, String)> {
    on_conn!(c, c => sqlx::query_as("SELECT seq, hash FROM audit_chain WHERE id = 1")
        .fetch_one(&mut *c)
        .await)
}
