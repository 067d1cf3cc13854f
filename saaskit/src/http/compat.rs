//! The original boilerplate's seven routes under `/saas`, with its request shapes and field
//! names, as thin adapters over the same services, so its existing clients keep working.
//! Its security holes are not kept: reset keys never appear in a response, and completing an
//! invitation at signup needs the invitation's key, not just the business id and the email.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use crate::accounts::{self, NewAccount, reset};
use crate::app::AppState;
use crate::domain::{BusinessName, Email, Password, PersonName, Role, Scope};
use crate::error::{ApiError, ApiResult};
use crate::http::accounts::{Fields, PlanView};
use crate::http::extract::{ApiJson, Client, Dashboard, DashboardRead};
use crate::http::invitations::{accept_error, parse_acceptance};
use crate::http::openapi::{BusinessNameText, EmailAddress, PersonNameText};
use crate::http::passwords::reset_error;
use crate::teams::invitations::{self, NewInvitation};

/// The routes under `/saas`; each handler's `#[utoipa::path]` gives its path and method.
pub fn route_table() -> Vec<crate::http::Route> {
    vec![
        routes!(compat_signup),
        routes!(compat_login),
        routes!(compat_request_reset),
        routes!(compat_confirm_reset),
        routes!(compat_me),
        routes!(compat_invite),
        routes!(compat_prefill),
    ]
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOnly {
    /// A session token; the original clients send it as `Authorization: Token <token>`.
    pub token: String,
}

/// What the legacy login answers: the token, or the second step of a person who signs in with
/// two factors (completed at `POST /api/v1/login/mfa`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CompatLoginAnswer {
    Token(TokenOnly),
    SecondFactor(crate::http::accounts::MfaRequired),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompatSignedUp {
    /// A session token; null while verified emails are required (`SAASKIT_REQUIRE_VERIFIED_EMAIL`)
    /// until the mailed link is used.
    #[schema(required = true)]
    pub token: Option<String>,
}

/// `name` for a new business; `id` (with `activation_key`) to complete an invitation.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompatBusiness {
    pub id: Option<String>,
    #[schema(value_type = Option<BusinessNameText>)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CompatSignup {
    #[schema(value_type = CompatBusiness, required = true)]
    pub business: Option<CompatBusiness>,
    #[schema(value_type = EmailAddress, required = true)]
    pub email: Option<String>,
    #[schema(value_type = PersonNameText, required = true)]
    pub first_name: Option<String>,
    #[schema(value_type = PersonNameText, required = true)]
    pub last_name: Option<String>,
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    pub password1: Option<String>,
    /// The same as `password1`.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    pub password2: Option<String>,
    /// The invitation's key, when completing one.
    pub activation_key: Option<String>,
}

fn passwords_match(p1: Option<&str>, p2: Option<&str>) -> ApiResult<()> {
    if let (Some(a), Some(b)) = (p1, p2)
        && a != b
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "password_mismatch",
            "password1 and password2 differ.",
        ));
    }
    Ok(())
}

