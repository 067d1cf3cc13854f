use proptest::prelude::*;

use super::*;

fn t(days: i64) -> Timestamp {
    Timestamp::from_micros(1_767_225_600_000_000)
        .expect("valid")
        .plus(Duration::days(days))
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

const TRIAL: u128 = 1;
const FREE: u128 = 2;
const PRO: u128 = 3;
const BASIC: u128 = 4;
const TRIAL_TO_FREE: u128 = 5;

fn plans(plan: Uuid) -> Option<PlanTerms> {
    let terms = |price, cycle_days, renews, fallback: Option<u128>| PlanTerms {
        id: plan,
        price,
        cycle_days,
        renews,
        fallback: fallback.map(id),
    };
    Some(match plan.as_u128() {
        TRIAL => terms(0, 15, false, None),
        FREE => terms(0, 30, true, None),
        PRO => terms(1000, 30, true, Some(FREE)),
        BASIC => terms(300, 30, true, None),
        TRIAL_TO_FREE => terms(0, 15, false, Some(FREE)),
        _ => return None,
    })
}

fn state(status: Status, plan: u128, start: i64, end: i64) -> State {
    State {
        status,
        plan_id: id(plan),
        period_start: t(start),
        period_end: t(end),
        pending_plan_id: None,
        cancel_at_period_end: false,
    }
}

/// `advance` without the state snapshots.
fn advance(
    state: State,
    plans: &dyn Fn(Uuid) -> Option<PlanTerms>,
    ledger: &Ledger,
    grace: Duration,
    now: Timestamp,
) -> (State, Vec<Step>) {
    let (after, steps) = super::advance(state, plans, ledger, grace, now);
    (after, steps.into_iter().map(|(step, _)| step).collect())
}

fn grace() -> Duration {
    Duration::days(3)
}

#[test]
fn nothing_happens_before_the_period_ends() {
    let s = state(Status::Active, PRO, 0, 30);
    let (after, steps) = advance(s, &plans, &Ledger::default(), grace(), t(29));
    assert_eq!((after, steps), (s, vec![]));
}

#[test]
fn a_trial_without_fallback_expires_and_stays() {
    let s = state(Status::Trialing, TRIAL, 0, 15);
    let (after, steps) = advance(s, &plans, &Ledger::default(), grace(), t(15));
    assert_eq!(
        steps,
        vec![Step::Stopped {
            at: t(15),
            status: Status::Expired
        }]
    );
    assert_eq!(after.status, Status::Expired);
    assert_eq!(after.plan_id, id(TRIAL));
    let (later, more) = advance(after, &plans, &Ledger::default(), grace(), t(400));
    assert_eq!((later, more), (after, vec![]));
}

#[test]
fn a_trial_with_a_fallback_moves_to_it() {
    let s = state(Status::Trialing, TRIAL_TO_FREE, 0, 15);
    let (after, steps) = advance(s, &plans, &Ledger::default(), grace(), t(16));
    assert_eq!(
        steps[0],
        Step::Stopped {
            at: t(15),
            status: Status::Expired
        }
    );
    assert_eq!(
        steps[1],
        Step::FellBack {
            at: t(15),
            plan_id: id(FREE),
            period_end: t(45),
            charge: 0,
            status: Status::Active
        }
    );
    assert_eq!(after, state(Status::Active, FREE, 15, 45));
}

#[test]
fn a_paid_plan_renews_while_credits_last_then_goes_past_due_then_falls_back() {
    // 2,500 credits: two renewals of 1,000, then 500 is not enough.
    let ledger = Ledger::new(vec![(t(0), 2500)]);
    let s = state(Status::Active, PRO, 0, 30);
    let (after, steps) = advance(s, &plans, &ledger, grace(), t(100));
    assert_eq!(
        steps,
        vec![
            Step::Renewed {
                plan_id: id(PRO),
                period_start: t(30),
                period_end: t(60),
                charge: 1000,
                charged_at: t(30)
            },
            Step::Renewed {
                plan_id: id(PRO),
                period_start: t(60),
                period_end: t(90),
                charge: 1000,
                charged_at: t(60)
            },
            Step::PastDue { since: t(90) },
            Step::Stopped {
                at: t(93),
                status: Status::Expired
            },
            Step::FellBack {
                at: t(93),
                plan_id: id(FREE),
                period_end: t(123),
                charge: 0,
                status: Status::Active
            },
        ]
    );
    assert_eq!(after, state(Status::Active, FREE, 93, 123));
}

#[test]
fn credits_arriving_within_grace_renew_from_the_old_period_end() {
    let ledger = Ledger::new(vec![(t(0), 500), (t(31), 500)]);
    let s = state(Status::Active, PRO, 0, 30);
    let (after, steps) = advance(s, &plans, &ledger, grace(), t(32));
    assert_eq!(
        steps,
        vec![
            Step::PastDue { since: t(30) },
            Step::Renewed {
                plan_id: id(PRO),
                period_start: t(30),
                period_end: t(60),
                charge: 1000,
                charged_at: t(31)
            },
        ]
    );
    assert_eq!(after.status, Status::Active);
}

#[test]
fn credits_arriving_after_grace_are_too_late() {
    let ledger = Ledger::new(vec![(t(33), 5000)]);
    let s = state(Status::PastDue, BASIC, 0, 30);
    let (after, steps) = advance(s, &plans, &ledger, grace(), t(40));
    assert_eq!(
        steps,
        vec![Step::Stopped {
            at: t(33),
            status: Status::Expired
        }]
    );
    assert_eq!(after.status, Status::Expired);
}

#[test]
fn a_pending_downgrade_applies_at_period_end() {
    let ledger = Ledger::new(vec![(t(0), 300)]);
    let s = State {
        pending_plan_id: Some(id(BASIC)),
        ..state(Status::Active, PRO, 0, 30)
    };
    let (after, steps) = advance(s, &plans, &ledger, grace(), t(31));
    assert_eq!(
        steps,
        vec![Step::Renewed {
            plan_id: id(BASIC),
            period_start: t(30),
            period_end: t(60),
            charge: 300,
            charged_at: t(30)
        }]
    );
    assert_eq!(after.pending_plan_id, None);
}

#[test]
fn cancel_at_period_end_cancels_or_falls_back() {
    let s = State {
        cancel_at_period_end: true,
        ..state(Status::Active, BASIC, 0, 30)
    };
    let (after, steps) = advance(s, &plans, &Ledger::new(vec![(t(0), 9999)]), grace(), t(30));
    assert_eq!(
        steps,
        vec![Step::Stopped {
            at: t(30),
            status: Status::Canceled
        }]
    );
    assert_eq!(after.status, Status::Canceled);

    let s = State {
        cancel_at_period_end: true,
        ..state(Status::Active, PRO, 0, 30)
    };
    let (after, _) = advance(s, &plans, &Ledger::default(), grace(), t(30));
    assert_eq!(after, state(Status::Active, FREE, 30, 60));
}

#[test]
fn a_free_plan_catches_up_every_missed_cycle() {
    let s = state(Status::Active, FREE, 0, 30);
    let (after, steps) = advance(s, &plans, &Ledger::default(), grace(), t(100));
    assert_eq!(steps.len(), 3);
    assert_eq!(after, state(Status::Active, FREE, 90, 120));
}

#[test]
fn an_unknown_plan_stops_the_subscription() {
    let s = state(Status::Active, 99, 0, 30);
    let (after, steps) = advance(s, &plans, &Ledger::default(), grace(), t(31));
    assert_eq!(
        steps,
        vec![Step::Stopped {
            at: t(30),
            status: Status::Expired
        }]
    );
    assert_eq!(after.status, Status::Expired);
}

fn any_plan() -> impl Strategy<Value = u128> {
    prop_oneof![
        Just(TRIAL),
        Just(FREE),
        Just(PRO),
        Just(BASIC),
        Just(TRIAL_TO_FREE)
    ]
}

fn any_state() -> impl Strategy<Value = State> {
    (
        prop_oneof![
            Just(Status::Trialing),
            Just(Status::Active),
            Just(Status::PastDue)
        ],
        any_plan(),
        0i64..40,
        prop::option::of(any_plan()),
        any::<bool>(),
    )
        .prop_map(|(status, plan, start, pending, cancel)| State {
            status,
            plan_id: id(plan),
            period_start: t(start),
            period_end: t(start + 30),
            pending_plan_id: pending.map(id),
            cancel_at_period_end: cancel,
        })
}

/// Applies the steps' charges to the ledger, as the sweep does when it stores them.
fn record(ledger: &mut Vec<(Timestamp, i64)>, steps: &[Step]) {
    for step in steps {
        match *step {
            Step::Renewed {
                charge, charged_at, ..
            } if charge > 0 => ledger.push((charged_at, -charge)),
            Step::FellBack { charge, at, .. } if charge > 0 => ledger.push((at, -charge)),
            _ => {}
        }
    }
}

proptest! {
    /// One sweep at T leaves the same state and the same charges as any number of sweeps up to T.
    #[test]
    fn sweeps_are_path_independent(
        start in any_state(),
        grants in prop::collection::vec((0i64..400, 0i64..3000), 0..6),
        mut sweeps in prop::collection::vec(0i64..400, 0..8),
        end in 0i64..400,
    ) {
        let grants: Vec<(Timestamp, i64)> = grants.into_iter().map(|(d, a)| (t(d), a)).collect();
        // A ledger as known at time `at`: the grants made by then plus the charges recorded.
        let known = |charges: &Vec<(Timestamp, i64)>, at: Timestamp| {
            let mut entries: Vec<_> = grants.iter().copied().filter(|(g, _)| *g <= at).collect();
            entries.extend(charges.iter().copied());
            Ledger::new(entries)
        };

        let mut once_charges = Vec::new();
        let (once, once_steps) = advance(start, &plans, &known(&once_charges, t(end)), grace(), t(end));
        record(&mut once_charges, &once_steps);

        sweeps.retain(|s| *s <= end);
        sweeps.sort();
        sweeps.push(end);
        let mut state = start;
        let mut charges = Vec::new();
        for at in sweeps {
            let (next, steps) = advance(state, &plans, &known(&charges, t(at)), grace(), t(at));
            record(&mut charges, &steps);
            state = next;
        }
        once_charges.sort();
        charges.sort();
        prop_assert_eq!(state, once);
        prop_assert_eq!(charges, once_charges);
    }

    /// A cycle is charged at most once, and never more than the credits granted allow.
    #[test]
    fn charges_never_exceed_credits(
        start in any_state(),
        grants in prop::collection::vec((0i64..400, 0i64..3000), 0..6),
        end in 0i64..400,
    ) {
        let ledger: Vec<(Timestamp, i64)> = grants.into_iter().map(|(d, a)| (t(d), a)).collect();
        let granted: i64 = ledger.iter().map(|(_, a)| a).sum();
        let (_, steps) = advance(start, &plans, &Ledger::new(ledger), grace(), t(end));
        let mut charges = Vec::new();
        record(&mut charges, &steps);
        let charged: i64 = charges.iter().map(|(_, a)| -a).sum();
        prop_assert!(charged <= granted);
        let mut periods: Vec<_> = steps.iter().filter_map(|s| match s {
            Step::Renewed { period_start, .. } => Some(*period_start),
            _ => None,
        }).collect();
        let n = periods.len();
        periods.dedup();
        prop_assert_eq!(periods.len(), n);
    }
}
