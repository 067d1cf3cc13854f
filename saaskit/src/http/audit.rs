//! `GET /api/v1/audit-log`: the business's audit log for its owners and admins; everything for
//! staff.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::{Action, Entry, Filter};
use crate::db::Timestamp;
use crate::domain::Permission;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::extract::{ApiQuery, DashboardRead, page_limit};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries with this action, e.g. `login.failed` or `member.role_changed`.
    #[param(inline, value_type = Option<AuditActionName>)]
    pub action: Option<String>,
    /// Staff only: only this business's entries (staff see every business's by default).
    pub business_id: Option<Uuid>,
    /// At most this many (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// The actions the audit log records: what the `action` filter accepts, listed from
/// [`crate::audit::Action::ALL`] so the document cannot fall behind the code.
pub struct AuditActionName;

impl utoipa::PartialSchema for AuditActionName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(crate::audit::Action::ALL.iter().map(|a| a.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for AuditActionName {}

/// Who did it: `user`, `bot`, `api_key` (its id), `staff`, `system` or `anonymous`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActor {
    pub kind: String,
    #[schema(required = true)]
    pub id: Option<Uuid>,
}

/// What the event is about, e.g. `{kind: "member", id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditTarget {
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// The entry's place in the log (1, 2, 3, …), also its id.
    pub seq: i64,
    pub action: String,
    pub occurred_at: Timestamp,
    pub actor: AuditActor,
    #[schema(required = true)]
    pub business_id: Option<Uuid>,
    #[schema(required = true)]
    pub target: Option<AuditTarget>,
    /// The client's address, when the event came through the API.
    #[schema(required = true)]
    pub ip: Option<String>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
    /// More about the event (roles before and after, plan codes, …); never a secret.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// SHA-256 of the previous entry's hash and this entry's fields (see `saaskit audit verify`).
    pub hash: String,
}

impl From<Entry> for AuditEntryView {
    fn from(e: Entry) -> Self {
        AuditEntryView {
            seq: e.seq,
            action: e.action,
            occurred_at: e.occurred_at,
            actor: AuditActor {
                kind: e.actor_kind,
                id: e.actor_id,
            },
            business_id: e.business_id,
            target: match (e.target_kind, e.target_id) {
                (Some(kind), Some(id)) => Some(AuditTarget { kind, id }),
                _ => None,
            },
            ip: e.ip,
            user_agent: e.user_agent,
            details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null),
            hash: e.hash,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next (older) page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<i64>,
}

/// `GET /api/v1/audit-log[?action=&business_id=&limit=&cursor=]`: newest first.
#[utoipa::path(
    get,
    path = "/audit-log",
    tag = "audit",
    summary = "Read the audit log",
    description = "Security, team and billing events, newest first, a page at a time. Owners and \
                   admins see their business's; staff see every entry (filter with `business_id`).",
    security(("session" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of entries.", body = AuditPage),
        (status = 403, description = "`forbidden_role`: owners and admins only; `staff_only`: `business_id` of another business."),
        (status = 422, description = "`validation_failed`: an unknown action, or a limit out of range."),
    ),
)]
pub async fn list_audit_log(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    Ok(Json(audit_page(&app, &p, q).await?))
}

/// A page of the audit log as the caller may read it: their business's (owners and admins),
/// or any (staff); what the API and the audit log page show.
pub(crate) async fn audit_page(
    app: &AppState,
    p: &crate::accounts::Principal,
    q: AuditQuery,
) -> ApiResult<AuditPage> {
    let staff = p.is_staff();
    if !staff && !p.role().is_some_and(|r| r.may(Permission::ReadAuditLog)) {
        return Err(ApiError::forbidden(
            "forbidden_role",
            "Owners and admins read the audit log.",
        ));
    }
    let business_id = match q.business_id {
        Some(id) if !staff && id != p.business_id => {
            return Err(ApiError::forbidden(
                "staff_only",
                "Only staff read another business's entries.",
            ));
        }
        Some(id) => Some(id),
        None if staff => None,
        None => Some(p.business_id),
    };
    let mut errors = Vec::new();
    let action = match q.action.as_deref().map(|a| (a, Action::parse(a))) {
        None => None,
        Some((_, Some(action))) => Some(action.as_str().to_owned()),
        Some((given, None)) => {
            errors.push(FieldError::new(
                "action",
                "unknown_action",
                format!("{given:?} is not an action the audit log records."),
            ));
            None
        }
    };
    let limit = page_limit(q.limit, 50, 200).unwrap_or_else(|e| {
        errors.push(e);
        0
    });
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = Filter {
        business_id,
        action,
        before: q.cursor,
        limit: limit + 1,
    };
    let mut tx = app.db.read().await?;
    let rows = crate::store::audit::list(tx.conn(), &filter).await?;
    let more = rows.len() as i64 > limit;
    let data: Vec<AuditEntryView> = rows
        .into_iter()
        .take(limit as usize)
        .map(|e| {
            let mut view = AuditEntryView::from(e);
            // Customers see that staff acted, not who, from where.
            if !staff && view.actor.kind == "staff" {
                view.actor.id = None;
                view.ip = None;
                view.user_agent = None;
            }
            view
        })
        .collect();
    let next_cursor = if more {
        data.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(AuditPage { data, next_cursor })
}
