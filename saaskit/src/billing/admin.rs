//! Operations for staff and operators: credits, plans, and moving a business to a plan.

use chrono::Duration;
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use super::events::{self, Actor};
use crate::app::App;
use crate::audit;
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

/// The most one price or one grant may be, in minor units (ten billion in major units), and the
/// most a balance may hold either way: far enough inside `i64` that no sum, charge or proration
/// of them can overflow (PostgreSQL refuses a `SUM` past `BIGINT`; Rust would panic).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
pub const MAX_BALANCE: i64 = 1_000 * MAX_AMOUNT;

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
    if !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&amount) {
        return Err(AdminError::Invalid(format!(
            "an amount is at most {MAX_AMOUNT} either way"
        )));
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
    let before = ledger::balance(tx.conn(), business_id).await?;
    if !(-MAX_BALANCE..=MAX_BALANCE).contains(&(before + amount)) {
        return Err(AdminError::Invalid(format!(
            "a balance stays within {MAX_BALANCE} either way"
        )));
    }
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
    let event = audit::Event::new(audit::Action::CreditsGranted, actor.into())
        .business(business_id)
        .details(json!({"amount": amount, "balance": balance}));
    audit::record(tx.conn(), now, event).await?;
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

/// Plan codes and meter names: 1 to 64 of a-z, 0-9, `-` and `_`.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn check_currency(currency: &str) -> Result<(), AdminError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(AdminError::Invalid(
            "a currency is a three-letter ISO 4217 code such as USD".into(),
        ))
    }
}

fn check_meters<'a>(mut meters: impl Iterator<Item = &'a String>) -> Result<(), AdminError> {
    if meters.all(|m| is_slug(m)) {
        Ok(())
    } else {
        Err(AdminError::Invalid(
            "a meter name is 1 to 64 of a-z, 0-9, - and _".into(),
        ))
    }
}

/// The rules every plan's terms follow, however the plan is made or changed (the admin API,
/// the CLI, a catalogue file).
pub(crate) fn check_terms(
    code: &str,
    currency: &str,
    price_minor: i64,
    cycle_days: i64,
    limits: &Limits,
) -> Result<(), AdminError> {
    if !is_slug(code) {
        return Err(AdminError::Invalid(
            "a plan code is 1 to 64 of a-z, 0-9, - and _".into(),
        ));
    }
    check_currency(currency)?;
    check_meters(limits.keys())?;
    if !(0..=MAX_AMOUNT).contains(&price_minor) {
        return Err(AdminError::Invalid(format!("a price is 0 to {MAX_AMOUNT}")));
    }
    if !(1..=3660).contains(&cycle_days) {
        return Err(AdminError::Invalid("a cycle lasts 1 to 3660 days".into()));
    }
    if limits.values().any(|v| *v < 0) {
        return Err(AdminError::Invalid("limits may not be negative".into()));
    }
    Ok(())
}

pub async fn create_plan(app: &App, new: NewPlan, actor: Actor) -> Result<Plan, AdminError> {
    check_terms(
        &new.code,
        &new.currency,
        new.price_minor,
        new.cycle_days,
        &new.limits,
    )?;
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
    let event = audit::Event::new(audit::Action::PlanCreated, actor.into())
        .target("plan", &plan.code)
        .details(json!({"price_minor": plan.price_minor, "currency": plan.currency}));
    audit::record(tx.conn(), now, event).await?;
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
    let mut from = None;
    if let Some(current) = subscriptions::current_of(tx.conn(), business_id).await? {
        let old_code = plans::find(tx.conn(), current.plan_id)
            .await?
            .map(|p| p.code)
            .unwrap_or_default();
        before = Some(events::snapshot(&current, &old_code));
        from = Some(old_code);
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
    let event = audit::Event::new(audit::Action::PlanChanged, actor.into())
        .business(business_id)
        .details(json!({"from": from, "to": plan.code, "when": "now"}));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(sub)
}

/// Changes to a plan; `None` leaves a field as it is. New limits apply from the next check.
#[derive(Debug, Clone, Default)]
pub struct PlanUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub cycle_days: Option<i64>,
    pub renews: Option<bool>,
    /// `Some(None)` removes the fallback.
    pub fallback_code: Option<Option<String>>,
    /// Limits to set (a value) or remove (`None`, making the meter unlimited).
    pub limits: Vec<(String, Option<i64>)>,
    pub is_public: Option<bool>,
    pub archived: Option<bool>,
}

