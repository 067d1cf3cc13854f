//! Staff-only operations: plans, credits, and a business's plan. Every route here requires a
//! session of a user with the staff flag (`saaskit user make-staff <email>`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
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
use crate::http::openapi::{Note, PlanName};
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

pub(crate) fn staff(p: &Principal) -> ApiResult<()> {
    if p.is_staff() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "staff_only",
            "This route is for staff.",
        ))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminPlan {
    #[serde(flatten)]
    pub plan: PlanView,
    /// Code of the plan a subscription moves to when this one stops, if any.
    #[schema(required = true)]
    pub fallback: Option<String>,
    #[schema(required = true)]
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
#[utoipa::path(
    get,
    path = "/admin/plans",
    tag = "admin",
    summary = "Every plan (staff)",
    description = "Every plan, hidden and archived ones included. Staff only.",
    security(("session" = [])),
    responses((status = 200, description = "The plans.", body = AdminPlanList)),
)]
pub async fn admin_list_plans(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<AdminPlanList>> {
    staff(&p)?;
    let all = {
        let mut tx = app.db.read().await?;
        plans::all(tx.conn()).await?
    };
    let mut out = Vec::with_capacity(all.len());
    for plan in all {
        out.push(admin_view(&app, plan).await?);
    }
    Ok(Json(AdminPlanList {
        data: out,
        next_cursor: None,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminPlanList {
    pub data: Vec<AdminPlan>,
    /// Always null: this list fits in one answer (see "Lists" in the README).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePlanRequest {
    /// 1 to 64 of a-z, 0-9, `-` and `_`.
    #[schema(value_type = String, required = true, pattern = "^[a-z0-9_-]{1,64}$")]
    pub code: Option<String>,
    #[schema(value_type = PlanName, required = true)]
    pub name: Option<String>,
    #[schema(value_type = Option<Note>)]
    pub description: Option<String>,
    /// In minor units of `currency`, at most 10^12.
    #[schema(value_type = i64, required = true, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub price: Option<i64>,
    /// An ISO 4217 code; `USD` when absent.
    #[schema(pattern = "^[A-Za-z]{3}$")]
    pub currency: Option<String>,
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 3660)]
    pub cycle_days: Option<i64>,
    /// Whether a period renews on its own (`true` when absent).
    pub renews: Option<bool>,
    /// The code of the plan a subscription moves to when this one stops.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub fallback: Option<String>,
    /// Limit per meter; absent meters are unlimited.
    #[schema(schema_with = new_limits)]
    pub limits: Option<BTreeMap<String, i64>>,
    /// Listed in the catalog (`true` when absent).
    pub public: Option<bool>,
}

/// `POST /api/v1/admin/plans`
#[utoipa::path(
    post,
    path = "/admin/plans",
    tag = "admin",
    summary = "Create a plan (staff)",
    description = "A new plan. Staff only.",
    security(("session" = [])),
    request_body = CreatePlanRequest,
    responses(
        (status = 201, description = "The plan.", body = AdminPlan),
        (status = 404, description = "`plan_not_found`: the fallback plan does not exist."),
        (status = 409, description = "`plan_exists`: a plan with this code exists."),
    ),
)]
pub async fn admin_create_plan(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<CreatePlanRequest>,
) -> ApiResult<(StatusCode, Json<AdminPlan>)> {
    staff(&p)?;
    let plan = admin::create_plan(&app, body.parse()?, Actor::Admin(p.user_id())).await?;
    Ok((StatusCode::CREATED, Json(admin_view(&app, plan).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdatePlanRequest {
    #[schema(value_type = Option<PlanName>)]
    pub name: Option<String>,
    #[schema(value_type = Option<Note>)]
    pub description: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub price: Option<i64>,
    /// An ISO 4217 code.
    #[schema(pattern = "^[A-Za-z]{3}$")]
    pub currency: Option<String>,
    #[schema(minimum = 1, maximum = 3660)]
    pub cycle_days: Option<i64>,
    pub renews: Option<bool>,
    /// A plan code, or null to remove the fallback. Absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^[a-z0-9_-]{1,64}$")]
    pub fallback: Option<Option<String>>,
    /// Limits to set; a null value removes the limit (unlimited).
    #[schema(schema_with = changed_limits)]
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

impl UpdatePlanRequest {
    /// The change asked for, as the API and the staff's plan page read it.
    pub(crate) fn parse(self) -> ApiResult<PlanUpdate> {
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(ApiError::validation(vec![crate::error::FieldError::new(
                "name",
                "required",
                "This field is required.",
            )]));
        }
        let texts = [&self.name, &self.description, &self.currency];
        if texts
            .into_iter()
            .flatten()
            .any(|t| crate::domain::has_control_chars(t) || t.chars().count() > 500)
        {
            return Err(ApiError::validation(vec![crate::error::FieldError::new(
                "plan",
                "invalid_characters",
                "Texts are at most 500 characters, without control or invisible formatting characters.",
            )]));
        }
        Ok(PlanUpdate {
            name: self.name,
            description: self.description,
            price_minor: self.price,
            currency: self.currency,
            cycle_days: self.cycle_days,
            renews: self.renews,
            fallback_code: self.fallback,
            limits: self.limits.unwrap_or_default().into_iter().collect(),
            is_public: self.public,
            archived: self.archived,
        })
    }
}

impl CreatePlanRequest {
    /// The plan asked for, as the API and the staff's plan page read it.
    pub(crate) fn parse(self) -> ApiResult<NewPlan> {
        let mut f = Fields::default();
        let code = f.required("code", &self.code).map(str::to_owned);
        let name = f.required("name", &self.name).map(str::to_owned);
        if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            f.push("name", "required", "This field is required.");
        }
        if self.price.is_none() {
            f.push("price", "required", "This field is required.");
        }
        if self.cycle_days.is_none() {
            f.push("cycle_days", "required", "This field is required.");
        }
        for text in [
            &self.name,
            &self.description,
            &self.currency,
            &self.fallback,
        ]
        .into_iter()
        .flatten()
        {
            if crate::domain::has_control_chars(text) || text.chars().count() > 500 {
                f.push(
                    "plan",
                    "invalid_characters",
                    "Texts are at most 500 characters, without control or invisible formatting characters.",
                );
                break;
            }
        }
        f.finish()?;
        let (Some(code), Some(name), Some(price), Some(days)) =
            (code, name, self.price, self.cycle_days)
        else {
            return Err(ApiError::validation(Vec::new()));
        };
        Ok(NewPlan {
            code,
            name,
            description: self.description.unwrap_or_default(),
            price_minor: price,
            currency: self.currency.unwrap_or_else(|| "USD".into()),
            cycle_days: days,
            renews: self.renews.unwrap_or(true),
            fallback_code: self.fallback,
            limits: self.limits.unwrap_or_default(),
            is_public: self.public.unwrap_or(true),
        })
    }
}

/// `PATCH /api/v1/admin/plans/{code}`: what is absent stays; new limits apply from the next check.
#[utoipa::path(
    patch,
    path = "/admin/plans/{code}",
    tag = "admin",
    summary = "Change a plan (staff)",
    description = "What is absent stays; new limits apply from the next check. Staff only.",
    security(("session" = [])),
    params(("code" = String, Path, description = "The plan's code.")),
    request_body = UpdatePlanRequest,
    responses(
        (status = 200, description = "The plan after the change.", body = AdminPlan),
        (status = 404, description = "`plan_not_found`: no such plan (or fallback plan)."),
    ),
)]
pub async fn admin_update_plan(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<UpdatePlanRequest>,
) -> ApiResult<Json<AdminPlan>> {
    staff(&p)?;
    let change = body.parse()?;
    let plan =
        admin::update_plan(&app, &path_text(path), change, Actor::Admin(p.user_id())).await?;
    Ok(Json(admin_view(&app, plan).await?))
}

/// `POST /api/v1/admin/plans/{code}/archive`
#[utoipa::path(
    post,
    path = "/admin/plans/{code}/archive",
    tag = "admin",
    summary = "Archive a plan (staff)",
    description = "The plan leaves the catalog; subscriptions on it go on. Staff only.",
    security(("session" = [])),
    params(("code" = String, Path, description = "The plan's code.")),
    responses(
        (status = 200, description = "The archived plan.", body = AdminPlan),
        (status = 404, description = "`plan_not_found`."),
    ),
)]
pub async fn admin_archive_plan(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<AdminPlan>> {
    staff(&p)?;
    let plan = admin::archive_plan(&app, &path_text(path), Actor::Admin(p.user_id())).await?;
    Ok(Json(admin_view(&app, plan).await?))
}

fn business_id(path: Result<Path<String>, PathRejection>) -> ApiResult<Uuid> {
    Uuid::parse_str(path_text(path).trim()).map_err(|_| AdminError::BusinessNotFound.into())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminBusiness {
    pub id: Uuid,
    pub name: String,
    pub active: bool,
    pub created_at: Timestamp,
    /// The current subscription's plan code, its status and period; null without one.
    #[schema(required = true)]
    pub plan: Option<String>,
    #[schema(required = true)]
    pub status: Option<String>,
    #[schema(required = true)]
    pub current_period_start: Option<Timestamp>,
    #[schema(required = true)]
    pub current_period_end: Option<Timestamp>,
    pub credit_balance: i64,
    /// The card on file (payments through Stripe); null without one.
    #[schema(required = true)]
    pub payment_method: Option<crate::payments::CardView>,
    /// Why the business is flagged for staff (a disputed payment: `dispute dp_…`); null if it
    /// is not.
    #[schema(required = true)]
    pub flagged: Option<String>,
    #[schema(required = true)]
    pub flagged_at: Option<Timestamp>,
}

/// `GET /api/v1/admin/businesses/{id}`
#[utoipa::path(
    get,
    path = "/admin/businesses/{id}",
    tag = "admin",
    summary = "A business (staff)",
    description = "A business, its plan and its credit balance. Staff only.",
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The business's id.")),
    responses(
        (status = 200, description = "The business.", body = AdminBusiness),
        (status = 404, description = "`business_not_found`."),
    ),
)]
pub async fn admin_get_business(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<AdminBusiness>> {
    staff(&p)?;
    let b = admin::business_summary(&app, business_id(path)?).await?;
    let account = {
        let mut tx = app.db.read().await?;
        crate::store::payments::account(tx.conn(), b.id).await?
    };
    let payment_method = account.as_ref().and_then(crate::payments::CardView::of);
    let (flagged, flagged_at) = account
        .map(|a| (a.flag_reason, a.flagged_at))
        .unwrap_or_default();
    Ok(Json(AdminBusiness {
        payment_method,
        flagged,
        flagged_at,
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetPlanRequest {
    /// The code of any plan, hidden ones included.
    #[schema(value_type = String, required = true)]
    pub plan: Option<String>,
}

/// `POST /api/v1/admin/businesses/{id}/plan`: moves the business to a plan now, without charge.
#[utoipa::path(
    post,
    path = "/admin/businesses/{id}/plan",
    tag = "admin",
    summary = "Move a business to a plan (staff)",
    description = "Moves the business to a plan now, without charge; a new period starts. Staff only.",
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The business's id.")),
    request_body = SetPlanRequest,
    responses(
        (status = 200, description = "The new subscription.", body = Option<SubscriptionResponse>),
        (status = 404, description = "`business_not_found` or `plan_not_found`."),
    ),
)]
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

/// A grant's amount: a whole number of minor units, at most 10^12 either way, never zero.
/// A plan's limits: meter names as `check_terms` takes them, each limit 0 or more.
fn limits(nullable: bool, description: &str) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};
    let value_type = if nullable {
        SchemaType::from_iter([Type::Integer, Type::Null])
    } else {
        SchemaType::Type(Type::Integer)
    };
    let limit = ObjectBuilder::new()
        .schema_type(value_type)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(i64::MAX));
    let meter = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[a-z0-9_-]{1,64}$"));
    utoipa::openapi::schema::Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
            .description(Some(description))
            .property_names(Some(meter))
            .additional_properties(Some(limit))
            .build(),
    )
}

