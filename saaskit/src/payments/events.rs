//! Stripe's events at `POST /webhooks/stripe`: the signature checked, each event applied once
//! (its id stored in the transaction that applies it), out-of-order deliveries harmless (a
//! payment's state only moves forward, and every ledger effect names the provider fact it
//! records), unknown types acknowledged and ignored.
//!
//! - `payment_intent.succeeded` / `payment_intent.payment_failed` (and `…requires_action`,
//!   `…processing`): the outcome of a payment that settled after its request was answered
//!   (3-D Secure, a slow network), or the echo of one already recorded.
//! - `charge.refunded`: the charge's refunded total; what it adds to the refunds already
//!   recorded becomes one `refund` entry (negative).
//! - `charge.dispute.*`: a dispute opened takes its amount back (`dispute` entry, negative), flags
//!   the business and mails its owners and the staff; one closed as won gives it back.

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::signature::{self, SignatureError};
use super::stripe;
use super::{PROVIDER, record_outcome};
use crate::app::App;
use crate::audit::{self, Action, Actor, Event};
use crate::db::{Timestamp, Tx};
use crate::store::payments::{self as store, Payment, ProviderEntry};
use crate::store::{businesses, members};

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("Stripe events are not configured (SAASKIT_STRIPE_WEBHOOK_SECRET)")]
    NotConfigured,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the body is not a Stripe event: {0}")]
    Malformed(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ReceiveError {
    fn from(err: sqlx::Error) -> Self {
        ReceiveError::Unexpected(err.into())
    }
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Applied,
    /// Seen before: nothing done.
    Duplicate,
    /// A type saaskit does not act on, or about something it does not know.
    Ignored,
}

#[derive(Debug, Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Value,
}

