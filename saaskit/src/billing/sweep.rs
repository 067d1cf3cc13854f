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
use crate::store::events::Event;
use crate::store::ledger::{self, LedgerEntry};
use crate::store::plans::{self, Plan};
use crate::store::subscriptions::{self, StateChange, Subscription};

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

/// Sweeps every subscription due at `now`: first the renewals a card on file pays for are
/// charged ([`crate::payments::renewals::collect`]; nothing without a payment provider), so that
/// the credit is in the ledger when the sweep reads it.
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
    if let Err(err) = crate::payments::renewals::collect(app, &plans, grace, now).await {
        // The sweep goes on: an unpaid renewal goes past due and is tried again.
        tracing::error!(error = format!("{err:#}"), "charging renewals failed");
    }
    let worker = || walk(app, &plans, grace, now);
    // PostgreSQL spreads the work over several connections (pages claimed with SKIP LOCKED never
    // overlap); SQLite has one writer, so one walk.
    let report = match app.db.backend() {
        crate::db::Backend::Sqlite => worker().await?,
        crate::db::Backend::Postgres => {
            let (a, b, c, d) = tokio::join!(worker(), worker(), worker(), worker());
            let mut total = a?;
            for other in [b?, c?, d?] {
                total.merge(&other);
            }
            total
        }
    };
    if report.changed > 0 || report.errors > 0 {
        tracing::info!(?report, "renewal sweep");
    }
    Ok(report)
}

/// One walk over the due subscriptions, page by page.
async fn walk(
    app: &App,
    plans: &HashMap<Uuid, Plan>,
    grace: Duration,
    now: Timestamp,
) -> anyhow::Result<SweepReport> {
    let mut report = SweepReport::default();
    // Before any period could end (the Unix epoch), and the smallest id.
    let mut cursor: subscriptions::Cursor = (Timestamp::from_micros(0).unwrap_or(now), Uuid::nil());
    loop {
        let page = sweep_page(app, plans, grace, now, cursor).await?;
        let Some(last) = page.last else { break };
        cursor = last;
        report.examined += page.examined;
        report.add(&page.outcome);
        report.changed += page.changed;
        report.errors += page.errors;
        // What the page could not do in bulk (falling back to another plan, a row that moved
        // on), each in its own transaction.
        for id in page.deferred {
            match advance_one(app, plans, grace, id, now).await {
                Ok(Some(outcome)) => report.add(&outcome),
                Ok(None) => report.skipped += 1,
                Err(err) => {
                    report.errors += 1;
                    tracing::error!(subscription_id = %id, error = format!("{err:#}"), "sweep could not advance a subscription");
                }
            }
        }
    }
    Ok(report)
}

impl SweepReport {
    fn merge(&mut self, o: &SweepReport) {
        self.examined += o.examined;
        self.changed += o.changed;
        self.renewals += o.renewals;
        self.charged += o.charged;
        self.past_due += o.past_due;
        self.stopped += o.stopped;
        self.fell_back += o.fell_back;
        self.skipped += o.skipped;
        self.errors += o.errors;
    }

    fn add(&mut self, o: &Outcome) {
        if o.changed {
            self.changed += 1;
        }
        self.renewals += o.renewals;
        self.charged += o.charged;
        self.past_due += o.past_due;
        self.stopped += o.stopped;
        self.fell_back += o.fell_back;
    }
}

#[derive(Default)]
struct Page {
    last: Option<subscriptions::Cursor>,
    examined: u64,
    outcome: Outcome,
    changed: u64,
    errors: u64,
    deferred: Vec<Uuid>,
}

