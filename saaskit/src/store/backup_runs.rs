//! `backup_runs`: which slot of the backup schedule a process has claimed, and finished.

use crate::db::{Conn, Timestamp};
use crate::on_conn;

/// Claims `slot` for this process: `true` when it was free, or claimed by a process that has
/// not finished it since before `stale_before` (it died, or hangs).
pub async fn claim(
    c: Conn<'_>,
    slot: i64,
    now: Timestamp,
    stale_before: Timestamp,
) -> sqlx::Result<bool> {
    let done = on_conn!(c, c => sqlx::query(
        "INSERT INTO backup_runs (slot, claimed_at) VALUES ($1, $2) \
         ON CONFLICT (slot) DO UPDATE SET claimed_at = excluded.claimed_at \
         WHERE backup_runs.finished_at IS NULL AND backup_runs.claimed_at < $3",
    )
    .bind(slot)
    .bind(now)
    .bind(stale_before)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(done == 1)
}

/// Who holds `slot`: `(claimed_at, finished_at)`, if anyone claimed it.
pub async fn state(c: Conn<'_>, slot: i64) -> sqlx::Result<Option<(Timestamp, Option<Timestamp>)>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT claimed_at, finished_at FROM backup_runs WHERE slot = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *c)
    .await)
}

/// Records that `slot`'s backup was written to `file` (`bytes` long).
pub async fn finish(
    c: Conn<'_>,
    slot: i64,
    now: Timestamp,
    file: &str,
    bytes: i64,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE backup_runs SET finished_at = $2, file = $3, bytes = $4 WHERE slot = $1",
    )
    .bind(slot)
    .bind(now)
    .bind(file)
    .bind(bytes)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Gives up an unfinished claim on `slot`, so that any process may try it again.
pub async fn release(c: Conn<'_>, slot: i64) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "DELETE FROM backup_runs WHERE slot = $1 AND finished_at IS NULL",
    )
    .bind(slot)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}
