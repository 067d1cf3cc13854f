//! Staff-only admin API and the operator commands.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

async fn staff_token(app: &TestApp, email: &str) -> String {
    app.signup(email).await;
    saaskit::billing::admin::set_staff(&app.app, email, true)
        .await
        .expect("make staff");
    let (status, login) = app
        .post(
            "/api/v1/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    token_of(&login)
}

async fn admin_call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("send")
}

db_test! {
    async fn admin_routes_are_for_staff_only(app) {
        let signup = app.signup("ada@example.com").await;
        let token = token_of(&signup);
        let business = signup["business"]["id"].as_str().expect("id").to_owned();
        let routes = [
            (Method::GET, "/api/v1/admin/plans".to_owned(), None),
            (Method::POST, "/api/v1/admin/plans".to_owned(), Some(json!({"code": "x", "name": "X", "price": 1, "cycle_days": 30}))),
            (Method::PATCH, "/api/v1/admin/plans/free-trial".to_owned(), Some(json!({"price": 1}))),
            (Method::POST, "/api/v1/admin/plans/free-trial/archive".to_owned(), None),
            (Method::GET, format!("/api/v1/admin/businesses/{business}"), None),
            (Method::POST, format!("/api/v1/admin/businesses/{business}/plan"), Some(json!({"plan": "unlimited"}))),
            (Method::POST, format!("/api/v1/admin/businesses/{business}/credits"), Some(json!({"amount": 100}))),
        ];
        for (method, path, body) in routes {
            assert_problem(admin_call(&app, method.clone(), &path, &token, body.clone()).await, StatusCode::FORBIDDEN, "staff_only").await;
            let mut req = app.client.request(method, app.url(&path));
            if let Some(b) = body {
                req = req.json(&b);
            }
            assert_problem(req.send().await.expect("send"), StatusCode::UNAUTHORIZED, "unauthenticated").await;
        }
        assert_eq!(app.count("plans").await, 2);
        assert_eq!(app.count("ledger_entries").await, 0);
    }
}

