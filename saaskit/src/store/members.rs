use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

#[derive(Debug, Clone, FromRow)]
pub struct Member {
    pub id: Uuid,
    pub business_id: Uuid,
    pub user_id: Uuid,
    /// `owner`, `admin`, `member` or `bot` (see [`crate::domain::Role`]).
    pub role: String,
    /// `active` or `suspended`.
    pub status: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub async fn insert(c: Conn<'_>, member: &Member) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO members (id, business_id, user_id, role, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(member.id)
    .bind(member.business_id)
    .bind(member.user_id)
    .bind(&member.role)
    .bind(&member.status)
    .bind(member.created_at)
    .bind(member.updated_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// The business a user acts for when nothing else says which: the one whose session they used
/// most recently, else the one they joined first. Only active memberships of active businesses.
pub async fn default_business_of(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<Option<Uuid>> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT m.business_id FROM members m \
         JOIN businesses b ON b.id = m.business_id \
         WHERE m.user_id = $1 AND m.status = 'active' AND b.is_active \
         ORDER BY (SELECT MAX(t.created_at) FROM tokens t \
                   WHERE t.user_id = m.user_id AND t.business_id = m.business_id \
                   AND t.kind = 'session') DESC NULLS LAST, \
                  m.created_at ASC \
         LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(&mut *c)
    .await)
}

pub async fn find(c: Conn<'_>, business_id: Uuid, user_id: Uuid) -> sqlx::Result<Option<Member>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, business_id, user_id, role, status, created_at, updated_at \
         FROM members WHERE business_id = $1 AND user_id = $2",
    )
    .bind(business_id)
    .bind(user_id)
    .fetch_optional(&mut *c)
    .await)
}

/// Active members of a business (the `members` gauge).
pub async fn count_active(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM members WHERE business_id = $1 AND status = 'active'",
    )
    .bind(business_id)
    .fetch_one(&mut *c)
    .await)
}

pub async fn find_by_id(c: Conn<'_>, business_id: Uuid, id: Uuid) -> sqlx::Result<Option<Member>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, business_id, user_id, role, status, created_at, updated_at \
         FROM members WHERE business_id = $1 AND id = $2",
    )
    .bind(business_id)
    .bind(id)
    .fetch_optional(&mut *c)
    .await)
}

/// Ends an active membership without deleting its history; returns whether it was active
/// (so two concurrent removals give the seat back once).
pub async fn suspend(c: Conn<'_>, id: Uuid, now: Timestamp) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE members SET status = 'suspended', updated_at = $2 \
         WHERE id = $1 AND status = 'active'",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// An active member of a business with what people see of their user.
#[derive(Debug, Clone, FromRow)]
pub struct MemberListing {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
    pub is_bot: bool,
    pub created_at: Timestamp,
}

/// The active members of a business, oldest first.
pub async fn list_active(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<Vec<MemberListing>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT m.id, m.user_id, u.email, u.first_name, u.last_name, m.role, u.is_bot, \
         m.created_at FROM members m JOIN users u ON u.id = m.user_id \
         WHERE m.business_id = $1 AND m.status = 'active' ORDER BY m.created_at, m.id",
    )
    .bind(business_id)
    .fetch_all(&mut *c)
    .await)
}

/// Active owners of a business.
pub async fn count_owners(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM members WHERE business_id = $1 AND status = 'active' \
         AND role = 'owner'",
    )
    .bind(business_id)
    .fetch_one(&mut *c)
    .await)
}

pub async fn set_role(c: Conn<'_>, id: Uuid, role: &str, now: Timestamp) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "UPDATE members SET role = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(role)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// A user's active memberships, of active businesses or not.
pub async fn active_of_user(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<Vec<Member>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, business_id, user_id, role, status, created_at, updated_at \
         FROM members WHERE user_id = $1 AND status = 'active' ORDER BY created_at, id",
    )
    .bind(user_id)
    .fetch_all(&mut *c)
    .await)
}

/// Active members of a business who are people (not bots).
pub async fn count_active_people(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<i64> {
    on_conn!(c, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM members m JOIN users u ON u.id = m.user_id \
         WHERE m.business_id = $1 AND m.status = 'active' AND NOT u.is_bot",
    )
    .bind(business_id)
    .fetch_one(&mut *c)
    .await)
}

/// Ends every active membership of a business (it is being closed).
pub async fn suspend_all_of_business(
    c: Conn<'_>,
    business_id: Uuid,
    now: Timestamp,
) -> sqlx::Result<u64> {
    on_conn!(c, c => sqlx::query(
        "UPDATE members SET status = 'suspended', updated_at = $2 \
         WHERE business_id = $1 AND status = 'active'",
    )
    .bind(business_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// A business a user belongs to, with their role in it.
#[derive(Debug, Clone, FromRow)]
pub struct BusinessOfUser {
    pub business_id: Uuid,
    pub name: String,
    pub role: String,
    pub created_at: Timestamp,
}

/// The active businesses a user is an active member of, in the order they joined.
pub async fn businesses_of_user(c: Conn<'_>, user_id: Uuid) -> sqlx::Result<Vec<BusinessOfUser>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT b.id AS business_id, b.name, m.role, b.created_at FROM members m \
         JOIN businesses b ON b.id = m.business_id \
         WHERE m.user_id = $1 AND m.status = 'active' AND b.is_active \
         ORDER BY m.created_at, m.id",
    )
    .bind(user_id)
    .fetch_all(&mut *c)
    .await)
}
