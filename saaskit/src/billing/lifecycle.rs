//! The subscription state machine, as a pure function of the stored state, the plans, the
//! business's ledger and a point in time. Nothing here reads a clock or a database, so the
//! rules can be tested exhaustively and the sweep is path independent by construction: the
//! state at time T depends only on what was stored and what the ledger held, never on when
//! (or how often) sweeps ran before T.
//!
//! Allowed transitions (the only ones the sweep makes):
//!
//! | from                 | when                                   | to                                      |
//! |----------------------|----------------------------------------|-----------------------------------------|
//! | trialing / active    | period ends, cancel requested          | canceled (or the plan's fallback)       |
//! | trialing / active    | period ends, plan does not renew       | expired (or the plan's fallback)        |
//! | trialing / active    | period ends, price covered (or free)   | active, next period, charged            |
//! | trialing / active    | period ends, price not covered         | past_due (period kept)                  |
//! | past_due             | credits cover the price within grace   | active, next period, charged            |
//! | past_due             | grace ends unpaid                      | expired (or the plan's fallback)        |
//! | canceled / expired   | —                                      | stays (until a new subscription starts) |
//!
//! A pending plan change (a downgrade) takes effect at the period end, as the plan renewed onto.

use chrono::Duration;
use uuid::Uuid;

use crate::db::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Trialing,
    Active,
    PastDue,
    Canceled,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Trialing => "trialing",
            Status::Active => "active",
            Status::PastDue => "past_due",
            Status::Canceled => "canceled",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "trialing" => Status::Trialing,
            "active" => Status::Active,
            "past_due" => Status::PastDue,
            "canceled" => Status::Canceled,
            "expired" => Status::Expired,
            _ => return None,
        })
    }
}

/// Whether a subscription with this stored status and period end gives access at `now`: a
/// trial or an active period until it ends, a late payment (`past_due`) through its grace period
/// (which the sweep ends). The one definition of "live" every caller uses.
pub fn is_live(status: &str, period_end: Timestamp, now: Timestamp) -> bool {
    match Status::parse(status) {
        Some(Status::Trialing | Status::Active) => now < period_end,
        Some(Status::PastDue) => true,
        _ => false,
    }
}

/// What the state machine needs to know about a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanTerms {
    pub id: Uuid,
    pub price: i64,
    pub cycle_days: i64,
    pub renews: bool,
    pub fallback: Option<Uuid>,
}

impl PlanTerms {
    fn cycle(&self) -> Duration {
        Duration::days(self.cycle_days.max(1))
    }
}

/// The stored state of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub status: Status,
    pub plan_id: Uuid,
    pub period_start: Timestamp,
    pub period_end: Timestamp,
    pub pending_plan_id: Option<Uuid>,
    pub cancel_at_period_end: bool,
}

/// One thing that happened to the subscription, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A new period began on `plan_id`, charging `charge` (may be 0) at `charged_at`.
    Renewed {
        plan_id: Uuid,
        period_start: Timestamp,
        period_end: Timestamp,
        charge: i64,
        charged_at: Timestamp,
    },
    /// The period ended without the price covered; the grace period runs from `since`.
    PastDue { since: Timestamp },
    /// The subscription stopped at `at` with `status` (canceled or expired).
    Stopped { at: Timestamp, status: Status },
    /// After a stop, a new subscription on the stopped plan's fallback began at `at`.
    FellBack {
        at: Timestamp,
        plan_id: Uuid,
        period_end: Timestamp,
        charge: i64,
        status: Status,
    },
}

/// The business's credit balance over time: `(when, amount)` entries, in any order.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    entries: Vec<(Timestamp, i64)>,
}

impl Ledger {
    pub fn new(mut entries: Vec<(Timestamp, i64)>) -> Ledger {
        entries.sort_by_key(|(at, _)| *at);
        Ledger { entries }
    }

    /// The balance counting every entry made at or before `at`.
    pub fn balance_at(&self, at: Timestamp) -> i64 {
        self.entries
            .iter()
            .take_while(|(t, _)| *t <= at)
            .fold(0i64, |sum, (_, amount)| sum.saturating_add(*amount))
    }

    fn add(&mut self, at: Timestamp, amount: i64) {
        let index = self.entries.partition_point(|(t, _)| *t <= at);
        self.entries.insert(index, (at, amount));
    }

    /// The first moment in `[from, until]` at which the balance reaches `price`.
    fn first_covering(&self, from: Timestamp, until: Timestamp, price: i64) -> Option<Timestamp> {
        if until < from {
            return None;
        }
        if self.balance_at(from) >= price {
            return Some(from);
        }
        let mut balance = self.balance_at(from);
        for (at, amount) in self
            .entries
            .iter()
            .filter(|(t, _)| *t > from && *t <= until)
        {
            balance = balance.saturating_add(*amount);
            if balance >= price {
                return Some(*at);
            }
        }
        None
    }
}

/// The most cycles one call will advance; a guard against a plan misconfigured into a loop.
pub const MAX_STEPS: usize = 100_000;

