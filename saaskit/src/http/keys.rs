//! API keys (`/api-keys`), bots (`/bots`) and the no-auth report of a leaked secret.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::domain::{Scope, Scopes, has_control_chars};
use crate::error::{ApiError, ApiResult};
use crate::http::accounts::Fields;
use crate::http::extract::{ApiJson, Client, Dashboard, DashboardRead, OptionalJson, PathId};
use crate::http::openapi::KeyName;
use crate::keys::{self, BotView, KeyError, KeyView, MAX_OVERLAP_SECS, NewBot, NewKey};

impl From<KeyError> for ApiError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Forbidden => ApiError::forbidden(
                "forbidden_role",
                "Only the business's owners and admins manage API keys and bots.",
            ),
            KeyError::NotFound => ApiError::not_found(),
            KeyError::ScopesTooBroad => ApiError::forbidden(
                "insufficient_scope",
                "A bot cannot be given scopes the caller's own token does not have.",
            ),
            KeyError::Quota(q) => q.into(),
            KeyError::Unexpected(e) => e.into(),
        }
    }
}

/// Names of keys and bots: 1 to 100 characters, no control or invisible format characters.
fn check_name(f: &mut Fields, name: Option<&str>) -> Option<String> {
    let Some(name) = name else {
        f.push("name", "required", "This field is required.");
        return None;
    };
    // Judged as sent (the document's `KeyName` says the same), stored trimmed.
    if name.trim().is_empty() || name.chars().count() > 100 || has_control_chars(name) {
        f.push(
            "name",
            "invalid_name",
            "A name is 1 to 100 characters, without control or invisible formatting characters.",
        );
        return None;
    }
    Some(name.trim().to_owned())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKeyRequest {
    /// 1 to 100 characters.
    #[schema(value_type = KeyName, required = true)]
    pub name: Option<String>,
}

/// `POST /api/v1/api-keys`: a new key with the `sdk` scope; its secret is in this answer only.
#[utoipa::path(
    post,
    path = "/api-keys",
    tag = "api-keys",
    summary = "Create an API key",
    description = "A new key with the `sdk` scope; its secret is in this answer only. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "The key and its secret.", body = NewKey),
        (status = 402, description = "`no_active_subscription` or `quota_exceeded`."),
    ),
)]
pub async fn create_api_key(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<NewKey>)> {
    let key = keys::create_api_key(&app, &p, &body.parse()?).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    /// List revoked keys too.
    #[serde(default)]
    pub include_revoked: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<KeyView>,
    /// Always null: this list fits in one answer (see "Lists" in the README).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/api-keys[?include_revoked=true]`: prefixes and dates, never a secret.
#[utoipa::path(
    get,
    path = "/api-keys",
    tag = "api-keys",
    summary = "List API keys",
    description = "Prefixes and dates, never a secret. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(ListKeysQuery),
    responses(
        (status = 200, description = "The keys.", body = KeyList),
        (status = 422, description = "`validation_failed`: `include_revoked` is not a boolean."),
    ),
)]
pub async fn list_api_keys(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
    query: Result<Query<ListKeysQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<KeyList>> {
    let include_revoked = query.map(|Query(q)| q.include_revoked).map_err(|_| {
        ApiError::validation(vec![crate::error::FieldError::new(
            "include_revoked",
            "invalid",
            "Must be true or false.",
        )])
    })?;
    let data = keys::list_api_keys(&app, &p, include_revoked).await?;
    Ok(Json(KeyList {
        data,
        next_cursor: None,
    }))
}

/// `DELETE /api/v1/api-keys/{id}`: the key stops working on the very next request.
#[utoipa::path(
    delete,
    path = "/api-keys/{id}",
    tag = "api-keys",
    summary = "Revoke an API key",
    description = "The key stops working on the very next request. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = uuid::Uuid, Path, description = "The key's id.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn revoke_api_key(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    keys::revoke_api_key(&app, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RotateRequest {
    /// Seconds the old secret keeps working (at most 604800, 7 days); the deployment's default
    /// when absent.
    #[schema(maximum = 604800)]
    pub overlap_seconds: Option<u32>,
}

