//! The caller's sessions: `GET /sessions`, `DELETE /sessions/{id}`, `DELETE /sessions` (all the
//! others), and `POST /password/change`, which ends every other session.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::sessions::{self, SessionError, SessionListing};
use crate::app::AppState;
use crate::db::Timestamp;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::extract::{ApiJson, Dashboard, DashboardRead, PathId};

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::NotAPerson => ApiError::forbidden(
                "not_a_person",
                "Only people have sessions and passwords; API keys and bots do not.",
            ),
            SessionError::NotFound => ApiError::not_found(),
            SessionError::WrongPassword => ApiError::validation(vec![FieldError::new(
                "current_password",
                "incorrect",
                "This is not the account's current password.",
            )]),
            SessionError::Password(invalid) => ApiError::validation(vec![FieldError::new(
                "new_password",
                invalid.code,
                invalid.message,
            )]),
            SessionError::Limited(limited) => limited.into(),
            SessionError::Unexpected(e) => e.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    /// `session` (a login), or `bot` for a bot's own tokens.
    pub kind: String,
    /// Whether this is the token the request came with.
    pub current: bool,
    pub business_id: Option<Uuid>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    /// When it ends however active it is.
    pub expires_at: Option<Timestamp>,
    /// When it ends if not used before then (sessions only).
    pub idle_expires_at: Option<Timestamp>,
}

impl From<SessionListing> for SessionView {
    fn from(s: SessionListing) -> Self {
        SessionView {
            id: s.row.id,
            kind: s.row.kind,
            current: s.current,
            business_id: s.row.business_id,
            user_agent: s.row.user_agent,
            ip: s.row.ip,
            created_at: s.row.created_at,
            last_used_at: s.row.last_used_at,
            expires_at: s.row.expires_at,
            idle_expires_at: s.idle_expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub data: Vec<SessionView>,
}

/// `GET /api/v1/sessions`: the caller's live sessions, most recently used first.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "sessions",
    summary = "List my sessions",
    description = "The caller's live tokens (a bot's: its own), most recently used first, with \
        the client that opened each and when it ends.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The sessions.", body = SessionList)),
)]
pub async fn list_sessions(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<SessionList>> {
    let data = sessions::list(&app, &p).await?;
    Ok(Json(SessionList {
        data: data.into_iter().map(SessionView::from).collect(),
    }))
}

/// `DELETE /api/v1/sessions/{id}`: ends one of the caller's sessions (404 for anyone else's).
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "sessions",
    summary = "End one of my sessions",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The session's id, from the list.")),
    responses(
        (status = 204, description = "The session's token no longer works."),
        (status = 404, description = "`not_found`: no such live session of the caller."),
    ),
)]
pub async fn delete_session(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    sessions::revoke(&app, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsEnded {
    /// How many sessions ended.
    pub revoked: u64,
}

/// `DELETE /api/v1/sessions`: ends every session of the caller but the current one.
#[utoipa::path(
    delete,
    path = "/sessions",
    tag = "sessions",
    summary = "End all my other sessions",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "How many ended.", body = SessionsEnded)),
)]
pub async fn delete_other_sessions(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
) -> ApiResult<Json<SessionsEnded>> {
    let revoked = sessions::revoke_others(&app, &p).await?;
    Ok(Json(SessionsEnded { revoked }))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PasswordChange {
    #[schema(value_type = String, required = true)]
    pub current_password: Option<String>,
    /// 8 to 128 characters, not a common password, not the email.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    pub new_password: Option<String>,
}

/// `POST /api/v1/password/change` `{current_password, new_password}`: every other session of
/// the caller ends; the current one goes on.
#[utoipa::path(
    post,
    path = "/password/change",
    tag = "sessions",
    summary = "Change my password",
    description = "Needs the current password. Every other session of the caller ends.",
    security(("session" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; how many other sessions ended.", body = SessionsEnded),
        (status = 403, description = "`not_a_person`: API keys and bots have no password."),
        (status = 429, description = "`rate_limited`: too many wrong current passwords; `Retry-After` says when to try again."),
    ),
)]
pub async fn change_password(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<Json<SessionsEnded>> {
    let mut missing = Vec::new();
    for (field, value) in [
        ("current_password", &body.current_password),
        ("new_password", &body.new_password),
    ] {
        if value.is_none() {
            missing.push(FieldError::new(
                field,
                "required",
                "This field is required.",
            ));
        }
    }
    let (Some(current), Some(new)) = (body.current_password, body.new_password) else {
        return Err(ApiError::validation(missing));
    };
    let revoked = sessions::change_password(&app, &p, &current, &new).await?;
    Ok(Json(SessionsEnded { revoked }))
}
