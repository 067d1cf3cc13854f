//! Extractors every route uses: JSON bodies whose every rejection is a problem document, the
//! authenticated caller, and where the request came from.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::accounts::{self, ClientInfo, Principal};
use crate::app::AppState;
use crate::error::ApiError;

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
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
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
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The body is larger than {MAX_BODY_BYTES} bytes."),
            )
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

/// The caller, authenticated by `Authorization: Bearer <token>` or `Authorization: Token <token>`.
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = presented_token(parts).ok_or_else(ApiError::unauthenticated)?;
        match accounts::authenticate(app, token).await? {
            Some(principal) => Ok(Authenticated(principal)),
            None => Err(ApiError::unauthenticated()),
        }
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

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        Ok(Client(ClientInfo { user_agent, ip }))
    }
}
