//! `/dashboard`: the business at a glance — plan, status, period, credits, and every meter as
//! used of its limit, with when it starts again.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::auth::Notice;
use super::format::{day, moment, money};
use super::session::SignedIn;
use super::{Chrome, problem_page, render, server_error};
use crate::app::AppState;
use crate::metering::{self, MeterKind};

pub struct MeterRow {
    pub name: String,
    pub used: i64,
    pub limit: Option<i64>,
    /// For the bar: `used` capped at the limit.
    pub shown: i64,
    pub gauge: bool,
    pub resets: Option<String>,
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
    let subscription =
        match crate::http::billing::subscription_view(&app, principal.business_id).await {
            Ok(s) => s,
            Err(e) => return problem_page(e),
        };
    let meters = match async {
        let mut tx = app.db.read().await?;
        anyhow::Ok(metering::meter_statuses(tx.conn(), principal, app.products.meters()).await?)
    }
    .await
    {
        Ok(m) => m,
        Err(e) => return server_error(e),
    };
    let meters = meters
        .into_iter()
        .map(|(name, m)| MeterRow {
            shown: m.limit.map_or(m.used, |l| m.used.min(l)),
            name,
            used: m.used,
            limit: m.limit,
            gauge: m.kind == MeterKind::Gauge,
            resets: m.resets_at.map(moment),
        })
        .collect();
    let email_verified = principal
        .member
        .as_ref()
        .is_some_and(|m| m.email_verified_at.is_some());
    let page = DashboardPage {
        chrome: signed_in.chrome("Dashboard").notice(q.notice.as_deref()),
        business: principal.business_name.clone(),
        plan: subscription.as_ref().map(|s| s.plan.name.clone()),
        status: subscription.as_ref().map(|s| s.status.clone()),
        live: subscription.as_ref().is_some_and(|s| s.live),
        period: subscription.as_ref().map(|s| {
            format!(
                "{} – {}",
                day(s.current_period_start),
                day(s.current_period_end)
            )
        }),
        balance: subscription
            .as_ref()
            .map(|s| money(s.credit_balance, &s.plan.currency)),
        meters,
        email_verified,
    };
    render(StatusCode::OK, &page)
}
