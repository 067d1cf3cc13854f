//! Payments through Stripe, against a real localstripe (tests/api/localstripe.rs): the card on
//! file, top-ups (declined, needing 3-D Secure), renewals paid by card when credits are short
//! (and declined ones), and Stripe's events at `/webhooks/stripe` (refunds, disputes, signatures).
//! localstripe sends no `charge.*` events: those are posted here, signed as Stripe signs them.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration as StdDuration;

use chrono::Duration;
use reqwest::{Method, StatusCode};
use saaskit::billing::admin::{self, NewPlan};
use saaskit::billing::events::Actor;
use saaskit::billing::sweep::sweep;
use saaskit::db::Db;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::localstripe::{Localstripe, cards, stripe_signature};

/// The signing secret saaskit is given for `/webhooks/stripe`, and localstripe signs with.
const SECRET: &str = "whsec_saaskit_payments_tests";

/// Runs a scenario on both databases with saaskit talking to a localstripe of its own. The clock
/// starts at the real time: localstripe signs its webhooks with it, and saaskit checks the
/// signed time against its own clock.
macro_rules! payment_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident, $ls:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($app: TestApp, $ls: Localstripe) $body

            async fn run(backend: Backend) {
                let Some(ls) = Localstripe::start().await else {
                    eprintln!("skipped: no localstripe (run .ci/stripe-tools)");
                    return;
                };
                let app = super::spawn(backend, &ls).await;
                scenario(app, ls).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(saaskit_postgres_tests), ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it")]
            async fn postgres() {
                run(Backend::Postgres).await
            }
        }
    };
}

async fn spawn(backend: Backend, ls: &Localstripe) -> TestApp {
    let test_db = std::sync::Arc::new(TestDb::create(backend).await);
    spawn_on(test_db, ManualClock::new(chrono::Utc::now()), ls).await
}

/// Another server with Stripe on the same database and clock (a second replica).
async fn spawn_on(
    test_db: std::sync::Arc<TestDb>,
    clock: ManualClock,
    ls: &Localstripe,
) -> TestApp {
    let api_base = ls.api_base();
    let secret_key = ls.secret_key();
    let publishable_key = ls.publishable_key();
    TestApp::spawn_configured(test_db, clock, move |c| {
        c.stripe_secret_key = Some(secret_key.into());
        c.stripe_api_base = api_base;
        c.stripe_publishable_key = Some(publishable_key.into());
        c.stripe_webhook_secret = vec![SECRET.into()];
    })
    .await
}

fn now_secs(app: &TestApp) -> i64 {
    app.clock_now().as_datetime().timestamp()
}

/// Saves a new card with `number` as the business's card on file; returns it as the API shows it.
async fn save_card(app: &TestApp, token: &str, ls: &Localstripe, number: &str) -> Value {
    let pm = ls.card(number).await;
    let (status, card) = app
        .post(
            "/api/v1/billing/payment-method",
            Some(token),
            json!({"payment_method": pm}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{card}");
    assert_eq!(card["id"], pm.as_str());
    card
}

async fn top_up(app: &TestApp, token: &str, amount: i64) -> (StatusCode, Value) {
    app.post(
        "/api/v1/billing/top-up",
        Some(token),
        json!({"amount": amount}),
    )
    .await
}

/// The business's credit balance, as `GET /api/v1/subscription` shows it.
async fn balance(app: &TestApp, token: &str) -> i64 {
    let (status, sub) = app.get("/api/v1/subscription", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{sub}");
    sub["credit_balance"].as_i64().expect("a credit balance")
}

/// Every payment of the business, newest first.
async fn payments(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, page) = app.get("/api/v1/billing/payments", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["data"].as_array().expect("a list of payments").clone()
}

fn kinds_and_amounts(payment: &Value) -> Vec<(String, i64)> {
    payment["ledger_entries"]
        .as_array()
        .expect("ledger entries")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().expect("a kind").to_owned(),
                e["amount"].as_i64().expect("an amount"),
            )
        })
        .collect()
}

/// The customer saaskit made at Stripe (the scenarios have one business with an account).
async fn customer_id(db: &Db) -> String {
    let sql = "SELECT customer_id FROM payment_accounts";
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
    }
    .expect("one payment account")
}

