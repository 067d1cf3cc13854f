//! The plan catalog and the caller's subscription.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::db::Timestamp;
use crate::error::ApiResult;
use crate::http::accounts::PlanView;
use crate::http::extract::Authenticated;
use crate::store::{ledger, plans, subscriptions};

#[derive(Debug, Serialize)]
pub struct CatalogPlan {
    #[serde(flatten)]
    pub plan: PlanView,
    /// Code of the plan a subscription moves to when this one stops, if any.
    pub fallback: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Catalog {
    pub plans: Vec<CatalogPlan>,
}

/// `GET /api/v1/plans`: the public, unarchived plans, cheapest first. No authentication.
pub async fn list_plans(State(app): State<AppState>) -> ApiResult<Json<Catalog>> {
    let all = {
        let mut tx = app.db.read().await?;
        plans::all(tx.conn()).await?
    };
    let code_of = |id: Option<Uuid>| {
        id.and_then(|id| all.iter().find(|p| p.id == id))
            .map(|p| p.code.clone())
    };
    let listed = all
        .iter()
        .filter(|p| p.is_public && p.archived_at.is_none())
        .map(|p| CatalogPlan {
            fallback: code_of(p.fallback_plan_id),
            plan: p.clone().into(),
        })
        .collect();
    Ok(Json(Catalog { plans: listed }))
}

#[derive(Debug, Serialize)]
pub struct PendingChange {
    pub plan: String,
    pub at: Timestamp,
}

#[derive(Debug, Serialize)]
pub struct SubscriptionResponse {
    pub id: Uuid,
    pub status: String,
    /// Whether the subscription gives access now.
    pub live: bool,
    pub plan: PlanView,
    pub current_period_start: Timestamp,
    pub current_period_end: Timestamp,
    pub cancel_at_period_end: bool,
    pub pending_change: Option<PendingChange>,
    /// Credits, in minor units of the plan's currency.
    pub credit_balance: i64,
}

/// `GET /api/v1/subscription`: the business's current subscription (even when canceled or
/// expired, so the client can say why there is no access), its plan, and the credit balance.
pub async fn get_subscription(
    State(app): State<AppState>,
    Authenticated(p): Authenticated,
) -> ApiResult<Json<Option<SubscriptionResponse>>> {
    let mut tx = app.db.read().await?;
    let Some(sub) = subscriptions::current_of(tx.conn(), p.business_id).await? else {
        return Ok(Json(None));
    };
    let plan = plans::find(tx.conn(), sub.plan_id).await?.ok_or_else(|| {
        anyhow::anyhow!("plan {} of subscription {} is missing", sub.plan_id, sub.id)
    })?;
    let pending = match sub.pending_plan_id {
        Some(id) => plans::find(tx.conn(), id).await?.map(|pp| PendingChange {
            plan: pp.code,
            at: sub.current_period_end,
        }),
        None => None,
    };
    let balance = ledger::balance(tx.conn(), p.business_id).await?;
    let live = crate::accounts::CurrentSubscription {
        id: sub.id,
        status: sub.status.clone(),
        current_period_start: sub.current_period_start,
        current_period_end: sub.current_period_end,
        plan_id: sub.plan_id,
    }
    .is_live(app.clock.now());
    Ok(Json(Some(SubscriptionResponse {
        id: sub.id,
        status: sub.status,
        live,
        plan: plan.into(),
        current_period_start: sub.current_period_start,
        current_period_end: sub.current_period_end,
        cancel_at_period_end: sub.cancel_at_period_end,
        pending_change: pending,
        credit_balance: balance,
    })))
}
