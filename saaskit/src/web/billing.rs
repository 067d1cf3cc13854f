//! `/billing`: the subscription, the plans one can choose, a plan change shown with what it
//! costs before it is confirmed (the API's dry run), cancelling at the period end and
//! resuming, and the history of credits and charges.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{Empty, Notice};
use super::format::{day, moment, money};
use super::session::{SignedIn, Submitted};
use super::{FormErrors, problem_page, render};
use crate::app::AppState;
use crate::billing::changes::{self, Preview, When};
use crate::domain::Permission;
use crate::error::ApiError;
use crate::http::billing::{ChangeRequest, SubscriptionResponse, catalog, subscription_view};

pub struct PlanRow {
    pub code: String,
    pub name: String,
    pub description: String,
    pub price: String,
    pub limits: String,
    pub current: bool,
}

pub struct EntryRow {
    pub when: String,
    pub what: String,
    pub amount: String,
    pub note: String,
}

/// A previewed change, waiting for a confirmation.
pub struct Proposal {
    pub plan: String,
    pub plan_name: String,
    pub at: &'static str,
    pub takes_effect: String,
    pub price: String,
    pub credit: String,
    pub due: String,
    pub balance_after: String,
    pub exceeding: Vec<String>,
}

#[derive(askama::Template)]
#[template(path = "pages/billing.html")]
struct BillingPage {
    chrome: super::Chrome,
    allowed: bool,
    subscription: Option<SubscriptionResponse>,
    period: String,
    balance: String,
    pending: Option<String>,
    plans: Vec<PlanRow>,
    proposal: Option<Proposal>,
    history: Vec<EntryRow>,
    errors: FormErrors,
}

fn entry_kind(kind: &str) -> &'static str {
    match kind {
        "grant" => "Credits granted",
        "renewal_charge" => "Charge for a period",
        "proration_credit" => "Credit for the unused period",
        "refund" => "Refund",
        "adjustment" => "Adjustment",
        _ => "Other",
    }
}

