//! `/api/v1/billing/…` payments: the card on file, top-ups, the payment history; and Stripe's
//! events at `/webhooks/stripe`. Owners and admins (the events: Stripe, by signature).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::extract::{ApiJson, ApiQuery, Dashboard, DashboardRead, page_limit};
use crate::payments::events::{self, ReceiveError};
use crate::payments::{self, CardView, PaymentError, PaymentView, SetupIntent};

impl From<PaymentError> for ApiError {
    fn from(err: PaymentError) -> Self {
        match err {
            PaymentError::NotConfigured => ApiError::conflict(
                "payments_not_configured",
                "This server takes no payments (no payment provider is configured).",
            ),
            PaymentError::Forbidden => ApiError::forbidden(
                "forbidden_role",
                "Only the business's owners and admins manage payments.",
            ),
            PaymentError::NoPaymentMethod => ApiError::conflict(
                "payment_method_required",
                "The business has no card on file; add one first.",
            ),
            PaymentError::InvalidPaymentMethod(why) => ApiError::validation(vec![FieldError::new(
                "payment_method",
                "invalid_payment_method",
                format!("This payment method cannot be used: {why}"),
            )]),
            PaymentError::InvalidAmount => ApiError::validation(vec![amount_error()]),
            PaymentError::Declined {
                payment,
                code,
                message,
            } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_failed",
                format!(
                    "The card was declined: {}.",
                    payments::renewals::decline_reason(&code)
                ),
            )
            .with_extra(json!({
                "decline_code": code,
                "provider_message": message,
                "payment_id": payment.id,
            })),
            PaymentError::RequiresAction {
                payment,
                client_secret,
            } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_requires_action",
                "The bank asks the card holder to confirm this payment: finish it with Stripe.js \
                 (`handleCardAction` or `confirmCardPayment` with `client_secret`); the credits \
                 arrive when it succeeds.",
            )
            .with_extra(json!({
                "payment_id": payment.id,
                "payment_intent": payment.provider_payment_id,
                "client_secret": client_secret,
            })),
            PaymentError::Pending { payment } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_pending",
                "The payment is still being processed; the credits arrive when it succeeds.",
            )
            .with_extra(json!({"payment_id": payment.id})),
            PaymentError::Unavailable(e) => ApiError::unavailable(e),
            PaymentError::Unexpected(e) => e.into(),
        }
    }
}

fn amount_error() -> FieldError {
    FieldError::new(
        "amount",
        "out_of_range",
        format!(
            "From {} to {} (minor units of the business's currency).",
            payments::MIN_AMOUNT,
            payments::MAX_AMOUNT
        ),
    )
}

