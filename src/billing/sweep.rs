//! The renewal sweep: finds current subscriptions whose period has ended and moves each, in its
//! own transaction, through [`lifecycle::advance`] — renewing and charging, going past due,
//! stopping or falling back — as many cycles as it missed. Safe to run on every replica at once:
//! rows are claimed (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite), every
//! write is conditional on the state read, and a cycle's charge is unique in the ledger.

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::Duration;
use uuid::Uuid;

use super::events::{self, Actor};
use super::lifecycle::{self, Ledger, PlanTerms, State, Status, Step};
use crate::app::App;
use crate::db::Timestamp;
use crate::store::ledger::{self, LedgerEntry};
use crate::store::plans::{self, Plan};
use crate::store::subscriptions::{self, Subscription};

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Due subscriptions looked at.
    pub examined: u64,
    /// Subscriptions whose state changed.
    pub changed: u64,
    pub renewals: u64,
    /// Total charged, in minor units.
    pub charged: i64,
    pub past_due: u64,
    pub stopped: u64,
    pub fell_back: u64,
    /// Skipped because another worker held them, or changed them first.
    pub skipped: u64,
    pub errors: u64,
}

const PAGE: i64 = 500;

impl PlanTerms {
    pub fn of(plan: &Plan) -> PlanTerms {
        PlanTerms {
            id: plan.id,
            price: plan.price_minor,
            cycle_days: plan.cycle_days,
            renews: plan.renews,
            fallback: plan.fallback_plan_id,
        }
    }
}

/// Sweeps every subscription due at `now`.
pub async fn sweep(app: &App, now: Timestamp) -> anyhow::Result<SweepReport> {
    let plans: HashMap<Uuid, Plan> = {
        let mut tx = app.db.read().await?;
        plans::all(tx.conn())
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect()
    };
    let grace = Duration::days(i64::from(app.config.grace_period_days));
    let mut report = SweepReport::default();
    let mut after = Uuid::nil();
    loop {
        let ids = {
            let mut tx = app.db.read().await?;
            subscriptions::due_ids(tx.conn(), now, after, PAGE).await?
        };
        let Some(last) = ids.last() else { break };
        after = *last;
        for id in ids {
            report.examined += 1;
            match advance_one(app, &plans, grace, id, now).await {
                Ok(Some(outcome)) => {
                    if outcome.changed {
                        report.changed += 1;
                    }
                    report.renewals += outcome.renewals;
                    report.charged += outcome.charged;
                    report.past_due += outcome.past_due;
                    report.stopped += outcome.stopped;
                    report.fell_back += outcome.fell_back;
                }
                Ok(None) => report.skipped += 1,
                Err(err) => {
                    report.errors += 1;
                    tracing::error!(subscription_id = %id, error = format!("{err:#}"), "sweep could not advance a subscription");
                }
            }
        }
    }
    if report.changed > 0 || report.errors > 0 {
        tracing::info!(?report, "renewal sweep");
    }
    Ok(report)
}

#[derive(Debug, Default)]
struct Outcome {
    changed: bool,
    renewals: u64,
    charged: i64,
    past_due: u64,
    stopped: u64,
    fell_back: u64,
}

fn state_of(sub: &Subscription) -> anyhow::Result<State> {
    Ok(State {
        status: Status::parse(&sub.status)
            .with_context(|| format!("subscription {} has status {:?}", sub.id, sub.status))?,
        plan_id: sub.plan_id,
        period_start: sub.current_period_start,
        period_end: sub.current_period_end,
        pending_plan_id: sub.pending_plan_id,
        cancel_at_period_end: sub.cancel_at_period_end,
    })
}

fn with_state(row: &Subscription, state: &State, now: Timestamp) -> Subscription {
    Subscription {
        plan_id: state.plan_id,
        status: state.status.as_str().to_owned(),
        current_period_start: state.period_start,
        current_period_end: state.period_end,
        pending_plan_id: state.pending_plan_id,
        cancel_at_period_end: state.cancel_at_period_end,
        updated_at: now,
        ..row.clone()
    }
}

fn code_of(plans: &HashMap<Uuid, Plan>, id: Uuid) -> String {
    plans.get(&id).map(|p| p.code.clone()).unwrap_or_default()
}

