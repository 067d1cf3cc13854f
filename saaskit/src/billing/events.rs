//! Lifecycle events: every transition of a subscription, with its actor and the state before
//! and after. Those a business's systems care about are published as webhooks
//! (`subscription.*`) on the same transaction: record them through [`record`] or
//! [`record_many`], never the store directly.

use serde_json::json;
use uuid::Uuid;

use crate::db::{Timestamp, Tx};
use crate::store::events::{self, Event};
use crate::store::subscriptions::Subscription;

/// Who caused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(Uuid),
    /// A staff member through the admin API, or an operator through the CLI (no user).
    Admin(Option<Uuid>),
    /// The renewal sweep.
    System,
}

impl Actor {
    pub fn kind(self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::Admin(_) => "admin",
            Actor::System => "system",
        }
    }

    pub fn id(self) -> Option<Uuid> {
        match self {
            Actor::User(id) => Some(id),
            Actor::Admin(id) => id,
            Actor::System => None,
        }
    }
}

/// The part of a subscription an event shows.
pub fn snapshot(sub: &Subscription, plan_code: &str) -> serde_json::Value {
    json!({
        "subscription_id": sub.id,
        "plan": plan_code,
        "status": sub.status,
        "current_period_start": sub.current_period_start,
        "current_period_end": sub.current_period_end,
        "cancel_at_period_end": sub.cancel_at_period_end,
    })
}

/// The webhook a lifecycle event is published as, if any.
fn webhook_type(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "plan_changed" | "resumed" => "subscription.changed",
        "renewed" => "subscription.renewed",
        "past_due" => "subscription.past_due",
        "expired" => "subscription.expired",
        "canceled" | "cancel_scheduled" => "subscription.canceled",
        _ => return None,
    })
}

fn outgoing(e: &Event) -> Option<crate::webhooks::Outgoing> {
    let event_type = webhook_type(&e.kind)?;
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    Some(crate::webhooks::Outgoing::new(
        e.business_id,
        event_type,
        json!({"business_id": e.business_id, "subscription": parse(&e.after),
               "previous": parse(&e.before)}),
    ))
}

/// Stores many lifecycle events and publishes those that are webhooks, in one statement each.
pub async fn record_many(tx: &mut Tx, logged: &[Event], now: Timestamp) -> sqlx::Result<()> {
    events::insert_many(tx.conn(), logged).await?;
    let outgoing: Vec<_> = logged.iter().filter_map(outgoing).collect();
    crate::webhooks::emit_many(tx.conn(), now, &outgoing).await?;
    Ok(())
}

pub async fn record(
    tx: &mut Tx,
    sub: &Subscription,
    kind: &str,
    actor: Actor,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    at: Timestamp,
) -> sqlx::Result<()> {
    let event = Event {
        id: Uuid::now_v7(),
        business_id: sub.business_id,
        subscription_id: Some(sub.id),
        kind: kind.to_owned(),
        actor_kind: actor.kind().to_owned(),
        actor_id: actor.id(),
        before: before.map(|v| v.to_string()),
        after: after.map(|v| v.to_string()),
        created_at: at,
    };
    events::insert(tx.conn(), &event).await?;
    if let Some(outgoing) = outgoing(&event) {
        crate::webhooks::emit_many(tx.conn(), at, &[outgoing]).await?;
    }
    Ok(())
}
