//! A product registers in one place: its routes, meters, migrations, OpenAPI title and tags and
//! its default plan limits all reach the server from the one `Product` value.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use saaskit::metering::Meter;
use saaskit::product::{Product, Products};
use serde_json::json;

use crate::helpers::*;

const WIDGETS: Meter<'static> = Meter::gauge("widgets");
const BUILDS: Meter<'static> = Meter::per_cycle("builds");

/// The widgets a business has (none: the route is here to be routed and documented).
#[utoipa::path(get, path = "/widgets", tag = "widgets",
    responses((status = 200, description = "The widgets.", body = Vec<String>)))]
async fn list_widgets() -> axum::Json<Vec<String>> {
    axum::Json(Vec::new())
}

fn widgets() -> Product {
    Product::new("widgets")
        .title("Widgets API")
        .description("Widgets for every business.")
        .tag("widgets", "The widgets a business makes.")
        .routes([utoipa_axum::routes!(list_widgets)])
        .meter(WIDGETS)
        .meter(BUILDS)
        .migrations(
            sqlx::migrate!("tests/api/widgets/sqlite"),
            sqlx::migrate!("tests/api/widgets/postgres"),
        )
        .default_limit("free-trial", WIDGETS, 7)
        .default_limit("gold", WIDGETS, 9)
}

fn serving_widgets() -> Arc<Products> {
    Arc::new(Products::new().with(widgets()))
}

#[test]
fn the_document_and_the_paths_derive_from_the_registered_products() {
    let products = serving_widgets();
    let document = saaskit::http::openapi(&products);
    assert_eq!(document.info.title, "Widgets API");
    let description = document.info.description.clone().unwrap_or_default();
    assert!(
        description.ends_with("Widgets for every business."),
        "{description}"
    );
    let tags: Vec<_> = document
        .tags
        .iter()
        .flatten()
        .map(|t| t.name.clone())
        .collect();
    assert!(tags.contains(&"widgets".to_owned()), "{tags:?}");
    assert!(document.paths.paths.contains_key("/api/v1/widgets"));
    assert!(
        !document.paths.paths.contains_key("/api/v1/applications"),
        "saaskit never names the example"
    );
    let paths = saaskit::http::all_paths(&products);
    assert!(
        paths.iter().any(|path| path == "/api/v1/widgets"),
        "{paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|path| path.starts_with("/api/v1/applications"))
    );

    let alone = saaskit::http::openapi(&Products::new());
    assert_eq!(alone.info.title, "saaskit");
    assert!(
        !alone
            .paths
            .paths
            .keys()
            .any(|p| p.contains("widgets") || p.contains("applications"))
    );

    let meters = products.meters();
    assert_eq!(
        meters.get("widgets").kind(),
        saaskit::metering::MeterKind::Gauge
    );
    assert_eq!(
        meters.get("builds").kind(),
        saaskit::metering::MeterKind::PerCycle
    );
    assert_eq!(
        meters.get("members").kind(),
        saaskit::metering::MeterKind::Gauge
    );
}

#[test]
fn a_malformed_or_conflicting_registration_is_refused() {
    let twice = Products::new()
        .with(widgets())
        .try_with(Product::new("widgets"));
    assert!(twice.is_err(), "two products of one name");
    let conflict = Products::new()
        .with(widgets())
        .try_with(Product::new("other").meter(Meter::per_cycle("widgets")));
    let message = format!(
        "{:#}",
        conflict.expect_err("a meter of two kinds is refused")
    );
    assert!(message.contains("widgets"), "{message}");
    let members =
        Products::new().try_with(Product::new("third").meter(Meter::per_cycle("members")));
    assert!(members.is_err(), "saaskit's gauge cannot become a counter");
    assert!(Products::new().try_with(Product::new("Bad Name")).is_err());
    assert!(
        Products::new()
            .try_with(Product::new("x").meter(Meter::gauge("no-dash")))
            .is_err()
    );
    assert!(
        Products::new()
            .try_with(Product::new("x").default_limit("free-trial", WIDGETS, -1))
            .is_err()
    );
    let same_kind = Products::new()
        .with(widgets())
        .try_with(Product::new("other").meter(Meter::gauge("widgets")));
    assert!(
        same_kind.is_ok(),
        "two products may share a meter of one kind"
    );
}

async fn served_widgets_routes_meters_migrations_and_limits(backend: Backend) {
    let products = serving_widgets();
    let app = TestApp::spawn_serving(backend, products.clone()).await;

    // The product's route is served and documented; the example's are not.
    let token = app.signup_token("ada@example.com").await;
    let (status, body) = app.get("/api/v1/widgets", Some(&token)).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    let (status, _) = app.get("/api/v1/applications", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, document) = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(document["info"]["title"], "Widgets API");
    assert!(document["paths"]["/api/v1/widgets"].is_object());

    // Its migrations ran, tracked apart from saaskit's.
    assert_eq!(app.count("widgets").await, 0);
    assert_eq!(app.count("_sqlx_migrations_widgets").await, 1);
    assert!(
        products
            .migrations_applied(&app.db)
            .await
            .expect("read migrations")
    );
    // (The test app runs no mail worker, so it is not ready; its migrations are.)
    let (_, ready) = app.get("/readyz", None).await;
    assert_eq!(ready["checks"]["migrations"], "ok", "{ready}");

    // Its gauge is a gauge: an SDK cannot report it as usage; its counter can be.
    let (status, key) = app
        .post("/api/v1/api-keys", Some(&token), json!({"name": "SDK"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let sdk = key["key"].as_str().expect("the key").to_owned();
    let (status, refused) = app
        .post("/api/v1/usage", Some(&sdk), json!({"meter": "widgets"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["code"], "not_a_counter", "{refused}");
    let (status, used) = app
        .post("/api/v1/usage", Some(&sdk), json!({"meter": "builds"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{used}");

    // Its default limit was given to the plan that exists, once.
    let (_, me) = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me["subscription"]["plan"]["limits"]["widgets"], 7, "{me}");
    app.signup("staff@example.com").await;
    saaskit::billing::admin::set_staff(&app.app, "staff@example.com", true)
        .await
        .expect("make staff");
    let staff = app.login_token("staff@example.com").await;
    let (status, plan) = app
        .call(
            Method::PATCH,
            "/api/v1/admin/plans/free-trial",
            Some(&staff),
            Some(json!({"limits": {"widgets": null}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let gold =
        json!({"code": "gold", "name": "Gold", "price": 100, "cycle_days": 30, "limits": {}});
    let (status, plan) = app.post("/api/v1/admin/plans", Some(&staff), gold).await;
    assert_eq!(status, StatusCode::CREATED, "{plan}");
    // A restart migrates again: neither the limit staff removed nor a plan staff made since
    // gets the product's default.
    products.migrate(&app.db).await.expect("migrate again");
    let (_, me) = app.get("/api/v1/me", Some(&token)).await;
    assert!(
        me["subscription"]["plan"]["limits"]
            .get("widgets")
            .is_none(),
        "{me}"
    );
    let (_, plans) = app.get("/api/v1/admin/plans", Some(&staff)).await;
    let gold = plans
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["code"] == "gold");
    assert_eq!(gold.map(|p| &p["limits"]), Some(&json!({})), "{plans}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_product_is_served_on_sqlite() {
    served_widgets_routes_meters_migrations_and_limits(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_product_is_served_on_postgres() {
    if postgres_enabled() {
        served_widgets_routes_meters_migrations_and_limits(Backend::Postgres).await;
    }
}
