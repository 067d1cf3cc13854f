//! Recordings: sent by the SDK with an API key (scope `sdk`), one `recordings` unit each per
//! billing cycle; the dashboard lists them newest first, a page at a time.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use uuid::Uuid;

use saaskit::accounts::Principal;
use saaskit::app::AppState;
use saaskit::db::Timestamp;
use saaskit::error::{ApiError, ApiResult, FieldError};
use saaskit::http::extract::{ApiJson, ApiQuery, DashboardRead, Idempotency, Sdk, page_limit};
use saaskit::metering::idempotency::{self, Stored};
use saaskit::metering::{self, Consumed, Meter, MeteredError, MeteredInsert, Value};
use saaskit::on_conn;

/// The meter that counts recordings in a billing cycle.
pub const METER: Meter<'static> = Meter::per_cycle("recordings");

/// `application_id`, and any other members: everything else the SDK sends is the recording
/// itself, kept as it came.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct RecordingRequest {
    /// The id of one of the business's applications.
    #[schema(value_type = Uuid, required = true)]
    pub application_id: Option<serde_json::Value>,
    /// Everything else the SDK sends is the recording itself, kept as it came.
    #[serde(flatten)]
    #[schema(ignore)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordingCreated {
    pub id: Uuid,
    pub application_id: Uuid,
    pub created_at: Timestamp,
    /// The `recordings` meter after this one: what is left and when it resets.
    pub usage: Consumed,
}

/// `POST /api/v1/recordings` `{application_id, ...}`: 201, or 402 `quota_exceeded` once the
/// plan's recordings for this cycle are used up. Accepts `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/recordings",
    tag = "example: recordings",
    summary = "Send a recording",
    description = "One `recordings` unit per billing cycle: 402 `quota_exceeded` once the plan's \
                   recordings for this cycle are used up.",
    security(("session" = []), ("api_key" = []), ("bot_token" = [])),
    params(saaskit::http::openapi::IdempotencyKeyHeader),
    request_body = RecordingRequest,
    responses(
        (status = 201, description = "The recording's id and the meter after it.", body = RecordingCreated,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same key."))),
        (status = 400, description = "`invalid_idempotency_key`, or a body that is not JSON."),
        (status = 402, description = "`quota_exceeded` or `no_active_subscription`."),
        (status = 422, description = "`validation_failed` (`application_id` missing or unknown), `invalid_body`, or `idempotency_key_reused`."),
    ),
)]
pub async fn create_recording(
    State(app): State<AppState>,
    Sdk(p): Sdk,
    Idempotency(key): Idempotency,
    ApiJson(body): ApiJson<RecordingRequest>,
) -> ApiResult<(StatusCode, Stored)> {
    let application_id = body
        .application_id
        .as_ref()
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<Uuid>().ok())
        .ok_or_else(|| {
            ApiError::validation(vec![FieldError::new(
                "application_id",
                if body.application_id.is_none() {
                    "required"
                } else {
                    "invalid_id"
                },
                "The id of one of the business's applications.",
            )])
        })?;
    let now = app.clock.now();
    let fingerprint = idempotency::fingerprint("POST /recordings", &body);
    let id = Uuid::now_v7();
    let row = MeteredInsert {
        meter: METER,
        quantity: 1,
        requires: Some((
            "SELECT 1 FROM applications \
             WHERE id = $1 AND business_id = $2 AND deleted_at IS NULL",
            vec![Value::Uuid(application_id), Value::Uuid(p.business_id)],
        )),
        table: "recordings",
        columns: &["id", "business_id", "application_id", "data", "created_at"],
        values: vec![
            Value::Uuid(id),
            Value::Uuid(p.business_id),
            Value::Uuid(application_id),
            Value::Text(serde_json::Value::Object(body.data).to_string()),
            Value::Time(now),
        ],
    };
    let created = move |usage| RecordingCreated {
        id,
        application_id,
        created_at: now,
        usage,
    };
    let stored = metering::insert_metered(&app, &p, row, key.as_ref(), &fingerprint, 201, created)
        .await
        .map_err(|e| match e {
            MeteredError::Missing => ApiError::validation(vec![FieldError::new(
                "application_id",
                "unknown_application",
                "The business has no such application.",
            )]),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, stored))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this application's recordings.
    pub application_id: Option<Uuid>,
    /// At most this many (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

#[derive(Debug, Serialize, FromRow)]
pub struct Recording {
    pub id: Uuid,
    pub application_id: Uuid,
    #[serde(skip)]
    pub data: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordingView {
    pub id: Uuid,
    pub application_id: Uuid,
    /// The recording as the SDK sent it, without `application_id`.
    #[schema(value_type = Option<Object>, required = true)]
    pub data: serde_json::Value,
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordingPage {
    pub data: Vec<RecordingView>,
    /// Pass as `cursor` for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<Uuid>,
}

/// `GET /api/v1/recordings[?application_id=&limit=&cursor=]`: newest first.
#[utoipa::path(
    get,
    path = "/recordings",
    tag = "example: recordings",
    summary = "List recordings",
    description = "Newest first, a page at a time.",
    security(("session" = []), ("bot_token" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of recordings.", body = RecordingPage),
        (status = 422, description = "`validation_failed`: a query parameter is not acceptable."),
    ),
)]
pub async fn list_recordings(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<RecordingPage>> {
    let limit = page_limit(q.limit, 50, 100).map_err(|e| ApiError::validation(vec![e]))?;
    Ok(Json(
        page_of(&app, &p, q.application_id, q.cursor, limit).await?,
    ))
}

/// A page of the business's recordings, newest first: what the API lists and the recordings
/// page shows.
pub async fn page_of(
    app: &AppState,
    p: &Principal,
    application_id: Option<Uuid>,
    cursor: Option<Uuid>,
    limit: i64,
) -> ApiResult<RecordingPage> {
    let mut tx = app.db.read().await?;
    // Ids are UUIDv7, so their order is their creation order.
    let rows: Vec<Recording> = on_conn!(tx.conn(), c => sqlx::query_as(
        "SELECT id, application_id, data, created_at FROM recordings \
         WHERE business_id = $1 AND ($2 IS NULL OR application_id = $2) \
         AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
    )
    .bind(p.business_id)
    .bind(application_id)
    .bind(cursor)
    .bind(limit + 1)
    .fetch_all(&mut *c)
    .await)?;
    let more = rows.len() as i64 > limit;
    let data: Vec<RecordingView> = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| RecordingView {
            id: r.id,
            application_id: r.application_id,
            data: serde_json::from_str(&r.data).unwrap_or(serde_json::Value::Null),
            created_at: r.created_at,
        })
        .collect();
    let next_cursor = if more {
        data.last().map(|r| r.id)
    } else {
        None
    };
    Ok(RecordingPage { data, next_cursor })
}
