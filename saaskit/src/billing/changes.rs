//! Plan changes a business makes itself: upgrade now (prorated), downgrade or cancel at the end
//! of the period (and undo either before it happens), and a dry run of any change.

use chrono::Duration;
use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use super::events::{self, Actor};
use super::proration::unused_credit;
use crate::accounts::Principal;
use crate::app::App;
use crate::audit::{self, Action, Event};
use crate::db::{Timestamp, Tx};
use crate::domain::Permission;
use crate::store::ledger::{self, LedgerEntry};
use crate::store::plans::{self, Plan};
use crate::store::subscriptions::{self, Subscription};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Now,
    PeriodEnd,
}

#[derive(Debug, Error)]
pub enum ChangeError {
    #[error("only owners and admins may change the plan")]
    Forbidden,
    #[error("no such plan")]
    PlanNotFound,
    #[error("this plan cannot be chosen (it is a trial)")]
    NotSelectable,
    #[error("the business is already on this plan")]
    SamePlan,
    #[error("the subscription is not live, so nothing can wait for its period end")]
    NotLive,
    #[error("the credit balance does not cover the change")]
    InsufficientCredits { due: i64, balance: i64 },
    #[error("the business has no subscription")]
    NoSubscription,
    #[error("the subscription changed meanwhile; retry")]
    Conflict,
    /// The card on file was charged for what the credits did not cover, and it did not succeed.
    #[error(transparent)]
    Payment(Box<crate::payments::PaymentError>),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ChangeError {
    fn from(err: sqlx::Error) -> Self {
        ChangeError::Unexpected(err.into())
    }
}

/// A meter whose current use is over the new plan's limit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Excess {
    pub meter: String,
    pub used: i64,
    pub limit: i64,
}

/// What a change costs and what it would break: the answer of a dry run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub plan: String,
    pub at: Timestamp,
    /// The new plan's price for one cycle, charged when the change takes effect.
    pub price: i64,
    /// Credit for the unused part of the current period (changes made now only).
    pub credit: i64,
    /// `price - credit`, what the balance must cover.
    pub amount_due: i64,
    pub balance: i64,
    pub balance_after: i64,
    /// Current usage the new plan's limits would not allow.
    pub exceeding: Vec<Excess>,
}

struct Loaded {
    current: Subscription,
    current_plan: Plan,
    target: Plan,
    balance: i64,
}

async fn load(tx: &mut Tx, principal: &Principal, plan_code: &str) -> Result<Loaded, ChangeError> {
    let current = subscriptions::current_of(tx.conn(), principal.business_id)
        .await?
        .ok_or(ChangeError::NoSubscription)?;
    let current_plan = plans::find(tx.conn(), current.plan_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("plan {} is missing", current.plan_id))?;
    let target = plans::find_by_code(tx.conn(), plan_code)
        .await?
        .filter(|p| p.is_public && p.archived_at.is_none())
        .ok_or(ChangeError::PlanNotFound)?;
    if !target.renews {
        return Err(ChangeError::NotSelectable);
    }
    let balance = ledger::balance(tx.conn(), principal.business_id).await?;
    Ok(Loaded {
        current,
        current_plan,
        target,
        balance,
    })
}

fn is_live(sub: &Subscription, now: Timestamp) -> bool {
    super::lifecycle::is_live(&sub.status, sub.current_period_end, now)
}

async fn preview_of(
    tx: &mut Tx,
    l: &Loaded,
    when: When,
    now: Timestamp,
) -> Result<Preview, ChangeError> {
    let live = is_live(&l.current, now);
    let (at, credit) = match when {
        When::Now => {
            // Only a period that was paid for and is still running earns a credit.
            let paid = l.current.status == "active" && live;
            let credit = if paid {
                unused_credit(
                    l.current_plan.price_minor,
                    l.current.current_period_start,
                    l.current.current_period_end,
                    now,
                )
            } else {
                0
            };
            (now, credit)
        }
        When::PeriodEnd => (l.current.current_period_end, 0),
    };
    let price = l.target.price_minor;
    let amount_due = (price - credit).max(0);
    let balance_after = l.balance + credit - price;
    let members = crate::store::members::count_active(tx.conn(), l.current.business_id).await?;
    let exceeding = l
        .target
        .limits
        .0
        .get(crate::metering::MEMBERS.name())
        .filter(|limit| members > **limit)
        .map(|limit| Excess {
            meter: crate::metering::MEMBERS.name().into(),
            used: members,
            limit: *limit,
        })
        .into_iter()
        .collect();
    Ok(Preview {
        plan: l.target.code.clone(),
        at,
        price,
        credit,
        amount_due,
        balance: l.balance,
        balance_after,
        exceeding,
    })
}

