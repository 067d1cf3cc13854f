//! `/admin`: the staff's pages. Find a business (by name, owner email or id), see one (plan,
//! status, usage, members, credits), change its plan, grant credits, deactivate it. Anyone who is not
//! staff gets 404 here: the pages do not admit they exist.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Empty, Notice};
use super::format::{day, money, parse_amount};
use super::session::{SignedIn, Submitted};
use super::{Chrome, FormErrors, not_found_page, problem_page, render};
use crate::app::AppState;
use crate::billing::admin::{self, AdminError};
use crate::billing::events::Actor;
use crate::error::ApiError;
use crate::teams::invitations::display_name;

/// The signed-in person, if staff; our 404 page for anyone else.
async fn staff_only(signed_in: &SignedIn) -> Result<(), Response> {
    match crate::http::admin::staff(&signed_in.principal) {
        Ok(()) => Ok(()),
        Err(_) => Err(not_found_page().await),
    }
}

pub struct BusinessRow {
    pub id: Uuid,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub balance: String,
    pub active: bool,
    pub created: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "pages/admin/businesses.html")]
struct BusinessesPage {
    chrome: Chrome,
    query: String,
    searched: bool,
    results: Vec<BusinessRow>,
}

fn row(b: crate::store::businesses::BusinessSummary) -> BusinessRow {
    BusinessRow {
        id: b.id,
        plan: b.plan.unwrap_or_else(|| "—".to_owned()),
        status: b.status.unwrap_or_else(|| "—".to_owned()),
        balance: money(b.credit_balance, "").trim_end().to_owned(),
        active: b.is_active,
        created: day(b.created_at),
        name: b.name,
    }
}

pub async fn find_businesses(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<SearchQuery>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    let query = q.q.unwrap_or_default();
    let results = if query.trim().is_empty() {
        Vec::new()
    } else {
        match admin::find_businesses(&app, &query).await {
            Ok(found) => found.into_iter().map(row).collect(),
            Err(e) => return problem_page(e.into()),
        }
    };
    let page = BusinessesPage {
        chrome: signed_in.chrome("Staff: businesses"),
        searched: !query.trim().is_empty(),
        query,
        results,
    };
    render(StatusCode::OK, &page)
}

