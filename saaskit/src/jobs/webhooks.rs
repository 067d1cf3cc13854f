//! The webhook worker: claims due deliveries under a lease, signs and sends them, and records
//! each attempt — delivered (any 2xx), retried on `SAASKIT_WEBHOOK_RETRY_SCHEDULE`, or kept as
//! failed after the last retry. An endpoint whose every attempt has failed for 5 days is
//! disabled and its business's owners are mailed.
//!
//! Every replica runs it: a claim pushes the deliveries' next attempt past the lease, so no
//! other worker takes them meanwhile (PostgreSQL's `SKIP LOCKED` keeps two claims apart), and a
//! worker killed mid-send leaves them to be sent again when the lease ends. Delivery is thus at
//! least once; receivers deduplicate by `webhook-id`. One endpoint's deliveries go out one at a
//! time in the order they fell due; different endpoints are served concurrently.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use crate::app::{App, AppState};
use crate::audit::{self, Action, Actor, Event};
use crate::db::Timestamp;
use crate::store::webhooks::{self as store, Attempt, Delivery, Endpoint};
use crate::webhooks::{self, guard, signature};

/// How long claimed deliveries are reserved: longer than a batch to one endpoint can take at
/// the 10-second timeout per attempt (see [`BATCH`]).
const LEASE: chrono::Duration = chrono::Duration::seconds(120);
/// Claimed at once; at most [`PER_ENDPOINT`] of them are for one endpoint.
const BATCH: i64 = 200;
/// The most deliveries to one endpoint one pass sends in a row (10 s each at worst, within the
/// lease); the rest stay claimed and are released for the next pass.
const PER_ENDPOINT: usize = 10;
const POLL: Duration = Duration::from_secs(1);
/// Response bodies are read and kept up to this size.
const BODY_LIMIT: usize = 64 * 1024;
/// An endpoint failing this long is disabled.
const DISABLE_AFTER: chrono::Duration = chrono::Duration::days(5);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
}

impl std::ops::AddAssign for Pass {
    fn add_assign(&mut self, other: Pass) {
        self.delivered += other.delivered;
        self.retrying += other.retrying;
        self.failed += other.failed;
    }
}

/// Sends every delivery due now and returns what happened.
pub async fn deliver_due(app: &AppState) -> anyhow::Result<Pass> {
    let client = guard::client(app.config.webhook_allow_private)?;
    deliver_until(app, &client, None).await
}

async fn deliver_until(
    app: &AppState,
    client: &reqwest::Client,
    stop: Option<&watch::Receiver<bool>>,
) -> anyhow::Result<Pass> {
    let mut total = Pass::default();
    loop {
        if stop.is_some_and(|s| *s.borrow()) {
            return Ok(total);
        }
        webhooks::emit_waiting_marks(app).await?;
        let now = app.clock.now();
        let claimed = {
            let mut tx = app.db.begin().await?;
            let claimed = store::claim_due(tx.conn(), now, now.plus(LEASE), BATCH).await?;
            tx.commit_quietly().await?;
            claimed
        };
        if claimed.is_empty() {
            return Ok(total);
        }
        let mut by_endpoint: HashMap<Uuid, Vec<Delivery>> = HashMap::new();
        for d in claimed {
            by_endpoint.entry(d.endpoint_id).or_default().push(d);
        }
        let mut sends = tokio::task::JoinSet::new();
        let mut released = Vec::new();
        for (endpoint, mut queue) in by_endpoint {
            if queue.len() > PER_ENDPOINT {
                released.extend(queue.split_off(PER_ENDPOINT));
            }
            let (app, client) = (app.clone(), client.clone());
            sends.spawn(async move { send_queue(&app, &client, endpoint, queue).await });
        }
        if !released.is_empty() {
            release(app, &released, now).await?;
        }
        while let Some(joined) = sends.join_next().await {
            match joined {
                Ok(Ok(pass)) => total += pass,
                Ok(Err(err)) => {
                    tracing::error!(error = format!("{err:#}"), "webhook sends failed")
                }
                Err(err) => tracing::error!(error = %err, "a webhook send task panicked"),
            }
        }
    }
}

