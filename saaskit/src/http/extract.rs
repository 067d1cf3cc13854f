//! Extractors every route uses: JSON bodies whose every rejection is a problem document, the
//! authenticated caller with the scope the route needs, guards on role and subscription, the
//! idempotency key of metered writes, and where the request came from. A product's own routes
//! compose the same ones (see `src/example`).

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::accounts::{self, ClientInfo, CurrentSubscription, Membership, Origin, Principal};
use crate::app::AppState;
use crate::db::Timestamp;
use crate::domain::{Role, Scope};
use crate::error::{ApiError, FieldError};
use crate::metering::idempotency::{IdempotencyKey, Stored};

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `Json<T>` whose failures are problem documents: 415 for a missing or wrong content type,
/// 400 for syntax errors (invalid UTF-8 included), 422 for a body of the wrong shape, 413 for
/// one over [`MAX_BODY_BYTES`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(req.headers()) {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(e.into()))?;
        let value = match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => value,
            // JSON has one kind of number: `3.0` is the integer 3 (and so it is to the API
            // document's `integer`), though serde refuses it for an integer field. Read again,
            // with such numbers written as integers, only when the first reading failed.
            Err(JsonRejection::JsonDataError(err)) => serde_json::from_slice(&bytes)
                .ok()
                .and_then(|mut body| integral_numbers_as_integers(&mut body).then_some(body))
                .and_then(|body| serde_json::from_value(body).ok())
                .ok_or_else(|| json_rejection(JsonRejection::JsonDataError(err)))?,
            Err(rejection) => return Err(json_rejection(rejection)),
        };
        // Every request body of this API is a JSON object. serde also reads an array as a
        // struct (its members in order), so a struct whose members are all optional took `[0]`
        // for "nothing given": an array that read as the body is refused all the same.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "The body does not have the expected shape: it must be a JSON object, not an array.",
            ));
        }
        Ok(ApiJson(value))
    }
}

/// `application/json`, or any `application/…+json`, as axum's `Json` requires.
fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype
                .rsplit_once('+')
                .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json")))
}

/// Writes every number of `value` that is a whole number written with a fraction or an
/// exponent (`3.0`, `1e3`) as an integer; whether any was.
pub(crate) fn integral_numbers_as_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            // Within ±2^53, where every whole f64 is exact and fits an i64.
            Some(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => {
                *value = Value::from(f as i64);
                true
            }
            _ => false,
        },
        // Every number is rewritten (no stopping at the first).
        Value::Array(items) => {
            items
                .iter_mut()
                .map(integral_numbers_as_integers)
                .filter(|&changed| changed)
                .count()
                > 0
        }
        Value::Object(map) => {
            map.values_mut()
                .map(integral_numbers_as_integers)
                .filter(|&changed| changed)
                .count()
                > 0
        }
        _ => false,
    }
}

/// `Query<T>` whose failures are 422 `invalid_query` problems.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::validation(vec![FieldError::new(
                "query",
                "invalid_query",
                rejection.body_text(),
            )])),
        }
    }
}

/// A page size: `limit` when given (1 to `max`), else `default`.
pub fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, FieldError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(FieldError::new(
            "limit",
            "out_of_range",
            format!("From 1 to {max}."),
        ))
    }
}

/// A JSON body that may be left out entirely (an empty body is `None`); a body that is sent is
/// held to the same rules as [`ApiJson`].
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let no_body = empty_length
            || (req.headers().get(header::CONTENT_LENGTH).is_none()
                && req.headers().get(header::TRANSFER_ENCODING).is_none());
        if no_body {
            return Ok(OptionalJson(None));
        }
        let ApiJson(value) = ApiJson::<T>::from_request(req, state).await?;
        Ok(OptionalJson(Some(value)))
    }
}

