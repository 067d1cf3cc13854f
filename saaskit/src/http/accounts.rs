//! Signup, login, logout and `me`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::{self, LoginError, NewAccount, Principal, SignupError};
use crate::app::AppState;
use crate::db::Timestamp;
use crate::domain::{BusinessName, Email, Invalid, Password, PersonName, Scope};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::extract::{ApiJson, Client, DashboardRead};
use crate::http::openapi::{BusinessNameText, EmailAddress, FirstName, PersonNameText};
use crate::store::plans::{Limits, Plan};

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignupRequest {
    #[schema(value_type = BusinessInput, required = true)]
    pub business: Option<BusinessInput>,
    #[schema(value_type = EmailAddress, required = true)]
    pub email: Option<String>,
    #[schema(value_type = FirstName, required = true)]
    pub first_name: Option<String>,
    #[schema(value_type = PersonNameText, required = true)]
    pub last_name: Option<String>,
    /// 8 to 128 characters, not the email.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BusinessInput {
    #[schema(value_type = BusinessNameText, required = true)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_staff: bool,
    pub email_verified: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BusinessView {
    pub id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
    /// Whether its members must sign in with a second factor (`PATCH /api/v1/business`).
    pub require_mfa: bool,
}

impl From<&crate::store::users::User> for UserView {
    fn from(u: &crate::store::users::User) -> Self {
        UserView {
            id: u.id,
            email: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            is_staff: u.is_staff,
            email_verified: u.email_verified_at.is_some(),
            created_at: u.created_at,
        }
    }
}

impl From<&crate::store::businesses::Business> for BusinessView {
    fn from(b: &crate::store::businesses::Business) -> Self {
        BusinessView {
            id: b.id,
            name: b.name.clone(),
            created_at: b.created_at,
            require_mfa: b.require_mfa,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub description: String,
    /// In minor units of `currency` (cents for USD).
    pub price: i64,
    pub currency: String,
    pub cycle_days: i64,
    pub renews: bool,
    pub public: bool,
    /// Limit per meter; a meter that is absent is unlimited.
    #[schema(value_type = std::collections::BTreeMap<String, i64>)]
    pub limits: Limits,
}

impl From<Plan> for PlanView {
    fn from(plan: Plan) -> Self {
        PlanView {
            id: plan.id,
            code: plan.code,
            name: plan.name,
            description: plan.description,
            price: plan.price_minor,
            currency: plan.currency,
            cycle_days: plan.cycle_days,
            renews: plan.renews,
            public: plan.is_public,
            limits: plan.limits.0,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    /// `trialing`, `active`, `past_due`, `canceled` or `expired`.
    pub status: String,
    pub current_period_start: Timestamp,
    pub current_period_end: Timestamp,
    pub plan: PlanView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignupResponse {
    /// A session token (`sks_…`): `Authorization: Bearer <token>`. Null when
    /// `SAASKIT_REQUIRE_VERIFIED_EMAIL` is on: the account logs in once its email is verified
    /// with the mailed link.
    #[schema(required = true)]
    pub token: Option<String>,
    #[schema(required = true)]
    pub token_expires_at: Option<Timestamp>,
    pub user: UserView,
    pub business: BusinessView,
    pub subscription: SubscriptionView,
}

/// Collects every field's problem so the client can fix them all at once.
#[derive(Default)]
pub(crate) struct Fields(Vec<FieldError>);

impl Fields {
    pub(crate) fn required<'a>(
        &mut self,
        field: &str,
        value: &'a Option<String>,
    ) -> Option<&'a str> {
        match value.as_deref() {
            Some(v) => Some(v),
            None => {
                self.0.push(FieldError::new(
                    field,
                    "required",
                    "This field is required.",
                ));
                None
            }
        }
    }

    pub(crate) fn check<T>(&mut self, field: &str, parsed: Result<T, Invalid>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(invalid) => {
                self.0
                    .push(FieldError::new(field, invalid.code, invalid.message));
                None
            }
        }
    }

    pub(crate) fn push(&mut self, field: &str, code: &'static str, message: &str) {
        self.0.push(FieldError::new(field, code, message));
    }

    pub(crate) fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

impl SignupRequest {
    pub(crate) fn parse(self) -> ApiResult<NewAccount> {
        let mut f = Fields::default();
        let email = f
            .required("email", &self.email)
            .and_then(|e| f.check("email", Email::parse(e)));
        let password = f
            .required("password", &self.password)
            .and_then(|p| f.check("password", Password::parse(p, email.as_ref())));
        let first_name = f
            .required("first_name", &self.first_name)
            .and_then(|n| f.check("first_name", PersonName::parse(n)));
        if first_name.as_ref().is_some_and(PersonName::is_empty) {
            f.push("first_name", "required", "A first name is required.");
        }
        let last_name = f
            .required("last_name", &self.last_name)
            .and_then(|n| f.check("last_name", PersonName::parse(n)));
        let business_name = match &self.business {
            Some(b) => f
                .required("business.name", &b.name)
                .and_then(|n| f.check("business.name", BusinessName::parse(n))),
            None => {
                f.push("business", "required", "This field is required.");
                None
            }
        };
        f.finish()?;
        match (email, password, first_name, last_name, business_name) {
            (
                Some(email),
                Some(password),
                Some(first_name),
                Some(last_name),
                Some(business_name),
            ) => Ok(NewAccount {
                email,
                password,
                first_name,
                last_name,
                business_name,
            }),
            _ => Err(ApiError::internal(anyhow::anyhow!(
                "signup fields failed to parse without a field error"
            ))),
        }
    }
}

impl From<SignupError> for ApiError {
    fn from(err: SignupError) -> Self {
        match err {
            SignupError::EmailTaken => ApiError::conflict(
                "email_taken",
                "An account with this email already exists. Log in, or reset the password.",
            ),
            SignupError::Limited(limited) => limited.into(),
            SignupError::Unexpected(e) => e.into(),
        }
    }
}

/// `POST /api/v1/signup`: a new user, their business (they own it) and its first subscription.
#[utoipa::path(
    post,
    path = "/signup",
    tag = "accounts",
    summary = "Sign up",
    description = "A new user, their business (they own it) and its first subscription; mails a \
                   link to verify the email and returns a session token (null while verified \
                   emails are required: `SAASKIT_REQUIRE_VERIFIED_EMAIL`).",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "The account, its business and a session (none while verified emails are required).", body = SignupResponse),
        (status = 409, description = "`email_taken`: an account with this email exists."),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn create_account(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<SignupRequest>,
) -> ApiResult<(StatusCode, Json<SignupResponse>)> {
    let new = body.parse()?;
    let done = accounts::signup(&app, new, client).await?;
    Ok((
        StatusCode::CREATED,
        Json(SignupResponse {
            token: done.session.as_ref().map(|s| s.token.clone()),
            token_expires_at: done.session.as_ref().map(|s| s.expires_at),
            user: UserView::from(&done.user),
            business: BusinessView::from(&done.business),
            subscription: SubscriptionView {
                id: done.subscription.id,
                status: done.subscription.status,
                current_period_start: done.subscription.current_period_start,
                current_period_end: done.subscription.current_period_end,
                plan: done.plan.into(),
            },
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(value_type = String, required = true)]
    pub email: Option<String>,
    #[schema(value_type = String, required = true)]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub token: String,
    pub token_expires_at: Timestamp,
    pub user: UserView,
    pub business: BusinessView,
}

impl From<accounts::LoggedIn> for LoginResponse {
    fn from(done: accounts::LoggedIn) -> Self {
        LoginResponse {
            token: done.session.token,
            token_expires_at: done.session.expires_at,
            user: UserView::from(&done.user),
            business: BusinessView::from(&done.business),
        }
    }
}

/// The first factor is right and the person signs in with two: no session yet.
/// `POST /api/v1/login/mfa` with the token and a code completes the login.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaRequired {
    /// Always `true`.
    pub mfa_required: bool,
    /// Single-use, valid five minutes.
    pub mfa_token: String,
    pub mfa_token_expires_at: Timestamp,
    /// What the second step accepts: `totp`, `recovery_code`.
    pub methods: Vec<&'static str>,
}

impl From<accounts::mfa::Challenge> for MfaRequired {
    fn from(challenge: accounts::mfa::Challenge) -> Self {
        MfaRequired {
            mfa_required: true,
            mfa_token: challenge.token,
            mfa_token_expires_at: challenge.expires_at,
            methods: accounts::mfa::METHODS.to_vec(),
        }
    }
}

/// What a first factor gets: a session, or the second step.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    Session(LoginResponse),
    SecondFactor(MfaRequired),
}

impl From<accounts::SignIn> for LoginAnswer {
    fn from(signed: accounts::SignIn) -> Self {
        match signed {
            accounts::SignIn::Session(done) => LoginAnswer::Session((*done).into()),
            accounts::SignIn::SecondFactor(challenge) => {
                LoginAnswer::SecondFactor(challenge.into())
            }
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(err: LoginError) -> Self {
        match err {
            LoginError::InvalidCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "The email or the password is wrong.",
            ),
            LoginError::EmailNotVerified => ApiError::forbidden(
                "email_not_verified",
                "Verify your email address first, with the link mailed to it.",
            ),
            LoginError::Limited(limited) => limited.into(),
            LoginError::Unexpected(e) => e.into(),
        }
    }
}

/// `POST /api/v1/login`: exchanges an email and password for a session token.
#[utoipa::path(
    post,
    path = "/login",
    tag = "accounts",
    summary = "Log in",
    description = "Exchanges an email and password for a session token.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A new session, or, for a person who signs in with two factors, the second step (`mfa_required`).", body = LoginAnswer),
        (status = 401, description = "`invalid_credentials`: the email or the password is wrong."),
        (status = 403, description = "`email_not_verified`: the password is right, but verified emails are required and this one is not yet."),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn login_user(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginAnswer>> {
    let mut f = Fields::default();
    let email = f.required("email", &body.email);
    let password = f.required("password", &body.password);
    f.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::validation(Vec::new()));
    };
    let signed = login_with(&app, email, password, client).await?;
    Ok(Json(signed.into()))
}

/// `POST /api/v1/logout`: revokes the token that authenticated this request.
/// A login, as the API and the login page make it.
pub(crate) async fn login_with(
    app: &AppState,
    email: &str,
    password: &str,
    client: crate::accounts::ClientInfo,
) -> ApiResult<accounts::SignIn> {
    // Nothing longer than any acceptable password is worth hashing: refuse it like a wrong one.
    // Nor is an email that no account can have (PostgreSQL could not even look up a NUL).
    if password.chars().count() > crate::domain::PASSWORD_MAX_LEN
        || email.len() > 254
        || email.chars().any(char::is_control)
    {
        app.hasher.verify_decoy("").await?;
        return Err(LoginError::InvalidCredentials.into());
    }
    Ok(accounts::login(app, email, password, client).await?)
}

#[utoipa::path(
    post,
    path = "/logout",
    tag = "accounts",
    summary = "Log out",
    description = "Revokes the token that authenticated this request.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 204, description = "The token no longer works.")),
)]
pub async fn logout_user(
    State(app): State<AppState>,
    DashboardRead(principal): DashboardRead,
) -> ApiResult<StatusCode> {
    accounts::logout(&app, &principal).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user: UserView,
    pub business: BusinessView,
    /// Whether the person signs in with a second factor.
    pub mfa_enabled: bool,
    /// The business requires a second factor the person has not set up: until they do, only
    /// `me`, logout and the two-factor set-up answer (403 `mfa_enrollment_required` elsewhere).
    pub mfa_enrollment_required: bool,
    pub role: crate::domain::Role,
    /// The caller's membership id in this business (`DELETE /members/{id}` with it leaves).
    pub member_id: uuid::Uuid,
    /// What the presented token may do (see the README's scope table).
    #[schema(value_type = Vec<crate::domain::Scope>)]
    pub scopes: Vec<&'static str>,
    /// The business's current subscription (live or not), or null if it never had one.
    #[schema(required = true)]
    pub subscription: Option<SubscriptionView>,
}

/// `GET /api/v1/me`: who is calling, for which business, with which role and plan.
#[utoipa::path(
    get,
    path = "/me",
    tag = "accounts",
    summary = "Who is calling",
    description = "Who is calling, for which business, with which role, scopes and plan.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The caller.", body = MeResponse)),
)]
pub async fn get_current_user(
    DashboardRead(principal): DashboardRead,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let document = principal.me_document.clone().get_or_make(|| {
        let view = me_view(principal)?;
        serde_json::to_vec(&view)
            .map(axum::body::Bytes::from)
            .map_err(|err| ApiError::internal(anyhow::Error::new(err).context("the me document")))
    })?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        document,
    )
        .into_response())
}

fn me_view(mut p: Principal) -> ApiResult<MeResponse> {
    let plan = p.plan.take();
    let scopes = p.scopes.names();
    let m = p
        .member
        .ok_or_else(|| crate::http::extract::insufficient_scope(&[Scope::DashboardRead]))?;
    let subscription = match (p.subscription, plan) {
        (Some(sub), Some(plan)) => Some(SubscriptionView {
            id: sub.id,
            status: sub.status,
            current_period_start: sub.current_period_start,
            current_period_end: sub.current_period_end,
            plan: plan.into(),
        }),
        _ => None,
    };
    Ok(MeResponse {
        user: UserView {
            id: m.user_id,
            email: m.email,
            first_name: m.first_name,
            last_name: m.last_name,
            is_staff: m.is_staff,
            email_verified: m.email_verified_at.is_some(),
            created_at: m.user_created_at,
        },
        business: BusinessView {
            id: p.business_id,
            name: p.business_name,
            created_at: p.business_created_at,
            require_mfa: p.business_require_mfa,
        },
        mfa_enabled: m.has_second_factor,
        mfa_enrollment_required: p.business_require_mfa && !m.has_second_factor,
        role: m.role,
        member_id: m.member_id,
        scopes,
        subscription,
    })
}
