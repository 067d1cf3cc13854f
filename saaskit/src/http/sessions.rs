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
            SessionError::OwnershipTransferRequired(businesses) => ApiError::conflict(
                "ownership_transfer_required",
                format!(
                    "You are the only owner of businesses with other members: transfer their \
                     ownership first ({}).",
                    businesses
                        .iter()
                        .map(Uuid::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
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
    /// Always null: this list fits in one answer (see "Lists" in the README).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
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
        next_cursor: None,
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

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AccountDeletion {
    /// The account's current password, to confirm.
    #[schema(value_type = String, required = true)]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDeleted {
    /// Businesses closed with the account (those of which it was the only person).
    pub closed_businesses: Vec<Uuid>,
}

/// `DELETE /api/v1/me` `{password}`: deletes the caller's account.
#[utoipa::path(
    delete,
    path = "/me",
    tag = "accounts",
    summary = "Delete my account",
    description = "Needs the current password. Each business of which the caller is the only \
                   person is closed with the account (its tokens, keys and invitations revoked, \
                   its subscription ended); in a business with other members the caller leaves, \
                   and must first transfer ownership if they are its only owner (409 \
                   `ownership_transfer_required`). Personal data is erased, every session ends, \
                   and the email is free to sign up again.",
    security(("session" = [])),
    request_body = AccountDeletion,
    responses(
        (status = 200, description = "Deleted.", body = AccountDeleted),
        (status = 403, description = "`not_a_person`: API keys and bots have no account to delete."),
        (status = 409, description = "`ownership_transfer_required`: the caller is the only owner of a business with other members."),
        (status = 429, description = "`rate_limited`: too many wrong passwords; `Retry-After` says when to try again."),
    ),
)]
pub async fn delete_account(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<AccountDeletion>,
) -> ApiResult<Json<AccountDeleted>> {
    let Some(password) = body.password else {
        return Err(ApiError::validation(vec![FieldError::new(
            "password",
            "required",
            "This field is required.",
        )]));
    };
    match sessions::delete_account(&app, &p, &password).await {
        Ok(closed_businesses) => Ok(Json(AccountDeleted { closed_businesses })),
        Err(SessionError::WrongPassword) => Err(ApiError::validation(vec![FieldError::new(
            "password",
            "incorrect",
            "This is not the account's current password.",
        )])),
        Err(other) => Err(other.into()),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyBusiness {
    pub id: Uuid,
    pub name: String,
    #[schema(value_type = crate::domain::Role)]
    pub role: String,
    /// Whether the token of this request acts for it.
    pub current: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyBusinesses {
    pub data: Vec<MyBusiness>,
    /// Always null: this list fits in one answer (see "Lists" in the README).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/businesses`: the businesses the caller belongs to.
#[utoipa::path(
    get,
    path = "/businesses",
    tag = "accounts",
    summary = "List my businesses",
    description = "Every business the caller is a member of, with their role, and which one this \
                   token acts for. A token acts for one business; `POST /sessions/switch` gets a \
                   session for another.",
    security(("session" = []), ("bot_token" = [])),
    responses(
        (status = 200, description = "The caller's businesses.", body = MyBusinesses),
        (status = 403, description = "`not_a_person`: an API key belongs to its business only."),
    ),
)]
pub async fn list_my_businesses(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<MyBusinesses>> {
    let rows = sessions::businesses_of(&app, &p).await?;
    Ok(Json(MyBusinesses {
        data: rows
            .into_iter()
            .map(|b| MyBusiness {
                current: b.business_id == p.business_id,
                id: b.business_id,
                name: b.name,
                role: b.role,
                created_at: b.created_at,
            })
            .collect(),
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct BusinessSwitch {
    #[schema(value_type = Uuid, required = true)]
    pub business_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SwitchedSession {
    pub token: String,
    pub token_expires_at: Timestamp,
    pub business: crate::http::accounts::BusinessView,
}

/// `POST /api/v1/sessions/switch` `{business_id}`: a session for another of the caller's
/// businesses, replacing the current one.
#[utoipa::path(
    post,
    path = "/sessions/switch",
    tag = "accounts",
    summary = "Switch business",
    description = "Ends the current session and returns a new one acting for `business_id`, a \
                   business the caller belongs to. Login picks the business whose session the \
                   user used last (else the one joined first).",
    security(("session" = [])),
    request_body = BusinessSwitch,
    responses(
        (status = 200, description = "The new session.", body = SwitchedSession),
        (status = 403, description = "`not_a_person`: API keys and bots act for one business."),
        (status = 404, description = "`not_found`: not a business of the caller's (or it is off)."),
    ),
)]
pub async fn switch_business(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    crate::http::extract::Client(client): crate::http::extract::Client,
    ApiJson(body): ApiJson<BusinessSwitch>,
) -> ApiResult<Json<SwitchedSession>> {
    let business_id = match body.business_id.as_deref().map(str::parse::<Uuid>) {
        Some(Ok(id)) => id,
        other => {
            return Err(ApiError::validation(vec![FieldError::new(
                "business_id",
                if other.is_none() {
                    "required"
                } else {
                    "invalid_uuid"
                },
                "The id of a business you belong to.",
            )]));
        }
    };
    let (session, business) = sessions::switch_business(&app, &p, business_id, client).await?;
    Ok(Json(SwitchedSession {
        token: session.token,
        token_expires_at: session.expires_at,
        business: crate::http::accounts::BusinessView::from(&business),
    }))
}
