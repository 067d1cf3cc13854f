use std::collections::BTreeMap;

use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::{Conn, Timestamp};
use crate::on_conn;

/// Limits per meter; a meter that is absent is unlimited.
pub type Limits = BTreeMap<String, i64>;

#[derive(Debug, Clone, FromRow)]
pub struct Plan {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub description: String,
    pub price_minor: i64,
    pub currency: String,
    pub cycle_days: i64,
    pub renews: bool,
    pub fallback_plan_id: Option<Uuid>,
    pub limits: Json<Limits>,
    pub is_public: bool,
    pub archived_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub async fn find_by_code(c: Conn<'_>, code: &str) -> sqlx::Result<Option<Plan>> {
    // Codes are slugs; anything else (a NUL, which PostgreSQL cannot even compare) matches none.
    if !crate::billing::admin::is_slug(code) {
        return Ok(None);
    }
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, code, name, description, price_minor, currency, cycle_days, renews, \
         fallback_plan_id, limits, is_public, archived_at, created_at, updated_at \
         FROM plans WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(&mut *c)
    .await)
}

pub async fn find(c: Conn<'_>, id: Uuid) -> sqlx::Result<Option<Plan>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, code, name, description, price_minor, currency, cycle_days, renews, \
         fallback_plan_id, limits, is_public, archived_at, created_at, updated_at \
         FROM plans WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await)
}

/// Every plan, archived ones included (subscriptions may still be on them).
pub async fn all(c: Conn<'_>) -> sqlx::Result<Vec<Plan>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, code, name, description, price_minor, currency, cycle_days, renews, \
         fallback_plan_id, limits, is_public, archived_at, created_at, updated_at \
         FROM plans ORDER BY price_minor, code",
    )
    .fetch_all(&mut *c)
    .await)
}

pub async fn insert(c: Conn<'_>, p: &Plan) -> sqlx::Result<()> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO plans (id, code, name, description, price_minor, currency, cycle_days, \
         renews, fallback_plan_id, limits, is_public, archived_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(p.id)
    .bind(&p.code)
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.price_minor)
    .bind(&p.currency)
    .bind(p.cycle_days)
    .bind(p.renews)
    .bind(p.fallback_plan_id)
    .bind(&p.limits)
    .bind(p.is_public)
    .bind(p.archived_at)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
}

/// Writes every editable field of a plan (its code and id never change).
pub async fn update(c: Conn<'_>, p: &Plan) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "UPDATE plans SET name = $2, description = $3, price_minor = $4, currency = $5, \
         cycle_days = $6, renews = $7, fallback_plan_id = $8, limits = $9, is_public = $10, \
         archived_at = $11, updated_at = $12 WHERE id = $1",
    )
    .bind(p.id)
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.price_minor)
    .bind(&p.currency)
    .bind(p.cycle_days)
    .bind(p.renews)
    .bind(p.fallback_plan_id)
    .bind(&p.limits)
    .bind(p.is_public)
    .bind(p.archived_at)
    .bind(p.updated_at)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Records that the default limit of `meter` on `plan_code` was considered; false when it
/// already was (so it is never applied twice).
pub async fn claim_default_limit(
    c: Conn<'_>,
    plan_code: &str,
    meter: &str,
    now: Timestamp,
) -> sqlx::Result<bool> {
    on_conn!(c, c => sqlx::query(
        "INSERT INTO product_default_limits (plan_code, meter, applied_at) VALUES ($1, $2, $3) \
         ON CONFLICT (plan_code, meter) DO NOTHING",
    )
    .bind(plan_code)
    .bind(meter)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() == 1))
}
