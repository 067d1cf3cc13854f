//! The plan catalog and the caller's subscription.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::billing::changes::{self, ChangeError, Preview, When};
use crate::db::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::http::accounts::{Fields, PlanView};
use crate::http::extract::{ApiJson, Dashboard, DashboardRead};
use crate::store::{ledger, plans, subscriptions};

#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogPlan {
    #[serde(flatten)]
    pub plan: PlanView,
    /// Code of the plan a subscription moves to when this one stops, if any.
    #[schema(required = true)]
    pub fallback: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Catalog {
    pub data: Vec<CatalogPlan>,
    /// Always null: this list fits in one answer (see "Lists" in the README).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/plans`: the public, unarchived plans, cheapest first. No authentication.
#[utoipa::path(
    get,
    path = "/plans",
    tag = "billing",
    summary = "The plan catalog",
    description = "The public, unarchived plans, cheapest first. No authentication.",
    responses((status = 200, description = "The catalog.", body = Catalog)),
)]
pub async fn list_plans(State(app): State<AppState>) -> ApiResult<Json<Catalog>> {
    Ok(Json(Catalog {
        data: catalog(&app).await?,
        next_cursor: None,
    }))
}

/// The public, unarchived plans, as the API and the billing page list them.
pub(crate) async fn catalog(app: &AppState) -> ApiResult<Vec<CatalogPlan>> {
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
    Ok(listed)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingChange {
    pub plan: String,
    pub at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionResponse {
    pub id: Uuid,
    /// `trialing`, `active`, `past_due`, `canceled` or `expired`.
    pub status: String,
    /// Whether the subscription gives access now.
    pub live: bool,
    pub plan: PlanView,
    pub current_period_start: Timestamp,
    pub current_period_end: Timestamp,
    pub cancel_at_period_end: bool,
    #[schema(required = true)]
    pub pending_change: Option<PendingChange>,
    /// Credits, in minor units of the plan's currency.
    pub credit_balance: i64,
}

/// The current subscription of a business as the API shows it.
pub async fn subscription_view(
    app: &AppState,
    business_id: Uuid,
) -> ApiResult<Option<SubscriptionResponse>> {
    let mut tx = app.db.read().await?;
    let Some(sub) = subscriptions::current_of(tx.conn(), business_id).await? else {
        return Ok(None);
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
    let balance = ledger::balance(tx.conn(), business_id).await?;
    let live =
        crate::billing::lifecycle::is_live(&sub.status, sub.current_period_end, app.clock.now());
    Ok(Some(SubscriptionResponse {
        id: sub.id,
        status: sub.status,
        live,
        plan: plan.into(),
        current_period_start: sub.current_period_start,
        current_period_end: sub.current_period_end,
        cancel_at_period_end: sub.cancel_at_period_end,
        pending_change: pending,
        credit_balance: balance,
    }))
}

/// `GET /api/v1/subscription`: the business's current subscription (even when canceled or
/// expired, so the client can say why there is no access), its plan, and the credit balance.
#[utoipa::path(
    get,
    path = "/subscription",
    tag = "billing",
    summary = "The current subscription",
    description = "The business's current subscription (even when canceled or expired, so the \
                   client can say why there is no access), its plan, and the credit balance; \
                   null if the business never had one.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The subscription, or null.", body = Option<SubscriptionResponse>)),
)]
pub async fn get_subscription(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<Option<SubscriptionResponse>>> {
    Ok(Json(subscription_view(&app, p.business_id).await?))
}

impl From<ChangeError> for ApiError {
    fn from(err: ChangeError) -> Self {
        match err {
            ChangeError::Forbidden => ApiError::forbidden(
                "forbidden",
                "Only the business's owners and admins may change its subscription.",
            ),
            ChangeError::PlanNotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "plan_not_found",
                "There is no public plan with this code.",
            ),
            ChangeError::NotSelectable => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plan_not_selectable",
                "This plan is a trial and cannot be chosen.",
            ),
            ChangeError::SamePlan => {
                ApiError::conflict("already_on_plan", "The business is already on this plan.")
            }
            ChangeError::NotLive => ApiError::conflict(
                "subscription_not_live",
                "The subscription has ended; choose a plan to start now instead.",
            ),
            ChangeError::InsufficientCredits { due, balance } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_credits",
                format!("This change needs {due} in credits; the balance is {balance}."),
            ),
            ChangeError::NoSubscription => ApiError::new(
                StatusCode::NOT_FOUND,
                "no_subscription",
                "The business has no subscription.",
            ),
            ChangeError::Conflict => {
                ApiError::conflict("conflict", "The subscription changed meanwhile; retry.")
            }
            ChangeError::Payment(e) => (*e).into(),
            ChangeError::Unexpected(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeRequest {
    /// The code of a public plan.
    #[schema(value_type = String, required = true)]
    pub plan: Option<String>,
    /// `now` (default) or `period_end`.
    #[schema(value_type = Option<ChangeAt>)]
    pub at: Option<String>,
    /// Only say what the change would cost and which current usage the plan would not allow.
    #[serde(default)]
    pub dry_run: bool,
}

impl ChangeRequest {
    /// The plan asked for and when, as the API and the billing page read them.
    pub(crate) fn parse(&self) -> ApiResult<(String, When)> {
        let mut f = Fields::default();
        let plan = f.required("plan", &self.plan);
        let when = match self.at.as_deref() {
            None | Some("now") => Some(When::Now),
            Some("period_end") => Some(When::PeriodEnd),
            Some(_) => {
                f.push("at", "invalid_choice", "`at` is `now` or `period_end`.");
                None
            }
        };
        f.finish()?;
        match (plan, when) {
            (Some(plan), Some(when)) => Ok((plan.to_owned(), when)),
            _ => Err(ApiError::validation(Vec::new())),
        }
    }
}

/// When a plan change takes effect.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // Only the schema of `ChangeRequest::at`; the handler reads the text.
pub enum ChangeAt {
    Now,
    PeriodEnd,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeResponse {
    pub dry_run: bool,
    pub change: Preview,
    #[schema(required = true)]
    pub subscription: Option<SubscriptionResponse>,
}

/// `POST /api/v1/subscription/change`: upgrade now (prorated) or change at the period end;
/// `dry_run: true` only says what it would cost and which current usage the plan would not allow.
#[utoipa::path(
    post,
    path = "/subscription/change",
    tag = "billing",
    summary = "Change plan",
    description = "Upgrade now (prorated, paid from credits) or change at the period end; \
                   `dry_run: true` only says what it would cost and which current usage the plan \
                   would not allow. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    request_body = ChangeRequest,
    responses(
        (status = 200, description = "The change (or its preview) and the subscription after it.", body = ChangeResponse),
        (status = 402, description = "`insufficient_credits`: the balance does not cover the change."),
        (status = 404, description = "`plan_not_found` or `no_subscription`."),
        (status = 409, description = "`already_on_plan`, `subscription_not_live` or `conflict` (retry)."),
    ),
)]
pub async fn change_subscription(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<ChangeRequest>,
) -> ApiResult<Json<ChangeResponse>> {
    let (plan, when) = body.parse()?;
    let plan = plan.as_str();
    let change = if body.dry_run {
        changes::preview(&app, &p, plan, when).await?
    } else {
        changes::change(&app, &p, plan, when).await?
    };
    Ok(Json(ChangeResponse {
        dry_run: body.dry_run,
        change,
        subscription: subscription_view(&app, p.business_id).await?,
    }))
}

/// `POST /api/v1/subscription/cancel`: cancel at the end of the current period.
#[utoipa::path(
    post,
    path = "/subscription/cancel",
    tag = "billing",
    summary = "Cancel at the period end",
    description = "Cancel at the end of the current period. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    responses(
        (status = 200, description = "The subscription after it.", body = Option<SubscriptionResponse>),
        (status = 404, description = "`no_subscription`."),
        (status = 409, description = "`subscription_not_live` or `conflict` (retry)."),
    ),
)]
pub async fn cancel_subscription(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
) -> ApiResult<Json<Option<SubscriptionResponse>>> {
    changes::set_cancel(&app, &p, true).await?;
    Ok(Json(subscription_view(&app, p.business_id).await?))
}

/// `POST /api/v1/subscription/resume`: undo a pending cancellation or plan change.
#[utoipa::path(
    post,
    path = "/subscription/resume",
    tag = "billing",
    summary = "Undo a pending cancellation or change",
    description = "Undo a pending cancellation or plan change. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    responses(
        (status = 200, description = "The subscription after it.", body = Option<SubscriptionResponse>),
        (status = 404, description = "`no_subscription`."),
        (status = 409, description = "`subscription_not_live` or `conflict` (retry)."),
    ),
)]
pub async fn resume_subscription(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
) -> ApiResult<Json<Option<SubscriptionResponse>>> {
    changes::set_cancel(&app, &p, false).await?;
    Ok(Json(subscription_view(&app, p.business_id).await?))
}
