//! Stripe for the payment scenarios: localstripe (installed by `.ci/stripe-tools`), a simulator
//! that speaks Stripe's HTTP API and sends signed webhooks, in a child process per scenario, so
//! that saaskit's Stripe client meets an implementation that is not ours. The scenarios give
//! saaskit [`Localstripe::api_base`] and [`Localstripe::secret_key`], act as the customer's
//! browser with [`Localstripe::card`] and [`Localstripe::authenticate`], and read Stripe's side
//! back with [`Localstripe::get`].
//!
//! What localstripe 1.15.10 does, as checked against it (details in the methods' comments):
//! - It accepts any `sk_…` key, as Basic or Bearer auth; `Idempotency-Key` and `Stripe-Version`
//!   are accepted and ignored (two POSTs with one key make two objects).
//! - It refuses a parameter it does not know with 400 `{"error": {"type":
//!   "invalid_request_error", "message": "Unexpected <name>"}}` — `description`,
//!   `setup_future_usage`, `error_on_requires_action`, `statement_descriptor`, `return_url` on a
//!   PaymentIntent; `payment_method`, `confirm`, `automatic_payment_methods` on a SetupIntent;
//!   `reason` on a refund. Every error has that `type`, card declines included.
//! - A declined charge answers 402 `{"error": {"code": "card_declined", "charge": "ch_…",
//!   "message": …}}`: no `decline_code`, no `payment_intent`.
//! - A card that needs 3-D Secure leaves the PaymentIntent `requires_action` (answered 200), also
//!   with `off_session=true`, where Stripe answers 402 `authentication_required`.
//! - A PaymentIntent's `latest_charge` is the whole charge object, not its id, and the charge has
//!   no `payment_method_details`: brand and last four digits are on the PaymentMethod (always
//!   `visa`).
//! - Confirming a SetupIntent does not attach its PaymentMethod to the customer.
//! - Webhooks: `customer.created|updated|deleted`, `payment_intent.succeeded` and
//!   `payment_intent.payment_failed` (not for a failed authentication), about a second after the
//!   fact, once, never retried. Never `charge.*` (refunds and disputes send nothing; there are no
//!   disputes at all) nor `setup_intent.*`: scenarios for those post events signed with
//!   [`stripe_signature`] themselves.
//! - Refunds are not checked against what is left to refund.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// Test cards, by what localstripe does with them (`card[number]` of a PaymentMethod).
pub mod cards {
    /// Attaches, charges.
    pub const GOOD: &str = "4242424242424242";
    /// Attaches, then every charge is declined (402 `card_declined`).
    pub const DECLINE_ON_CHARGE: &str = "4000000000000341";
    /// Declined when attached to a customer or confirmed on a SetupIntent (402 `card_declined`).
    /// Charged without being attached, it succeeds.
    pub const DECLINE_ON_ATTACH: &str = "4000000000000002";
    /// Attaches; every PaymentIntent confirmed with it (on or off session) is left
    /// `requires_action` until [`super::Localstripe::authenticate`]; a SetupIntent likewise.
    /// `4000002500003155`, `4000000000003220` and `4000000000003063` behave the same.
    pub const REQUIRES_3DS: &str = "4000002760003184";
    /// Needs authentication like [`REQUIRES_3DS`], then is declined once authenticated.
    pub const REQUIRES_3DS_THEN_DECLINE: &str = "4000008260003178";
}

/// The key saaskit is given (localstripe takes any `sk_…`).
const SECRET_KEY: &str = "sk_test_saaskit_localstripe";
/// The key the browser's side uses (localstripe takes any `pk_…` where Stripe.js may use one).
const PUBLISHABLE_KEY: &str = "pk_test_saaskit_localstripe";
/// The name localstripe knows saaskit's webhook endpoint by.
const WEBHOOK_NAME: &str = "saaskit";

