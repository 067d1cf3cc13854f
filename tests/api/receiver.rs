//! The webhook receiver of the tests: `webhook_receiver.py` in a child process, which checks every
//! signature with the Standard Webhooks reference library for Python (`standardwebhooks`,
//! installed by `.ci/webhook-tools`), an implementation that is not ours, and keeps what it
//! accepted and what it refused for the scenarios to read back.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/webhook_receiver.py");

/// A Python with `standardwebhooks`: `SAASKIT_WEBHOOK_PYTHON`, or where `.ci/webhook-tools`
/// installs it. `None` (webhook scenarios are skipped) when there is none, unless
/// `SAASKIT_WEBHOOK_TESTS=required`.
pub fn python() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            crate::tools::installed_tool(
                "SAASKIT_WEBHOOK_PYTHON",
                "saaskit-webhooks/venv/bin/python",
                has_the_library,
                "SAASKIT_WEBHOOK_TESTS",
                "no Python with standardwebhooks: run .ci/webhook-tools (or set SAASKIT_WEBHOOK_PYTHON)",
            )
        })
        .clone()
}

fn has_the_library(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import standardwebhooks"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running receiver. Each endpoint is a name (`url(name)`) configured with the secrets it
/// accepts; a delivery is accepted when one of them verifies it.
pub struct Receiver {
    /// `None` between `stop` and `restart`.
    child: Option<Child>,
    port: u16,
    client: reqwest::Client,
    python: PathBuf,
    /// The receiver keeps its state in this file, so that what it received before a restart is
    /// still there after it.
    state: PathBuf,
    /// What the endpoints were told, told again after a restart.
    endpoints: Mutex<BTreeMap<String, Value>>,
    verify_at: Mutex<Option<i64>>,
}

impl Receiver {
    /// `None` when there is no Python with the library (see [`python`]): the scenario then
    /// returns early, saying so.
    pub async fn start() -> Option<Receiver> {
        let python = python()?;
        let state =
            std::env::temp_dir().join(format!("saaskit-webhooks-{}.json", uuid::Uuid::now_v7()));
        let (child, port) = spawn(&python, 0, &state)
            .await
            .unwrap_or_else(|e| panic!("start the webhook receiver: {e}"));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        Some(Receiver {
            child: Some(child),
            port,
            client,
            python,
            state,
            endpoints: Mutex::new(BTreeMap::new()),
            verify_at: Mutex::new(None),
        })
    }

    /// Where the endpoint `name` receives deliveries.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hooks/{name}", self.port)
    }

    /// Creates the endpoint `name`, or changes its secrets and status: it accepts what any of
    /// `secrets` (`whsec_…`) verifies, answering `status`, and refuses the rest with 400.
    pub async fn configure(&self, name: &str, secrets: &[&str], status: u16) {
        self.set(name, json!({ "secrets": secrets, "status": status }))
            .await;
    }

    /// Makes the endpoint `name` wait this long before it answers.
    pub async fn set_delay(&self, name: &str, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).expect("a delay in milliseconds");
        self.set(name, json!({ "delay_ms": ms })).await;
    }

    /// The next `n` deliveries to `name` that verify are answered 500 and not kept as received
    /// (they count in `attempts`).
    pub async fn fail_next(&self, name: &str, n: u32) {
        self.set(name, json!({ "fail_next": n })).await;
    }

    /// The time the library verifies the timestamps at (it accepts five minutes either side):
    /// the tests' clock, when saaskit signs with it. `None`: the wall clock.
    pub async fn verify_at(&self, at: Option<DateTime<Utc>>) {
        let now = at.map(|t| t.timestamp());
        self.control(
            reqwest::Method::PUT,
            "/_control/clock",
            Some(json!({ "now": now })),
        )
        .await;
        *self.verify_at.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// The deliveries to `name` that verified, oldest first: `{name, webhook_id,
    /// webhook_timestamp, type, timestamp, data, signatures, verified_by, received_at,
    /// headers, body}` (`verified_by`: the index of the secret that verified it).
    pub async fn received(&self, name: &str) -> Vec<Value> {
        list(self.records(name).await, "received")
    }

    /// The deliveries to `name` that were refused, with the library's `error`.
    pub async fn rejected(&self, name: &str) -> Vec<Value> {
        list(self.records(name).await, "rejected")
    }

    /// Every request made to `name`, whatever the answer.
    pub async fn attempts(&self, name: &str) -> u64 {
        self.records(name).await["attempts"]
            .as_u64()
            .expect("a count")
    }

    /// Every request made to `name` in order, with its `outcome` (`received`, `failed`,
    /// `rejected`) and the `status` it was answered.
    pub async fn history(&self, name: &str) -> Vec<Value> {
        list(self.records(name).await, "history")
    }

    /// Waits until `name` has received at least `n` deliveries, and returns them; fails with
    /// everything the endpoint saw if it has not within `timeout`.
    pub async fn wait_for(&self, name: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let records = self.records(name).await;
            let received = records["received"].as_array().map_or(0, Vec::len);
            if received >= n {
                return list(records, "received");
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "the endpoint {name} received {received} of {n} deliveries within \
                     {timeout:?}; it saw: {records:#}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes the receiver down: connections to its port are refused until `restart`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Brings the receiver back on the same port, with what it had received and the endpoints
    /// as they were configured.
    pub async fn restart(&mut self) {
        self.stop();
        // The port was free a moment ago; another process could take it meanwhile, rarely.
        let mut tries = 0;
        let child = loop {
            match spawn(&self.python, self.port, &self.state).await {
                Ok((child, _)) => break child,
                Err(e) if tries >= 50 => panic!("restart the webhook receiver: {e}"),
                Err(_) => tries += 1,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.child = Some(child);
        let endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (name, settings) in endpoints {
            self.control(
                reqwest::Method::PUT,
                &format!("/_control/endpoints/{name}"),
                Some(settings),
            )
            .await;
        }
        let now = *self.verify_at.lock().unwrap_or_else(|e| e.into_inner());
        self.control(
            reqwest::Method::PUT,
            "/_control/clock",
            Some(json!({ "now": now })),
        )
        .await;
    }

    async fn set(&self, name: &str, changes: Value) {
        let mut settings = self
            .control(
                reqwest::Method::PUT,
                &format!("/_control/endpoints/{name}"),
                Some(changes),
            )
            .await;
        // A failure to come is not part of the configuration a restart tells again.
        settings
            .as_object_mut()
            .expect("the endpoint's settings")
            .remove("fail_next");
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), settings);
    }

    async fn records(&self, name: &str) -> Value {
        let url = format!("http://127.0.0.1:{}/_control/received", self.port);
        let response = self
            .client
            .get(url)
            .query(&[("name", name)])
            .send()
            .await
            .expect("ask the webhook receiver what it received");
        read_control(response).await
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("reach the webhook receiver ({path}): {e}"));
        read_control(response).await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.state);
        let _ = std::fs::remove_file(self.state.with_extension("json.tmp"));
    }
}