/// Checks and applies one delivery.
pub async fn receive(
    app: &App,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<Received, ReceiveError> {
    let secrets = app
        .payments
        .as_ref()
        .map(|p| p.webhook_secrets.as_slice())
        .filter(|s| !s.is_empty())
        .ok_or(ReceiveError::NotConfigured)?;
    let now = app.clock.now();
    let header = signature_header.ok_or(SignatureError::Malformed)?;
    signature::verify(header, body, secrets, now.as_datetime().timestamp())?;
    let event: StripeEvent =
        serde_json::from_slice(body).map_err(|e| ReceiveError::Malformed(e.to_string()))?;
    let mut tx = app.db.begin().await?;
    if !store::insert_event(
        tx.conn(),
        &event.id,
        PROVIDER,
        &event.kind,
        event.created,
        now,
    )
    .await?
    {
        return Ok(Received::Duplicate);
    }
    let object = &event.data.object;
    let applied = match event.kind.as_str() {
        "payment_intent.succeeded"
        | "payment_intent.payment_failed"
        | "payment_intent.requires_action"
        | "payment_intent.processing" => {
            payment_intent(app, &mut tx, object, event.created, now).await?
        }
        "charge.refunded" => refunded(&mut tx, object, now).await?,
        kind if kind.starts_with("charge.dispute.") => dispute(app, &mut tx, object, now).await?,
        _ => false,
    };
    tx.commit().await?;
    app.mail_queued.notify_one();
    if applied {
        tracing::info!(event_id = %event.id, event_type = %event.kind, "Stripe event applied");
        Ok(Received::Applied)
    } else {
        Ok(Received::Ignored)
    }
}

/// The payment an object belongs to: by our id in its metadata, else by the provider's ids.
/// Its row is locked (PostgreSQL) or the write lock held (SQLite) for the rest of `tx`, so two
/// events about one payment apply one after the other.
async fn payment_of(
    tx: &mut Tx,
    ids: &[Option<&str>],
    metadata: Option<&str>,
    now: Timestamp,
) -> anyhow::Result<Option<Payment>> {
    let mut found = None;
    if let Some(id) = metadata.and_then(|m| Uuid::parse_str(m).ok()) {
        found = store::find_payment(tx.conn(), id).await?;
    }
    for id in ids.iter().flatten() {
        if found.is_some() {
            break;
        }
        found = store::find_by_provider_id(tx.conn(), id).await?;
    }
    let Some(payment) = found else {
        return Ok(None);
    };
    // Take the row (an update that changes nothing but the time), then read it again.
    store::add_to_total(tx.conn(), payment.id, 0, 0, now).await?;
    Ok(store::find_payment(tx.conn(), payment.id).await?)
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// An id field that may be expanded into an object.
fn id_at<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    match value.get(name) {
        Some(Value::String(id)) => Some(id),
        Some(object) => object.get("id").and_then(Value::as_str),
        None => None,
    }
}

async fn payment_intent(
    app: &App,
    tx: &mut Tx,
    intent: &Value,
    created: i64,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let id = str_at(intent, "/id").context("the payment intent's id")?;
    let Some(payment) = payment_of(
        tx,
        &[Some(id)],
        str_at(intent, "/metadata/saaskit_payment_id"),
        now,
    )
    .await?
    else {
        return Ok(false);
    };
    // `payment_failed`'s intent waits for another card (`requires_payment_method`): a decline.
    let outcome = stripe::intent_outcome(intent)?;
    record_outcome(app, tx, &payment, &outcome, Some(created), now).await
}

async fn refunded(tx: &mut Tx, charge: &Value, now: Timestamp) -> anyhow::Result<bool> {
    let charge_id = str_at(charge, "/id").context("the charge's id")?;
    let Some(payment) = payment_of(
        tx,
        &[id_at(charge, "payment_intent"), Some(charge_id)],
        str_at(charge, "/metadata/saaskit_payment_id"),
        now,
    )
    .await?
    else {
        return Ok(false);
    };
    let total = charge
        .get("amount_refunded")
        .and_then(Value::as_i64)
        .context("the charge's refunded amount")?
        .min(payment.amount);
    // An older event (a smaller total) after a newer one adds nothing.
    let added = total - payment.refunded_amount;
    if added <= 0 {
        return Ok(false);
    }
    let recorded = store::insert_entry(
        tx.conn(),
        &ProviderEntry {
            id: Uuid::now_v7(),
            business_id: payment.business_id,
            kind: "refund",
            amount: -added,
            currency: payment.currency.clone(),
            note: "Refund of a card payment".into(),
            payment_id: payment.id,
            provider_ref: format!("{PROVIDER}:refunded:{charge_id}:{total}"),
            created_at: now,
        },
    )
    .await?;
    if !recorded {
        return Ok(false);
    }
    store::add_to_total(tx.conn(), payment.id, added, 0, now).await?;
    let event = Event::new(Action::PaymentRefunded, Actor::System)
        .business(payment.business_id)
        .target("payment", payment.id)
        .details(json!({"amount": added, "refunded_total": total, "currency": payment.currency}));
    audit::record(tx.conn(), now, event).await?;
    super::emit(
        tx,
        &payment,
        "payment.refunded",
        &payment.status,
        -added,
        None,
        None,
        now,
    )
    .await?;
    Ok(true)
}

/// Dispute statuses that are only an inquiry or a warning: no money has moved.
const NO_FUNDS_MOVED: [&str; 3] = [
    "warning_needs_response",
    "warning_under_review",
    "warning_closed",
];

async fn dispute(app: &App, tx: &mut Tx, d: &Value, now: Timestamp) -> anyhow::Result<bool> {
    let id = str_at(d, "/id").context("the dispute's id")?;
    let status = str_at(d, "/status").unwrap_or_default();
    if NO_FUNDS_MOVED.contains(&status) {
        return Ok(false);
    }
    let Some(payment) = payment_of(
        tx,
        &[id_at(d, "payment_intent"), id_at(d, "charge")],
        None,
        now,
    )
    .await?
    else {
        return Ok(false);
    };
    let amount = d
        .get("amount")
        .and_then(Value::as_i64)
        .context("the dispute's amount")?
        .clamp(0, payment.amount);
    let entry = |kind_ref: &str, amount: i64, note: &str| ProviderEntry {
        id: Uuid::now_v7(),
        business_id: payment.business_id,
        kind: "dispute",
        amount,
        currency: payment.currency.clone(),
        note: note.into(),
        payment_id: payment.id,
        provider_ref: format!("{PROVIDER}:dispute:{id}:{kind_ref}"),
        created_at: now,
    };
    let mut changed = false;
    // Whatever event arrives first (a `closed` may overtake its `created`), the opening is
    // recorded once, and a win gives the amount back once.
    if store::insert_entry(
        tx.conn(),
        &entry("opened", -amount, "A card payment was disputed"),
    )
    .await?
    {
        changed = true;
        store::add_to_total(tx.conn(), payment.id, 0, amount, now).await?;
        let reason = str_at(d, "/reason").unwrap_or("general");
        let event = Event::new(Action::PaymentDisputed, Actor::System)
            .business(payment.business_id)
            .target("payment", payment.id)
            .details(json!({"dispute": id, "amount": amount, "reason": reason, "currency": payment.currency}));
        audit::record(tx.conn(), now, event).await?;
        store::flag(
            tx.conn(),
            payment.business_id,
            &format!("dispute {id}"),
            now,
        )
        .await?;
        super::emit(
            tx,
            &payment,
            "payment.disputed",
            &payment.status,
            -amount,
            None,
            None,
            now,
        )
        .await?;
        mail_disputed(app, tx, &payment, amount, reason, now).await?;
    }
    if status == "won"
        && store::insert_entry(
            tx.conn(),
            &entry("won", amount, "A disputed card payment was won"),
        )
        .await?
    {
        changed = true;
        store::add_to_total(tx.conn(), payment.id, 0, -amount, now).await?;
        super::emit(
            tx,
            &payment,
            "payment.disputed",
            &payment.status,
            amount,
            None,
            None,
            now,
        )
        .await?;
    }
    Ok(changed)
}

async fn mail_disputed(
    app: &App,
    tx: &mut Tx,
    payment: &Payment,
    amount: i64,
    reason: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let business = businesses::find(tx.conn(), payment.business_id)
        .await?
        .context("the payment's business")?;
    let mut to: Vec<String> = members::list_active(tx.conn(), payment.business_id)
        .await?
        .into_iter()
        .filter(|m| m.role == "owner")
        .map(|m| m.email)
        .collect();
    to.extend(store::staff_emails(tx.conn()).await?);
    to.sort();
    to.dedup();
    let amount = crate::web::format::money(amount, &payment.currency);
    let reason = reason.replace('_', " ");
    let link = format!("{}/billing", app.config.public_base());
    for address in to {
        let rendered = crate::mail::PaymentDisputed {
            business_name: &business.name,
            amount: &amount,
            reason: &reason,
            link: &link,
        }
        .render()?;
        crate::mail::enqueue(tx, &app.mailer, &address, rendered, now).await?;
    }
    Ok(())
}