/// Previews a change without making it.
pub async fn preview(
    app: &App,
    principal: &Principal,
    plan_code: &str,
    when: When,
) -> Result<Preview, ChangeError> {
    // A dry run answers what only managers may do, so only managers may ask.
    if !principal
        .role()
        .is_some_and(|r| r.may(Permission::ManageBilling))
    {
        return Err(ChangeError::Forbidden);
    }
    let mut tx = app.db.read().await?;
    let loaded = load(&mut tx, principal, plan_code).await?;
    preview_of(&mut tx, &loaded, when, app.clock.now()).await
}

/// Makes a change: now (a new cycle starts at once on the new plan, the unused part of the old
/// one credited, the new price charged) or at the period end (scheduled; the sweep applies it).
///
/// A change made now that the credits do not cover is paid by the card on file, when payments
/// are configured and there is one: what is missing (at least the provider's minimum) is
/// charged with the customer present, then the change is made from the credits it bought.
pub async fn change(
    app: &App,
    principal: &Principal,
    plan_code: &str,
    when: When,
) -> Result<Preview, ChangeError> {
    match change_from_credits(app, principal, plan_code, when).await {
        Err(ChangeError::InsufficientCredits { due, balance })
            if when == When::Now && app.payments.is_some() =>
        {
            match crate::payments::pay_for_change(app, principal, due - balance).await {
                Ok(()) => change_from_credits(app, principal, plan_code, when).await,
                // No card: the credits are what is missing.
                Err(crate::payments::PaymentError::NoPaymentMethod) => {
                    Err(ChangeError::InsufficientCredits { due, balance })
                }
                Err(err) => Err(ChangeError::Payment(Box::new(err))),
            }
        }
        other => other,
    }
}

async fn change_from_credits(
    app: &App,
    principal: &Principal,
    plan_code: &str,
    when: When,
) -> Result<Preview, ChangeError> {
    let user_id = match &principal.member {
        Some(m) if m.role.may(Permission::ManageBilling) => m.user_id,
        _ => return Err(ChangeError::Forbidden),
    };
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let l = load(&mut tx, principal, plan_code).await?;
    let live = is_live(&l.current, now);
    let preview = preview_of(&mut tx, &l, when, now).await?;
    let actor = Actor::User(user_id);
    let before = events::snapshot(&l.current, &l.current_plan.code);
    match when {
        When::PeriodEnd => {
            if !live {
                return Err(ChangeError::NotLive);
            }
            // Scheduling the plan already held clears any pending change instead.
            let pending = (l.target.id != l.current.plan_id).then_some(l.target.id);
            let new = Subscription {
                pending_plan_id: pending,
                cancel_at_period_end: false,
                updated_at: now,
                ..l.current.clone()
            };
            if !subscriptions::update_state(tx.conn(), &l.current, &new).await? {
                return Err(ChangeError::Conflict);
            }
            events::record(
                &mut tx,
                &new,
                "change_scheduled",
                actor,
                Some(before),
                Some(events::snapshot(&new, &l.current_plan.code)),
                now,
            )
            .await?;
        }
        When::Now => {
            if live && l.target.id == l.current.plan_id {
                return Err(ChangeError::SamePlan);
            }
            if l.balance + preview.credit < l.target.price_minor {
                return Err(ChangeError::InsufficientCredits {
                    due: preview.amount_due,
                    balance: l.balance,
                });
            }
            let period_end = now.plus(Duration::days(l.target.cycle_days));
            let new = if live {
                let new = Subscription {
                    plan_id: l.target.id,
                    status: "active".into(),
                    current_period_start: now,
                    current_period_end: period_end,
                    pending_plan_id: None,
                    cancel_at_period_end: false,
                    updated_at: now,
                    ..l.current.clone()
                };
                if !subscriptions::update_state(tx.conn(), &l.current, &new).await? {
                    return Err(ChangeError::Conflict);
                }
                new
            } else {
                // A stopped subscription stays as history; the chosen plan starts a new one.
                let closed = Subscription {
                    is_current: false,
                    ended_at: Some(now),
                    updated_at: now,
                    ..l.current.clone()
                };
                if !subscriptions::update_state(tx.conn(), &l.current, &closed).await? {
                    return Err(ChangeError::Conflict);
                }
                let new = Subscription {
                    id: Uuid::now_v7(),
                    plan_id: l.target.id,
                    status: "active".into(),
                    current_period_start: now,
                    current_period_end: period_end,
                    is_current: true,
                    pending_plan_id: None,
                    cancel_at_period_end: false,
                    ended_at: None,
                    created_at: now,
                    updated_at: now,
                    ..l.current.clone()
                };
                subscriptions::insert(tx.conn(), &new).await?;
                new
            };
            if preview.credit > 0 {
                write_entry(
                    &mut tx,
                    &l.current,
                    "proration_credit",
                    preview.credit,
                    &l.current_plan.currency,
                    None,
                    actor,
                    now,
                )
                .await?;
            }
            if l.target.price_minor > 0 {
                write_entry(
                    &mut tx,
                    &new,
                    "renewal_charge",
                    -l.target.price_minor,
                    &l.target.currency,
                    Some(now),
                    actor,
                    now,
                )
                .await?;
            }
            events::record(
                &mut tx,
                &new,
                "plan_changed",
                actor,
                Some(before),
                Some(events::snapshot(&new, &l.target.code)),
                now,
            )
            .await?;
        }
    }
    let event = Event::by(Action::PlanChanged, principal).details(json!({
        "from": l.current_plan.code,
        "to": l.target.code,
        "when": match when { When::Now => "now", When::PeriodEnd => "period_end" },
    }));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(preview)
}

