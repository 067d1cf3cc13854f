use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

/// The columns of a [`OneTimeKey`], as every look-up selects them: `SELECT … FROM one_time_keys `.
macro_rules! select_keys {
    () => {
        "SELECT id, purpose, hash, user_id, business_id, email, role, created_by, \
         failed_attempts, created_at, expires_at, used_at, revoked_at FROM one_time_keys "
    };
}

/// [`select_keys!`] for the queries built with `format!`.
const SELECT_KEYS: &str = select_keys!();

/// A single-use key mailed to someone: a password reset, an invitation, an email verification.
/// Only its SHA-256 is stored.
#[derive(Debug, Clone, FromRow)]
pub struct OneTimeKey {
    pub id: Uuid,
    /// `password_reset`, `invitation` or `email_verification`.
    pub purpose: String,
    pub hash: Vec<u8>,
    pub user_id: Option<Uuid>,
    pub business_id: Option<Uuid>,
    pub email: Option<String>,
    pub role: Option<String>,
    pub created_by: Option<Uuid>,
    pub failed_attempts: i64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

pub async fn insert(c: Conn<'_>, k: &OneTimeKey) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO one_time_keys (id, purpose, hash, user_id, business_id, email, role, \
         created_by, failed_attempts, created_at, expires_at, used_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(k.id)
    .bind(&k.purpose)
    .bind(&k.hash)
    .bind(k.user_id)
    .bind(k.business_id)
    .bind(&k.email)
    .bind(&k.role)
    .bind(k.created_by)
    .bind(k.failed_attempts)
    .bind(k.created_at)
    .bind(k.expires_at)
    .bind(k.used_at)
    .bind(k.revoked_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn find_by_hash(
    c: Conn<'_>,
    purpose: &str,
    hash: &[u8],
) -> sqlx::Result<Option<OneTimeKey>> {
    on_conn!(c, c => sqlx::query_as(
        concat!(select_keys!(), "WHERE purpose = $1 AND hash = $2"),
    )
    .bind(purpose)
    .bind(hash)
    .fetch_optional(&mut *c)
    .await)
}

/// Uses a key if it is still usable at `now`; whether this call was the one that used it.
/// The condition makes two concurrent uses of one key succeed once.
pub async fn consume(c: Conn<'_>, id: Uuid, now: Timestamp) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE one_time_keys SET used_at = $2 \
         WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Revokes every live key of a user for one purpose (a new reset key kills the older ones).
pub async fn revoke_for_user(
    c: Conn<'_>,
    user_id: Uuid,
    purpose: &str,
    now: Timestamp,
) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        "UPDATE one_time_keys SET revoked_at = $3 \
         WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(purpose)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Revokes the pending invitations of one email to one business.
pub async fn revoke_invitations_of(
    c: Conn<'_>,
    business_id: Uuid,
    email: &str,
    now: Timestamp,
) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        "UPDATE one_time_keys SET revoked_at = $3 \
         WHERE purpose = 'invitation' AND business_id = $1 AND email = $2 \
         AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(business_id)
    .bind(email)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Gives the pending invitation `old` a new key (its hash), sender and expiry, keeping its id,
/// and keeps the old key's hash on a revoked row of its own, so the old link answers "revoked"
/// rather than "unknown". `false` when the invitation is no longer as read (accepted, revoked
/// or re-keyed meanwhile).
pub async fn rekey_invitation(
    mut c: Conn<'_>,
    old: &OneTimeKey,
    hash: &[u8],
    sent_by: Uuid,
    expires_at: Timestamp,
    now: Timestamp,
) -> sqlx::Result<bool> {
    let updated = on_conn!(c.reborrow(), c => sqlx::query(
        "UPDATE one_time_keys SET hash = $3, created_by = $4, expires_at = $5, \
         failed_attempts = 0 \
         WHERE id = $1 AND hash = $2 AND purpose = 'invitation' AND used_at IS NULL \
         AND revoked_at IS NULL AND expires_at > $6",
    )
    .bind(old.id)
    .bind(&old.hash)
    .bind(hash)
    .bind(sent_by)
    .bind(expires_at)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if updated != 1 {
        return Ok(false);
    }
    let tombstone = OneTimeKey {
        id: Uuid::now_v7(),
        revoked_at: Some(now),
        ..old.clone()
    };
    insert(c, &tombstone).await?;
    Ok(true)
}

/// Counts a failed use of a key; at `max` failures the key is revoked.
pub async fn count_failure(c: Conn<'_>, id: Uuid, max: i64, now: Timestamp) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE one_time_keys SET failed_attempts = failed_attempts + 1, \
         revoked_at = CASE WHEN failed_attempts + 1 >= $2 THEN $3 ELSE revoked_at END \
         WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(max)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// The condition of a business's pending invitations (not used, revoked or expired), with the
/// business as `$1` and the time as `$2`.
const PENDING_INVITATION: &str = "purpose = 'invitation' AND business_id = $1 \
     AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2";

/// A business's pending invitations, newest first.
pub async fn pending_invitations(
    c: Conn<'_>,
    business_id: Uuid,
    now: Timestamp,
) -> sqlx::Result<Vec<OneTimeKey>> {
    let sql = format!("{SELECT_KEYS}WHERE {PENDING_INVITATION} ORDER BY created_at DESC, id DESC");
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
    .bind(business_id)
    .bind(now)
    .fetch_all(&mut *c)
    .await)
}

/// One pending invitation of a business.
pub async fn find_pending_invitation(
    c: Conn<'_>,
    business_id: Uuid,
    id: Uuid,
    now: Timestamp,
) -> sqlx::Result<Option<OneTimeKey>> {
    let sql = format!("{SELECT_KEYS}WHERE {PENDING_INVITATION} AND id = $3");
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
    .bind(business_id)
    .bind(now)
    .bind(id)
    .fetch_optional(&mut *c)
    .await)
}

/// The pending invitations one person sent to a business, oldest first.
pub async fn pending_invitations_sent_by(
    c: Conn<'_>,
    business_id: Uuid,
    user_id: Uuid,
    now: Timestamp,
) -> sqlx::Result<Vec<OneTimeKey>> {
    let sql = format!(
        "{SELECT_KEYS}WHERE {PENDING_INVITATION} AND created_by = $3 ORDER BY created_at, id"
    );
    on_conn!(c, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
    .bind(business_id)
    .bind(now)
    .bind(user_id)
    .fetch_all(&mut *c)
    .await)
}

/// How many pending invitations a business has: the seats they hold.
pub async fn count_pending_invitations(
    c: Conn<'_>,
    business_id: Uuid,
    now: Timestamp,
) -> sqlx::Result<i64> {
    let sql = format!("SELECT COUNT(*) FROM one_time_keys WHERE {PENDING_INVITATION}");
    on_conn!(c, c => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
    .bind(business_id)
    .bind(now)
    .fetch_one(&mut *c)
    .await)
}

/// Revokes one pending invitation of a business; `false` when there is no such pending one.
pub async fn revoke_invitation(
    c: Conn<'_>,
    business_id: Uuid,
    id: Uuid,
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE one_time_keys SET revoked_at = $3 \
         WHERE purpose = 'invitation' AND business_id = $1 AND id = $2 \
         AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
    )
    .bind(business_id)
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Revokes every pending invitation of a business (it is being closed).
pub async fn revoke_all_invitations_of(
    c: Conn<'_>,
    business_id: Uuid,
    now: Timestamp,
) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        "UPDATE one_time_keys SET revoked_at = $2 \
         WHERE purpose = 'invitation' AND business_id = $1 \
         AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(business_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}
