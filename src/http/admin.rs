//! Staff-only operations: plans, credits, and a business's plan. Every route here requires a
//! session of a user with the staff flag (`saaskit user make-staff <email>`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::accounts::Principal;
use crate::app::AppState;
use crate::billing::admin::{self, AdminError, NewPlan, PlanUpdate};
use crate::billing::events::Actor;
use crate::db::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::http::accounts::{Fields, PlanView};
use crate::http::billing::{SubscriptionResponse, subscription_view};
use crate::http::extract::{ApiJson, Dashboard, DashboardRead, PathId};
use crate::store::plans::{self, Plan};

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::BusinessNotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "business_not_found",
                "There is no business with this id.",
            ),
            AdminError::PlanNotFound(code) => ApiError::new(
                StatusCode::NOT_FOUND,
                "plan_not_found",
                format!("There is no plan with the code {code:?}."),
            ),
            AdminError::PlanExists(code) => ApiError::conflict(
                "plan_exists",
                format!("A plan with the code {code:?} already exists."),
            ),
            AdminError::Invalid(message) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                message,
            ),
            AdminError::Unexpected(e) => e.into(),
        }
    }
}

fn staff(p: &Principal) -> ApiResult<()> {
    if p.is_staff() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "staff_only",
            "This route is for staff.",
        ))
    }
}

#[derive(Debug, Serialize)]
pub struct AdminPlan {
    #[serde(flatten)]
    pub plan: PlanView,
    pub fallback: Option<String>,
    pub archived_at: Option<Timestamp>,
}

async fn admin_view(app: &AppState, plan: Plan) -> ApiResult<AdminPlan> {
    let fallback = match plan.fallback_plan_id {
        Some(id) => {
            let mut tx = app.db.read().await?;
            plans::find(tx.conn(), id).await?.map(|p| p.code)
        }
        None => None,
    };
    Ok(AdminPlan {
        fallback,
        archived_at: plan.archived_at,
        plan: plan.into(),
    })
}

