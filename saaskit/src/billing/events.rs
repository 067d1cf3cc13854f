//! Lifecycle events: every transition of a subscription, with its actor and the state before
//! and after. Later work publishes these as webhooks.

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

pub async fn record(
    tx: &mut Tx,
    sub: &Subscription,
    kind: &str,
    actor: Actor,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    at: Timestamp,
) -> sqlx::Result<()> {
    events::insert(
        tx.conn(),
        &Event {
            id: Uuid::now_v7(),
            business_id: sub.business_id,
            subscription_id: Some(sub.id),
            kind: kind.to_owned(),
            actor_kind: actor.kind().to_owned(),
            actor_id: actor.id(),
            before: before.map(|v| v.to_string()),
            after: after.map(|v| v.to_string()),
            created_at: at,
        },
    )
    .await
}
