//! Identities from outside providers linked to people, the sign-ins with a provider in flight,
//! and the mailed keys that confirm a link to an existing account.

use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

#[derive(Debug, Clone, FromRow)]
pub struct Identity {
    pub id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

macro_rules! select_identities {
    () => {
        "SELECT id, user_id, provider, subject, email, created_at, last_used_at \
         FROM user_identities "
    };
}

pub async fn insert(c: Conn<'_>, i: &Identity) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO user_identities (id, user_id, provider, subject, email, created_at, \
         last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(i.id)
    .bind(i.user_id)
    .bind(&i.provider)
    .bind(&i.subject)
    .bind(&i.email)
    .bind(i.created_at)
    .bind(i.last_used_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn find(c: Conn<'_>, provider: &str, subject: &str) -> sqlx::Result<Option<Identity>> {
    on_conn!(c, c => sqlx::query_as(concat!(
        select_identities!(),
        "WHERE provider = $1 AND subject = $2"
    ))
    .bind(provider)
    .bind(subject)
    .fetch_optional(&mut *c)
    .await)
}

pub async fn list_of_user(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<Vec<Identity>> {
    on_conn!(c, c => sqlx::query_as(concat!(
        select_identities!(),
        "WHERE user_id = $1 ORDER BY created_at, id"
    ))
    .bind(user_id)
    .fetch_all(&mut *c)
    .await)
}

pub async fn count_of_user(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_identities WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(&mut *c)
    .await)
}

/// Removes one of the user's identities; the removed row, if it was theirs.
pub async fn delete(c: Conn<'_>, id: Uuid, user_id: Uuid) -> sqlx::Result<Option<Identity>> {
    on_conn!(c, c => sqlx::query_as(
        "DELETE FROM user_identities WHERE id = $1 AND user_id = $2 \
         RETURNING id, user_id, provider, subject, email, created_at, last_used_at",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *c)
    .await)
}

pub async fn touch(c: Conn<'_>, id: Uuid, now: Timestamp) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query("UPDATE user_identities SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await
        .map(|_| ()))
}

/// Whether the user has a password they can sign in with (`'!'` marks none).
pub async fn has_usable_password(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM users WHERE id = $1 AND password_hash <> '!'",
    )
    .bind(user_id)
    .fetch_one(&mut *c)
    .await
    .map(|n| n > 0))
}

/// A sign-in with a provider between its start and its callback.
#[derive(Debug, Clone, FromRow)]
pub struct PendingSignIn {
    pub id: Uuid,
    pub state_hash: Vec<u8>,
    pub provider: String,
    pub secrets_sealed: String,
    pub link_user_id: Option<Uuid>,
    pub next: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

pub async fn insert_sign_in(c: Conn<'_>, p: &PendingSignIn) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO identity_sign_ins (id, state_hash, provider, secrets_sealed, link_user_id, \
         next, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(p.id)
    .bind(&p.state_hash)
    .bind(&p.provider)
    .bind(&p.secrets_sealed)
    .bind(p.link_user_id)
    .bind(&p.next)
    .bind(p.created_at)
    .bind(p.expires_at)
    .bind(p.used_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Takes the sign-in whose state has `state_hash`, once: unused, unexpired, for `provider`.
/// Two callbacks with one state: one wins.
pub async fn take_sign_in(
    c: Conn<'_>,
    state_hash: &[u8],
    provider: &str,
    now: Timestamp,
) -> sqlx::Result<Option<PendingSignIn>> {
    on_conn!(c, c => sqlx::query_as(
        "UPDATE identity_sign_ins SET used_at = $3 \
         WHERE state_hash = $1 AND provider = $2 AND used_at IS NULL AND expires_at > $3 \
         RETURNING id, state_hash, provider, secrets_sealed, link_user_id, next, created_at, \
         expires_at, used_at",
    )
    .bind(state_hash)
    .bind(provider)
    .bind(now)
    .fetch_optional(&mut *c)
    .await)
}

/// Forgets sign-ins that ended before `before` (used or expired): their sealed bytes too.
pub async fn delete_sign_ins_before(c: Conn<'_>, before: Timestamp) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query("DELETE FROM identity_sign_ins WHERE expires_at < $1")
        .bind(before)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// A mailed key that links an identity to an existing account when used.
#[derive(Debug, Clone, FromRow)]
pub struct LinkKey {
    pub id: Uuid,
    pub hash: Vec<u8>,
    pub user_id: Uuid,
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

pub async fn insert_link_key(c: Conn<'_>, k: &LinkKey) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO identity_link_keys (id, hash, user_id, provider, subject, email, \
         created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(k.id)
    .bind(&k.hash)
    .bind(k.user_id)
    .bind(&k.provider)
    .bind(&k.subject)
    .bind(&k.email)
    .bind(k.created_at)
    .bind(k.expires_at)
    .bind(k.used_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn find_link_key(c: Conn<'_>, hash: &[u8]) -> sqlx::Result<Option<LinkKey>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, hash, user_id, provider, subject, email, created_at, expires_at, used_at \
         FROM identity_link_keys WHERE hash = $1",
    )
    .bind(hash)
    .fetch_optional(&mut *c)
    .await)
}

/// Uses a link key once (unused and unexpired); whether it was this call that used it.
pub async fn use_link_key(c: Conn<'_>, id: Uuid, now: Timestamp) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE identity_link_keys SET used_at = $2 \
         WHERE id = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}
