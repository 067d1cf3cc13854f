//! The example product: the session recorder saaskit descends from, built only from what a
//! saaskit user has (the scoped extractors, `metering::consume`/`release`, idempotent writes,
//! the `Db`/`on_conn!` plumbing). Copy it as the template for your own metered resource.
//!
//! - `applications`: dashboard CRUD, counted by the gauge meter `applications`.
//! - `recordings`: written by the SDK with an API key, counted per billing cycle by the meter
//!   `recordings`; listed for the dashboard, newest first, a page at a time.

pub mod applications;
pub mod recordings;

use axum::routing::get;

use crate::http::Route;

/// The example's routes, nested under `/api/v1` beside saaskit's own (see `http::router`).
pub fn route_table() -> Vec<Route> {
    vec![
        (
            "/applications",
            get(applications::list_applications).post(applications::create_application),
        ),
        (
            "/applications/{id}",
            get(applications::get_application)
                .patch(applications::update_application)
                .delete(applications::delete_application),
        ),
        (
            "/recordings",
            get(recordings::list_recordings).post(recordings::create_recording),
        ),
    ]
}