/// Advances one page of due subscriptions in one transaction with a handful of statements
/// (claim, ledgers, one conditional update, the charges, the events): the sweep's fast path.
async fn sweep_page(
    app: &App,
    plans: &HashMap<Uuid, Plan>,
    grace: Duration,
    now: Timestamp,
    after: subscriptions::Cursor,
) -> anyhow::Result<Page> {
    let mut tx = app.db.begin().await?;
    let page = subscriptions::claim_due_page(tx.conn(), now, after, PAGE).await?;
    let Some(last) = page.last().map(|s| (s.current_period_end, s.id)) else {
        return Ok(Page::default());
    };
    let mut ledgers: HashMap<Uuid, Vec<(Timestamp, i64)>> = HashMap::new();
    for (business, at, amount) in ledger::amounts_for_page(tx.conn(), after, last, now).await? {
        ledgers.entry(business).or_default().push((at, amount));
    }
    let lookup = |id: Uuid| plans.get(&id).map(PlanTerms::of);
    let mut result = Page {
        last: Some(last),
        examined: page.len() as u64,
        ..Page::default()
    };
    let mut changes = Vec::new();
    let mut charges = Vec::new();
    let mut log = Vec::new();
    let mut totals = Outcome::default();
    for sub in &page {
        let start = match state_of(sub) {
            Ok(state) => state,
            Err(err) => {
                result.errors += 1;
                tracing::error!(subscription_id = %sub.id, error = format!("{err:#}"), "sweep cannot read a subscription");
                continue;
            }
        };
        let entries = ledgers.remove(&sub.business_id).unwrap_or_default();
        let (end, steps) = lifecycle::advance(start, &lookup, &Ledger::new(entries), grace, now);
        if steps.is_empty() {
            continue;
        }
        if steps
            .iter()
            .any(|(step, _)| matches!(step, Step::FellBack { .. }))
        {
            result.deferred.push(sub.id);
            continue;
        }
        let mut before = start;
        for (step, after) in &steps {
            match *step {
                Step::Renewed {
                    plan_id,
                    period_start,
                    charge,
                    charged_at,
                    ..
                } => {
                    totals.renewals += 1;
                    if charge > 0 {
                        totals.charged += charge;
                        charges.push(charge_entry(
                            plans,
                            sub,
                            plan_id,
                            period_start,
                            charge,
                            charged_at,
                        ));
                    }
                }
                Step::PastDue { .. } => totals.past_due += 1,
                Step::Stopped { .. } => totals.stopped += 1,
                Step::FellBack { .. } => {}
            }
            log.extend(step_events(sub, step, &before, after, plans, now));
            before = *after;
        }
        changes.push(StateChange {
            expected: sub.clone(),
            new: with_state(sub, &end, now),
        });
    }
    let updated = subscriptions::update_states(tx.conn(), &changes).await?;
    if updated != changes.len() as u64 {
        // Something moved on under us (it cannot with the rows claimed, but never charge on a
        // guess): undo the page and let the careful path take each subscription.
        drop(tx);
        result
            .deferred
            .extend(changes.iter().map(|c| c.expected.id));
        return Ok(result);
    }
    match ledger::insert_many(tx.conn(), &charges).await {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            drop(tx);
            result
                .deferred
                .extend(changes.iter().map(|c| c.expected.id));
            return Ok(result);
        }
        other => other?,
    }
    events::record_many(&mut tx, &log, now).await?;
    tx.commit().await?;
    result.changed = changes.len() as u64;
    totals.changed = false;
    result.outcome = totals;
    Ok(result)
}

/// The events one step records on the subscription row `sub`: `charged` (with the amount) and
/// `renewed` or `plan_changed` for a renewal, `past_due`, `canceled` or `expired`. A fallback's
/// event names the new row and is written where that row is made.
fn step_events(
    sub: &Subscription,
    step: &Step,
    before: &State,
    after: &State,
    plans: &HashMap<Uuid, Plan>,
    now: Timestamp,
) -> Vec<Event> {
    let snapshot = |state: &State| {
        events::snapshot(&with_state(sub, state, now), &code_of(plans, state.plan_id)).to_string()
    };
    let event = |kind: &str, before: Option<String>, after: Option<String>, at: Timestamp| Event {
        id: Uuid::now_v7(),
        business_id: sub.business_id,
        subscription_id: Some(sub.id),
        kind: kind.to_owned(),
        actor_kind: Actor::System.kind().to_owned(),
        actor_id: None,
        before,
        after,
        created_at: at,
    };
    let transition =
        |kind: &str, at: Timestamp| event(kind, Some(snapshot(before)), Some(snapshot(after)), at);
    match *step {
        Step::Renewed {
            plan_id,
            period_start,
            charge,
            charged_at,
            ..
        } => {
            let mut out = Vec::with_capacity(2);
            if charge > 0 {
                let amount = serde_json::json!({"amount": charge, "period_start": period_start});
                out.push(event("charged", None, Some(amount.to_string()), charged_at));
            }
            let kind = if plan_id == before.plan_id {
                "renewed"
            } else {
                "plan_changed"
            };
            out.push(transition(kind, period_start));
            out
        }
        Step::PastDue { since } => vec![transition("past_due", since)],
        Step::Stopped { at, status } => vec![transition(status.as_str(), at)],
        Step::FellBack { .. } => Vec::new(),
    }
}

