//! Members of the caller's business: `GET /members`, `PATCH /members/{id}` `{role}`,
//! `DELETE /members/{id}` (removing someone, or leaving when it is the caller's own id).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::db::Timestamp;
use crate::domain::Role;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::extract::{ApiJson, Dashboard, DashboardRead, PathId};
use crate::store::members::MemberListing;
use crate::teams::members::{self, MemberError};

impl From<MemberError> for ApiError {
    fn from(err: MemberError) -> Self {
        match err {
            MemberError::Forbidden(why) => ApiError::forbidden("forbidden_role", why),
            MemberError::NotFound => ApiError::not_found(),
            MemberError::LastOwner => ApiError::conflict(
                "last_owner",
                "A business keeps at least one owner: make someone else owner first.",
            ),
            MemberError::BotRole => ApiError::validation(vec![FieldError::new(
                "role",
                "invalid_role",
                "Bots keep the bot role, and nobody else can be given it.",
            )]),
            MemberError::BotOwner => {
                ApiError::conflict("bot_cannot_own", "A bot cannot own a business.")
            }
            MemberError::SelfTransfer => ApiError::conflict(
                "self_transfer",
                "Ownership is transferred to another member.",
            ),
            MemberError::Unexpected(e) => e.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    #[schema(value_type = Role)]
    pub role: String,
    pub is_bot: bool,
    pub joined_at: Timestamp,
}

impl From<MemberListing> for MemberView {
    fn from(m: MemberListing) -> Self {
        MemberView {
            id: m.id,
            user_id: m.user_id,
            email: m.email,
            first_name: m.first_name,
            last_name: m.last_name,
            role: m.role,
            is_bot: m.is_bot,
            joined_at: m.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub data: Vec<MemberView>,
    /// Always null: this list fits in one answer (see "Lists" in the README).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/members`: everyone in the business, bots included, oldest first.
#[utoipa::path(
    get,
    path = "/members",
    tag = "members",
    summary = "List members",
    description = "Everyone in the business, bots included, oldest first.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The members.", body = MemberList)),
)]
pub async fn list_members(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<MemberList>> {
    let data = members::list(&app, &p).await?;
    Ok(Json(MemberList {
        data: data.into_iter().map(MemberView::from).collect(),
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleChange {
    #[schema(value_type = GivenRole, required = true)]
    pub role: Option<String>,
}

/// The roles a member may be given; bots keep theirs.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Only the schema of `RoleChange::role`; the handler parses the text.
pub enum GivenRole {
    Owner,
    Admin,
    Member,
}

/// `PATCH /api/v1/members/{id}` `{role}`: `owner`, `admin` or `member`.
#[utoipa::path(
    patch,
    path = "/members/{id}",
    tag = "members",
    summary = "Change a member's role",
    description = "`owner`, `admin` or `member`; bots keep the `bot` role. Owners and admins \
                   (only owners make owners).",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The member's id.")),
    request_body = RoleChange,
    responses(
        (status = 200, description = "The member after the change.", body = MemberView),
        (status = 404, description = "`not_found`."),
        (status = 409, description = "`last_owner`: a business keeps at least one owner."),
    ),
)]
pub async fn update_member(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
    ApiJson(body): ApiJson<RoleChange>,
) -> ApiResult<Json<MemberView>> {
    let role = body.parse()?;
    Ok(Json(members::change_role(&app, &p, id, role).await?.into()))
}

impl RoleChange {
    /// The role asked for, as the API and the team page read it.
    pub(crate) fn parse(&self) -> ApiResult<Role> {
        match self.role.as_deref().map(str::parse::<Role>) {
            Some(Ok(role)) => Ok(role),
            _ => Err(ApiError::validation(vec![FieldError::new(
                "role",
                if self.role.is_none() {
                    "required"
                } else {
                    "invalid_role"
                },
                "One of owner, admin, member.",
            )])),
        }
    }
}

/// `DELETE /api/v1/members/{id}`: removes the member (owners and admins), or leaves the
/// business (anyone, with their own member id). Their tokens for it stop working at once.
#[utoipa::path(
    delete,
    path = "/members/{id}",
    tag = "members",
    summary = "Remove a member, or leave",
    description = "Removes the member (owners and admins), or leaves the business (anyone, with \
                   their own member id). Their tokens for it stop working at once.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = Uuid, Path, description = "The member's id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "`not_found`."),
        (status = 409, description = "`last_owner`: a business keeps at least one owner."),
    ),
)]
pub async fn delete_member(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    members::remove(&app, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/members/{id}/transfer-ownership`: the member becomes an owner and the calling
/// owner an admin, in one step.
#[utoipa::path(
    post,
    path = "/members/{id}/transfer-ownership",
    tag = "members",
    summary = "Transfer ownership",
    description = "The member becomes an owner and the calling owner becomes an admin, in one \
                   transaction. Owners only; not to a bot, nor to oneself.",
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The member's id.")),
    responses(
        (status = 200, description = "The new owner.", body = MemberView),
        (status = 404, description = "`not_found`."),
        (status = 409, description = "`self_transfer`: ownership goes to someone else; `bot_cannot_own`."),
    ),
)]
pub async fn transfer_ownership(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<Json<MemberView>> {
    Ok(Json(
        members::transfer_ownership(&app, &p, id).await?.into(),
    ))
}
