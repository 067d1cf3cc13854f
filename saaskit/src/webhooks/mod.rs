//! Outgoing webhooks: endpoints a business registers, the events saaskit (and its products) emit
//! to them in the transaction of the change they report, and their signed, retried delivery,
//! following the Standard Webhooks specification.
//!
//! - [`emit`] writes one delivery row per subscribed endpoint on the caller's transaction, so an
//!   event exists exactly when its change does (the outbox pattern the mail uses).
//! - [`crate::jobs::webhooks`] claims due deliveries under a lease on any replica, signs and sends
//!   them, and retries on `SAASKIT_WEBHOOK_RETRY_SCHEDULE`.
//! - Endpoint secrets (`whsec_…`) are sealed at rest and shown once; after a rotation the old
//!   one signs alongside the new one for 24 hours.

pub mod catalogue;
pub mod guard;
pub mod signature;

use std::collections::{BTreeSet, HashMap};

use chrono::Duration;
use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;
use uuid::Uuid;

use crate::accounts::Principal;
use crate::app::App;
use crate::audit::{self, Action, Event};
use crate::db::{Conn, Timestamp};
use crate::domain::Permission;
use crate::store::webhooks::{self as store, Delivery, Endpoint};

pub use catalogue::{BUILTIN, EventType};

/// How long a rotated-out secret keeps signing beside the new one.
pub const ROTATION_OVERLAP: Duration = Duration::hours(24);
/// The most endpoints one business may register.
pub const MAX_ENDPOINTS: usize = 20;
/// The type of the event `POST /webhooks/{id}/test` sends (to that endpoint only).
pub const TEST_EVENT: &str = "webhook.test";

/// Woken when this replica queues deliveries, so the worker sends them at once.
pub static QUEUED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// An event about to be emitted: its type, the business it is about, and its `data`.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub business_id: Uuid,
    pub event_type: String,
    pub data: Value,
}

impl Outgoing {
    pub fn new(business_id: Uuid, event_type: &str, data: Value) -> Outgoing {
        Outgoing {
            business_id,
            event_type: event_type.to_owned(),
            data,
        }
    }
}

/// The body sent for an event: `{type, timestamp, data}`, as the specification recommends.
fn body(event_type: &str, at: Timestamp, data: &Value) -> String {
    json!({"type": event_type, "timestamp": at, "data": data}).to_string()
}

/// Emits one event on the caller's transaction: a delivery for each enabled endpoint of the
/// business that subscribes to its type. Call it where the change is made, before the commit.
pub async fn emit(
    c: Conn<'_>,
    now: Timestamp,
    business_id: Uuid,
    event_type: &str,
    data: Value,
) -> sqlx::Result<usize> {
    emit_many(c, now, &[Outgoing::new(business_id, event_type, data)]).await
}

/// [`emit`] for many events at once (the sweep's page): one query finds every subscriber.
pub async fn emit_many(
    mut c: Conn<'_>,
    now: Timestamp,
    events: &[Outgoing],
) -> sqlx::Result<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let businesses: BTreeSet<Uuid> = events.iter().map(|e| e.business_id).collect();
    let businesses: Vec<Uuid> = businesses.into_iter().collect();
    let mut by_business: HashMap<Uuid, Vec<(Uuid, Vec<String>)>> = HashMap::new();
    for (endpoint, business, types) in store::subscribers(c.reborrow(), &businesses).await? {
        let types: Vec<String> = serde_json::from_str(&types).unwrap_or_default();
        by_business
            .entry(business)
            .or_default()
            .push((endpoint, types));
    }
    if by_business.is_empty() {
        return Ok(0);
    }
    let mut deliveries = Vec::new();
    for event in events {
        let Some(endpoints) = by_business.get(&event.business_id) else {
            continue;
        };
        let mut text = None;
        for (endpoint, types) in endpoints {
            if !types.iter().any(|t| t == &event.event_type) {
                continue;
            }
            let text = text.get_or_insert_with(|| body(&event.event_type, now, &event.data));
            deliveries.push(new_delivery(*endpoint, event, text.clone(), now));
        }
    }
    store::insert_deliveries(c, &deliveries).await?;
    if !deliveries.is_empty() {
        QUEUED.notify_one();
    }
    Ok(deliveries.len())
}

