//! The HTTP API: routes, and the layers every request passes through (request id, tracing,
//! body limit, panic guard). Handlers are thin: parse, call one service, map the result.

pub mod accounts;
pub mod admin;
pub mod billing;
pub mod compat;
pub mod extract;
pub mod health;
pub mod invitations;
pub mod keys;
pub mod members;
pub mod passwords;
pub mod sessions;
pub mod usage;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, delete, get, patch, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A route: its path template and what each method does there.
pub type Route = (&'static str, MethodRouter<AppState>);

/// saaskit's routes under `/api/v1`, as a table: the router is built from it, and the
/// authorization matrix test reads its paths, so no route can escape that test.
pub fn api_route_table() -> Vec<Route> {
    vec![
        ("/signup", post(accounts::create_account)),
        ("/login", post(accounts::login_user)),
        ("/logout", post(accounts::logout_user)),
        ("/me", get(accounts::get_current_user)),
        ("/healthz", get(health::get_health)),
        ("/plans", get(billing::list_plans)),
        ("/subscription", get(billing::get_subscription)),
        ("/subscription/change", post(billing::change_subscription)),
        ("/subscription/cancel", post(billing::cancel_subscription)),
        ("/subscription/resume", post(billing::resume_subscription)),
        (
            "/admin/plans",
            get(admin::admin_list_plans).post(admin::admin_create_plan),
        ),
        ("/admin/plans/{code}", patch(admin::admin_update_plan)),
        (
            "/admin/plans/{code}/archive",
            post(admin::admin_archive_plan),
        ),
        ("/admin/businesses/{id}", get(admin::admin_get_business)),
        (
            "/admin/businesses/{id}/plan",
            post(admin::admin_set_business_plan),
        ),
        (
            "/admin/businesses/{id}/credits",
            post(admin::admin_grant_credits),
        ),
        (
            "/admin/businesses/{id}/deactivate",
            post(admin::admin_deactivate_business),
        ),
        (
            "/admin/users/{id}/deactivate",
            post(admin::admin_deactivate_user),
        ),
        ("/password/reset", post(passwords::request_password_reset)),
        ("/password/change", post(sessions::change_password)),
        (
            "/sessions",
            get(sessions::list_sessions).delete(sessions::delete_other_sessions),
        ),
        ("/sessions/{id}", delete(sessions::delete_session)),
        (
            "/password/reset/confirm",
            post(passwords::confirm_password_reset),
        ),
        (
            "/invitations",
            get(invitations::list_invitations).post(invitations::create_invitation),
        ),
        // `{key}`: the mailed key on the public routes (GET, accept), the invitation's id on
        // the management ones (DELETE, resend); one segment name, as the router requires.
        (
            "/invitations/{key}",
            get(invitations::get_invitation).delete(invitations::revoke_invitation),
        ),
        (
            "/invitations/{key}/accept",
            post(invitations::accept_invitation),
        ),
        (
            "/invitations/{key}/resend",
            post(invitations::resend_invitation),
        ),
        (
            "/api-keys",
            get(keys::list_api_keys).post(keys::create_api_key),
        ),
        ("/api-keys/revoke-leaked", post(keys::revoke_leaked_key)),
        ("/api-keys/{id}", delete(keys::revoke_api_key)),
        ("/api-keys/{id}/rotate", post(keys::rotate_api_key)),
        ("/bots", get(keys::list_bots).post(keys::create_bot)),
        ("/bots/{id}", delete(keys::delete_bot)),
        ("/members", get(members::list_members)),
        (
            "/members/{id}",
            patch(members::update_member).delete(members::delete_member),
        ),
        ("/usage", get(usage::get_usage).post(usage::record_usage)),
        ("/entitlements", get(usage::get_entitlements)),
    ]
}

/// Builds a router from route tables.
pub fn router_from(tables: impl IntoIterator<Item = Vec<Route>>) -> Router<AppState> {
    tables
        .into_iter()
        .flatten()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
}

/// The routes of the API under `/api/v1`, without the outer layers: merge your own routes into
/// this, then wrap the result with [`with_layers`].
pub fn api_routes() -> Router<AppState> {
    router_from([api_route_table()])
}

/// The whole application: saaskit's routes plus `extra` (a product's own routes, nested under
/// `/api/v1` like ours), with every layer applied.
pub fn router_with(app: AppState, extra: Router<AppState>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::get_health))
        .route("/readyz", get(health::get_readiness))
        .route("/metrics", get(health::get_metrics))
        .nest("/api/v1", api_routes().merge(extra))
        .nest("/saas", router_from([compat::route_table()]))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            record_metrics,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_secs(app.config.request_timeout_secs),
            enforce_timeout,
        ))
        .with_state(app.clone());
    with_layers(routes, &app.config)
}

/// saaskit's API with the example product (`src/example`).
pub fn router(app: AppState) -> Router {
    router_with(app, router_from([crate::example::route_table()]))
}

/// Every path the server answers, as templates: `/healthz`, `/api/v1/…` (saaskit's and the
/// example's) and `/saas/…`. The authorization matrix test checks each against its table.
pub fn all_paths() -> Vec<String> {
    let mut paths = vec![
        "/healthz".to_owned(),
        "/readyz".to_owned(),
        "/metrics".to_owned(),
    ];
    for (path, _) in api_route_table()
        .into_iter()
        .chain(crate::example::route_table())
    {
        paths.push(format!("/api/v1{path}"));
    }
    for (path, _) in compat::route_table() {
        paths.push(format!("/saas{path}"));
    }
    paths
}

/// Request id (taken from `X-Request-Id` or generated, and returned), a tracing span per request,
/// the body limit, a guard that turns a panic into a problem document instead of a dropped
/// connection, `Cache-Control: no-store` (answers carry tokens, keys and account data that no
/// cache should keep), and CORS for the configured origins.
pub fn with_layers(routes: Router, config: &crate::config::Config) -> Router {
    let routes = routes.layer(SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));
    let routes = match cors(config) {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
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

/// Counts every answered request by route template and status, and problems by code.
async fn record_metrics(
    axum::extract::State(app): axum::extract::State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    app.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    if let Some(crate::error::ProblemCode(code)) = response.extensions().get() {
        app.metrics.error(code);
    }
    response
}

/// CORS for `SAASKIT_CORS_ORIGINS`, exact origins only; `None` when there are none (browsers
/// then refuse every cross-origin call, the safe default).
fn cors(config: &crate::config::Config) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::PATCH,
                axum::http::Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                extract::IDEMPOTENCY_KEY,
                REQUEST_ID,
            ])
            .expose_headers([
                header::RETRY_AFTER,
                REQUEST_ID,
                HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

/// Answers 503 `timeout` when a request takes longer than `SAASKIT_REQUEST_TIMEOUT`; the handler
/// is dropped (an open transaction rolls back; a write already handed to the SQLite writer may
/// still commit, like any write whose answer was lost).
async fn enforce_timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "The request took too long and was abandoned.",
        )
        .into_response(),
    }
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