fn new_limits() -> utoipa::openapi::schema::Schema {
    limits(
        false,
        "Limit per meter (0 or more); absent meters are unlimited.",
    )
}

fn changed_limits() -> utoipa::openapi::schema::Schema {
    limits(
        true,
        "Limits to set (0 or more); a null value removes the limit (unlimited).",
    )
}

fn nonzero_amount() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let range = |min: i64, max: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(min))
            .maximum(Some(max))
    };
    let most = crate::billing::admin::MAX_AMOUNT;
    utoipa::openapi::schema::Schema::OneOf(
        OneOfBuilder::new()
            .description(Some(
                "In minor units, at most 10^12 either way; negative takes credits back. Not \
                 zero, and the balance stays within 10^15 either way.",
            ))
            .item(range(-most, -1))
            .item(range(1, most))
            .build(),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreditsRequest {
    /// In minor units, at most 10^12 either way; negative takes credits back. Not zero, and the
    /// balance stays within 10^15 either way.
    #[schema(schema_with = nonzero_amount, required = true)]
    pub amount: Option<i64>,
    #[schema(value_type = Option<Note>)]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsResponse {
    pub credit_balance: i64,
}

/// `POST /api/v1/admin/businesses/{id}/credits` `{amount, note}`: adds credits (negative takes
/// some back); the ledger only grows.
#[utoipa::path(
    post,
    path = "/admin/businesses/{id}/credits",
    tag = "admin",
    summary = "Grant credits (staff)",
    description = "Adds credits (a negative amount takes some back); the ledger only grows. Staff only.",
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The business's id.")),
    request_body = CreditsRequest,
    responses(
        (status = 201, description = "The balance after the grant.", body = CreditsResponse),
        (status = 404, description = "`business_not_found`."),
    ),
)]
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
        .is_some_and(|n| crate::domain::has_control_chars(n) || n.chars().count() > 500)
    {
        f.push(
            "note",
            "invalid_characters",
            "A note is at most 500 characters, without control or invisible formatting characters.",
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
#[utoipa::path(
    post,
    path = "/admin/businesses/{id}/deactivate",
    tag = "admin",
    summary = "Deactivate a business (staff)",
    description = "Every token and key of the business stops working at once; its data stays. Staff only.",
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The business's id.")),
    responses(
        (status = 204, description = "Deactivated."),
        (status = 404, description = "`business_not_found`, or an id that is not a UUID."),
    ),
)]
pub async fn admin_deactivate_business(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    staff(&p)?;
    admin::deactivate_business(&app, id, p.user_id()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/admin/users/{id}/deactivate`: the user can no longer log in and their
/// sessions stop working at once.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/deactivate",
    tag = "admin",
    summary = "Deactivate a user (staff)",
    description = "The user can no longer log in and their sessions stop working at once. Staff only.",
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The user's id.")),
    responses(
        (status = 204, description = "Deactivated."),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn admin_deactivate_user(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    staff(&p)?;
    admin::deactivate_user(&app, id, p.user_id())
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(StatusCode::NO_CONTENT)
}