/// `GET /api/v1/admin/plans`: every plan, hidden and archived ones included.
pub async fn admin_list_plans(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<Vec<AdminPlan>>> {
    staff(&p)?;
    let all = {
        let mut tx = app.db.read().await?;
        plans::all(tx.conn()).await?
    };
    let mut out = Vec::with_capacity(all.len());
    for plan in all {
        out.push(admin_view(&app, plan).await?);
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub struct CreatePlanRequest {
    pub code: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<i64>,
    pub currency: Option<String>,
    pub cycle_days: Option<i64>,
    pub renews: Option<bool>,
    pub fallback: Option<String>,
    pub limits: Option<BTreeMap<String, i64>>,
    pub public: Option<bool>,
}

/// `POST /api/v1/admin/plans`
pub async fn admin_create_plan(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<CreatePlanRequest>,
) -> ApiResult<(StatusCode, Json<AdminPlan>)> {
    staff(&p)?;
    let mut f = Fields::default();
    let code = f.required("code", &body.code).map(str::to_owned);
    let name = f.required("name", &body.name).map(str::to_owned);
    if body.price.is_none() {
        f.push("price", "required", "This field is required.");
    }
    if body.cycle_days.is_none() {
        f.push("cycle_days", "required", "This field is required.");
    }
    for text in [
        &body.name,
        &body.description,
        &body.currency,
        &body.fallback,
    ]
    .into_iter()
    .flatten()
    {
        if text.chars().any(char::is_control) || text.len() > 500 {
            f.push(
                "plan",
                "invalid_characters",
                "Texts are at most 500 characters, without control characters.",
            );
            break;
        }
    }
    f.finish()?;
    let (Some(code), Some(name), Some(price), Some(days)) =
        (code, name, body.price, body.cycle_days)
    else {
        return Err(ApiError::validation(Vec::new()));
    };
    let plan = admin::create_plan(
        &app,
        NewPlan {
            code,
            name,
            description: body.description.unwrap_or_default(),
            price_minor: price,
            currency: body.currency.unwrap_or_else(|| "USD".into()),
            cycle_days: days,
            renews: body.renews.unwrap_or(true),
            fallback_code: body.fallback,
            limits: body.limits.unwrap_or_default(),
            is_public: body.public.unwrap_or(true),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(admin_view(&app, plan).await?)))
}

#[derive(Debug, Deserialize)]
pub struct UpdatePlanRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<i64>,
    pub currency: Option<String>,
    pub cycle_days: Option<i64>,
    pub renews: Option<bool>,
    /// A plan code, or null to remove the fallback. Absent leaves it.
    #[serde(default, deserialize_with = "present")]
    pub fallback: Option<Option<String>>,
    /// Limits to set; a null value removes the limit (unlimited).
    pub limits: Option<BTreeMap<String, Option<i64>>>,
    pub public: Option<bool>,
    pub archived: Option<bool>,
}

/// Tells a field that is absent (`None`) from one that is null (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

fn path_text(path: Result<Path<String>, PathRejection>) -> String {
    path.map(|Path(s)| s).unwrap_or_default()
}

/// `PATCH /api/v1/admin/plans/{code}`: what is absent stays; new limits apply from the next check.
pub async fn admin_update_plan(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<UpdatePlanRequest>,
) -> ApiResult<Json<AdminPlan>> {
    staff(&p)?;
    let texts = [&body.name, &body.description, &body.currency];
    if texts
        .into_iter()
        .flatten()
        .any(|t| t.chars().any(char::is_control) || t.len() > 500)
    {
        return Err(ApiError::validation(vec![crate::error::FieldError::new(
            "plan",
            "invalid_characters",
            "Texts are at most 500 characters, without control characters.",
        )]));
    }
    let plan = admin::update_plan(
        &app,
        &path_text(path),
        PlanUpdate {
            name: body.name,
            description: body.description,
            price_minor: body.price,
            currency: body.currency,
            cycle_days: body.cycle_days,
            renews: body.renews,
            fallback_code: body.fallback,
            limits: body.limits.unwrap_or_default().into_iter().collect(),
            is_public: body.public,
            archived: body.archived,
        },
    )
    .await?;
    Ok(Json(admin_view(&app, plan).await?))
}

/// `POST /api/v1/admin/plans/{code}/archive`
pub async fn admin_archive_plan(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<AdminPlan>> {
    staff(&p)?;
    let plan = admin::archive_plan(&app, &path_text(path)).await?;
    Ok(Json(admin_view(&app, plan).await?))
}

fn business_id(path: Result<Path<String>, PathRejection>) -> ApiResult<Uuid> {
    Uuid::parse_str(path_text(path).trim()).map_err(|_| AdminError::BusinessNotFound.into())
}

#[derive(Debug, Serialize)]
pub struct AdminBusiness {
    pub id: Uuid,
    pub name: String,
    pub active: bool,
    pub created_at: Timestamp,
    pub plan: Option<String>,
    pub status: Option<String>,
    pub current_period_start: Option<Timestamp>,
    pub current_period_end: Option<Timestamp>,
    pub credit_balance: i64,
}

/// `GET /api/v1/admin/businesses/{id}`
pub async fn admin_get_business(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<AdminBusiness>> {
    staff(&p)?;
    let b = admin::business_summary(&app, business_id(path)?).await?;
    Ok(Json(AdminBusiness {
        id: b.id,
        name: b.name,
        active: b.is_active,
        created_at: b.created_at,
        plan: b.plan,
        status: b.status,
        current_period_start: b.current_period_start,
        current_period_end: b.current_period_end,
        credit_balance: b.credit_balance,
    }))
}

#[derive(Debug, Deserialize)]
pub struct SetPlanRequest {
    pub plan: Option<String>,
}

/// `POST /api/v1/admin/businesses/{id}/plan`: moves the business to a plan now, without charge.
pub async fn admin_set_business_plan(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<SetPlanRequest>,
) -> ApiResult<Json<Option<SubscriptionResponse>>> {
    staff(&p)?;
    let id = business_id(path)?;
    let mut f = Fields::default();
    let plan = f.required("plan", &body.plan);
    f.finish()?;
    let Some(plan) = plan else {
        return Err(ApiError::validation(Vec::new()));
    };
    admin::set_plan(&app, id, plan, Actor::Admin(p.user_id())).await?;
    Ok(Json(subscription_view(&app, id).await?))
}

#[derive(Debug, Deserialize)]
pub struct CreditsRequest {
    pub amount: Option<i64>,
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CreditsResponse {
    pub credit_balance: i64,
}

/// `POST /api/v1/admin/businesses/{id}/credits` `{amount, note}`: adds credits (negative takes
/// some back); the ledger only grows.
pub async fn admin_grant_credits(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<CreditsRequest>,
) -> ApiResult<(StatusCode, Json<CreditsResponse>)> {
    staff(&p)?;
    let id = business_id(path)?;
    let mut f = Fields::default();
    if body.amount.is_none() {
        f.push("amount", "required", "This field is required.");
    }
    if body
        .note
        .as_ref()
        .is_some_and(|n| n.chars().any(char::is_control) || n.len() > 500)
    {
        f.push(
            "note",
            "invalid_characters",
            "A note is at most 500 characters, without control characters.",
        );
    }
    f.finish()?;
    let amount = body.amount.unwrap_or_default();
    let balance =
        admin::grant_credits(&app, id, amount, body.note, Actor::Admin(p.user_id())).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreditsResponse {
            credit_balance: balance,
        }),
    ))
}

/// `POST /api/v1/admin/businesses/{id}/deactivate`: every token and key of the business stops
/// working at once; its data stays.
pub async fn admin_deactivate_business(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    staff(&p)?;
    let mut tx = app.db.begin().await?;
    if !crate::store::businesses::set_active(tx.conn(), id, false, app.clock.now()).await? {
        return Err(AdminError::BusinessNotFound.into());
    }
    tx.commit().await?;
    tracing::info!(business_id = %id, "business deactivated by staff");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/admin/users/{id}/deactivate`: the user can no longer log in and their
/// sessions stop working at once.
pub async fn admin_deactivate_user(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    staff(&p)?;
    let mut tx = app.db.begin().await?;
    if !crate::store::users::set_active(tx.conn(), id, false, app.clock.now()).await? {
        return Err(ApiError::not_found());
    }
    tx.commit().await?;
    tracing::info!(user_id = %id, "user deactivated by staff");
    Ok(StatusCode::NO_CONTENT)
}
