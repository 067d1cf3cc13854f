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
use crate::http::extract::{
    ApiJson, Client, Dashboard, DashboardRead, MaybeAuthenticated, OptionalJson, PathId,
};
use crate::http::openapi::{EmailAddress, FirstName, PersonNameText};
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
            InviteError::NotFound => ApiError::not_found(),
            InviteError::Quota(q) => q.into(),
            InviteError::Unexpected(e) => e.into(),
        }
    }
}

impl From<LookupError> for ApiError {
    fn from(err: LookupError) -> Self {
        match err {
            LookupError::Key(k) => k.into(),
            LookupError::Limited(limited) => limited.into(),
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
        AcceptError::OtherEmail => ApiError::forbidden(
            "invitation_for_another_email",
            "This invitation is for another email than the account you are logged in with.",
        ),
        AcceptError::NotAPerson => ApiError::forbidden(
            "not_a_person",
            "Only a person's login session can accept an invitation with an existing account.",
        ),
        AcceptError::AlreadyMember => ApiError::conflict(
            "already_member",
            "You are already a member of this business.",
        ),
        AcceptError::Quota(q) => q.into(),
        AcceptError::Limited(limited) => limited.into(),
        AcceptError::Unexpected(e) => e.into(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InviteRequest {
    #[schema(value_type = EmailAddress, required = true)]
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
        (status = 402, description = "`no_active_subscription`, or `quota_exceeded`: pending invitations and members fill the plan's `members` limit."),
        (status = 409, description = "`already_member`."),
    ),
)]
pub async fn create_invitation(
    State(app): State<AppState>,
    Dashboard(principal): Dashboard,
    ApiJson(body): ApiJson<InviteRequest>,
) -> ApiResult<(StatusCode, Json<InvitationCreated>)> {
    let created = invitations::invite(&app, &principal, body.parse()?).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

impl InviteRequest {
    /// The invitation asked for, as the API and the team page read it.
    pub(crate) fn parse(self) -> ApiResult<NewInvitation> {
        let mut f = Fields::default();
        let email = f
            .required("email", &self.email)
            .and_then(|e| f.check("email", Email::parse(e)));
        let role = parse_invited_role(&mut f, self.role.as_deref());
        f.finish()?;
        let (Some(email), Some(role)) = (email, role) else {
            return Err(ApiError::validation(Vec::new()));
        };
        Ok(NewInvitation {
            email,
            role,
            send_email: self.send_email.unwrap_or(true),
        })
    }
}

impl From<invitations::CreatedInvitation> for InvitationCreated {
    fn from(created: invitations::CreatedInvitation) -> Self {
        InvitationCreated {
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
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingInvitation {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    /// The user id of whoever sent it.
    pub invited_by: Option<Uuid>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingInvitations {
    pub data: Vec<PendingInvitation>,
    /// Always null: this list fits in one answer (see "Lists" in the README).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/invitations`: the business's pending invitations, newest first (owners and
/// admins).
#[utoipa::path(
    get,
    path = "/invitations",
    tag = "invitations",
    summary = "List pending invitations",
    description = "Invitations not yet accepted, revoked or expired, newest first. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The pending invitations.", body = PendingInvitations)),
)]
pub async fn list_invitations(
    State(app): State<AppState>,
    DashboardRead(principal): DashboardRead,
) -> ApiResult<Json<PendingInvitations>> {
    let pending = invitations::list_pending(&app, &principal).await?;
    Ok(Json(PendingInvitations {
        data: pending
            .into_iter()
            .map(|k| PendingInvitation {
                id: k.id,
                email: k.email.unwrap_or_default(),
                role: k.role.unwrap_or_else(|| "member".to_owned()),
                invited_by: k.created_by,
                created_at: k.created_at,
                expires_at: k.expires_at,
            })
            .collect(),
        next_cursor: None,
    }))
}

/// `DELETE /api/v1/invitations/{id}`: revokes a pending invitation; its link stops working.
#[utoipa::path(
    delete,
    path = "/invitations/{invitation}",
    tag = "invitations",
    summary = "Revoke a pending invitation",
    description = "Its link stops working at once. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("invitation" = Uuid, Path, description = "The invitation's id, as listed or as answered when it was created (not its mailed key).")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "`not_found`: no such pending invitation."),
    ),
)]
pub async fn revoke_invitation(
    State(app): State<AppState>,
    Dashboard(principal): Dashboard,
    // The management routes share the public ones' path; here the segment is the id.
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    invitations::revoke(&app, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/invitations/{id}/resend`: mails the invitation again with a new link (and a
/// new expiry), under the same id; the old link stops working. Answers like `POST /invitations`.
#[utoipa::path(
    post,
    path = "/invitations/{invitation}/resend",
    tag = "invitations",
    summary = "Send an invitation again",
    description = "Mails a new link with a new expiry; the invitation keeps its id, and the old link stops working (410 `key_revoked`). Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("invitation" = Uuid, Path, description = "The invitation's id, as listed or as answered when it was created (not its mailed key).")),
    responses(
        (status = 200, description = "The invitation, with its new single-use key.", body = InvitationCreated),
        (status = 402, description = "`no_active_subscription` or `quota_exceeded`."),
        (status = 404, description = "`not_found`: no such pending invitation."),
    ),
)]
pub async fn resend_invitation(
    State(app): State<AppState>,
    Dashboard(principal): Dashboard,
    PathId(id): PathId,
) -> ApiResult<Json<InvitationCreated>> {
    Ok(Json(
        invitations::resend(&app, &principal, id).await?.into(),
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
    path = "/invitations/{invitation}",
    tag = "invitations",
    summary = "Look up an invitation",
    description = "What a signup form needs to prefill. No authentication: the key is the credential.",
    params(("invitation" = String, Path, description = "The invitation's key, from the mailed link (not its id).")),
    responses(
        (status = 200, description = "The invitation.", body = InvitationView),
        (status = 404, description = "`key_not_found`."),
        (status = 410, description = "`key_used`, `key_revoked` or `key_expired`."),
        (status = 429, description = "`rate_limited`: too many failed uses of keys from this address."),
    ),
)]
pub async fn get_invitation(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    Client(client): Client,
) -> ApiResult<Json<InvitationView>> {
    let key = key_of(path);
    Ok(Json(
        invitations::describe(&app, &key, &client).await?.into(),
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AcceptRequest {
    #[schema(value_type = FirstName, required = true)]
    pub first_name: Option<String>,
    #[schema(value_type = PersonNameText, required = true)]
    pub last_name: Option<String>,
    /// 8 to 128 characters, not the email.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptResponse {
    /// A session token; null for a new account when `SAASKIT_REQUIRE_VERIFIED_EMAIL` is on: it
    /// logs in once its email is verified with the mailed link.
    #[schema(required = true)]
    pub token: Option<String>,
    #[schema(required = true)]
    pub token_expires_at: Option<Timestamp>,
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

/// `POST /api/v1/invitations/{key}/accept`: creates the invitee's account and membership; or,
/// sent with the session of an existing account of the invited email, joins with that account
/// (no body needed).
#[utoipa::path(
    post,
    path = "/invitations/{invitation}/accept",
    tag = "invitations",
    summary = "Accept an invitation",
    description = "Without a token: creates the invitee's account and membership, and a session \
        (the body is required); the new account is mailed an email verification link, and gets \
        no session (`token: null`) while verified emails are required. With the session of an existing account of the invited email: \
        joins with that account, no body or password needed.",
    params(("invitation" = String, Path, description = "The invitation's key, from the mailed link (not its id).")),
    security((), ("session" = [])),
    request_body(content = Option<AcceptRequest>, description = "Required without a token."),
    responses(
        (status = 201, description = "The new member's session.", body = AcceptResponse),
        (status = 401, description = "`unauthenticated`: a token was sent and is not a live one."),
        (status = 402, description = "`quota_exceeded`: the plan has no room for another member."),
        (status = 403, description = "`invitation_for_another_email`, or `not_a_person` (an API key or a bot)."),
        (status = 404, description = "`key_not_found`."),
        (status = 409, description = "`account_exists`: log in with it to join; `already_member`."),
        (status = 410, description = "`key_used`, `key_revoked` or `key_expired`."),
        (status = 429, description = "`rate_limited`: too many failed uses of keys from this address."),
    ),
)]
pub async fn accept_invitation(
    State(app): State<AppState>,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    path: Result<Path<String>, PathRejection>,
    Client(client): Client,
    OptionalJson(body): OptionalJson<AcceptRequest>,
) -> ApiResult<(StatusCode, Json<AcceptResponse>)> {
    let key = key_of(path);
    let done = match caller {
        Some(caller) => invitations::accept_as(&app, &key, &caller, client).await,
        None => {
            let body = body.unwrap_or_default();
            let mut f = Fields::default();
            let password = f.required("password", &body.password);
            let acceptance = parse_acceptance(&mut f, &body.first_name, &body.last_name, password);
            f.finish()?;
            let Some(acceptance) = acceptance else {
                return Err(ApiError::validation(Vec::new()));
            };
            invitations::accept(&app, &key, acceptance, client).await
        }
    }
    .map_err(|e| accept_error(e, "password"))?;
    Ok((
        StatusCode::CREATED,
        Json(AcceptResponse {
            token: done.session.as_ref().map(|s| s.token.clone()),
            token_expires_at: done.session.as_ref().map(|s| s.expires_at),
            user: UserView::from(&done.user),
            business: BusinessView::from(&done.business),
            role: done.role,
        }),
    ))
}