#[allow(clippy::too_many_arguments)]
async fn write_entry(
    tx: &mut Tx,
    sub: &Subscription,
    kind: &str,
    amount: i64,
    currency: &str,
    period_start: Option<Timestamp>,
    actor: Actor,
    now: Timestamp,
) -> Result<(), ChangeError> {
    let entry = LedgerEntry {
        id: Uuid::now_v7(),
        business_id: sub.business_id,
        kind: kind.to_owned(),
        amount,
        currency: currency.to_owned(),
        subscription_id: Some(sub.id),
        period_start,
        note: None,
        actor_kind: actor.kind().to_owned(),
        actor_id: actor.id(),
        created_at: now,
    };
    match ledger::insert(tx.conn(), &entry).await {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(ChangeError::Conflict),
        other => Ok(other?),
    }
}

/// Cancels at the period end (`cancel: true`) or undoes a pending cancellation or downgrade
/// (`cancel: false`).
pub async fn set_cancel(app: &App, principal: &Principal, cancel: bool) -> Result<(), ChangeError> {
    let user_id = match &principal.member {
        Some(m) if m.role.may(Permission::ManageBilling) => m.user_id,
        _ => return Err(ChangeError::Forbidden),
    };
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let current = subscriptions::current_of(tx.conn(), principal.business_id)
        .await?
        .ok_or(ChangeError::NoSubscription)?;
    if !is_live(&current, now) {
        return Err(ChangeError::NotLive);
    }
    let plan_code = plans::find(tx.conn(), current.plan_id)
        .await?
        .map(|p| p.code)
        .unwrap_or_default();
    let new = Subscription {
        cancel_at_period_end: cancel,
        pending_plan_id: if cancel {
            current.pending_plan_id
        } else {
            None
        },
        updated_at: now,
        ..current.clone()
    };
    if new.cancel_at_period_end == current.cancel_at_period_end
        && new.pending_plan_id == current.pending_plan_id
    {
        // Nothing to change: no event, no audit entry, no webhook.
        return Ok(());
    }
    if !subscriptions::update_state(tx.conn(), &current, &new).await? {
        return Err(ChangeError::Conflict);
    }
    let kind = if cancel {
        "cancel_scheduled"
    } else {
        "resumed"
    };
    events::record(
        &mut tx,
        &new,
        kind,
        Actor::User(user_id),
        Some(events::snapshot(&current, &plan_code)),
        Some(events::snapshot(&new, &plan_code)),
        now,
    )
    .await?;
    let action = if cancel {
        Action::SubscriptionCanceled
    } else {
        Action::SubscriptionResumed
    };
    let event = Event::by(action, principal).details(json!({"plan": plan_code}));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(())
}

/// The latest credits and charges of the caller's business, newest first (those who manage
/// billing).
pub async fn history(
    app: &App,
    principal: &Principal,
    limit: i64,
) -> Result<Vec<LedgerEntry>, ChangeError> {
    if !principal
        .role()
        .is_some_and(|r| r.may(Permission::ManageBilling))
    {
        return Err(ChangeError::Forbidden);
    }
    let mut tx = app.db.read().await?;
    Ok(ledger::recent(tx.conn(), principal.business_id, limit).await?)
}