pub struct MemberRow {
    pub name: String,
    pub email: String,
    pub role: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct CreditsForm {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct PlanForm {
    #[serde(default)]
    plan: String,
}

#[derive(askama::Template)]
#[template(path = "pages/admin/business.html")]
struct BusinessPage {
    chrome: Chrome,
    business: BusinessRow,
    period: Option<String>,
    meters: Vec<super::dashboard::MeterRow>,
    members: Vec<MemberRow>,
    plans: Vec<(String, String)>,
    credits: CreditsForm,
    errors: FormErrors,
}

async fn business_page(
    app: &AppState,
    signed_in: &SignedIn,
    id: Uuid,
    notice: Option<&str>,
    credits: CreditsForm,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let summary = match admin::business_summary(app, id).await {
        Ok(b) => b,
        Err(AdminError::BusinessNotFound) => return not_found_page().await,
        Err(e) => return problem_page(e.into()),
    };
    let usage = match admin::business_usage(app, id, app.products.meters()).await {
        Ok(u) => u,
        Err(e) => return problem_page(e.into()),
    };
    let members = match admin::business_members(app, id).await {
        Ok(m) => m,
        Err(e) => return problem_page(e.into()),
    };
    let plans = match admin::all_plans(app).await {
        Ok(p) => p,
        Err(e) => return problem_page(e.into()),
    };
    let period = match (summary.current_period_start, summary.current_period_end) {
        (Some(start), Some(end)) => Some(format!("{} – {}", day(start), day(end))),
        _ => None,
    };
    let page = BusinessPage {
        chrome: signed_in
            .chrome(format!("Staff: {}", summary.name))
            .notice(notice),
        business: row(summary),
        period,
        meters: super::dashboard::meter_rows(usage),
        members: members
            .into_iter()
            .map(|m| MemberRow {
                name: display_name(&m.first_name, &m.last_name, &m.email),
                email: m.email,
                role: m.role,
            })
            .collect(),
        plans: plans
            .into_iter()
            .filter(|p| p.archived_at.is_none())
            .map(|p| (p.code, p.name))
            .collect(),
        credits,
        errors,
    };
    render(status, &page)
}

pub async fn show_business(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Query(q): Query<Notice>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    let (credits, errors) = (CreditsForm::default(), FormErrors::default());
    business_page(
        &app,
        &signed_in,
        id,
        q.notice.as_deref(),
        credits,
        errors,
        StatusCode::OK,
    )
    .await
}

pub async fn grant_credits(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(form): Submitted<CreditsForm>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    let mut errors = FormErrors::default();
    let Some(amount) = parse_amount(&form.amount).filter(|a| a.unsigned_abs() <= 10_000_000_000)
    else {
        errors.add(
            "amount",
            "An amount such as 12.50 (or -12.50 to take credits back), at most 100,000,000.",
        );
        return business_page(
            &app,
            &signed_in,
            id,
            None,
            form,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let note = Some(form.note.trim().to_owned()).filter(|n| !n.is_empty());
    if note
        .as_ref()
        .is_some_and(|n| crate::domain::has_control_chars(n) || n.chars().count() > 500)
    {
        errors.add(
            "note",
            "A note is at most 500 characters, without control or invisible formatting characters.",
        );
        return business_page(
            &app,
            &signed_in,
            id,
            None,
            form,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let actor = Actor::Admin(signed_in.principal.user_id());
    match admin::grant_credits(&app, id, amount, note, actor).await {
        Ok(_) => {
            Redirect::to(&format!("/admin/businesses/{id}?notice=credits_granted")).into_response()
        }
        Err(e) => refused(&app, &signed_in, id, form, e.into()).await,
    }
}

async fn refused(
    app: &AppState,
    signed_in: &SignedIn,
    id: Uuid,
    form: CreditsForm,
    err: ApiError,
) -> Response {
    let status = err.status;
    match FormErrors::from_api(err, &[]) {
        Ok(errors) => business_page(app, signed_in, id, None, form, errors, status).await,
        Err(err) => problem_page(err),
    }
}

pub async fn set_plan(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(form): Submitted<PlanForm>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    let actor = Actor::Admin(signed_in.principal.user_id());
    match admin::set_plan(&app, id, &form.plan, actor).await {
        Ok(_) => Redirect::to(&format!("/admin/businesses/{id}?notice=plan_set")).into_response(),
        Err(e) => refused(&app, &signed_in, id, CreditsForm::default(), e.into()).await,
    }
}

pub async fn deactivate_business(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    match admin::deactivate_business(&app, id, signed_in.principal.user_id()).await {
        Ok(()) => Redirect::to(&format!(
            "/admin/businesses/{id}?notice=business_deactivated"
        ))
        .into_response(),
        Err(e) => refused(&app, &signed_in, id, CreditsForm::default(), e.into()).await,
    }
}

pub struct UserRow {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub active: bool,
    pub staff: bool,
    pub verified: bool,
    pub since: String,
}

#[derive(askama::Template)]
#[template(path = "pages/admin/users.html")]
struct UsersPage {
    chrome: Chrome,
    query: String,
    searched: bool,
    user: Option<UserRow>,
    errors: FormErrors,
}

async fn users_page(
    app: &AppState,
    signed_in: &SignedIn,
    query: String,
    notice: Option<&str>,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let user = if query.trim().is_empty() {
        None
    } else {
        match admin::find_user(app, &query).await {
            Ok(u) => u.map(|u| UserRow {
                id: u.id,
                name: display_name(&u.first_name, &u.last_name, &u.email),
                email: u.email,
                active: u.is_active,
                staff: u.is_staff,
                verified: u.email_verified_at.is_some(),
                since: day(u.created_at),
            }),
            Err(e) => return super::server_error(e),
        }
    };
    let page = UsersPage {
        chrome: signed_in.chrome("Staff: users").notice(notice),
        searched: !query.trim().is_empty(),
        query,
        user,
        errors,
    };
    render(status, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct UserQuery {
    email: Option<String>,
    notice: Option<String>,
}

pub async fn find_user(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<UserQuery>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    let query = q.email.unwrap_or_default();
    users_page(
        &app,
        &signed_in,
        query,
        q.notice.as_deref(),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct UserForm {
    #[serde(default)]
    email: String,
}

fn back_to_user(email: &str, notice: &str) -> Response {
    Redirect::to(&format!(
        "/admin/users?email={}&notice={notice}",
        super::session::url_encode(email)
    ))
    .into_response()
}

pub async fn deactivate_user(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(form): Submitted<UserForm>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    match admin::deactivate_user(&app, id, signed_in.principal.user_id()).await {
        Ok(Some(())) => back_to_user(&form.email, "user_deactivated"),
        Ok(None) => not_found_page().await,
        Err(e) => super::server_error(e),
    }
}

pub async fn set_staff(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(staff): Path<String>,
    Submitted(form): Submitted<UserForm>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    let staff = staff == "grant";
    match admin::set_staff_by(&app, &form.email, staff, signed_in.principal.user_id()).await {
        Ok(()) => back_to_user(
            &form.email,
            if staff {
                "staff_granted"
            } else {
                "staff_removed"
            },
        ),
        Err(e) => {
            let err: ApiError = e.into();
            let status = err.status;
            match FormErrors::from_api(err, &[]) {
                Ok(errors) => users_page(&app, &signed_in, form.email, None, errors, status).await,
                Err(err) => problem_page(err),
            }
        }
    }
}

pub struct PlanRow {
    pub code: String,
    pub name: String,
    pub price: String,
    pub cycle_days: i64,
    pub limits: String,
    pub public: bool,
    pub archived: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct NewPlanForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    cycle_days: String,
    #[serde(default)]
    limits: String,
    public: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "pages/admin/plans.html")]
struct PlansPage {
    chrome: Chrome,
    plans: Vec<PlanRow>,
    form: NewPlanForm,
    errors: FormErrors,
}

async fn plans_page(
    app: &AppState,
    signed_in: &SignedIn,
    notice: Option<&str>,
    form: NewPlanForm,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let plans = match admin::all_plans(app).await {
        Ok(p) => p,
        Err(e) => return problem_page(e.into()),
    };
    let plans = plans
        .into_iter()
        .map(|p| PlanRow {
            price: money(p.price_minor, &p.currency),
            limits: if p.limits.0.is_empty() {
                "No limits".to_owned()
            } else {
                limits_text(&p.limits.0)
            },
            code: p.code,
            name: p.name,
            cycle_days: p.cycle_days,
            public: p.is_public,
            archived: p.archived_at.is_some(),
        })
        .collect();
    let page = PlansPage {
        chrome: signed_in.chrome("Staff: plans").notice(notice),
        plans,
        form,
        errors,
    };
    render(status, &page)
}

pub async fn show_plans(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<Notice>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    plans_page(
        &app,
        &signed_in,
        q.notice.as_deref(),
        NewPlanForm::default(),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// `meter=n, meter=n` as typed on the form.
fn parse_limits(text: &str) -> Option<std::collections::BTreeMap<String, i64>> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (meter, n) = part.split_once('=')?;
            Some((meter.trim().to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

/// A plan form's price, cycle and limits, read from what staff typed.
struct Terms {
    price: i64,
    cycle_days: i64,
    limits: std::collections::BTreeMap<String, i64>,
}

/// The [`Terms`] typed on a plan form, or the message for each one that could not be read.
fn typed_terms(price: &str, cycle_days: &str, limits: &str) -> Result<Terms, FormErrors> {
    let mut errors = FormErrors::default();
    let price = parse_amount(price);
    if price.is_none() {
        errors.add("price", "A price such as 19.00.");
    }
    let cycle_days = cycle_days.trim().parse::<i64>().ok();
    if cycle_days.is_none() {
        errors.add("cycle_days", "A whole number of days.");
    }
    let limits = parse_limits(limits);
    if limits.is_none() {
        errors.add(
            "limits",
            "Write them as meter=number, separated by commas: applications=10, members=5.",
        );
    }
    match (price, cycle_days, limits) {
        (Some(price), Some(cycle_days), Some(limits)) => Ok(Terms {
            price,
            cycle_days,
            limits,
        }),
        _ => Err(errors),
    }
}

pub async fn create_plan(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<NewPlanForm>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    let terms = match typed_terms(&form.price, &form.cycle_days, &form.limits) {
        Ok(terms) => terms,
        Err(errors) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return plans_page(&app, &signed_in, None, form, errors, status).await;
        }
    };
    let request = crate::http::admin::CreatePlanRequest {
        code: Some(form.code.trim().to_owned()),
        name: Some(form.name.clone()),
        description: Some(form.description.clone()).filter(|d| !d.is_empty()),
        price: Some(terms.price),
        currency: Some(form.currency.trim().to_owned()).filter(|c| !c.is_empty()),
        cycle_days: Some(terms.cycle_days),
        renews: Some(true),
        fallback: None,
        limits: Some(terms.limits),
        public: Some(form.public.is_some()),
    };
    let actor = Actor::Admin(signed_in.principal.user_id());
    let result = match request.parse() {
        Ok(new) => admin::create_plan(&app, new, actor)
            .await
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to("/admin/plans?notice=plan_created").into_response(),
        Err(err) => {
            let status = err.status;
            match FormErrors::from_api(err, &[("plan", "name")]) {
                Ok(errors) => plans_page(&app, &signed_in, None, form, errors, status).await,
                Err(err) => problem_page(err),
            }
        }
    }
}

/// A plan's edit form, as typed: amounts in the currency's units, limits as `meter=n, …`.
#[derive(Debug, Default, Deserialize)]
pub struct EditPlanForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    cycle_days: String,
    #[serde(default)]
    limits: String,
    /// A plan's code, or empty for none.
    #[serde(default)]
    fallback: String,
    renews: Option<String>,
    public: Option<String>,
}

impl EditPlanForm {
    fn of(plan: &crate::store::plans::Plan, fallback: String) -> Self {
        EditPlanForm {
            name: plan.name.clone(),
            description: plan.description.clone(),
            price: money(plan.price_minor, "").trim_end().to_owned(),
            currency: plan.currency.clone(),
            cycle_days: plan.cycle_days.to_string(),
            limits: limits_text(&plan.limits.0),
            fallback,
            renews: plan.renews.then(String::new),
            public: plan.is_public.then(String::new),
        }
    }
}

fn limits_text(limits: &std::collections::BTreeMap<String, i64>) -> String {
    limits
        .iter()
        .map(|(m, n)| format!("{m}={n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(askama::Template)]
#[template(path = "pages/admin/plan.html")]
struct PlanPage {
    chrome: Chrome,
    code: String,
    archived: bool,
    /// The plans this one may fall back to: (code, name).
    fallbacks: Vec<(String, String)>,
    form: EditPlanForm,
    errors: FormErrors,
}

/// The edit page of the plan `code`, showing `form` (the plan as it is, or as typed).
async fn plan_page(
    app: &AppState,
    signed_in: &SignedIn,
    code: &str,
    form: Option<EditPlanForm>,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let plans = match admin::all_plans(app).await {
        Ok(p) => p,
        Err(e) => return problem_page(e.into()),
    };
    let Some(plan) = plans.iter().find(|p| p.code == code) else {
        return not_found_page().await;
    };
    let fallback_code = plan
        .fallback_plan_id
        .and_then(|id| plans.iter().find(|p| p.id == id))
        .map(|p| p.code.clone())
        .unwrap_or_default();
    let form = form.unwrap_or_else(|| EditPlanForm::of(plan, fallback_code));
    let page = PlanPage {
        chrome: signed_in.chrome(format!("Staff: plan {}", plan.name)),
        code: plan.code.clone(),
        archived: plan.archived_at.is_some(),
        fallbacks: plans
            .iter()
            // An archived plan stays listed (marked) while it is the fallback, so that saving
            // the form does not quietly remove it.
            .filter(|p| p.code != code && (p.archived_at.is_none() || p.code == form.fallback))
            .map(|p| {
                let name = match p.archived_at {
                    Some(_) => format!("{} (archived)", p.name),
                    None => p.name.clone(),
                };
                (p.code.clone(), name)
            })
            .collect(),
        form,
        errors,
    };
    render(status, &page)
}

pub async fn show_plan(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(code): Path<String>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    plan_page(
        &app,
        &signed_in,
        &code,
        None,
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

pub async fn update_plan(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(code): Path<String>,
    Submitted(form): Submitted<EditPlanForm>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    let terms = match typed_terms(&form.price, &form.cycle_days, &form.limits) {
        Ok(terms) => terms,
        Err(errors) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return plan_page(&app, &signed_in, &code, Some(form), errors, status).await;
        }
    };
    let current = match admin::all_plans(&app).await {
        Ok(plans) => plans.into_iter().find(|p| p.code == code),
        Err(e) => return problem_page(e.into()),
    };
    let Some(current) = current else {
        return not_found_page().await;
    };
    // The form shows every limit: one that is gone from it is removed (the meter is unlimited).
    let mut changed: std::collections::BTreeMap<String, Option<i64>> = current
        .limits
        .0
        .keys()
        .map(|meter| (meter.clone(), None))
        .collect();
    changed.extend(terms.limits.into_iter().map(|(m, n)| (m, Some(n))));
    let fallback = form.fallback.trim();
    let request = crate::http::admin::UpdatePlanRequest {
        name: Some(form.name.clone()),
        description: Some(form.description.clone()),
        price: Some(terms.price),
        currency: Some(form.currency.trim().to_owned()),
        cycle_days: Some(terms.cycle_days),
        renews: Some(form.renews.is_some()),
        fallback: Some(Some(fallback.to_owned()).filter(|f| !f.is_empty())),
        limits: Some(changed),
        public: Some(form.public.is_some()),
        archived: None,
    };
    let actor = Actor::Admin(signed_in.principal.user_id());
    let result = match request.parse() {
        Ok(change) => admin::update_plan(&app, &code, change, actor)
            .await
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to("/admin/plans?notice=plan_updated").into_response(),
        Err(err) => {
            let status = err.status;
            match FormErrors::from_api(err, &[("plan", "name")]) {
                Ok(errors) => plan_page(&app, &signed_in, &code, Some(form), errors, status).await,
                Err(err) => problem_page(err),
            }
        }
    }
}

pub async fn archive_plan(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(code): Path<String>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    if let Err(page) = staff_only(&signed_in).await {
        return page;
    }
    match admin::archive_plan(&app, &code, Actor::Admin(signed_in.principal.user_id())).await {
        Ok(_) => Redirect::to("/admin/plans?notice=plan_archived").into_response(),
        Err(e) => {
            let err: ApiError = e.into();
            let status = err.status;
            match FormErrors::from_api(err, &[]) {
                Ok(errors) => {
                    plans_page(
                        &app,
                        &signed_in,
                        None,
                        NewPlanForm::default(),
                        errors,
                        status,
                    )
                    .await
                }
                Err(err) => problem_page(err),
            }
        }
    }
}
