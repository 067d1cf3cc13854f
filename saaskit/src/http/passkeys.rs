//! Passkeys: `/passkeys/…` (register, list, rename, remove) and the passwordless sign-in
//! (`/login/passkey/…`). The rules live in `accounts::passkeys`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::passkeys::{self, PasskeyError, Started};
use crate::app::AppState;
use crate::db::Timestamp;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::accounts::{Fields, LoginResponse};
use crate::http::extract::{ApiJson, Client, Dashboard, DashboardRead, PathId};
use crate::store::passkeys::StoredPasskey;

impl From<PasskeyError> for ApiError {
    fn from(err: PasskeyError) -> Self {
        match err {
            PasskeyError::NotAPerson => ApiError::forbidden(
                "not_a_person",
                "Only people have passkeys; API keys and bots do not.",
            ),
            PasskeyError::Unavailable(why) => ApiError::conflict("passkeys_unavailable", why),
            PasskeyError::CeremonyExpired => ApiError::new(
                StatusCode::GONE,
                "ceremony_expired",
                "This passkey request is over (used, or older than five minutes): start again.",
            ),
            PasskeyError::Rejected(why) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_passkey",
                format!("The passkey was not accepted: {why}."),
            ),
            PasskeyError::NotFound => ApiError::not_found(),
            PasskeyError::Name(invalid) => {
                ApiError::validation(vec![FieldError::new("name", invalid.code, invalid.message)])
            }
            PasskeyError::Limited(limited) => limited.into(),
            PasskeyError::Unexpected(e) => e.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyCeremony {
    /// Send it back with the authenticator's answer.
    pub ceremony: Uuid,
    /// For the browser: `{"publicKey": …}`, as `PublicKeyCredential.parseCreationOptionsFromJSON`
    /// (registration) or `parseRequestOptionsFromJSON` (sign-in) take its `publicKey`.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

impl From<Started> for PasskeyCeremony {
    fn from(started: Started) -> Self {
        PasskeyCeremony {
            ceremony: started.ceremony,
            options: started.options,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyView {
    pub id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
    #[schema(required = true)]
    pub last_used_at: Option<Timestamp>,
}

impl From<StoredPasskey> for PasskeyView {
    fn from(p: StoredPasskey) -> Self {
        PasskeyView {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyList {
    pub data: Vec<PasskeyView>,
    /// Always null: this list fits in one answer (see "Lists" in the README).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/passkeys/register/start`
#[utoipa::path(
    post,
    path = "/passkeys/register/start",
    tag = "passkeys",
    summary = "Start registering a passkey",
    description = "The options for `navigator.credentials.create` (a discoverable credential, \
        the user verified; the caller's passkeys excluded), valid five minutes.",
    security(("session" = [])),
    responses(
        (status = 200, description = "The ceremony and its options.", body = PasskeyCeremony),
        (status = 403, description = "`not_a_person`."),
        (status = 409, description = "`passkeys_unavailable`: `SAASKIT_PUBLIC_URL` names no host."),
    ),
)]
pub async fn start_passkey_registration(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
) -> ApiResult<Json<PasskeyCeremony>> {
    Ok(Json(passkeys::start_registration(&app, &p).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegistrationFinish {
    #[schema(value_type = Uuid, required = true)]
    pub ceremony: Option<Uuid>,
    /// The authenticator's answer, `PublicKeyCredential.toJSON()`.
    #[schema(value_type = Object, required = true)]
    pub credential: Option<serde_json::Value>,
    /// What to call it (default `Passkey`), up to 64 characters.
    pub name: Option<String>,
}

/// `POST /api/v1/passkeys/register/finish`
#[utoipa::path(
    post,
    path = "/passkeys/register/finish",
    tag = "passkeys",
    summary = "Finish registering a passkey",
    description = "Checks the authenticator's answer and keeps the passkey. The person is mailed.",
    request_body = RegistrationFinish,
    security(("session" = [])),
    responses(
        (status = 201, description = "The passkey.", body = PasskeyView),
        (status = 401, description = "`invalid_passkey`: the answer was refused."),
        (status = 403, description = "`not_a_person`."),
        (status = 409, description = "`passkeys_unavailable`."),
        (status = 410, description = "`ceremony_expired`."),
        (status = 422, description = "A missing field, or an unacceptable name."),
    ),
)]
pub async fn finish_passkey_registration(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<RegistrationFinish>,
) -> ApiResult<(StatusCode, Json<PasskeyView>)> {
    let (ceremony, credential) = ceremony_and_credential(body.ceremony, body.credential)?;
    let stored =
        passkeys::finish_registration(&app, &p, ceremony, credential, body.name.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

fn ceremony_and_credential(
    ceremony: Option<Uuid>,
    credential: Option<serde_json::Value>,
) -> ApiResult<(Uuid, serde_json::Value)> {
    let mut missing = Vec::new();
    if ceremony.is_none() {
        missing.push(FieldError::new(
            "ceremony",
            "required",
            "This field is required.",
        ));
    }
    if credential.is_none() {
        missing.push(FieldError::new(
            "credential",
            "required",
            "This field is required.",
        ));
    }
    match (ceremony, credential) {
        (Some(c), Some(k)) => Ok((c, k)),
        _ => Err(ApiError::validation(missing)),
    }
}

/// `GET /api/v1/passkeys`
#[utoipa::path(
    get,
    path = "/passkeys",
    tag = "passkeys",
    summary = "My passkeys",
    security(("session" = [])),
    responses(
        (status = 200, description = "The caller's passkeys, oldest first.", body = PasskeyList),
        (status = 403, description = "`not_a_person`."),
    ),
)]
pub async fn list_passkeys(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<PasskeyList>> {
    let data = passkeys::list(&app, &p).await?;
    Ok(Json(PasskeyList {
        data: data.into_iter().map(PasskeyView::from).collect(),
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasskeyRename {
    /// Up to 64 characters.
    #[schema(value_type = String, required = true)]
    pub name: Option<String>,
}

/// `PATCH /api/v1/passkeys/{id}`
#[utoipa::path(
    patch,
    path = "/passkeys/{id}",
    tag = "passkeys",
    summary = "Rename a passkey",
    request_body = PasskeyRename,
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The passkey's id.")),
    responses(
        (status = 200, description = "The passkey.", body = PasskeyView),
        (status = 403, description = "`not_a_person`."),
        (status = 404, description = "`not_found`: no such passkey of the caller."),
        (status = 422, description = "An unacceptable name."),
    ),
)]
pub async fn rename_passkey(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
    ApiJson(body): ApiJson<PasskeyRename>,
) -> ApiResult<Json<PasskeyView>> {
    let mut f = Fields::default();
    let name = f.required("name", &body.name);
    f.finish()?;
    let renamed = passkeys::rename(&app, &p, id, name.unwrap_or_default()).await?;
    Ok(Json(renamed.into()))
}

/// `DELETE /api/v1/passkeys/{id}`
#[utoipa::path(
    delete,
    path = "/passkeys/{id}",
    tag = "passkeys",
    summary = "Remove a passkey",
    description = "The passkey no longer signs in. The person is mailed.",
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The passkey's id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 403, description = "`not_a_person`."),
        (status = 404, description = "`not_found`: no such passkey of the caller."),
    ),
)]
pub async fn delete_passkey(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    passkeys::remove(&app, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/login/passkey/start`
#[utoipa::path(
    post,
    path = "/login/passkey/start",
    tag = "accounts",
    summary = "Start signing in with a passkey",
    description = "The options for `navigator.credentials.get`, naming no credential: the \
        authenticator offers the passkeys it keeps for this site. Valid five minutes.",
    responses(
        (status = 200, description = "The ceremony and its options.", body = PasskeyCeremony),
        (status = 409, description = "`passkeys_unavailable`."),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn start_passkey_sign_in(
    State(app): State<AppState>,
    Client(client): Client,
) -> ApiResult<Json<PasskeyCeremony>> {
    Ok(Json(passkeys::start_sign_in(&app, &client).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignInFinish {
    #[schema(value_type = Uuid, required = true)]
    pub ceremony: Option<Uuid>,
    /// The authenticator's answer, `PublicKeyCredential.toJSON()`.
    #[schema(value_type = Object, required = true)]
    pub credential: Option<serde_json::Value>,
}

/// `POST /api/v1/login/passkey/finish`
#[utoipa::path(
    post,
    path = "/login/passkey/finish",
    tag = "accounts",
    summary = "Sign in with a passkey",
    description = "Checks the authenticator's answer: a session for the account the passkey \
        belongs to. An unlocked passkey is two factors: no code is asked.",
    request_body = SignInFinish,
    responses(
        (status = 200, description = "A new session.", body = LoginResponse),
        (status = 401, description = "`invalid_passkey`: the answer was refused."),
        (status = 409, description = "`passkeys_unavailable`."),
        (status = 410, description = "`ceremony_expired`."),
        (status = 429, description = "`rate_limited`: too many attempts; `Retry-After` says when to try again."),
    ),
)]
pub async fn finish_passkey_sign_in(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<SignInFinish>,
) -> ApiResult<Json<LoginResponse>> {
    let (ceremony, credential) = ceremony_and_credential(body.ceremony, body.credential)?;
    let done = passkeys::finish_sign_in(&app, ceremony, credential, client).await?;
    Ok(Json(done.into()))
}
