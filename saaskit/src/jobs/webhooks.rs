//! The webhook worker: claims due deliveries under a lease, signs and sends them, and records
//! each attempt — delivered (any 2xx), retried on `SAASKIT_WEBHOOK_RETRY_SCHEDULE`, or kept as
//! failed after the last retry. An endpoint whose every attempt has failed for 5 days is
//! disabled and its business's owners are mailed.
//!
//! Every replica runs it: a claim pushes the deliveries' next attempt past the lease
//! (`SAASKIT_WEBHOOK_LEASE_SECS`), so no other worker takes them meanwhile (PostgreSQL's
//! `SKIP LOCKED` keeps two claims apart), and a worker killed mid-send leaves them to be sent
//! again when the lease ends. Delivery is thus at least once; receivers deduplicate by
//! `webhook-id`. One endpoint's claimed deliveries go out one at a time in the order they fell
//! due, for up to [`PASS_BUDGET`] (and never so late that an attempt could outlast the lease);
//! what is left is given back in its place and claimed again by the next pass, here or on
//! another replica. Different endpoints are served concurrently; a pass ends when every
//! endpoint's share is done, so a slow endpoint holds up the next claim by at most the budget
//! and one attempt. Outcomes are written as they come by one recorder per pass, as many per
//! transaction as are waiting: a commit per attempt capped a worker at a few hundred
//! deliveries a second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::app::{App, AppState};
use crate::audit::{self, Action, Actor, Event};
use crate::db::Timestamp;
use crate::store::webhooks::{self as store, Attempt, Delivery, Endpoint};
use crate::webhooks::{self, guard, signature};

/// Claimed at once.
const BATCH: i64 = 200;
/// The longest one attempt may take; under a lease shorter than twice this, half the lease.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one pass keeps starting attempts to an endpoint: a fast endpoint gets its whole
/// share of a claim, a slow one a few attempts, and the other endpoints wait for the next pass
/// no longer than this and one attempt.
const PASS_BUDGET: Duration = Duration::from_secs(5);
/// The most outcomes written in one transaction.
const RECORD_BATCH: usize = 500;
const POLL: Duration = Duration::from_secs(1);
/// Response bodies are read and kept up to this size.
const BODY_LIMIT: usize = 64 * 1024;
/// An endpoint failing this long is disabled.
const DISABLE_AFTER: chrono::Duration = chrono::Duration::days(5);

/// How long a claim holds, and how long one attempt under it may take.
#[derive(Debug, Clone, Copy)]
struct Lease {
    length: Duration,
    attempt: Duration,
}

impl Lease {
    fn of(app: &App) -> Lease {
        let length = Duration::from_secs(app.config.webhook_lease_secs);
        Lease {
            length,
            attempt: ATTEMPT_TIMEOUT.min(length / 2),
        }
    }
}

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
    let lease = Lease::of(app);
    let lease_in_db = chrono::Duration::from_std(lease.length).context("the webhook lease")?;
    let mut total = Pass::default();
    loop {
        if stop.is_some_and(|s| *s.borrow()) {
            return Ok(total);
        }
        webhooks::emit_waiting_marks(app).await?;
        let now = app.clock.now();
        // Counted from before the claim: the worker never thinks it holds a delivery longer
        // than the database says it does.
        let claimed_at = Instant::now();
        let claimed = {
            let mut tx = app.db.begin().await?;
            let claimed = store::claim_due(tx.conn(), now, now.plus(lease_in_db), BATCH).await?;
            tx.commit_quietly().await?;
            claimed
        };
        if claimed.is_empty() {
            return Ok(total);
        }
        // The last moment an attempt may start: within the pass's budget, and early enough to
        // end within the lease.
        let last_start = claimed_at + PASS_BUDGET.min(lease.length - lease.attempt);
        let mut by_endpoint: HashMap<Uuid, Vec<Delivery>> = HashMap::new();
        for d in claimed {
            by_endpoint.entry(d.endpoint_id).or_default().push(d);
        }
        let (outcomes, recorded) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record(app.clone(), recorded));
        let mut sends = tokio::task::JoinSet::new();
        for (endpoint, queue) in by_endpoint {
            let queue = Queue {
                endpoint_id: endpoint,
                deliveries: queue,
                last_start,
                attempt_timeout: lease.attempt,
                stop: stop.cloned(),
                outcomes: outcomes.clone(),
            };
            let (app, client) = (app.clone(), client.clone());
            sends.spawn(async move { queue.send(&app, &client).await });
        }
        drop(outcomes);
        let mut unsent = Vec::new();
        while let Some(joined) = sends.join_next().await {
            match joined {
                Ok(Ok((pass, left))) => {
                    total += pass;
                    unsent.extend(left);
                }
                Ok(Err(err)) => {
                    tracing::error!(error = format!("{err:#}"), "webhook sends failed")
                }
                Err(err) => tracing::error!(error = %err, "a webhook send task panicked"),
            }
        }
        // Every sender is done, so the recorder writes what is left and ends.
        if let Err(err) = recorder.await {
            tracing::error!(error = %err, "the webhook attempt recorder panicked");
        }
        if !unsent.is_empty() {
            release(app, &unsent).await?;
        }
    }
}

