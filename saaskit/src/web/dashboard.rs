//! `/dashboard`: the business at a glance — plan, status, period, credits, and every meter as
//! used of its limit, with when it starts again.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::auth::Notice;
use super::format::{day, moment, money};
use super::session::SignedIn;
use super::{Chrome, render, server_error};
use crate::app::AppState;
use crate::metering::{self, MeterKind, MeterStatus};

pub struct MeterRow {
    pub name: String,
    pub used: i64,
    pub limit: Option<i64>,
    /// For the bar: `used` capped at the limit.
    pub shown: i64,
    pub gauge: bool,
    pub resets: Option<String>,
}

/// The rows of `pages/meters.html`.
pub(super) fn meter_rows(meters: BTreeMap<String, MeterStatus>) -> Vec<MeterRow> {
    meters
        .into_iter()
        .map(|(name, m)| MeterRow {
            shown: m.limit.map_or(m.used, |l| m.used.min(l)),
            name,
            used: m.used,
            limit: m.limit,
            gauge: m.kind == MeterKind::Gauge,
            resets: m.resets_at.map(moment),
        })
        .collect()
}

#[derive(askama::Template)]
#[template(path = "pages/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    business: String,
    plan: Option<String>,
    status: Option<String>,
    live: bool,
    period: Option<String>,
    balance: Option<String>,
    meters: Vec<MeterRow>,
    email_verified: bool,
}

pub async fn dashboard_page(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<Notice>,
) -> Response {
    let principal = &signed_in.principal;
    // The subscription and its plan come with the session (the auth context); the balance and
    // the meters in one statement, shared with the other dashboards asked for at the same
    // moment: this page is what every customer opens first.
    let sub = principal.subscription.as_ref();
    let figures = match metering::figures_batched(&app, principal.business_id, sub).await {
        Ok(f) => f,
        Err(e) => return server_error(e),
    };
    let balance = figures.balance;
    let meters = figures.statuses(sub, app.products.meters());
    let meters = meter_rows(meters);
    let email_verified = principal
        .member
        .as_ref()
        .is_some_and(|m| m.email_verified_at.is_some());
    let page = DashboardPage {
        chrome: signed_in.chrome("Dashboard").notice(q.notice.as_deref()),
        business: principal.business_name.clone(),
        plan: principal.plan.as_ref().map(|p| p.name.clone()),
        status: principal.subscription.as_ref().map(|s| s.status.clone()),
        live: principal
            .subscription
            .as_ref()
            .is_some_and(|s| s.is_live(app.clock.now())),
        period: principal.subscription.as_ref().map(|s| {
            format!(
                "{} – {}",
                day(s.current_period_start),
                day(s.current_period_end)
            )
        }),
        balance: principal.plan.as_ref().map(|p| money(balance, &p.currency)),
        meters,
        email_verified,
    };
    render(StatusCode::OK, &page)
}
