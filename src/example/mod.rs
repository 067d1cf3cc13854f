//! The example product: the session recorder saaskit descends from, built only from what a
//! saaskit user has (the scoped extractors, `metering::consume`/`release`, idempotent writes,
//! the `Db`/`on_conn!` plumbing). Copy it as the template for your own metered resource.
//!
//! - `applications`: dashboard CRUD, counted by the gauge meter `applications`.
//! - `recordings`: written by the SDK with an API key, counted per billing cycle by the meter
//!   `recordings`; listed for the dashboard, newest first, a page at a time.

pub mod applications;
pub mod recordings;

use utoipa_axum::routes;

use crate::http::Route;

/// The example's routes, nested under `/api/v1` beside saaskit's own (see `http::router`);
/// each handler's `#[utoipa::path]` gives its path, its method and its part of the document.
pub fn route_table() -> Vec<Route> {
    vec![
        routes!(
            applications::list_applications,
            applications::create_application
        ),
        routes!(
            applications::get_application,
            applications::update_application,
            applications::delete_application
        ),
        routes!(recordings::list_recordings, recordings::create_recording),
    ]
}
