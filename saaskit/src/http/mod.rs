//! The HTTP API: routes, and the layers every request passes through (request id, tracing,
//! body limit, panic guard). Handlers are thin: parse, call one service, map the result.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod billing;
pub mod business;
pub mod compat;
pub mod extract;
pub mod health;
pub mod identities;
pub mod invitations;
pub mod keys;
pub mod members;
pub mod mfa;
pub mod openapi;
pub mod passkeys;
pub mod passwords;
pub mod payments;
pub mod sessions;
pub mod usage;
pub mod verification;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::ApiError;
use crate::product::Products;
use crate::telemetry::{RequestSampler, RequestScope, RouteName};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A route: what each method does at one path, and how the OpenAPI document describes it. Make
/// one with `utoipa_axum::routes!(handler, …)`: the path and methods come from each handler's
/// `#[utoipa::path]`, so the router and the document cannot disagree. The handlers of one
/// route share its path.
pub type Route = utoipa_axum::router::UtoipaMethodRouter<AppState>;

/// saaskit's routes under `/api/v1`, as a table: the router and the OpenAPI document are built
/// from it, and the authorization matrix test reads its paths, so no route can escape that test.
pub fn api_route_table() -> Vec<Route> {
    vec![
        routes!(accounts::create_account),
        routes!(accounts::login_user),
        routes!(accounts::logout_user),
        routes!(mfa::login_mfa),
        routes!(mfa::request_magic_link),
        routes!(mfa::confirm_magic_link),
        routes!(mfa::get_mfa),
        routes!(mfa::setup_totp),
        routes!(mfa::confirm_totp),
        routes!(mfa::disable_totp),
        routes!(mfa::regenerate_recovery_codes),
        routes!(identities::list_identities),
        routes!(identities::delete_identity),
        routes!(business::get_business, business::update_business),
        routes!(passkeys::start_passkey_registration),
        routes!(passkeys::finish_passkey_registration),
        routes!(passkeys::list_passkeys),
        routes!(passkeys::rename_passkey, passkeys::delete_passkey),
        routes!(passkeys::start_passkey_sign_in),
        routes!(passkeys::finish_passkey_sign_in),
        routes!(accounts::get_current_user, sessions::delete_account),
        routes!(health::get_api_health),
        routes!(openapi::get_openapi),
        routes!(billing::list_plans),
        routes!(billing::get_subscription),
        routes!(billing::change_subscription),
        routes!(billing::cancel_subscription),
        routes!(billing::resume_subscription),
        routes!(admin::admin_list_plans, admin::admin_create_plan),
        routes!(admin::admin_update_plan),
        routes!(admin::admin_archive_plan),
        routes!(admin::admin_get_business),
        routes!(admin::admin_set_business_plan),
        routes!(admin::admin_grant_credits),
        routes!(admin::admin_deactivate_business),
        routes!(admin::admin_deactivate_user),
        routes!(passwords::request_password_reset),
        routes!(sessions::change_password),
        routes!(sessions::list_sessions, sessions::delete_other_sessions),
        routes!(sessions::delete_session),
        routes!(sessions::switch_business),
        routes!(sessions::list_my_businesses),
        routes!(passwords::confirm_password_reset),
        routes!(verification::verify_email),
        routes!(verification::resend_verification_email),
        routes!(
            invitations::list_invitations,
            invitations::create_invitation
        ),
        // `{invitation}`: the mailed key on the public routes (GET, accept), the invitation's id
        // on the management ones (DELETE, resend); one segment name, as the router (and
        // OpenAPI, which holds `/a/{x}` and `/a/{y}` the same path) requires.
        routes!(invitations::get_invitation, invitations::revoke_invitation),
        routes!(invitations::accept_invitation),
        routes!(invitations::resend_invitation),
        routes!(keys::list_api_keys, keys::create_api_key),
        routes!(keys::revoke_leaked_key),
        routes!(keys::revoke_api_key),
        routes!(keys::rotate_api_key),
        routes!(keys::list_bots, keys::create_bot),
        routes!(keys::delete_bot),
        routes!(members::list_members),
        routes!(members::update_member, members::delete_member),
        routes!(members::transfer_ownership),
        routes!(audit::list_audit_log),
        routes!(usage::get_usage, usage::record_usage),
        routes!(usage::get_entitlements),
        routes!(webhooks::list_webhooks, webhooks::create_webhook),
        routes!(webhooks::list_webhook_event_types),
        routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ),
        routes!(webhooks::rotate_webhook_secret),
        routes!(webhooks::test_webhook),
        routes!(webhooks::list_webhook_deliveries),
        routes!(webhooks::retry_webhook_delivery),
        routes!(payments::create_setup_intent),
        routes!(
            payments::get_payment_method,
            payments::set_payment_method,
            payments::delete_payment_method
        ),
        routes!(payments::top_up),
        routes!(payments::list_payments),
    ]
}

