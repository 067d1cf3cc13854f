//! Passkeys: registered credentials, the handle a person's authenticators know them by, and the
//! WebAuthn ceremonies in flight.

use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

#[derive(Debug, Clone, FromRow)]
pub struct StoredPasskey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub credential_id: String,
    /// webauthn-rs' `Passkey` as JSON: the public key and its counters.
    pub credential: String,
    pub name: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

macro_rules! select_passkeys {
    () => {
        "SELECT id, user_id, credential_id, credential, name, created_at, last_used_at \
         FROM passkeys "
    };
}

pub async fn webauthn_handle(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<Option<Uuid>> {
    on_conn!(c, c => sqlx::query_scalar::<_, Option<Uuid>>(
        "SELECT webauthn_handle FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *c)
    .await
    .map(Option::flatten))
}

/// Gives the user `handle` unless they have one already.
pub async fn set_webauthn_handle(c: Conn<'_>, user_id: Uuid, handle: Uuid) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE users SET webauthn_handle = $2 WHERE id = $1 AND webauthn_handle IS NULL",
    )
    .bind(user_id)
    .bind(handle)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn user_of_handle(c: Conn<'_>, handle: Uuid) -> sqlx::Result<Option<Uuid>> {
    on_conn!(c, c => sqlx::query_scalar("SELECT id FROM users WHERE webauthn_handle = $1")
        .bind(handle)
        .fetch_optional(&mut *c)
        .await)
}

pub async fn insert(c: Conn<'_>, p: &StoredPasskey) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO passkeys (id, user_id, credential_id, credential, name, created_at, \
         last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(p.id)
    .bind(p.user_id)
    .bind(&p.credential_id)
    .bind(&p.credential)
    .bind(&p.name)
    .bind(p.created_at)
    .bind(p.last_used_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// A user's passkeys, oldest first.
pub async fn list_of_user(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<Vec<StoredPasskey>> {
    on_conn!(c, c => sqlx::query_as(concat!(
        select_passkeys!(),
        "WHERE user_id = $1 ORDER BY created_at, id"
    ))
    .bind(user_id)
    .fetch_all(&mut *c)
    .await)
}

pub async fn find_by_credential_id(
    c: Conn<'_>,
    credential_id: &str,
) -> sqlx::Result<Option<StoredPasskey>> {
    on_conn!(c, c => sqlx::query_as(concat!(select_passkeys!(), "WHERE credential_id = $1"))
        .bind(credential_id)
        .fetch_optional(&mut *c)
        .await)
}

/// Renames one of the user's passkeys; whether it is theirs.
pub async fn rename(c: Conn<'_>, id: Uuid, user_id: Uuid, name: &str) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query("UPDATE passkeys SET name = $3 WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .bind(name)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Removes one of the user's passkeys; whether it was theirs.
pub async fn delete(c: Conn<'_>, id: Uuid, user_id: Uuid) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected() == 1))
}

pub async fn delete_all_of_user(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query("DELETE FROM passkeys WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *c)
        .await
        .map(|_| ()))
}

/// Records a use: the credential's new counters (if they changed) and when.
pub async fn used(
    c: Conn<'_>,
    id: Uuid,
    credential: Option<&str>,
    now: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE passkeys SET credential = COALESCE($2, credential), last_used_at = $3 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(credential)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn count_of_user(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar("SELECT COUNT(*) FROM passkeys WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&mut *c)
        .await)
}

/// The server's half of a ceremony: `kind` is `registration` or `sign_in`.
pub async fn insert_ceremony(
    c: Conn<'_>,
    id: Uuid,
    kind: &str,
    user_id: Option<Uuid>,
    state_sealed: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO passkey_ceremonies (id, kind, user_id, state_sealed, created_at, \
         expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)",
    )
    .bind(id)
    .bind(kind)
    .bind(user_id)
    .bind(state_sealed)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

#[derive(Debug, Clone, FromRow)]
pub struct Ceremony {
    pub user_id: Option<Uuid>,
    pub state_sealed: String,
}

/// Takes a ceremony of `kind` still in flight at `now`, once: the second taker finds nothing.
pub async fn take_ceremony(
    c: Conn<'_>,
    id: Uuid,
    kind: &str,
    now: Timestamp,
) -> sqlx::Result<Option<Ceremony>> {
    on_conn!(c, c => sqlx::query_as(
        "UPDATE passkey_ceremonies SET used_at = $3 \
         WHERE id = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3 \
         RETURNING user_id, state_sealed",
    )
    .bind(id)
    .bind(kind)
    .bind(now)
    .fetch_optional(&mut *c)
    .await)
}

/// Forgets ceremonies that ended before `before` (used or expired).
pub async fn delete_ceremonies_before(c: Conn<'_>, before: Timestamp) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query("DELETE FROM passkey_ceremonies WHERE expires_at < $1")
        .bind(before)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}
