//! The event catalogue: every event type an endpoint may subscribe to, what it means and the
//! shape of its `data`. saaskit's own types are listed here; products add theirs with
//! [`crate::product::Product::event_type`] (a resource of the toolkit adds
//! `<singular>.created`, `.updated` and `.deleted` by itself).

use serde::Serialize;
use serde_json::{Value, json};

use crate::product::Products;

/// One event type.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventType {
    /// `member.joined`, …
    pub name: String,
    pub description: String,
    /// A JSON Schema of the event's `data`.
    #[schema(value_type = Object)]
    pub data: Value,
}

fn ts() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn id() -> Value {
    json!({"type": "string", "format": "uuid"})
}

fn object(properties: Value) -> Value {
    let required: Vec<String> = properties
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    json!({"type": "object", "properties": properties, "required": required})
}

fn member() -> Value {
    object(json!({
        "business_id": id(),
        "member_id": id(),
        "user_id": id(),
        "email": {"type": "string"},
        "role": {"type": "string", "enum": ["owner", "admin", "member", "bot"]},
    }))
}

fn subscription() -> Value {
    object(json!({
        "subscription_id": id(),
        "plan": {"type": "string"},
        "status": {"type": "string", "enum": ["trialing", "active", "past_due", "canceled", "expired"]},
        "current_period_start": ts(),
        "current_period_end": ts(),
        "cancel_at_period_end": {"type": "boolean"},
    }))
}

fn subscription_event() -> Value {
    let mut previous = subscription();
    previous["type"] = json!(["object", "null"]);
    object(json!({
        "business_id": id(),
        "subscription": subscription(),
        "previous": previous,
    }))
}

fn api_key() -> Value {
    object(json!({
        "business_id": id(),
        "api_key": object(json!({"id": id(), "name": {"type": ["string", "null"]}, "prefix": {"type": "string"}})),
    }))
}

fn payment_event() -> Value {
    object(json!({
        "business_id": id(),
        "payment": object(json!({
            "id": id(),
            "purpose": {"type": "string", "enum": ["top_up", "renewal", "plan_change"]},
            "amount": {"type": "integer"},
            "currency": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "requires_action", "succeeded", "failed"]},
            "provider_payment_id": {"type": ["string", "null"]},
            "decline_code": {"type": ["string", "null"]},
        })),
        // What this event moved in the ledger (minor units; negative for a refund or an
        // opened dispute).
        "amount": {"type": "integer"},
    }))
}

/// A JSON Schema, made when asked for.
type SchemaFn = fn() -> Value;

/// saaskit's own event types: `(name, description, data schema)`.
pub const BUILTIN: &[(&str, &str, SchemaFn)] = &[
    (
        "member.joined",
        "Someone joined the business (an invitation accepted).",
        member,
    ),
    (
        "member.removed",
        "A member left or was removed; `reason` says which.",
        || {
            object(json!({
                "business_id": id(), "member_id": id(), "user_id": id(),
                "role": {"type": "string"},
                "reason": {"type": "string", "enum": ["removed", "left"]},
            }))
        },
    ),
    (
        "member.role_changed",
        "A member's role changed (ownership transfers change two).",
        || {
            object(json!({
                "business_id": id(), "member_id": id(), "user_id": id(),
                "role": {"type": "string"}, "previous_role": {"type": "string"},
            }))
        },
    ),
    ("invitation.accepted", "An invitation was accepted.", || {
        object(json!({
            "business_id": id(), "invitation_id": id(), "user_id": id(),
            "email": {"type": "string"}, "role": {"type": "string"},
        }))
    }),
    (
        "subscription.changed",
        "The plan changed (by a member, staff or a fallback), or a cancellation was withdrawn.",
        subscription_event,
    ),
    (
        "subscription.renewed",
        "A new billing period began.",
        subscription_event,
    ),
    (
        "subscription.past_due",
        "A renewal could not be paid; the grace period began.",
        subscription_event,
    ),
    (
        "subscription.expired",
        "The subscription ended unpaid, or a plan that does not renew ran out.",
        subscription_event,
    ),
    (
        "subscription.canceled",
        "The subscription was set to end at its period's end, or ended so.",
        subscription_event,
    ),
    (
        "quota.threshold_reached",
        "A limited meter reached 80 % or 100 % of its limit: once per meter, threshold and cycle.",
        || {
            object(json!({
                "business_id": id(), "meter": {"type": "string"},
                "threshold": {"type": "integer", "enum": [80, 100]},
                "used": {"type": "integer"}, "limit": {"type": "integer"},
                "period_start": ts(),
            }))
        },
    ),
    ("api_key.created", "An API key was created.", api_key),
    ("api_key.revoked", "An API key was revoked.", api_key),
    (
        "payment.succeeded",
        "A card payment succeeded and its amount was credited.",
        payment_event,
    ),
    (
        "payment.failed",
        "A card payment was declined (`decline_code` says why).",
        payment_event,
    ),
    (
        "payment.refunded",
        "Part or all of a card payment was refunded and taken from the credits.",
        payment_event,
    ),
    (
        "payment.disputed",
        "A card payment was disputed (its amount taken from the credits), or a dispute was won \
         (given back: a positive `amount`).",
        payment_event,
    ),
];