pub async fn update_plan(
    app: &App,
    code: &str,
    change: PlanUpdate,
    actor: Actor,
) -> Result<Plan, AdminError> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let mut plan = plans::find_by_code(tx.conn(), code)
        .await?
        .ok_or_else(|| AdminError::PlanNotFound(code.to_owned()))?;
    if let Some(name) = change.name {
        plan.name = name;
    }
    if let Some(description) = change.description {
        plan.description = description;
    }
    if let Some(price) = change.price_minor {
        plan.price_minor = price;
    }
    if let Some(currency) = change.currency {
        plan.currency = currency.to_uppercase();
    }
    if let Some(days) = change.cycle_days {
        plan.cycle_days = days;
    }
    if let Some(renews) = change.renews {
        plan.renews = renews;
    }
    if let Some(fallback) = change.fallback_code {
        plan.fallback_plan_id = match fallback {
            Some(code) if code == plan.code => {
                return Err(AdminError::Invalid(
                    "a plan cannot fall back to itself".into(),
                ));
            }
            Some(code) => Some(
                plans::find_by_code(tx.conn(), &code)
                    .await?
                    .ok_or(AdminError::PlanNotFound(code))?
                    .id,
            ),
            None => None,
        };
    }
    for (meter, limit) in change.limits {
        match limit {
            Some(v) => plan.limits.0.insert(meter, v),
            None => plan.limits.0.remove(&meter),
        };
    }
    if let Some(public) = change.is_public {
        plan.is_public = public;
    }
    if let Some(archived) = change.archived {
        plan.archived_at = if archived {
            plan.archived_at.or(Some(now))
        } else {
            None
        };
    }
    check_terms(
        &plan.code,
        &plan.currency,
        plan.price_minor,
        plan.cycle_days,
        &plan.limits.0,
    )?;
    plan.updated_at = now;
    plans::update(tx.conn(), &plan).await?;
    let event = audit::Event::new(audit::Action::PlanUpdated, actor.into())
        .target("plan", &plan.code)
        .details(json!({
            "price_minor": plan.price_minor,
            "currency": plan.currency,
            "archived": plan.archived_at.is_some(),
        }));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(plan)
}

/// Archives a plan: it leaves the catalog and cannot be chosen, but subscriptions on it go on.
/// Plans are never deleted.
pub async fn archive_plan(app: &App, code: &str, actor: Actor) -> Result<Plan, AdminError> {
    update_plan(
        app,
        code,
        PlanUpdate {
            archived: Some(true),
            ..PlanUpdate::default()
        },
        actor,
    )
    .await
}

pub async fn business_summary(
    app: &App,
    id: Uuid,
) -> Result<crate::store::businesses::BusinessSummary, AdminError> {
    let mut tx = app.db.read().await?;
    crate::store::businesses::summary(tx.conn(), id)
        .await?
        .ok_or(AdminError::BusinessNotFound)
}

/// What a business has used of each meter this period, as its own dashboard shows it (`meters`:
/// the product's meters).
pub async fn business_usage(
    app: &App,
    id: Uuid,
    meters: &crate::metering::Meters,
) -> Result<std::collections::BTreeMap<String, crate::metering::MeterStatus>, AdminError> {
    let mut tx = app.db.read().await?;
    let sub = crate::metering::current_subscription(tx.conn(), id).await?;
    let ask = (id, sub.as_ref().map(|s| s.current_period_start));
    let figures = crate::metering::dashboard_figures(tx.conn(), &[ask])
        .await?
        .remove(&ask)
        .unwrap_or_default();
    Ok(figures.statuses(sub.as_ref(), meters))
}

/// The businesses staff look for: by a part of the name, by id, or by an owner's email;
/// newest first, at most 50.
pub async fn find_businesses(
    app: &App,
    query: &str,
) -> Result<Vec<crate::store::businesses::BusinessSummary>, AdminError> {
    let query = query.trim();
    let escaped: String = query
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let id = Uuid::parse_str(query).ok();
    let owner = query
        .contains('@')
        .then(|| crate::domain::Email::key_of(query));
    let mut tx = app.db.read().await?;
    Ok(crate::store::businesses::search_summaries(
        tx.conn(),
        &format!("%{escaped}%"),
        id,
        owner.as_deref(),
        50,
    )
    .await?)
}

