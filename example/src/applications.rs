//! Applications: what a business records sessions of. Creating one consumes the `applications`
//! gauge in the same transaction as the insert; deleting one gives it back.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use uuid::Uuid;

use saaskit::app::AppState;
use saaskit::db::{Conn, Timestamp};
use saaskit::domain::{Role, has_control_chars};
use saaskit::error::{ApiError, ApiResult, FieldError};
use saaskit::http::extract::{ApiJson, Dashboard, DashboardRead, Idempotency, PathId};
use saaskit::metering::idempotency::Stored;
use saaskit::metering::{self, Meter, idempotency};
use saaskit::on_conn;

/// The meter that counts a business's applications.
pub const METER: Meter<'static> = Meter::gauge("applications");

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Application {
    pub id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ApplicationRequest {
    /// 1 to 200 characters, without control or invisible formatting characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200)]
    pub name: Option<String>,
}

fn parse_name(body: &ApplicationRequest) -> ApiResult<String> {
    let name = body.name.as_deref().map(str::trim).unwrap_or_default();
    if name.is_empty() || name.chars().count() > 200 || has_control_chars(name) {
        return Err(ApiError::validation(vec![FieldError::new(
            "name",
            if body.name.is_none() {
                "required"
            } else {
                "invalid_name"
            },
            "A name of 1 to 200 characters, without control or invisible formatting characters.",
        )]));
    }
    Ok(name.to_owned())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApplicationList {
    pub data: Vec<Application>,
}

/// `GET /api/v1/applications`
#[utoipa::path(
    get,
    path = "/applications",
    tag = "example: applications",
    summary = "List applications",
    description = "The business's applications, oldest first.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The applications.", body = ApplicationList)),
)]
pub async fn list_applications(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<ApplicationList>> {
    let mut tx = app.db.read().await?;
    let data = on_conn!(tx.conn(), c => sqlx::query_as(
        "SELECT id, name, created_at, updated_at FROM applications \
         WHERE business_id = $1 AND deleted_at IS NULL ORDER BY id",
    )
    .bind(p.business_id)
    .fetch_all(&mut *c)
    .await)?;
    Ok(Json(ApplicationList { data }))
}

/// `POST /api/v1/applications` `{name}`: 201, or 402 when the plan's `applications` limit is
/// reached. Accepts `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/applications",
    tag = "example: applications",
    summary = "Create an application",
    description = "Counted by the gauge meter `applications`: 402 when the plan's limit is reached.",
    security(("session" = []), ("bot_token" = [])),
    params(saaskit::http::openapi::IdempotencyKeyHeader),
    request_body = ApplicationRequest,
    responses(
        (status = 201, description = "The application.", body = Application,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same key."))),
        (status = 400, description = "`invalid_idempotency_key`, or a body that is not JSON."),
        (status = 402, description = "`quota_exceeded` or `no_active_subscription`."),
        (status = 422, description = "`validation_failed`, `invalid_body`, or `idempotency_key_reused`."),
    ),
)]
pub async fn create_application(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    Idempotency(key): Idempotency,
    ApiJson(body): ApiJson<ApplicationRequest>,
) -> ApiResult<(StatusCode, Stored)> {
    p.require_role(Role::Member)?;
    let name = parse_name(&body)?;
    let now = app.clock.now();
    let fingerprint = idempotency::fingerprint("POST /applications", &name);
    let stored = idempotency::run(
        &app,
        p.business_id,
        key.as_ref(),
        &fingerprint,
        201,
        async |tx| -> ApiResult<Application> {
            metering::consume(tx, &p, METER, 1, now).await?;
            let created = Application {
                id: Uuid::now_v7(),
                name,
                created_at: now,
                updated_at: now,
            };
            on_conn!(tx.conn(), c => sqlx::query(
                "INSERT INTO applications (id, business_id, name, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(created.id)
            .bind(p.business_id)
            .bind(&created.name)
            .bind(now)
            .bind(now)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
            Ok(created)
        },
    )
    .await?;
    Ok((StatusCode::CREATED, stored))
}

/// One live application of a business.
pub async fn find(c: Conn<'_>, business_id: Uuid, id: Uuid) -> sqlx::Result<Option<Application>> {
    on_conn!(c, c => sqlx::query_as(
        "SELECT id, name, created_at, updated_at FROM applications \
         WHERE id = $1 AND business_id = $2 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(business_id)
    .fetch_optional(&mut *c)
    .await)
}

/// `GET /api/v1/applications/{id}`
#[utoipa::path(
    get,
    path = "/applications/{id}",
    tag = "example: applications",
    summary = "An application",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The application's id.")),
    responses(
        (status = 200, description = "The application.", body = Application),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn get_application(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
    PathId(id): PathId,
) -> ApiResult<Json<Application>> {
    let mut tx = app.db.read().await?;
    find(tx.conn(), p.business_id, id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// `PATCH /api/v1/applications/{id}` `{name}`
#[utoipa::path(
    patch,
    path = "/applications/{id}",
    tag = "example: applications",
    summary = "Rename an application",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The application's id.")),
    request_body = ApplicationRequest,
    responses(
        (status = 200, description = "The application after the change.", body = Application),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn update_application(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
    ApiJson(body): ApiJson<ApplicationRequest>,
) -> ApiResult<Json<Application>> {
    p.require_role(Role::Member)?;
    let name = parse_name(&body)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let updated = on_conn!(tx.conn(), c => sqlx::query(
        "UPDATE applications SET name = $3, updated_at = $4 \
         WHERE id = $1 AND business_id = $2 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(p.business_id)
    .bind(&name)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    if updated == 0 {
        return Err(ApiError::not_found());
    }
    let application = find(tx.conn(), p.business_id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    tx.commit().await?;
    Ok(Json(application))
}

/// `DELETE /api/v1/applications/{id}` (owners and admins): its recordings stay as history,
/// and the `applications` meter goes down by one.
#[utoipa::path(
    delete,
    path = "/applications/{id}",
    tag = "example: applications",
    summary = "Delete an application",
    description = "Its recordings stay as history, and the `applications` meter goes down by one. \
                   Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The application's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn delete_application(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    p.require_role(Role::Admin)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let deleted = on_conn!(tx.conn(), c => sqlx::query(
        "UPDATE applications SET deleted_at = $3, updated_at = $3 \
         WHERE id = $1 AND business_id = $2 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(p.business_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    if deleted == 0 {
        return Err(ApiError::not_found());
    }
    metering::release(&mut tx, p.business_id, METER, 1).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
