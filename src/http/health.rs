//! Liveness.

use axum::Json;
use serde::Serialize;

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
}

/// `GET /healthz`: 200 while the process is serving. Touches nothing else, so it stays cheap.
pub async fn get_health() -> Json<Health> {
    Json(Health { status: "ok" })
}
