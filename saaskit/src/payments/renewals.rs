//! Paying for renewals from the card on file, before the sweep renews.
//!
//! For each current subscription whose period ends within [`LEAD`] (or has ended, and is past
//! due within its grace period) and whose business has a card, the charge is what the credits do
//! not cover of the price of the plan it renews onto (at least [`super::MIN_AMOUNT`]). Attempts
//! are numbered: 0 at the period end (from [`LEAD`] before it), then on days 1 and 3 of the grace
//! period and on its last day (`deadline - 1 day`), those that fall inside it. Each attempt's
//! idempotency key is `renewal:<subscription>:<period end>:<attempt>`: claimed once in
//! `payments`, so two sweeps at once (or a sweep that crashed and ran again) charge once.
//!
//! The sweep ([`crate::billing::sweep`]) then does what it always does with the ledger: a
//! payment that succeeded is a credit, the renewal is covered, the subscription renews (or leaves
//! `past_due`); a decline leaves it uncovered, so it goes `past_due` and, after the grace
//! period, expires or falls back as before.

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::Duration;
use uuid::Uuid;

use super::{ChargeRequest, NotCharged, PaymentError};
use crate::app::App;
use crate::audit::Actor;
use crate::db::{Timestamp, Tx};
use crate::store::payments::{self as store, DueRenewal, Payment};
use crate::store::plans::Plan;
use crate::store::{businesses, ledger, members};

/// How long before a period ends its renewal is charged, so that the credit is there when it
/// ends.
pub const LEAD: Duration = Duration::hours(1);

/// How long a claimed attempt may stay `pending` (its provider call cut short by a crash) before
/// the job resumes it with the same key.
const RESUME_AFTER: Duration = Duration::minutes(2);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CollectReport {
    pub charged: u64,
    pub declined: u64,
    /// Attempts another worker had claimed.
    pub claimed_elsewhere: u64,
    pub resumed: u64,
    pub errors: u64,
}

/// The moments of a renewal's attempts, oldest first: the period end, then days 1 and 3 of the
/// grace period and its last day, those inside it.
pub fn attempt_times(period_end: Timestamp, grace: Duration) -> Vec<Timestamp> {
    let mut offsets = vec![
        Duration::days(1),
        Duration::days(3),
        grace - Duration::days(1),
    ];
    offsets.retain(|o| *o > Duration::zero() && *o < grace);
    offsets.sort();
    offsets.dedup();
    let mut times = vec![period_end];
    times.extend(offsets.into_iter().map(|o| period_end.plus(o)));
    times
}

/// The attempt due at `now` for a period ending at `period_end`: its number and time, or `None`
/// (not yet within [`LEAD`] of the end, or past the grace period).
pub fn attempt_due(
    period_end: Timestamp,
    grace: Duration,
    now: Timestamp,
) -> Option<(i64, Timestamp)> {
    let deadline = period_end.plus(grace);
    if now < period_end.plus(-LEAD) || (now >= deadline && now > period_end) {
        return None;
    }
    let times = attempt_times(period_end, grace);
    let index = times.iter().rposition(|t| *t <= now).unwrap_or(0);
    Some((index as i64, times[index]))
}

/// Charges what the due renewals need (`plans` and `grace` as the sweep read them). Nothing
/// without a provider.
pub async fn collect(
    app: &App,
    plans: &HashMap<Uuid, Plan>,
    grace: Duration,
    now: Timestamp,
) -> anyhow::Result<CollectReport> {
    let mut report = CollectReport::default();
    if app.payments.is_none() {
        return Ok(report);
    }
    resume(app, now, &mut report).await?;
    let mut after = (Timestamp::from_micros(0).unwrap_or(now), Uuid::nil());
    loop {
        let page = {
            let mut tx = app.db.read().await?;
            store::due_renewals_with_card(tx.conn(), now.plus(LEAD), after, 200).await?
        };
        let Some(last) = page.last() else { break };
        after = (last.current_period_end, last.subscription_id);
        for due in &page {
            if let Err(err) = collect_one(app, plans, grace, due, now, &mut report).await {
                report.errors += 1;
                tracing::error!(subscription_id = %due.subscription_id, error = format!("{err:#}"), "could not charge a renewal");
            }
        }
    }
    if report != CollectReport::default() {
        tracing::info!(?report, "renewal payments");
    }
    Ok(report)
}

