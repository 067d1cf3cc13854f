//! Rate-limit counters: hits per bucket in fixed time windows.

use crate::db::{Conn, Timestamp};
use crate::on_conn;

/// Counts one hit in `bucket`'s window if the count stays within `limit`; returns the new
/// count, or `None` when the window is full. One statement, so concurrent hits never overshoot
/// (the same conditional upsert as the usage counters).
pub async fn hit(
    c: Conn<'_>,
    bucket: &str,
    window_start: Timestamp,
    window_end: Timestamp,
    limit: i64,
) -> sqlx::Result<Option<i64>> {
    on_conn!(c, c => sqlx::query_scalar(
        "INSERT INTO rate_limits (bucket, window_start, window_end, hits) \
         SELECT $1, $2, $3, 1 WHERE 1 <= $4 \
         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 \
         WHERE rate_limits.hits + 1 <= $4 \
         RETURNING hits",
    )
    .bind(bucket)
    .bind(window_start)
    .bind(window_end)
    .bind(limit)
    .fetch_optional(&mut *c)
    .await)
}

/// Gives a hit back (an attempt that turned out to be no abuse: a successful login).
pub async fn refund(c: Conn<'_>, bucket: &str, window_start: Timestamp) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE rate_limits SET hits = hits - 1 \
         WHERE bucket = $1 AND window_start = $2 AND hits > 0",
    )
    .bind(bucket)
    .bind(window_start)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Forgets every window of the buckets starting with `prefix` (an account's, after its
/// password was reset).
pub async fn clear(c: Conn<'_>, prefix: &str) -> sqlx::Result<()> {
    let pattern = format!("{prefix}%");
    on_conn!(c, c => sqlx::query("DELETE FROM rate_limits WHERE bucket LIKE $1")
    .bind(pattern)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Forgets windows that ended before `before`.
pub async fn purge(c: Conn<'_>, before: Timestamp) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query("DELETE FROM rate_limits WHERE window_end < $1")
    .bind(before)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}
