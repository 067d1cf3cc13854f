//! Two-factor sign-in (`/mfa/…`), the login's second step (`/login/mfa`) and magic links
//! (`/login/magic-link`). The rules live in `accounts::mfa` and `accounts::magic`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::magic::{self, MagicLinkError};
use crate::accounts::mfa::{self, MfaError, SecondStepError};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::accounts::{Fields, LoginAnswer, LoginResponse};
use crate::http::extract::{ApiJson, Client, Dashboard, DashboardRead};
use crate::http::passwords::Accepted;

impl From<MfaError> for ApiError {
    fn from(err: MfaError) -> Self {
        match err {
            MfaError::NotAPerson => ApiError::forbidden(
                "not_a_person",
                "Only people sign in with a second factor; API keys and bots do not.",
            ),
            MfaError::AlreadyEnabled => ApiError::conflict(
                "mfa_already_enabled",
                "Two-factor sign-in is already on. Turn it off first to set up another \
                 authenticator.",
            ),
            MfaError::SetupRequired => ApiError::conflict(
                "mfa_setup_required",
                "No set-up is waiting for a code: POST /api/v1/mfa/totp/setup first.",
            ),
            MfaError::NotEnabled => {
                ApiError::conflict("mfa_not_enabled", "Two-factor sign-in is off.")
            }
            MfaError::InvalidCode => ApiError::validation(vec![FieldError::new(
                "code",
                "invalid_mfa_code",
                "This is not the authenticator's current code. Check the device's clock, and \
                 type the six digits it shows now.",
            )]),
            MfaError::WrongPassword => ApiError::validation(vec![FieldError::new(
                "password",
                "incorrect",
                "This is not the account's password.",
            )]),
            MfaError::Limited(limited) => limited.into(),
            MfaError::Unexpected(e) => e.into(),
        }
    }
}

impl From<SecondStepError> for ApiError {
    fn from(err: SecondStepError) -> Self {
        match err {
            SecondStepError::InvalidToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_mfa_token",
                "This sign-in has expired or was already completed: sign in again.",
            ),
            SecondStepError::InvalidCode => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_mfa_code",
                "The code is wrong, or was already used.",
            ),
            SecondStepError::Limited(limited) => limited.into(),
            SecondStepError::Unexpected(e) => e.into(),
        }
    }
}