async fn collect_one(
    app: &App,
    plans: &HashMap<Uuid, Plan>,
    grace: Duration,
    due: &DueRenewal,
    now: Timestamp,
    report: &mut CollectReport,
) -> anyhow::Result<()> {
    let current = plans.get(&due.plan_id);
    let next = match due.pending_plan_id {
        Some(id) => plans.get(&id),
        None if due.status == "past_due" || current.is_some_and(|p| p.renews) => current,
        None => None,
    };
    let Some(plan) = next.filter(|p| p.price_minor > 0) else {
        return Ok(());
    };
    let Some((attempt, _)) = attempt_due(due.current_period_end, grace, now) else {
        return Ok(());
    };
    let balance = {
        let mut tx = app.db.read().await?;
        ledger::balance(tx.conn(), due.business_id).await?
    };
    let shortfall = plan.price_minor - balance;
    if shortfall <= 0 {
        return Ok(());
    }
    let request = ChargeRequest {
        business_id: due.business_id,
        purpose: "renewal",
        amount: shortfall.max(super::MIN_AMOUNT),
        currency: plan.currency.clone(),
        key: format!(
            "renewal:{}:{}:{attempt}",
            due.subscription_id,
            due.current_period_end.micros()
        ),
        subscription_id: Some(due.subscription_id),
        period_start: Some(due.current_period_end),
        attempt: Some(attempt),
        actor: Actor::System,
        off_session: true,
        description: format!("Renewal: {}", plan.name),
    };
    match super::charge(app, &request).await {
        Ok(charged) => match charged.charge {
            super::provider::Charge::Succeeded { .. } => report.charged += 1,
            _ => report.declined += 1,
        },
        Err(NotCharged::Claimed(held)) => {
            report.claimed_elsewhere += 1;
            // Another worker is charging it right now: wait for its outcome, so that this
            // sweep does not take the renewal as unpaid meanwhile.
            wait_settled(app, &held).await?;
        }
        Err(NotCharged::Error(PaymentError::NoPaymentMethod)) => {}
        Err(NotCharged::Error(err)) => return Err(anyhow::Error::new(err)),
    }
    Ok(())
}

/// Waits (up to the provider's timeout) while another worker's claimed payment is pending.
async fn wait_settled(app: &App, held: &Payment) -> anyhow::Result<()> {
    if held.status != "pending" {
        return Ok(());
    }
    for _ in 0..700 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut tx = app.db.read().await?;
        let now = store::find_payment(tx.conn(), held.id).await?;
        if now.is_none_or(|p| p.status != "pending" || p.provider_payment_id.is_some()) {
            return Ok(());
        }
    }
    Ok(())
}

/// Payments whose provider call was cut short (the process died, the provider did not answer):
/// called again with the same idempotency key, which the provider answers with what it did the
/// first time (or does now, if it never got the call).
async fn resume(app: &App, now: Timestamp, report: &mut CollectReport) -> anyhow::Result<()> {
    let Some(payments) = app.payments.as_ref() else {
        return Ok(());
    };
    let stale = {
        let mut tx = app.db.read().await?;
        store::unsettled(tx.conn(), now.plus(-RESUME_AFTER), 100).await?
    };
    for payment in stale {
        // Only a renewal the provider never answered about: one it answered `processing` for
        // settles by webhook, and so does a top-up or plan change cut short (its customer was
        // told it is unknown, and may try again; Stripe's event settles the first if it went
        // through).
        if payment.provider_payment_id.is_some() || payment.purpose != "renewal" {
            continue;
        }
        let account = {
            let mut tx = app.db.begin().await?;
            if !store::touch_pending(tx.conn(), payment.id, payment.updated_at, now).await? {
                continue; // another worker resumed it
            }
            let account = store::account(tx.conn(), payment.business_id).await?;
            tx.commit().await?;
            account
        };
        let Some((account, pm)) =
            account.and_then(|a| a.payment_method_id.clone().map(|pm| (a, pm)))
        else {
            continue;
        };
        let request = ChargeRequest {
            business_id: payment.business_id,
            purpose: "renewal",
            amount: payment.amount,
            currency: payment.currency.clone(),
            key: payment.idempotency_key.clone(),
            subscription_id: payment.subscription_id,
            period_start: payment.period_start,
            attempt: payment.attempt,
            actor: Actor::System,
            off_session: true,
            description: "Renewal (resumed)".into(),
        };
        match super::call_and_record(app, payments, &payment, &account.customer_id, &pm, &request)
            .await
        {
            Ok(_) => report.resumed += 1,
            Err(NotCharged::Error(PaymentError::Unavailable(_))) => {}
            Err(NotCharged::Error(err)) => return Err(anyhow::Error::new(err)),
            Err(NotCharged::Claimed(_)) => {}
        }
    }
    Ok(())
}

