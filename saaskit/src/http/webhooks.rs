//! `/api/v1/webhooks`: a business's webhook endpoints, their deliveries, and the catalogue of
//! event types they subscribe to. Owners and admins.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::extract::{ApiJson, ApiQuery, Dashboard, DashboardRead, PathId, page_limit};
use crate::webhooks::{
    self, DeliveryFilter, DeliveryView, EndpointChange, EndpointView, EndpointWithSecret,
    EventType, WebhookError,
};

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::Forbidden => ApiError::forbidden(
                "forbidden_role",
                "Only the business's owners and admins manage webhooks.",
            ),
            WebhookError::NotFound => ApiError::not_found(),
            WebhookError::Invalid(problems) => ApiError::validation(
                problems
                    .into_iter()
                    .map(|(field, code, message)| FieldError::new(field, code, message))
                    .collect(),
            ),
            WebhookError::TooMany => ApiError::new(
                StatusCode::CONFLICT,
                "too_many_endpoints",
                format!(
                    "A business has at most {} webhook endpoints.",
                    webhooks::MAX_ENDPOINTS
                ),
            ),
            WebhookError::Unexpected(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where to send events: `https://…` (plain `http://` and private addresses only when the
    /// deployment allows them).
    #[schema(value_type = String, required = true, max_length = 2000)]
    pub url: Option<String>,
    /// The event types to send (see `GET /api/v1/webhooks/event-types`).
    #[schema(value_type = Vec<String>, required = true, min_items = 1)]
    pub events: Option<Vec<String>>,
    /// Up to 500 characters.
    #[schema(value_type = String, required = false, max_length = 500)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[schema(value_type = String, required = false, max_length = 2000)]
    pub url: Option<String>,
    #[schema(value_type = Vec<String>, required = false, min_items = 1)]
    pub events: Option<Vec<String>>,
    #[schema(value_type = String, required = false, max_length = 500)]
    pub description: Option<String>,
    /// `false` disables the endpoint: it receives no new events, and deliveries already queued
    /// wait. `true` enables it again, and those go out at once.
    #[schema(value_type = bool, required = false)]
    pub enabled: Option<bool>,
}

/// `POST /api/v1/webhooks`: registers an endpoint; its signing secret is in this answer only.
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    summary = "Create a webhook endpoint",
    description = "Registers an endpoint for the business's events. The answer holds its \
                   signing secret (`whsec_…`), shown this once: every delivery carries \
                   `webhook-id`, `webhook-timestamp` and `webhook-signature` as the Standard \
                   Webhooks specification says, so any of its libraries verifies them. Owners \
                   and admins.",
    security(("session" = []), ("bot_token" = [])),
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "The endpoint and its secret.", body = EndpointWithSecret),
        (status = 409, description = "`too_many_endpoints`."),
        (status = 422, description = "`validation_failed`: `invalid_url`, `https_required`, `forbidden_address` (private, loopback, link-local…), `unknown_event_type`."),
    ),
)]
pub async fn create_webhook(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<CreateWebhookRequest>,
) -> ApiResult<(StatusCode, Json<EndpointWithSecret>)> {
    let mut missing = Vec::new();
    if body.url.is_none() {
        missing.push(FieldError::new(
            "url",
            "required",
            "This field is required.",
        ));
    }
    if body.events.is_none() {
        missing.push(FieldError::new(
            "events",
            "required",
            "This field is required.",
        ));
    }
    if !missing.is_empty() {
        return Err(ApiError::validation(missing));
    }
    let change = EndpointChange {
        url: body.url,
        events: body.events,
        description: body.description,
        enabled: None,
    };
    let created = webhooks::create_endpoint(&app, &p, change).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub data: Vec<EndpointView>,
    /// Always null: a business's endpoints fit in one answer.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/webhooks`
#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    summary = "List webhook endpoints",
    description = "The business's endpoints, never their secrets. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The endpoints.", body = WebhookList)),
)]
pub async fn list_webhooks(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<WebhookList>> {
    Ok(Json(WebhookList {
        data: webhooks::list_endpoints(&app, &p).await?,
        next_cursor: None,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeList {
    pub data: Vec<EventType>,
    /// Always null: the catalogue fits in one answer.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/webhooks/event-types`: the catalogue.
#[utoipa::path(
    get,
    path = "/webhooks/event-types",
    tag = "webhooks",
    summary = "List the event types",
    description = "Every event type an endpoint may subscribe to, what it means and a JSON \
                   Schema of its `data`. Each delivery's body is `{type, timestamp, data}`. \
                   Any member may read it.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The catalogue.", body = EventTypeList)),
)]
pub async fn list_webhook_event_types(
    State(app): State<AppState>,
    DashboardRead(_): DashboardRead,
) -> ApiResult<Json<EventTypeList>> {
    Ok(Json(EventTypeList {
        data: webhooks::catalogue::event_types(&app.products),
        next_cursor: None,
    }))
}

/// `GET /api/v1/webhooks/{id}`
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    tag = "webhooks",
    summary = "Show a webhook endpoint",
    description = "Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id.")),
    responses(
        (status = 200, description = "The endpoint.", body = EndpointView),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn get_webhook(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
    PathId(id): PathId,
) -> ApiResult<Json<EndpointView>> {
    Ok(Json(webhooks::get_endpoint(&app, &p, id).await?))
}

/// `PATCH /api/v1/webhooks/{id}`
#[utoipa::path(
    patch,
    path = "/webhooks/{id}",
    tag = "webhooks",
    summary = "Change a webhook endpoint",
    description = "Its URL, events, description, or whether it is enabled; absent fields stay. \
                   Enabling an endpoint sends the deliveries that waited. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id.")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The endpoint.", body = EndpointView),
        (status = 404, description = "`not_found`."),
        (status = 422, description = "`validation_failed`, as on creation."),
    ),
)]
pub async fn update_webhook(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateWebhookRequest>,
) -> ApiResult<Json<EndpointView>> {
    let change = EndpointChange {
        url: body.url,
        events: body.events,
        description: body.description,
        enabled: body.enabled,
    };
    Ok(Json(webhooks::update_endpoint(&app, &p, id, change).await?))
}