/// The business's ledger, oldest first: (kind, amount).
async fn ledger(db: &Db) -> Vec<(String, i64)> {
    let sql = "SELECT kind, amount FROM ledger_entries ORDER BY created_at, id";
    match db {
        Db::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await,
    }
    .expect("ledger entries")
}

/// Polls `check` for up to 10 seconds, until it says yes.
async fn eventually<F, Fut>(what: &str, ls: &Localstripe, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s: {what}\nlocalstripe's log:\n{}",
            ls.log()
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

/// Posts `event` to `/webhooks/stripe` with the signature header `signature`.
async fn post_event(app: &TestApp, body: &str, signature: &str) -> (StatusCode, Value) {
    let res = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("post a Stripe event");
    read(res).await
}

/// Posts `event` signed as Stripe would sign it now (by the app's clock).
async fn deliver(app: &TestApp, event: &Value) -> (StatusCode, Value) {
    let body = serde_json::to_string_pretty(event).expect("an event as JSON");
    let t = now_secs(app);
    post_event(app, &body, &stripe_signature(SECRET, t, &body)).await
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": false,
        "type": kind,
        "data": {"object": object},
    })
}

fn plan(code: &str, price: i64) -> NewPlan {
    NewPlan {
        code: code.into(),
        name: code.to_uppercase(),
        description: String::new(),
        price_minor: price,
        currency: "usd".into(),
        cycle_days: 30,
        renews: true,
        fallback_code: None,
        limits: BTreeMap::from([("recordings".to_owned(), 100)]),
        is_public: true,
    }
}

/// Puts `business` on `pro` (1,000 every 30 days) from now, with no credits.
async fn on_pro(app: &TestApp, business: Uuid) {
    admin::create_plan(&app.app, plan("pro", 1000), Actor::Admin(None))
        .await
        .expect("pro plan");
    admin::set_plan(&app.app, business, "pro", Actor::Admin(None))
        .await
        .expect("set plan");
}

