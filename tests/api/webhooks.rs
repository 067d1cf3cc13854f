//! Outgoing webhooks: endpoints, the events each change emits, signed deliveries checked by
//! the official `standardwebhooks` library (tests/api/webhook_receiver.py), retries, secret
//! rotation and the address rules.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::receiver::Receiver;

/// Runs a scenario on both databases with a server that may deliver to the local receiver
/// (`SAASKIT_WEBHOOK_ALLOW_PRIVATE`) and retries on a short schedule.
macro_rules! webhook_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($app: $crate::helpers::TestApp) $body

            async fn spawn(backend: $crate::helpers::Backend) -> $crate::helpers::TestApp {
                let test_db = std::sync::Arc::new($crate::helpers::TestDb::create(backend).await);
                $crate::helpers::TestApp::spawn_configured(
                    test_db,
                    $crate::helpers::ManualClock::new($crate::helpers::start_time()),
                    super::configure,
                )
                .await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                scenario(spawn($crate::helpers::Backend::Sqlite).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(saaskit_postgres_tests), ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it")]
            async fn postgres() {
                scenario(spawn($crate::helpers::Backend::Postgres).await).await
            }
        }
    };
}

pub(crate) fn configure(c: &mut saaskit::config::Config) {
    c.webhook_allow_private = true;
    c.webhook_retry_schedule = saaskit::config::RetrySchedule {
        delays: vec![
            chrono::Duration::seconds(5),
            chrono::Duration::minutes(5),
            chrono::Duration::minutes(30),
        ],
    };
}

/// Starts the receiver, or says the scenario is skipped.
pub(crate) async fn receiver() -> Option<Receiver> {
    let r = Receiver::start().await;
    if r.is_none() {
        eprintln!("skipped: no Python with standardwebhooks (run .ci/webhook-tools)");
    }
    r
}