/// The thresholds `quota.threshold_reached` reports, in percent of the limit.
pub const THRESHOLDS: [i64; 2] = [80, 100];

/// The use at which `percent` of `limit` is reached (rounded up: 80 % of 3 is 3).
pub fn threshold_use(limit: i64, percent: i64) -> i64 {
    (limit.saturating_mul(percent) + 99) / 100
}

/// Whether going from `before` to `after` units of `limit` crosses a threshold: the cheap
/// check before [`quota_thresholds`] touches the database.
pub fn crosses_threshold(before: i64, after: i64, limit: i64) -> bool {
    limit > 0
        && THRESHOLDS.iter().any(|p| {
            let at = threshold_use(limit, *p);
            before < at && after >= at
        })
}

/// Emits `quota.threshold_reached` for each threshold `(before, after, limit)` crosses that
/// was not reached yet this cycle (`period_start`).
pub async fn quota_thresholds(
    mut c: Conn<'_>,
    now: Timestamp,
    business_id: Uuid,
    meter: &str,
    period_start: Timestamp,
    (before, after, limit): (i64, i64, i64),
) -> sqlx::Result<()> {
    for percent in THRESHOLDS {
        let at = threshold_use(limit, percent);
        let mark = store::QuotaMark {
            business_id,
            meter: meter.to_owned(),
            period_start,
            threshold: percent,
            used: after,
            quota_limit: limit,
            created_at: now,
        };
        if limit > 0
            && before < at
            && after >= at
            && store::mark_threshold(c.reborrow(), &mark, Some(now)).await?
        {
            emit_many(c.reborrow(), now, &[threshold_event(&mark)]).await?;
        }
    }
    Ok(())
}

fn threshold_event(mark: &store::QuotaMark) -> Outgoing {
    Outgoing::new(
        mark.business_id,
        "quota.threshold_reached",
        json!({"business_id": mark.business_id, "meter": mark.meter, "threshold": mark.threshold,
               "used": mark.used, "limit": mark.quota_limit, "period_start": mark.period_start}),
    )
}

/// Emits the thresholds marked but not emitted yet (by the batched metered write, which marks
/// them in its own transaction and leaves the rest to this): right after such a write, and at
/// every pass of the worker, so none is lost to a process stopping in between.
pub async fn emit_waiting_marks(app: &App) -> anyhow::Result<usize> {
    let mut total = 0;
    // Asked first on a read: the claim is a write, and every worker pass comes here.
    if !store::any_waiting_marks(app.db.read().await?.conn()).await? {
        return Ok(total);
    }
    loop {
        let now = app.clock.now();
        let mut tx = app.db.begin().await?;
        let marks = store::claim_waiting_marks(tx.conn(), now, 100).await?;
        if marks.is_empty() {
            tx.commit_quietly().await?;
            return Ok(total);
        }
        let events: Vec<Outgoing> = marks.iter().map(threshold_event).collect();
        emit_many(tx.conn(), now, &events).await?;
        tx.commit_quietly().await?;
        total += marks.len();
    }
}

fn new_delivery(endpoint: Uuid, event: &Outgoing, body: String, now: Timestamp) -> Delivery {
    Delivery {
        id: Uuid::now_v7(),
        endpoint_id: endpoint,
        business_id: event.business_id,
        event_type: event.event_type.clone(),
        body,
        status: "pending".to_owned(),
        attempts: 0,
        next_attempt_at: now,
        last_attempt_at: None,
        response_status: None,
        response_body: None,
        duration_ms: None,
        last_error: None,
        created_at: now,
        delivered_at: None,
    }
}

/// The `webhook-id` of a delivery: the same on every attempt, so receivers can deduplicate.
pub fn message_id(delivery: Uuid) -> String {
    format!("msg_{}", delivery.simple())
}

/// What a sealed secret is bound to: its column and its endpoint.
pub(crate) fn secret_context(column: &str, endpoint: Uuid) -> Vec<u8> {
    let mut context = format!("webhook_endpoints.{column}:").into_bytes();
    context.extend_from_slice(endpoint.as_bytes());
    context
}