/// 413 `payload_too_large`: a body over [`MAX_BODY_BYTES`], sent or declared.
pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The body is larger than {MAX_BODY_BYTES} bytes."),
    )
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as JSON with `Content-Type: application/json`.",
        ),
        JsonRejection::JsonSyntaxError(err) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!(
                "The body is not valid JSON: {}",
                serde_detail(&err.body_text())
            ),
        ),
        JsonRejection::JsonDataError(err) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!(
                "The body does not have the expected shape: {}",
                serde_detail(&err.body_text())
            ),
        ),
        JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            payload_too_large()
        }
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            format!("The body could not be read: {}", other.body_text()),
        ),
    }
}

/// axum prefixes serde's message with its own sentence; keep serde's part, which names the field.
fn serde_detail(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, rest)| rest)
        .unwrap_or(text)
        .to_owned()
}

/// The caller, authenticated by `Authorization: Bearer <token>` or `Authorization: Token <token>`,
/// whatever its scopes. Routes use one of the scoped extractors below instead, which say what
/// the route needs; this one is for building your own.
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(Authenticated(p)) = parts.extensions.get::<Authenticated>() {
            return Ok(Authenticated(p.clone()));
        }
        let token = presented_token(parts).ok_or_else(ApiError::unauthenticated)?;
        match accounts::authenticate(app, token).await? {
            Some(principal) => {
                if principal.mfa_enrollment_required() {
                    let path = parts
                        .extensions
                        .get::<axum::extract::OriginalUri>()
                        .map_or_else(|| parts.uri.path(), |o| o.0.path());
                    if !accounts::mfa::api_allows_before_enrolment(&parts.method, path) {
                        return Err(mfa_enrollment_required());
                    }
                }
                parts.extensions.insert(Authenticated(principal.clone()));
                Ok(Authenticated(principal))
            }
            None => Err(ApiError::unauthenticated()),
        }
    }
}

/// 403 `mfa_enrollment_required`: the business requires a second factor this person lacks.
pub fn mfa_enrollment_required() -> ApiError {
    ApiError::forbidden(
        "mfa_enrollment_required",
        "This business requires two-factor sign-in: set it up first \
         (POST /api/v1/mfa/totp/setup, then POST /api/v1/mfa/totp/confirm).",
    )
}

/// The caller if the request presents a token (401 if it is not a live one); `None` when it
/// presents none: for routes that anyone may call and that act differently for a logged-in
/// person (accepting an invitation).
pub struct MaybeAuthenticated(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybeAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(MaybeAuthenticated(None));
        }
        let Authenticated(p) = Authenticated::from_request_parts(parts, app).await?;
        Ok(MaybeAuthenticated(Some(p)))
    }
}

impl Clone for Authenticated {
    fn clone(&self) -> Self {
        Authenticated(self.0.clone())
    }
}

/// 403 `insufficient_scope`: the token is valid but was not given what this route needs.
pub fn insufficient_scope(needed: &[Scope]) -> ApiError {
    let names: Vec<&str> = needed.iter().map(|s| s.as_str()).collect();
    ApiError::forbidden(
        "insufficient_scope",
        format!(
            "This token's scopes do not allow this; it needs {}.",
            names.join(" or ")
        ),
    )
    .with_extra(serde_json::json!({ "required_scopes": names }))
}

macro_rules! scoped_extractor {
    ($(#[$doc:meta])* $name:ident, [$($scope:expr),+], member: $member:expr) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl $name {
            pub const SCOPES: &'static [Scope] = &[$($scope),+];
        }

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                app: &AppState,
            ) -> Result<Self, Self::Rejection> {
                let Authenticated(p) = Authenticated::from_request_parts(parts, app).await?;
                if !Self::SCOPES.iter().any(|s| p.scopes.allows(*s)) {
                    return Err(insufficient_scope(Self::SCOPES));
                }
                if $member && p.member.is_none() {
                    return Err(insufficient_scope(Self::SCOPES));
                }
                Ok($name(p))
            }
        }
    };
}