/// Gives claimed deliveries back, due again when they were claimed.
async fn release(app: &App, deliveries: &[Delivery], due: Timestamp) -> anyhow::Result<()> {
    let mut tx = app.db.begin().await?;
    for d in deliveries {
        store::release_claim(tx.conn(), d.id, d.attempts, due).await?;
    }
    tx.commit_quietly().await?;
    Ok(())
}

/// What the receiver made of one attempt.
struct Answer {
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
    took: Duration,
}

impl Answer {
    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends one endpoint's claimed deliveries in order, recording each attempt as it ends.
async fn send_queue(
    app: &App,
    client: &reqwest::Client,
    endpoint_id: Uuid,
    queue: Vec<Delivery>,
) -> anyhow::Result<Pass> {
    let mut pass = Pass::default();
    let endpoint = {
        let mut tx = app.db.read().await?;
        store::get_endpoint(tx.conn(), endpoint_id).await?
    };
    let Some(endpoint) = endpoint else {
        // Deleted meanwhile: its deliveries went with it.
        return Ok(pass);
    };
    let secrets = webhooks::signing_secrets(app, &endpoint, app.clock.now())?;
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let mut any_delivered = false;
    let mut any_failed = false;
    for d in &queue {
        let answer = send(app, client, &endpoint, &secrets, d).await;
        app.metrics.webhook_attempt(answer.took);
        let now = app.clock.now();
        let (status, next) = if answer.delivered() {
            ("delivered", now)
        } else {
            match app.config.webhook_retry_schedule.after(d.attempts) {
                Some(delay) => ("pending", now.plus(delay)),
                None => ("failed", now),
            }
        };
        let attempt = Attempt {
            id: d.id,
            status,
            next_attempt_at: next,
            response_status: answer.status.map(i64::from),
            response_body: answer.body.clone(),
            duration_ms: i64::try_from(answer.took.as_millis()).unwrap_or(i64::MAX),
            error: answer.error.clone(),
            delivered_at: answer.delivered().then_some(now),
        };
        let mut tx = app.db.begin().await?;
        store::record_attempt(tx.conn(), &attempt, d.attempts).await?;
        tx.commit_quietly().await?;
        match status {
            "delivered" => {
                pass.delivered += 1;
                any_delivered = true;
                app.metrics.webhooks_delivered.inc();
            }
            "pending" => {
                pass.retrying += 1;
                any_failed = true;
                app.metrics.webhook_retries.inc();
                tracing::warn!(delivery_id = %d.id, endpoint_id = %endpoint.id, attempts = d.attempts,
                    status = answer.status, error = answer.error.as_deref().unwrap_or(""), "webhook not delivered; will retry");
            }
            _ => {
                pass.failed += 1;
                any_failed = true;
                app.metrics.webhooks_failed.inc();
                tracing::error!(delivery_id = %d.id, endpoint_id = %endpoint.id, attempts = d.attempts,
                    status = answer.status, error = answer.error.as_deref().unwrap_or(""), "webhook given up on; delivery kept");
            }
        }
    }
    note_health(app, &endpoint, any_delivered, any_failed).await?;
    Ok(pass)
}

/// Keeps the endpoint's failing streak: cleared by a success, and the endpoint disabled (its
/// owners mailed) once every attempt has failed for [`DISABLE_AFTER`].
async fn note_health(
    app: &App,
    endpoint: &Endpoint,
    any_delivered: bool,
    any_failed: bool,
) -> anyhow::Result<()> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    if any_delivered {
        store::endpoint_succeeded(tx.conn(), endpoint.id).await?;
    } else if any_failed {
        let since = store::endpoint_failed(tx.conn(), endpoint.id, now).await?;
        if since.plus(DISABLE_AFTER) <= now
            && store::disable_endpoint(tx.conn(), endpoint.id, "failing", now).await?
        {
            notify_disabled(app, &mut tx, endpoint, since, now).await?;
        }
    }
    tx.commit_quietly().await?;
    Ok(())
}

