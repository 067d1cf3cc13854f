//! Payments: money in through a provider (Stripe), into the credits ledger, each payment once.
//!
//! The ledger stays the one truth about money: a payment that succeeds becomes one `payment`
//! entry (positive), a refund a `refund` entry, a dispute a `dispute` entry; every entry names
//! the provider fact it records (`provider_ref`, unique), so a fact delivered twice — a retried
//! request, a webhook sent three times, two workers at once — counts once.
//!
//! - A business gets one customer at the provider on first need, and one default card.
//! - [`top_up`] charges the card now, with the customer present (3-D Secure may ask them to act).
//! - [`renewals::collect`] charges, off-session, what a due renewal's credits do not cover, before
//!   the sweep renews; a declined renewal goes `past_due`, the owners are mailed, and it is
//!   retried on days 1 and 3 of the grace period and on its last day.
//! - A plan change that needs money charges the difference ([`crate::billing::changes`]).
//! - [`events::receive`] applies the provider's webhooks: asynchronous successes and failures,
//!   refunds, disputes.
//!
//! Every charge first claims an idempotency key in `payments` (unique), sent to the provider as
//! its `Idempotency-Key`: whoever claims it charges, and a crashed attempt is resumed with the
//! same key, which the provider answers instead of charging again.

pub mod events;
pub mod provider;
pub mod renewals;
pub mod signature;
pub mod stripe;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use crate::accounts::Principal;
use crate::app::App;
use crate::audit::{self, Action, Actor, Event};
use crate::config::Config;
use crate::db::{Timestamp, Tx};
use crate::domain::Permission;
use crate::store::payments::{self as store, Account, CardOnFile, Payment, Settlement};
use crate::store::{ledger, subscriptions};
pub use provider::Provider;
use provider::{Charge, ProviderError};
use stripe::Stripe;

/// The provider's name in `payments.provider` and ledger references (Stripe, the one
/// [`Provider`] today).
pub const PROVIDER: &str = "stripe";
/// The smallest charge (Stripe's minimum for most currencies is 0.50).
pub const MIN_AMOUNT: i64 = 50;
/// The largest (Stripe's limit for an eight-digit amount).
pub const MAX_AMOUNT: i64 = 99_999_999;
/// The currency of a business without a subscription.
pub const DEFAULT_CURRENCY: &str = "USD";

