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