/// localstripe keeps its objects in a pickle at the fixed path `/tmp/localstripe.pickle`, written
/// on every change whatever `--from-scratch` says, so instances started at once by parallel
/// tests would write over each other's file. This starts the same server with the store's two
/// methods pointed at a file of the instance's own (`SAASKIT_LOCALSTRIPE_STATE`), and makes it
/// exit when its stdin closes, should the tests die without killing it.
const BOOT: &str = r#"
import os, pickle, sys, threading
import localstripe.resources as resources

STATE = os.environ["SAASKIT_LOCALSTRIPE_STATE"]

def load(store):
    try:
        with open(STATE, "rb") as f:
            old = pickle.load(f)
    except FileNotFoundError:
        return
    store.clear()
    store.update(old)

def dump(store):
    with open(STATE + ".tmp", "wb") as f:
        pickle.dump(store, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(STATE + ".tmp", STATE)

resources.Store.try_load_from_disk = load
resources.Store.dump_to_disk = dump

def exit_with_stdin():
    sys.stdin.buffer.read()
    os._exit(0)

threading.Thread(target=exit_with_stdin, daemon=True).start()

from localstripe.server import start
sys.argv[0] = "localstripe"
start()
"#;

/// The `localstripe` executable: `SAASKIT_LOCALSTRIPE`, or where `.ci/stripe-tools` installs it.
/// `None` (payment scenarios are skipped) when there is none, unless
/// `SAASKIT_STRIPE_TESTS=required`.
pub fn executable() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            crate::tools::installed_tool(
                "SAASKIT_LOCALSTRIPE",
                "saaskit-stripe/venv/bin/localstripe",
                runs,
                "SAASKIT_STRIPE_TESTS",
                "no localstripe: run .ci/stripe-tools (or set SAASKIT_LOCALSTRIPE)",
            )
        })
        .clone()
}

