//! `/billing`: the subscription, the plans one can choose, a plan change shown with what it
//! costs before it is confirmed (the API's dry run), cancelling at the period end and
//! resuming, and the history of credits and charges. With payments configured, owners and
//! admins also see the card on file (saved through Stripe.js: the card's number goes to Stripe
//! only, the page posts the payment method it made), buy credits with it, and see the payments.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::auth::{Empty, Notice};
use super::format::{day, moment, money, parse_amount};
use super::session::{SignedIn, Submitted};
use super::{FormErrors, ThirdParty, assets, problem_page, render};
use crate::app::AppState;
use crate::billing::changes::{self, Preview, When};
use crate::domain::Permission;
use crate::error::ApiError;
use crate::http::billing::{ChangeRequest, SubscriptionResponse, catalog, subscription_view};
use crate::payments::{self, CardView, PaymentError, PaymentView};

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
    /// The payment method and top-up sections: payments configured, an owner or admin looking.
    pay: Option<Pay>,
    /// The last 20 payments, newest first (owners and admins).
    payments: Vec<PaymentRow>,
    /// After a top-up (`?paid=<payment>`): what became of it.
    paid: Option<String>,
}

/// What the payment sections show.
pub struct Pay {
    pub card: Option<CardRow>,
    /// For Stripe.js; without one the card form is not offered.
    pub publishable_key: Option<String>,
    pub card_error: Option<String>,
    pub currency: String,
    /// The amount as typed, sent back with the form.
    pub amount: String,
    pub top_up_alert: Option<String>,
    /// A top-up the bank wants confirmed (3-D Secure), for Stripe.js.
    pub confirm: Option<Confirmation>,
}

pub struct CardRow {
    pub brand: String,
    pub last4: String,
    pub expires: String,
}

pub struct Confirmation {
    pub client_secret: String,
    pub payment_id: Uuid,
}

pub struct PaymentRow {
    pub id: Uuid,
    pub when: String,
    pub what: &'static str,
    pub amount: String,
    pub status: &'static str,
    pub ok: bool,
    pub card: String,
    /// Refunds, disputes, why it failed.
    pub notes: Vec<String>,
}

/// What a page shows beyond the plain `/billing`: a notice after a redirect, or a form sent
/// back with what went wrong.
#[derive(Default)]
struct Shown<'a> {
    notice: Option<&'a str>,
    paid: Option<Uuid>,
    proposal: Option<Proposal>,
    errors: FormErrors,
    amount: String,
    top_up_alert: Option<String>,
    confirm: Option<Confirmation>,
    card_error: Option<String>,
    status: StatusCode,
}

fn card_row(card: CardView) -> CardRow {
    CardRow {
        brand: brand_name(&card.brand),
        last4: card.last4,
        expires: format!("{:02}/{}", card.exp_month, card.exp_year),
    }
}

fn brand_name(brand: &str) -> String {
    match brand {
        "visa" => "Visa".into(),
        "mastercard" => "Mastercard".into(),
        "amex" => "American Express".into(),
        "discover" => "Discover".into(),
        "jcb" => "JCB".into(),
        "diners" => "Diners Club".into(),
        "unionpay" => "UnionPay".into(),
        "" => "Card".into(),
        other => other.to_owned(),
    }
}

fn payment_row(p: PaymentView) -> PaymentRow {
    let (status, ok) = match p.status.as_str() {
        "succeeded" => ("Paid", true),
        "failed" => ("Failed", false),
        "requires_action" => ("Awaiting confirmation", false),
        _ => ("Processing", false),
    };
    let mut notes = Vec::new();
    if p.refunded_amount > 0 {
        notes.push(format!(
            "Refunded {}",
            money(p.refunded_amount, &p.currency)
        ));
    }
    if p.disputed_amount > 0 {
        notes.push(format!(
            "Disputed {}",
            money(p.disputed_amount, &p.currency)
        ));
    }
    if let Some(code) = p.decline_code.as_deref().filter(|_| p.status == "failed") {
        notes.push(format!(
            "Declined: {}",
            payments::renewals::decline_reason(code)
        ));
    }
    PaymentRow {
        id: p.id,
        when: moment(p.created_at),
        what: match p.purpose.as_str() {
            "top_up" => "Credits",
            "renewal" => "Renewal",
            "plan_change" => "Plan change",
            _ => "Payment",
        },
        amount: money(p.amount, &p.currency),
        status,
        ok,
        card: p.card.map_or_else(String::new, |c| {
            format!("{} •••• {}", brand_name(&c.brand), c.last4)
        }),
        notes,
    }
}