fn charge_entry(
    plans: &HashMap<Uuid, Plan>,
    sub: &Subscription,
    plan_id: Uuid,
    period_start: Timestamp,
    charge: i64,
    at: Timestamp,
) -> LedgerEntry {
    LedgerEntry {
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
    }
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
                }
            }
            Step::PastDue { .. } => outcome.past_due += 1,
            Step::Stopped { at, .. } => {
                outcome.stopped += 1;
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
                let before_json = events::snapshot(
                    &with_state(&stored, &before, now),
                    &code_of(plans, before.plan_id),
                );
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
        let logged = step_events(&stored, step, &before, after, plans, now);
        events::record_many(&mut tx, &logged, now).await?;
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
    let entry = charge_entry(plans, sub, plan_id, period_start, charge, at);
    match ledger::insert(tx.conn(), &entry).await {
        Ok(()) => Ok(true),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// What a sweep at some time would do to one due subscription (`saaskit renew --dry-run`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preview {
    pub subscription_id: Uuid,
    pub business_id: Uuid,
    pub plan: String,
    pub status: String,
    pub period_end: Timestamp,
    /// Each step in order, said for people ("renew on pro until …, charging 2900 USD").
    pub steps: Vec<String>,
}

/// Reads what [`sweep`] would do at `now`, changing nothing: the due subscriptions, read
/// without claiming them, each advanced by the same state machine over the same ledger. The
/// report counts what the sweep would count (a concurrent sweep may of course get there first).
pub async fn preview(app: &App, now: Timestamp) -> anyhow::Result<(Vec<Preview>, SweepReport)> {
    let mut tx = app.db.read().await?;
    let plans: HashMap<Uuid, Plan> = plans::all(tx.conn())
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let grace = Duration::days(i64::from(app.config.grace_period_days));
    let lookup = |id: Uuid| plans.get(&id).map(PlanTerms::of);
    let money = |amount: i64, plan: Uuid| {
        let currency = plans
            .get(&plan)
            .map(|p| p.currency.as_str())
            .unwrap_or("USD");
        if amount > 0 {
            format!(", charging {amount} {currency}")
        } else {
            ", free".to_owned()
        }
    };
    let mut report = SweepReport::default();
    let mut previews = Vec::new();
    let mut cursor: subscriptions::Cursor = (Timestamp::from_micros(0).unwrap_or(now), Uuid::nil());
    loop {
        let page = subscriptions::due_page(tx.conn(), now, cursor, PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = (last.current_period_end, last.id);
        for sub in &page {
            report.examined += 1;
            let start = match state_of(sub) {
                Ok(state) => state,
                Err(err) => {
                    report.errors += 1;
                    tracing::error!(subscription_id = %sub.id, error = format!("{err:#}"), "cannot read a subscription");
                    continue;
                }
            };
            let entries = ledger::amounts_until(tx.conn(), sub.business_id, now).await?;
            let (_, steps) = lifecycle::advance(start, &lookup, &Ledger::new(entries), grace, now);
            if steps.is_empty() {
                continue;
            }
            report.changed += 1;
            let mut said = Vec::with_capacity(steps.len());
            for (step, _) in &steps {
                said.push(match *step {
                    Step::Renewed {
                        plan_id,
                        period_end,
                        charge,
                        ..
                    } => {
                        report.renewals += 1;
                        report.charged += charge;
                        format!(
                            "renew on {} until {}{}",
                            code_of(&plans, plan_id),
                            period_end.to_rfc3339(),
                            money(charge, plan_id)
                        )
                    }
                    Step::PastDue { since } => {
                        report.past_due += 1;
                        format!(
                            "go past due from {} (the credits do not cover the price)",
                            since.to_rfc3339()
                        )
                    }
                    Step::Stopped { at, status } => {
                        report.stopped += 1;
                        format!("stop as {} at {}", status.as_str(), at.to_rfc3339())
                    }
                    Step::FellBack {
                        plan_id,
                        period_end,
                        charge,
                        status,
                        ..
                    } => {
                        report.fell_back += 1;
                        report.charged += charge;
                        format!(
                            "fall back to {} ({}) until {}{}",
                            code_of(&plans, plan_id),
                            status.as_str(),
                            period_end.to_rfc3339(),
                            money(charge, plan_id)
                        )
                    }
                });
            }
            previews.push(Preview {
                subscription_id: sub.id,
                business_id: sub.business_id,
                plan: code_of(&plans, sub.plan_id),
                status: sub.status.clone(),
                period_end: sub.current_period_end,
                steps: said,
            });
        }
    }
    Ok((previews, report))
}