/// The routes at the root, outside `/api/v1`: probes, metrics and the documentation page.
pub fn root_route_table() -> Vec<Route> {
    vec![
        routes!(health::get_health),
        routes!(health::get_readiness),
        routes!(health::get_metrics),
        routes!(openapi::get_docs),
        routes!(payments::receive_stripe_event),
    ]
}

/// Builds a router, with its part of the OpenAPI document, from route tables.
pub fn router_from(tables: impl IntoIterator<Item = Vec<Route>>) -> OpenApiRouter<AppState> {
    tables
        .into_iter()
        .flatten()
        .fold(OpenApiRouter::new(), |router, route| {
            // `routes!` would serve every handler at every path it names: one path per route.
            debug_assert_eq!(route.1.paths.len(), 1, "a route's handlers share one path");
            router.routes(route)
        })
}

/// The routes of saaskit's API under `/api/v1`, without the outer layers.
pub fn api_routes() -> OpenApiRouter<AppState> {
    router_from([api_route_table()])
}

/// Every route, the products' included (under `/api/v1` like saaskit's), and the finished
/// OpenAPI document that describes them.
fn assemble(products: &Products) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut document) = OpenApiRouter::with_openapi(openapi::base())
        .merge(router_from([root_route_table()]))
        .nest(
            "/api/v1",
            api_routes().merge(router_from([products.routes()])),
        )
        .nest("/saas", router_from([compat::route_table()]))
        .split_for_parts();
    products.describe(&mut document);
    crate::webhooks::catalogue::describe(products, &mut document);
    openapi::finish(&mut document);
    (routes, document)
}

/// The whole application: saaskit's routes plus those of the products registered on `app`
/// ([`App::products`](crate::app::App::products)), with every layer applied;
/// `/api/v1/openapi.json` describes them all.
pub fn router(app: AppState) -> Router {
    let (routes, _) = assemble(&app.products);
    let mut paths = all_paths(&app.products);
    paths.extend(crate::web::page_paths().map(str::to_owned));
    app.metrics
        .register_routes(paths.iter().map(String::as_str));
    let routes = routes
        .merge(crate::web::router(&app))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app.clone());
    with_layers(routes, &app)
}

/// The OpenAPI document of [`router`] for `products`.
pub fn openapi(products: &Products) -> utoipa::openapi::OpenApi {
    assemble(products).1
}

/// Every path the server answers for `products`, as templates: the root's (`/healthz`…),
/// `/api/v1/…` (saaskit's and the products') and `/saas/…`. The authorization matrix test
/// checks each against its table, and the OpenAPI test each against the document.
pub fn all_paths(products: &Products) -> Vec<String> {
    let prefixed = |prefix: &'static str, table: Vec<Route>| {
        table
            .into_iter()
            .flat_map(|(_, paths, _)| paths.paths.into_keys())
            .map(move |path| format!("{prefix}{path}"))
            .collect::<Vec<_>>()
    };
    let mut paths = prefixed("", root_route_table());
    paths.extend(prefixed("/api/v1", api_route_table()));
    paths.extend(prefixed("/api/v1", products.routes()));
    paths.extend(prefixed("/saas", compat::route_table()));
    paths
}