db_test! {
    async fn staff_manage_plans_credits_and_a_business_plan(app) {
        let staff = staff_token(&app, "staff@example.com").await;
        let customer = app.signup("beta@example.com").await;
        let business = customer["business"]["id"].as_str().expect("id").to_owned();

        let create = json!({"code": "team", "name": "Team", "price": 4900, "currency": "eur", "cycle_days": 30,
                            "limits": {"members": 10, "recordings": 5000}, "fallback": "free-trial"});
        let (status, plan) = read(admin_call(&app, Method::POST, "/api/v1/admin/plans", &staff, Some(create.clone())).await).await;
        assert_eq!(status, StatusCode::CREATED, "{plan}");
        assert_eq!((plan["currency"].as_str(), plan["fallback"].as_str()), (Some("EUR"), Some("free-trial")));
        assert_problem(admin_call(&app, Method::POST, "/api/v1/admin/plans", &staff, Some(create)).await, StatusCode::CONFLICT, "plan_exists").await;
        for bad in [
            json!({"code": "Bad Code", "name": "X", "price": 1, "cycle_days": 30}),
            json!({"code": "ok", "name": "X", "price": -1, "cycle_days": 30}),
            json!({"code": "ok", "name": "X", "price": 1, "cycle_days": 0}),
            json!({"code": "ok", "name": "X", "price": 1, "cycle_days": 30, "currency": "dollars"}),
            json!({"code": "ok", "name": "X", "price": 1, "cycle_days": 30, "limits": {"a\u{0}b": 1}}),
            json!({"code": "ok", "name": "X\u{0}", "price": 1, "cycle_days": 30}),
            json!({"code": "ok", "name": "X"}),
            json!({"code": "ok", "name": "  ", "price": 1, "cycle_days": 30}),
        ] {
            assert_problem(admin_call(&app, Method::POST, "/api/v1/admin/plans", &staff, Some(bad)).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        }
        let res = admin_call(&app, Method::POST, "/api/v1/admin/plans", &staff, Some(json!({"code": "ok", "name": "X", "price": 1, "cycle_days": 30, "fallback": "nope"}))).await;
        assert_problem(res, StatusCode::NOT_FOUND, "plan_not_found").await;

        let (status, plan) = read(admin_call(&app, Method::PATCH, "/api/v1/admin/plans/team", &staff, Some(json!({"limits": {"members": null, "applications": 3}, "public": false}))).await).await;
        assert_eq!(status, StatusCode::OK, "{plan}");
        assert_eq!(plan["limits"], json!({"applications": 3, "recordings": 5000}));
        assert_eq!(plan["public"], false);
        let (_, plan) = read(admin_call(&app, Method::PATCH, "/api/v1/admin/plans/team", &staff, Some(json!({"fallback": null}))).await).await;
        assert!(plan["fallback"].is_null());
        // A blank name is not a name, on a change either.
        let res = admin_call(&app, Method::PATCH, "/api/v1/admin/plans/team", &staff, Some(json!({"name": " "}))).await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        for path in ["/api/v1/admin/plans/nope", "/api/v1/admin/plans/%00"] {
            assert_problem(admin_call(&app, Method::PATCH, path, &staff, Some(json!({"price": 5}))).await, StatusCode::NOT_FOUND, "plan_not_found").await;
        }

        let (status, archived) = read(admin_call(&app, Method::POST, "/api/v1/admin/plans/team/archive", &staff, None).await).await;
        assert_eq!(status, StatusCode::OK);
        assert!(archived["archived_at"].is_string());
        let (_, catalog) = app.get("/api/v1/plans", None).await;
        assert!(!catalog.to_string().contains("\"team\""));
        let (_, all) = read(admin_call(&app, Method::GET, "/api/v1/admin/plans", &staff, None).await).await;
        assert_eq!(all["data"].as_array().map(Vec::len), Some(3), "archived plans stay");
        assert_eq!(all["next_cursor"], Value::Null, "{all}");

        // A beta customer moves to the hidden unlimited plan, and gets credits.
        let (status, sub) = read(admin_call(&app, Method::POST, &format!("/api/v1/admin/businesses/{business}/plan"), &staff, Some(json!({"plan": "unlimited"}))).await).await;
        assert_eq!(status, StatusCode::OK, "{sub}");
        assert_eq!((sub["plan"]["code"].as_str(), sub["status"].as_str()), (Some("unlimited"), Some("active")));
        let (status, credits) = read(admin_call(&app, Method::POST, &format!("/api/v1/admin/businesses/{business}/credits"), &staff, Some(json!({"amount": 2500, "note": "welcome"}))).await).await;
        assert_eq!((status, credits["credit_balance"].as_i64()), (StatusCode::CREATED, Some(2500)));
        let (status, shown) = read(admin_call(&app, Method::GET, &format!("/api/v1/admin/businesses/{business}"), &staff, None).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((shown["plan"].as_str(), shown["credit_balance"].as_i64()), (Some("unlimited"), Some(2500)));
        let (_, me) = app.get("/api/v1/me", Some(&token_of(&customer))).await;
        assert_eq!(me["subscription"]["plan"]["code"], "unlimited");
        assert_eq!(me["subscription"]["plan"]["limits"], json!({}));

        for id in [uuid::Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
            let res = admin_call(&app, Method::GET, &format!("/api/v1/admin/businesses/{id}"), &staff, None).await;
            assert_problem(res, StatusCode::NOT_FOUND, "business_not_found").await;
        }
        let res = admin_call(&app, Method::POST, &format!("/api/v1/admin/businesses/{business}/plan"), &staff, Some(json!({"plan": "a\u{0}"}))).await;
        assert_problem(res, StatusCode::NOT_FOUND, "plan_not_found").await;
        let res = admin_call(&app, Method::POST, &format!("/api/v1/admin/businesses/{business}/credits"), &staff, Some(json!({"amount": 0}))).await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}

fn saaskit(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_saaskit"))
        .args(args)
        .env("SAASKIT_DATABASE_URL", &app.test_db.url)
        .output()
        .expect("run saaskit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

db_test! {
    async fn operators_manage_plans_and_businesses_from_the_command_line(app) {
        let customer = app.signup("ada@example.com").await;
        let business = customer["business"]["id"].as_str().expect("id").to_owned();

        let (ok, _, err) = saaskit(&app, &["plan", "create", "--code", "pro", "--name", "Pro", "--price", "1000", "--currency", "usd", "--days", "30", "--limit", "recordings=5000", "--limit", "members=10", "--fallback", "free-trial"]);
        assert!(ok, "{err}");
        let (ok, _, err) = saaskit(&app, &["plan", "create", "--code", "beta", "--name", "Beta", "--price", "0", "--days", "30", "--hidden", "--no-renew"]);
        assert!(ok, "{err}");
        let (ok, _, err) = saaskit(&app, &["plan", "create", "--code", "x", "--name", "X", "--price", "1", "--days", "30", "--limit", "oops"]);
        assert!(!ok && err.contains("meter=N"), "{err}");
        let (ok, _, err) = saaskit(&app, &["plan", "update", "pro", "--price", "1200", "--limit", "recordings=6000", "--unlimit", "members"]);
        assert!(ok, "{err}");
        let (ok, list, _) = saaskit(&app, &["plan", "list"]);
        assert!(ok);
        let pro = list.lines().find(|l| l.starts_with("pro ")).expect("pro listed");
        assert!(pro.contains("1200") && pro.contains("recordings=6000") && !pro.contains("members"), "{pro}");
        assert!(list.lines().any(|l| l.starts_with("beta ") && l.contains("hidden") && l.contains("does not renew")), "{list}");
        let (ok, _, _) = saaskit(&app, &["plan", "archive", "beta"]);
        assert!(ok);
        let (_, list, _) = saaskit(&app, &["plan", "list"]);
        assert!(list.lines().any(|l| l.starts_with("beta ") && l.contains("ARCHIVED")));

        let (ok, _, err) = saaskit(&app, &["business", "set-plan", &business, "pro"]);
        assert!(ok, "{err}");
        let (ok, _, err) = saaskit(&app, &["business", "grant-credits", &business, "5000", "--note", "prepaid"]);
        assert!(ok, "{err}");
        let (ok, _, _) = saaskit(&app, &["business", "grant-credits", &business, "-1000"]);
        assert!(ok);
        let (ok, shown, err) = saaskit(&app, &["business", "show", &business, "--json"]);
        assert!(ok, "{err}");
        let shown: Value = serde_json::from_str(shown.trim()).expect("one JSON object");
        assert_eq!(shown["plan"], "pro");
        assert_eq!(shown["status"], "active");
        assert_eq!(shown["credit_balance"], 4000);
        assert!(shown["current_period_start"].as_str().is_some_and(|s| s.ends_with('Z')));
        assert!(shown["current_period_end"].is_string());
        let (ok, text, _) = saaskit(&app, &["business", "show", &business]);
        assert!(ok && text.contains("pro") && text.contains("4000"), "{text}");
        let (ok, listed, _) = saaskit(&app, &["business", "list"]);
        assert!(ok && listed.contains(&business), "{listed}");
        let (ok, _, err) = saaskit(&app, &["business", "show", &uuid::Uuid::now_v7().to_string()]);
        assert!(!ok && err.contains("no business"), "{err}");

        let (ok, _, err) = saaskit(&app, &["user", "make-staff", "ADA@example.com"]);
        assert!(ok, "{err}");
        let (_, login) = app.post("/api/v1/login", None, json!({"email": "ada@example.com", "password": PASSWORD})).await;
        let (status, _) = app.get("/api/v1/admin/plans", Some(&token_of(&login))).await;
        assert_eq!(status, StatusCode::OK, "staff now");
        let (ok, _, _) = saaskit(&app, &["user", "make-staff", "nobody@example.com"]);
        assert!(!ok);
    }
}

db_test! {
    // Found by the fuzzer (.ci/fuzz) on PostgreSQL: two grants of i64::MAX made the balance's
    // SUM overflow BIGINT, a 500. Amounts and prices are bounded so no sum can overflow.
    async fn credits_and_prices_stay_far_from_overflowing(app) {
        let staff = staff_token(&app, "staff@example.com").await;
        let customer = app.signup("rich@example.com").await;
        let business = customer["business"]["id"].as_str().expect("id").to_owned();
        let credits = format!("/api/v1/admin/businesses/{business}/credits");
        for amount in [i64::MAX, i64::MIN, 1_000_000_000_001, -1_000_000_000_001] {
            let body = json!({"amount": amount});
            assert_problem(admin_call(&app, Method::POST, &credits, &staff, Some(body)).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        }
        for _ in 0..2 {
            let (status, body) = read(admin_call(&app, Method::POST, &credits, &staff, Some(json!({"amount": 1_000_000_000_000_i64}))).await).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let (status, body) = read(admin_call(&app, Method::GET, &format!("/api/v1/admin/businesses/{business}"), &staff, None).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["credit_balance"], 2_000_000_000_000_i64);

        let plan = json!({"code": "gold", "name": "Gold", "price": i64::MAX, "cycle_days": 30});
        assert_problem(admin_call(&app, Method::POST, "/api/v1/admin/plans", &staff, Some(plan)).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let change = json!({"price": 1_000_000_000_001_i64});
        assert_problem(admin_call(&app, Method::PATCH, "/api/v1/admin/plans/free-trial", &staff, Some(change)).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}

db_test! {
    /// JSON has one kind of number, and the document's `integer` is a whole number however it is
    /// written: `2500.0` and `3e1` are 2500 and 30 (a client in JavaScript may send either), while
    /// `2.5` stays refused.
    async fn whole_numbers_written_as_decimals_are_integers(app) {
        let staff = staff_token(&app, "staff@example.com").await;
        let customer = app.signup("ada@example.com").await;
        let business = customer["business"]["id"].as_str().expect("id").to_owned();
        let credits = format!("/api/v1/admin/businesses/{business}/credits");
        let (status, granted) = read(admin_call(&app, Method::POST, &credits, &staff, Some(json!({"amount": 2500.0}))).await).await;
        assert_eq!((status, granted["credit_balance"].as_i64()), (StatusCode::CREATED, Some(2500)), "{granted}");
        let (status, refused) = read(admin_call(&app, Method::POST, &credits, &staff, Some(json!({"amount": 2.5}))).await).await;
        assert_eq!((status, refused["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")), "{refused}");

        let body = json!({"code": "team", "name": "Team", "price": 1900.0, "cycle_days": 3e1, "limits": {"members": 10.0}});
        let (status, plan) = read(admin_call(&app, Method::POST, "/api/v1/admin/plans", &staff, Some(body)).await).await;
        assert_eq!(status, StatusCode::CREATED, "{plan}");
        assert_eq!((plan["price"].as_i64(), plan["cycle_days"].as_i64()), (Some(1900), Some(30)), "{plan}");
        assert_eq!(plan["limits"]["members"].as_i64(), Some(10), "{plan}");
    }
}