async fn billing_page(
    app: &AppState,
    signed_in: &SignedIn,
    notice: Option<&str>,
    proposal: Option<Proposal>,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let p = &signed_in.principal;
    let allowed = p.role().is_some_and(|r| r.may(Permission::ManageBilling));
    let subscription = match subscription_view(app, p.business_id).await {
        Ok(s) => s,
        Err(e) => return problem_page(e),
    };
    let currency = subscription
        .as_ref()
        .map_or_else(String::new, |s| s.plan.currency.clone());
    let plans = match catalog(app).await {
        Ok(c) => c,
        Err(e) => return problem_page(e),
    };
    let current_code = subscription.as_ref().map(|s| s.plan.code.clone());
    let plans = plans
        .into_iter()
        .map(|c| {
            let plan = c.plan;
            let limits = if plan.limits.is_empty() {
                "No limits".to_owned()
            } else {
                plan.limits
                    .iter()
                    .map(|(meter, n)| format!("{n} {meter}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            PlanRow {
                current: current_code.as_deref() == Some(plan.code.as_str()),
                price: format!(
                    "{} every {} days",
                    money(plan.price, &plan.currency),
                    plan.cycle_days
                ),
                code: plan.code,
                name: plan.name,
                description: plan.description,
                limits,
            }
        })
        .collect();
    let history = if allowed {
        match changes::history(app, p, 50).await {
            Ok(entries) => entries
                .into_iter()
                .map(|e| EntryRow {
                    when: moment(e.created_at),
                    what: entry_kind(&e.kind).to_owned(),
                    amount: money(e.amount, &e.currency),
                    note: e.note.unwrap_or_default(),
                })
                .collect(),
            Err(e) => return problem_page(e.into()),
        }
    } else {
        Vec::new()
    };
    let pending = subscription.as_ref().and_then(|s| {
        if s.cancel_at_period_end {
            Some(format!(
                "Cancels at the end of the period, {}.",
                day(s.current_period_end)
            ))
        } else {
            s.pending_change
                .as_ref()
                .map(|c| format!("Moves to the plan {} on {}.", c.plan, day(c.at)))
        }
    });
    let page = BillingPage {
        chrome: signed_in.chrome("Billing").notice(notice),
        allowed,
        period: subscription.as_ref().map_or_else(String::new, |s| {
            format!(
                "{} – {}",
                day(s.current_period_start),
                day(s.current_period_end)
            )
        }),
        balance: subscription
            .as_ref()
            .map_or_else(String::new, |s| money(s.credit_balance, &currency)),
        pending,
        subscription,
        plans,
        proposal,
        history,
        errors,
    };
    render(status, &page)
}

pub async fn show_billing(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<Notice>,
) -> Response {
    billing_page(
        &app,
        &signed_in,
        q.notice.as_deref(),
        None,
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

async fn refused(app: &AppState, signed_in: &SignedIn, err: ApiError) -> Response {
    let status = err.status;
    match FormErrors::from_api(err, &[]) {
        Ok(errors) => billing_page(app, signed_in, None, None, errors, status).await,
        Err(err) => problem_page(err),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ChangeForm {
    plan: Option<String>,
    at: Option<String>,
}

impl ChangeForm {
    fn parse(self) -> Result<(String, When), ApiError> {
        ChangeRequest {
            plan: self.plan,
            at: self.at,
            dry_run: false,
        }
        .parse()
    }
}

fn proposal(preview: Preview, when: When, currency: &str, plan_name: String) -> Proposal {
    Proposal {
        plan_name,
        at: match when {
            When::Now => "now",
            When::PeriodEnd => "period_end",
        },
        takes_effect: match when {
            When::Now => "now".to_owned(),
            When::PeriodEnd => format!("on {}", day(preview.at)),
        },
        price: money(preview.price, currency),
        credit: money(preview.credit, currency),
        due: money(preview.amount_due, currency),
        balance_after: money(preview.balance_after, currency),
        exceeding: preview
            .exceeding
            .iter()
            .map(|e| format!("{}: {} used, the plan allows {}", e.meter, e.used, e.limit))
            .collect(),
        plan: preview.plan,
    }
}

/// `POST /billing/preview`: what the change would cost, with a button to confirm it.
pub async fn preview_change(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<ChangeForm>,
) -> Response {
    let (plan, when) = match form.parse() {
        Ok(parsed) => parsed,
        Err(err) => return refused(&app, &signed_in, err).await,
    };
    match changes::preview(&app, &signed_in.principal, &plan, when).await {
        Ok(preview) => {
            let currency = signed_in
                .principal
                .plan
                .as_ref()
                .map_or_else(String::new, |p| p.currency.clone());
            let name = catalog(&app)
                .await
                .ok()
                .and_then(|c| c.into_iter().find(|c| c.plan.code == preview.plan))
                .map_or_else(|| preview.plan.clone(), |c| c.plan.name);
            let proposal = proposal(preview, when, &currency, name);
            billing_page(
                &app,
                &signed_in,
                None,
                Some(proposal),
                FormErrors::default(),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => refused(&app, &signed_in, e.into()).await,
    }
}

/// `POST /billing/change`: the confirmed change.
pub async fn change_plan(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<ChangeForm>,
) -> Response {
    let (plan, when) = match form.parse() {
        Ok(parsed) => parsed,
        Err(err) => return refused(&app, &signed_in, err).await,
    };
    match changes::change(&app, &signed_in.principal, &plan, when).await {
        Ok(_) => Redirect::to("/billing?notice=plan_changed").into_response(),
        Err(e) => refused(&app, &signed_in, e.into()).await,
    }
}

pub async fn cancel_subscription(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match changes::set_cancel(&app, &signed_in.principal, true).await {
        Ok(_) => Redirect::to("/billing?notice=canceled").into_response(),
        Err(e) => refused(&app, &signed_in, e.into()).await,
    }
}

pub async fn resume_subscription(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match changes::set_cancel(&app, &signed_in.principal, false).await {
        Ok(_) => Redirect::to("/billing?notice=resumed").into_response(),
        Err(e) => refused(&app, &signed_in, e.into()).await,
    }
}