fn runs(localstripe: &Path) -> bool {
    Command::new(localstripe)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The interpreter (and its arguments) on the executable's `#!` line: the Python of the virtual
/// environment localstripe is installed in.
fn interpreter(localstripe: &Path) -> Result<Vec<String>, String> {
    let script =
        std::fs::read(localstripe).map_err(|e| format!("read {}: {e}", localstripe.display()))?;
    let first_line = script.split(|b| *b == b'\n').next().unwrap_or_default();
    let shebang = std::str::from_utf8(first_line)
        .ok()
        .and_then(|l| l.strip_prefix("#!"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|words| !words.is_empty());
    shebang.ok_or_else(|| {
        format!(
            "{} does not start with #! and a Python: not a pip-installed localstripe",
            localstripe.display()
        )
    })
}

/// A running localstripe, killed when dropped.
pub struct Localstripe {
    /// `None` between `stop` and `restart`.
    child: Option<(Child, ChildStdin)>,
    port: u16,
    python: Vec<String>,
    /// The instance's own directory: its working directory, state file and log.
    dir: PathBuf,
    client: reqwest::Client,
    /// The webhook endpoint saaskit was registered with, registered again after a restart.
    webhook: Mutex<Option<(String, String)>>,
}

impl Localstripe {
    /// `None` when there is no localstripe (see [`executable`]): the scenario then returns early,
    /// saying so.
    pub async fn start() -> Option<Localstripe> {
        let executable = executable()?;
        let python = interpreter(&executable).unwrap_or_else(|e| panic!("start localstripe: {e}"));
        let dir =
            std::env::temp_dir().join(format!("saaskit-localstripe-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let (child, port) = spawn(&python, &dir, None)
            .await
            .unwrap_or_else(|e| panic!("start localstripe: {e}"));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        Some(Localstripe {
            child: Some(child),
            port,
            python,
            dir,
            client,
            webhook: Mutex::new(None),
        })
    }

    /// Where saaskit reaches the API (`SAASKIT_STRIPE_API_BASE`): `http://127.0.0.1:<port>`,
    /// paths `/v1/…` under it.
    pub fn api_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the browser gets localstripe's stand-in for Stripe.js (`SAASKIT_STRIPE_JS_URL`). It
    /// has `confirmCardSetup` and `confirmCardPayment` (3-D Secure is a modal with "Complete
    /// authentication" and "Fail authentication"), not `createPaymentMethod`.
    pub fn js_url(&self) -> String {
        format!("{}/js.stripe.com/v3/", self.api_base())
    }

    /// The secret key saaskit is given (`SAASKIT_STRIPE_SECRET_KEY`).
    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    /// The publishable key (`SAASKIT_STRIPE_PUBLISHABLE_KEY`).
    pub fn publishable_key(&self) -> &'static str {
        PUBLISHABLE_KEY
    }

    /// A card PaymentMethod (`pm_…`), unattached, as Stripe.js makes one in the browser: expiry
    /// 12/2034, CVC 123. localstripe takes only the secret key here (Stripe takes the
    /// publishable one). See [`cards`] for numbers that decline or want authentication.
    pub async fn card(&self, number: &str) -> String {
        let pm = self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2034"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        pm["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a PaymentMethod id in {pm:#}"))
            .to_owned()
    }

    /// Completes (`success`) or fails the 3-D Secure step of a PaymentIntent that
    /// `requires_action`, as localstripe's Stripe.js does (`POST
    /// /v1/payment_intents/{id}/_authenticate`, with the publishable key and the client secret).
    /// The answer: the PaymentIntent — `succeeded` (`payment_intent.succeeded` follows), or
    /// after a failure `requires_payment_method` with `payment_method: null` and
    /// `last_payment_error.code = "payment_intent_authentication_failure"` (no webhook) — or,
    /// when the card is then declined, the 402 error body (`payment_intent.payment_failed`
    /// follows).
    pub async fn authenticate(
        &self,
        payment_intent: &str,
        client_secret: &str,
        success: bool,
    ) -> Value {
        let path = format!("/v1/payment_intents/{payment_intent}/_authenticate");
        let response = self
            .client
            .post(format!("{}{path}", self.api_base()))
            .form(&[
                ("key", PUBLISHABLE_KEY),
                ("client_secret", client_secret),
                ("success", if success { "true" } else { "false" }),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("reach localstripe ({path}): {e}"));
        let (status, body) = read(response, &path).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::PAYMENT_REQUIRED,
            "localstripe answered {path} with {status}: {body:#}"
        );
        body
    }

    /// Makes localstripe send its events to `url`, signed with `secret` (used as is, `whsec_`
    /// included, as Stripe does): `Stripe-Signature: t=<event.created>,v1=<hex HMAC-SHA256 of
    /// "<t>.<body>">`, one `v1`, body pretty-printed JSON (verify the bytes, do not
    /// re-serialise). Registering again replaces the endpoint.
    pub async fn register_webhook(&self, url: &str, secret: &str) {
        self.configure_webhook(url, secret).await;
        *self.webhook.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((url.to_owned(), secret.to_owned()));
    }

    /// Reads Stripe's side, with the secret key: `get("/v1/payment_intents/pi_…")`,
    /// `get("/v1/customers/cus_…")`, `get("/v1/events?type=payment_intent.succeeded")`. Fails on
    /// anything but 200.
    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.api_base()))
            .bearer_auth(SECRET_KEY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("reach localstripe ({path}): {e}"));
        let (status, body) = read(response, path).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "localstripe answered GET {path}: {body:#}"
        );
        body
    }

    /// Refunds the whole of a succeeded PaymentIntent's charge, as the dashboard would. Sends no
    /// webhook (a scenario posts `charge.refunded` itself).
    pub async fn refund(&self, payment_intent: &str) -> Value {
        self.post("/v1/refunds", &[("payment_intent", payment_intent)])
            .await
    }

    /// Refunds `amount` (minor units) of a succeeded PaymentIntent's charge.
    pub async fn refund_amount(&self, payment_intent: &str, amount: i64) -> Value {
        let amount = amount.to_string();
        self.post(
            "/v1/refunds",
            &[("payment_intent", payment_intent), ("amount", &amount)],
        )
        .await
    }

    /// What localstripe logged: a line per request, and one per webhook delivery with its outcome.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("localstripe.log")).unwrap_or_default()
    }

    /// Takes localstripe down: connections to its port are refused until `restart`.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Brings localstripe back on the same port, with the objects it had and the webhook
    /// endpoint as registered.
    pub async fn restart(&mut self) {
        self.stop();
        // The port was free a moment ago; another process could take it meanwhile, rarely.
        let mut tries = 0;
        let child = loop {
            match spawn(&self.python, &self.dir, Some(self.port)).await {
                Ok((child, _)) => break child,
                Err(e) if tries >= 50 => panic!("restart localstripe: {e}"),
                Err(_) => tries += 1,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.child = Some(child);
        let webhook = self
            .webhook
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((url, secret)) = webhook {
            self.configure_webhook(&url, &secret).await;
        }
    }

    async fn configure_webhook(&self, url: &str, secret: &str) {
        let path = format!("/_config/webhooks/{WEBHOOK_NAME}");
        let response = self
            .client
            .post(format!("{}{path}", self.api_base()))
            .form(&[("url", url), ("secret", secret)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("reach localstripe ({path}): {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::OK,
            "localstripe refused the webhook {url}: {text}"
        );
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.api_base()))
            .bearer_auth(SECRET_KEY)
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("reach localstripe ({path}): {e}"));
        let (status, body) = read(response, path).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "localstripe answered POST {path} {form:?}: {body:#}"
        );
        body
    }
}