/// Deactivates a business (staff `by`): every token and key of it stops working at once.
pub async fn deactivate_business(app: &App, id: Uuid, by: Option<Uuid>) -> Result<(), AdminError> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    if !crate::store::businesses::set_active(tx.conn(), id, false, now).await? {
        return Err(AdminError::BusinessNotFound);
    }
    let event = audit::Event::new(audit::Action::BusinessDeactivated, audit::Actor::Staff(by))
        .business(id)
        .target("business", id);
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    tracing::info!(business_id = %id, "business deactivated by staff");
    Ok(())
}

/// Every plan of the catalog, archived ones included.
pub async fn all_plans(app: &App) -> Result<Vec<Plan>, AdminError> {
    let mut tx = app.db.read().await?;
    Ok(plans::all(tx.conn()).await?)
}

/// The active members of a business, for staff.
pub async fn business_members(
    app: &App,
    id: Uuid,
) -> Result<Vec<crate::store::members::MemberListing>, AdminError> {
    let mut tx = app.db.read().await?;
    Ok(crate::store::members::list_active(tx.conn(), id).await?)
}

/// Deactivates a user (staff `by`): they can no longer log in, their sessions stop working at
/// once, and the invitations they sent stop speaking for them. `None` when there is no such user.
pub async fn deactivate_user(app: &App, id: Uuid, by: Option<Uuid>) -> anyhow::Result<Option<()>> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    if !crate::store::users::set_active(tx.conn(), id, false, now).await? {
        return Ok(None);
    }
    let staff_actor = audit::Actor::Staff(by);
    // Their invitations stop speaking for them too.
    let mut revoked = Vec::new();
    for m in crate::store::members::active_of_user(tx.conn(), id).await? {
        revoked.extend(
            crate::teams::invitations::revoke_unsendable(
                tx.conn(),
                m.business_id,
                id,
                None,
                staff_actor,
                "inviter_deactivated",
                now,
            )
            .await?,
        );
    }
    let event = audit::Event::new(audit::Action::UserDeactivated, staff_actor).target("user", id);
    audit::record(tx.conn(), now, event).await?;
    for event in revoked {
        audit::record(tx.conn(), now, event).await?;
    }
    tx.commit().await?;
    tracing::info!(user_id = %id, "user deactivated by staff");
    Ok(Some(()))
}

/// The user with this email, for staff.
pub async fn find_user(
    app: &App,
    email: &str,
) -> anyhow::Result<Option<crate::store::users::User>> {
    let mut tx = app.db.read().await?;
    let key = crate::domain::Email::key_of(email);
    Ok(crate::store::users::find_by_email_key(tx.conn(), &key).await?)
}

/// Gives or takes away staff rights (the admin API).
pub async fn set_staff(app: &App, email: &str, staff: bool) -> Result<(), AdminError> {
    set_staff_by(app, email, staff, None).await
}

/// [`set_staff`], by the staff member `by` (`None`: an operator at the command line).
pub async fn set_staff_by(
    app: &App,
    email: &str,
    staff: bool,
    by: Option<Uuid>,
) -> Result<(), AdminError> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let key = crate::domain::Email::key_of(email);
    let user = crate::store::users::find_by_email_key(tx.conn(), &key).await?;
    let Some(user) = user else {
        return Err(AdminError::Invalid(format!(
            "no user with the email {email:?}"
        )));
    };
    crate::store::users::set_staff(tx.conn(), &key, staff, now).await?;
    let event = audit::Event::new(audit::Action::StaffChanged, audit::Actor::Staff(by))
        .target("user", user.id)
        .details(json!({"staff": staff}));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets the products' default limits, `(plan code, meter, limit)`, each once per database: on
/// a plan that exists then and does not limit that meter yet. A default already considered (set,
/// or skipped because the plan had a limit) is never applied again, so staff's later changes
/// stay. Runs at migration time, inside one transaction.
pub async fn apply_default_limits(
    db: &crate::db::Db,
    defaults: &[(String, String, i64)],
) -> anyhow::Result<()> {
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let mut tx = db.begin().await?;
    for (code, meter, limit) in defaults {
        // Claimed whether or not the plan exists: a plan staff create later is theirs to set.
        if !plans::claim_default_limit(tx.conn(), code, meter, now).await? {
            continue;
        }
        let Some(mut plan) = plans::find_by_code(tx.conn(), code).await? else {
            continue;
        };
        if plan.limits.0.contains_key(meter) {
            continue;
        }
        plan.limits.0.insert(meter.clone(), *limit);
        plan.updated_at = now;
        plans::update(tx.conn(), &plan).await?;
        tracing::info!(plan = %code, %meter, limit, "default limit set");
    }
    tx.commit().await?;
    Ok(())
}
