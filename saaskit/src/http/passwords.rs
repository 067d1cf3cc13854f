//! Password reset: request a mailed link, then confirm it with a new password.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::keys::KeyProblem;
use crate::accounts::reset::{self, ResetError};
use crate::app::AppState;
use crate::db::Timestamp;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::accounts::Fields;
use crate::http::extract::{ApiJson, Client};

impl From<KeyProblem> for ApiError {
    fn from(problem: KeyProblem) -> Self {
        match problem {
            KeyProblem::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "key_not_found",
                "This key does not exist. Check the link, or ask for a new one.",
            ),
            KeyProblem::Used => ApiError::new(
                StatusCode::GONE,
                "key_used",
                "This key was already used. Ask for a new one.",
            ),
            KeyProblem::Revoked => ApiError::new(
                StatusCode::GONE,
                "key_revoked",
                "This key was replaced by a newer one or revoked. Use the newest link.",
            ),
            KeyProblem::Expired => ApiError::new(
                StatusCode::GONE,
                "key_expired",
                "This key has expired. Ask for a new one.",
            ),
        }
    }
}

/// Maps a reset failure, naming the password field as the client sent it.
pub(crate) fn reset_error(err: ResetError, password_field: &str) -> ApiError {
    match err {
        ResetError::Key(problem) => problem.into(),
        ResetError::Password(invalid) => ApiError::validation(vec![FieldError::new(
            password_field,
            invalid.code,
            invalid.message,
        )]),
        ResetError::NoBusiness => ApiError::forbidden(
            "no_business",
            "The password was not changed: this account belongs to no business.",
        ),
        ResetError::Limited(limited) => limited.into(),
        ResetError::Unexpected(e) => e.into(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetRequest {
    #[schema(value_type = String, required = true)]
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub detail: &'static str,
}

const RESET_ACCEPTED: &str =
    "If this email belongs to an account, a link to choose a new password is on its way.";

/// `POST /api/v1/password/reset`: 202 whatever the email, so the answer tells nothing.
#[utoipa::path(
    post,
    path = "/password/reset",
    tag = "accounts",
    summary = "Ask for a password reset",
    description = "Mails a link to choose a new password; 202 whatever the email, so the answer \
                   tells nothing.",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "Accepted.", body = Accepted),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn request_password_reset(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<ResetRequest>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let mut f = Fields::default();
    let email = f.required("email", &body.email);
    f.finish()?;
    if let Some(email) = email {
        reset::request_reset(&app, email, &client)
            .await
            .map_err(|e| reset_error(e, "password"))?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            detail: RESET_ACCEPTED,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmRequest {
    /// The key from the mailed link.
    #[schema(value_type = String, required = true)]
    pub key: Option<String>,
    /// 8 to 128 characters, not the email.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    pub token_expires_at: Timestamp,
}

/// `POST /api/v1/password/reset/confirm`: sets the new password, ends every other session, and
/// returns a new one.
#[utoipa::path(
    post,
    path = "/password/reset/confirm",
    tag = "accounts",
    summary = "Choose a new password",
    description = "Sets the new password, ends every other session, and returns a new one.",
    request_body = ConfirmRequest,
    responses(
        (status = 200, description = "A new session.", body = TokenResponse),
        (status = 403, description = "`no_business`: the account belongs to no business."),
        (status = 404, description = "`key_not_found`."),
        (status = 410, description = "`key_used`, `key_revoked` or `key_expired`."),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn confirm_password_reset(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<ConfirmRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let mut f = Fields::default();
    let key = f.required("key", &body.key);
    let password = f.required("password", &body.password);
    f.finish()?;
    let (Some(key), Some(password)) = (key, password) else {
        return Err(ApiError::validation(Vec::new()));
    };
    let session = reset::confirm_reset(&app, key, password, client)
        .await
        .map_err(|e| reset_error(e, "password"))?;
    Ok(Json(TokenResponse {
        token: session.token,
        token_expires_at: session.expires_at,
    }))
}
