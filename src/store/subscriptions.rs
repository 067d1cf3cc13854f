use sqlx::FromRow;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

#[derive(Debug, Clone, FromRow)]
pub struct Subscription {
    pub id: Uuid,
    pub business_id: Uuid,
    pub plan_id: Uuid,
    /// `trialing`, `active`, `past_due`, `canceled` or `expired`.
    pub status: String,
    pub current_period_start: Timestamp,
    pub current_period_end: Timestamp,
    pub is_current: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub async fn insert(c: Conn<'_>, sub: &Subscription) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO subscriptions (id, business_id, plan_id, status, current_period_start, \
         current_period_end, is_current, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(sub.id)
    .bind(sub.business_id)
    .bind(sub.plan_id)
    .bind(&sub.status)
    .bind(sub.current_period_start)
    .bind(sub.current_period_end)
    .bind(sub.is_current)
    .bind(sub.created_at)
    .bind(sub.updated_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

pub async fn current_of(c: Conn<'_>, business_id: Uuid) -> sqlx::Result<Option<Subscription>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, business_id, plan_id, status, current_period_start, current_period_end, \
         is_current, created_at, updated_at \
         FROM subscriptions WHERE business_id = $1 AND is_current",
    )
    .bind(business_id)
    .fetch_optional(&mut *c)
    .await)
}