impl From<MagicLinkError> for ApiError {
    fn from(err: MagicLinkError) -> Self {
        match err {
            MagicLinkError::Key(problem) => problem.into(),
            MagicLinkError::Login(e) => e.into(),
            MagicLinkError::Limited(limited) => limited.into(),
            MagicLinkError::Unexpected(e) => e.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MfaStatus {
    pub totp_enabled: bool,
    /// Recovery codes not used yet.
    pub recovery_codes_remaining: i64,
}

/// `GET /api/v1/mfa`
#[utoipa::path(
    get,
    path = "/mfa",
    tag = "mfa",
    summary = "My second factors",
    description = "Whether the caller signs in with an authenticator app, and how many recovery \
        codes are left.",
    security(("session" = [])),
    responses(
        (status = 200, description = "The caller's second factors.", body = MfaStatus),
        (status = 403, description = "`not_a_person`: API keys and bots have no second factor."),
    ),
)]
pub async fn get_mfa(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<MfaStatus>> {
    let status = mfa::status(&app, &p).await?;
    Ok(Json(MfaStatus {
        totp_enabled: status.totp_enabled,
        recovery_codes_remaining: status.recovery_codes_remaining,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpSetup {
    /// The seed in base32, for typing into an authenticator app by hand.
    pub secret: String,
    /// `otpauth://totp/…`, what the QR code holds.
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

/// `POST /api/v1/mfa/totp/setup`
#[utoipa::path(
    post,
    path = "/mfa/totp/setup",
    tag = "mfa",
    summary = "Set up an authenticator app",
    description = "A new seed for an authenticator app. Nothing is active until a code from it \
        is confirmed (`POST /mfa/totp/confirm`); asking again replaces the seed waiting.",
    security(("session" = [])),
    responses(
        (status = 200, description = "The seed, as text, URI and QR code.", body = TotpSetup),
        (status = 403, description = "`not_a_person`."),
        (status = 409, description = "`mfa_already_enabled`."),
    ),
)]
pub async fn setup_totp(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
) -> ApiResult<Json<TotpSetup>> {
    let setup = mfa::setup(&app, &p).await?;
    Ok(Json(TotpSetup {
        secret: setup.secret,
        otpauth_uri: setup.otpauth_uri,
        qr_svg: setup.qr_svg,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CodeRequest {
    /// The six digits the authenticator app shows now.
    #[schema(value_type = String, required = true)]
    pub code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes, for when the authenticator is lost. Shown this once.
    pub recovery_codes: Vec<String>,
}

/// `POST /api/v1/mfa/totp/confirm`
#[utoipa::path(
    post,
    path = "/mfa/totp/confirm",
    tag = "mfa",
    summary = "Turn on two-factor sign-in",
    description = "Confirms the authenticator set up with a code from it, turns two-factor \
        sign-in on, and returns ten recovery codes, shown this once.",
    request_body = CodeRequest,
    security(("session" = [])),
    responses(
        (status = 200, description = "Two-factor sign-in is on.", body = RecoveryCodes),
        (status = 403, description = "`not_a_person`."),
        (status = 409, description = "`mfa_setup_required` or `mfa_already_enabled`."),
        (status = 422, description = "`invalid_mfa_code` on `code`."),
    ),
)]
pub async fn confirm_totp(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<CodeRequest>,
) -> ApiResult<Json<RecoveryCodes>> {
    let mut f = Fields::default();
    let code = f.required("code", &body.code);
    f.finish()?;
    let code = code.unwrap_or_default();
    let codes = mfa::confirm(&app, &p, code).await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordRequest {
    /// The account's password.
    #[schema(value_type = String, required = true)]
    pub password: Option<String>,
}

/// `DELETE /api/v1/mfa/totp`
#[utoipa::path(
    delete,
    path = "/mfa/totp",
    tag = "mfa",
    summary = "Turn off two-factor sign-in",
    description = "Removes the authenticator and the recovery codes, after checking the \
        password (wrong ones count like failed logins).",
    request_body = PasswordRequest,
    security(("session" = [])),
    responses(
        (status = 204, description = "Two-factor sign-in is off."),
        (status = 403, description = "`not_a_person`."),
        (status = 409, description = "`mfa_not_enabled`."),
        (status = 422, description = "`incorrect` on `password`."),
        (status = 429, description = "`rate_limited`."),
    ),
)]
pub async fn disable_totp(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<PasswordRequest>,
) -> ApiResult<StatusCode> {
    let mut f = Fields::default();
    let password = f.required("password", &body.password);
    f.finish()?;
    mfa::disable(&app, &p, password.unwrap_or_default()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/mfa/recovery-codes`
#[utoipa::path(
    post,
    path = "/mfa/recovery-codes",
    tag = "mfa",
    summary = "New recovery codes",
    description = "Ten new recovery codes, shown this once; the old ones stop working.",
    request_body = PasswordRequest,
    security(("session" = [])),
    responses(
        (status = 200, description = "The new codes.", body = RecoveryCodes),
        (status = 403, description = "`not_a_person`."),
        (status = 409, description = "`mfa_not_enabled`."),
        (status = 422, description = "`incorrect` on `password`."),
        (status = 429, description = "`rate_limited`."),
    ),
)]
pub async fn regenerate_recovery_codes(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<PasswordRequest>,
) -> ApiResult<Json<RecoveryCodes>> {
    let mut f = Fields::default();
    let password = f.required("password", &body.password);
    f.finish()?;
    let codes = mfa::regenerate_recovery_codes(&app, &p, password.unwrap_or_default()).await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SecondStepRequest {
    /// From the login's `mfa_required` answer.
    #[schema(value_type = String, required = true)]
    pub mfa_token: Option<String>,
    /// A code from the authenticator app, or one of the recovery codes.
    #[schema(value_type = String, required = true)]
    pub code: Option<String>,
}

/// `POST /api/v1/login/mfa`
#[utoipa::path(
    post,
    path = "/login/mfa",
    tag = "accounts",
    summary = "Complete a login with a second factor",
    description = "The second step of a login that answered `mfa_required`: a code from the \
        authenticator app (each accepted once) or a recovery code (each works once). Wrong \
        codes count against the login limits; the token dies after five.",
    request_body = SecondStepRequest,
    responses(
        (status = 200, description = "A new session.", body = LoginResponse),
        (status = 401, description = "`invalid_mfa_token` (unknown, expired, used, or dead after five wrong codes) or `invalid_mfa_code`."),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn login_mfa(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<SecondStepRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let mut f = Fields::default();
    let token = f.required("mfa_token", &body.mfa_token);
    let code = f.required("code", &body.code);
    f.finish()?;
    let (Some(token), Some(code)) = (token, code) else {
        return Err(ApiError::validation(Vec::new()));
    };
    if token.len() > 128 || code.len() > 64 {
        return Err(SecondStepError::InvalidToken.into());
    }
    let done = mfa::complete_login(&app, token, code, client).await?;
    Ok(Json(done.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MagicLinkRequest {
    #[schema(value_type = String, required = true)]
    pub email: Option<String>,
}

const MAGIC_LINK_ACCEPTED: &str =
    "If this email belongs to an account, a sign-in link is on its way.";

/// `POST /api/v1/login/magic-link`
#[utoipa::path(
    post,
    path = "/login/magic-link",
    tag = "accounts",
    summary = "Ask for a sign-in link",
    description = "Mails a link that signs in once, within 15 minutes (`/magic-login?key=`); 202 \
        whatever the email, so the answer tells nothing. Limited like password resets.",
    request_body = MagicLinkRequest,
    responses(
        (status = 202, description = "Accepted.", body = Accepted),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn request_magic_link(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<MagicLinkRequest>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let mut f = Fields::default();
    let email = f.required("email", &body.email);
    f.finish()?;
    if let Some(email) = email {
        magic::request(&app, email, &client).await?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            detail: MAGIC_LINK_ACCEPTED,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MagicLinkConfirm {
    /// The key from the mailed link.
    #[schema(value_type = String, required = true)]
    pub key: Option<String>,
}

/// `POST /api/v1/login/magic-link/confirm`
#[utoipa::path(
    post,
    path = "/login/magic-link/confirm",
    tag = "accounts",
    summary = "Sign in with a mailed link",
    description = "Uses the key of a sign-in link (once): a session, or the second step for a \
        person who signs in with two factors. It also verifies the address.",
    request_body = MagicLinkConfirm,
    responses(
        (status = 200, description = "A new session, or the second step (`mfa_required`).", body = LoginAnswer),
        (status = 403, description = "`email_not_verified`."),
        (status = 404, description = "`key_not_found`."),
        (status = 410, description = "`key_used`, `key_revoked` or `key_expired`."),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn confirm_magic_link(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<MagicLinkConfirm>,
) -> ApiResult<Json<LoginAnswer>> {
    let mut f = Fields::default();
    let key = f.required("key", &body.key);
    f.finish()?;
    let key = key.unwrap_or_default();
    let signed = magic::sign_in(&app, key, client).await?;
    Ok(Json(signed.into()))
}