/// `POST /saas/signup`: a new business and its owner, or (with `business.id`, the invited email
/// and the invitation's `activation_key`) the completion of an invitation.
#[utoipa::path(
    post,
    path = "/signup",
    tag = "compat",
    summary = "Sign up (legacy)",
    description = "A new business and its owner, or (with `business.id`, the invited email and the \
                   invitation's `activation_key`) the completion of an invitation.",
    request_body = CompatSignup,
    responses(
        (status = 201, description = "A session (none while verified emails are required).", body = CompatSignedUp),
        (status = 400, description = "`password_mismatch`, `invitation_mismatch`, or a body that is not JSON."),
        (status = 402, description = "`quota_exceeded`: the business has no room for another member."),
        (status = 404, description = "`key_not_found`: no such invitation."),
        (status = 409, description = "`email_taken` or `account_exists`."),
        (status = 410, description = "`key_used`, `key_revoked` or `key_expired`."),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn compat_signup(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<CompatSignup>,
) -> ApiResult<(StatusCode, Json<CompatSignedUp>)> {
    let mut f = Fields::default();
    let password1 = f.required("password1", &body.password1);
    let password2 = f.required("password2", &body.password2);
    passwords_match(password1, password2)?;
    let joining = body.business.as_ref().and_then(|b| b.id.as_deref());

    if let Some(business_id) = joining {
        let email = f.required("email", &body.email);
        let key = f.required("activation_key", &body.activation_key);
        let acceptance = parse_acceptance(&mut f, &body.first_name, &body.last_name, password1);
        f.finish()?;
        let (Some(email), Some(key), Some(acceptance)) = (email, key, acceptance) else {
            return Err(ApiError::validation(Vec::new()));
        };
        let details = invitations::describe(&app, key, &client).await?;
        let claimed_business = Uuid::parse_str(business_id.trim()).ok();
        if claimed_business != Some(details.business.id) || Email::key_of(email) != details.email {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invitation_mismatch",
                "This invitation is for another business or another email.",
            ));
        }
        let done = invitations::accept(&app, key, acceptance, client)
            .await
            .map_err(|e| accept_error(e, "password1"))?;
        return Ok((
            StatusCode::CREATED,
            Json(CompatSignedUp {
                token: done.session.map(|s| s.token),
            }),
        ));
    }

    let email = f
        .required("email", &body.email)
        .and_then(|e| f.check("email", Email::parse(e)));
    let password = password1.and_then(|p| f.check("password1", Password::parse(p, email.as_ref())));
    let first_name = f
        .required("first_name", &body.first_name)
        .and_then(|n| f.check("first_name", PersonName::parse(n)));
    let last_name = f
        .required("last_name", &body.last_name)
        .and_then(|n| f.check("last_name", PersonName::parse(n)));
    let business_name = match &body.business {
        Some(b) => f
            .required("business.name", &b.name)
            .and_then(|n| f.check("business.name", BusinessName::parse(n))),
        None => {
            f.push("business", "required", "This field is required.");
            None
        }
    };
    f.finish()?;
    let (Some(email), Some(password), Some(first_name), Some(last_name), Some(business_name)) =
        (email, password, first_name, last_name, business_name)
    else {
        return Err(ApiError::validation(Vec::new()));
    };
    let done = accounts::signup(
        &app,
        NewAccount {
            email,
            password,
            first_name,
            last_name,
            business_name,
        },
        client,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CompatSignedUp {
            token: done.session.map(|s| s.token),
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CompatLogin {
    #[schema(value_type = String, required = true)]
    pub email: Option<String>,
    #[schema(value_type = String, required = true)]
    pub password: Option<String>,
}

/// `POST /saas/login`
#[utoipa::path(
    post,
    path = "/login",
    tag = "compat",
    summary = "Log in (legacy)",
    request_body = CompatLogin,
    responses(
        (status = 200, description = "A session, or the second step (`mfa_required`) for a person who signs in with two factors.", body = CompatLoginAnswer),
        (status = 401, description = "`invalid_credentials`."),
        (status = 403, description = "`email_not_verified`: the password is right, but verified emails are required and this one is not yet."),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn compat_login(
    State(app): State<AppState>,
    client: Client,
    ApiJson(body): ApiJson<CompatLogin>,
) -> ApiResult<Json<CompatLoginAnswer>> {
    use crate::http::accounts::LoginAnswer;
    let login = crate::http::accounts::LoginRequest {
        email: body.email,
        password: body.password,
    };
    let Json(answer) =
        crate::http::accounts::login_user(State(app), client, ApiJson(login)).await?;
    Ok(Json(match answer {
        LoginAnswer::Session(done) => CompatLoginAnswer::Token(TokenOnly { token: done.token }),
        LoginAnswer::SecondFactor(step) => CompatLoginAnswer::SecondFactor(step),
    }))
}

/// `POST /saas/passwd/reset`: 202 whatever the email; the key goes only to the mailbox.
#[utoipa::path(
    post,
    path = "/passwd/reset",
    tag = "compat",
    summary = "Ask for a password reset (legacy)",
    description = "202 whatever the email; the key goes only to the mailbox.",
    request_body = crate::http::passwords::ResetRequest,
    responses(
        (status = 202, description = "Accepted.", body = crate::http::passwords::Accepted),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn compat_request_reset(
    state: State<AppState>,
    client: Client,
    body: ApiJson<crate::http::passwords::ResetRequest>,
) -> ApiResult<(StatusCode, Json<crate::http::passwords::Accepted>)> {
    crate::http::passwords::request_password_reset(state, client, body).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CompatConfirm {
    /// The key from the mailed link.
    #[schema(value_type = String, required = true)]
    pub activation_key: Option<String>,
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    pub password1: Option<String>,
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    pub password2: Option<String>,
}

/// `POST /saas/passwd/reset/cnfrm`
#[utoipa::path(
    post,
    path = "/passwd/reset/cnfrm",
    tag = "compat",
    summary = "Choose a new password (legacy)",
    request_body = CompatConfirm,
    responses(
        (status = 200, description = "The password is changed; a new session.", body = TokenOnly),
        (status = 400, description = "`password_mismatch`, or a body that is not JSON."),
        (status = 403, description = "`no_business`: the account belongs to no business."),
        (status = 404, description = "`key_not_found`."),
        (status = 410, description = "`key_used`, `key_revoked` or `key_expired`."),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn compat_confirm_reset(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<CompatConfirm>,
) -> ApiResult<Json<TokenOnly>> {
    let mut f = Fields::default();
    let key = f.required("activation_key", &body.activation_key);
    let password1 = f.required("password1", &body.password1);
    let password2 = f.required("password2", &body.password2);
    passwords_match(password1, password2)?;
    f.finish()?;
    let (Some(key), Some(password)) = (key, password1) else {
        return Err(ApiError::validation(Vec::new()));
    };
    let session = reset::confirm_reset(&app, key, password, client)
        .await
        .map_err(|e| reset_error(e, "password1"))?;
    Ok(Json(TokenOnly {
        token: session.token,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompatMe {
    pub business: CompatMeBusiness,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    #[schema(required = true)]
    pub plan: Option<CompatPlan>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompatMeBusiness {
    pub id: Uuid,
    pub name: String,
    /// Never a secret: API keys are shown once when created. Null until keys exist.
    #[schema(required = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompatPlan {
    #[serde(flatten)]
    pub plan: PlanView,
    pub status: String,
    pub current_period_end: crate::db::Timestamp,
}

/// `GET /saas/me`
#[utoipa::path(
    get,
    path = "/me",
    tag = "compat",
    summary = "Who is calling (legacy)",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The caller.", body = CompatMe)),
)]
pub async fn compat_me(DashboardRead(mut p): DashboardRead) -> ApiResult<Json<CompatMe>> {
    let plan = match (&p.subscription, p.plan.take()) {
        (Some(sub), Some(plan)) => Some(CompatPlan {
            plan: plan.into(),
            status: sub.status.clone(),
            current_period_end: sub.current_period_end,
        }),
        _ => None,
    };
    let member = p
        .member
        .ok_or_else(|| crate::http::extract::insufficient_scope(&[Scope::Dashboard]))?;
    Ok(Json(CompatMe {
        business: CompatMeBusiness {
            id: p.business_id,
            name: p.business_name,
            api_key: None,
        },
        email: member.email,
        first_name: member.first_name,
        last_name: member.last_name,
        plan,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CompatInvite {
    #[schema(value_type = EmailAddress, required = true)]
    pub email: Option<String>,
    /// Skip the mail.
    pub no_email: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivationKey {
    /// The invitation's single-use key.
    pub activation_key: String,
}

/// `POST /saas/invite`: invites as `member`; `no_email: true` skips the mail.
#[utoipa::path(
    post,
    path = "/invite",
    tag = "compat",
    summary = "Invite a member (legacy)",
    description = "Invites as `member`; `no_email: true` skips the mail. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    request_body = CompatInvite,
    responses(
        (status = 201, description = "The invitation's key.", body = ActivationKey),
        (status = 402, description = "`no_active_subscription`."),
        (status = 409, description = "`already_member`."),
    ),
)]
pub async fn compat_invite(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<CompatInvite>,
) -> ApiResult<(StatusCode, Json<ActivationKey>)> {
    let mut f = Fields::default();
    let email = f
        .required("email", &body.email)
        .and_then(|e| f.check("email", Email::parse(e)));
    f.finish()?;
    let Some(email) = email else {
        return Err(ApiError::validation(Vec::new()));
    };
    let created = invitations::invite(
        &app,
        &p,
        NewInvitation {
            email,
            role: Role::Member,
            send_email: !body.no_email.unwrap_or(false),
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(ActivationKey {
            activation_key: created.key,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PrefillQuery {
    /// The invitation's key.
    #[param(value_type = String, required = true, min_length = 1)]
    pub key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Prefill {
    pub business: PrefillBusiness,
    pub email: String,
    /// Empty: the invitee gives their names when they sign up.
    pub first_name: String,
    pub last_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrefillBusiness {
    pub id: Uuid,
    pub name: String,
}

/// `GET /saas/signup/prefill?key=`: what the signup form shows for an invitation. The invitee's
/// names are not known before they give them, so they are empty.
#[utoipa::path(
    get,
    path = "/signup/prefill",
    tag = "compat",
    summary = "Prefill the signup form (legacy)",
    description = "What the signup form shows for an invitation.",
    params(PrefillQuery),
    responses(
        (status = 200, description = "The invitation's business and email.", body = Prefill),
        (status = 400, description = "`malformed_query`."),
        (status = 404, description = "`key_not_found`."),
        (status = 410, description = "`key_used`, `key_revoked` or `key_expired`."),
        (status = 422, description = "`validation_failed`: no `key`."),
        (status = 429, description = "`rate_limited`: too many failed uses of keys from this address."),
    ),
)]
pub async fn compat_prefill(
    State(app): State<AppState>,
    Client(client): Client,
    query: Result<Query<PrefillQuery>, QueryRejection>,
) -> ApiResult<Json<Prefill>> {
    let Ok(Query(query)) = query else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_query",
            "The query string could not be read.",
        ));
    };
    let Some(key) = query.key.filter(|k| !k.is_empty()) else {
        return Err(ApiError::validation(vec![crate::error::FieldError::new(
            "key",
            "required",
            "The query parameter `key` is required.",
        )]));
    };
    let d = invitations::describe(&app, &key, &client).await?;
    Ok(Json(Prefill {
        business: PrefillBusiness {
            id: d.business.id,
            name: d.business.name,
        },
        email: d.email,
        first_name: String::new(),
        last_name: String::new(),
    }))
}