/// Registers an endpoint for `events` at the receiver's `name` and tells the receiver its
/// secret; returns the endpoint as created (with its secret).
pub(crate) async fn register(
    app: &TestApp,
    token: &str,
    receiver: &Receiver,
    name: &str,
    events: &[&str],
) -> Value {
    let (status, created) = app
        .post(
            "/api/v1/webhooks",
            Some(token),
            json!({"url": receiver.url(name), "events": events, "description": name}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().expect("a secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.configure(name, &[secret], 204).await;
    created
}

/// Sends what is due and returns what the pass did.
pub(crate) async fn deliver(app: &TestApp) -> saaskit::jobs::webhooks::Pass {
    saaskit::jobs::webhooks::deliver_due(&app.app)
        .await
        .expect("a delivery pass")
}

fn types(received: &[Value]) -> Vec<String> {
    received
        .iter()
        .map(|r| r["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const ALL: &[&str] = &[
    "member.joined",
    "member.removed",
    "member.role_changed",
    "invitation.accepted",
    "subscription.changed",
    "subscription.renewed",
    "subscription.past_due",
    "subscription.expired",
    "subscription.canceled",
    "quota.threshold_reached",
    "api_key.created",
    "api_key.revoked",
    "application.created",
    "application.updated",
    "application.deleted",
];

webhook_test! {
    async fn each_change_sends_its_event_once_signed_and_a_refused_change_none(app) {
        let Some(receiver) = receiver().await else { return };
        let (owner, business) = app.signup_business("hooks@example.com").await;
        register(&app, &owner, &receiver, "all", ALL).await;

        // Keys: created, then revoked; revoking it again is refused and sends nothing.
        let (_, key) = app.post("/api/v1/api-keys", Some(&owner), json!({"name": "CI"})).await;
        let key_id = key["id"].as_str().expect("id").to_owned();
        let (status, _) = app
            .call(reqwest::Method::DELETE, &format!("/api/v1/api-keys/{key_id}"), Some(&owner), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = app
            .call(reqwest::Method::DELETE, &format!("/api/v1/api-keys/{key_id}"), Some(&owner), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // The example product's applications.
        let (status, application) = app
            .post("/api/v1/applications", Some(&owner), json!({"name": "Shop"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{application}");
        let app_id = application["id"].as_str().expect("id").to_owned();
        let (status, _) = app
            .call(reqwest::Method::DELETE, &format!("/api/v1/applications/{app_id}"), Some(&owner), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        // A member joins (an invitation accepted), changes role, and is removed.
        let (_, member_id) = app.join(&owner, "joiner@example.com", "member").await;
        let (status, body) = app
            .call(
                reqwest::Method::PATCH,
                &format!("/api/v1/members/{member_id}"),
                Some(&owner),
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = app
            .call(reqwest::Method::DELETE, &format!("/api/v1/members/{member_id}"), Some(&owner), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        let pass = deliver(&app).await;
        assert_eq!(pass.delivered, 8, "{pass:?}");
        let received = receiver.wait_for("all", 8, Duration::from_secs(10)).await;
        assert_eq!(
            types(&received),
            [
                "api_key.created",
                "api_key.revoked",
                "application.created",
                "application.deleted",
                "invitation.accepted",
                "member.joined",
                "member.role_changed",
                "member.removed",
            ]
        );
        assert!(receiver.rejected("all").await.is_empty());
        let business = business.to_string();
        for r in &received {
            assert_eq!(r["data"]["business_id"], business.as_str(), "{r}");
            assert!(r["webhook_id"].as_str().is_some_and(|id| id.starts_with("msg_")), "{r}");
        }
        assert_eq!(received[0]["data"]["api_key"]["id"], key_id.as_str());
        assert_eq!(received[6]["data"]["role"], "admin");
        assert_eq!(received[6]["data"]["previous_role"], "member");
        assert_eq!(received[7]["data"]["reason"], "removed");

        // Nothing more is due, and the deliveries are listed as delivered.
        assert_eq!(deliver(&app).await, Default::default());
        let (_, list) = app.get("/api/v1/webhooks", Some(&owner)).await;
        let endpoint = list["data"][0]["id"].as_str().expect("an endpoint").to_owned();
        let (status, page) = app
            .get(&format!("/api/v1/webhooks/{endpoint}/deliveries?status=delivered"), Some(&owner))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["data"].as_array().map(Vec::len), Some(8), "{page}");
        assert_eq!(page["data"][0]["event_type"], "member.removed");
        assert_eq!(page["data"][0]["response_status"], 204);
        assert_eq!(page["data"][0]["attempts"], 1);
    }
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

/// The API's spelling of `start_time() + offset`.
fn at(offset: chrono::TimeDelta) -> String {
    (start_time() + offset).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn pass(delivered: usize, retrying: usize, failed: usize) -> saaskit::jobs::webhooks::Pass {
    saaskit::jobs::webhooks::Pass {
        delivered,
        retrying,
        failed,
    }
}

/// Creates an API key (an `api_key.created` event) and returns its id.
async fn create_key(app: &TestApp, token: &str, name: &str) -> String {
    let (status, key) = app
        .post("/api/v1/api-keys", Some(token), json!({ "name": name }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    id_of(&key)
}

/// An endpoint's deliveries as listed (newest first), with `query` (`?status=…`).
async fn deliveries(app: &TestApp, token: &str, endpoint: &str, query: &str) -> Vec<Value> {
    let (status, page) = app
        .get(
            &format!("/api/v1/webhooks/{endpoint}/deliveries{query}"),
            Some(token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["data"].as_array().cloned().unwrap_or_default()
}

async fn post_webhook(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.post("/api/v1/webhooks", Some(token), body).await
}

async fn create_application(app: &TestApp, token: &str, name: &str) -> String {
    let (status, body) = app
        .post("/api/v1/applications", Some(token), json!({ "name": name }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    id_of(&body)
}

/// The first field error of a 422: `(field, code)`.
fn field_error(body: &Value) -> (String, String) {
    let error = &body["errors"][0];
    (
        error["field"].as_str().unwrap_or_default().to_owned(),
        error["code"].as_str().unwrap_or_default().to_owned(),
    )
}

fn key_ids(received: &[Value]) -> Vec<String> {
    received
        .iter()
        .map(|r| {
            r["data"]["api_key"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// How many `v1,` signatures a `webhook-signature` header carries.
fn signature_count(record: &Value) -> usize {
    record["signatures"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| s.starts_with("v1,"))
        .count()
}

webhook_test! {
    async fn a_receiver_down_then_failing_gets_every_event_once_it_is_back_and_an_exhausted_one_is_kept(app) {
        let Some(mut receiver) = receiver().await else { return };
        let (owner, _) = app.signup_business("down@example.com").await;
        let endpoint = id_of(&register(&app, &owner, &receiver, "flaky", &["api_key.created"]).await);
        let mut keys = Vec::new();
        for name in ["one", "two", "three"] {
            keys.push(create_key(&app, &owner, name).await);
        }

        // Down: connections are refused, and each delivery waits for its first retry, 5 s on.
        receiver.stop();
        assert_eq!(deliver(&app).await, pass(0, 3, 0));
        let pending = deliveries(&app, &owner, &endpoint, "?status=pending").await;
        assert_eq!(pending.len(), 3, "{pending:#?}");
        for d in &pending {
            assert_eq!(d["attempts"], 1, "{d}");
            assert_eq!(d["next_attempt_at"], at(chrono::TimeDelta::seconds(5)), "{d}");
            assert!(d["response_status"].is_null(), "{d}");
            assert!(d["error"].as_str().is_some_and(|e| e.starts_with("could not connect")), "{d}");
        }
        assert_eq!(deliver(&app).await, pass(0, 0, 0), "nothing is due before the retry");

        // Up again, but answering 500 to the next three.
        receiver.restart().await;
        receiver.fail_next("flaky", 3).await;
        app.clock.advance(chrono::TimeDelta::seconds(4));
        assert_eq!(deliver(&app).await, pass(0, 0, 0), "not due yet");
        app.clock.advance(chrono::TimeDelta::seconds(1));
        assert_eq!(deliver(&app).await, pass(0, 3, 0));
        let pending = deliveries(&app, &owner, &endpoint, "?status=pending").await;
        assert_eq!(pending.len(), 3, "{pending:#?}");
        for d in &pending {
            assert_eq!(d["attempts"], 2, "{d}");
            assert_eq!(d["response_status"], 500, "{d}");
            assert_eq!(d["error"], "the endpoint answered 500", "{d}");
            assert_eq!(
                d["next_attempt_at"],
                at(chrono::TimeDelta::seconds(5) + chrono::TimeDelta::minutes(5)),
                "{d}"
            );
        }
        assert!(receiver.received("flaky").await.is_empty());

        // Answering again: every event arrives, in the order it was emitted, each once.
        app.clock.advance(chrono::TimeDelta::minutes(5));
        assert_eq!(deliver(&app).await, pass(3, 0, 0));
        let received = receiver.wait_for("flaky", 3, Duration::from_secs(10)).await;
        assert_eq!(received.len(), 3, "{received:#?}");
        assert_eq!(key_ids(&received), keys);
        assert!(receiver.rejected("flaky").await.is_empty());
        // Each attempt of a delivery carried the same webhook-id: two per event, failed then
        // received, and the ids are those the API lists.
        let history = receiver.history("flaky").await;
        let outcomes: Vec<(String, String)> = history
            .iter()
            .map(|h| {
                (
                    h["webhook_id"].as_str().unwrap_or_default().to_owned(),
                    h["outcome"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let ids: Vec<String> = received
            .iter()
            .map(|r| r["webhook_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        let expected: Vec<(String, String)> = ids
            .iter()
            .map(|id| (id.clone(), "failed".to_owned()))
            .chain(ids.iter().map(|id| (id.clone(), "received".to_owned())))
            .collect();
        assert_eq!(outcomes, expected);
        let delivered = deliveries(&app, &owner, &endpoint, "?status=delivered").await;
        assert_eq!(delivered.len(), 3);
        let mut listed: Vec<String> = delivered
            .iter()
            .map(|d| d["webhook_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        listed.reverse();
        assert_eq!(listed, ids, "newest first");
        for d in &delivered {
            assert_eq!(d["attempts"], 3, "{d}");
            assert_eq!(d["response_status"], 204, "{d}");
            assert!(d["error"].is_null(), "{d}");
            assert!(d["next_attempt_at"].is_null(), "{d}");
            assert_eq!(
                d["delivered_at"],
                at(chrono::TimeDelta::seconds(5) + chrono::TimeDelta::minutes(5)),
                "{d}"
            );
        }

        // A delivery failing on every step of the schedule (5 s, 5 min, 30 min) ends failed
        // after its fourth attempt, and is kept.
        receiver.fail_next("flaky", 4).await;
        let fourth = create_key(&app, &owner, "four").await;
        assert_eq!(deliver(&app).await, pass(0, 1, 0));
        app.clock.advance(chrono::TimeDelta::seconds(5));
        assert_eq!(deliver(&app).await, pass(0, 1, 0));
        app.clock.advance(chrono::TimeDelta::minutes(5));
        assert_eq!(deliver(&app).await, pass(0, 1, 0));
        app.clock.advance(chrono::TimeDelta::minutes(30));
        assert_eq!(deliver(&app).await, pass(0, 0, 1));
        app.clock.advance(chrono::TimeDelta::days(1));
        assert_eq!(deliver(&app).await, pass(0, 0, 0), "a failed delivery is not retried by itself");
        let failed = deliveries(&app, &owner, &endpoint, "?status=failed").await;
        assert_eq!(failed.len(), 1, "{failed:#?}");
        let delivery = id_of(&failed[0]);
        assert_eq!(failed[0]["status"], "failed");
        assert_eq!(failed[0]["attempts"], 4);
        assert_eq!(failed[0]["response_status"], 500);
        assert!(failed[0]["next_attempt_at"].is_null());
        assert_eq!(failed[0]["payload"]["data"]["api_key"]["id"], fourth.as_str());
        assert_eq!(receiver.received("flaky").await.len(), 3);

        // Retried by hand, it goes out again.
        let (status, retried) = app
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/webhooks/{endpoint}/deliveries/{delivery}/retry"),
                Some(&owner),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
        assert_eq!(retried["id"], delivery.as_str());
        assert_eq!(retried["status"], "pending");
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let received = receiver.wait_for("flaky", 4, Duration::from_secs(10)).await;
        assert_eq!(key_ids(&received[3..]), [fourth]);
        assert_eq!(received[3]["webhook_id"], failed[0]["webhook_id"]);
        let attempts_of_fourth: Vec<String> = receiver
            .history("flaky")
            .await
            .iter()
            .filter(|h| h["webhook_id"] == failed[0]["webhook_id"])
            .map(|h| h["outcome"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(attempts_of_fourth, ["failed", "failed", "failed", "failed", "received"]);
        assert!(deliveries(&app, &owner, &endpoint, "?status=failed").await.is_empty());
        let delivered = deliveries(&app, &owner, &endpoint, "?status=delivered").await;
        assert_eq!(delivered.len(), 4);
        assert_eq!(delivered[0]["attempts"], 5);
        assert!(receiver.rejected("flaky").await.is_empty());
    }
}

webhook_test! {
    async fn a_rotated_secret_signs_beside_the_new_one_for_24_hours_then_stops(app) {
        let Some(receiver) = receiver().await else { return };
        let (owner, _) = app.signup_business("rotate@example.com").await;
        let created = register(&app, &owner, &receiver, "rotating", &["api_key.created"]).await;
        let endpoint = id_of(&created);
        let old = created["secret"].as_str().expect("a secret").to_owned();
        assert!(created["previous_secret_expires_at"].is_null(), "{created}");

        let (status, rotated) = app
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/webhooks/{endpoint}/rotate-secret"),
                Some(&owner),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        assert_eq!(rotated["id"], endpoint.as_str());
        let new = rotated["secret"].as_str().expect("a new secret").to_owned();
        assert!(new.starts_with("whsec_"), "{new}");
        assert_ne!(new, old);
        assert_eq!(rotated["previous_secret_expires_at"], at(chrono::TimeDelta::hours(24)));
        let (_, shown) = app.get(&format!("/api/v1/webhooks/{endpoint}"), Some(&owner)).await;
        assert_eq!(shown["previous_secret_expires_at"], at(chrono::TimeDelta::hours(24)));
        assert!(shown.get("secret").is_none(), "{shown}");

        // Within the window, a receiver that knows only the old secret still verifies, and so
        // does one that knows only the new: each delivery carries both signatures.
        receiver.configure("rotating", &[&old], 204).await;
        create_key(&app, &owner, "old secret").await;
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        receiver.configure("rotating", &[&new], 204).await;
        create_key(&app, &owner, "new secret").await;
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let received = receiver.wait_for("rotating", 2, Duration::from_secs(10)).await;
        assert!(receiver.rejected("rotating").await.is_empty());
        for r in &received {
            assert_eq!(signature_count(r), 2, "{r}");
        }

        // A day and a second later the old secret no longer signs: a receiver that knows only
        // it refuses the delivery, which verifies with the new one.
        app.clock.advance(chrono::TimeDelta::hours(24) + chrono::TimeDelta::seconds(1));
        let (_, shown) = app.get(&format!("/api/v1/webhooks/{endpoint}"), Some(&owner)).await;
        assert!(shown["previous_secret_expires_at"].is_null(), "{shown}");
        receiver.configure("rotating", &[&old], 204).await;
        create_key(&app, &owner, "after the window").await;
        assert_eq!(deliver(&app).await, pass(0, 1, 0));
        let rejected = receiver.rejected("rotating").await;
        assert_eq!(rejected.len(), 1, "{rejected:#?}");
        assert_eq!(rejected[0]["error"], "No matching signature found");
        assert_eq!(signature_count(&rejected[0]), 1, "{}", rejected[0]);
        assert_eq!(receiver.received("rotating").await.len(), 2);
        let pending = deliveries(&app, &owner, &endpoint, "?status=pending").await;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0]["response_status"], 400);

        receiver.configure("rotating", &[&new], 204).await;
        app.clock.advance(chrono::TimeDelta::seconds(5));
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let received = receiver.wait_for("rotating", 3, Duration::from_secs(10)).await;
        assert_eq!(signature_count(&received[2]), 1, "{}", received[2]);
        assert_eq!(received[2]["webhook_id"], rejected[0]["webhook_id"]);
        assert_eq!(received[2]["data"]["api_key"]["name"], "after the window");
    }
}

webhook_test! {
    async fn a_test_event_goes_to_its_endpoint_only(app) {
        let Some(receiver) = receiver().await else { return };
        let (owner, business) = app.signup_business("tester@example.com").await;
        let tested = id_of(&register(&app, &owner, &receiver, "tested", &["api_key.created"]).await);
        let everything = id_of(&register(&app, &owner, &receiver, "everything", ALL).await);

        let (status, queued) = app
            .call(reqwest::Method::POST, &format!("/api/v1/webhooks/{tested}/test"), Some(&owner), None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        assert_eq!(queued["event_type"], "webhook.test");
        assert_eq!(queued["status"], "pending");
        assert_eq!(queued["attempts"], 0);
        assert!(queued["webhook_id"].as_str().is_some_and(|id| id.starts_with("msg_")), "{queued}");

        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let received = receiver.wait_for("tested", 1, Duration::from_secs(10)).await;
        assert_eq!(received.len(), 1);
        assert_eq!(received[0]["type"], "webhook.test");
        assert_eq!(received[0]["webhook_id"], queued["webhook_id"]);
        assert_eq!(received[0]["data"]["endpoint_id"], tested.as_str());
        assert_eq!(received[0]["data"]["business_id"], business.to_string().as_str());
        assert!(receiver.received("everything").await.is_empty());
        assert_eq!(receiver.attempts("everything").await, 0);
        assert!(deliveries(&app, &owner, &everything, "").await.is_empty());
        let listed = deliveries(&app, &owner, &tested, "?event=webhook.test").await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["status"], "delivered");

        // Not another business's endpoint.
        let other = app.signup_token("stranger@example.com").await;
        let (status, _) = app
            .call(reqwest::Method::POST, &format!("/api/v1/webhooks/{tested}/test"), Some(&other), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(deliver(&app).await, pass(0, 0, 0));
    }
}

crate::db_test! {
    async fn private_addresses_are_refused_at_registration_and_again_when_connecting(app) {
        let (owner, _) = app.signup_business("ssrf@example.com").await;
        let create = |url: &str| post_webhook(&app, &owner, json!({"url": url, "events": ["api_key.created"], "description": "ssrf"}));
        for url in [
            "https://127.0.0.1/x",
            "https://10.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00:ec2::254]/",
            "https://0x7f000001/",
            "https://localhost/hook",
        ] {
            let (status, body) = create(url).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
            assert_eq!(field_error(&body), ("url".to_owned(), "forbidden_address".to_owned()), "{url}: {body}");
        }
        let (status, body) = create("http://example.com/").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(field_error(&body), ("url".to_owned(), "https_required".to_owned()));
        assert_eq!(app.count("webhook_endpoints").await, 0);

        // A name that does not resolve (yet) is accepted: nothing is sent at registration.
        let (status, created) = create("https://hooks.example.com/").await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let endpoint = id_of(&created);
        // Nor can a change point it at a private address.
        let (status, body) = app
            .call(
                reqwest::Method::PATCH,
                &format!("/api/v1/webhooks/{endpoint}"),
                Some(&owner),
                Some(json!({"url": "https://127.0.0.1/x"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(field_error(&body), ("url".to_owned(), "forbidden_address".to_owned()));

        // At delivery, the name still does not resolve: the attempt fails and is retried.
        create_key(&app, &owner, "unresolved").await;
        assert_eq!(deliver(&app).await, pass(0, 1, 0));
        let pending = deliveries(&app, &owner, &endpoint, "?status=pending").await;
        assert_eq!(pending.len(), 1);
        assert!(pending[0]["response_status"].is_null(), "{}", pending[0]);
        assert!(pending[0]["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", pending[0]);

        // Changed behind the API's back to a private literal, the address is refused before
        // any connection is opened.
        app.exec("UPDATE webhook_endpoints SET url = 'https://127.0.0.1:1/x'").await;
        app.clock.advance(chrono::TimeDelta::seconds(5));
        assert_eq!(deliver(&app).await, pass(0, 1, 0));
        let pending = deliveries(&app, &owner, &endpoint, "?status=pending").await;
        let error = pending[0]["error"].as_str().unwrap_or_default();
        assert!(error.contains("127.0.0.1") && error.contains("not allowed"), "{error}");

        // And a name that resolves only to loopback is refused when it is resolved.
        app.exec("UPDATE webhook_endpoints SET url = 'https://localhost:1/x'").await;
        app.clock.advance(chrono::TimeDelta::minutes(5));
        assert_eq!(deliver(&app).await, pass(0, 1, 0));
        let pending = deliveries(&app, &owner, &endpoint, "?status=pending").await;
        let error = pending[0]["error"].as_str().unwrap_or_default();
        assert!(error.contains("resolves only to private addresses"), "{error}");
        assert_eq!(pending[0]["attempts"], 3);
        assert!(deliveries(&app, &owner, &endpoint, "?status=delivered").await.is_empty());
    }
}

webhook_test! {
    async fn endpoint_requests_are_checked_and_only_owners_and_admins_manage_them(app) {
        let (owner, _) = app.signup_business("rules@example.com").await;
        let url = |n: usize| format!("http://127.0.0.1:9/hook{n}");

        let refused = [
            (json!({"url": url(0), "events": ["nothing.happened"]}), "events", "unknown_event_type"),
            (json!({"url": url(0), "events": ["api_key.created", "webhook.test"]}), "events", "unknown_event_type"),
            (json!({"url": url(0), "events": []}), "events", "invalid_events"),
            (json!({"events": ["api_key.created"]}), "url", "required"),
            (json!({"url": url(0)}), "events", "required"),
            (json!({"url": "not a url", "events": ["api_key.created"]}), "url", "invalid_url"),
            (json!({"url": "ftp://example.com/", "events": ["api_key.created"]}), "url", "https_required"),
            (json!({"url": url(0), "events": ["api_key.created"], "description": "x".repeat(501)}), "description", "invalid_description"),
        ];
        for (body, field, code) in refused {
            let (status, answer) = post_webhook(&app, &owner, body.clone()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
            assert_eq!(answer["code"], "validation_failed", "{answer}");
            assert_eq!(field_error(&answer), (field.to_owned(), code.to_owned()), "{body}: {answer}");
        }
        assert_eq!(app.count("webhook_endpoints").await, 0);

        // Owners and admins manage endpoints; members may read the catalogue only.
        let (admin, _) = app.join(&owner, "admin@example.com", "admin").await;
        let (member, _) = app.join(&owner, "member@example.com", "member").await;
        let (status, by_admin) = post_webhook(&app, &admin, json!({"url": url(0), "events": ["api_key.created"], "description": "CI"})).await;
        assert_eq!(status, StatusCode::CREATED, "{by_admin}");
        let (status, body) = post_webhook(&app, &member, json!({"url": url(1), "events": ["api_key.created"], "description": "CI"})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "forbidden_role");
        let (status, body) = app.get("/api/v1/webhooks", Some(&member)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "forbidden_role");
        let (status, catalogue) = app.get("/api/v1/webhooks/event-types", Some(&member)).await;
        assert_eq!(status, StatusCode::OK, "{catalogue}");

        // Twenty endpoints at most.
        for n in 1..20 {
            let (status, body) = post_webhook(&app, &owner, json!({"url": url(n), "events": ["api_key.created"], "description": "CI"})).await;
            assert_eq!(status, StatusCode::CREATED, "{n}: {body}");
        }
        let (status, body) = post_webhook(&app, &owner, json!({"url": url(20), "events": ["api_key.created"], "description": "CI"})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "too_many_endpoints");
        let (_, list) = app.get("/api/v1/webhooks", Some(&admin)).await;
        assert_eq!(list["data"].as_array().map(Vec::len), Some(20));
        assert!(!list.to_string().contains("whsec_"), "secrets are never listed");
        let first = id_of(&by_admin);
        let (status, _) = app
            .call(reqwest::Method::DELETE, &format!("/api/v1/webhooks/{first}"), Some(&owner), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = post_webhook(&app, &owner, json!({"url": url(20), "events": ["api_key.created"], "description": "CI"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let mine = id_of(&body);

        // Another business sees none of them.
        let other = app.signup_token("other@example.com").await;
        let (_, theirs) = app.get("/api/v1/webhooks", Some(&other)).await;
        assert_eq!(theirs["data"], json!([]));
        let delivery = uuid::Uuid::now_v7();
        let attempts = [
            (reqwest::Method::GET, format!("/api/v1/webhooks/{mine}"), None),
            (reqwest::Method::PATCH, format!("/api/v1/webhooks/{mine}"), Some(json!({"enabled": false}))),
            (reqwest::Method::POST, format!("/api/v1/webhooks/{mine}/rotate-secret"), None),
            (reqwest::Method::POST, format!("/api/v1/webhooks/{mine}/test"), None),
            (reqwest::Method::GET, format!("/api/v1/webhooks/{mine}/deliveries"), None),
            (reqwest::Method::POST, format!("/api/v1/webhooks/{mine}/deliveries/{delivery}/retry"), None),
            (reqwest::Method::DELETE, format!("/api/v1/webhooks/{mine}"), None),
        ];
        for (method, path, body) in attempts {
            let (status, answer) = app.call(method.clone(), &path, Some(&other), body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        }
        let (_, still) = app.get(&format!("/api/v1/webhooks/{mine}"), Some(&owner)).await;
        assert_eq!(still["enabled"], true, "{still}");
        let (status, body) = app
            .get(&format!("/api/v1/webhooks/{mine}/deliveries?status=lost"), Some(&owner))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(field_error(&body), ("status".to_owned(), "invalid_status".to_owned()));

        // The description may be left out (the document must say so: every exchange is checked
        // against it).
        app.call(reqwest::Method::DELETE, &format!("/api/v1/webhooks/{mine}"), Some(&owner), None).await;
        let (status, body) = post_webhook(&app, &owner, json!({"url": url(21), "events": ["api_key.created"]})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["description"], "");
        app.assert_conformant();
    }
}

/// Creates `code`: `price` every 30 days, renewing, no fallback.
async fn paid_plan(app: &TestApp, code: &str, price: i64) {
    saaskit::billing::admin::create_plan(
        &app.app,
        saaskit::billing::admin::NewPlan {
            code: code.into(),
            name: code.to_uppercase(),
            description: String::new(),
            price_minor: price,
            currency: "usd".into(),
            cycle_days: 30,
            renews: true,
            fallback_code: None,
            limits: std::collections::BTreeMap::new(),
            is_public: true,
        },
        saaskit::billing::events::Actor::Admin(None),
    )
    .await
    .expect("create a plan");
}

async fn grant(app: &TestApp, business: uuid::Uuid, amount: i64) {
    saaskit::billing::admin::grant_credits(
        &app.app,
        business,
        amount,
        None,
        saaskit::billing::events::Actor::Admin(None),
    )
    .await
    .expect("grant credits");
}

/// `POST /api/v1/subscription/{action}` (`cancel`, `resume`), which must succeed.
async fn subscription_action(app: &TestApp, token: &str, action: &str) {
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/subscription/{action}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{action}: {body}");
}

/// What `name` received last.
async fn last_received(receiver: &Receiver, name: &str) -> Value {
    receiver
        .received(name)
        .await
        .pop()
        .unwrap_or_else(|| panic!("{name} received nothing"))
}

const SUBSCRIPTION_EVENTS: &[&str] = &[
    "subscription.changed",
    "subscription.renewed",
    "subscription.past_due",
    "subscription.expired",
    "subscription.canceled",
];

webhook_test! {
    async fn each_subscription_change_sends_its_event_once_and_a_refused_change_none(app) {
        let Some(receiver) = receiver().await else { return };
        paid_plan(&app, "basic", 300).await;
        paid_plan(&app, "pro", 1000).await;
        let (owner, business) = app.signup_business("billing@example.com").await;
        register(&app, &owner, &receiver, "billing", SUBSCRIPTION_EVENTS).await;

        // Refused for want of credits: nothing is sent.
        let (status, body) = app.post("/api/v1/subscription/change", Some(&owner), json!({"plan": "basic"})).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
        assert_eq!(deliver(&app).await, pass(0, 0, 0));

        // A plan change.
        grant(&app, business, 5000).await;
        let (status, body) = app.post("/api/v1/subscription/change", Some(&owner), json!({"plan": "basic"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app.post("/api/v1/subscription/change", Some(&owner), json!({"plan": "basic"})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let received = receiver.wait_for("billing", 1, Duration::from_secs(10)).await;
        assert_eq!(types(&received), ["subscription.changed"]);
        let data = &received[0]["data"];
        assert_eq!(data["business_id"], business.to_string().as_str());
        assert_eq!(data["subscription"]["plan"], "basic");
        assert_eq!(data["subscription"]["status"], "active");
        assert_eq!(data["previous"]["plan"], "free-trial");

        // A renewal.
        app.clock.advance(chrono::TimeDelta::days(30));
        assert_eq!(app.sweep().await.renewals, 1);
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let received = receiver.wait_for("billing", 2, Duration::from_secs(10)).await;
        assert_eq!(types(&received[1..]), ["subscription.renewed"]);
        assert_eq!(received[1]["data"]["subscription"]["current_period_start"], at(chrono::TimeDelta::days(30)));
        assert_eq!(received[1]["data"]["previous"]["current_period_start"], at(chrono::TimeDelta::zero()));
        assert_eq!(app.sweep().await.renewals, 0);
        assert_eq!(deliver(&app).await, pass(0, 0, 0), "a sweep with nothing to do sends nothing");

        // A cancellation at the period's end, withdrawn, made again, and the end itself. A
        // request that changes nothing (resuming with nothing to undo, canceling twice)
        // reports nothing.
        let owner = app.login_token("billing@example.com").await;
        let mut no_ops = Vec::new();
        subscription_action(&app, &owner, "resume").await;
        no_ops.push(("resume with nothing to undo", deliver(&app).await.delivered));
        subscription_action(&app, &owner, "cancel").await;
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let canceled = last_received(&receiver, "billing").await;
        assert_eq!(canceled["type"], "subscription.canceled");
        assert_eq!(canceled["data"]["subscription"]["cancel_at_period_end"], true);
        assert_eq!(canceled["data"]["previous"]["cancel_at_period_end"], false);
        subscription_action(&app, &owner, "cancel").await;
        no_ops.push(("a second cancel", deliver(&app).await.delivered));
        subscription_action(&app, &owner, "resume").await;
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let resumed = last_received(&receiver, "billing").await;
        assert_eq!(resumed["type"], "subscription.changed");
        assert_eq!(resumed["data"]["subscription"]["cancel_at_period_end"], false);
        assert_eq!(resumed["data"]["previous"]["cancel_at_period_end"], true);
        subscription_action(&app, &owner, "cancel").await;
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        app.clock.advance(chrono::TimeDelta::days(30));
        assert_eq!(app.sweep().await.stopped, 1);
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let ended = last_received(&receiver, "billing").await;
        assert_eq!(ended["type"], "subscription.canceled");
        assert_eq!(ended["data"]["subscription"]["status"], "canceled");
        assert_eq!(ended["data"]["previous"]["status"], "active");

        assert_eq!(
            no_ops,
            [("resume with nothing to undo", 0), ("a second cancel", 0)],
            "a request that changes nothing sends no event"
        );
        let received = receiver.received("billing").await;
        assert_eq!(
            types(&received),
            [
                "subscription.changed",
                "subscription.renewed",
                "subscription.canceled",
                "subscription.changed",
                "subscription.canceled",
                "subscription.canceled",
            ]
        );
        assert!(receiver.rejected("billing").await.is_empty());
    }
}

webhook_test! {
    async fn an_unpaid_renewal_sends_past_due_then_expired_after_the_grace_period(app) {
        let Some(receiver) = receiver().await else { return };
        paid_plan(&app, "pro", 1000).await;
        let (owner, business) = app.signup_business("unpaid@example.com").await;
        register(&app, &owner, &receiver, "unpaid", SUBSCRIPTION_EVENTS).await;
        saaskit::billing::admin::set_plan(&app.app, business, "pro", saaskit::billing::events::Actor::Admin(None))
            .await
            .expect("set plan");
        assert_eq!(deliver(&app).await, pass(1, 0, 0));

        app.clock.advance(chrono::TimeDelta::days(30));
        assert_eq!(app.sweep().await.past_due, 1);
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        // Still in the grace period (3 days): nothing new.
        app.clock.advance(chrono::TimeDelta::days(3) - chrono::TimeDelta::seconds(1));
        app.sweep().await;
        assert_eq!(deliver(&app).await, pass(0, 0, 0));
        app.clock.advance(chrono::TimeDelta::seconds(1));
        app.sweep().await;
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        app.sweep().await;
        assert_eq!(deliver(&app).await, pass(0, 0, 0));

        let received = receiver.wait_for("unpaid", 3, Duration::from_secs(10)).await;
        assert_eq!(
            types(&received),
            ["subscription.changed", "subscription.past_due", "subscription.expired"]
        );
        assert_eq!(received[1]["data"]["subscription"]["status"], "past_due");
        assert_eq!(received[1]["data"]["previous"]["status"], "active");
        assert_eq!(received[2]["data"]["subscription"]["status"], "expired");
        assert_eq!(received[2]["data"]["previous"]["status"], "past_due");
        assert_eq!(received[2]["data"]["subscription"]["plan"], "pro");
    }
}

/// The `quota.threshold_reached` events received so far: `(meter, threshold, used, limit)`.
fn thresholds(received: &[Value]) -> Vec<(String, i64, i64, i64)> {
    received
        .iter()
        .map(|r| {
            let d = &r["data"];
            (
                d["meter"].as_str().unwrap_or_default().to_owned(),
                d["threshold"].as_i64().unwrap_or_default(),
                d["used"].as_i64().unwrap_or_default(),
                d["limit"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

webhook_test! {
    async fn the_applications_gauge_reports_80_and_100_percent_once_a_cycle(app) {
        let Some(receiver) = receiver().await else { return };
        let (owner, business) = app.signup_business("gauge@example.com").await;
        register(&app, &owner, &receiver, "quota", &["quota.threshold_reached"]).await;
        app.put_on_plan(business, "five", &[("applications", 5)]).await;

        let mut ids = Vec::new();
        for n in 1..=3 {
            ids.push(create_application(&app, &owner, &format!("app {n}")).await);
        }
        assert_eq!(deliver(&app).await, pass(0, 0, 0), "3 of 5 is under 80 %");
        ids.push(create_application(&app, &owner, "app 4").await);
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        ids.push(create_application(&app, &owner, "app 5").await);
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let received = receiver.wait_for("quota", 2, Duration::from_secs(10)).await;
        assert_eq!(
            thresholds(&received),
            [("applications".to_owned(), 80, 4, 5), ("applications".to_owned(), 100, 5, 5)]
        );
        assert_eq!(received[0]["data"]["business_id"], business.to_string().as_str());
        assert_eq!(received[0]["data"]["period_start"], at(chrono::TimeDelta::zero()));

        // A sixth is refused, and going down and up again this cycle reports nothing more.
        let (status, body) = app.post("/api/v1/applications", Some(&owner), json!({"name": "app 6"})).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
        for id in &ids[..2] {
            let (status, _) = app
                .call(reqwest::Method::DELETE, &format!("/api/v1/applications/{id}"), Some(&owner), None)
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
        }
        create_application(&app, &owner, "again 1").await;
        create_application(&app, &owner, "again 2").await;
        assert_eq!(deliver(&app).await, pass(0, 0, 0));
        assert_eq!(receiver.received("quota").await.len(), 2);
    }
}

webhook_test! {
    async fn the_recordings_meter_reports_80_and_100_percent_once_each_cycle(app) {
        let Some(receiver) = receiver().await else { return };
        let (owner, business) = app.signup_business("meter@example.com").await;
        register(&app, &owner, &receiver, "quota", &["quota.threshold_reached"]).await;
        app.put_on_plan(business, "ten", &[("recordings", 10)]).await;
        let sdk = app.api_key(&owner).await;
        let (status, application) = app.post("/api/v1/applications", Some(&owner), json!({"name": "web"})).await;
        assert_eq!(status, StatusCode::CREATED, "{application}");
        let body = json!({"application_id": id_of(&application), "duration_ms": 1200});
        let record = || app.post("/api/v1/recordings", Some(&sdk), body.clone());

        let mut sent = Vec::new();
        for n in 1..=11 {
            let (status, _) = record().await;
            let expected = if n <= 10 { StatusCode::CREATED } else { StatusCode::PAYMENT_REQUIRED };
            assert_eq!(status, expected, "write {n}");
            sent.push(deliver(&app).await.delivered);
        }
        assert_eq!(sent, [0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0], "the 8th and the 10th write report");
        let received = receiver.wait_for("quota", 2, Duration::from_secs(10)).await;
        assert_eq!(
            thresholds(&received),
            [("recordings".to_owned(), 80, 8, 10), ("recordings".to_owned(), 100, 10, 10)]
        );
        assert_eq!(received[0]["data"]["period_start"], at(chrono::TimeDelta::zero()));

        // The next cycle counts from zero and reports again.
        app.clock.advance(chrono::TimeDelta::days(30));
        assert_eq!(app.sweep().await.renewals, 1);
        for _ in 0..8 {
            assert_eq!(record().await.0, StatusCode::CREATED);
        }
        assert_eq!(deliver(&app).await, pass(1, 0, 0));
        let received = receiver.wait_for("quota", 3, Duration::from_secs(10)).await;
        assert_eq!(thresholds(&received[2..]), [("recordings".to_owned(), 80, 8, 10)]);
        assert_eq!(received[2]["data"]["period_start"], at(chrono::TimeDelta::days(30)));
    }
}

webhook_test! {
    async fn concurrent_recordings_report_each_threshold_exactly_once(app) {
        let Some(receiver) = receiver().await else { return };
        let (owner, business) = app.signup_business("race@example.com").await;
        register(&app, &owner, &receiver, "quota", &["quota.threshold_reached"]).await;
        app.put_on_plan(business, "ten", &[("recordings", 10)]).await;
        let sdk = app.api_key(&owner).await;
        let (status, application) = app.post("/api/v1/applications", Some(&owner), json!({"name": "web"})).await;
        assert_eq!(status, StatusCode::CREATED, "{application}");
        let body = json!({"application_id": id_of(&application), "duration_ms": 1200});

        let app = std::sync::Arc::new(app);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (app, sdk, body) = (app.clone(), sdk.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                app.post("/api/v1/recordings", Some(&sdk), body).await.0
            }));
        }
        let mut created = 0;
        for task in tasks {
            match task.await.expect("a write") {
                StatusCode::CREATED => created += 1,
                StatusCode::PAYMENT_REQUIRED => {}
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(created, 10);
        assert_eq!(deliver(&app).await, pass(2, 0, 0));
        let received = receiver.wait_for("quota", 2, Duration::from_secs(10)).await;
        let mut got = thresholds(&received);
        got.sort();
        assert_eq!(
            got,
            [("recordings".to_owned(), 80, 8, 10), ("recordings".to_owned(), 100, 10, 10)]
        );
        assert_eq!(deliver(&app).await, pass(0, 0, 0));
    }
}

webhook_test! {
    async fn an_endpoint_failing_for_five_days_is_disabled_its_owners_mailed_and_enabling_it_resumes(app) {
        let Some(receiver) = receiver().await else { return };
        let (owner, _) = app.signup_business("failing@example.com").await;
        let (_admin, _) = app.join(&owner, "helper@example.com", "admin").await;
        let created = register(&app, &owner, &receiver, "failing", &["api_key.created"]).await;
        let endpoint = id_of(&created);
        let secret = created["secret"].as_str().expect("a secret").to_owned();
        receiver.configure("failing", &[&secret], 500).await;

        // A new event every day, every attempt answered 500.
        let mut keys = vec![create_key(&app, &owner, "day 0").await];
        deliver(&app).await;
        for day in 1..=4 {
            app.clock.advance(chrono::TimeDelta::days(1));
            keys.push(create_key(&app, &owner, &format!("day {day}")).await);
            deliver(&app).await;
        }
        app.clock.advance(chrono::TimeDelta::days(1) - chrono::TimeDelta::seconds(1));
        keys.push(create_key(&app, &owner, "a second before day 5").await);
        deliver(&app).await;
        let (_, shown) = app.get(&format!("/api/v1/webhooks/{endpoint}"), Some(&owner)).await;
        assert_eq!(shown["enabled"], true, "not yet five days: {shown}");
        assert_eq!(shown["failing_since"], at(chrono::TimeDelta::zero()), "{shown}");

        app.clock.advance(chrono::TimeDelta::seconds(1));
        keys.push(create_key(&app, &owner, "day 5").await);
        deliver(&app).await;
        let (_, shown) = app.get(&format!("/api/v1/webhooks/{endpoint}"), Some(&owner)).await;
        assert_eq!(shown["enabled"], false, "{shown}");
        assert_eq!(shown["disabled_reason"], "failing", "{shown}");
        assert_eq!(shown["failing_since"], at(chrono::TimeDelta::zero()), "{shown}");

        // The owner is told (not the admin), and the audit log says who did it.
        let subject = "A webhook endpoint was disabled after failing for 5 days";
        assert_eq!(app.mail_to("failing@example.com", subject).await.len(), 1);
        assert!(app.mail_to("helper@example.com", subject).await.is_empty());
        let (status, log) = app.get("/api/v1/audit-log?action=webhook.disabled", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{log}");
        let entries = log["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(entries.len(), 1, "{log}");
        assert_eq!(entries[0]["actor"]["kind"], "system");
        assert_eq!(entries[0]["target"]["kind"], "webhook");
        assert_eq!(entries[0]["target"]["id"], endpoint.as_str());

        // Disabled, nothing is attempted; its pending deliveries wait.
        let waiting = deliveries(&app, &owner, &endpoint, "?status=pending").await;
        assert!(!waiting.is_empty());
        let attempts_before = receiver.attempts("failing").await;
        app.clock.advance(chrono::TimeDelta::hours(1));
        assert_eq!(deliver(&app).await, pass(0, 0, 0));
        assert_eq!(receiver.attempts("failing").await, attempts_before);

        // The receiver fixed, the owner enables the endpoint again and what waited goes out.
        // (Until now it kept every delivery it answered 500 as received.)
        let answered_500 = receiver.received("failing").await.len();
        receiver.configure("failing", &[&secret], 204).await;
        let (status, enabled) = app
            .call(
                reqwest::Method::PATCH,
                &format!("/api/v1/webhooks/{endpoint}"),
                Some(&owner),
                Some(json!({"enabled": true})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{enabled}");
        assert_eq!(enabled["enabled"], true);
        assert!(enabled["disabled_reason"].is_null(), "{enabled}");
        assert!(enabled["failing_since"].is_null(), "{enabled}");
        assert_eq!(deliver(&app).await, pass(waiting.len(), 0, 0));
        let received = receiver.received("failing").await;
        let mut delivered_keys = key_ids(&received[answered_500..]);
        delivered_keys.sort();
        let mut expected: Vec<String> = waiting
            .iter()
            .map(|d| d["payload"]["data"]["api_key"]["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        expected.sort();
        assert_eq!(delivered_keys, expected);
        // Days 0 to 2 had used their four attempts; the later ones had not.
        let mut later = keys[3..].to_vec();
        later.sort();
        assert_eq!(expected, later);
        assert_eq!(deliveries(&app, &owner, &endpoint, "?status=failed").await.len(), 3);
        assert!(deliveries(&app, &owner, &endpoint, "?status=pending").await.is_empty());
        let (_, shown) = app.get(&format!("/api/v1/webhooks/{endpoint}"), Some(&owner)).await;
        assert_eq!(shown["enabled"], true);
        assert!(shown["failing_since"].is_null(), "{shown}");
    }
}

webhook_test! {
    async fn two_replicas_share_the_deliveries_without_sending_one_twice(app) {
        let Some(receiver) = receiver().await else { return };
        let (owner, _) = app.signup_business("replicas@example.com").await;
        let endpoints = [
            id_of(&register(&app, &owner, &receiver, "first", &["api_key.created"]).await),
            id_of(&register(&app, &owner, &receiver, "second", &["api_key.created"]).await),
        ];
        receiver.set_delay("first", Duration::from_millis(10)).await;
        receiver.set_delay("second", Duration::from_millis(10)).await;
        for n in 0..25 {
            create_key(&app, &owner, &format!("key {n}")).await;
        }
        let other = TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), configure).await;

        let (a, b) = tokio::join!(deliver(&app), deliver(&other));
        assert_eq!((a.retrying, a.failed, b.retrying, b.failed), (0, 0, 0, 0), "{a:?} {b:?}");
        assert_eq!(a.delivered + b.delivered, 50, "{a:?} {b:?}");
        for (name, endpoint) in ["first", "second"].iter().zip(&endpoints) {
            let history = receiver.history(name).await;
            let mut ids: Vec<&str> = history.iter().filter_map(|h| h["webhook_id"].as_str()).collect();
            assert_eq!(ids.len(), 25, "{name}: each delivery sent once");
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), 25, "{name}: no delivery sent twice");
            let delivered = deliveries(&app, &owner, endpoint, "?status=delivered&limit=200").await;
            assert_eq!(delivered.len(), 25);
            assert!(delivered.iter().all(|d| d["attempts"] == 1), "{delivered:#?}");
        }
        assert_eq!(deliver(&app).await, pass(0, 0, 0));
    }
}