/// Writes attempt outcomes as they arrive, everything waiting (up to [`RECORD_BATCH`]) in one
/// transaction, until every sender has dropped its end. A write that fails leaves its
/// deliveries claimed: they are sent again when the lease ends (at least once).
async fn record(app: AppState, mut outcomes: mpsc::UnboundedReceiver<Attempt>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while outcomes.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let written = async {
            let mut tx = app.db.begin().await?;
            store::record_attempts(tx.conn(), &batch).await?;
            tx.commit_quietly().await
        };
        if let Err(err) = written.await {
            tracing::error!(error = %err, attempts = batch.len(),
                "recording webhook attempts failed; they are sent again when their lease ends");
        }
        batch.clear();
    }
}

/// Gives claimed deliveries back unsent, their attempt uncounted, due as of their creation so
/// that each keeps its place in its endpoint's order.
async fn release(app: &App, deliveries: &[Delivery]) -> anyhow::Result<()> {
    let mut tx = app.db.begin().await?;
    for d in deliveries {
        store::release_claim(tx.conn(), d.id, d.attempts, d.created_at).await?;
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

/// One endpoint's share of a claim.
struct Queue {
    endpoint_id: Uuid,
    /// In the order they fell due.
    deliveries: Vec<Delivery>,
    /// No attempt starts after this (the pass's budget, or the lease's end).
    last_start: Instant,
    attempt_timeout: Duration,
    stop: Option<watch::Receiver<bool>>,
    outcomes: mpsc::UnboundedSender<Attempt>,
}

impl Queue {
    /// Sends the deliveries in order, handing each outcome to the recorder, until they are
    /// all sent, the pass's time for it is up, or the worker is stopping;
    /// returns what happened and the deliveries not attempted.
    async fn send(
        self,
        app: &App,
        client: &reqwest::Client,
    ) -> anyhow::Result<(Pass, Vec<Delivery>)> {
        let mut pass = Pass::default();
        let endpoint = {
            let mut c = app.db.single().await?;
            store::get_endpoint(c.conn(), self.endpoint_id).await?
        };
        let Some(endpoint) = endpoint else {
            // Deleted meanwhile: its deliveries went with it.
            return Ok((pass, Vec::new()));
        };
        let secrets = webhooks::signing_secrets(app, &endpoint, app.clock.now())?;
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let mut any_delivered = false;
        let mut any_failed = false;
        let mut left = Vec::new();
        let mut deliveries = self.deliveries.into_iter();
        while let Some(d) = deliveries.next() {
            if Instant::now() > self.last_start || self.stop.as_ref().is_some_and(|s| *s.borrow()) {
                left.push(d);
                left.extend(deliveries);
                break;
            }
            let answer = send(app, client, &endpoint, &secrets, &d, self.attempt_timeout).await;
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
            let attempt = Attempt {
                id: d.id,
                attempts: d.attempts,
                status,
                next_attempt_at: next,
                response_status: answer.status.map(i64::from),
                duration_ms: i64::try_from(answer.took.as_millis()).unwrap_or(i64::MAX),
                delivered_at: answer.delivered().then_some(now),
                response_body: answer.body,
                error: answer.error,
            };
            // The recorder outlives every sender of its pass.
            let _ = self.outcomes.send(attempt);
        }
        note_health(app, &endpoint, any_delivered, any_failed).await?;
        Ok((pass, left))
    }
}

/// Keeps the endpoint's failing streak: cleared by a success, and the endpoint disabled (its
/// owners mailed) once every attempt has failed for [`DISABLE_AFTER`].
async fn note_health(
    app: &App,
    endpoint: &Endpoint,
    any_delivered: bool,
    any_failed: bool,
) -> anyhow::Result<()> {
    // A success clears a streak; one already clear (as read at the start of the pass) needs no
    // write. A streak another replica starts meanwhile is cleared by the next success.
    if (any_delivered && endpoint.failing_since.is_none()) || !(any_delivered || any_failed) {
        return Ok(());
    }
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

/// One attempt: the body as stored, signed now with every current secret, given `timeout`
/// from connecting to the end of the answer.
async fn send(
    app: &App,
    client: &reqwest::Client,
    endpoint: &Endpoint,
    secrets: &[&str],
    d: &Delivery,
    timeout: Duration,
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
        .timeout(timeout)
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
        // PostgreSQL's text cannot hold NUL, and one such answer would fail its whole batch.
        body: Some(String::from_utf8_lossy(&body).replace('\0', "\u{FFFD}")),
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