async fn notify_disabled(
    app: &App,
    tx: &mut crate::db::Tx,
    endpoint: &Endpoint,
    since: Timestamp,
    now: Timestamp,
) -> anyhow::Result<()> {
    let business = crate::store::businesses::find(tx.conn(), endpoint.business_id)
        .await?
        .context("the endpoint's business")?;
    let owners: Vec<_> = crate::store::members::list_active(tx.conn(), endpoint.business_id)
        .await?
        .into_iter()
        .filter(|m| m.role == "owner")
        .collect();
    let link = format!("{}/webhooks", app.config.public_base());
    let since_text = since.as_datetime().format("%Y-%m-%d %H:%M UTC").to_string();
    for owner in owners {
        let rendered = crate::mail::WebhookDisabled {
            business_name: &business.name,
            url: &endpoint.url,
            since: &since_text,
            link: &link,
        }
        .render()?;
        crate::mail::enqueue(tx, &app.mailer, &owner.email, rendered, now).await?;
    }
    let event = Event::new(Action::WebhookDisabled, Actor::System)
        .business(endpoint.business_id)
        .target("webhook", endpoint.id)
        .details(json!({"url": endpoint.url, "failing_since": since}));
    audit::record(tx.conn(), now, event).await?;
    app.mail_queued.notify_one();
    tracing::warn!(endpoint_id = %endpoint.id, business_id = %endpoint.business_id, "webhook endpoint disabled after failing for 5 days");
    Ok(())
}

/// One attempt: the body as stored, signed now with every current secret.
async fn send(
    app: &App,
    client: &reqwest::Client,
    endpoint: &Endpoint,
    secrets: &[&str],
    d: &Delivery,
) -> Answer {
    let started = Instant::now();
    let failed = |error: String| Answer {
        status: None,
        body: None,
        error: Some(error),
        took: started.elapsed(),
    };
    let url = match reqwest::Url::parse(&endpoint.url) {
        Ok(url) => url,
        Err(err) => return failed(format!("invalid URL: {err}")),
    };
    if !app.config.webhook_allow_private
        && let Some(ip) = guard::literal_forbidden(&url)
    {
        return failed(format!("the address {ip} is not allowed"));
    }
    // The receiver checks this against its own clock, so it is the wall clock's, whatever
    // clock schedules the attempts.
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let id = webhooks::message_id(d.id);
    let signed = signature::signature_header(secrets, &id, timestamp, d.body.as_bytes());
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signed)
        .body(d.body.clone());
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(err) => return failed(describe(&err)),
    };
    let status = response.status().as_u16();
    let mut body = Vec::new();
    let mut error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = BODY_LIMIT - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= BODY_LIMIT {
                    break;
                }
            }
            Ok(None) => break,
            Err(err) => {
                error = Some(describe(&err));
                break;
            }
        }
    }
    if !(200..300).contains(&status) && error.is_none() {
        error = Some(format!("the endpoint answered {status}"));
    }
    Answer {
        status: Some(status),
        body: Some(String::from_utf8_lossy(&body).into_owned()),
        error,
        took: started.elapsed(),
    }
}

/// A transport error in a sentence, with its causes (reqwest's own message is terse).
fn describe(err: &reqwest::Error) -> String {
    let mut out = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Runs until `stop` turns true, sending as soon as deliveries are queued on this replica (or
/// within a second of being queued on another). Stops between passes.
pub async fn run(app: AppState, mut stop: watch::Receiver<bool>) {
    let client = match guard::client(app.config.webhook_allow_private) {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "webhook worker cannot start");
            return;
        }
    };
    tracing::info!("webhook worker started");
    loop {
        if *stop.borrow() {
            break;
        }
        if let Err(err) = deliver_until(&app, &client, Some(&stop)).await {
            tracing::error!(error = format!("{err:#}"), "webhook worker pass failed");
        }
        tokio::select! {
            _ = webhooks::QUEUED.notified() => {
                // Woken by a transaction that has not committed yet, perhaps.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
    tracing::info!("webhook worker stopped");
}