/// A Stripe payment method id as Stripe.js makes it (`pm_` and letters, digits, `_`), trimmed;
/// `None` for anything else. It goes into the provider's URLs, so nothing else may pass.
pub fn payment_method_id(text: &str) -> Option<&str> {
    let id = text.trim();
    (id.len() > 3
        && id.len() <= 255
        && id.starts_with("pm_")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    .then_some(id)
}

/// The payment provider, when one is configured (`SAASKIT_STRIPE_SECRET_KEY`).
#[derive(Debug, Clone)]
pub struct Payments {
    /// Who takes the money (the boundary every payment goes through).
    pub provider: Provider,
    pub publishable_key: Option<String>,
    pub js_url: String,
    pub webhook_secrets: Vec<String>,
}

impl Payments {
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Payments>> {
        let Some(secret) = config
            .stripe_secret_key
            .as_deref()
            .filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        Ok(Some(Payments {
            provider: Provider::Stripe(Stripe::new(&config.stripe_api_base, secret)?),
            publishable_key: config.stripe_publishable_key.clone(),
            js_url: config.stripe_js_url.clone(),
            webhook_secrets: config
                .stripe_webhook_secret
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }))
    }

    /// The origin (`scheme://host[:port]`) Stripe.js is loaded from, for the card page's CSP.
    pub fn js_origin(&self) -> Option<String> {
        origin_of(&self.js_url)
    }
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

#[derive(Debug, Error)]
pub enum PaymentError {
    #[error("payments are not configured on this server")]
    NotConfigured,
    #[error("only owners and admins manage payments")]
    Forbidden,
    #[error("the business has no card on file")]
    NoPaymentMethod,
    #[error("the payment method cannot be used: {0}")]
    InvalidPaymentMethod(String),
    #[error("the amount is out of range")]
    InvalidAmount,
    #[error("the card was declined ({code})")]
    Declined {
        payment: Box<PaymentView>,
        code: String,
        message: String,
    },
    #[error("the payment needs the customer to authenticate")]
    RequiresAction {
        payment: Box<PaymentView>,
        client_secret: String,
    },
    /// Accepted by the provider, not settled yet: its outcome arrives as a webhook.
    #[error("the payment is still being processed")]
    Pending { payment: Box<PaymentView> },
    /// The provider did not answer: whether the payment happened is not known yet; it is
    /// resumed (with the same idempotency key) by the renewal job.
    #[error("the payment provider is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for PaymentError {
    fn from(err: sqlx::Error) -> Self {
        PaymentError::Unexpected(err.into())
    }
}

fn configured(app: &App) -> Result<&Payments, PaymentError> {
    app.payments.as_ref().ok_or(PaymentError::NotConfigured)
}

/// Only owners and admins (`ManageBilling`) pay and manage cards; returns who acts.
fn manager(principal: &Principal) -> Result<Uuid, PaymentError> {
    match &principal.member {
        Some(m) if m.role.may(Permission::ManageBilling) => Ok(m.user_id),
        _ => Err(PaymentError::Forbidden),
    }
}

/// A card as shown: never its number.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CardView {
    /// The provider's payment method id (`pm_…`).
    pub id: String,
    /// `visa`, `mastercard`, `amex`…
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
}

impl CardView {
    pub fn of(account: &Account) -> Option<CardView> {
        Some(CardView {
            id: account.payment_method_id.clone()?,
            brand: account.card_brand.clone().unwrap_or_default(),
            last4: account.card_last4.clone().unwrap_or_default(),
            exp_month: account.card_exp_month.unwrap_or(0),
            exp_year: account.card_exp_year.unwrap_or(0),
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CardSummary {
    pub brand: String,
    pub last4: String,
}

/// A ledger entry a payment produced.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentEntryView {
    pub id: Uuid,
    /// `payment`, `refund` or `dispute`.
    pub kind: String,
    /// Minor units; negative for a refund or an opened dispute.
    pub amount: i64,
    pub created_at: Timestamp,
}

/// A payment as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub id: Uuid,
    /// `top_up`, `renewal` or `plan_change`.
    pub purpose: String,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    /// `pending`, `requires_action` (the customer must authenticate), `succeeded` or `failed`.
    pub status: String,
    pub refunded_amount: i64,
    pub disputed_amount: i64,
    #[schema(required = true)]
    pub card: Option<CardSummary>,
    /// `stripe`.
    pub provider: String,
    /// The provider's payment (`pi_…`).
    #[schema(required = true)]
    pub provider_payment_id: Option<String>,
    /// The provider's charge (`ch_…`).
    #[schema(required = true)]
    pub provider_charge_id: Option<String>,
    /// Why it failed: the issuer's decline code (`insufficient_funds`…) or the provider's.
    #[schema(required = true)]
    pub decline_code: Option<String>,
    #[schema(required = true)]
    pub failure_message: Option<String>,
    /// The renewal it paid for, if any.
    #[schema(required = true)]
    pub subscription_id: Option<Uuid>,
    /// The ledger entries it produced, oldest first.
    pub ledger_entries: Vec<PaymentEntryView>,
    pub created_at: Timestamp,
}

impl PaymentView {
    pub(crate) fn of(p: &Payment, entries: Vec<PaymentEntryView>) -> PaymentView {
        let card = match (&p.card_brand, &p.card_last4) {
            (Some(brand), Some(last4)) => Some(CardSummary {
                brand: brand.clone(),
                last4: last4.clone(),
            }),
            _ => None,
        };
        PaymentView {
            id: p.id,
            purpose: p.purpose.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            status: p.status.clone(),
            refunded_amount: p.refunded_amount,
            disputed_amount: p.disputed_amount,
            card,
            provider: p.provider.clone(),
            provider_payment_id: p.provider_payment_id.clone(),
            provider_charge_id: p.provider_charge_id.clone(),
            decline_code: p.decline_code.clone(),
            failure_message: p.failure_message.clone(),
            subscription_id: p.subscription_id,
            ledger_entries: entries,
            created_at: p.created_at,
        }
    }
}

/// Views of `payments` with their ledger entries.
pub(crate) async fn views(tx: &mut Tx, payments: &[Payment]) -> sqlx::Result<Vec<PaymentView>> {
    let ids: Vec<Uuid> = payments.iter().map(|p| p.id).collect();
    let mut entries = store::entries_of(tx.conn(), &ids).await?;
    Ok(payments
        .iter()
        .map(|p| {
            let mine = entries
                .extract_if(.., |e| e.payment_id == p.id)
                .map(|e| PaymentEntryView {
                    id: e.id,
                    kind: e.kind,
                    amount: e.amount,
                    created_at: e.created_at,
                })
                .collect();
            PaymentView::of(p, mine)
        })
        .collect())
}

async fn view(app: &App, id: Uuid) -> Result<PaymentView, PaymentError> {
    let mut tx = app.db.read().await?;
    let payment = store::find_payment(tx.conn(), id)
        .await?
        .context("the payment just written")?;
    Ok(views(&mut tx, &[payment]).await?.remove(0))
}

/// The business's account at the provider, made on first need.
async fn ensure_account(
    app: &App,
    payments: &Payments,
    business_id: Uuid,
    business_name: &str,
) -> Result<Account, PaymentError> {
    {
        let mut tx = app.db.read().await?;
        if let Some(account) = store::account(tx.conn(), business_id).await? {
            return Ok(account);
        }
    }
    let customer = payments
        .provider
        .create_customer(
            &business_id.to_string(),
            business_name,
            &format!("customer:{business_id}"),
        )
        .await
        .map_err(unavailable)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let account = Account {
        business_id,
        provider: PROVIDER.into(),
        customer_id: customer,
        payment_method_id: None,
        card_brand: None,
        card_last4: None,
        card_exp_month: None,
        card_exp_year: None,
        flagged_at: None,
        flag_reason: None,
        created_at: now,
        updated_at: now,
    };
    // Another request may have made one first: theirs is kept (the provider's idempotency key
    // made it the same customer there).
    store::insert_account(tx.conn(), &account).await?;
    let stored = store::account(tx.conn(), business_id)
        .await?
        .context("the account just written")?;
    tx.commit().await?;
    Ok(stored)
}

fn unavailable(err: ProviderError) -> PaymentError {
    match err {
        ProviderError::Unavailable(e) => PaymentError::Unavailable(e),
        refused => PaymentError::Unexpected(refused.into()),
    }
}

/// What Stripe.js needs to collect a card: the SetupIntent's client secret and the publishable key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SetupIntent {
    pub client_secret: String,
    #[schema(required = true)]
    pub publishable_key: Option<String>,
}

pub async fn setup_intent(app: &App, principal: &Principal) -> Result<SetupIntent, PaymentError> {
    manager(principal)?;
    let payments = configured(app)?;
    let account = ensure_account(
        app,
        payments,
        principal.business_id,
        &principal.business_name,
    )
    .await?;
    let client_secret = payments
        .provider
        .create_setup_intent(&account.customer_id, &format!("setup:{}", Uuid::now_v7()))
        .await
        .map_err(unavailable)?;
    Ok(SetupIntent {
        client_secret,
        publishable_key: payments.publishable_key.clone(),
    })
}

/// Attaches `payment_method` (a `pm_…` from Stripe.js) and makes it the default; the card it
/// replaces is detached.
pub async fn set_payment_method(
    app: &App,
    principal: &Principal,
    payment_method: &str,
) -> Result<CardView, PaymentError> {
    let user = manager(principal)?;
    let payments = configured(app)?;
    let account = ensure_account(
        app,
        payments,
        principal.business_id,
        &principal.business_name,
    )
    .await?;
    let card = match payments
        .provider
        .attach_default(
            &account.customer_id,
            payment_method,
            &format!("attach:{}", Uuid::now_v7()),
        )
        .await
    {
        Ok(card) => card,
        Err(ProviderError::Refused { message, code, .. }) => {
            return Err(PaymentError::InvalidPaymentMethod(if message.is_empty() {
                code
            } else {
                message
            }));
        }
        Err(other) => return Err(unavailable(other)),
    };
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    store::set_card(
        tx.conn(),
        principal.business_id,
        &CardOnFile {
            payment_method_id: Some(card.payment_method.clone()),
            brand: Some(card.brand.clone()),
            last4: Some(card.last4.clone()),
            exp_month: Some(card.exp_month),
            exp_year: Some(card.exp_year),
        },
        now,
    )
    .await?;
    let event = Event::new(Action::PaymentMethodUpdated, Actor::User(user))
        .business(principal.business_id)
        .target("payment_method", &card.payment_method)
        .details(json!({
            "brand": card.brand, "last4": card.last4,
            "exp_month": card.exp_month, "exp_year": card.exp_year,
        }));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    if let Some(old) = account
        .payment_method_id
        .filter(|old| *old != card.payment_method)
        && let Err(err) = payments
            .provider
            .detach(&old, &format!("detach:{}", Uuid::now_v7()))
            .await
    {
        tracing::warn!(error = %err, "could not detach the replaced card");
    }
    Ok(CardView {
        id: card.payment_method,
        brand: card.brand,
        last4: card.last4,
        exp_month: card.exp_month,
        exp_year: card.exp_year,
    })
}

pub async fn payment_method(
    app: &App,
    principal: &Principal,
) -> Result<Option<CardView>, PaymentError> {
    manager(principal)?;
    let mut tx = app.db.read().await?;
    Ok(store::account(tx.conn(), principal.business_id)
        .await?
        .as_ref()
        .and_then(CardView::of))
}

/// Detaches the card on file; nothing to do without one.
pub async fn remove_payment_method(app: &App, principal: &Principal) -> Result<(), PaymentError> {
    let user = manager(principal)?;
    let payments = configured(app)?;
    let account = {
        let mut tx = app.db.read().await?;
        store::account(tx.conn(), principal.business_id).await?
    };
    let Some((customer, pm)) =
        account.and_then(|a| a.payment_method_id.map(|pm| (a.customer_id, pm)))
    else {
        return Ok(());
    };
    payments
        .provider
        .clear_default(&customer, &format!("clear:{}", Uuid::now_v7()))
        .await
        .map_err(unavailable)?;
    match payments
        .provider
        .detach(&pm, &format!("detach:{}", Uuid::now_v7()))
        .await
    {
        // Already detached at the provider (by its dashboard): forget it here too.
        Ok(()) | Err(ProviderError::Refused { .. }) => {}
        Err(other) => return Err(unavailable(other)),
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    store::set_card(
        tx.conn(),
        principal.business_id,
        &CardOnFile::default(),
        now,
    )
    .await?;
    let event = Event::new(Action::PaymentMethodRemoved, Actor::User(user))
        .business(principal.business_id)
        .target("payment_method", &pm);
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(())
}

/// The business's currency: its current plan's, else the default.
pub(crate) async fn currency_of(tx: &mut Tx, business_id: Uuid) -> sqlx::Result<String> {
    let Some(sub) = subscriptions::current_of(tx.conn(), business_id).await? else {
        return Ok(DEFAULT_CURRENCY.into());
    };
    Ok(crate::store::plans::find(tx.conn(), sub.plan_id)
        .await?
        .map(|p| p.currency)
        .unwrap_or_else(|| DEFAULT_CURRENCY.into()))
}

/// Charges `amount` to the card on file now, with the customer present: the payment and the
/// balance after it.
pub async fn top_up(
    app: &App,
    principal: &Principal,
    amount: i64,
) -> Result<(PaymentView, i64), PaymentError> {
    let user = manager(principal)?;
    configured(app)?;
    if !(MIN_AMOUNT..=MAX_AMOUNT).contains(&amount) {
        return Err(PaymentError::InvalidAmount);
    }
    let currency = {
        let mut tx = app.db.read().await?;
        currency_of(&mut tx, principal.business_id).await?
    };
    let request = ChargeRequest {
        business_id: principal.business_id,
        purpose: "top_up",
        amount,
        currency,
        key: format!("top_up:{}", Uuid::now_v7()),
        subscription_id: None,
        period_start: None,
        attempt: None,
        actor: Actor::User(user),
        off_session: false,
        description: format!("Credits for {}", principal.business_name),
    };
    let payment = settle_or_fail(app, charge(app, &request).await?).await?;
    let balance = {
        let mut tx = app.db.read().await?;
        ledger::balance(tx.conn(), principal.business_id).await?
    };
    Ok((payment, balance))
}

/// Charges what a plan change made now needs beyond the credits (at least [`MIN_AMOUNT`]), with
/// the customer present. `Ok` once the money is in the ledger.
pub async fn pay_for_change(
    app: &App,
    principal: &Principal,
    missing: i64,
) -> Result<(), PaymentError> {
    let user = manager(principal)?;
    configured(app)?;
    let currency = {
        let mut tx = app.db.read().await?;
        currency_of(&mut tx, principal.business_id).await?
    };
    let request = ChargeRequest {
        business_id: principal.business_id,
        purpose: "plan_change",
        amount: missing.clamp(MIN_AMOUNT, MAX_AMOUNT),
        currency,
        key: format!("plan_change:{}", Uuid::now_v7()),
        subscription_id: None,
        period_start: None,
        attempt: None,
        actor: Actor::User(user),
        off_session: false,
        description: format!("Plan change for {}", principal.business_name),
    };
    let payment = settle_or_fail(app, charge(app, &request).await?).await?;
    if payment.status == "succeeded" {
        Ok(())
    } else {
        // Still processing: the change waits for the credits, as it would without a card.
        Err(PaymentError::Pending {
            payment: Box::new(payment),
        })
    }
}

/// A payment that did not succeed at once, as the error it is for a customer who waits.
pub(crate) async fn settle_or_fail(
    app: &App,
    outcome: Charged,
) -> Result<PaymentView, PaymentError> {
    let payment = view(app, outcome.payment_id).await?;
    match outcome.charge {
        Charge::Succeeded { .. } | Charge::Processing { .. } => Ok(payment),
        Charge::RequiresAction { client_secret, .. } => Err(PaymentError::RequiresAction {
            payment: Box::new(payment),
            client_secret,
        }),
        Charge::Declined { code, message, .. } => Err(PaymentError::Declined {
            payment: Box::new(payment),
            code,
            message,
        }),
    }
}

/// A page of the business's payments, newest first, and the cursor of the next.
pub async fn list(
    app: &App,
    principal: &Principal,
    before: Option<Uuid>,
    limit: i64,
) -> Result<(Vec<PaymentView>, Option<Uuid>), PaymentError> {
    manager(principal)?;
    let mut tx = app.db.read().await?;
    let mut page = store::list(tx.conn(), principal.business_id, before, limit + 1).await?;
    let more = page.len() as i64 > limit;
    page.truncate(limit.max(0) as usize);
    let next = if more {
        page.last().map(|p| p.id)
    } else {
        None
    };
    Ok((views(&mut tx, &page).await?, next))
}

/// One charge to make.
#[derive(Debug, Clone)]
pub(crate) struct ChargeRequest {
    pub business_id: Uuid,
    pub purpose: &'static str,
    pub amount: i64,
    pub currency: String,
    /// Claimed in `payments` and sent as the provider's `Idempotency-Key`.
    pub key: String,
    pub subscription_id: Option<Uuid>,
    pub period_start: Option<Timestamp>,
    pub attempt: Option<i64>,
    pub actor: Actor,
    pub off_session: bool,
    pub description: String,
}

/// A charge made: the payment row and what the provider said.
#[derive(Debug, Clone)]
pub(crate) struct Charged {
    pub payment_id: Uuid,
    pub charge: Charge,
}

/// Why [`charge`] made no charge.
#[derive(Debug)]
pub(crate) enum NotCharged {
    /// Another caller holds the key: its payment.
    Claimed(Box<Payment>),
    Error(PaymentError),
}

impl From<NotCharged> for PaymentError {
    fn from(n: NotCharged) -> Self {
        match n {
            NotCharged::Claimed(p) => PaymentError::Unexpected(anyhow::anyhow!(
                "payment {} holds this idempotency key already",
                p.id
            )),
            NotCharged::Error(e) => e,
        }
    }
}

impl From<PaymentError> for NotCharged {
    fn from(e: PaymentError) -> Self {
        NotCharged::Error(e)
    }
}

impl From<sqlx::Error> for NotCharged {
    fn from(e: sqlx::Error) -> Self {
        NotCharged::Error(e.into())
    }
}

impl From<anyhow::Error> for NotCharged {
    fn from(e: anyhow::Error) -> Self {
        NotCharged::Error(e.into())
    }
}

/// Claims `r.key`, charges the card on file, and records the outcome (a success credits the
/// ledger in the same transaction that marks the payment succeeded).
pub(crate) async fn charge(app: &App, r: &ChargeRequest) -> Result<Charged, NotCharged> {
    let payments = configured(app)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let account = store::account(tx.conn(), r.business_id).await?;
    let Some((account, payment_method)) =
        account.and_then(|a| a.payment_method_id.clone().map(|pm| (a, pm)))
    else {
        return Err(PaymentError::NoPaymentMethod.into());
    };
    let (actor_kind, actor_id) = actor_columns(r.actor);
    let payment = Payment {
        id: Uuid::now_v7(),
        business_id: r.business_id,
        provider: PROVIDER.into(),
        purpose: r.purpose.into(),
        idempotency_key: r.key.clone(),
        amount: r.amount,
        currency: r.currency.clone(),
        status: "pending".into(),
        subscription_id: r.subscription_id,
        period_start: r.period_start,
        attempt: r.attempt,
        provider_payment_id: None,
        provider_charge_id: None,
        card_brand: account.card_brand.clone(),
        card_last4: account.card_last4.clone(),
        decline_code: None,
        failure_message: None,
        refunded_amount: 0,
        disputed_amount: 0,
        provider_updated_at: None,
        actor_kind: actor_kind.into(),
        actor_id,
        created_at: now,
        updated_at: now,
    };
    if !store::insert_payment(tx.conn(), &payment).await? {
        drop(tx);
        let mut tx = app.db.read().await?;
        let held = store::find_by_key(tx.conn(), &r.key)
            .await?
            .context("the payment holding the key")?;
        return Err(NotCharged::Claimed(Box::new(held)));
    }
    tx.commit().await?;
    call_and_record(
        app,
        payments,
        &payment,
        &account.customer_id,
        &payment_method,
        r,
    )
    .await
}

/// Calls the provider for a claimed payment (again, for one resumed: the same key) and records
/// what it said.
async fn call_and_record(
    app: &App,
    payments: &Payments,
    payment: &Payment,
    customer: &str,
    payment_method: &str,
    r: &ChargeRequest,
) -> Result<Charged, NotCharged> {
    let outcome = match payments
        .provider
        .charge(
            customer,
            payment_method,
            payment.amount,
            &payment.currency,
            r.off_session,
            &payment.id.to_string(),
            &r.description,
            &payment.idempotency_key,
        )
        .await
    {
        // Nobody is there to authenticate: as Stripe itself answers off-session, a decline.
        Ok(Charge::RequiresAction { intent, .. }) if r.off_session => Charge::Declined {
            intent: Some(intent),
            charge: None,
            code: "authentication_required".into(),
            message: "The card holder must authenticate this payment.".into(),
        },
        Ok(outcome) => outcome,
        // Whether it happened is unknown: the payment stays pending, to be resumed.
        Err(ProviderError::Unavailable(e)) => {
            tracing::warn!(payment_id = %payment.id, error = format!("{e:#}"), "payment provider unavailable; the payment will be resumed");
            return Err(PaymentError::Unavailable(e).into());
        }
        // Refused outright (an amount or currency it does not take…): a failure to show.
        Err(ProviderError::Refused { code, message, .. }) => Charge::Declined {
            intent: None,
            charge: None,
            code,
            message,
        },
    };
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    record_outcome(app, &mut tx, payment, &outcome, None, now).await?;
    tx.commit().await?;
    app.mail_queued.notify_one();
    Ok(Charged {
        payment_id: payment.id,
        charge: outcome,
    })
}

fn actor_columns(actor: Actor) -> (&'static str, Option<Uuid>) {
    match actor {
        Actor::User(id) => ("user", Some(id)),
        Actor::Staff(id) => ("admin", id),
        _ => ("system", None),
    }
}

/// Records what the provider said about `payment` on `tx`: a success marks it succeeded and
/// credits the ledger (once: the entry names the provider's payment); a failure marks it failed
/// (never over a success, nor over a newer fact) and, for a renewal, mails the owners.
/// `provider_time`: the provider's time of the fact (events), seconds. Returns whether the
/// payment changed.
pub(crate) async fn record_outcome(
    app: &App,
    tx: &mut Tx,
    payment: &Payment,
    outcome: &Charge,
    provider_time: Option<i64>,
    now: Timestamp,
) -> anyhow::Result<bool> {
    match outcome {
        Charge::Succeeded { intent, charge } => {
            // Money taken always wins: from any state but success, whatever the order of facts.
            let moved = store::settle(
                tx.conn(),
                payment.id,
                &["pending", "requires_action", "failed"],
                &Settlement {
                    status: "succeeded".into(),
                    provider_payment_id: Some(intent.clone()),
                    provider_charge_id: charge.clone(),
                    ..Settlement::default()
                },
                now,
            )
            .await?;
            let credited = store::insert_entry(
                tx.conn(),
                &store::ProviderEntry {
                    id: Uuid::now_v7(),
                    business_id: payment.business_id,
                    kind: "payment",
                    amount: payment.amount,
                    currency: payment.currency.clone(),
                    note: card_note(payment),
                    payment_id: payment.id,
                    provider_ref: format!("{PROVIDER}:payment:{intent}"),
                    created_at: now,
                },
            )
            .await?;
            if credited {
                let event = Event::new(Action::PaymentSucceeded, system_or(payment))
                    .business(payment.business_id)
                    .target("payment", payment.id)
                    .details(json!({
                        "amount": payment.amount, "currency": payment.currency,
                        "purpose": payment.purpose, "provider_payment_id": intent,
                    }));
                audit::record(tx.conn(), now, event).await?;
                emit(
                    tx,
                    payment,
                    "payment.succeeded",
                    "succeeded",
                    payment.amount,
                    Some(intent),
                    None,
                    now,
                )
                .await?;
            }
            Ok(moved || credited)
        }
        Charge::RequiresAction { intent, .. } => Ok(store::settle(
            tx.conn(),
            payment.id,
            &["pending"],
            &Settlement {
                status: "requires_action".into(),
                provider_payment_id: Some(intent.clone()),
                provider_time,
                ..Settlement::default()
            },
            now,
        )
        .await?),
        Charge::Processing { intent } => Ok(store::settle(
            tx.conn(),
            payment.id,
            &["pending"],
            &Settlement {
                status: "pending".into(),
                provider_payment_id: Some(intent.clone()),
                provider_time,
                ..Settlement::default()
            },
            now,
        )
        .await?),
        Charge::Declined {
            intent,
            charge,
            code,
            message,
        } => {
            let moved = store::settle(
                tx.conn(),
                payment.id,
                &["pending", "requires_action"],
                &Settlement {
                    status: "failed".into(),
                    provider_payment_id: intent.clone(),
                    provider_charge_id: charge.clone(),
                    decline_code: Some(code.clone()),
                    failure_message: Some(message.clone()).filter(|m| !m.is_empty()),
                    provider_time,
                },
                now,
            )
            .await?;
            if moved {
                let event = Event::new(Action::PaymentFailed, system_or(payment))
                    .business(payment.business_id)
                    .target("payment", payment.id)
                    .details(json!({
                        "amount": payment.amount, "currency": payment.currency,
                        "purpose": payment.purpose, "decline_code": code,
                    }));
                audit::record(tx.conn(), now, event).await?;
                emit(
                    tx,
                    payment,
                    "payment.failed",
                    "failed",
                    0,
                    intent.as_deref(),
                    Some(code),
                    now,
                )
                .await?;
                if payment.purpose == "renewal" {
                    renewals::mail_declined(app, tx, payment, code, now).await?;
                }
            }
            Ok(moved)
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Tells the business's webhook endpoints about `payment` (`payment.succeeded`, …): `amount` is
/// what the event moved in the ledger.
pub(crate) async fn emit(
    tx: &mut Tx,
    payment: &Payment,
    event_type: &str,
    status: &str,
    amount: i64,
    provider_payment_id: Option<&str>,
    decline_code: Option<&str>,
    now: Timestamp,
) -> sqlx::Result<()> {
    crate::webhooks::emit(
        tx.conn(),
        now,
        payment.business_id,
        event_type,
        json!({
            "business_id": payment.business_id,
            "payment": {
                "id": payment.id, "purpose": payment.purpose, "amount": payment.amount,
                "currency": payment.currency, "status": status,
                "provider_payment_id": provider_payment_id.or(payment.provider_payment_id.as_deref()),
                "decline_code": decline_code,
            },
            "amount": amount,
        }),
    )
    .await
    .map(|_| ())
}

fn system_or(payment: &Payment) -> Actor {
    match (payment.actor_kind.as_str(), payment.actor_id) {
        ("user", Some(id)) => Actor::User(id),
        ("admin", id) => Actor::Staff(id),
        _ => Actor::System,
    }
}

fn card_note(payment: &Payment) -> String {
    match (&payment.card_brand, &payment.card_last4) {
        (Some(brand), Some(last4)) => format!("Card payment ({brand} ending {last4})"),
        _ => "Card payment".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{origin_of, payment_method_id};

    #[test]
    fn only_stripe_payment_method_ids_are_sent_on() {
        assert_eq!(payment_method_id(" pm_1AbC_2 "), Some("pm_1AbC_2"));
        for bad in [
            "",
            "pm_",
            "card_123",
            "pm_1/../customers",
            "pm_1?x=1",
            "pm_ 1",
        ] {
            assert_eq!(payment_method_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_origin_is_scheme_and_host() {
        assert_eq!(
            origin_of("https://js.stripe.com/v3/").as_deref(),
            Some("https://js.stripe.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8420/js.stripe.com/v3/").as_deref(),
            Some("http://127.0.0.1:8420")
        );
        assert_eq!(origin_of("nonsense"), None);
    }
}