/// The layers every request passes, outermost first: `Cache-Control: no-store` (answers carry
/// tokens, keys and account data that no cache should keep); CORS for the configured origins
/// (none: no layer); [`request_path`] (request id, span, log line, metrics, audit context,
/// body-size refusal, timeout); a guard that turns a panic into a problem document instead of a
/// dropped connection; the body limit.
pub fn with_layers(routes: Router, app: &AppState) -> Router {
    let path = Arc::new(RequestPath {
        app: app.clone(),
        timeout: Duration::from_secs(app.config.request_timeout_secs),
        log: RequestSampler::new(app.config.request_log),
    });
    // One `layer` call: each wraps every route in a boxed service of its own, cloned per request.
    routes.layer(
        ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ))
            // Outside the request path, so that its own answers (413, 503) carry CORS headers.
            .option_layer(cors(&app.config))
            .layer(axum::middleware::from_fn_with_state(path, request_path))
            .layer(CatchPanicLayer::custom(
                |_panic: Box<dyn std::any::Any + Send>| {
                    ApiError::internal(anyhow::anyhow!("a request handler panicked"))
                        .into_response()
                },
            ))
            .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES)),
    )
}

/// What [`request_path`] needs, made once.
struct RequestPath {
    app: AppState,
    timeout: Duration,
    log: RequestSampler,
}

/// Everything a request passes once, in one step (each separate middleware costs a clone of
/// the route's service and a boxed future):
/// - its id: `X-Request-Id` as sent, or a new UUID; returned on the answer;
/// - its scope ([`RequestScope`]): the method, the route's template (never the raw path or
///   query: both may carry keys, `/invitations/{key}`, `?key=`) and the request id, named by
///   every line logged while it is handled, and the audit context (client address and user
///   agent, resolved only if an event is written);
/// - 413 `payload_too_large` at once for a declared body over the limit;
/// - 503 `timeout` past `SAASKIT_REQUEST_TIMEOUT` (the handler is dropped: an open transaction
///   rolls back; a write already handed to the SQLite writer may still commit, like any write
///   whose answer was lost);
/// - the metrics (by route template, method and status; problems by code) and the request's
///   INFO line (as `SAASKIT_REQUEST_LOG` says; an ERROR line for every server error), for every
///   answer, these two included.
async fn request_path(
    axum::extract::State(path): axum::extract::State<Arc<RequestPath>>,
    mut req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = match req.extensions().get::<MatchedPath>() {
        Some(matched) => RouteName::Matched(matched.clone()),
        None => RouteName::Fixed(crate::metrics::UNMATCHED),
    };
    let request_id = match req.headers().get(REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let mut text = uuid::Uuid::encode_buffer();
            let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
            let id = HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"));
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let scope = RequestScope {
        method: req.method().clone(),
        route,
        request_id,
        origin: extract::origin(req.extensions(), req.headers(), &path.app),
    };
    let handled = async {
        if oversized(&req) {
            return extract::payload_too_large().into_response();
        }
        match tokio::time::timeout(path.timeout, next.run(req)).await {
            Ok(response) => response,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "The request took too long and was abandoned.",
            )
            .into_response(),
        }
    };
    let (mut response, scope) = scope.run(handled).await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    path.app
        .metrics
        .observe(&scope.method, scope.route.as_str(), status, latency);
    if let Some(crate::error::ProblemCode(code)) = response.extensions().get() {
        path.app.metrics.error(code);
    }
    let request_id = scope.request_id.clone();
    // To the microsecond: what a reader compares, without the binary fraction's tail digits.
    let latency_ms = latency.as_micros() as f64 / 1000.0;
    if status >= 500 {
        // Whatever `SAASKIT_REQUEST_LOG` says: a timeout, say, logs nothing else.
        scope.enter(|| tracing::error!(status, latency_ms, "response failed"));
    } else if path.log.logs(status) {
        scope.enter(|| tracing::info!(target: "saaskit::request", status, latency_ms, "response"));
    }
    response
        .headers_mut()
        .entry(REQUEST_ID)
        .or_insert(request_id);
    response
}

/// Whether the declared `Content-Length` is over [`extract::MAX_BODY_BYTES`]: refused at once,
/// whatever the route, since otherwise a handler would wait for a body it will refuse, and one
/// that is never sent would hold the request until its timeout. A chunked body is held to the
/// same limit while it is read.
fn oversized(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > extract::MAX_BODY_BYTES as u64)
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

/// 404: a problem document, or our page for a browser asking for a page.
async fn not_found(
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if !uri.path().starts_with("/api/") && crate::web::wants_html(&headers) {
        return crate::web::not_found_page().await;
    }
    ApiError::not_found().into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This address does not accept this method.",
    )
}