fn entry_kind(kind: &str) -> &'static str {
    match kind {
        "grant" => "Credits granted",
        "renewal_charge" => "Charge for a period",
        "proration_credit" => "Credit for the unused period",
        "payment" => "Card payment",
        "refund" => "Refund",
        "dispute" => "Dispute",
        "adjustment" => "Adjustment",
        _ => "Other",
    }
}

async fn billing_page(app: &AppState, signed_in: &SignedIn, shown: Shown<'_>) -> Response {
    let Shown {
        notice,
        paid,
        proposal,
        mut errors,
        amount,
        top_up_alert,
        confirm,
        card_error,
        status,
    } = shown;
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
    let payments = if allowed {
        match payments::list(app, p, None, 20).await {
            Ok((page, _)) => page.into_iter().map(payment_row).collect(),
            Err(e) => return problem_page(e.into()),
        }
    } else {
        Vec::<PaymentRow>::new()
    };
    let paid = paid
        .and_then(|id| payments.iter().find(|row| row.id == id))
        .map(|row| match row.status {
            "Paid" => format!("Payment of {} received.", row.amount),
            "Failed" => format!("The payment of {} failed.", row.amount),
            _ => format!(
                "The payment of {} is being processed; the credits arrive when it succeeds.",
                row.amount
            ),
        });
    let configured = app.payments.as_ref().filter(|_| allowed);
    let pay = match configured {
        Some(config) => {
            let card = match payments::payment_method(app, p).await {
                Ok(card) => card.map(card_row),
                Err(e) => return problem_page(e.into()),
            };
            let currency = {
                let currency = async {
                    let mut tx = app.db.read().await?;
                    payments::currency_of(&mut tx, p.business_id).await
                };
                match currency.await {
                    Ok(c) => c,
                    Err(e) => return super::server_error(e.into()),
                }
            };
            Some(Pay {
                card,
                publishable_key: config.publishable_key.clone(),
                card_error,
                currency,
                amount,
                top_up_alert,
                confirm,
            })
        }
        None => {
            // Refused where the payment sections are not shown (a member, payments off): the
            // sentence goes at the top.
            if errors.general.is_none() {
                errors.general = card_error.or(top_up_alert);
            }
            None
        }
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
    let mut chrome = signed_in.chrome("Billing").notice(notice);
    // Stripe.js, and the page's script driving it, only here and only when there is a form
    // for them.
    let third_party = match (app.payments.as_ref(), &pay) {
        (Some(config), Some(shown)) if shown.publishable_key.is_some() => {
            let allowed = ThirdParty::stripe(&config.js_url);
            if allowed.is_some() {
                chrome.page_scripts =
                    vec![config.js_url.clone(), assets::BILLING_SCRIPT.path.clone()];
            }
            allowed
        }
        _ => None,
    };
    let page = BillingPage {
        chrome,
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
        pay,
        payments,
        paid,
    };
    let mut res = render(status, &page);
    if let Some(third_party) = third_party {
        res.extensions_mut().insert(third_party);
    }
    res
}

#[derive(Debug, Default, Deserialize)]
pub struct BillingQuery {
    #[serde(flatten)]
    notice: Notice,
    /// The payment a top-up just made.
    paid: Option<String>,
}

pub async fn show_billing(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<BillingQuery>,
) -> Response {
    let shown = Shown {
        notice: q.notice.notice.as_deref(),
        paid: q.paid.and_then(|id| id.parse().ok()),
        ..Shown::default()
    };
    billing_page(&app, &signed_in, shown).await
}

async fn refused(app: &AppState, signed_in: &SignedIn, err: ApiError) -> Response {
    let status = err.status;
    match FormErrors::from_api(err, &[]) {
        Ok(errors) => {
            let shown = Shown {
                errors,
                status,
                ..Shown::default()
            };
            billing_page(app, signed_in, shown).await
        }
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
            let shown = Shown {
                proposal: Some(proposal(preview, when, &currency, name)),
                ..Shown::default()
            };
            billing_page(&app, &signed_in, shown).await
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

/// `POST /billing/card/setup`, from the page's script: a SetupIntent's client secret for
/// Stripe.js, as JSON (`{"client_secret"}`, or `{"error"}` with a sentence to show).
pub async fn start_card_setup(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match payments::setup_intent(&app, &signed_in.principal).await {
        Ok(setup) => Json(json!({"client_secret": setup.client_secret})).into_response(),
        Err(e) => {
            let err = ApiError::from(e);
            let message = if err.status.is_server_error() {
                tracing::error!(error = ?err.source, code = err.code, "a card setup failed");
                "The card could not be saved just now. Try again in a moment.".to_owned()
            } else {
                super::forms::sentence(&err)
            };
            (err.status, Json(json!({"error": message}))).into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CardForm {
    #[serde(default)]
    payment_method: String,
}

/// `POST /billing/card`: the payment method Stripe.js made becomes the card on file.
pub async fn save_card(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<CardForm>,
) -> Response {
    let card_refused = |message: String, status: StatusCode| Shown {
        card_error: Some(message),
        status,
        ..Shown::default()
    };
    let Some(id) = crate::payments::payment_method_id(&form.payment_method) else {
        let shown = card_refused(
            "Enter the card's number, expiry and security code, then save it.".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
        return billing_page(&app, &signed_in, shown).await;
    };
    match payments::set_payment_method(&app, &signed_in.principal, id).await {
        Ok(_) => Redirect::to("/billing?notice=card_saved").into_response(),
        Err(e) => {
            let err = ApiError::from(e);
            if err.status.is_server_error() {
                return problem_page(err);
            }
            let message = err
                .errors
                .first()
                .map_or_else(|| super::forms::sentence(&err), |f| f.message.clone());
            let shown = card_refused(message, err.status);
            billing_page(&app, &signed_in, shown).await
        }
    }
}

/// `POST /billing/card/remove`
pub async fn remove_card(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match payments::remove_payment_method(&app, &signed_in.principal).await {
        Ok(()) => Redirect::to("/billing?notice=card_removed").into_response(),
        Err(e) => refused(&app, &signed_in, e.into()).await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TopUpForm {
    #[serde(default)]
    amount: String,
}

/// `POST /billing/top-up`: credits bought with the card on file, in the currency's units
/// (`25.00`).
pub async fn top_up(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<TopUpForm>,
) -> Response {
    let Some(amount) = parse_amount(&form.amount).filter(|a| *a > 0) else {
        let mut errors = FormErrors::default();
        errors.add("amount", "Enter an amount such as 25.00.");
        let shown = Shown {
            status: errors.status(),
            errors,
            amount: form.amount,
            ..Shown::default()
        };
        return billing_page(&app, &signed_in, shown).await;
    };
    let err = match payments::top_up(&app, &signed_in.principal, amount).await {
        Ok((payment, _)) => {
            return Redirect::to(&format!("/billing?paid={}", payment.id)).into_response();
        }
        Err(err) => err,
    };
    let mut shown = Shown {
        amount: form.amount,
        status: StatusCode::PAYMENT_REQUIRED,
        ..Shown::default()
    };
    match err {
        PaymentError::InvalidAmount => {
            let currency = signed_in
                .principal
                .plan
                .as_ref()
                .map_or(payments::DEFAULT_CURRENCY, |p| p.currency.as_str());
            shown.errors.add(
                "amount",
                &format!(
                    "From {} to {}.",
                    money(payments::MIN_AMOUNT, currency),
                    money(payments::MAX_AMOUNT, currency)
                ),
            );
            shown.status = shown.errors.status();
        }
        PaymentError::NoPaymentMethod => {
            shown.top_up_alert = Some("Add a card first: the business has no card on file.".into());
            shown.status = StatusCode::CONFLICT;
        }
        PaymentError::RequiresAction {
            payment,
            client_secret,
        } => {
            shown.top_up_alert = Some(format!(
                "Your bank asks you to confirm this payment of {}. Nothing is taken until \
                 you do.",
                money(payment.amount, &payment.currency)
            ));
            shown.confirm = Some(Confirmation {
                client_secret,
                payment_id: payment.id,
            });
        }
        PaymentError::Pending { payment } => {
            return Redirect::to(&format!("/billing?paid={}", payment.id)).into_response();
        }
        PaymentError::Unavailable(cause) => {
            tracing::warn!(
                error = format!("{cause:#}"),
                "a top-up met an unavailable provider"
            );
            shown.top_up_alert = Some(
                "The payment provider did not answer. Try again in a moment; a payment that \
                 went through shows in the history below."
                    .into(),
            );
            shown.status = StatusCode::SERVICE_UNAVAILABLE;
        }
        // Declined, refused, not configured: the API's sentence.
        other => {
            let err = ApiError::from(other);
            if err.status.is_server_error() {
                return problem_page(err);
            }
            shown.status = err.status;
            shown.top_up_alert = Some(super::forms::sentence(&err));
        }
    }
    billing_page(&app, &signed_in, shown).await
}
