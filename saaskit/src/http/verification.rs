//! Email verification: use the mailed link (no authentication: the key is the credential), or
//! ask for a new one (a person's session).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::verification::{self, ResendError, VerifyError};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::http::accounts::Fields;
use crate::http::extract::{ApiJson, Client, Dashboard};
use crate::http::passwords::Accepted;

impl From<VerifyError> for ApiError {
    fn from(err: VerifyError) -> Self {
        match err {
            VerifyError::Key(problem) => problem.into(),
            VerifyError::Limited(limited) => limited.into(),
            VerifyError::Unexpected(e) => e.into(),
        }
    }
}

impl From<ResendError> for ApiError {
    fn from(err: ResendError) -> Self {
        match err {
            ResendError::NotAPerson => ApiError::forbidden(
                "not_a_person",
                "Only people verify an email address; API keys and bots do not.",
            ),
            ResendError::AlreadyVerified => ApiError::conflict(
                "already_verified",
                "This email address is already verified.",
            ),
            ResendError::Limited(limited) => limited.into(),
            ResendError::Unexpected(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyEmailRequest {
    /// The key from the mailed link.
    #[schema(value_type = String, required = true)]
    pub key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmailVerified {
    /// The address now verified.
    pub email: String,
    /// Always true.
    pub email_verified: bool,
}

/// `POST /api/v1/email/verify` `{key}`: marks the address of the key's account verified. The
/// key works once; no session is opened (log in as usual).
#[utoipa::path(
    post,
    path = "/email/verify",
    tag = "accounts",
    summary = "Verify my email address",
    description = "Uses the key from the mailed link: the account's email is verified from now \
                   on. The key works once. Opens no session: log in as usual.",
    request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "Verified.", body = EmailVerified),
        (status = 404, description = "`key_not_found`."),
        (status = 410, description = "`key_used`, `key_revoked` (a newer link was sent) or `key_expired`."),
        (status = 429, description = "`rate_limited`: too many failed uses of keys from this address."),
    ),
)]
pub async fn verify_email(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<VerifyEmailRequest>,
) -> ApiResult<Json<EmailVerified>> {
    let mut f = Fields::default();
    let key = f.required("key", &body.key);
    f.finish()?;
    let Some(key) = key else {
        return Err(ApiError::validation(Vec::new()));
    };
    let user = verification::verify(&app, key, &client).await?;
    Ok(Json(EmailVerified {
        email: user.email,
        email_verified: true,
    }))
}

const RESENT: &str =
    "A new link to verify your email address is on its way; older links no longer work.";

/// `POST /api/v1/email/verify/resend`: mails the caller a new verification link.
#[utoipa::path(
    post,
    path = "/email/verify/resend",
    tag = "accounts",
    summary = "Send my email verification link again",
    description = "Mails a new link to the caller's address; the older links stop working. \
                   A person's session only.",
    security(("session" = [])),
    responses(
        (status = 202, description = "The mail is on its way.", body = Accepted),
        (status = 403, description = "`not_a_person`: API keys and bots have no mailbox to verify."),
        (status = 409, description = "`already_verified`."),
        (status = 429, description = "`rate_limited`: too many links asked for; `Retry-After` says when to try again."),
    ),
)]
pub async fn resend_verification_email(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    verification::resend(&app, &p).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { detail: RESENT })))
}
