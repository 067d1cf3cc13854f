//! The example product: the session recorder saaskit descends from, built only from what a
//! saaskit user has (the scoped extractors, `metering::consume`/`release`, idempotent writes,
//! the `Db`/`on_conn!` plumbing). Copy it as the template for your own metered resource.
//!
//! - `applications`: dashboard CRUD, counted by the gauge meter `applications`.
//! - `recordings`: written by the SDK with an API key, counted per billing cycle by the meter
//!   `recordings`; listed for the dashboard, newest first, a page at a time, and on the
//!   product's own page `/recordings` (`pages`).

pub mod applications;
pub mod pages;
pub mod recordings;

use utoipa_axum::routes;

use saaskit::product::Product;

/// The example product, registered in `main.rs`: its routes, meters, tables, tags and the
/// limits it gives the free trial.
pub fn product() -> Product {
    Product::new("example")
        .description(
            "The example product built on saaskit: applications (a gauge-metered resource) and \
             the recordings an SDK sends for them (metered per billing cycle).",
        )
        .resource(applications::resource())
        .routes([routes!(
            recordings::list_recordings,
            recordings::create_recording
        )])
        .meter(recordings::METER)
        .pages(axum::Router::new().route("/recordings", axum::routing::get(pages::recordings_page)))
        .nav("Recordings", "/recordings")
        .migrations(
            sqlx::migrate!("./migrations/sqlite"),
            sqlx::migrate!("./migrations/postgres"),
        )
        .tag(
            "example: applications",
            "The example product: a gauge-metered resource.",
        )
        .tag(
            "example: recordings",
            "The example product: a per-cycle-metered resource written by the SDK.",
        )
        .default_limit("free-trial", applications::METER, 3)
        .default_limit("free-trial", recordings::METER, 1000)
}
