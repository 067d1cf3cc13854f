//! The one error type of the API. Every error leaves as `application/problem+json` (RFC 9457)
//! with a stable machine-readable `code`; internal causes are logged with the request and
//! never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One problem with one field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field as the client sent it (`business.name` for a nested one).
    pub field: String,
    /// Stable and machine-readable: `required`, `invalid_email`, `email_confusable` (an address
    /// mixing look-alike scripts), `invalid_characters`, `too_long`, `out_of_range`…
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    /// Members added to the problem document beside the standard ones (a quota refusal's
    /// meter, limit and reset time…).
    pub extra: Box<serde_json::Map<String, serde_json::Value>>,
    /// The cause of an unexpected failure: logged, never sent.
    pub source: Option<anyhow::Error>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            extra: Box::default(),
            source: None,
        }
    }

    /// Adds members to the problem document; `value` must serialize to a JSON object.
    pub fn with_extra(mut self, value: impl Serialize) -> Self {
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(value) {
            self.extra.extend(map);
        }
        self
    }

    /// 422: the body was well-formed but some fields are not acceptable.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut err = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Some fields are missing or invalid; see `errors`.",
        );
        err.errors = errors;
        err
    }

    /// 401: no credential, or one that is unknown, expired or revoked.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "A valid access token is required (Authorization: Bearer <token>).",
        )
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is nothing at this address.",
        )
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 503: a dependency (the database) is not answering; the request may be retried.
    pub fn unavailable(source: anyhow::Error) -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "The service is temporarily unable to answer; retry shortly.",
        );
        err.retry_after = Some(1);
        err.source = Some(source);
        err
    }

    /// 500: a bug or an unexpected failure. The cause is logged, the client sees no detail.
    pub fn internal(source: anyhow::Error) -> Self {
        let mut err = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side. It has been logged.",
        );
        err.source = Some(source);
        err
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                ApiError::unavailable(anyhow::Error::new(err).context("database unavailable"))
            }
            other => ApiError::internal(anyhow::Error::new(other).context("database error")),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        // A database that stopped answering is a 503 whichever layer it surfaced through.
        if let Some(sqlx_err) = err.downcast_ref::<sqlx::Error>()
            && matches!(
                sqlx_err,
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            )
        {
            return ApiError::unavailable(err);
        }
        ApiError::internal(err)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            tracing::error!(code = self.code, status = self.status.as_u16(), error = ?source, "request failed");
        }
        let body = Problem {
            kind: format!("urn:saaskit:problem:{}", self.code),
            title: self.title(),
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.detail,
            errors: &self.errors,
            extra: &self.extra,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.status, bytes).into_response();
        response.extensions_mut().insert(ProblemCode(self.code));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The schema of the problem document, named `Problem` in the OpenAPI document, where every