scoped_extractor!(
    /// A member (person or bot) whose token has the `dashboard` scope: the dashboard's writes.
    Dashboard,
    [Scope::Dashboard],
    member: true
);
scoped_extractor!(
    /// A member whose token has `dashboard:read` (or `dashboard`): the dashboard's reads.
    DashboardRead,
    [Scope::DashboardRead],
    member: true
);
scoped_extractor!(
    /// A token with the `sdk` scope (an API key, a bot, or a dashboard session): the SDK's calls.
    Sdk,
    [Scope::Sdk],
    member: false
);
scoped_extractor!(
    /// Either an SDK caller or a dashboard reader: endpoints both sides use (entitlements).
    SdkOrDashboardRead,
    [Scope::Sdk, Scope::DashboardRead],
    member: false
);

/// An API key with the `sdk` scope, and nothing else: for routes only an SDK may call. A
/// session or a bot token, whatever its scopes, gets 403 `api_key_required`. Document such a
/// route with `security(("api_key" = []))`.
pub struct ApiKey(pub Principal);

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authenticated(p) = Authenticated::from_request_parts(parts, app).await?;
        if p.token_kind != "api_key" {
            return Err(ApiError::forbidden(
                "api_key_required",
                "Only an API key of the business may call this (POST /api/v1/api-keys).",
            ));
        }
        if !p.scopes.allows(Scope::Sdk) {
            return Err(insufficient_scope(&[Scope::Sdk]));
        }
        Ok(ApiKey(p))
    }
}

/// Guards a handler composes after extracting the caller.
impl Principal {
    /// The caller's membership, if its role is at least `min`; 403 `forbidden_role` otherwise.
    pub fn require_role(&self, min: Role) -> Result<&Membership, ApiError> {
        match &self.member {
            Some(m) if m.role.at_least(min) => Ok(m),
            Some(m) => Err(ApiError::forbidden(
                "forbidden_role",
                format!("This needs the {min} role or higher; you are {}.", m.role),
            )
            .with_extra(serde_json::json!({ "required_role": min, "role": m.role }))),
            None => Err(ApiError::forbidden(
                "forbidden_role",
                format!("This needs a member with the {min} role or higher."),
            )),
        }
    }

    /// The business's live subscription; 402 `no_active_subscription` otherwise.
    pub fn require_live_subscription(
        &self,
        now: Timestamp,
    ) -> Result<&CurrentSubscription, ApiError> {
        Ok(crate::metering::live_subscription(self, now)?)
    }
}

/// The `Idempotency-Key` header of a metered POST, if the client sent one; 400
/// `invalid_idempotency_key` when it is not 1–255 visible ASCII characters.
pub struct Idempotency(pub Option<IdempotencyKey>);

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(Idempotency(None));
        };
        value
            .to_str()
            .ok()
            .and_then(IdempotencyKey::parse)
            .map(|k| Idempotency(Some(k)))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 visible ASCII characters.",
                )
            })
    }
}

/// A stored or fresh metered response; replays carry `Idempotent-Replayed: true`.
impl IntoResponse for Stored {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.replayed {
            headers.insert(
                HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static("true"),
            );
        }
        response
    }
}

fn presented_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    let known_scheme =
        scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
    // Real tokens are short and URL-safe; anything else cannot match and is not worth hashing.
    (known_scheme && !token.is_empty() && token.len() <= 256).then_some(token)
}

/// Where a request came from, for session listings.
pub struct Client(pub ClientInfo);

/// A request's [`Origin`], unresolved, from its extensions (the peer) and headers.
pub fn origin(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    app: &AppState,
) -> Origin {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    Origin::new(peer, headers, app.clone())
}

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client(
            origin(&parts.extensions, &parts.headers, app).resolve(),
        ))
    }
}

/// The `{id}` of a route: a UUID, or 404 (an id that cannot exist is not there).
pub struct PathId(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found())?;
        raw.parse::<uuid::Uuid>()
            .map(PathId)
            .map_err(|_| ApiError::not_found())
    }
}