/// Every event type of saaskit and the registered products, in a stable order.
pub fn event_types(products: &Products) -> Vec<EventType> {
    BUILTIN
        .iter()
        .map(|(name, description, data)| EventType {
            name: (*name).to_owned(),
            description: (*description).to_owned(),
            data: data(),
        })
        .chain(products.event_types().iter().cloned())
        .collect()
}

/// The event types a resource of the toolkit emits: created and updated carry the item as its
/// routes show it, deleted its id.
pub fn resource_events(singular: &str, item: Value) -> Vec<EventType> {
    let article = if singular.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "An"
    } else {
        "A"
    };
    let noun = singular.replace('_', " ");
    let with_item = object(json!({"business_id": id(), singular: item}));
    vec![
        EventType {
            name: format!("{singular}.created"),
            description: format!("{article} {noun} was created."),
            data: with_item.clone(),
        },
        EventType {
            name: format!("{singular}.updated"),
            description: format!("{article} {noun} was changed."),
            data: with_item,
        },
        EventType {
            name: format!("{singular}.deleted"),
            description: format!("{article} {noun} was deleted."),
            data: object(json!({"business_id": id(), "id": id()})),
        },
    ]
}

/// Puts the catalogue in the OpenAPI document: the event types an endpoint may name become the
/// enum of `events` in the requests that set them, and each type's delivery body a schema of
/// its own, `WebhookEvent.<type>` (`{type, timestamp, data}`).
pub fn describe(products: &Products, document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, schema::Schema};
    let all = event_types(products);
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    let Some(components) = document.components.as_mut() else {
        return;
    };
    for request in ["CreateWebhookRequest", "UpdateWebhookRequest"] {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(request)
            && let Some(RefOr::T(Schema::Array(events))) = object.properties.get_mut("events")
            && let utoipa::openapi::schema::ArrayItems::RefOrSchema(items) = &mut events.items
            && let RefOr::T(Schema::Object(item)) = items.as_mut()
        {
            item.enum_values = Some(names.iter().map(|n| Value::from(*n)).collect());
        }
    }
    for event in &all {
        let body = json!({
            "type": "object",
            "description": event.description,
            "properties": {
                "type": {"type": "string", "enum": [event.name]},
                "timestamp": ts(),
                "data": event.data,
            },
            "required": ["type", "timestamp", "data"],
        });
        match serde_json::from_value::<RefOr<Schema>>(body) {
            Ok(schema) => {
                components
                    .schemas
                    .insert(format!("WebhookEvent.{}", event.name), schema);
            }
            Err(err) => {
                tracing::error!(event = %event.name, error = %err, "an event schema does not fit the document")
            }
        }
    }
}
