//! Webhook delivery across real `saaskit serve` processes sharing one database: a replica killed
//! with SIGKILL in the middle of a send leaves that delivery to another replica, which sends it
//! once the dead one's lease has run out, not before; and two live replicas never send one
//! delivery twice. The receiver checks every signature with the `standardwebhooks` library
//! (tests/api/webhook_receiver.py).
//!
//! The lease is shortened (`SAASKIT_WEBHOOK_LEASE_SECS`) so the scenario takes seconds, not the
//! default two minutes; the behaviour does not depend on its length.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::Server;
use crate::helpers::*;
use crate::receiver::Receiver;

/// Long enough that the killed replica's attempt (which may last half of it, at most 10 s) is
/// still waiting on the receiver when it is killed, even on a slow machine.
const LEASE_SECS: u64 = 20;
const METRICS_TOKEN: &str = "replicas-metrics-token";

/// Replicas of one deployment: the same database, the same secret key file (also used by
/// `replicas.rs`).
pub(crate) struct Deployment {
    pub(crate) test_db: Arc<TestDb>,
    pub(crate) workdir: std::path::PathBuf,
    pub(crate) client: reqwest::Client,
}

impl Deployment {
    pub(crate) async fn new(backend: Backend) -> Deployment {
        let workdir = std::env::temp_dir().join(format!(
            "saaskit_replicas_{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&workdir).expect("workdir");
        Deployment {
            test_db: Arc::new(TestDb::create(backend).await),
            workdir,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    async fn replica(&self) -> Server {
        self.replica_with(&[]).await
    }

    /// A replica with `extra` settings besides (or instead of) the shared ones.
    pub(crate) async fn replica_with(&self, extra: &[(&str, &str)]) -> Server {
        let lease = LEASE_SECS.to_string();
        let key_file = self.test_db.key_file.display().to_string();
        let mail_dir = self.workdir.join("mail").display().to_string();
        Server::start_with(
            &self.test_db.url,
            &self.workdir,
            None,
            &[
                ("SAASKIT_WEBHOOK_ALLOW_PRIVATE", "true"),
                ("SAASKIT_WEBHOOK_LEASE_SECS", &lease),
                ("SAASKIT_WEBHOOK_RETRY_SCHEDULE", "1s,1s,1s,1s,1s"),
                ("SAASKIT_SECRET_KEY_FILE", &key_file),
                ("SAASKIT_MAIL_DIR", &mail_dir),
                ("SAASKIT_RATE_LIMIT", "off"),
                ("SAASKIT_METRICS_TOKEN", METRICS_TOKEN),
            ]
            .into_iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        )
        .await
    }

    pub(crate) async fn post(
        &self,
        server: &Server,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Value {
        let mut request = self
            .client
            .post(format!("{}{path}", server.base))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("a request to saaskit");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON answer");
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    pub(crate) async fn get(&self, server: &Server, path: &str, token: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", server.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("a request to saaskit");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("a JSON answer")
    }

    /// Signs up an owner through `server`: their session token.
    pub(crate) async fn owner(&self, server: &Server, email: &str) -> String {
        let signup = self
            .post(
                server,
                "/api/v1/signup",
                None,
                json!({"email": email, "password": PASSWORD, "first_name": "Ada",
                       "last_name": "Lovelace", "business": {"name": "Replicas"}}),
            )
            .await;
        signup["token"].as_str().expect("a token").to_owned()
    }

    /// Registers an endpoint for `api_key.created` at the receiver's `name`: its id.
    async fn endpoint(
        &self,
        server: &Server,
        token: &str,
        receiver: &Receiver,
        name: &str,
    ) -> String {
        let created = self
            .post(
                server,
                "/api/v1/webhooks",
                Some(token),
                json!({"url": receiver.url(name), "events": ["api_key.created"]}),
            )
            .await;
        receiver
            .configure(name, &[created["secret"].as_str().expect("a secret")], 204)
            .await;
        created["id"].as_str().expect("an id").to_owned()
    }

    /// Creates an API key through `server` (an `api_key.created` event): its id.
    pub(crate) async fn key(&self, server: &Server, token: &str, name: &str) -> String {
        let key = self
            .post(
                server,
                "/api/v1/api-keys",
                Some(token),
                json!({"name": name}),
            )
            .await;
        key["id"].as_str().expect("an id").to_owned()
    }

    /// The endpoint's deliveries as `server` lists them, by `webhook-id`.
    async fn deliveries(
        &self,
        server: &Server,
        token: &str,
        endpoint: &str,
    ) -> BTreeMap<String, Value> {
        let page = self
            .get(
                server,
                &format!("/api/v1/webhooks/{endpoint}/deliveries?limit=100"),
                token,
            )
            .await;
        page["data"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| {
                (
                    d["webhook_id"].as_str().expect("an id").to_owned(),
                    d.clone(),
                )
            })
            .collect()
    }

    /// What `server`'s process counts as delivered (`saaskit_webhooks_delivered_total`).
    async fn delivered_by(&self, server: &Server) -> u64 {
        self.metric(server, "saaskit_webhooks_delivered_total")
            .await
    }

    /// The value of the counter `name` in `server`'s `/metrics`.
    pub(crate) async fn metric(&self, server: &Server, name: &str) -> u64 {
        let text = self
            .client
            .get(format!("{}/metrics", server.base))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// Every request the receiver's endpoint `name` saw, as `(webhook-id, received at)`.
async fn seen(receiver: &Receiver, name: &str) -> Vec<(String, DateTime<Utc>)> {
    receiver
        .history(name)
        .await
        .iter()
        .map(|h| {
            let at = h["received_at"].as_str().expect("received_at");
            (
                h["webhook_id"].as_str().expect("a webhook-id").to_owned(),
                DateTime::parse_from_rfc3339(at)
                    .expect("an RFC 3339 time")
                    .with_timezone(&Utc),
            )
        })
        .collect()
}

/// Waits until `name` has seen `n` requests (whatever their outcome).
async fn wait_for_requests(receiver: &Receiver, name: &str, n: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while receiver.attempts(name).await < n {
        assert!(
            Instant::now() < deadline,
            "{name} saw {} of {n} requests within {timeout:?}: {:#?}",
            receiver.attempts(name).await,
            receiver.history(name).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replica A claims a delivery and hangs in its send (the receiver holds the request); B,
/// started meanwhile, sends its own events at once but leaves A's leased delivery alone. A is
/// killed with SIGKILL mid-send. B sends A's delivery once A's lease has run out, not before:
/// every event arrives, the one A was sending twice (same `webhook-id`, so a receiver that
/// deduplicates sees each event exactly once), and nothing is lost.
async fn a_killed_replicas_delivery_is_sent_by_another_after_its_lease(backend: Backend) {
    let Some(receiver) = Receiver::start().await else {
        eprintln!("skipped: no Python with standardwebhooks (run .ci/webhook-tools)");
        return;
    };
    let deployment = Deployment::new(backend).await;
    let a = deployment.replica().await;
    let owner = deployment.owner(&a, "killed@example.com").await;
    let endpoint = deployment.endpoint(&a, &owner, &receiver, "hooks").await;

    // A's attempt hangs: the receiver keeps it (and counts it) but answers only after a minute.
    receiver.set_delay("hooks", Duration::from_secs(60)).await;
    let held_key = deployment.key(&a, &owner, "held").await;
    wait_for_requests(&receiver, "hooks", 1, Duration::from_secs(10)).await;
    let held_since = Instant::now();
    let (held_id, held_at) = seen(&receiver, "hooks").await.remove(0);
    receiver.set_delay("hooks", Duration::ZERO).await;

    // B runs beside A: its own events go out at once; A's delivery stays A's while A lives.
    let b = deployment.replica().await;
    let mut keys = vec![held_key];
    for n in 0..3 {
        keys.push(deployment.key(&b, &owner, &format!("live {n}")).await);
    }
    wait_for_requests(&receiver, "hooks", 4, Duration::from_secs(10)).await;
    let before_kill = seen(&receiver, "hooks").await;
    assert_eq!(
        before_kill.iter().filter(|(id, _)| *id == held_id).count(),
        1,
        "nobody sent A's delivery again while A held it: {before_kill:#?}"
    );
    // A's attempt may last half the lease (10 s at most): it must still be hanging now, or
    // this would test a retry, not a crash.
    assert!(
        held_since.elapsed() < Duration::from_secs(LEASE_SECS / 2),
        "the machine was too slow for the scenario: {:?} before the kill",
        held_since.elapsed()
    );

    a.kill();

    wait_for_requests(&receiver, "hooks", 5, Duration::from_secs(LEASE_SECS + 15)).await;
    let history = seen(&receiver, "hooks").await;
    let (resent_id, resent_at) = history.last().cloned().expect("a fifth request");
    assert_eq!(
        resent_id, held_id,
        "the fifth request is A's delivery, sent by B"
    );
    // A claimed it (just before the receiver saw it) with a lease of LEASE_SECS; B waited the
    // lease out. (Half a second of slack for the two clocks' reading of "just before".)
    let waited = resent_at - held_at;
    assert!(
        waited >= chrono::Duration::milliseconds(LEASE_SECS as i64 * 1000 - 500),
        "B sent A's delivery {waited} after A did, before A's lease of {LEASE_SECS} s ended"
    );

    // Nothing more comes: every event arrived, and once deduplicated, exactly once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = receiver.received("hooks").await;
    assert_eq!(received.len(), 5, "{received:#?}");
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for r in &received {
        *per_id
            .entry(r["webhook_id"].as_str().expect("an id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), 4, "four events: {per_id:?}");
    assert_eq!(per_id[&held_id], 2, "A's delivery: once by A, once by B");
    let mut key_ids: Vec<String> = received
        .iter()
        .map(|r| {
            r["data"]["api_key"]["id"]
                .as_str()
                .expect("a key id")
                .to_owned()
        })
        .collect();
    key_ids.sort();
    key_ids.dedup();
    keys.sort();
    assert_eq!(key_ids, keys, "each key's event, none lost, none invented");

    // B's view: all four delivered; A's took two attempts (A's, lost with A, and B's).
    let deliveries = deployment.deliveries(&b, &owner, &endpoint).await;
    assert_eq!(deliveries.len(), 4, "{deliveries:#?}");
    for (id, d) in &deliveries {
        assert_eq!(d["status"], "delivered", "{d:#}");
        let attempts = if *id == held_id { 2 } else { 1 };
        assert_eq!(d["attempts"], attempts, "{d:#}");
    }
    assert_eq!(deployment.delivered_by(&b).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_delivery_is_sent_by_another_after_its_lease_sqlite() {
    a_killed_replicas_delivery_is_sent_by_another_after_its_lease(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn a_killed_replicas_delivery_is_sent_by_another_after_its_lease_postgres() {
    a_killed_replicas_delivery_is_sent_by_another_after_its_lease(Backend::Postgres).await;
}

/// Two live replicas, events emitted through both (each replica's worker wakes on its own
/// events and polls for the other's), a receiver slow enough that their passes overlap: every
/// delivery is sent exactly once (no failures are configured, so nothing is retried), and what
/// the two processes count as delivered adds up to the number of events.
async fn two_live_replicas_never_send_one_delivery_twice(backend: Backend) {
    let Some(receiver) = Receiver::start().await else {
        eprintln!("skipped: no Python with standardwebhooks (run .ci/webhook-tools)");
        return;
    };
    let deployment = Deployment::new(backend).await;
    let a = deployment.replica().await;
    let b = deployment.replica().await;
    let owner = deployment.owner(&a, "live@example.com").await;
    let endpoints = [
        deployment.endpoint(&a, &owner, &receiver, "first").await,
        deployment.endpoint(&b, &owner, &receiver, "second").await,
    ];
    for name in ["first", "second"] {
        receiver.set_delay(name, Duration::from_millis(20)).await;
    }

    const KEYS: usize = 30;
    async fn keys_through(
        deployment: &Deployment,
        replica: &Server,
        owner: &str,
        names: impl Iterator<Item = String>,
    ) {
        for name in names {
            deployment.key(replica, owner, &name).await;
        }
    }
    tokio::join!(
        keys_through(
            &deployment,
            &a,
            &owner,
            (0..KEYS / 2).map(|n| format!("a {n}"))
        ),
        keys_through(
            &deployment,
            &b,
            &owner,
            (KEYS / 2..KEYS).map(|n| format!("b {n}"))
        ),
    );
    for name in ["first", "second"] {
        receiver.wait_for(name, KEYS, Duration::from_secs(60)).await;
    }
    // Two polls more, for a duplicate that would come late.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    for (name, endpoint) in ["first", "second"].iter().zip(&endpoints) {
        let history = seen(&receiver, name).await;
        let mut ids: Vec<&str> = history.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids.len(),
            KEYS,
            "{name}: one request per event: {history:#?}"
        );
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), KEYS, "{name}: no delivery sent twice");
        let deliveries = deployment.deliveries(&a, &owner, endpoint).await;
        assert_eq!(
            deliveries.keys().map(String::as_str).collect::<Vec<_>>(),
            ids,
            "{name}: the requests are the endpoint's deliveries"
        );
        for d in deliveries.values() {
            assert_eq!(
                (&d["status"], &d["attempts"]),
                (&json!("delivered"), &json!(1)),
                "{d:#}"
            );
        }
    }
    let (by_a, by_b) = (
        deployment.delivered_by(&a).await,
        deployment.delivered_by(&b).await,
    );
    // Which replica sends what is up to timing (each claims whatever is due when it looks);
    // that no attempt was made twice is not.
    eprintln!("delivered by A: {by_a}, by B: {by_b}");
    assert_eq!(by_a + by_b, 2 * KEYS as u64, "A {by_a} + B {by_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_replicas_never_send_one_delivery_twice_sqlite() {
    two_live_replicas_never_send_one_delivery_twice(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn two_live_replicas_never_send_one_delivery_twice_postgres() {
    two_live_replicas_never_send_one_delivery_twice(Backend::Postgres).await;
}