/// Advances `state` to `now`: every step that has fallen due, and the resulting state.
/// `plans` looks plans up by id; a plan that cannot be found stops the subscription.
pub fn advance(
    state: State,
    plans: &dyn Fn(Uuid) -> Option<PlanTerms>,
    ledger: &Ledger,
    grace: Duration,
    now: Timestamp,
) -> (State, Vec<(Step, State)>) {
    let mut ledger = ledger.clone();
    let mut state = state;
    let mut steps = Vec::new();
    while steps.len() < MAX_STEPS {
        match state.status {
            Status::Canceled | Status::Expired => break,
            Status::Trialing | Status::Active => {
                if state.period_end > now {
                    break;
                }
                let at = state.period_end;
                let current = plans(state.plan_id);
                if state.cancel_at_period_end {
                    stop(
                        &mut state,
                        &mut steps,
                        &mut ledger,
                        plans,
                        current,
                        at,
                        Status::Canceled,
                    );
                    continue;
                }
                let next = match state.pending_plan_id {
                    Some(id) => plans(id),
                    None if current.is_some_and(|p| p.renews) => current,
                    None => None,
                };
                let Some(next) = next else {
                    stop(
                        &mut state,
                        &mut steps,
                        &mut ledger,
                        plans,
                        current,
                        at,
                        Status::Expired,
                    );
                    continue;
                };
                if next.price <= 0 || ledger.balance_at(at) >= next.price {
                    renew(&mut state, &mut steps, &mut ledger, next, at, at);
                } else {
                    state.status = Status::PastDue;
                    steps.push((Step::PastDue { since: at }, state));
                }
            }
            Status::PastDue => {
                let deadline = state.period_end.plus(grace);
                let current = plans(state.plan_id);
                let next = state.pending_plan_id.and_then(plans).or(current);
                let paid = next.and_then(|p| {
                    let until = if now < deadline { now } else { deadline };
                    ledger
                        .first_covering(state.period_end, until, p.price)
                        // Paying exactly at the deadline is too late.
                        .filter(|t| *t < deadline)
                        .map(|t| (p, t))
                });
                if let Some((plan, paid_at)) = paid {
                    let start = state.period_end;
                    renew(&mut state, &mut steps, &mut ledger, plan, start, paid_at);
                } else if now >= deadline {
                    stop(
                        &mut state,
                        &mut steps,
                        &mut ledger,
                        plans,
                        current,
                        deadline,
                        Status::Expired,
                    );
                } else {
                    break;
                }
            }
        }
    }
    (state, steps)
}

fn renew(
    state: &mut State,
    steps: &mut Vec<(Step, State)>,
    ledger: &mut Ledger,
    plan: PlanTerms,
    start: Timestamp,
    charged_at: Timestamp,
) {
    let charge = plan.price.max(0);
    if charge > 0 {
        ledger.add(charged_at, -charge);
    }
    let end = start.plus(plan.cycle());
    *state = State {
        status: Status::Active,
        plan_id: plan.id,
        period_start: start,
        period_end: end,
        pending_plan_id: None,
        cancel_at_period_end: false,
    };
    steps.push((
        Step::Renewed {
            plan_id: plan.id,
            period_start: start,
            period_end: end,
            charge,
            charged_at,
        },
        *state,
    ));
}

fn stop(
    state: &mut State,
    steps: &mut Vec<(Step, State)>,
    ledger: &mut Ledger,
    plans: &dyn Fn(Uuid) -> Option<PlanTerms>,
    current: Option<PlanTerms>,
    at: Timestamp,
    status: Status,
) {
    state.status = status;
    state.pending_plan_id = None;
    state.cancel_at_period_end = false;
    steps.push((Step::Stopped { at, status }, *state));
    let fallback = current
        .and_then(|p| p.fallback)
        .filter(|id| Some(*id) != current.map(|p| p.id))
        .and_then(plans);
    let Some(fallback) = fallback else {
        return;
    };
    let covered = fallback.price <= 0 || ledger.balance_at(at) >= fallback.price;
    if covered {
        let charge = fallback.price.max(0);
        if charge > 0 {
            ledger.add(at, -charge);
        }
        let end = at.plus(fallback.cycle());
        *state = State {
            status: Status::Active,
            plan_id: fallback.id,
            period_start: at,
            period_end: end,
            pending_plan_id: None,
            cancel_at_period_end: false,
        };
        steps.push((
            Step::FellBack {
                at,
                plan_id: fallback.id,
                period_end: end,
                charge,
                status: Status::Active,
            },
            *state,
        ));
    } else {
        // A paid fallback that is not covered starts past due: an empty period ending at `at`,
        // whose grace period runs from there like any other unpaid renewal.
        *state = State {
            status: Status::PastDue,
            plan_id: fallback.id,
            period_start: at,
            period_end: at,
            pending_plan_id: None,
            cancel_at_period_end: false,
        };
        steps.push((
            Step::FellBack {
                at,
                plan_id: fallback.id,
                period_end: at,
                charge: 0,
                status: Status::PastDue,
            },
            *state,
        ));
    }
}

#[cfg(test)]
mod tests;
