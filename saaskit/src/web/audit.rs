//! `/audit-log`: who did what, when, in the business (owners and admins; staff see every
//! business's), newest first, filtered by action, a page at a time.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::format::moment;
use super::session::SignedIn;
use super::{FormErrors, problem_page, render, session::url_encode};
use crate::app::AppState;
use crate::audit::Action;
use crate::http::audit::{AuditQuery, audit_page};

pub struct EntryRow {
    pub when: String,
    pub action: String,
    pub actor: String,
    pub target: String,
    pub details: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    action: Option<String>,
    cursor: Option<i64>,
}

#[derive(askama::Template)]
#[template(path = "pages/audit_log.html")]
struct AuditLogPage {
    chrome: super::Chrome,
    actions: Vec<&'static str>,
    action: String,
    entries: Vec<EntryRow>,
    next: Option<String>,
    errors: FormErrors,
}

pub async fn show_audit_log(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<LogQuery>,
) -> Response {
    let action = q.action.filter(|a| !a.is_empty());
    let query = AuditQuery {
        action: action.clone(),
        business_id: None,
        limit: Some(50),
        cursor: q.cursor,
    };
    let (entries, next, errors, status) = match audit_page(&app, &signed_in.principal, query).await
    {
        Ok(page) => {
            let next = page.next_cursor.map(|c| match &action {
                Some(a) => format!("/audit-log?action={}&cursor={c}", url_encode(a)),
                None => format!("/audit-log?cursor={c}"),
            });
            let rows = page
                .data
                .into_iter()
                .map(|e| EntryRow {
                    when: moment(e.occurred_at),
                    action: e.action,
                    actor: e.actor.kind,
                    target: e.target.map(|t| t.kind).unwrap_or_default(),
                    details: if e.details.as_object().is_some_and(|o| o.is_empty()) {
                        String::new()
                    } else {
                        e.details.to_string()
                    },
                })
                .collect();
            (rows, next, FormErrors::default(), StatusCode::OK)
        }
        Err(err) if err.status == StatusCode::FORBIDDEN => return problem_page(err),
        Err(err) => {
            let status = err.status;
            match FormErrors::from_api(err, &[]) {
                Ok(errors) => (Vec::new(), None, errors, status),
                Err(err) => return problem_page(err),
            }
        }
    };
    let page = AuditLogPage {
        chrome: signed_in.chrome("Audit log"),
        actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
        action: action.unwrap_or_default(),
        entries,
        next,
        errors,
    };
    render(status, &page)
}
