//! Quotas, usage metering and idempotency, through the example product (applications and
//! recordings) and the usage API.

use std::collections::BTreeMap;

use chrono::Duration;
use reqwest::{Method, StatusCode};
use saaskit::billing::admin::{self, NewPlan, PlanUpdate};
use saaskit::billing::events::Actor;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db_test;
use crate::helpers::*;

/// A business with an owner session, an SDK key and one application.
struct Product {
    business: Uuid,
    owner: String,
    sdk_key: String,
    application: String,
}

async fn product(app: &TestApp, email: &str) -> Product {
    let signup = app.signup(email).await;
    let owner = token_of(&signup);
    let business: Uuid = signup["business"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("business id");
    let (status, key) = app
        .post("/api/v1/api-keys", Some(&owner), json!({"name": "sdk"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let (status, application) = app
        .post("/api/v1/applications", Some(&owner), json!({"name": "web"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{application}");
    Product {
        business,
        owner,
        sdk_key: key["key"].as_str().expect("key").to_owned(),
        application: application["id"].as_str().expect("id").to_owned(),
    }
}

impl TestApp {
    async fn record(&self, p: &Product) -> (StatusCode, Value) {
        self.post(
            "/api/v1/recordings",
            Some(&p.sdk_key),
            json!({"application_id": p.application, "duration_ms": 1200}),
        )
        .await
    }

    async fn record_with_key(&self, p: &Product, key: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/recordings"))
            .bearer_auth(&p.sdk_key)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    async fn used(&self, p: &Product, meter: &str) -> i64 {
        let (status, body) = self.get("/api/v1/entitlements", Some(&p.sdk_key)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["meters"][meter]["used"].as_i64().unwrap_or(0)
    }
}

db_test!(
    async fn two_hundred_concurrent_writes_against_a_limit_of_one_hundred_make_exactly_one_hundred(
        app
    ) {
        let p = product(&app, "race@example.com").await;
        app.put_on_plan(p.business, "hundred", &[("recordings", 100)]).await;
        let app = std::sync::Arc::new(app);
        let p = std::sync::Arc::new(p);
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (app, p) = (app.clone(), p.clone());
            tasks.push(tokio::spawn(async move { app.record(&p).await }));
        }
        let mut created = 0;
        let mut refused = 0;
        for task in tasks {
            let (status, body) = task.await.expect("task");
            match status {
                StatusCode::CREATED => created += 1,
                StatusCode::PAYMENT_REQUIRED => {
                    assert_eq!(body["code"], "quota_exceeded", "{body}");
                    refused += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert_eq!((created, refused), (100, 100));
        assert_eq!(app.count("recordings").await, 100);
        assert_eq!(app.used(&p, "recordings").await, 100);
    }
);

db_test!(
    async fn a_refusal_says_which_limit_how_much_is_used_when_it_resets_and_what_would_allow_it(
        app
    ) {
        let p = product(&app, "limit@example.com").await;
        app.put_on_plan(p.business, "tiny", &[("recordings", 2)]).await;
        // A bigger public plan, and a hidden one that must not be offered.
        admin::create_plan(
            &app.app,
            NewPlan {
                code: "bigger".into(),
                name: "Bigger".into(),
                description: String::new(),
                price_minor: 500,
                currency: "usd".into(),
                cycle_days: 30,
                renews: true,
                fallback_code: None,
                limits: BTreeMap::from([("recordings".to_owned(), 10_000)]),
                is_public: true,
            }, Actor::Admin(None))
        .await
        .expect("plan");
        for _ in 0..2 {
            assert_eq!(app.record(&p).await.0, StatusCode::CREATED);
        }
        let (status, problem) = app.record(&p).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(problem["code"], "quota_exceeded");
        assert_eq!(problem["meter"], "recordings");
        assert_eq!(problem["limit"], 2);
        assert_eq!(problem["used"], 2);
        assert_eq!(problem["requested"], 1);
        assert_eq!(problem["plan"], "tiny");
        let (_, sub) = app.get("/api/v1/subscription", Some(&p.owner)).await;
        assert_eq!(problem["resets_at"], sub["current_period_end"], "{sub}");
        let upgrades: Vec<&str> = problem["upgrade_plans"]
            .as_array()
            .expect("upgrade_plans")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(upgrades.contains(&"bigger"), "{problem}");
        assert!(!upgrades.contains(&"tiny") && !upgrades.contains(&"unlimited"));
        assert!(problem["detail"].as_str().unwrap_or("").contains("bigger"));
        // Nothing of the refused request was written.
        assert_eq!(app.count("recordings").await, 2);
    }
);

db_test!(
    async fn a_new_cycle_starts_the_counter_at_zero_and_keeps_the_old_one_as_history(app) {
        let p = product(&app, "cycle@example.com").await;
        app.put_on_plan(p.business, "monthly", &[("recordings", 3)]).await;
        for _ in 0..3 {
            assert_eq!(app.record(&p).await.0, StatusCode::CREATED);
        }
        assert_eq!(app.record(&p).await.0, StatusCode::PAYMENT_REQUIRED);

        app.clock.advance(Duration::days(30));
        saaskit::billing::sweep::sweep(&app.app, app.clock_now())
            .await
            .expect("sweep");
        assert_eq!(app.used(&p, "recordings").await, 0);
        let (status, body) = app.record(&p).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["usage"]["used"], 1);
        assert_eq!(body["usage"]["remaining"], 2);

        // The owner's session has expired with the month; log in again.
        let (status, login) = app
            .post(
                "/api/v1/login",
                None,
                json!({"email": "cycle@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        let (status, usage) = app.get("/api/v1/usage", Some(&token_of(&login))).await;
        assert_eq!(status, StatusCode::OK, "{usage}");
        assert_eq!(usage["meters"]["recordings"]["used"], 1);
        assert_eq!(usage["meters"]["recordings"]["limit"], 3);
        let history = usage["history"].as_array().expect("history");
        assert_eq!(history.len(), 2, "{usage}");
        assert_eq!(history[0]["meters"]["recordings"], 1);
        assert_eq!(history[1]["meters"]["recordings"], 3);
        assert_eq!(history[0]["period_start"], usage["period"]["start"]);
    }
);

db_test!(
    async fn without_a_live_subscription_metered_calls_are_refused(app) {
        let p = product(&app, "expired@example.com").await;
        assert_eq!(app.record(&p).await.0, StatusCode::CREATED);
        // The free trial lasts 15 days and does not renew.
        app.clock.advance(Duration::days(16));
        saaskit::billing::sweep::sweep(&app.app, app.clock_now())
            .await
            .expect("sweep");
        let (status, problem) = app.record(&p).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{problem}");
        assert_eq!(problem["code"], "no_active_subscription");
        assert_eq!(problem["subscription_status"], "expired");
        let (status, problem) = app
            .post(
                "/api/v1/usage",
                Some(&p.sdk_key),
                json!({"meter": "api_calls"}),
            )
            .await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(problem["code"], "no_active_subscription");
        let (status, ent) = app.get("/api/v1/entitlements", Some(&p.sdk_key)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ent["live"], false);
        assert_eq!(ent["status"], "expired");
        assert_eq!(app.count("recordings").await, 1);
    }
);

db_test!(
    async fn unlimited_plans_never_refuse(app) {
        let p = product(&app, "beta@example.com").await;
        admin::set_plan(&app.app, p.business, "unlimited", Actor::Admin(None))
            .await
            .expect("set plan");
        for _ in 0..5 {
            let (status, body) = app
                .post(
                    "/api/v1/usage",
                    Some(&p.sdk_key),
                    json!({"meter": "recordings", "quantity": 1_000_000_000}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["limit"], Value::Null);
        }
        for i in 0..5 {
            let (status, body) = app
                .post(
                    "/api/v1/applications",
                    Some(&p.owner),
                    json!({"name": format!("app {i}")}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        assert_eq!(app.used(&p, "recordings").await, 5_000_000_000);
        assert_eq!(app.used(&p, "applications").await, 6);
    }
);

db_test!(
    async fn a_retry_with_the_same_idempotency_key_returns_the_first_response_and_consumes_nothing(
        app
    ) {
        let p = product(&app, "retry@example.com").await;
        let body = json!({"application_id": p.application, "page": "/checkout"});
        let first = app.record_with_key(&p, "rec-1", body.clone()).await;
        assert_eq!(first.status(), StatusCode::CREATED);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let (_, first) = read(first).await;
        assert!(first["id"].is_string(), "the recording itself: {first}");
        assert_eq!(first["usage"]["used"], 1);
        for _ in 0..3 {
            let again = app.record_with_key(&p, "rec-1", body.clone()).await;
            assert_eq!(again.status(), StatusCode::CREATED);
            assert_eq!(
                again.headers().get("idempotent-replayed").map(|v| v.as_bytes()),
                Some(&b"true"[..])
            );
            let (_, again) = read(again).await;
            assert_eq!(again, first);
        }
        assert_eq!(app.count("recordings").await, 1);
        assert_eq!(app.used(&p, "recordings").await, 1);

        // The same key for another request is a client error, not a silent replay.
        let other = app
            .record_with_key(&p, "rec-1", json!({"application_id": p.application, "page": "/"}))
            .await;
        assert_problem(other, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;

        // After 24 hours the key is forgotten and the same request counts again.
        app.clock.advance(Duration::hours(24) + Duration::seconds(1));
        let later = app.record_with_key(&p, "rec-1", body.clone()).await;
        assert_eq!(later.status(), StatusCode::CREATED);
        assert!(later.headers().get("idempotent-replayed").is_none());
        assert_eq!(app.count("recordings").await, 2);

        // Keys belong to a business: another business may use the same string.
        let q = product(&app, "other@example.com").await;
        let theirs = app
            .record_with_key(&q, "rec-1", json!({"application_id": q.application}))
            .await;
        assert_eq!(theirs.status(), StatusCode::CREATED);

        let bad = app.record_with_key(&p, "has space", body).await;
        assert_problem(bad, StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    }
);

db_test!(
    async fn concurrent_retries_with_one_key_consume_once(app) {
        let p = std::sync::Arc::new(product(&app, "burst@example.com").await);
        let app = std::sync::Arc::new(app);
        let body = json!({"meter": "api_calls", "quantity": 5});
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (app, p, body) = (app.clone(), p.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let res = app
                    .client
                    .post(app.url("/api/v1/usage"))
                    .bearer_auth(&p.sdk_key)
                    .header("Idempotency-Key", "burst")
                    .json(&body)
                    .send()
                    .await
                    .expect("request");
                read(res).await
            }));
        }
        let mut bodies = Vec::new();
        for task in tasks {
            let (status, body) = task.await.expect("task");
            assert_eq!(status, StatusCode::OK, "{body}");
            bodies.push(body);
        }
        assert!(bodies.iter().all(|b| b == &bodies[0]), "{bodies:?}");
        assert_eq!(bodies[0]["used"], 5);
        assert_eq!(app.used(&p, "api_calls").await, 5);
    }
);

db_test!(
    async fn applications_are_a_gauge_that_goes_down_when_one_is_deleted(app) {
        // free-trial allows 3 applications; `product` made one.
        let p = product(&app, "gauge@example.com").await;
        for name in ["two", "three"] {
            let (status, _) = app
                .post("/api/v1/applications", Some(&p.owner), json!({"name": name}))
                .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (status, problem) = app
            .post("/api/v1/applications", Some(&p.owner), json!({"name": "four"}))
            .await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(problem["code"], "quota_exceeded");
        assert_eq!(problem["meter"], "applications");
        assert_eq!(problem["kind"], "gauge");
        assert_eq!(problem["resets_at"], Value::Null);

        let (status, list) = app.get("/api/v1/applications", Some(&p.owner)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["data"].as_array().map(Vec::len), Some(3));

        let path = format!("/api/v1/applications/{}", p.application);
        let (status, renamed) = app
            .call(Method::PATCH, &path, Some(&p.owner), Some(json!({"name": "web 2"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{renamed}");
        assert_eq!(renamed["name"], "web 2");
        let (status, _) = app.call(Method::DELETE, &path, Some(&p.owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = app.get(&path, Some(&p.owner)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = app.call(Method::DELETE, &path, Some(&p.owner), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(app.used(&p, "applications").await, 2);
        let (status, _) = app
            .post("/api/v1/applications", Some(&p.owner), json!({"name": "four"}))
            .await;
        assert_eq!(status, StatusCode::CREATED);

        // A deleted application takes no more recordings.
        let (status, problem) = app.record(&p).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["code"], "unknown_application");
    }
);

db_test!(
    async fn the_usage_api_counts_per_cycle_meters_only_and_validates_its_input(app) {
        let p = product(&app, "usage@example.com").await;
        app.put_on_plan(p.business, "metered", &[("api_calls", 10)]).await;
        let (status, body) = app
            .post(
                "/api/v1/usage",
                Some(&p.sdk_key),
                json!({"meter": "api_calls", "quantity": 7}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["used"], 7);
        assert_eq!(body["remaining"], 3);
        let (status, problem) = app
            .post(
                "/api/v1/usage",
                Some(&p.sdk_key),
                json!({"meter": "api_calls", "quantity": 4}),
            )
            .await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(problem["used"], 7);
        assert_eq!(problem["requested"], 4);
        for (bad, field) in [
            (json!({"meter": "applications"}), "meter"),
            (json!({"meter": "Not A Meter"}), "meter"),
            (json!({}), "meter"),
            (json!({"meter": "api_calls", "quantity": 0}), "quantity"),
            (json!({"meter": "api_calls", "quantity": -3}), "quantity"),
        ] {
            let (status, problem) = app.post("/api/v1/usage", Some(&p.sdk_key), bad).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        }
        let (status, ent) = app.get("/api/v1/entitlements", Some(&p.sdk_key)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ent["plan"], "metered");
        assert_eq!(ent["live"], true);
        assert_eq!(ent["meters"]["api_calls"]["remaining"], 3);
        assert_eq!(ent["meters"]["api_calls"]["kind"], "per_cycle");
        assert_eq!(ent["meters"]["applications"]["used"], 1);
        assert_eq!(ent["meters"]["applications"]["limit"], Value::Null);
        assert_eq!(ent["meters"]["members"]["used"], 1);
    }
);

db_test!(
    async fn a_change_to_the_plans_limits_applies_from_the_next_check(app) {
        let p = product(&app, "raise@example.com").await;
        app.put_on_plan(p.business, "growing", &[("recordings", 1)]).await;
        assert_eq!(app.record(&p).await.0, StatusCode::CREATED);
        assert_eq!(app.record(&p).await.0, StatusCode::PAYMENT_REQUIRED);
        admin::update_plan(
            &app.app,
            "growing",
            PlanUpdate {
                limits: vec![("recordings".to_owned(), Some(2))],
                ..Default::default()
            }, Actor::Admin(None))
        .await
        .expect("update plan");
        assert_eq!(app.record(&p).await.0, StatusCode::CREATED);
        assert_eq!(app.record(&p).await.0, StatusCode::PAYMENT_REQUIRED);
    }
);

db_test!(
    async fn recordings_are_listed_newest_first_a_page_at_a_time(app) {
        let p = product(&app, "pages@example.com").await;
        let mut ids = Vec::new();
        for i in 0..5 {
            app.clock.advance(Duration::seconds(1));
            let (status, body) = app
                .post(
                    "/api/v1/recordings",
                    Some(&p.sdk_key),
                    json!({"application_id": p.application, "n": i}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            ids.push(body["id"].as_str().expect("id").to_owned());
        }
        let (status, page) = app
            .get("/api/v1/recordings?limit=2", Some(&p.owner))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let got: Vec<&str> = page["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
        assert_eq!(page["data"][0]["data"]["n"], 4);
        let cursor = page["next_cursor"].as_str().expect("cursor");
        let (_, page2) = app
            .get(&format!("/api/v1/recordings?limit=2&cursor={cursor}"), Some(&p.owner))
            .await;
        assert_eq!(page2["data"][0]["id"], ids[2].as_str());
        let cursor = page2["next_cursor"].as_str().expect("cursor");
        let (_, page3) = app
            .get(&format!("/api/v1/recordings?limit=2&cursor={cursor}"), Some(&p.owner))
            .await;
        assert_eq!(page3["data"].as_array().map(Vec::len), Some(1));
        assert_eq!(page3["next_cursor"], Value::Null);
        let (status, problem) = app
            .get("/api/v1/recordings?limit=1000", Some(&p.owner))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        // Another business sees none of them.
        let q = product(&app, "nosy@example.com").await;
        let (_, theirs) = app.get("/api/v1/recordings", Some(&q.owner)).await;
        assert_eq!(theirs["data"].as_array().map(Vec::len), Some(0));
    }
);

db_test!(
    async fn accepting_an_invitation_is_refused_when_the_members_limit_is_reached(app) {
        let p = product(&app, "team@example.com").await;
        // Room for the owner and both invitations when they are sent...
        app.put_on_plan(p.business, "trio", &[("members", 3)]).await;
        let mut keys = Vec::new();
        for email in ["one@example.com", "two@example.com"] {
            let (status, inv) = app
                .post(
                    "/api/v1/invitations",
                    Some(&p.owner),
                    json!({"email": email, "role": "member"}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{inv}");
            keys.push(inv["key"].as_str().expect("key").to_owned());
        }
        // ...then the business moves to a plan with room for one of them only.
        app.put_on_plan(p.business, "duo", &[("members", 2)]).await;
        let accept = json!({"password": PASSWORD, "first_name": "A", "last_name": "B"});
        let (status, body) = app
            .post(&format!("/api/v1/invitations/{}/accept", keys[0]), None, accept.clone())
            .await;
        assert!(status.is_success(), "{body}");
        let (status, problem) = app
            .post(&format!("/api/v1/invitations/{}/accept", keys[1]), None, accept)
            .await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{problem}");
        assert_eq!(problem["code"], "quota_exceeded");
        assert_eq!(problem["meter"], "members");
        // The refused acceptance wrote nothing: no user, and the key still works later.
        let (status, _) = app
            .get(&format!("/api/v1/invitations/{}", keys[1]), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(app.used(&p, "members").await, 2);
    }
);

db_test!(
    async fn a_refused_recording_does_not_use_up_its_idempotency_key(app) {
        let p = product(&app, "refused@example.com").await;
        app.put_on_plan(p.business, "one", &[("recordings", 1)]).await;
        let (status, body) = app.record(&p).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");

        // Refused twice with the same key: for an unknown application, then for the limit.
        let unknown = json!({"application_id": uuid::Uuid::new_v4().to_string()});
        let res = app.record_with_key(&p, "k-1", unknown).await;
        let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["code"], "unknown_application");
        let body = json!({"application_id": p.application});
        let res = app.record_with_key(&p, "k-1", body.clone()).await;
        assert_problem(res, StatusCode::PAYMENT_REQUIRED, "quota_exceeded").await;
        assert_eq!(app.count("recordings").await, 1);

        // Once the limit allows it, the same key is judged afresh, and then replayed.
        app.put_on_plan(p.business, "two", &[("recordings", 2)]).await;
        let res = app.record_with_key(&p, "k-1", body.clone()).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert!(res.headers().get("idempotent-replayed").is_none());
        let res = app.record_with_key(&p, "k-1", body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert!(res.headers().get("idempotent-replayed").is_some());
        assert_eq!(app.count("recordings").await, 2);
        assert_eq!(app.used(&p, "recordings").await, 2);
    }
);

db_test!(
    async fn concurrent_recordings_with_one_idempotency_key_make_one_recording(app) {
        let p = std::sync::Arc::new(product(&app, "keyburst@example.com").await);
        let app = std::sync::Arc::new(app);
        let body = json!({"application_id": p.application, "page": "/"});
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (app, p, body) = (app.clone(), p.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                read(app.record_with_key(&p, "same", body).await).await
            }));
        }
        let mut bodies = Vec::new();
        for task in tasks {
            let (status, body) = task.await.expect("task");
            assert_eq!(status, StatusCode::CREATED, "{body}");
            bodies.push(body);
        }
        assert!(bodies.iter().all(|b| b == &bodies[0]), "{bodies:?}");
        assert_eq!(app.count("recordings").await, 1);
        assert_eq!(app.used(&p, "recordings").await, 1);
    }
);

db_test!(
    async fn dashboards_asked_for_at_once_each_show_their_own_business(app) {
        // The dashboard's figures of many businesses are read in one statement when their
        // pages are asked for together: each page must still show its own.
        let mut products = Vec::new();
        for i in 0..10 {
            let p = product(&app, &format!("dash{i}@example.com")).await;
            for _ in 0..i {
                assert_eq!(app.record(&p).await.0, StatusCode::CREATED);
            }
            products.push(p);
        }
        let pages = crate::signup::futures_join_all(products.iter().cycle().take(40).map(|p| {
            app.client
                .get(app.url("/dashboard"))
                .header("Cookie", format!("saaskit_session={}", p.owner))
                .send()
        }))
        .await;
        for (i, page) in pages.into_iter().enumerate() {
            let page = page.expect("dashboard");
            assert_eq!(page.status(), StatusCode::OK);
            let html = page.text().await.expect("body");
            let recorded = i % 10;
            for (meter, used) in [("recordings", recorded), ("applications", 1)] {
                let row = format!("<th scope=\"row\">{meter}</th>\n    <td>{used}</td>");
                assert!(html.contains(&row), "dash{recorded}'s page lacks {row:?}:\n{html}");
            }
        }
    }
);
