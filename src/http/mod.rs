//! The HTTP API: routes, and the layers every request passes through (request id, tracing,
//! body limit, panic guard). Handlers are thin: parse, call one service, map the result.

pub mod accounts;
pub mod admin;
pub mod billing;
pub mod compat;
pub mod extract;
pub mod health;
pub mod invitations;
pub mod passwords;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The routes of the API under `/api/v1`, without the outer layers: merge your own routes into
/// this, then wrap the result with [`with_layers`].
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/signup", post(accounts::create_account))
        .route("/login", post(accounts::login_user))
        .route("/logout", post(accounts::logout_user))
        .route("/me", get(accounts::get_current_user))
        .route("/healthz", get(health::get_health))
        .route("/plans", get(billing::list_plans))
        .route("/subscription", get(billing::get_subscription))
        .route("/subscription/change", post(billing::change_subscription))
        .route("/subscription/cancel", post(billing::cancel_subscription))
        .route("/subscription/resume", post(billing::resume_subscription))
        .route(
            "/admin/plans",
            get(admin::admin_list_plans).post(admin::admin_create_plan),
        )
        .route(
            "/admin/plans/{code}",
            axum::routing::patch(admin::admin_update_plan),
        )
        .route(
            "/admin/plans/{code}/archive",
            post(admin::admin_archive_plan),
        )
        .route("/admin/businesses/{id}", get(admin::admin_get_business))
        .route(
            "/admin/businesses/{id}/plan",
            post(admin::admin_set_business_plan),
        )
        .route(
            "/admin/businesses/{id}/credits",
            post(admin::admin_grant_credits),
        )
        .route("/password/reset", post(passwords::request_password_reset))
        .route(
            "/password/reset/confirm",
            post(passwords::confirm_password_reset),
        )
        .route("/invitations", post(invitations::create_invitation))
        .route("/invitations/{key}", get(invitations::get_invitation))
        .route(
            "/invitations/{key}/accept",
            post(invitations::accept_invitation),
        )
}

/// The whole application: saaskit's routes plus `extra` (a product's own routes, nested under
/// `/api/v1` like ours), with every layer applied.
pub fn router_with(app: AppState, extra: Router<AppState>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::get_health))
        .nest("/api/v1", api_routes().merge(extra))
        .nest("/saas", compat::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app);
    with_layers(routes)
}

/// saaskit's API on its own.
pub fn router(app: AppState) -> Router {
    router_with(app, Router::new())
}

/// Request id (taken from `X-Request-Id` or generated, and returned), a tracing span per request,
/// the body limit, and a guard that turns a panic into a problem document instead of a dropped
/// connection.
pub fn with_layers(routes: Router) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request| {
                        let request_id = req
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        // The route's template, never the raw path or query: both may carry keys
                        // (`/invitations/{key}`, `?key=`).
                        let route = req
                            .extensions()
                            .get::<MatchedPath>()
                            .map(MatchedPath::as_str)
                            .unwrap_or("<unmatched>");
                        tracing::info_span!("request", method = %req.method(), route, request_id)
                    })
                    .on_response(
                        |res: &axum::http::Response<_>,
                         latency: Duration,
                         _span: &tracing::Span| {
                            tracing::info!(
                                status = res.status().as_u16(),
                                latency_ms = latency.as_secs_f64() * 1000.0,
                                "response"
                            );
                        },
                    ),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(CatchPanicLayer::custom(
                |_panic: Box<dyn std::any::Any + Send>| {
                    ApiError::internal(anyhow::anyhow!("a request handler panicked"))
                        .into_response()
                },
            ))
            .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES)),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This address does not accept this method.",
    )
}
