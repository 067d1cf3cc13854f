//! Invitations: create (owners and admins), look up by key (no auth), accept (no auth).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::db::Timestamp;
use crate::domain::{Email, PersonName, Role};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::accounts::{BusinessView, Fields, UserView};
use crate::http::extract::{ApiJson, Client, Dashboard};
use crate::teams::invitations::{
    self, AcceptError, Acceptance, InvitationDetails, InviteError, LookupError, NewInvitation,
};

impl From<InviteError> for ApiError {
    fn from(err: InviteError) -> Self {
        match err {
            InviteError::Forbidden => ApiError::forbidden(
                "forbidden",
                "Only the business's owners and admins may invite.",
            ),
            InviteError::NoLiveSubscription => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "no_active_subscription",
                "The business has no live subscription. Choose a plan first.",
            ),
            InviteError::AlreadyMember => ApiError::conflict(
                "already_member",
                "This email already belongs to a member of the business.",
            ),
            InviteError::Unexpected(e) => e.into(),
        }
    }
}

impl From<LookupError> for ApiError {
    fn from(err: LookupError) -> Self {
        match err {
            LookupError::Key(k) => k.into(),
            LookupError::Unexpected(e) => e.into(),
        }
    }
}

/// Maps an acceptance failure, naming the password field as the client sent it.
pub(crate) fn accept_error(err: AcceptError, password_field: &str) -> ApiError {
    match err {
        AcceptError::Key(k) => k.into(),
        AcceptError::Password(invalid) => ApiError::validation(vec![FieldError::new(
            password_field,
            invalid.code,
            invalid.message,
        )]),
        AcceptError::AccountExists => ApiError::conflict(
            "account_exists",
            "An account with this email already exists. Log in with it to join the business.",
        ),
        AcceptError::Quota(q) => q.into(),
        AcceptError::Unexpected(e) => e.into(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InviteRequest {
    #[schema(value_type = String, required = true, max_length = 254)]
    pub email: Option<String>,
    /// `member` when absent.
    #[schema(value_type = Option<InvitedRole>)]
    pub role: Option<String>,
    /// Mail the invitation (`true` when absent); either way the answer holds the key and link.
    pub send_email: Option<bool>,
}

/// The roles an invitation may grant.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Only the schema of `InviteRequest::role`; the handler reads the text.
pub enum InvitedRole {
    Admin,
    Member,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationCreated {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub business: InvitationBusiness,
    pub expires_at: Timestamp,
    /// The single-use key, shown to the inviter this once (it is also in the link).
    pub key: String,
    pub link: String,
    pub emailed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationBusiness {
    pub id: Uuid,
    pub name: String,
}

/// Roles an invitation may grant: ownership is transferred, never invited; bots are created.
pub(crate) fn parse_invited_role(f: &mut Fields, role: Option<&str>) -> Option<Role> {
    match role.unwrap_or("member") {
        "admin" => Some(Role::Admin),
        "member" => Some(Role::Member),
        _ => {
            f.push(
                "role",
                "invalid_role",
                "An invitation's role is `admin` or `member`.",
            );
            None
        }
    }
}

/// `POST /api/v1/invitations`
#[utoipa::path(
    post,
    path = "/invitations",
    tag = "invitations",
    summary = "Invite someone",
    description = "Invites an email to the business as `admin` or `member`. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    request_body = InviteRequest,
    responses(
        (status = 201, description = "The invitation, with its single-use key.", body = InvitationCreated),
        (status = 402, description = "`no_active_subscription`."),
        (status = 409, description = "`already_member`."),
    ),
)]
pub async fn create_invitation(
    State(app): State<AppState>,
    Dashboard(principal): Dashboard,
    ApiJson(body): ApiJson<InviteRequest>,
) -> ApiResult<(StatusCode, Json<InvitationCreated>)> {
    let mut f = Fields::default();
    let email = f
        .required("email", &body.email)
        .and_then(|e| f.check("email", Email::parse(e)));
    let role = parse_invited_role(&mut f, body.role.as_deref());
    f.finish()?;
    let (Some(email), Some(role)) = (email, role) else {
        return Err(ApiError::validation(Vec::new()));
    };
    let created = invitations::invite(
        &app,
        &principal,
        NewInvitation {
            email,
            role,
            send_email: body.send_email.unwrap_or(true),
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(InvitationCreated {
            id: created.id,
            email: created.email,
            role: created.role,
            business: InvitationBusiness {
                id: created.business_id,
                name: created.business_name,
            },
            expires_at: created.expires_at,
            key: created.key,
            link: created.link,
            emailed: created.emailed,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub business: InvitationBusiness,
    pub inviter: Inviter,
    pub expires_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Inviter {
    pub name: String,
}

impl From<InvitationDetails> for InvitationView {
    fn from(d: InvitationDetails) -> Self {
        InvitationView {
            id: d.id,
            email: d.email,
            role: d.role,
            business: InvitationBusiness {
                id: d.business.id,
                name: d.business.name,
            },
            inviter: Inviter {
                name: d.inviter_name,
            },
            expires_at: d.expires_at,
        }
    }
}

/// A key from the path; one that cannot even be decoded is simply not found.
fn key_of(path: Result<Path<String>, PathRejection>) -> String {
    path.map(|Path(key)| key).unwrap_or_default()
}

/// `GET /api/v1/invitations/{key}`: what a signup form needs to prefill.
#[utoipa::path(
    get,
    path = "/invitations/{key}",
    tag = "invitations",
    summary = "Look up an invitation",
    description = "What a signup form needs to prefill. No authentication: the key is the credential.",
    params(("key" = String, Path, description = "The invitation's key.")),
    responses(
        (status = 200, description = "The invitation.", body = InvitationView),
        (status = 404, description = "`key_not_found`."),
        (status = 410, description = "`key_used`, `key_revoked` or `key_expired`."),
    ),
)]
pub async fn get_invitation(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<InvitationView>> {
    let key = key_of(path);
    Ok(Json(invitations::describe(&app, &key).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AcceptRequest {
    #[schema(value_type = String, required = true, min_length = 1, max_length = 150)]
    pub first_name: Option<String>,
    #[schema(value_type = String, required = true, max_length = 150)]
    pub last_name: Option<String>,
    /// 8 to 128 characters, not the email.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptResponse {
    pub token: String,
    pub token_expires_at: Timestamp,
    pub user: UserView,
    pub business: BusinessView,
    pub role: Role,
}

/// Parses the invitee's names; the password is checked by the service against the invited email.
pub(crate) fn parse_acceptance(
    f: &mut Fields,
    first_name: &Option<String>,
    last_name: &Option<String>,
    password: Option<&str>,
) -> Option<Acceptance> {
    let first = f
        .required("first_name", first_name)
        .and_then(|n| f.check("first_name", PersonName::parse(n)));
    if first.as_ref().is_some_and(PersonName::is_empty) {
        f.push("first_name", "required", "A first name is required.");
    }
    let last = f
        .required("last_name", last_name)
        .and_then(|n| f.check("last_name", PersonName::parse(n)));
    match (first, last, password) {
        (Some(first_name), Some(last_name), Some(password)) => Some(Acceptance {
            first_name,
            last_name,
            password: password.to_owned(),
        }),
        _ => None,
    }
}

/// `POST /api/v1/invitations/{key}/accept`: creates the invitee's account and membership.
#[utoipa::path(
    post,
    path = "/invitations/{key}/accept",
    tag = "invitations",
    summary = "Accept an invitation",
    description = "Creates the invitee's account and membership, and a session.",
    params(("key" = String, Path, description = "The invitation's key.")),
    request_body = AcceptRequest,
    responses(
        (status = 201, description = "The new member's session.", body = AcceptResponse),
        (status = 402, description = "`quota_exceeded`: the plan has no room for another member."),
        (status = 404, description = "`key_not_found`."),
        (status = 409, description = "`account_exists`: log in with it to join."),
        (status = 410, description = "`key_used`, `key_revoked` or `key_expired`."),
    ),
)]
pub async fn accept_invitation(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    Client(client): Client,
    ApiJson(body): ApiJson<AcceptRequest>,
) -> ApiResult<(StatusCode, Json<AcceptResponse>)> {
    let key = key_of(path);
    let mut f = Fields::default();
    let password = f.required("password", &body.password);
    let acceptance = parse_acceptance(&mut f, &body.first_name, &body.last_name, password);
    f.finish()?;
    let Some(acceptance) = acceptance else {
        return Err(ApiError::validation(Vec::new()));
    };
    let done = invitations::accept(&app, &key, acceptance, client)
        .await
        .map_err(|e| accept_error(e, "password"))?;
    Ok((
        StatusCode::CREATED,
        Json(AcceptResponse {
            token: done.session.token,
            token_expires_at: done.session.expires_at,
            user: UserView::from(&done.user),
            business: BusinessView::from(&done.business),
            role: done.role,
        }),
    ))
}
