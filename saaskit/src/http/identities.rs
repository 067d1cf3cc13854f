//! The identities from outside providers linked to the caller (`/identities`): listed, and
//! removed unless it would leave no way to sign in. Signing in with a provider is a browser's
//! journey (`/auth/{provider}/…`, pages in `web::identities`); the rules live in
//! `accounts::identities`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::identities::{self, IdentityError};
use crate::app::AppState;
use crate::db::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{Dashboard, DashboardRead, PathId};

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> Self {
        match err {
            IdentityError::NotAPerson => ApiError::forbidden(
                "not_a_person",
                "Only people link identities; API keys and bots do not.",
            ),
            IdentityError::NotFound => ApiError::not_found(),
            IdentityError::LastSignInMethod => ApiError::conflict(
                "last_sign_in_method",
                "This is the last way to sign in to the account. Set a password (\"Forgot your \
                 password?\") or link another sign-in method first.",
            ),
            IdentityError::UnknownProvider => ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_provider",
                "No identity provider of that name is configured.",
            ),
            IdentityError::InvalidState => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_state",
                "This sign-in is unknown, expired or already used, or was started in another \
                 browser. Start again.",
            ),
            IdentityError::Denied(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "provider_denied",
                "The identity provider did not sign you in. Start again.",
            ),
            IdentityError::Provider(e) => match e {
                crate::oidc::ProviderError::Unavailable(_) => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_unavailable",
                    "The identity provider could not be reached. Try again in a moment.",
                )
                .caused_by(e),
                other => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "provider_answer_invalid",
                    "The identity provider's answer could not be trusted, so nobody was signed \
                     in. Start again.",
                )
                .caused_by(other),
            },
            IdentityError::NoEmail => ApiError::new(
                StatusCode::BAD_REQUEST,
                "provider_email_missing",
                "The identity provider did not share a usable email address, which an account \
                 needs. Allow it to share your address, or sign up with a password.",
            ),
            IdentityError::LinkedElsewhere => ApiError::conflict(
                "identity_linked_elsewhere",
                "This identity already signs in to another account. Remove it there first.",
            ),
            IdentityError::Key(problem) => problem.into(),
            IdentityError::Login(e) => e.into(),
            IdentityError::Limited(limited) => limited.into(),
            IdentityError::Unexpected(e) => e.into(),
        }
    }
}

trait CausedBy {
    fn caused_by(self, cause: crate::oidc::ProviderError) -> Self;
}

impl CausedBy for ApiError {
    /// Keeps what the provider said, for the log: never sent.
    fn caused_by(mut self, cause: crate::oidc::ProviderError) -> Self {
        tracing::warn!(error = %cause, "sign-in with an identity provider failed");
        self.source = Some(anyhow::Error::new(cause));
        self
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    pub id: Uuid,
    /// The provider's name, as configured (`google`, `github`).
    pub provider: String,
    /// The provider's id for the person.
    pub subject: String,
    /// The address the provider gave when it was linked.
    pub email: Option<String>,
    pub linked_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityList {
    pub data: Vec<IdentityView>,
    /// Always null: this list fits in one answer (see "Lists" in the README).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/identities`
#[utoipa::path(
    get,
    path = "/identities",
    tag = "accounts",
    summary = "My linked identities",
    description = "The identities at outside providers (OpenID Connect, GitHub) that sign the \
        caller in, oldest first. Linking happens in the browser: `GET /auth/{provider}/start` \
        while signed in.",
    security(("session" = [])),
    responses(
        (status = 200, description = "The caller's identities.", body = IdentityList),
        (status = 403, description = "`not_a_person`: API keys and bots have no identities."),
    ),
)]
pub async fn list_identities(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<IdentityList>> {
    let data = identities::list(&app, &p).await?;
    Ok(Json(IdentityList {
        data: data
            .into_iter()
            .map(|i| IdentityView {
                id: i.id,
                provider: i.provider,
                subject: i.subject,
                email: i.email,
                linked_at: i.created_at,
                last_used_at: i.last_used_at,
            })
            .collect(),
        next_cursor: None,
    }))
}

/// `DELETE /api/v1/identities/{id}`
#[utoipa::path(
    delete,
    path = "/identities/{id}",
    tag = "accounts",
    summary = "Remove a linked identity",
    description = "The identity no longer signs the caller in. Refused when it is the last way \
        to sign in (no password, no other identity, no passkey). The person is mailed.",
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The identity's id, from the list.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 403, description = "`not_a_person`."),
        (status = 404, description = "`not_found`: no such identity of the caller."),
        (status = 409, description = "`last_sign_in_method`: it is the only way left to sign in."),
    ),
)]
pub async fn delete_identity(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    identities::remove(&app, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
