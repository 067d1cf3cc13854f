//! A product registers in one place: its routes, meters, migrations, OpenAPI title and tags and
//! its default plan limits all reach the server from the one `Product` value.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use saaskit::error::FieldError;
use saaskit::metering::Meter;
use saaskit::product::{Product, Products};
use saaskit::resource::{Field, Resource};
use serde_json::json;

use crate::helpers::*;

const WIDGETS: Meter<'static> = Meter::gauge("widgets");
const BUILDS: Meter<'static> = Meter::per_cycle("builds");

/// `POST /api/v1/builds`: only an API key may report a build; each one counts per cycle.
#[utoipa::path(post, path = "/builds", tag = "widgets", security(("api_key" = [])),
    responses(
        (status = 200, description = "The meter after this build.", body = saaskit::metering::Consumed),
        (status = 402, description = "`quota_exceeded` or `no_active_subscription`."),
        (status = 403, description = "`api_key_required`."),
    ))]
async fn record_build(
    axum::extract::State(app): axum::extract::State<saaskit::app::AppState>,
    saaskit::http::extract::ApiKey(p): saaskit::http::extract::ApiKey,
) -> saaskit::error::ApiResult<axum::Json<saaskit::metering::Consumed>> {
    let mut tx = app.db.begin().await?;
    let used = saaskit::metering::consume(&mut tx, &p, BUILDS, 1, app.clock.now()).await?;
    tx.commit().await?;
    Ok(axum::Json(used))
}

/// Widgets: a toolkit resource with hard deletion, an optional number and flag, and a hook.
fn widget_resource() -> Resource {
    Resource::new("widgets", "widget")
        .tag("widgets")
        .field(Field::text("name").chars(1, 20))
        .field(Field::integer("size").range(1, 100).optional())
        .field(Field::boolean("shiny").optional())
        .validate(|v| match (v.text("name"), v.integer("size")) {
            (Some("tiny"), Some(size)) if size > 10 => {
                vec![FieldError::new(
                    "size",
                    "too_big_for_tiny",
                    "A tiny widget is 10 at most.",
                )]
            }
            _ => Vec::new(),
        })
        .meter(WIDGETS)
        .hard_delete()
}

fn widgets() -> Product {
    Product::new("widgets")
        .title("Widgets API")
        .description("Widgets for every business.")
        .tag("widgets", "The widgets a business makes.")
        .resource(widget_resource())
        .routes([utoipa_axum::routes!(record_build)])
        .meter(BUILDS)
        .migrations(
            sqlx::migrate!("tests/api/widgets/sqlite"),
            sqlx::migrate!("tests/api/widgets/postgres"),
        )
        .default_limit("free-trial", WIDGETS, 2)
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
    // (a resource's meter is declared with it)
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
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"data": [], "next_cursor": null}))
    );
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
    // Its API-key-only route admits API keys alone.
    let (status, build) = app
        .call(Method::POST, "/api/v1/builds", Some(&sdk), None)
        .await;
    assert_eq!(
        (status, &build["used"]),
        (StatusCode::OK, &json!(2)),
        "{build}"
    );
    let (status, refused) = app
        .call(Method::POST, "/api/v1/builds", Some(&token), None)
        .await;
    assert_eq!(
        (status, &refused["code"]),
        (StatusCode::FORBIDDEN, &json!("api_key_required"))
    );

    // Its default limit was given to the plan that exists, once.
    let (_, me) = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me["subscription"]["plan"]["limits"]["widgets"], 2, "{me}");
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
    let gold = plans["data"]
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
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn a_registered_product_is_served_on_postgres() {
    served_widgets_routes_meters_migrations_and_limits(Backend::Postgres).await;
}