async fn read_control(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("the receiver's answer");
    assert!(
        status.is_success(),
        "the webhook receiver answered {status}: {text}"
    );
    serde_json::from_str(&text).expect("JSON from the webhook receiver")
}

fn list(mut records: Value, key: &str) -> Vec<Value> {
    match records[key].take() {
        Value::Array(items) => items,
        other => panic!("{key}: a list, not {other}"),
    }
}

/// Starts the receiver on `port` (0: any) and waits for it to say where it listens. Its stdin
/// stays open as long as the child is ours: should the tests die without dropping it, the
/// receiver sees stdin close and exits rather than linger.
async fn spawn(python: &Path, port: u16, state: &Path) -> Result<(Child, u16), String> {
    let mut child = Command::new(python)
        .arg(SCRIPT)
        .args(["--port", &port.to_string(), "--exit-with-stdin", "--state"])
        .arg(state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("run {}: {e}", python.display()))?;
    let stdout = child.stdout.take().expect("the receiver's stdout");
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    });
    let listening = match tokio::time::timeout(Duration::from_secs(10), first_line).await {
        Ok(Ok(Ok(line))) => line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("it said {line:?}, not `listening <port>`")),
        Ok(Ok(Err(e))) => Err(format!("read what it said: {e}")),
        Ok(Err(e)) => Err(format!("read what it said: {e}")),
        Err(_) => Err("it did not say `listening <port>` within 10 s".to_owned()),
    };
    match listening {
        Ok(port) => Ok((child, port)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// A signature made by hand as the specification describes it: `v1,` and the base64 of
/// HMAC-SHA256, keyed with the secret's bytes, over `<id>.<timestamp>.<body>`.
fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;

    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn the_receiver_accepts_what_the_library_signs_and_refuses_the_rest() {
    use base64::Engine as _;

    let Some(mut receiver) = Receiver::start().await else {
        eprintln!("skipped: no Python with standardwebhooks (run .ci/webhook-tools)");
        return;
    };
    let (old_key, new_key) = (
        b"the key before the rotation",
        b"the key after the rotation!",
    );
    let secret = |key: &[u8]| {
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    };
    // Two secrets, as while a secret is rotated: the old one still verifies.
    receiver
        .configure("orders", &[&secret(old_key), &secret(new_key)], 204)
        .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let (orders, nobody) = (receiver.url("orders"), receiver.url("nobody"));
    let post = |url: &str, id: &str, timestamp: i64, signatures: String, body: &str| {
        client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures)
            .body(body.to_owned())
            .send()
    };
    let body =
        r#"{"type":"invoice.paid","timestamp":"2026-03-01T12:00:00Z","data":{"id":"inv_1"}}"#;
    let now = Utc::now().timestamp();

    let signed = sign(new_key, "msg_1", now, body);
    let answer = post(&orders, "msg_1", now, signed.clone(), body)
        .await
        .expect("post");
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    // One of several signatures is enough, whichever secret made it.
    let several = format!(
        "v1,bm90IGEgc2lnbmF0dXJl {}",
        sign(old_key, "msg_2", now, body)
    );
    let answer = post(&orders, "msg_2", now, several, body)
        .await
        .expect("post");
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let received = receiver.received("orders").await;
    assert_eq!(received.len(), 2, "{received:#?}");
    assert_eq!(received[0]["webhook_id"], "msg_1");
    assert_eq!(received[0]["webhook_timestamp"], now.to_string());
    assert_eq!(received[0]["signatures"], signed);
    assert_eq!(received[0]["type"], "invoice.paid");
    assert_eq!(received[0]["data"], json!({ "id": "inv_1" }));
    assert_eq!(received[0]["verified_by"], 1);
    assert_eq!(received[1]["verified_by"], 0);

    // A body changed after signing, a key the endpoint does not hold, a signature from long ago,
    // and an endpoint that does not exist are all refused, and kept with the reason.
    let tampered = body.replace("inv_1", "inv_2");
    let answer = post(
        &orders,
        "msg_3",
        now,
        sign(new_key, "msg_3", now, body),
        &tampered,
    )
    .await
    .expect("post");
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let stranger = sign(b"someone else's key", "msg_4", now, body);
    let answer = post(&orders, "msg_4", now, stranger, body)
        .await
        .expect("post");
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let long_ago = now - 3600;
    let stale = sign(new_key, "msg_5", long_ago, body);
    let answer = post(&orders, "msg_5", long_ago, stale.clone(), body)
        .await
        .expect("post");
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let answer = post(&nobody, "msg_6", now, signed.clone(), body)
        .await
        .expect("post");
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let rejected = receiver.rejected("orders").await;
    let errors: Vec<_> = rejected.iter().map(|r| r["error"].as_str()).collect();
    assert_eq!(
        errors,
        [
            Some("No matching signature found"),
            Some("No matching signature found"),
            Some("Message timestamp too old"),
        ],
        "{rejected:#?}"
    );
    assert_eq!(receiver.rejected("nobody").await.len(), 1);
    assert_eq!(receiver.received("orders").await.len(), 2);

    // On a clock of the test's choosing, the old signature is on time.
    let then = DateTime::from_timestamp(long_ago, 0).expect("a time");
    receiver.verify_at(Some(then)).await;
    let answer = post(&orders, "msg_5", long_ago, stale, body)
        .await
        .expect("post");
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    receiver.verify_at(None).await;

    // Failures on demand: answered 500, counted as attempts, not received; then delivered.
    receiver.fail_next("orders", 1).await;
    let retried = sign(new_key, "msg_7", now, body);
    let answer = post(&orders, "msg_7", now, retried.clone(), body)
        .await
        .expect("post");
    assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let answer = post(&orders, "msg_7", now, retried.clone(), body)
        .await
        .expect("post");
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let outcomes: Vec<_> = receiver
        .history("orders")
        .await
        .iter()
        .map(|h| h["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(outcomes.len(), 8);
    assert_eq!(outcomes[6..], ["failed", "received"]);
    assert_eq!(receiver.attempts("orders").await, 8);

    // A slow endpoint answers late.
    receiver
        .set_delay("orders", Duration::from_millis(300))
        .await;
    let started = std::time::Instant::now();
    let answer = post(
        &orders,
        "msg_8",
        now,
        sign(new_key, "msg_8", now, body),
        body,
    )
    .await
    .expect("post");
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert!(started.elapsed() >= Duration::from_millis(300));
    receiver.set_delay("orders", Duration::ZERO).await;

    // Down, connections are refused; up again on the same port, it has what it had.
    receiver.stop();
    let error = post(
        &orders,
        "msg_9",
        now,
        sign(new_key, "msg_9", now, body),
        body,
    )
    .await
    .expect_err("the receiver is down");
    assert!(error.is_connect(), "{error}");
    receiver.restart().await;
    let answer = post(
        &orders,
        "msg_9",
        now,
        sign(new_key, "msg_9", now, body),
        body,
    )
    .await
    .expect("post");
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let received = receiver.wait_for("orders", 6, Duration::from_secs(5)).await;
    let ids: Vec<_> = received.iter().map(|r| r["webhook_id"].clone()).collect();
    assert_eq!(ids, ["msg_1", "msg_2", "msg_5", "msg_7", "msg_8", "msg_9"]);
}
