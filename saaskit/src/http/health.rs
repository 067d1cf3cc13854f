//! Liveness (`/healthz`: the process serves) and readiness (`/readyz`: it can do its work).

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// `GET /healthz`: 200 while the process is serving. Touches nothing else, so it stays cheap.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    description = "200 while the process is serving. Touches nothing else, so it stays cheap.",
    responses((status = 200, description = "Serving.", body = Health)),
)]
pub async fn get_health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /api/v1/healthz`: the same, for clients that only see the API's prefix.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness, under the API's prefix",
    description = "The same as `GET /healthz`, for clients that only see `/api/v1`.",
    responses((status = 200, description = "Serving.", body = Health)),
)]
pub async fn get_api_health() -> Json<Health> {
    get_health().await
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    checks: Checks,
}

#[derive(Serialize, ToSchema)]
pub struct Checks {
    /// `ok`, or why not.
    database: String,
    /// `ok`, `pending` or `unknown`.
    migrations: &'static str,
    /// `ok` or `not running`.
    mail_worker: &'static str,
}

/// `GET /readyz`: 200 when the database answers, every migration this binary knows is applied
/// and the mail worker runs; 503 otherwise, with what is wrong. One small query.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness",
    description = "200 when the database answers, every migration this binary knows is applied and \
                   the mail worker runs; 503 otherwise, with what is wrong.",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready; `checks` says why.", body = Readiness),
    ),
)]
pub async fn get_readiness(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (database, migrations) = match app.products.migrations_applied(&app.db).await {
        Ok(true) => ("ok".to_owned(), "ok"),
        Ok(false) => ("ok".to_owned(), "pending"),
        Err(err) => {
            tracing::warn!(error = %err, "readiness: database check failed");
            ("unreachable".to_owned(), "unknown")
        }
    };
    let mail_worker = if app.mail_worker_running.load(Ordering::Relaxed) {
        "ok"
    } else {
        "not running"
    };
    let ready = database == "ok" && migrations == "ok" && mail_worker == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "not_ready" },
            checks: Checks {
                database,
                migrations,
                mail_worker,
            },
        }),
    )
}

/// `GET /metrics` on the main address: only with `Authorization: Bearer $SAASKIT_METRICS_TOKEN`;
/// 404 when no token is configured, so the endpoint does not even appear to exist.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "The Prometheus text format, with `Authorization: Bearer $SAASKIT_METRICS_TOKEN`; \
                   404 when the deployment configured no token (it may serve them on a separate \
                   address instead, `SAASKIT_METRICS_BIND`).",
    security(("metrics_token" = [])),
    responses(
        (status = 200, description = "The metrics.", body = String, content_type = "text/plain"),
        (status = 401, description = "`unauthenticated`: not the metrics token."),
        (status = 404, description = "`not_found`: no metrics token is configured."),
    ),
)]
pub async fn get_metrics(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, crate::error::ApiError> {
    let Some(expected) = app.config.metrics_token.as_deref() else {
        return Err(crate::error::ApiError::not_found());
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare digests: equal length, no early exit on the secret's bytes.
    if crate::secret::digest(presented) != crate::secret::digest(expected) {
        return Err(crate::error::ApiError::unauthenticated());
    }
    Ok(render_metrics(&app).await)
}

async fn render_metrics(app: &AppState) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (pool_in_use, pool_size) = app.db.pool_usage();
    let (outbox_backlog, outbox_failed, webhooks_queued) = match app.db.read().await {
        Ok(mut tx) => (
            crate::store::outbox::backlog(tx.conn()).await.unwrap_or(-1),
            crate::store::outbox::failed_count(tx.conn())
                .await
                .unwrap_or(-1),
            crate::store::webhooks::pending_count(tx.conn())
                .await
                .unwrap_or(-1),
        ),
        Err(_) => (-1, -1, -1),
    };
    let body = app.metrics.render(&crate::metrics::Gauges {
        pool_in_use,
        pool_size,
        outbox_backlog,
        outbox_failed,
        webhooks_queued,
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
}

/// The separate metrics listener (`SAASKIT_METRICS_BIND`): `/metrics` without authentication.
pub fn metrics_router(app: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |State(app): State<AppState>| async move { render_metrics(&app).await },
            ),
        )
        .with_state(app)
}