impl Drop for Localstripe {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn read(response: reqwest::Response, path: &str) -> (StatusCode, Value) {
    let status = response.status();
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("read localstripe's answer to {path}: {e}"));
    let body = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("localstripe answered {path} with {status} and not JSON ({e}): {text}")
    });
    (status, body)
}

/// The `Stripe-Signature` header Stripe (and localstripe) sends with `body` at `timestamp`
/// (Unix seconds): `t=<timestamp>,v1=<hex HMAC-SHA256, keyed with the secret's bytes, over
/// "<timestamp>.<body>">`. For the events localstripe never sends (`charge.refunded`,
/// `charge.dispute.*`).
pub fn stripe_signature(secret: &str, timestamp: i64, body: &str) -> String {
    use hmac::Mac as _;

    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={timestamp},v1={hex}")
}

/// Starts localstripe in `dir` on `port` (`None`: any free one) and waits until it listens. A
/// restart (`Some`) keeps the objects of the state file; a first start begins from nothing.
async fn spawn(
    python: &[String],
    dir: &Path,
    port: Option<u16>,
) -> Result<((Child, ChildStdin), u16), String> {
    let log_path = dir.join("localstripe.log");
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("open {}: {e}", log_path.display()))?;
    let log_for_stdout = log
        .try_clone()
        .map_err(|e| format!("open {}: {e}", log_path.display()))?;
    // What the log held before this start: the line to wait for is looked for after it.
    let logged_before = std::fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
    let (program, interpreter_args) = python.split_first().ok_or("no interpreter")?;
    let mut command = Command::new(program);
    command
        .args(interpreter_args)
        .args(["-c", BOOT, "--port", &port.unwrap_or(0).to_string()])
        .current_dir(dir)
        .env("SAASKIT_LOCALSTRIPE_STATE", dir.join("store.pickle"))
        .env("TMPDIR", dir)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(log_for_stdout)
        .stderr(log);
    if port.is_none() {
        command.arg("--from-scratch");
    }
    let mut child = command.spawn().map_err(|e| format!("run {program}: {e}"))?;
    let stdin = child.stdin.take().expect("localstripe's stdin");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // aiohttp says `======== Running on http://[::]:<port> ========` once it listens.
    let listening = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let said = log
            .get(logged_before..)
            .and_then(|new| new.split("Running on http://[::]:").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse::<u16>().ok());
        if let Some(port) = said {
            break Ok(port);
        }
        match child.try_wait() {
            Ok(Some(status)) => break Err(format!("it exited ({status}): {log}")),
            Ok(None) => {}
            Err(e) => break Err(format!("wait for it: {e}")),
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(format!("it did not listen within 20 s: {log}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    match listening {
        Ok(port) => Ok(((child, stdin), port)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// A webhook endpoint for the harness's own test: keeps the `Stripe-Signature` and body of each
/// delivery.
async fn webhook_sink() -> (String, std::sync::Arc<Mutex<Vec<(String, String)>>>) {
    use axum::http::HeaderMap;

    let received = std::sync::Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/webhooks/stripe",
        axum::routing::post(move |headers: HeaderMap, body: String| async move {
            let signature = headers
                .get("stripe-signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            kept.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((signature, body));
            "{}"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the webhook sink");
    let address = listener.local_addr().expect("the sink's address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}/webhooks/stripe"), received)
}

/// Attaches `card` to `customer` and charges it 25.00 EUR off session, as a renewal would.
async fn charge(stripe: &Localstripe, customer: &str, card: &str) -> (StatusCode, Value) {
    stripe
        .post(
            &format!("/v1/payment_methods/{card}/attach"),
            &[("customer", customer)],
        )
        .await;
    let response = stripe
        .client
        .post(format!("{}/v1/payment_intents", stripe.api_base()))
        .bearer_auth(SECRET_KEY)
        // Accepted and ignored.
        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
        .header("Stripe-Version", "2024-06-20")
        .form(&[
            ("amount", "2500"),
            ("currency", "eur"),
            ("customer", customer),
            ("payment_method", card),
            ("confirm", "true"),
            ("off_session", "true"),
            ("metadata[payment_id]", "pay_1"),
        ])
        .send()
        .await
        .expect("create a PaymentIntent");
    read(response, "/v1/payment_intents").await
}

#[tokio::test]
async fn localstripe_charges_declines_asks_for_authentication_and_signs_its_webhooks() {
    let Some(mut stripe) = Localstripe::start().await else {
        eprintln!("skipped: no localstripe (run .ci/stripe-tools)");
        return;
    };
    // Another instance at the same time has a store of its own.
    let Some(other) = Localstripe::start().await else {
        return;
    };
    assert!(stripe.secret_key().starts_with("sk_test_"));
    assert!(stripe.publishable_key().starts_with("pk_test_"));
    let script = other
        .client
        .get(stripe.js_url())
        .send()
        .await
        .expect("localstripe's Stripe.js");
    assert!(script.status().is_success());
    let script = script.text().await.expect("localstripe's Stripe.js");
    assert!(script.contains("confirmCardPayment"));

    let (url, received) = webhook_sink().await;
    let secret = "whsec_the_harness_own_secret";
    stripe.register_webhook(&url, secret).await;

    let customer = stripe
        .post("/v1/customers", &[("email", "owner@example.com")])
        .await;
    let customer = customer["id"].as_str().expect("a customer id").to_owned();
    let answer = other
        .client
        .get(format!("{}/v1/customers/{customer}", other.api_base()))
        .bearer_auth(other.secret_key())
        .send()
        .await
        .expect("ask the other localstripe");
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);

    let good = stripe.card(cards::GOOD).await;
    let (status, paid) = charge(&stripe, &customer, &good).await;
    assert_eq!(status, StatusCode::OK, "{paid:#}");
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(paid["latest_charge"]["status"], "succeeded");
    let paid_id = paid["id"].as_str().expect("a PaymentIntent id").to_owned();

    let (status, declined) = charge(
        &stripe,
        &customer,
        &stripe.card(cards::DECLINE_ON_CHARGE).await,
    )
    .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(declined["error"]["code"], "card_declined");
    assert!(declined["error"]["charge"].is_string(), "{declined:#}");

    let (status, pending) =
        charge(&stripe, &customer, &stripe.card(cards::REQUIRES_3DS).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending["status"], "requires_action");
    assert_eq!(pending["next_action"]["type"], "use_stripe_sdk");
    let pending_id = pending["id"].as_str().expect("a PaymentIntent id");
    let secret_of_pending = pending["client_secret"].as_str().expect("a client secret");
    let authenticated = stripe
        .authenticate(pending_id, secret_of_pending, true)
        .await;
    assert_eq!(authenticated["status"], "succeeded", "{authenticated:#}");
    // Refunds are not checked against what is left: only the first of these would pass Stripe.
    let refund = stripe.refund(pending_id).await;
    assert_eq!(refund["amount"], 2500);

    let (status, pending) = charge(
        &stripe,
        &customer,
        &stripe.card(cards::REQUIRES_3DS_THEN_DECLINE).await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending["status"], "requires_action");
    let declined = stripe
        .authenticate(
            pending["id"].as_str().expect("a PaymentIntent id"),
            pending["client_secret"].as_str().expect("a client secret"),
            true,
        )
        .await;
    assert_eq!(declined["error"]["code"], "card_declined", "{declined:#}");

    let (status, pending) =
        charge(&stripe, &customer, &stripe.card(cards::REQUIRES_3DS).await).await;
    assert_eq!(status, StatusCode::OK);
    let failed = stripe
        .authenticate(
            pending["id"].as_str().expect("a PaymentIntent id"),
            pending["client_secret"].as_str().expect("a client secret"),
            false,
        )
        .await;
    assert_eq!(failed["status"], "requires_payment_method");
    assert_eq!(
        failed["last_payment_error"]["code"],
        "payment_intent_authentication_failure"
    );

    let attach = stripe
        .client
        .post(format!(
            "{}/v1/payment_methods/{}/attach",
            stripe.api_base(),
            stripe.card(cards::DECLINE_ON_ATTACH).await
        ))
        .bearer_auth(SECRET_KEY)
        .form(&[("customer", &customer)])
        .send()
        .await
        .expect("attach");
    assert_eq!(attach.status(), StatusCode::PAYMENT_REQUIRED);

    let refund = stripe.refund_amount(&paid_id, 1000).await;
    assert_eq!(refund["amount"], 1000);
    assert_eq!(refund["status"], "succeeded");
    let read_back = stripe.get(&format!("/v1/payment_intents/{paid_id}")).await;
    assert_eq!(read_back["latest_charge"]["amount_refunded"], 1000);

    // The customer's creation, two successes and two declines, in some order; nothing for the
    // failed authentication nor the refunds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let deliveries = loop {
        let deliveries = received.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if deliveries.len() >= 5 || tokio::time::Instant::now() >= deadline {
            break deliveries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = received.lock().unwrap_or_else(|e| e.into_inner()).len();
    assert_eq!(late, 5, "{}", stripe.log());
    let mut types = Vec::new();
    for (signature, body) in &deliveries {
        let event: Value = serde_json::from_str(body).expect("an event");
        let created = event["created"].as_i64().expect("a creation time");
        assert_eq!(*signature, stripe_signature(secret, created, body));
        types.push(event["type"].as_str().expect("a type").to_owned());
        if event["type"] == "payment_intent.payment_failed" {
            let intent = &event["data"]["object"];
            assert_eq!(intent["metadata"]["payment_id"], "pay_1");
            assert_eq!(intent["last_payment_error"]["code"], "card_declined");
        }
    }
    types.sort();
    assert_eq!(
        types,
        [
            "customer.created",
            "payment_intent.payment_failed",
            "payment_intent.payment_failed",
            "payment_intent.succeeded",
            "payment_intent.succeeded",
        ]
    );

    // Down, connections are refused; up again, it has what it had and still sends webhooks.
    stripe.stop();
    // A client of its own: a pooled connection to the old process would fail otherwise.
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let error = client
        .get(format!("{}/v1/customers/{customer}", stripe.api_base()))
        .send()
        .await
        .expect_err("localstripe is down");
    assert!(error.is_connect(), "{error}");
    stripe.restart().await;
    let again = stripe.get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(again["email"], "owner@example.com");
    let (status, _) = charge(&stripe, &customer, &good).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap_or_else(|e| e.into_inner()).len() < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no webhook after the restart: {}",
            stripe.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