/// `POST /api/v1/billing/setup-intent`
#[utoipa::path(
    post,
    path = "/billing/setup-intent",
    tag = "payments",
    summary = "Start saving a card",
    description = "A Stripe SetupIntent for the business's customer (made on first need): give \
                   `client_secret` and `publishable_key` to Stripe.js (`confirmCardSetup`), then \
                   send the payment method it returns to `POST /billing/payment-method`. Owners \
                   and admins.",
    security(("session" = []), ("bot_token" = [])),
    responses(
        (status = 200, description = "What Stripe.js needs.", body = SetupIntent),
        (status = 409, description = "`payments_not_configured`."),
    ),
)]
pub async fn create_setup_intent(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
) -> ApiResult<Json<SetupIntent>> {
    Ok(Json(payments::setup_intent(&app, &p).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodRequest {
    /// A Stripe payment method id (`pm_…`), from Stripe.js.
    #[schema(value_type = String, required = true, max_length = 255)]
    pub payment_method: Option<String>,
}

/// `POST /api/v1/billing/payment-method`
#[utoipa::path(
    post,
    path = "/billing/payment-method",
    tag = "payments",
    summary = "Save a card",
    description = "Attaches the payment method to the business's customer and makes it the \
                   default for every charge (top-ups, renewals, plan changes); the card it \
                   replaces is detached. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    request_body = PaymentMethodRequest,
    responses(
        (status = 200, description = "The card now on file.", body = CardView),
        (status = 409, description = "`payments_not_configured`."),
        (status = 422, description = "`validation_failed`: `required`, `invalid_payment_method`."),
    ),
)]
pub async fn set_payment_method(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<PaymentMethodRequest>,
) -> ApiResult<Json<CardView>> {
    let given = body.payment_method.unwrap_or_default();
    if given.trim().is_empty() {
        return Err(ApiError::validation(vec![FieldError::new(
            "payment_method",
            "required",
            "This field is required.",
        )]));
    }
    let Some(pm) = payments::payment_method_id(&given) else {
        return Err(ApiError::validation(vec![FieldError::new(
            "payment_method",
            "invalid_payment_method",
            "A Stripe payment method id: `pm_` followed by letters and digits.",
        )]));
    };
    Ok(Json(payments::set_payment_method(&app, &p, pm).await?))
}

/// `GET /api/v1/billing/payment-method`
#[utoipa::path(
    get,
    path = "/billing/payment-method",
    tag = "payments",
    summary = "The card on file",
    description = "Brand, last four digits and expiry of the business's default card, or `null` \
                   when there is none. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The card, or null.", body = Option<CardView>)),
)]
pub async fn get_payment_method(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<Option<CardView>>> {
    Ok(Json(payments::payment_method(&app, &p).await?))
}

/// `DELETE /api/v1/billing/payment-method`
#[utoipa::path(
    delete,
    path = "/billing/payment-method",
    tag = "payments",
    summary = "Remove the card on file",
    description = "Detaches it at the provider. Renewals then need credits again. Owners and \
                   admins.",
    security(("session" = []), ("bot_token" = [])),
    responses(
        (status = 204, description = "Removed (or there was none)."),
        (status = 409, description = "`payments_not_configured`."),
    ),
)]
pub async fn delete_payment_method(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
) -> ApiResult<StatusCode> {
    payments::remove_payment_method(&app, &p).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    /// Minor units of the business's currency (its plan's).
    #[schema(value_type = i64, required = true, minimum = 50, maximum = 99999999)]
    pub amount: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopUp {
    pub payment: PaymentView,
    /// The credit balance after it, in minor units.
    pub balance: i64,
}

/// `POST /api/v1/billing/top-up`
#[utoipa::path(
    post,
    path = "/billing/top-up",
    tag = "payments",
    summary = "Buy credits with the card on file",
    description = "Charges the card now and credits the ledger with what it paid. A decline \
                   answers 402 `payment_failed` with the issuer's `decline_code`; a card that \
                   needs its holder to authenticate (3-D Secure) answers 402 \
                   `payment_requires_action` with `client_secret` for Stripe.js, and the credits \
                   arrive (by Stripe's webhook) once it succeeds. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    request_body = TopUpRequest,
    responses(
        (status = 201, description = "Paid: the payment and the new balance.", body = TopUp),
        (status = 402, description = "`payment_failed` (with `decline_code`, `payment_id`), `payment_requires_action` (with `client_secret`, `payment_intent`, `payment_id`) or `payment_pending`."),
        (status = 409, description = "`payments_not_configured`, `payment_method_required`."),
        (status = 422, description = "`validation_failed`: `amount` missing or out of range."),
    ),
)]
pub async fn top_up(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<TopUpRequest>,
) -> ApiResult<(StatusCode, Json<TopUp>)> {
    let Some(amount) = body.amount else {
        return Err(ApiError::validation(vec![FieldError::new(
            "amount",
            "required",
            "This field is required.",
        )]));
    };
    if !(payments::MIN_AMOUNT..=payments::MAX_AMOUNT).contains(&amount) {
        return Err(ApiError::validation(vec![amount_error()]));
    }
    let (payment, balance) = payments::top_up(&app, &p, amount).await?;
    Ok((StatusCode::CREATED, Json(TopUp { payment, balance })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PaymentsQuery {
    /// At most this many (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentPage {
    pub data: Vec<PaymentView>,
    /// Pass as `cursor` for the next (older) page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<Uuid>,
}

/// `GET /api/v1/billing/payments`
#[utoipa::path(
    get,
    path = "/billing/payments",
    tag = "payments",
    summary = "The payment history",
    description = "Every payment attempted, newest first, a page at a time: amount, currency, \
                   status, card, the provider's ids, and the ledger entries it produced (the \
                   payment, its refunds, disputes). Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(PaymentsQuery),
    responses(
        (status = 200, description = "A page of payments.", body = PaymentPage),
        (status = 422, description = "`validation_failed`: a limit out of range."),
    ),
)]
pub async fn list_payments(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
    ApiQuery(q): ApiQuery<PaymentsQuery>,
) -> ApiResult<Json<PaymentPage>> {
    let limit = page_limit(q.limit, 50, 200).map_err(|e| ApiError::validation(vec![e]))?;
    let (data, next_cursor) = payments::list(&app, &p, q.cursor, limit).await?;
    Ok(Json(PaymentPage { data, next_cursor }))
}

/// What `/webhooks/stripe` answers an event it accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct StripeEventReceived {
    /// Always `true`.
    pub received: bool,
    /// `applied`, `duplicate` (seen before: nothing done) or `ignored` (a type saaskit does not
    /// act on, or about something it does not know).
    pub outcome: String,
}

/// `POST /webhooks/stripe`: Stripe's events, checked by signature.
#[utoipa::path(
    post,
    path = "/webhooks/stripe",
    tag = "payments",
    summary = "Stripe's events",
    description = "Where Stripe posts its events (configure the endpoint in Stripe's dashboard \
                   and its signing secret as `SAASKIT_STRIPE_WEBHOOK_SECRET`). The \
                   `Stripe-Signature` header is checked (HMAC-SHA256, 5 minutes of tolerance, \
                   any of several `v1` values); each event is applied once, whatever the order \
                   and number of deliveries; types saaskit does not act on are acknowledged.",
    request_body(content = serde_json::Value, description = "A Stripe event, as Stripe sends it."),
    responses(
        (status = 200, description = "Received (applied, already applied, or ignored).", body = StripeEventReceived),
        (status = 400, description = "`invalid_signature`: missing, wrong or stale; `invalid_event`."),
        (status = 409, description = "`payments_not_configured`: no webhook secret is set."),
    ),
)]
pub async fn receive_stripe_event(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    match events::receive(&app, signature, &body).await {
        Ok(received) => (
            StatusCode::OK,
            Json(StripeEventReceived {
                received: true,
                outcome: format!("{received:?}").to_lowercase(),
            }),
        )
            .into_response(),
        Err(ReceiveError::NotConfigured) => ApiError::conflict(
            "payments_not_configured",
            "This server takes no Stripe events (SAASKIT_STRIPE_WEBHOOK_SECRET is not set).",
        )
        .into_response(),
        Err(ReceiveError::Signature(why)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_signature",
            format!("The Stripe-Signature header does not verify: {why}."),
        )
        .into_response(),
        Err(ReceiveError::Malformed(why)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_event",
            format!("The body is not a Stripe event: {why}"),
        )
        .into_response(),
        Err(ReceiveError::Unexpected(e)) => ApiError::from(e).into_response(),
    }
}