async fn a_toolkit_resource_pages_changes_deletes_and_meters(backend: Backend) {
    let app = TestApp::spawn_serving(backend, serving_widgets()).await;
    let owner = app.signup_token("ada@example.com").await;
    let create = |body: serde_json::Value| app.post("/api/v1/widgets", Some(&owner), body);

    // Every problem of a body at once; the hook's too.
    let (status, refused) = create(json!({"size": 0, "colour": "red", "shiny": "yes"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let codes: Vec<_> = refused["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["field"].as_str().unwrap_or(""),
                e["code"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            "colour/unknown_field",
            "name/required",
            "size/out_of_range",
            "shiny/invalid_type"
        ]
    );
    let (status, refused) = create(json!({"name": "tiny", "size": 11})).await;
    assert_eq!(
        (status, &refused["errors"][0]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("too_big_for_tiny"))
    );
    assert_eq!(app.count("widgets").await, 0);

    // Created within the gauge's limit (2 on the free trial), trimmed, with nulls for the absent.
    let (status, first) = create(json!({"name": "  Sprocket ", "size": 5})).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(
        (&first["name"], &first["size"], &first["shiny"]),
        (&json!("Sprocket"), &json!(5), &json!(null))
    );
    let first_id = first["id"].as_str().expect("an id").to_owned();
    // Idempotent creation: the same key answers the stored widget, once.
    let keyed = || {
        app.client
            .post(app.url("/api/v1/widgets"))
            .bearer_auth(&owner)
            .header("Idempotency-Key", "widget-2")
            .json(&json!({"name": "Gear", "shiny": true}))
    };
    let (status, second) = read(keyed().send().await.expect("send")).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let replay = keyed().send().await.expect("send");
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(read(replay).await, (StatusCode::CREATED, second.clone()));
    app.assert_conformant();
    let (status, over) = create(json!({"name": "Cog"})).await;
    assert_eq!(
        (status, &over["code"]),
        (StatusCode::PAYMENT_REQUIRED, &json!("quota_exceeded")),
        "{over}"
    );

    // Pages, oldest first.
    let (_, page) = app.get("/api/v1/widgets?limit=1", Some(&owner)).await;
    assert_eq!(page["data"][0]["id"], first["id"]);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, next) = app
        .get(
            &format!("/api/v1/widgets?limit=1&cursor={cursor}"),
            Some(&owner),
        )
        .await;
    assert_eq!(
        (&next["data"][0]["id"], &next["next_cursor"]),
        (&second["id"], &json!(null))
    );
    let (status, _) = app.get("/api/v1/widgets?limit=0", Some(&owner)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A partial change: what is absent stays; null clears an optional field; the hook sees
    // the merged widget.
    let path = format!("/api/v1/widgets/{first_id}");
    let (status, changed) = app
        .call(
            Method::PATCH,
            &path,
            Some(&owner),
            Some(json!({"shiny": true, "size": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (&changed["name"], &changed["size"], &changed["shiny"]),
        (&json!("Sprocket"), &json!(null), &json!(true))
    );
    app.clock.advance(chrono::Duration::seconds(5));
    let (_, renamed) = app
        .call(
            Method::PATCH,
            &path,
            Some(&owner),
            Some(json!({"name": "tiny"})),
        )
        .await;
    assert_ne!(renamed["updated_at"], renamed["created_at"]);
    let (status, refused) = app
        .call(
            Method::PATCH,
            &path,
            Some(&owner),
            Some(json!({"size": 50})),
        )
        .await;
    assert_eq!(
        (status, &refused["errors"][0]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("too_big_for_tiny"))
    );
    let (_, got) = app.get(&path, Some(&owner)).await;
    assert_eq!(got, renamed, "a refused change writes nothing");

    // Another business sees none of it.
    let other = app.signup_token("grace@example.com").await;
    let (status, _) = app.get(&path, Some(&other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, theirs) = app.get("/api/v1/widgets", Some(&other)).await;
    assert_eq!(theirs["data"], json!([]));
    let (status, _) = app.call(Method::DELETE, &path, Some(&other), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Role rules: a member writes but does not delete.
    let (member, _) = app.join(&owner, "mia@example.com", "member").await;
    let (status, refused) = app.call(Method::DELETE, &path, Some(&member), None).await;
    assert_eq!(
        (status, &refused["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden_role"))
    );
    let (status, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&member),
            Some(json!({"shiny": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Hard deletion: the row goes, the gauge goes down, a place is free again.
    let (status, _) = app.call(Method::DELETE, &path, Some(&owner), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.count("widgets").await, 1);
    let (status, _) = app.get(&path, Some(&owner)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.call(Method::DELETE, &path, Some(&owner), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, third) = create(json!({"name": "Cog"})).await;
    assert_eq!(status, StatusCode::CREATED, "{third}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toolkit_resource_on_sqlite() {
    a_toolkit_resource_pages_changes_deletes_and_meters(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn a_toolkit_resource_on_postgres() {
    a_toolkit_resource_pages_changes_deletes_and_meters(Backend::Postgres).await;
}
