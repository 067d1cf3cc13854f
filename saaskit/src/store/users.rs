use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

#[derive(Debug, Clone, FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub email_key: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub email_verified_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A user with the PHC string of their password, for the few places that check it.
#[derive(FromRow)]
pub struct UserCredentials {
    #[sqlx(flatten)]
    pub user: User,
    pub password_hash: String,
}

pub async fn insert(c: Conn<'_>, user: &User, password_hash: &str) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO users (id, email, email_key, password_hash, first_name, last_name, \
         is_active, is_staff, email_verified_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(user.id)
    .bind(&user.email)
    .bind(&user.email_key)
    .bind(password_hash)
    .bind(&user.first_name)
    .bind(&user.last_name)
    .bind(user.is_active)
    .bind(user.is_staff)
    .bind(user.email_verified_at)
    .bind(user.created_at)
    .bind(user.updated_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn find_credentials_by_email_key(
    c: Conn<'_>,
    email_key: &str,
) -> sqlx::Result<Option<UserCredentials>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, email, email_key, first_name, last_name, is_active, is_staff, \
         email_verified_at, created_at, updated_at, password_hash \
         FROM users WHERE email_key = $1 AND NOT is_bot AND password_hash <> '!'",
    )
    .bind(email_key)
    .fetch_optional(&mut *c)
    .await)
}

pub async fn find(c: Conn<'_>, id: Uuid) -> sqlx::Result<Option<User>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, email, email_key, first_name, last_name, is_active, is_staff, \
         email_verified_at, created_at, updated_at FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await)
}

pub async fn find_by_email_key(c: Conn<'_>, email_key: &str) -> sqlx::Result<Option<User>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, email, email_key, first_name, last_name, is_active, is_staff, \
         email_verified_at, created_at, updated_at FROM users WHERE email_key = $1 \
         AND NOT is_bot",
    )
    .bind(email_key)
    .fetch_optional(&mut *c)
    .await)
}

pub async fn set_names(
    c: Conn<'_>,
    id: Uuid,
    first_name: &str,
    last_name: &str,
    now: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE users SET first_name = $2, last_name = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(first_name)
    .bind(last_name)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn set_password_hash(
    c: Conn<'_>,
    id: Uuid,
    password_hash: &str,
    now: Timestamp,
) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(password_hash)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Serialises writers that decide from a user's state (issuing a reset key revokes the older
/// ones): PostgreSQL locks the row until the transaction ends; SQLite's transactions that may
/// write already run one at a time (`BEGIN IMMEDIATE`).
pub async fn lock(c: Conn<'_>, id: Uuid) -> sqlx::Result<()> {
    match c {
        Conn::Postgres(c) => sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|_| ()),
        Conn::Sqlite(_) => Ok(()),
    }
}

pub async fn set_staff(
    c: Conn<'_>,
    email_key: &str,
    staff: bool,
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE users SET is_staff = $2, updated_at = $3 WHERE email_key = $1 AND NOT is_bot",
    )
    .bind(email_key)
    .bind(staff)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Creates the user row behind a bot member. Bots have no password (the stored value is not a
/// password hash, so nothing verifies against it) and are invisible to every lookup by email.
pub async fn insert_bot(c: Conn<'_>, user: &User) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO users (id, email, email_key, password_hash, first_name, last_name, \
         is_active, is_staff, email_verified_at, created_at, updated_at, is_bot) \
         VALUES ($1, $2, $3, '!', $4, $5, $6, FALSE, NULL, $7, $8, TRUE)",
    )
    .bind(user.id)
    .bind(&user.email)
    .bind(&user.email_key)
    .bind(&user.first_name)
    .bind(&user.last_name)
    .bind(user.is_active)
    .bind(user.created_at)
    .bind(user.updated_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Turns a user on or off; returns whether they exist. Their sessions fail while off.
pub async fn set_active(c: Conn<'_>, id: Uuid, active: bool, now: Timestamp) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE users SET is_active = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(active)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Erases a user's personal data and turns the account off for good: the email becomes
/// `deleted-<id>@deleted.invalid` (so the address is free to sign up again), the names empty,
/// the password unusable. The row stays, so the ledger, the audit log and past memberships
/// still name who acted.
pub async fn erase(c: Conn<'_>, id: Uuid, now: Timestamp) -> sqlx::Result<bool> {
    let tombstone = format!("deleted-{}@deleted.invalid", id.simple());
    on_conn!(c, c => sqlx::query(
        "UPDATE users SET email = $2, email_key = $2, first_name = '', last_name = '', \
         password_hash = '!', is_active = FALSE, is_staff = FALSE, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(&tombstone)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Records that the user proved they read their mailbox (the first time only); whether this
/// call was the one that did.
pub async fn mark_email_verified(c: Conn<'_>, id: Uuid, now: Timestamp) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE users SET email_verified_at = $2, updated_at = $2 \
         WHERE id = $1 AND email_verified_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}