/// Advances one subscription in its own transaction. `None` when another worker holds it or got
/// there first (nothing is written then).
async fn advance_one(
    app: &App,
    plans: &HashMap<Uuid, Plan>,
    grace: Duration,
    id: Uuid,
    now: Timestamp,
) -> anyhow::Result<Option<Outcome>> {
    let mut tx = app.db.begin().await?;
    let Some(original) = subscriptions::claim_current(tx.conn(), id).await? else {
        return Ok(None);
    };
    let start = state_of(&original)?;
    let entries = ledger::amounts_until(tx.conn(), original.business_id, now).await?;
    let lookup = |id: Uuid| plans.get(&id).map(PlanTerms::of);
    let (end, steps) = lifecycle::advance(start, &lookup, &Ledger::new(entries), grace, now);
    let mut outcome = Outcome::default();
    if steps.is_empty() {
        return Ok(Some(outcome));
    }
    outcome.changed = true;

    // `stored` is the row as the database holds it now; writes are conditional on it.
    let mut stored = original.clone();
    let mut before = start;
    for (i, (step, after)) in steps.iter().enumerate() {
        let before_json = events::snapshot(
            &with_state(&stored, &before, now),
            &code_of(plans, before.plan_id),
        );
        let after_row = with_state(&stored, after, now);
        let after_json = events::snapshot(&after_row, &code_of(plans, after.plan_id));
        match *step {
            Step::Renewed {
                plan_id,
                period_start,
                charge,
                charged_at,
                ..
            } => {
                outcome.renewals += 1;
                if charge > 0 {
                    let charged = charge_cycle(
                        &mut tx,
                        plans,
                        &stored,
                        plan_id,
                        period_start,
                        charge,
                        charged_at,
                    )
                    .await?;
                    if !charged {
                        return Ok(None);
                    }
                    outcome.charged += charge;
                    events::record(
                        &mut tx,
                        &stored,
                        "charged",
                        Actor::System,
                        None,
                        Some(serde_json::json!({"amount": charge, "period_start": period_start})),
                        charged_at,
                    )
                    .await?;
                }
                let kind = if plan_id == before.plan_id {
                    "renewed"
                } else {
                    "plan_changed"
                };
                events::record(
                    &mut tx,
                    &stored,
                    kind,
                    Actor::System,
                    Some(before_json),
                    Some(after_json),
                    period_start,
                )
                .await?;
            }
            Step::PastDue { since } => {
                outcome.past_due += 1;
                events::record(
                    &mut tx,
                    &stored,
                    "past_due",
                    Actor::System,
                    Some(before_json),
                    Some(after_json),
                    since,
                )
                .await?;
            }
            Step::Stopped { at, status } => {
                outcome.stopped += 1;
                events::record(
                    &mut tx,
                    &stored,
                    status.as_str(),
                    Actor::System,
                    Some(before_json),
                    Some(after_json),
                    at,
                )
                .await?;
                if matches!(steps.get(i + 1), Some((Step::FellBack { .. }, _))) {
                    // The stopped subscription becomes history; the fallback starts a new one.
                    let closed = Subscription {
                        is_current: false,
                        ended_at: Some(at),
                        ..with_state(&stored, after, now)
                    };
                    if !subscriptions::update_state(tx.conn(), &stored, &closed).await? {
                        return Ok(None);
                    }
                }
            }
            Step::FellBack {
                at,
                plan_id,
                charge,
                ..
            } => {
                outcome.fell_back += 1;
                let new = Subscription {
                    id: Uuid::now_v7(),
                    is_current: true,
                    ended_at: None,
                    created_at: at,
                    ..with_state(&stored, after, now)
                };
                subscriptions::insert(tx.conn(), &new).await?;
                if charge > 0
                    && !charge_cycle(&mut tx, plans, &new, plan_id, at, charge, at).await?
                {
                    return Ok(None);
                }
                outcome.charged += charge;
                events::record(
                    &mut tx,
                    &new,
                    "plan_changed",
                    Actor::System,
                    Some(before_json),
                    Some(events::snapshot(&new, &code_of(plans, plan_id))),
                    at,
                )
                .await?;
                stored = new;
            }
        }
        before = *after;
    }
    let last = with_state(&stored, &end, now);
    if !subscriptions::update_state(tx.conn(), &stored, &last).await? {
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(outcome))
}

/// Charges one cycle; `false` if that cycle was already charged (another worker got there).
async fn charge_cycle(
    tx: &mut crate::db::Tx,
    plans: &HashMap<Uuid, Plan>,
    sub: &Subscription,
    plan_id: Uuid,
    period_start: Timestamp,
    charge: i64,
    at: Timestamp,
) -> anyhow::Result<bool> {
    let entry = LedgerEntry {
        id: Uuid::now_v7(),
        business_id: sub.business_id,
        kind: "renewal_charge".to_owned(),
        amount: -charge,
        currency: plans
            .get(&plan_id)
            .map(|p| p.currency.clone())
            .unwrap_or_else(|| "USD".into()),
        subscription_id: Some(sub.id),
        period_start: Some(period_start),
        note: None,
        actor_kind: "system".to_owned(),
        actor_id: None,
        created_at: at,
    };
    match ledger::insert(tx.conn(), &entry).await {
        Ok(()) => Ok(true),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
        Err(err) => Err(err.into()),
    }
}
