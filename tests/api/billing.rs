//! Plans, subscriptions, credits and the renewal sweep, with time moved by hand.

use std::collections::BTreeMap;

use chrono::Duration;
use reqwest::StatusCode;
use saaskit::billing::admin::{self, NewPlan};
use saaskit::billing::events::Actor;
use saaskit::billing::sweep::{SweepReport, sweep};
use saaskit::db::Db;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db_test;
use crate::helpers::*;

impl TestApp {
    pub async fn sweep(&self) -> SweepReport {
        sweep(&self.app, self.clock_now()).await.expect("sweep")
    }

    /// The caller's subscription, through a fresh login (sessions expire as the clock moves).
    pub async fn subscription(&self, email: &str) -> Value {
        let (status, login) = self
            .post(
                "/api/v1/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        let token = token_of(&login);
        let (status, body) = self.get("/api/v1/subscription", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

fn plan(code: &str, price: i64, days: i64, renews: bool, fallback: Option<&str>) -> NewPlan {
    NewPlan {
        code: code.into(),
        name: code.to_uppercase(),
        description: String::new(),
        price_minor: price,
        currency: "usd".into(),
        cycle_days: days,
        renews,
        fallback_code: fallback.map(str::to_owned),
        limits: BTreeMap::from([("recordings".to_owned(), 100)]),
        is_public: true,
    }
}

/// `free` (0, 30 days, renews) and `pro` (1,000 every 30 days, falls back to `free`).
async fn paid_plans(app: &TestApp) {
    admin::create_plan(
        &app.app,
        plan("free", 0, 30, true, None),
        Actor::Admin(None),
    )
    .await
    .expect("free plan");
    admin::create_plan(
        &app.app,
        plan("pro", 1000, 30, true, Some("free")),
        Actor::Admin(None),
    )
    .await
    .expect("pro plan");
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn business_id(signup: &Value) -> Uuid {
    signup["business"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("business id")
}

async fn charges(db: &Db) -> Vec<i64> {
    let sql = "SELECT amount FROM ledger_entries WHERE kind = 'renewal_charge' ORDER BY created_at";
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
    }
    .expect("charges")
}

db_test! {
    async fn the_catalog_lists_public_plans_only(app) {
        paid_plans(&app).await;
        let (status, body) = app.get("/api/v1/plans", None).await;
        assert_eq!(status, StatusCode::OK);
        let codes: Vec<&str> = body["data"].as_array().expect("plans").iter().filter_map(|p| p["code"].as_str()).collect();
        assert_eq!(codes, vec!["free", "free-trial", "pro"]);
        let pro = body["data"].as_array().and_then(|a| a.iter().find(|p| p["code"] == "pro")).expect("pro");
        assert_eq!(pro["price"], 1000);
        assert_eq!(pro["currency"], "USD");
        assert_eq!(pro["fallback"], "free");
        assert_eq!(pro["limits"]["recordings"], 100);
    }
}

db_test! {
    async fn the_trial_expires_after_fifteen_days_and_stays_current(app) {
        app.signup_token("ada@example.com").await;
        let sub = app.subscription("ada@example.com").await;
        assert_eq!((sub["status"].as_str(), sub["live"].as_bool()), (Some("trialing"), Some(true)));
        assert_eq!(sub["credit_balance"], 0);

        app.clock.advance(Duration::days(15) - Duration::seconds(1));
        assert_eq!(app.sweep().await.changed, 0);
        app.clock.advance(Duration::seconds(1));
        let report = app.sweep().await;
        assert_eq!((report.changed, report.stopped), (1, 1));

        let sub = app.subscription("ada@example.com").await;
        assert_eq!(sub["status"], "expired");
        assert_eq!(sub["live"], false);
        assert_eq!(sub["plan"]["code"], "free-trial");
        // Fifteen days unused: the session has lapsed; a new one sees the expiry.
        let token = app.login_token("ada@example.com").await;
        let (_, me) = app.get("/api/v1/me", Some(&token)).await;
        assert_eq!(me["subscription"]["status"], "expired");
        let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&token).json(&json!({"email": "x@example.com"})).send().await.expect("send");
        assert_problem(res, StatusCode::PAYMENT_REQUIRED, "no_active_subscription").await;
        assert_eq!(app.sweep().await.examined, 0, "expired subscriptions are not due again");
    }
}

db_test! {
    async fn after_downtime_each_missed_cycle_renews_once_while_credits_last(app) {
        paid_plans(&app).await;
        let signup = app.signup("ada@example.com").await;
        let business = business_id(&signup);
        admin::set_plan(&app.app, business, "pro", Actor::Admin(None)).await.expect("set plan");
        admin::grant_credits(&app.app, business, 2500, Some("prepaid".into()), Actor::Admin(None)).await.expect("grant");

        // The server was down for 100 days.
        app.clock.advance(Duration::days(100));
        let report = app.sweep().await;
        assert_eq!((report.renewals, report.charged, report.past_due, report.fell_back), (2, 2000, 1, 1));
        assert_eq!(charges(&app.db).await, vec![-1000, -1000]);

        let sub = app.subscription("ada@example.com").await;
        assert_eq!(sub["plan"]["code"], "free", "unpaid after grace: the plan's fallback");
        assert_eq!(sub["status"], "active");
        assert_eq!(sub["credit_balance"], 500);
        // Fell back at day 93 (period end 90 + 3 days of grace).
        assert_eq!(sub["current_period_start"], rfc3339(start_time() + Duration::days(93)));

        // Sweeping again changes nothing and charges nothing.
        let again = app.sweep().await;
        assert_eq!((again.changed, again.charged), (0, 0));
        assert_eq!(charges(&app.db).await.len(), 2);
    }
}

db_test! {
    async fn credits_granted_during_grace_renew_the_subscription(app) {
        paid_plans(&app).await;
        let signup = app.signup("ada@example.com").await;
        let business = business_id(&signup);
        admin::set_plan(&app.app, business, "pro", Actor::Admin(None)).await.expect("set plan");
        app.clock.advance(Duration::days(30));
        assert_eq!(app.sweep().await.past_due, 1);
        let sub = app.subscription("ada@example.com").await;
        assert_eq!((sub["status"].as_str(), sub["live"].as_bool()), (Some("past_due"), Some(true)));

        app.clock.advance(Duration::days(2));
        admin::grant_credits(&app.app, business, 1000, None, Actor::Admin(None)).await.expect("grant");
        assert_eq!(app.sweep().await.renewals, 1);
        let sub = app.subscription("ada@example.com").await;
        assert_eq!(sub["status"], "active");
        assert_eq!(sub["plan"]["code"], "pro");
        assert_eq!(sub["current_period_start"], rfc3339(start_time() + Duration::days(30)), "the new cycle starts where the old one ended");
        assert_eq!(sub["credit_balance"], 0);
    }
}

db_test! {
    async fn concurrent_sweeps_charge_each_cycle_exactly_once(app) {
        paid_plans(&app).await;
        let mut businesses = Vec::new();
        for i in 0..12 {
            let signup = app.signup(&format!("owner{i}@example.com")).await;
            let business = business_id(&signup);
            admin::set_plan(&app.app, business, "pro", Actor::Admin(None)).await.expect("set plan");
            admin::grant_credits(&app.app, business, 3000, None, Actor::Admin(None)).await.expect("grant");
            businesses.push(business);
        }
        app.clock.advance(Duration::days(95));
        // Two replicas (PostgreSQL) or two processes (SQLite): separate pools on one database.
        let other = TestApp::spawn_on(app.test_db.clone(), app.clock.clone()).await;
        let now = app.clock_now();
        let (a, b) = tokio::join!(sweep(&app.app, now), sweep(&other.app, now));
        let (a, b) = (a.expect("sweep a"), b.expect("sweep b"));
        assert_eq!(a.errors + b.errors, 0);
        assert_eq!(a.renewals + b.renewals, 36, "three cycles each, once: {a:?} {b:?}");
        assert_eq!(a.charged + b.charged, 36_000);
        assert_eq!(charges(&app.db).await.len(), 36);
        let c = app.sweep().await;
        assert_eq!((c.renewals, c.charged), (0, 0));
    }
}

db_test! {
    async fn lifecycle_events_record_each_transition(app) {
        paid_plans(&app).await;
        let signup = app.signup("ada@example.com").await;
        let business = business_id(&signup);
        admin::set_plan(&app.app, business, "pro", Actor::Admin(None)).await.expect("set plan");
        admin::grant_credits(&app.app, business, 1000, None, Actor::Admin(None)).await.expect("grant");
        app.clock.advance(Duration::days(70));
        app.sweep().await;
        let mut tx = app.db.read().await.expect("read");
        let kinds: Vec<(String, String)> = saaskit::store::events::list(tx.conn(), business)
            .await
            .expect("events")
            .into_iter()
            .map(|e| (e.kind, e.actor_kind))
            .collect();
        let expected: Vec<(String, String)> = [
            ("created", "user"),
            ("plan_changed", "admin"),
            ("charged", "system"),
            ("renewed", "system"),
            ("past_due", "system"),
            ("expired", "system"),
            ("plan_changed", "system"),
        ]
        .iter()
        .map(|(k, a)| (k.to_string(), a.to_string()))
        .collect();
        assert_eq!(kinds, expected);
    }
}

db_test! {
    async fn renew_at_simulates_time_from_the_command_line(app) {
        app.signup("ada@example.com").await;
        let at = (start_time() + Duration::days(16)).to_rfc3339();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_saaskit"))
            .args(["renew", "--at", &at])
            .env("SAASKIT_DATABASE_URL", &app.test_db.url)
            .output()
            .expect("run saaskit renew");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        assert_eq!(report["stopped"], 1);
        assert_eq!(app.subscription("ada@example.com").await["status"], "expired");

        let bad = std::process::Command::new(env!("CARGO_BIN_EXE_saaskit"))
            .args(["renew", "--at", "yesterday"])
            .env("SAASKIT_DATABASE_URL", &app.test_db.url)
            .output()
            .expect("run saaskit renew");
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
    }
}

/// `basic` (300 / 30 days) and `pro` (1,000 / 30 days), neither with a fallback.
async fn two_tiers(app: &TestApp) {
    admin::create_plan(
        &app.app,
        plan("basic", 300, 30, true, None),
        Actor::Admin(None),
    )
    .await
    .expect("basic");
    admin::create_plan(
        &app.app,
        plan("pro", 1000, 30, true, None),
        Actor::Admin(None),
    )
    .await
    .expect("pro");
}

async fn change(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/subscription/change"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("send")
}

db_test! {
    async fn upgrading_now_credits_the_unused_part_of_the_period(app) {
        two_tiers(&app).await;
        let signup = app.signup("ada@example.com").await;
        let token = token_of(&signup);
        admin::grant_credits(&app.app, business_id(&signup), 2000, None, Actor::Admin(None)).await.expect("grant");
        let (status, body) = read(change(&app, &token, json!({"plan": "basic", "at": "now"})).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["subscription"]["plan"]["code"], "basic");
        assert_eq!(body["subscription"]["status"], "active");
        assert_eq!(body["change"]["credit"], 0, "a trial earns no credit");
        assert_eq!(body["subscription"]["credit_balance"], 1700);

        app.clock.advance(Duration::days(10));
        let token = app.login_token("ada@example.com").await;
        let (status, dry) = read(change(&app, &token, json!({"plan": "pro", "dry_run": true})).await).await;
        assert_eq!(status, StatusCode::OK, "{dry}");
        assert_eq!(dry["dry_run"], true);
        assert_eq!(dry["change"]["price"], 1000);
        assert_eq!(dry["change"]["credit"], 200, "two thirds of 300 unused");
        assert_eq!(dry["change"]["amount_due"], 800);
        assert_eq!(dry["change"]["balance_after"], 900);
        assert_eq!(dry["subscription"]["plan"]["code"], "basic", "a dry run changes nothing");
        assert_eq!(dry["subscription"]["credit_balance"], 1700);

        let (status, done) = read(change(&app, &token, json!({"plan": "pro"})).await).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        let sub = &done["subscription"];
        assert_eq!(sub["plan"]["code"], "pro");
        assert_eq!(sub["credit_balance"], 900);
        assert_eq!(sub["current_period_start"], rfc3339(start_time() + Duration::days(10)));
        assert_eq!(sub["current_period_end"], rfc3339(start_time() + Duration::days(40)));
        let mut tx = app.db.read().await.expect("read");
        let kinds: Vec<String> = saaskit::store::ledger::list(tx.conn(), business_id(&signup)).await.expect("ledger").into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec!["grant", "renewal_charge", "proration_credit", "renewal_charge"]);
    }
}

db_test! {
    async fn downgrades_wait_for_the_period_end_and_can_be_undone(app) {
        two_tiers(&app).await;
        let signup = app.signup("ada@example.com").await;
        let token = token_of(&signup);
        admin::grant_credits(&app.app, business_id(&signup), 1300, None, Actor::Admin(None)).await.expect("grant");
        let (status, _) = read(change(&app, &token, json!({"plan": "pro"})).await).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = read(change(&app, &token, json!({"plan": "basic", "at": "period_end"})).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["subscription"]["plan"]["code"], "pro");
        assert_eq!(body["subscription"]["pending_change"]["plan"], "basic");
        assert_eq!(body["subscription"]["pending_change"]["at"], rfc3339(start_time() + Duration::days(30)));

        let (status, resumed) = read(app.client.post(app.url("/api/v1/subscription/resume")).bearer_auth(&token).send().await.expect("send")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(resumed["pending_change"].is_null(), "{resumed}");
        read(change(&app, &token, json!({"plan": "basic", "at": "period_end"})).await).await;

        app.clock.advance(Duration::days(30));
        let report = app.sweep().await;
        assert_eq!((report.renewals, report.charged), (1, 300));
        let sub = app.subscription("ada@example.com").await;
        assert_eq!(sub["plan"]["code"], "basic");
        assert!(sub["pending_change"].is_null());
        assert_eq!(sub["credit_balance"], 0);
    }
}

db_test! {
    async fn cancel_at_period_end_and_resume(app) {
        two_tiers(&app).await;
        let signup = app.signup("ada@example.com").await;
        let token = token_of(&signup);
        admin::grant_credits(&app.app, business_id(&signup), 5000, None, Actor::Admin(None)).await.expect("grant");
        read(change(&app, &token, json!({"plan": "basic"})).await).await;
        let cancel = || app.client.post(app.url("/api/v1/subscription/cancel")).bearer_auth(&token).send();
        let (status, body) = read(cancel().await.expect("send")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["cancel_at_period_end"], true);
        let (_, body) = read(app.client.post(app.url("/api/v1/subscription/resume")).bearer_auth(&token).send().await.expect("send")).await;
        assert_eq!(body["cancel_at_period_end"], false);
        read(cancel().await.expect("send")).await;

        app.clock.advance(Duration::days(30));
        let report = app.sweep().await;
        assert_eq!((report.stopped, report.charged), (1, 0));
        let sub = app.subscription("ada@example.com").await;
        assert_eq!((sub["status"].as_str(), sub["live"].as_bool()), (Some("canceled"), Some(false)));
        assert_eq!(sub["credit_balance"], 4700);

        // A canceled business picks a plan again: a new subscription starts now.
        let (_, login) = app.post("/api/v1/login", None, json!({"email": "ada@example.com", "password": PASSWORD})).await;
        let token = token_of(&login);
        let (status, body) = read(change(&app, &token, json!({"plan": "pro"})).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["subscription"]["status"], "active");
        assert_eq!(body["subscription"]["credit_balance"], 3700);
        let mut tx = app.db.read().await.expect("read");
        let history = saaskit::store::subscriptions::history_of(tx.conn(), business_id(&signup)).await.expect("history");
        assert_eq!(history.len(), 2);
        assert_eq!(history.iter().filter(|s| s.is_current).count(), 1);
    }
}

db_test! {
    async fn plan_changes_refuse_what_they_cannot_do(app) {
        two_tiers(&app).await;
        let signup = app.signup("ada@example.com").await;
        let token = token_of(&signup);
        let cases = [
            (json!({"plan": "nope"}), StatusCode::NOT_FOUND, "plan_not_found"),
            (json!({"plan": "unlimited"}), StatusCode::NOT_FOUND, "plan_not_found"),
            (json!({"plan": "free-trial"}), StatusCode::UNPROCESSABLE_ENTITY, "plan_not_selectable"),
            (json!({"plan": "pro"}), StatusCode::PAYMENT_REQUIRED, "insufficient_credits"),
            (json!({"plan": "pro", "at": "tomorrow"}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ];
        for (body, status, code) in cases {
            assert_problem(change(&app, &token, body).await, status, code).await;
        }
        admin::grant_credits(&app.app, business_id(&signup), 1000, None, Actor::Admin(None)).await.expect("grant");
        read(change(&app, &token, json!({"plan": "pro"})).await).await;
        assert_problem(change(&app, &token, json!({"plan": "pro"})).await, StatusCode::CONFLICT, "already_on_plan").await;

        // Members may look, not change.
        let (_, inv) = app.post("/api/v1/invitations", Some(&token), json!({"email": "m@example.com", "send_email": false})).await;
        let (_, joined) = app.post(&format!("/api/v1/invitations/{}/accept", inv["key"].as_str().expect("key")), None, json!({"first_name": "M", "last_name": "N", "password": "member passphrase"})).await;
        let member = token_of(&joined);
        assert_problem(change(&app, &member, json!({"plan": "basic", "at": "period_end"})).await, StatusCode::FORBIDDEN, "forbidden").await;
        // Not even a dry run: it would tell prices and balances only managers may act on.
        assert_problem(change(&app, &member, json!({"plan": "basic", "dry_run": true})).await, StatusCode::FORBIDDEN, "forbidden").await;
        let res = app.client.post(app.url("/api/v1/subscription/cancel")).bearer_auth(&member).send().await.expect("send");
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        let (status, _) = app.get("/api/v1/subscription", Some(&member)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(app.count("subscriptions").await, 1);
    }
}
