//! Usage: counting for products that only count (`POST /usage`), what was used (`GET /usage`)
//! and what may still be used (`GET /entitlements`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::db::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::http::accounts::Fields;
use crate::http::extract::{ApiJson, DashboardRead, Idempotency, Sdk, SdkOrDashboardRead};
use crate::metering::idempotency::{self, Stored};
use crate::metering::{self, CycleUsage, MAX_QUANTITY, MeterKind, MeterStatus};

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct UsageRequest {
    /// A per-cycle meter: 1 to 64 of a-z, 0-9 and `_`, starting with a letter.
    #[schema(value_type = String, required = true, pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub meter: Option<String>,
    /// 1 when absent.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub quantity: Option<i64>,
}

/// `POST /api/v1/usage` `{meter, quantity}`: adds to a per-cycle meter, within the plan's limit
/// (402 `quota_exceeded` otherwise). `quantity` defaults to 1. Accepts `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/usage",
    tag = "usage",
    summary = "Record usage",
    description = "Adds to a per-cycle meter, within the plan's limit. With an `Idempotency-Key`, \
                   a retry gets the first answer back instead of counting twice.",
    security(("session" = []), ("api_key" = []), ("bot_token" = [])),
    params(crate::http::openapi::IdempotencyKeyHeader),
    request_body = UsageRequest,
    responses(
        (status = 200, description = "The meter after this use.", body = metering::Consumed,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same key."))),
        (status = 400, description = "`invalid_idempotency_key`, or a body that is not JSON."),
        (status = 402, description = "`quota_exceeded` (with the meter, limit and reset time) or `no_active_subscription`."),
        (status = 422, description = "`validation_failed`, `invalid_body`, or `idempotency_key_reused`: the key was used for a different request."),
    ),
)]
pub async fn record_usage(
    State(app): State<AppState>,
    Sdk(p): Sdk,
    Idempotency(key): Idempotency,
    ApiJson(body): ApiJson<UsageRequest>,
) -> ApiResult<Stored> {
    let mut f = Fields::default();
    let meter = f.required("meter", &body.meter).map(str::to_owned);
    if let Some(m) = &meter {
        if !metering::is_meter_name(m) {
            f.push(
                "meter",
                "invalid_meter",
                "A meter name is 1 to 64 characters: a-z, 0-9 and _, starting with a letter.",
            );
        } else if app.products.meters().get(m).kind() == MeterKind::Gauge {
            f.push(
                "meter",
                "not_a_counter",
                "This meter counts things that exist; it changes when they are created or deleted.",
            );
        }
    }
    let quantity = body.quantity.unwrap_or(1);
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        f.push(
            "quantity",
            "out_of_range",
            &format!("A whole number from 1 to {MAX_QUANTITY}."),
        );
    }
    f.finish()?;
    let meter = meter.ok_or_else(|| ApiError::validation(Vec::new()))?;
    let fingerprint = idempotency::fingerprint("POST /usage", &(&meter, quantity));
    let now = app.clock.now();
    let stored = idempotency::run(
        &app,
        p.business_id,
        key.as_ref(),
        &fingerprint,
        200,
        async |tx| -> ApiResult<metering::Consumed> {
            Ok(metering::consume(tx, &p, app.products.meters().get(&meter), quantity, now).await?)
        },
    )
    .await?;
    Ok(stored)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Period {
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageResponse {
    /// The current plan's code, if the business has a subscription.
    #[schema(required = true)]
    pub plan: Option<String>,
    #[schema(required = true)]
    pub period: Option<Period>,
    /// Every meter the plan limits or the business has used, in the current cycle.
    pub meters: BTreeMap<String, MeterStatus>,
    /// Per-cycle meters, the current cycle first, then up to 12 past ones.
    pub history: Vec<CycleUsage>,
}

/// `GET /api/v1/usage`: per meter, used and limit in the current cycle, and past cycles.
#[utoipa::path(
    get,
    path = "/usage",
    tag = "usage",
    summary = "What was used",
    description = "Per meter, used and limit in the current cycle, and past cycles.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The usage.", body = UsageResponse)),
)]
pub async fn get_usage(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<UsageResponse>> {
    let mut tx = app.db.read().await?;
    let meters = metering::meter_statuses(tx.conn(), &p, app.products.meters()).await?;
    let history = metering::history(tx.conn(), p.business_id, 13).await?;
    Ok(Json(UsageResponse {
        plan: p.subscription.as_ref().map(|s| s.plan_code.clone()),
        period: p.subscription.as_ref().map(|s| Period {
            start: s.current_period_start,
            end: s.current_period_end,
        }),
        meters,
        history,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Entitlements {
    #[schema(required = true)]
    pub plan: Option<String>,
    /// The subscription's status (`trialing`, `active`, `past_due`, `canceled`, `expired`).
    #[schema(required = true)]
    pub status: Option<String>,
    /// Whether metered calls are accepted now at all.
    pub live: bool,
    /// When per-cycle meters start again at zero.
    #[schema(required = true)]
    pub resets_at: Option<Timestamp>,
    pub meters: BTreeMap<String, MeterStatus>,
}

/// `GET /api/v1/entitlements`: in one small answer, whether and how much the business may
/// still use, so an SDK can decide before it calls.
#[utoipa::path(
    get,
    path = "/entitlements",
    tag = "usage",
    summary = "What may still be used",
    description = "In one small answer, whether and how much the business may still use, so an \
                   SDK can decide before it calls.",
    security(("session" = []), ("api_key" = []), ("bot_token" = [])),
    responses((status = 200, description = "The entitlements.", body = Entitlements)),
)]
pub async fn get_entitlements(
    State(app): State<AppState>,
    SdkOrDashboardRead(p): SdkOrDashboardRead,
) -> ApiResult<Json<Entitlements>> {
    let now = app.clock.now();
    let mut tx = app.db.read().await?;
    let meters = metering::meter_statuses(tx.conn(), &p, app.products.meters()).await?;
    let sub = p.subscription.as_ref();
    Ok(Json(Entitlements {
        plan: sub.map(|s| s.plan_code.clone()),
        status: sub.map(|s| s.status.clone()),
        live: sub.is_some_and(|s| s.is_live(now)),
        resets_at: sub.map(|s| s.current_period_end),
        meters,
    }))
}
