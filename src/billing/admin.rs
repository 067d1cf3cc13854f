//! Operations for staff and operators: credits, plans, and moving a business to a plan.

use chrono::Duration;
use thiserror::Error;
use uuid::Uuid;

use super::events::{self, Actor};
use crate::app::App;
use crate::store::ledger::{self, LedgerEntry};
use crate::store::plans::{self, Limits, Plan};
use crate::store::subscriptions::{self, Subscription};

#[derive(Debug, Error)]
pub enum AdminError {
    #[error("no business with this id")]
    BusinessNotFound,
    #[error("no plan with the code {0:?}")]
    PlanNotFound(String),
    #[error("a plan with the code {0:?} already exists")]
    PlanExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AdminError {
    fn from(err: sqlx::Error) -> Self {
        AdminError::Unexpected(err.into())
    }
}

/// Adds `amount` minor units (negative to take some back) to a business's credits; returns the
/// new balance. The ledger only grows: nothing is ever edited.
pub async fn grant_credits(
    app: &App,
    business_id: Uuid,
    amount: i64,
    note: Option<String>,
    actor: Actor,
) -> Result<i64, AdminError> {
    if amount == 0 {
        return Err(AdminError::Invalid("the amount may not be zero".into()));
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    if crate::store::businesses::find(tx.conn(), business_id)
        .await?
        .is_none()
    {
        return Err(AdminError::BusinessNotFound);
    }
    let currency = match subscriptions::current_of(tx.conn(), business_id).await? {
        Some(sub) => plans::find(tx.conn(), sub.plan_id)
            .await?
            .map(|p| p.currency)
            .unwrap_or_else(|| "USD".into()),
        None => "USD".into(),
    };
    ledger::insert(
        tx.conn(),
        &LedgerEntry {
            id: Uuid::now_v7(),
            business_id,
            kind: if amount > 0 { "grant" } else { "adjustment" }.to_owned(),
            amount,
            currency,
            subscription_id: None,
            period_start: None,
            note,
            actor_kind: actor.kind().to_owned(),
            actor_id: actor.id(),
            created_at: now,
        },
    )
    .await?;
    let balance = ledger::balance(tx.conn(), business_id).await?;
    tx.commit().await?;
    Ok(balance)
}

/// What a new plan is.
#[derive(Debug, Clone)]
pub struct NewPlan {
    pub code: String,
    pub name: String,
    pub description: String,
    pub price_minor: i64,
    pub currency: String,
    pub cycle_days: i64,
    pub renews: bool,
    pub fallback_code: Option<String>,
    pub limits: Limits,
    pub is_public: bool,
}

pub async fn create_plan(app: &App, new: NewPlan) -> Result<Plan, AdminError> {
    let code_ok = !new.code.is_empty()
        && new.code.len() <= 64
        && new
            .code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !code_ok {
        return Err(AdminError::Invalid(
            "a plan code is 1 to 64 of a-z, 0-9, - and _".into(),
        ));
    }
    if new.price_minor < 0 || new.cycle_days <= 0 || new.cycle_days > 3660 {
        return Err(AdminError::Invalid(
            "the price may not be negative and a cycle lasts 1 to 3660 days".into(),
        ));
    }
    if new.limits.values().any(|v| *v < 0) {
        return Err(AdminError::Invalid("limits may not be negative".into()));
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let fallback_plan_id = match &new.fallback_code {
        Some(code) => Some(
            plans::find_by_code(tx.conn(), code)
                .await?
                .ok_or_else(|| AdminError::PlanNotFound(code.clone()))?
                .id,
        ),
        None => None,
    };
    let plan = Plan {
        id: Uuid::now_v7(),
        code: new.code.clone(),
        name: new.name,
        description: new.description,
        price_minor: new.price_minor,
        currency: new.currency.to_uppercase(),
        cycle_days: new.cycle_days,
        renews: new.renews,
        fallback_plan_id,
        limits: sqlx::types::Json(new.limits),
        is_public: new.is_public,
        archived_at: None,
        created_at: now,
        updated_at: now,
    };
    match plans::insert(tx.conn(), &plan).await {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            return Err(AdminError::PlanExists(new.code));
        }
        other => other?,
    }
    tx.commit().await?;
    Ok(plan)
}

/// Moves a business to a plan now, without charge (a comp, or a beta customer moved to
/// `unlimited`): the current subscription becomes history and a new one starts now.
pub async fn set_plan(
    app: &App,
    business_id: Uuid,
    plan_code: &str,
    actor: Actor,
) -> Result<Subscription, AdminError> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    if crate::store::businesses::find(tx.conn(), business_id)
        .await?
        .is_none()
    {
        return Err(AdminError::BusinessNotFound);
    }
    let plan = plans::find_by_code(tx.conn(), plan_code)
        .await?
        .ok_or_else(|| AdminError::PlanNotFound(plan_code.to_owned()))?;
    let mut before = None;
    if let Some(current) = subscriptions::current_of(tx.conn(), business_id).await? {
        let old_code = plans::find(tx.conn(), current.plan_id)
            .await?
            .map(|p| p.code)
            .unwrap_or_default();
        before = Some(events::snapshot(&current, &old_code));
        let closed = Subscription {
            is_current: false,
            ended_at: Some(now),
            updated_at: now,
            ..current.clone()
        };
        if !subscriptions::update_state(tx.conn(), &current, &closed).await? {
            return Err(anyhow::anyhow!("the subscription changed meanwhile; retry").into());
        }
    }
    let sub = Subscription {
        id: Uuid::now_v7(),
        business_id,
        plan_id: plan.id,
        status: "active".to_owned(),
        current_period_start: now,
        current_period_end: now.plus(Duration::days(plan.cycle_days)),
        is_current: true,
        pending_plan_id: None,
        cancel_at_period_end: false,
        ended_at: None,
        created_at: now,
        updated_at: now,
    };
    subscriptions::insert(tx.conn(), &sub).await?;
    events::record(
        &mut tx,
        &sub,
        "plan_changed",
        actor,
        before,
        Some(events::snapshot(&sub, &plan.code)),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(sub)
}