/// `POST /api/v1/api-keys/{id}/rotate`: same key, new secret (shown once). A body is optional.
#[utoipa::path(
    post,
    path = "/api-keys/{id}/rotate",
    tag = "api-keys",
    summary = "Rotate an API key",
    description = "Same key, new secret (shown once); the old one keeps working for the overlap. \
                   The body is optional. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = uuid::Uuid, Path, description = "The key's id.")),
    request_body(content = Option<RotateRequest>, description = "Optional."),
    responses(
        (status = 200, description = "The key with its new secret.", body = NewKey),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn rotate_api_key(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
    OptionalJson(body): OptionalJson<RotateRequest>,
) -> ApiResult<Json<NewKey>> {
    let body = body.unwrap_or_default();
    let overlap = body
        .overlap_seconds
        .unwrap_or(app.config.key_rotation_overlap_secs);
    if overlap > MAX_OVERLAP_SECS {
        return Err(ApiError::validation(vec![crate::error::FieldError::new(
            "overlap_seconds",
            "out_of_range",
            format!("At most {MAX_OVERLAP_SECS} seconds (7 days)."),
        )]));
    }
    Ok(Json(keys::rotate_api_key(&app, &p, id, overlap).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LeakReport {
    /// The leaked secret: any text with something besides spaces, at most 256 characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 256, pattern = "\\S")]
    pub key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeakReportResult {
    /// Whether the secret was live until this report.
    pub revoked: bool,
}

/// `POST /api/v1/api-keys/revoke-leaked` (no authentication): whoever holds a leaked secret
/// may kill it. Works for any saaskit secret: API keys, bot tokens, sessions.
#[utoipa::path(
    post,
    path = "/api-keys/revoke-leaked",
    tag = "api-keys",
    summary = "Report a leaked secret",
    description = "No authentication: whoever holds a leaked secret may kill it. Works for any \
                   saaskit secret: API keys, bot tokens, sessions. The answer is the same shape \
                   whether or not the secret existed.",
    request_body = LeakReport,
    responses((status = 200, description = "Whether it was live until now.", body = LeakReportResult)),
)]
pub async fn revoke_leaked_key(
    State(app): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<LeakReport>,
) -> ApiResult<Json<LeakReportResult>> {
    let mut f = Fields::default();
    let key = f.required("key", &body.key).map(str::trim);
    if let Some(k) = key
        && (k.is_empty() || k.chars().count() > 256)
    {
        f.push("key", "invalid_key", "This is not a saaskit secret.");
    }
    f.finish()?;
    let key = key.unwrap_or_default();
    let revoked = keys::revoke_leaked(&app, key, &client).await?;
    Ok(Json(LeakReportResult { revoked }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateBotRequest {
    /// 1 to 100 characters.
    #[schema(value_type = KeyName, required = true)]
    pub name: Option<String>,
    /// Within the caller's own.
    #[schema(value_type = Vec<Scope>, required = true, min_items = 1)]
    pub scopes: Option<Vec<String>>,
}

/// `POST /api/v1/bots`: a bot member with a token (shown once) carrying the given scopes.
#[utoipa::path(
    post,
    path = "/bots",
    tag = "bots",
    summary = "Create a bot",
    description = "A bot member with a token (shown once) carrying the given scopes, counted \
                   against the plan's `members` limit. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    request_body = CreateBotRequest,
    responses(
        (status = 201, description = "The bot and its token.", body = NewBot),
        (status = 402, description = "`no_active_subscription` or `quota_exceeded`."),
    ),
)]
pub async fn create_bot(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    ApiJson(body): ApiJson<CreateBotRequest>,
) -> ApiResult<(StatusCode, Json<NewBot>)> {
    let (name, scopes) = body.parse()?;
    let bot = keys::create_bot(&app, &p, &name, scopes).await?;
    Ok((StatusCode::CREATED, Json(bot)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BotList {
    pub data: Vec<BotView>,
    /// Always null: this list fits in one answer (see "Lists" in the README).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/bots`
#[utoipa::path(
    get,
    path = "/bots",
    tag = "bots",
    summary = "List bots",
    description = "The business's bots. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    responses((status = 200, description = "The bots.", body = BotList)),
)]
pub async fn list_bots(
    State(app): State<AppState>,
    DashboardRead(p): DashboardRead,
) -> ApiResult<Json<BotList>> {
    Ok(Json(BotList {
        data: keys::list_bots(&app, &p).await?,
        next_cursor: None,
    }))
}

/// `DELETE /api/v1/bots/{id}`: the bot leaves the business and its token stops working.
#[utoipa::path(
    delete,
    path = "/bots/{id}",
    tag = "bots",
    summary = "Delete a bot",
    description = "The bot leaves the business and its token stops working. Owners and admins.",
    security(("session" = []), ("bot_token" = [])),
    params(("id" = uuid::Uuid, Path, description = "The bot's member id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`not_found`."),
    ),
)]
pub async fn delete_bot(
    State(app): State<AppState>,
    Dashboard(p): Dashboard,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    keys::delete_bot(&app, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

impl CreateKeyRequest {
    /// The key's name, as the API and the keys page read it.
    pub(crate) fn parse(&self) -> ApiResult<String> {
        let mut f = Fields::default();
        let name = check_name(&mut f, self.name.as_deref());
        f.finish()?;
        name.ok_or_else(|| ApiError::validation(Vec::new()))
    }
}

impl CreateBotRequest {
    /// The bot's name and scopes, as the API and the keys page read them.
    pub(crate) fn parse(&self) -> ApiResult<(String, Scopes)> {
        let mut f = Fields::default();
        let name = check_name(&mut f, self.name.as_deref());
        let scopes = match &self.scopes {
            None => {
                f.push("scopes", "required", "This field is required.");
                None
            }
            Some(names) => {
                let parsed: Option<Vec<Scope>> = names.iter().map(|n| Scope::parse(n)).collect();
                match parsed {
                    Some(list) if !list.is_empty() => Some(Scopes::of(list)),
                    _ => {
                        f.push(
                            "scopes",
                            "invalid_scopes",
                            "A non-empty list of: dashboard, dashboard:read, sdk.",
                        );
                        None
                    }
                }
            }
        };
        f.finish()?;
        let (Some(name), Some(scopes)) = (name, scopes) else {
            return Err(ApiError::validation(Vec::new()));
        };
        Ok((name, scopes))
    }
}