/// error response refers to it. The members beside the standard ones are those the API adds to
/// some problems; any other may appear, so clients must ignore what they do not know.
impl utoipa::PartialSchema for ApiError {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        use utoipa::openapi::{Ref, RefOr};
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        let integer = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some(description))
        };
        let texts = |description: &str| {
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(description))
        };
        let nullable = |of: Type, description: &str| {
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    of,
                    Type::Null,
                ]))
                .description(Some(description))
        };
        ObjectBuilder::new()
            .description(Some(
                "An error, as `application/problem+json` (RFC 9457). `code` is stable and \
                 machine-readable; `detail` is for people.",
            ))
            .property(
                "type",
                text("`urn:saaskit:problem:<code>`.").pattern(Some("^urn:saaskit:problem:[a-z_]+$")),
            )
            .required("type")
            .property("title", text("The status's reason phrase."))
            .required("title")
            .property(
                "status",
                integer("The HTTP status, repeated.").minimum(Some(400)).maximum(Some(599)),
            )
            .required("status")
            .property(
                "code",
                text("What went wrong, e.g. `validation_failed`, `unauthenticated`, `quota_exceeded`.")
                    .pattern(Some("^[a-z_]+$")),
            )
            .required("code")
            .property("detail", text("What went wrong and what to do, for people."))
            .required("detail")
            .property(
                "errors",
                ArrayBuilder::new()
                    .items(RefOr::Ref(Ref::from_schema_name("FieldError")))
                    .description(Some("`validation_failed`: every field's problem at once.")),
            )
            .property("required_scopes", texts("`insufficient_scope`: the scopes that would do."))
            .property("required_role", text("`forbidden_role`: the least role that would do."))
            .property("role", text("`forbidden_role`: the caller's role."))
            .property(
                "subscription_status",
                nullable(Type::String, "`no_active_subscription`: the subscription's status, null without one."),
            )
            .property("meter", text("`quota_exceeded`: the meter whose limit is reached."))
            .property("kind", text("`quota_exceeded`: `per_cycle` or `gauge`."))
            .property("limit", integer("`quota_exceeded`: the plan's limit."))
            .property("used", integer("`quota_exceeded`: what is used."))
            .property("requested", integer("`quota_exceeded`: what the request asked for."))
            .property(
                "resets_at",
                nullable(Type::String, "`quota_exceeded`: when a per-cycle meter starts again at zero.")
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::DateTime,
                    ))),
            )
            .property("plan", text("`quota_exceeded`: the current plan's code."))
            .property("upgrade_plans", texts("`quota_exceeded`: public plans that allow more."))
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for ApiError {
    fn name() -> std::borrow::Cow<'static, str> {
        "Problem".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            <FieldError as utoipa::ToSchema>::name().into_owned(),
            <FieldError as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// The `code` of a problem response, left in its extensions for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ProblemCode(pub &'static str);

impl From<crate::metering::QuotaError> for ApiError {
    fn from(err: crate::metering::QuotaError) -> Self {
        use crate::metering::QuotaError;
        match err {
            QuotaError::NoActiveSubscription { status } => Self::new(
                StatusCode::PAYMENT_REQUIRED,
                "no_active_subscription",
                match &status {
                    Some(status) => format!(
                        "The business's subscription is {status}; choose a plan to go on \
                         (GET /api/v1/plans, POST /api/v1/subscription/change)."
                    ),
                    None => "The business has no subscription; choose a plan to go on.".to_owned(),
                },
            )
            .with_extra(serde_json::json!({ "subscription_status": status })),
            QuotaError::Exceeded(ex) => {
                let when = match ex.resets_at {
                    Some(at) => format!(" It resets at {}.", at.to_rfc3339()),
                    None => " It frees up when one is deleted.".to_owned(),
                };
                let upgrade = if ex.upgrade_plans.is_empty() {
                    String::new()
                } else {
                    format!(" Plans that allow more: {}.", ex.upgrade_plans.join(", "))
                };
                Self::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "quota_exceeded",
                    format!(
                        "The {} plan allows {} {}; {} are used and {} more were asked for.{when}{upgrade}",
                        ex.plan, ex.limit, ex.meter, ex.used, ex.requested
                    ),
                )
                .with_extra(&*ex)
            }
            QuotaError::Unexpected(err) => err.into(),
        }
    }
}

impl From<crate::metering::idempotency::KeyReused> for ApiError {
    fn from(_: crate::metering::idempotency::KeyReused) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different request; use a new key.",
        )
    }
}

impl From<crate::ratelimit::Limited> for ApiError {
    fn from(limited: crate::ratelimit::Limited) -> Self {
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "Too many attempts; try again in {} seconds.",
                limited.retry_after
            ),
        )
        .with_extra(serde_json::json!({ "retry_after": limited.retry_after }));
        err.retry_after = Some(limited.retry_after);
        err
    }
}

/// The general answer to a refused metered write; a handler that knows which field named the
/// missing row says so itself (see `create_recording`).
impl From<crate::metering::MeteredError> for ApiError {
    fn from(err: crate::metering::MeteredError) -> Self {
        use crate::metering::MeteredError;
        match err {
            MeteredError::Missing => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Something this request refers to does not exist in the business.",
            ),
            MeteredError::Quota(e) => e.into(),
            MeteredError::KeyReused => crate::metering::idempotency::KeyReused.into(),
            MeteredError::Unexpected(e) => e.into(),
        }
    }
}