#[derive(Debug, Error)]
pub enum WebhookError {
    #[error("only owners and admins manage webhooks")]
    Forbidden,
    #[error("no such endpoint or delivery")]
    NotFound,
    /// Field problems: `(field, code, message)`.
    #[error("invalid request")]
    Invalid(Vec<(&'static str, &'static str, String)>),
    #[error("at most {MAX_ENDPOINTS} endpoints per business")]
    TooMany,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for WebhookError {
    fn from(err: sqlx::Error) -> Self {
        WebhookError::Unexpected(err.into())
    }
}

fn manager(principal: &Principal) -> Result<(), WebhookError> {
    match &principal.member {
        Some(m) if m.role.may(Permission::ManageWebhooks) => Ok(()),
        _ => Err(WebhookError::Forbidden),
    }
}

/// An endpoint as shown: never its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why it was disabled, when saaskit disabled it (`failing`: every attempt failed for 5 days).
    #[schema(required = true)]
    pub disabled_reason: Option<String>,
    /// Since when every attempt to it has failed (null: its last attempt succeeded).
    #[schema(required = true)]
    pub failing_since: Option<Timestamp>,
    /// Until when the secret replaced by the last rotation still signs (null: it does not).
    #[schema(required = true)]
    pub previous_secret_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl EndpointView {
    fn of(e: &Endpoint, now: Timestamp) -> EndpointView {
        EndpointView {
            id: e.id,
            url: e.url.clone(),
            description: e.description.clone(),
            events: serde_json::from_str(&e.events).unwrap_or_default(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            failing_since: e.failing_since,
            previous_secret_expires_at: e.previous_secret_expires_at.filter(|at| *at > now),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its signing secret, shown this once (at creation and rotation).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// The signing secret (`whsec_…`), shown this once: give it to your Standard Webhooks
    /// library to verify `webhook-signature`.
    pub secret: String,
}

/// What a caller asks to create or change; `None` leaves a field as it is (on a change).
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Checks a change's fields; the URL against the address rules (see [`guard`]).
async fn check_change(
    app: &App,
    change: &EndpointChange,
) -> Result<Option<reqwest::Url>, WebhookError> {
    let mut problems = Vec::new();
    let mut url = None;
    if let Some(raw) = &change.url {
        match guard::check_url(raw, app.config.webhook_allow_private).await {
            Ok(u) => url = Some(u),
            Err(problem) => problems.push(("url", url_problem_code(&problem), problem.to_string())),
        }
    }
    if let Some(events) = &change.events {
        let known = catalogue::event_types(&app.products);
        let unknown: Vec<&str> = events
            .iter()
            .filter(|e| !known.iter().any(|k| k.name == e.as_str()))
            .map(String::as_str)
            .collect();
        if events.is_empty() {
            problems.push((
                "events",
                "invalid_events",
                "Name at least one event type.".to_owned(),
            ));
        } else if !unknown.is_empty() {
            problems.push((
                "events",
                "unknown_event_type",
                format!(
                    "Unknown event types: {}. GET /api/v1/webhooks/event-types lists them.",
                    unknown.join(", ")
                ),
            ));
        }
    }
    if let Some(d) = &change.description
        && (d.chars().count() > 500 || crate::domain::has_control_chars(d))
    {
        problems.push((
            "description",
            "invalid_description",
            "At most 500 characters, without control or invisible formatting characters."
                .to_owned(),
        ));
    }
    if problems.is_empty() {
        Ok(url)
    } else {
        Err(WebhookError::Invalid(problems))
    }
}

fn url_problem_code(problem: &guard::UrlProblem) -> &'static str {
    match problem {
        guard::UrlProblem::Forbidden(_) => "forbidden_address",
        guard::UrlProblem::SchemeNotAllowed => "https_required",
        _ => "invalid_url",
    }
}

fn events_json(events: &[String]) -> String {
    let unique: BTreeSet<&str> = events.iter().map(String::as_str).collect();
    serde_json::to_string(&unique).unwrap_or_else(|_| "[]".to_owned())
}

/// Registers an endpoint for the caller's business; its secret is in the answer only.
pub async fn create_endpoint(
    app: &App,
    principal: &Principal,
    change: EndpointChange,
) -> Result<EndpointWithSecret, WebhookError> {
    manager(principal)?;
    let url = check_change(app, &change).await?.ok_or_else(|| {
        WebhookError::Invalid(vec![(
            "url",
            "required",
            "This field is required.".to_owned(),
        )])
    })?;
    let events = change.events.unwrap_or_default();
    let now = app.clock.now();
    let id = Uuid::now_v7();
    let secret = signature::new_secret();
    let endpoint = Endpoint {
        id,
        business_id: principal.business_id,
        url: url.to_string(),
        description: change.description.unwrap_or_default(),
        events: events_json(&events),
        enabled: change.enabled.unwrap_or(true),
        secret: app.sealer.seal(&secret, &secret_context("secret", id)),
        previous_secret: None,
        previous_secret_expires_at: None,
        failing_since: None,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    let mut tx = app.db.begin().await?;
    if store::list_endpoints(tx.conn(), principal.business_id)
        .await?
        .len()
        >= MAX_ENDPOINTS
    {
        return Err(WebhookError::TooMany);
    }
    store::insert_endpoint(tx.conn(), &endpoint).await?;
    let event = Event::by(Action::WebhookCreated, principal)
        .target("webhook", id)
        .details(json!({"url": endpoint.url, "events": events}));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(EndpointWithSecret {
        endpoint: EndpointView::of(&endpoint, now),
        secret,
    })
}

pub async fn list_endpoints(
    app: &App,
    principal: &Principal,
) -> Result<Vec<EndpointView>, WebhookError> {
    manager(principal)?;
    let now = app.clock.now();
    let mut tx = app.db.read().await?;
    let all = store::list_endpoints(tx.conn(), principal.business_id).await?;
    Ok(all.iter().map(|e| EndpointView::of(e, now)).collect())
}

pub async fn get_endpoint(
    app: &App,
    principal: &Principal,
    id: Uuid,
) -> Result<EndpointView, WebhookError> {
    manager(principal)?;
    let mut tx = app.db.read().await?;
    let e = store::find_endpoint(tx.conn(), principal.business_id, id)
        .await?
        .ok_or(WebhookError::NotFound)?;
    Ok(EndpointView::of(&e, app.clock.now()))
}

/// Changes an endpoint's URL, events, description or whether it is enabled. Enabling one that
/// was disabled clears why, and its pending deliveries go out again.
pub async fn update_endpoint(
    app: &App,
    principal: &Principal,
    id: Uuid,
    change: EndpointChange,
) -> Result<EndpointView, WebhookError> {
    manager(principal)?;
    let url = check_change(app, &change).await?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let mut e = store::find_endpoint(tx.conn(), principal.business_id, id)
        .await?
        .ok_or(WebhookError::NotFound)?;
    if let Some(url) = url {
        e.url = url.to_string();
    }
    if let Some(events) = &change.events {
        e.events = events_json(events);
    }
    if let Some(description) = change.description {
        e.description = description;
    }
    let reenabled = change.enabled == Some(true) && !e.enabled;
    if let Some(enabled) = change.enabled {
        if reenabled {
            e.disabled_reason = None;
            e.failing_since = None;
        }
        e.enabled = enabled;
    }
    if reenabled {
        // What waited goes out now, not at the retry time it had.
        let lease = Duration::seconds(
            i64::try_from(app.config.webhook_lease_secs).unwrap_or(i64::MAX / 1_000_000),
        );
        store::make_pending_due(tx.conn(), id, now, now.plus(-lease)).await?;
    }
    e.updated_at = now;
    store::update_endpoint(tx.conn(), &e).await?;
    let event = Event::by(Action::WebhookUpdated, principal)
        .target("webhook", id)
        .details(json!({"url": e.url, "enabled": e.enabled}));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    if e.enabled {
        QUEUED.notify_one();
    }
    Ok(EndpointView::of(&e, now))
}

/// Removes an endpoint with its deliveries.
pub async fn delete_endpoint(
    app: &App,
    principal: &Principal,
    id: Uuid,
) -> Result<(), WebhookError> {
    manager(principal)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    if !store::delete_endpoint(tx.conn(), principal.business_id, id).await? {
        return Err(WebhookError::NotFound);
    }
    let event = Event::by(Action::WebhookDeleted, principal).target("webhook", id);
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(())
}

/// Gives an endpoint a new secret; the old one keeps signing beside it for 24 hours.
pub async fn rotate_secret(
    app: &App,
    principal: &Principal,
    id: Uuid,
) -> Result<EndpointWithSecret, WebhookError> {
    manager(principal)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let mut e = store::find_endpoint(tx.conn(), principal.business_id, id)
        .await?
        .ok_or(WebhookError::NotFound)?;
    let old = app
        .sealer
        .open(&e.secret, &secret_context("secret", id))
        .map_err(|err| anyhow::anyhow!("opening the endpoint's secret: {err}"))?;
    let secret = signature::new_secret();
    e.secret = app.sealer.seal(&secret, &secret_context("secret", id));
    e.previous_secret = Some(
        app.sealer
            .seal(&old, &secret_context("previous_secret", id)),
    );
    e.previous_secret_expires_at = Some(now.plus(ROTATION_OVERLAP));
    e.updated_at = now;
    store::update_endpoint(tx.conn(), &e).await?;
    let event = Event::by(Action::WebhookSecretRotated, principal).target("webhook", id);
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(EndpointWithSecret {
        endpoint: EndpointView::of(&e, now),
        secret,
    })
}

/// The secrets that sign a delivery to `e` now: the current one, and the previous one during
/// its overlap.
pub fn signing_secrets(app: &App, e: &Endpoint, now: Timestamp) -> anyhow::Result<Vec<String>> {
    let mut secrets = vec![
        app.sealer
            .open(&e.secret, &secret_context("secret", e.id))
            .map_err(|err| anyhow::anyhow!("opening the endpoint's secret: {err}"))?,
    ];
    if let (Some(previous), Some(until)) = (&e.previous_secret, e.previous_secret_expires_at)
        && until > now
    {
        secrets.push(
            app.sealer
                .open(previous, &secret_context("previous_secret", e.id))
                .map_err(|err| anyhow::anyhow!("opening the endpoint's previous secret: {err}"))?,
        );
    }
    Ok(secrets)
}

/// Queues a `webhook.test` event for one endpoint (whatever events it subscribes to).
pub async fn send_test(
    app: &App,
    principal: &Principal,
    id: Uuid,
) -> Result<DeliveryView, WebhookError> {
    manager(principal)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let e = store::find_endpoint(tx.conn(), principal.business_id, id)
        .await?
        .ok_or(WebhookError::NotFound)?;
    let event = Outgoing::new(
        principal.business_id,
        TEST_EVENT,
        json!({"business_id": principal.business_id, "endpoint_id": e.id,
               "message": "A test event sent from saaskit."}),
    );
    let delivery = new_delivery(e.id, &event, body(TEST_EVENT, now, &event.data), now);
    store::insert_deliveries(tx.conn(), std::slice::from_ref(&delivery)).await?;
    tx.commit().await?;
    QUEUED.notify_one();
    Ok(DeliveryView::of(&delivery))
}

/// A delivery as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    /// The `webhook-id` header it is sent with, the same on every attempt.
    pub webhook_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    /// When the next attempt is due (pending only).
    #[schema(required = true)]
    pub next_attempt_at: Option<Timestamp>,
    #[schema(required = true)]
    pub last_attempt_at: Option<Timestamp>,
    /// The status code of the last attempt's answer (null: no answer).
    #[schema(required = true)]
    pub response_status: Option<i64>,
    /// The start of that answer's body (up to 64 KiB).
    #[schema(required = true)]
    pub response_body: Option<String>,
    #[schema(required = true)]
    pub duration_ms: Option<i64>,
    /// Why the last attempt failed, when it did.
    #[schema(required = true)]
    pub error: Option<String>,
    /// The body sent, as sent.
    pub payload: Value,
    pub created_at: Timestamp,
    #[schema(required = true)]
    pub delivered_at: Option<Timestamp>,
}

impl DeliveryView {
    fn of(d: &Delivery) -> DeliveryView {
        DeliveryView {
            id: d.id,
            webhook_id: message_id(d.id),
            event_type: d.event_type.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
            last_attempt_at: d.last_attempt_at,
            response_status: d.response_status,
            response_body: d.response_body.clone(),
            duration_ms: d.duration_ms,
            error: d.last_error.clone(),
            payload: serde_json::from_str(&d.body).unwrap_or(Value::Null),
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// A page of an endpoint's deliveries, newest first, and the cursor of the next page.
pub async fn list_deliveries(
    app: &App,
    principal: &Principal,
    endpoint: Uuid,
    filter: &DeliveryFilter,
) -> Result<(Vec<DeliveryView>, Option<Uuid>), WebhookError> {
    manager(principal)?;
    let mut tx = app.db.read().await?;
    store::find_endpoint(tx.conn(), principal.business_id, endpoint)
        .await?
        .ok_or(WebhookError::NotFound)?;
    let mut page = store::list_deliveries(
        tx.conn(),
        endpoint,
        filter.status.as_deref(),
        filter.event_type.as_deref(),
        filter.before,
        filter.limit + 1,
    )
    .await?;
    let more = page.len() as i64 > filter.limit;
    page.truncate(filter.limit.max(0) as usize);
    let next = if more {
        page.last().map(|d| d.id)
    } else {
        None
    };
    Ok((page.iter().map(DeliveryView::of).collect(), next))
}

/// Sends a delivery again now, whatever became of it.
pub async fn retry_delivery(
    app: &App,
    principal: &Principal,
    endpoint: Uuid,
    id: Uuid,
) -> Result<DeliveryView, WebhookError> {
    manager(principal)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    store::find_endpoint(tx.conn(), principal.business_id, endpoint)
        .await?
        .ok_or(WebhookError::NotFound)?;
    if !store::retry_delivery(tx.conn(), endpoint, id, now).await? {
        return Err(WebhookError::NotFound);
    }
    let d = store::find_delivery(tx.conn(), endpoint, id)
        .await?
        .ok_or(WebhookError::NotFound)?;
    tx.commit().await?;
    QUEUED.notify_one();
    Ok(DeliveryView::of(&d))
}

/// Seals every endpoint's secrets under the current key (after a key rotation); returns how
/// many endpoints changed. Each batch is its own transaction.
pub async fn reseal_secrets(
    db: &crate::db::Db,
    sealer: &crate::seal::Sealer,
) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    let mut changed = 0;
    let mut after = None;
    loop {
        let mut tx = db.begin().await?;
        let batch = store::sealed_secrets(tx.conn(), after, 100).await?;
        let Some(last) = batch.last() else {
            tx.commit_quietly().await?;
            return Ok(changed);
        };
        after = Some(last.0);
        for (id, secret, previous) in &batch {
            let secret = sealer
                .reseal(secret, &secret_context("secret", *id))
                .with_context(|| format!("webhook endpoint {id}: secret"))?;
            let previous = match previous {
                Some(p) => sealer
                    .reseal(p, &secret_context("previous_secret", *id))
                    .with_context(|| format!("webhook endpoint {id}: previous secret"))?,
                None => None,
            };
            if secret.is_some() || previous.is_some() {
                store::replace_secrets(tx.conn(), *id, secret.as_deref(), previous.as_deref())
                    .await?;
                changed += 1;
            }
        }
        tx.commit_quietly().await?;
    }
}

/// How many endpoints hold a secret not sealed under the current key.
pub async fn unsealed_or_old(
    db: &crate::db::Db,
    sealer: &crate::seal::Sealer,
) -> anyhow::Result<u64> {
    let mut count = 0;
    let mut after = None;
    loop {
        let mut tx = db.read().await?;
        let batch = store::sealed_secrets(tx.conn(), after, 500).await?;
        let Some(last) = batch.last() else {
            return Ok(count);
        };
        after = Some(last.0);
        count += batch
            .iter()
            .filter(|(_, s, p)| {
                !sealer.is_current(s) || p.as_ref().is_some_and(|p| !sealer.is_current(p))
            })
            .count() as u64;
    }
}
