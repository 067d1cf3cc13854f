//! Second factors: a person's TOTP authenticator (its seed sealed) and recovery codes (digests).

use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

#[derive(Debug, Clone, FromRow)]
pub struct Totp {
    pub user_id: Uuid,
    /// The base32 seed, sealed (`seal.rs`) with the user's id as its context.
    pub secret_sealed: String,
    /// Null while the set-up waits for its first code.
    pub confirmed_at: Option<Timestamp>,
    /// The newest time step a code was accepted for.
    pub last_step: Option<i64>,
    pub created_at: Timestamp,
}

pub async fn find_totp(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<Option<Totp>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT user_id, secret_sealed, confirmed_at, last_step, created_at FROM user_totp \
         WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *c)
    .await)
}

/// Starts (or starts again) a set-up: a new unconfirmed seed, unless one is confirmed already.
/// Whether it was written.
pub async fn put_pending_totp(
    c: Conn<'_>,
    user_id: Uuid,
    secret_sealed: &str,
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO user_totp (user_id, secret_sealed, confirmed_at, last_step, created_at, \
         updated_at) VALUES ($1, $2, NULL, NULL, $3, $3) \
         ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, \
         last_step = NULL, created_at = excluded.created_at, updated_at = excluded.updated_at \
         WHERE user_totp.confirmed_at IS NULL",
    )
    .bind(user_id)
    .bind(secret_sealed)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Takes the code of time step `step`: true only if no code of this step or a later one was
/// taken before (two requests presenting one code: one wins). `confirm` also activates a
/// pending set-up.
pub async fn take_step(
    c: Conn<'_>,
    user_id: Uuid,
    step: i64,
    confirm: bool,
    now: Timestamp,
) -> sqlx::Result<bool> {
    let sql = if confirm {
        "UPDATE user_totp SET last_step = $2, confirmed_at = $3, updated_at = $3 \
         WHERE user_id = $1 AND confirmed_at IS NULL AND (last_step IS NULL OR last_step < $2)"
    } else {
        "UPDATE user_totp SET last_step = $2, updated_at = $3 \
         WHERE user_id = $1 AND confirmed_at IS NOT NULL \
         AND (last_step IS NULL OR last_step < $2)"
    };
    on_conn!(c, c => sqlx::query(sql)
        .bind(user_id)
        .bind(step)
        .bind(now)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Removes a user's authenticator, active or pending; whether an active one was removed.
pub async fn delete_totp(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query_scalar::<_, Option<Timestamp>>(
        "DELETE FROM user_totp WHERE user_id = $1 RETURNING confirmed_at",
    )
    .bind(user_id)
    .fetch_optional(&mut *c)
    .await
    .map(|r| matches!(r, Some(Some(_)))))
}

pub async fn delete_recovery_codes(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *c)
        .await
        .map(|_| ()))
}

pub async fn insert_recovery_code(
    c: Conn<'_>,
    user_id: Uuid,
    hash: &[u8],
    now: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO recovery_codes (id, user_id, hash, created_at, used_at) \
         VALUES ($1, $2, $3, $4, NULL)",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(hash)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Uses one of the user's recovery codes; whether it was there, unused (once, whatever races).
pub async fn use_recovery_code(
    c: Conn<'_>,
    user_id: Uuid,
    hash: &[u8],
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE recovery_codes SET used_at = $3 \
         WHERE user_id = $1 AND hash = $2 AND used_at IS NULL",
    )
    .bind(user_id)
    .bind(hash)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

pub async fn count_unused_recovery_codes(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(&mut *c)
    .await)
}

/// Every sealed seed, for re-sealing under a new key.
pub async fn all_sealed(c: Conn<'_>) -> sqlx::Result<Vec<(Uuid, String)>> {
    on_conn!(c, c => sqlx::query_as("SELECT user_id, secret_sealed FROM user_totp")
        .fetch_all(&mut *c)
        .await)
}

pub async fn set_sealed(c: Conn<'_>, user_id: Uuid, sealed: &str) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query("UPDATE user_totp SET secret_sealed = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(sealed)
        .execute(&mut *c)
        .await
        .map(|_| ()))
}