/// `DELETE /api/v1/webhooks/{id}`
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "webhooks",
    summary = "Delete a webhook endpoint",
    description = "With its deliveries. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn delete_webhook(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    webhooks::delete_endpoint(&app, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/webhooks/{id}/rotate-secret`
#[utoipa::path(
    post,
    path = "/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    summary = "Rotate a webhook endpoint's secret",
    description = "A new secret, shown this once. For 24 hours deliveries are signed with both \
                   the new and the old secret (two `v1,` signatures), so the receiver can switch \
                   without losing any. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id.")),
    responses(
        (status = 200, description = "The endpoint and its new secret.", body = EndpointWithSecret),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn rotate_webhook_secret(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<Json<EndpointWithSecret>> {
    Ok(Json(webhooks::rotate_secret(&app, &p, id).await?))
}

/// `POST /api/v1/webhooks/{id}/test`
#[utoipa::path(
    post,
    path = "/webhooks/{id}/test",
    tag = "webhooks",
    summary = "Send a test event",
    description = "Queues a `webhook.test` event for this endpoint alone. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id.")),
    responses(
        (status = 202, description = "The delivery queued.", body = DeliveryView),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn test_webhook(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    let queued = webhooks::send_test(&app, &p, id).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state.
    #[param(inline, value_type = Option<DeliveryStatus>)]
    pub status: Option<String>,
    /// Only deliveries of this event type.
    #[param(max_length = 100)]
    pub event: Option<String>,
    /// At most this many (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

/// A delivery's state.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub data: Vec<DeliveryView>,
    /// Pass as `cursor` for the next (older) page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<Uuid>,
}

/// `GET /api/v1/webhooks/{id}/deliveries`
#[utoipa::path(
    get,
    path = "/webhooks/{id}/deliveries",
    tag = "webhooks",
    summary = "List an endpoint's deliveries",
    description = "Newest first, a page at a time: status, attempts, the last answer's status \
                   code and body, how long it took, and when the next retry is due. Owners and \
                   admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id."), DeliveriesQuery),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryPage),
        (status = 404, description = "`not_found`."),
        (status = 422, description = "`validation_failed`: an unknown status, or a limit out of range."),
    ),
)]
pub async fn list_webhook_deliveries(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<DeliveryPage>> {
    let mut errors = Vec::new();
    if let Some(status) = &q.status
        && !["pending", "delivered", "failed"].contains(&status.as_str())
    {
        errors.push(FieldError::new(
            "status",
            "invalid_status",
            "One of pending, delivered, failed.",
        ));
    }
    let limit = page_limit(q.limit, 50, 200).unwrap_or_else(|e| {
        errors.push(e);
        0
    });
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = DeliveryFilter {
        status: q.status,
        event_type: q.event,
        before: q.cursor,
        limit,
    };
    let (data, next_cursor) = webhooks::list_deliveries(&app, &p, id, &filter).await?;
    Ok(Json(DeliveryPage { data, next_cursor }))
}

/// `POST /api/v1/webhooks/{id}/deliveries/{delivery_id}/retry`
#[utoipa::path(
    post,
    path = "/webhooks/{id}/deliveries/{delivery_id}/retry",
    tag = "webhooks",
    summary = "Retry a delivery",
    description = "Sends it again now, whatever became of it (a failed one gets one more \
                   attempt). Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(
        ("id" = Uuid, Path, description = "The endpoint's id."),
        ("delivery_id" = Uuid, Path, description = "The delivery's id."),
    ),
    responses(
        (status = 202, description = "Due again now.", body = DeliveryView),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn retry_webhook_delivery(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    let Ok(Path((id, delivery))) = path else {
        return Err(ApiError::not_found());
    };
    let (Ok(id), Ok(delivery)) = (id.parse::<Uuid>(), delivery.parse::<Uuid>()) else {
        return Err(ApiError::not_found());
    };
    let retried = webhooks::retry_delivery(&app, &p, id, delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(retried)))
}