async fn subscription(app: &TestApp, token: &str) -> Value {
    let (status, sub) = app.get("/api/v1/subscription", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{sub}");
    sub
}

payment_test! {
    async fn a_card_is_saved_shown_replaced_and_removed_by_managers_only(app, ls) {
        let (owner, _) = app.signup_business("owner@example.com").await;
        let (member, _) = app.join(&owner, "member@example.com", "member").await;

        let (status, setup) = app.post("/api/v1/billing/setup-intent", Some(&owner), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{setup}");
        let secret = setup["client_secret"].as_str().expect("a client secret");
        assert!(secret.starts_with("seti_") && secret.contains("_secret_"), "{setup}");
        assert_eq!(setup["publishable_key"], ls.publishable_key());
        let customer = customer_id(&app.db).await;
        assert!(customer.starts_with("cus_"), "{customer}");

        let (status, none) = app.get("/api/v1/billing/payment-method", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(none.is_null(), "{none}");

        let card = save_card(&app, &owner, &ls, cards::GOOD).await;
        let pm = card["id"].as_str().expect("a pm id").to_owned();
        assert!(pm.starts_with("pm_"));
        assert_eq!(card["brand"], "visa");
        assert_eq!(card["last4"], "4242");
        assert_eq!(card["exp_month"], 12);
        assert_eq!(card["exp_year"], 2034);
        let (status, shown) = app.get("/api/v1/billing/payment-method", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shown, card);
        // Stripe's side: attached to the business's customer, and its default.
        let at_stripe = ls.get(&format!("/v1/customers/{customer}")).await;
        assert_eq!(at_stripe["invoice_settings"]["default_payment_method"], pm.as_str(), "{at_stripe:#}");
        assert_eq!(ls.get(&format!("/v1/payment_methods/{pm}")).await["customer"], customer.as_str());

        // A member may not, whatever they send.
        for (method, path, body) in [
            (Method::POST, "/api/v1/billing/setup-intent", Some(json!({}))),
            (Method::POST, "/api/v1/billing/payment-method", Some(json!({"payment_method": ls.card(cards::GOOD).await}))),
            (Method::GET, "/api/v1/billing/payment-method", None),
            (Method::DELETE, "/api/v1/billing/payment-method", None),
        ] {
            let (status, problem) = app.call(method.clone(), path, Some(&member), body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {problem}");
        }
        let (_, still) = app.get("/api/v1/billing/payment-method", Some(&owner)).await;
        assert_eq!(still["id"], pm.as_str(), "a member's attempt changed nothing");

        // Unknown at Stripe, or not a payment method id at all.
        for bad in ["pm_doesnotexist", "card_4242", ""] {
            let (status, problem) = app.post("/api/v1/billing/payment-method", Some(&owner), json!({"payment_method": bad})).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
            assert_eq!(problem["code"], "validation_failed");
            let expected = if bad.is_empty() { "required" } else { "invalid_payment_method" };
            assert!(
                problem["errors"].as_array().expect("errors").iter().any(|e| e["field"] == "payment_method" && e["code"] == expected),
                "{bad}: {problem}"
            );
        }
        // A card its bank refuses to save.
        let refused = ls.card(cards::DECLINE_ON_ATTACH).await;
        let (status, problem) = app.post("/api/v1/billing/payment-method", Some(&owner), json!({"payment_method": refused})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        let (_, still) = app.get("/api/v1/billing/payment-method", Some(&owner)).await;
        assert_eq!(still["id"], pm.as_str());

        // Replaced: the new card is the default, the old one detached.
        let newer = save_card(&app, &owner, &ls, cards::DECLINE_ON_CHARGE).await;
        assert_eq!(newer["last4"], "0341");
        let newer_pm = newer["id"].as_str().expect("a pm id");
        assert_eq!(ls.get(&format!("/v1/customers/{customer}")).await["invoice_settings"]["default_payment_method"], newer_pm);
        assert!(ls.get(&format!("/v1/payment_methods/{pm}")).await["customer"].is_null(), "the replaced card is detached");
        assert_eq!(customer_id(&app.db).await, customer, "one customer per business");

        let (status, _) = app.call(Method::DELETE, "/api/v1/billing/payment-method", Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, gone) = app.get("/api/v1/billing/payment-method", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(gone.is_null(), "{gone}");
        assert!(ls.get(&format!("/v1/payment_methods/{newer_pm}")).await["customer"].is_null(), "detached at Stripe");
        // Removing nothing is fine.
        let (status, _) = app.call(Method::DELETE, "/api/v1/billing/payment-method", Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        let (status, log) = app.get("/api/v1/audit-log", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{log}");
        let actions: Vec<&str> = log["data"].as_array().expect("data").iter().filter_map(|e| e["action"].as_str()).filter(|a| a.starts_with("payment_method.")).collect();
        assert_eq!(actions, ["payment_method.removed", "payment_method.updated", "payment_method.updated"]);
    }
}

payment_test! {
    async fn top_ups_credit_once_and_failures_credit_nothing(app, ls) {
        let (owner, business) = app.signup_business("owner@example.com").await;
        ls.register_webhook(&app.url("/webhooks/stripe"), SECRET).await;
        admin::grant_credits(&app.app, business, 100, None, Actor::Admin(None)).await.expect("grant");

        // No card yet; amounts out of range.
        let (status, problem) = top_up(&app, &owner, 2500).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("payment_method_required")), "{problem}");
        for amount in [0, 49, 1_000_000_000] {
            let (status, problem) = top_up(&app, &owner, amount).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{amount}: {problem}");
            assert_eq!(problem["code"], "validation_failed");
        }
        // A server without Stripe takes no payments.
        let plain = TestApp::spawn_on(app.test_db.clone(), app.clock.clone()).await;
        let (status, problem) = top_up(&plain, &owner, 2500).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("payments_not_configured")), "{problem}");
        drop(plain);

        // The business's own integrations hear about payments (the endpoint's address does not
        // resolve here: the deliveries wait, and are listed).
        let (status, endpoint) = app.post("/api/v1/webhooks", Some(&owner), json!({
            "url": "https://hooks.example.com/payments",
            "events": ["payment.succeeded", "payment.failed"],
        })).await;
        assert_eq!(status, StatusCode::CREATED, "{endpoint}");
        let endpoint = endpoint["id"].as_str().expect("the endpoint's id").to_owned();

        save_card(&app, &owner, &ls, cards::GOOD).await;
        let (status, paid) = top_up(&app, &owner, 2500).await;
        assert_eq!(status, StatusCode::CREATED, "{paid}");
        let payment = &paid["payment"];
        assert_eq!(payment["status"], "succeeded");
        assert_eq!(payment["purpose"], "top_up");
        assert_eq!(payment["amount"], 2500);
        assert_eq!(payment["currency"].as_str().map(str::to_lowercase).as_deref(), Some("usd"));
        assert_eq!(payment["card"], json!({"brand": "visa", "last4": "4242"}));
        assert_eq!(payment["provider"], "stripe");
        let pi = payment["provider_payment_id"].as_str().expect("a payment intent").to_owned();
        assert!(pi.starts_with("pi_"), "{payment}");
        assert!(payment["provider_charge_id"].as_str().is_some_and(|c| c.starts_with("ch_")), "{payment}");
        assert_eq!(kinds_and_amounts(payment), [("payment".to_owned(), 2500)]);
        assert_eq!(paid["balance"], 2600);
        assert_eq!(balance(&app, &owner).await, 2600);
        let at_stripe = ls.get(&format!("/v1/payment_intents/{pi}")).await;
        assert_eq!((at_stripe["status"].as_str(), at_stripe["amount"].as_i64()), (Some("succeeded"), Some(2500)));

        let (status, second) = top_up(&app, &owner, 1000).await;
        assert_eq!(status, StatusCode::CREATED, "{second}");
        assert_eq!(second["balance"], 3600);

        // Newest first, a page at a time.
        let (status, page) = app.get("/api/v1/billing/payments?limit=1", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
        assert_eq!(page["data"][0]["amount"], 1000);
        let cursor = page["next_cursor"].as_str().expect("a next page");
        let (status, page) = app.get(&format!("/api/v1/billing/payments?limit=1&cursor={cursor}"), Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["data"][0]["provider_payment_id"], pi.as_str());
        assert!(page["next_cursor"].is_null(), "{page}");

        // Declined: 402, nothing credited, the attempt listed as failed.
        save_card(&app, &owner, &ls, cards::DECLINE_ON_CHARGE).await;
        let (status, problem) = top_up(&app, &owner, 700).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{problem}");
        assert_eq!(problem["code"], "payment_failed");
        assert_eq!(problem["decline_code"], "card_declined");
        let failed_id = problem["payment_id"].as_str().expect("the payment's id").to_owned();
        assert_eq!(balance(&app, &owner).await, 3600);
        let listed = payments(&app, &owner).await;
        assert_eq!(listed[0]["id"], failed_id.as_str());
        assert_eq!(listed[0]["status"], "failed");
        assert_eq!(listed[0]["decline_code"], "card_declined");
        assert_eq!(listed[0]["card"]["last4"], "0341");
        assert!(kinds_and_amounts(&listed[0]).is_empty());

        // Two successes and a decline, each told once, with what it moved.
        let (status, deliveries) = app.get(&format!("/api/v1/webhooks/{endpoint}/deliveries"), Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{deliveries}");
        let told: Vec<(String, i64, String)> = deliveries["data"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| {
                let data = &d["payload"]["data"];
                (
                    d["event_type"].as_str().unwrap_or_default().to_owned(),
                    data["payment"]["amount"].as_i64().unwrap_or(-1),
                    data["payment"]["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            told,
            [
                ("payment.failed".to_owned(), 700, "failed".to_owned()),
                ("payment.succeeded".to_owned(), 1000, "succeeded".to_owned()),
                ("payment.succeeded".to_owned(), 2500, "succeeded".to_owned()),
            ],
            "{deliveries:#}"
        );

        // 3-D Secure: 402 with what Stripe.js needs; the credits arrive with Stripe's webhook.
        save_card(&app, &owner, &ls, cards::REQUIRES_3DS).await;
        let (status, problem) = top_up(&app, &owner, 1200).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{problem}");
        assert_eq!(problem["code"], "payment_requires_action");
        let intent = problem["payment_intent"].as_str().expect("a payment intent").to_owned();
        let client_secret = problem["client_secret"].as_str().expect("a client secret").to_owned();
        assert!(client_secret.starts_with(&format!("{intent}_secret_")), "{problem}");
        let pending_id = problem["payment_id"].as_str().expect("the payment's id").to_owned();
        assert_eq!(balance(&app, &owner).await, 3600);
        assert_eq!(payments(&app, &owner).await[0]["status"], "requires_action");

        let authenticated = ls.authenticate(&intent, &client_secret, true).await;
        assert_eq!(authenticated["status"], "succeeded", "{authenticated:#}");
        eventually("the authenticated payment is credited", &ls, || async {
            balance(&app, &owner).await == 4800
        })
        .await;
        // localstripe's echoes of the earlier payments (and this one's) credit nothing more.
        tokio::time::sleep(StdDuration::from_millis(2500)).await;
        assert_eq!(balance(&app, &owner).await, 4800);
        let listed = payments(&app, &owner).await;
        assert_eq!(listed.len(), 4);
        assert_eq!(listed[0]["id"], pending_id.as_str());
        assert_eq!(listed[0]["status"], "succeeded");
        assert_eq!(kinds_and_amounts(&listed[0]), [("payment".to_owned(), 1200)]);
        assert_eq!(listed[1]["status"], "failed", "the decline stays a decline");
        let payment_entries = ledger(&app.db).await.into_iter().filter(|(k, _)| k == "payment").count();
        assert_eq!(payment_entries, 3);
    }
}

payment_test! {
    async fn a_renewal_short_of_credits_is_paid_by_card_once(app, ls) {
        let (owner, business) = app.signup_business("owner@example.com").await;
        on_pro(&app, business).await;
        save_card(&app, &owner, &ls, cards::GOOD).await;
        let start = app.clock_now().as_datetime();
        let before = subscription(&app, &owner).await;
        assert_eq!((before["plan"]["code"].as_str(), before["credit_balance"].as_i64()), (Some("pro"), Some(0)));
        let period_end = before["current_period_end"].as_str().expect("a period end").to_owned();

        app.clock.advance(Duration::days(30));
        // Two replicas sweep at once: one charge.
        let other = spawn_on(app.test_db.clone(), app.clock.clone(), &ls).await;
        let now = app.clock_now();
        let (a, b) = tokio::join!(sweep(&app.app, now), sweep(&other.app, now));
        let (a, b) = (a.expect("sweep a"), b.expect("sweep b"));
        assert_eq!(a.errors + b.errors, 0, "{a:?} {b:?}");
        assert_eq!(a.renewals + b.renewals, 1, "{a:?} {b:?}");
        assert_eq!(app.count("payments").await, 1);
        let intents = ls.get("/v1/payment_intents").await;
        assert_eq!(intents["data"].as_array().map(Vec::len), Some(1), "{intents:#}");
        assert_eq!(intents["data"][0]["status"], "succeeded");
        assert_eq!(intents["data"][0]["amount"], 1000);

        let owner = app.login_token("owner@example.com").await;
        let listed = payments(&app, &owner).await;
        assert_eq!(listed.len(), 1);
        let renewal = &listed[0];
        assert_eq!((renewal["purpose"].as_str(), renewal["status"].as_str()), (Some("renewal"), Some("succeeded")));
        assert_eq!(renewal["amount"], 1000);
        assert_eq!(renewal["provider_payment_id"], intents["data"][0]["id"]);
        assert!(renewal["subscription_id"].is_string(), "{renewal}");
        assert_eq!(kinds_and_amounts(renewal), [("payment".to_owned(), 1000)]);
        assert_eq!(ledger(&app.db).await, [("payment".to_owned(), 1000), ("renewal_charge".to_owned(), -1000)]);

        let sub = subscription(&app, &owner).await;
        assert_eq!(sub["status"], "active");
        assert_eq!(sub["plan"]["code"], "pro");
        assert_eq!(sub["credit_balance"], 0);
        assert_eq!(sub["current_period_start"], period_end.as_str());
        let next_end: chrono::DateTime<chrono::Utc> = sub["current_period_end"].as_str().and_then(|s| s.parse().ok()).expect("a period end");
        let old_end: chrono::DateTime<chrono::Utc> = period_end.parse().expect("a period end");
        assert_eq!(next_end, old_end + Duration::days(30), "the next period");
        assert!(old_end - start < Duration::days(30) + Duration::seconds(1));

        // Swept again: nothing more to pay.
        let again = app.sweep().await;
        assert_eq!((again.renewals, again.charged), (0, 0));
        assert_eq!(app.count("payments").await, 1);
    }
}

payment_test! {
    async fn a_declined_renewal_goes_past_due_and_is_retried_with_the_new_card(app, ls) {
        let (owner, business) = app.signup_business("owner@example.com").await;
        on_pro(&app, business).await;
        save_card(&app, &owner, &ls, cards::DECLINE_ON_CHARGE).await;

        app.clock.advance(Duration::days(30));
        let report = app.sweep().await;
        assert_eq!((report.renewals, report.past_due), (0, 1), "{report:?}");
        let owner = app.login_token("owner@example.com").await;
        let sub = subscription(&app, &owner).await;
        assert_eq!((sub["status"].as_str(), sub["live"].as_bool()), (Some("past_due"), Some(true)));
        let mail = app.only_mail_to("owner@example.com", "A payment for your subscription was declined").await;
        assert!(mail.contains("10.00"), "the mail says how much: {mail}");
        let listed = payments(&app, &owner).await;
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0]["purpose"].as_str(), listed[0]["status"].as_str()), (Some("renewal"), Some("failed")));
        assert_eq!(listed[0]["decline_code"], "card_declined");
        assert_eq!(balance(&app, &owner).await, 0);

        // The same attempt is not made again within the day.
        app.clock.advance(Duration::hours(2));
        app.sweep().await;
        assert_eq!(app.count("payments").await, 1);

        save_card(&app, &owner, &ls, cards::GOOD).await;
        app.clock.advance(Duration::days(1) - Duration::hours(2));
        let report = app.sweep().await;
        assert_eq!(report.renewals, 1, "{report:?}");
        let owner = app.login_token("owner@example.com").await;
        let sub = subscription(&app, &owner).await;
        assert_eq!(sub["status"], "active");
        assert_eq!(sub["credit_balance"], 0);
        let listed = payments(&app, &owner).await;
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0]["status"].as_str(), listed[0]["card"]["last4"].as_str()), (Some("succeeded"), Some("4242")));
        assert_eq!(listed[1]["status"], "failed");
        assert_eq!(ledger(&app.db).await, [("payment".to_owned(), 1000), ("renewal_charge".to_owned(), -1000)]);
        assert_eq!(app.mail_to("owner@example.com", "A payment for your subscription was declined").await.len(), 1, "mailed once");
    }
}

payment_test! {
    async fn refunds_and_disputes_from_stripe_apply_once_and_need_a_good_signature(app, ls) {
        let (owner, _) = app.signup_business("owner@example.com").await;
        app.signup("staff@example.com").await;
        app.exec("UPDATE users SET is_staff = TRUE WHERE email = 'staff@example.com'").await;
        save_card(&app, &owner, &ls, cards::GOOD).await;
        let (status, paid) = top_up(&app, &owner, 2500).await;
        assert_eq!(status, StatusCode::CREATED, "{paid}");
        let pi = paid["payment"]["provider_payment_id"].as_str().expect("a pi").to_owned();
        let charge_id = paid["payment"]["provider_charge_id"].as_str().expect("a charge").to_owned();
        let payment_id = paid["payment"]["id"].as_str().expect("an id").to_owned();
        assert_eq!(balance(&app, &owner).await, 2500);
        ls.refund_amount(&pi, 1000).await;

        let t = now_secs(&app);
        let charge = |refunded: i64| json!({
            "id": charge_id, "object": "charge", "amount": 2500, "amount_refunded": refunded,
            "currency": "usd", "payment_intent": pi, "refunded": refunded >= 2500,
            "metadata": {},
        });
        let refunded = event("evt_refund_1000", "charge.refunded", t, charge(1000));
        for delivery in 0..3 {
            let (status, body) = deliver(&app, &refunded).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["received"], true);
            assert_eq!(body["outcome"], if delivery == 0 { "applied" } else { "duplicate" });
        }
        // An older event, delivered late: Stripe's total was smaller then.
        let (status, _) = deliver(&app, &event("evt_refund_500", "charge.refunded", t - 60, charge(500))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(balance(&app, &owner).await, 1500);
        let listed = payments(&app, &owner).await;
        assert_eq!(listed[0]["refunded_amount"], 1000);
        assert_eq!(kinds_and_amounts(&listed[0]), [("payment".to_owned(), 2500), ("refund".to_owned(), -1000)]);

        // Signatures: wrong secret, stale, missing: 400 and nothing changes.
        let body = serde_json::to_string_pretty(&event("evt_refund_all", "charge.refunded", t, charge(2500))).expect("JSON");
        let entries = app.count("ledger_entries").await;
        for signature in [
            stripe_signature("whsec_someone_else", t, &body),
            stripe_signature(SECRET, t - 600, &body),
            stripe_signature(SECRET, t, &body.replace("2500", "2499")),
            format!("t={t}"),
        ] {
            let (status, problem) = post_event(&app, &body, &signature).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{signature}: {problem}");
            assert_eq!(problem["code"], "invalid_signature");
        }
        assert_eq!(app.count("ledger_entries").await, entries);
        assert_eq!(balance(&app, &owner).await, 1500);

        // A type saaskit does not act on.
        let (status, body) = deliver(&app, &event("evt_other", "customer.subscription.created", t, json!({"id": "sub_1", "object": "subscription"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "ignored");
        assert_eq!(app.count("ledger_entries").await, entries);

        // A dispute takes the money back, and mails the owners and the staff; won, it returns once.
        let dispute = |status: &str| json!({
            "id": "dp_1", "object": "dispute", "amount": 2500, "charge": charge_id,
            "payment_intent": pi, "currency": "usd", "status": status, "reason": "fraudulent",
        });
        let (status, body) = deliver(&app, &event("evt_dispute_created", "charge.dispute.created", t, dispute("needs_response"))).await;
        assert_eq!((status, body["outcome"].as_str()), (StatusCode::OK, Some("applied")), "{body}");
        assert_eq!(balance(&app, &owner).await, -1000);
        let mail = app.only_mail_to("owner@example.com", "A card payment was disputed").await;
        assert!(mail.to_lowercase().contains("fraudulent"), "{mail}");
        app.only_mail_to("staff@example.com", "A card payment was disputed").await;
        let (status, _) = deliver(&app, &event("evt_dispute_updated", "charge.dispute.updated", t, dispute("under_review"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(balance(&app, &owner).await, -1000, "an update takes nothing more");
        for _ in 0..2 {
            let (status, _) = deliver(&app, &event("evt_dispute_won", "charge.dispute.closed", t, dispute("won"))).await;
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(balance(&app, &owner).await, 1500);
        let listed = payments(&app, &owner).await;
        assert_eq!(listed[0]["id"], payment_id.as_str());
        assert_eq!(listed[0]["disputed_amount"], 0);
        assert_eq!(
            kinds_and_amounts(&listed[0]),
            [("payment".to_owned(), 2500), ("refund".to_owned(), -1000), ("dispute".to_owned(), -2500), ("dispute".to_owned(), 2500)]
        );
        assert_eq!(app.mail_to("owner@example.com", "A card payment was disputed").await.len(), 1);

        // Staff and operators see the card, the last payment and the flag.
        let business_id = app.get("/api/v1/me", Some(&owner)).await.1["business"]["id"].as_str().expect("business").to_owned();
        let (ok, shown, err) = operator(&app, &["business", "show", &business_id, "--json"]);
        assert!(ok, "{err}");
        let shown: Value = serde_json::from_str(shown.trim()).expect("one JSON object");
        assert_eq!(shown["payment_method"]["last4"], "4242", "{shown:#}");
        assert_eq!(shown["last_payment"]["id"], payment_id.as_str(), "{shown:#}");
        assert_eq!(shown["last_payment"]["status"], "succeeded");
        assert_eq!(shown["flagged"], "dispute dp_1");
        let (ok, text, err) = operator(&app, &["business", "show", &business_id]);
        assert!(ok, "{err}");
        assert!(text.contains("payment method: visa ending 4242") && text.contains("flagged:        dispute dp_1"), "{text}");

        // A plan change made now, short of credits: the card pays what is missing.
        admin::create_plan(&app.app, plan("pro", 5000), Actor::Admin(None)).await.expect("pro plan");
        let (status, changed) = app.post("/api/v1/subscription/change", Some(&owner), json!({"plan": "pro", "at": "now"})).await;
        assert_eq!(status, StatusCode::OK, "{changed}");
        assert_eq!(changed["subscription"]["plan"]["code"], "pro");
        assert_eq!(changed["subscription"]["status"], "active");
        assert_eq!(changed["subscription"]["credit_balance"], 0);
        let listed = payments(&app, &owner).await;
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0]["purpose"].as_str(), listed[0]["status"].as_str(), listed[0]["amount"].as_i64()), (Some("plan_change"), Some("succeeded"), Some(3500)));
        assert_eq!(ls.get(&format!("/v1/payment_intents/{}", listed[0]["provider_payment_id"].as_str().expect("a pi"))).await["amount"], 3500);
    }
}

/// `saaskit …` against the scenario's database, as an operator runs it.
fn operator(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = crate::cli::saaskit()
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