/// Mails the owners of a business whose renewal was declined: what, why, and when it is tried
/// again (or that it will not be).
pub(crate) async fn mail_declined(
    app: &App,
    tx: &mut Tx,
    payment: &Payment,
    code: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let business = businesses::find(tx.conn(), payment.business_id)
        .await?
        .context("the payment's business")?;
    let grace = Duration::days(i64::from(app.config.grace_period_days));
    let next = payment.period_start.and_then(|end| {
        let index = usize::try_from(payment.attempt.unwrap_or(0)).ok()?;
        attempt_times(end, grace).get(index + 1).copied()
    });
    let next_attempt = match next {
        Some(at) => format!(
            "We will try the card on file again on {}.",
            crate::web::format::moment(at)
        ),
        None => "This was the last attempt: add credits or a working card before the grace period ends to keep the subscription.".into(),
    };
    let amount = crate::web::format::money(payment.amount, &payment.currency);
    let reason = decline_reason(code);
    let link = format!("{}/billing", app.config.public_base());
    for owner in members::list_active(tx.conn(), payment.business_id)
        .await?
        .into_iter()
        .filter(|m| m.role == "owner")
    {
        let rendered = crate::mail::PaymentFailed {
            business_name: &business.name,
            amount: &amount,
            reason,
            next_attempt: &next_attempt,
            link: &link,
        }
        .render()?;
        crate::mail::enqueue(tx, &app.mailer, &owner.email, rendered, now).await?;
    }
    Ok(())
}

/// A decline code as a sentence.
pub fn decline_reason(code: &str) -> &'static str {
    match code {
        "insufficient_funds" => "the card has insufficient funds",
        "expired_card" => "the card has expired",
        "authentication_required" => "the bank asks the card holder to confirm the payment",
        "lost_card" | "stolen_card" | "pickup_card" => "the card can no longer be used",
        "incorrect_cvc" | "incorrect_number" | "invalid_cvc" | "invalid_number" => {
            "the card details are not correct"
        }
        "processing_error" => "the bank could not process it",
        _ => "the bank declined it",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> Timestamp {
        Timestamp::from_micros(1_800_000_000_000_000)
            .expect("a time")
            .plus(Duration::days(days))
    }

    #[test]
    fn attempts_fall_on_the_period_end_days_1_and_3_and_the_last_day_of_grace() {
        let end = at(0);
        assert_eq!(
            attempt_times(end, Duration::days(7)),
            vec![at(0), at(1), at(3), at(6)]
        );
        // Three days of grace: day 1, and day 2 is the last day (day 3 is the deadline).
        assert_eq!(
            attempt_times(end, Duration::days(3)),
            vec![at(0), at(1), at(2)]
        );
        assert_eq!(attempt_times(end, Duration::days(2)), vec![at(0), at(1)]);
        assert_eq!(attempt_times(end, Duration::days(0)), vec![at(0)]);
    }

    #[test]
    fn the_attempt_due_is_the_latest_one_passed() {
        let end = at(10);
        let grace = Duration::days(7);
        assert_eq!(attempt_due(end, grace, at(8)), None, "too early");
        assert_eq!(
            attempt_due(end, grace, end.plus(-Duration::minutes(30))),
            Some((0, end)),
            "within the lead"
        );
        assert_eq!(attempt_due(end, grace, at(10)), Some((0, at(10))));
        assert_eq!(attempt_due(end, grace, at(11)), Some((1, at(11))));
        assert_eq!(attempt_due(end, grace, at(12)), Some((1, at(11))));
        assert_eq!(attempt_due(end, grace, at(13)), Some((2, at(13))));
        assert_eq!(attempt_due(end, grace, at(16)), Some((3, at(16))));
        assert_eq!(
            attempt_due(end, grace, at(17)),
            None,
            "the grace period is over"
        );
    }
}
