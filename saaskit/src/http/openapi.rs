//! The OpenAPI 3.1 document: generated from the handlers' `#[utoipa::path]` attributes and the
//! `ToSchema` derives of their request and response types, served at `/api/v1/openapi.json`,
//! with interactive documentation at `/docs`.
//!
//! What operations share is added here once, from each operation's shape, so no handler can
//! forget it: every error response is the `Problem` document of `error.rs`; every operation
//! answers 413 to a request that declares a body over 1 MiB; an operation that reads a JSON
//! body also answers 400, 415 and 422; one that needs a credential, 401 (and 403 when it needs
//! a scope); one that reads the database, 503 while it does not answer.
//! Handlers document only the errors of their own.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, ToSchema};

use crate::app::AppState;
use crate::error::ApiError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The parts of the document no handler owns: its description, the problem schema, the
/// security schemes and the tags.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "saaskit",
        description = "Accounts, businesses, plans, subscriptions, quotas and API keys.\n\n\
                       Every error is `application/problem+json` (RFC 9457) with a stable `code`. \
                       Credentials go in `Authorization: Bearer <token>` (`Token <token>` works \
                       too): a session (`sks_…`), an API key (`sk_live_…`) or a bot token \
                       (`skb_…`); each carries scopes, and each operation says which kinds it \
                       accepts. Metered writes accept an `Idempotency-Key`.",
    ),
    components(schemas(ApiError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "accounts", description = "Signup, login, sessions and passwords."),
        (name = "passkeys", description = "Passkeys (WebAuthn): register, list, rename and remove a person's; signing in with one is under accounts."),
        (name = "mfa", description = "Two-factor sign-in: an authenticator app (TOTP) and recovery codes."),
        (name = "business", description = "The business the caller acts for, and its rules."),
        (name = "billing", description = "The plan catalog and the business's subscription."),
        (name = "payments", description = "Money in through Stripe: the card on file, top-ups, the payment history, and Stripe's events. Answers 409 `payments_not_configured` where no provider is set."),
        (name = "invitations", description = "Inviting people into a business."),
        (name = "members", description = "The people and bots of a business."),
        (name = "api-keys", description = "API keys (`sk_live_…`, scope `sdk`) and leaked secrets."),
        (name = "bots", description = "Bot members and their tokens (`skb_…`)."),
        (name = "usage", description = "Metering: what was used and what may still be."),
        (name = "audit", description = "The tamper-evident log of security, team and billing events."),
        (name = "webhooks", description = "Signed events sent to the business's own systems (Standard Webhooks), with their deliveries and retries."),
        (name = "admin", description = "Staff only: plans, credits, businesses and users."),
        (name = "compat", description = "The original boilerplate's routes under `/saas`, kept for its clients."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    ),
)]
struct ApiDoc;

/// The document's base: everything but the paths, which the route tables add.
pub fn base() -> OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let bearer = |format: &str, description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.bearer_format = Some(format.to_owned());
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            bearer(
                "sks_…",
                "A session token, from signup, login, an accepted invitation or a password \
                 reset. Scopes `dashboard` (and so `dashboard:read`) and `sdk`.",
            ),
        );
        components.add_security_scheme(
            "api_key",
            bearer(
                "sk_live_…",
                "An API key of a business (`POST /api/v1/api-keys`). Scope `sdk`.",
            ),
        );
        components.add_security_scheme(
            "bot_token",
            bearer(
                "skb_…",
                "A bot member's token (`POST /api/v1/bots`), with the scopes it was given.",
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            bearer(
                "the deployment's SAASKIT_METRICS_TOKEN",
                "Only for `GET /metrics`.",
            ),
        );
    }
}

/// The `Idempotency-Key` header of metered writes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Only its schema: the `Idempotency` extractor reads the header.
pub struct IdempotencyKeyHeader {
    /// 1 to 255 visible ASCII characters. A retry with the same key and the same request gets
    /// the first answer back (with `Idempotent-Replayed: true`) instead of doing it twice;
    /// keys are kept for 24 hours.
    #[param(rename = "Idempotency-Key", pattern = "^[!-~]{1,255}$")]
    idempotency_key: Option<String>,
}

/// Adds what every operation of its shape answers, and the problem document to every error.
pub fn finish(openapi: &mut OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            absent_not_null(operation);
            add_shared_errors(operation);
        }
    }
}

/// An optional body is left out, never sent as `null`: utoipa documents an `Option<T>` body as
/// `T or null`, which would tell clients (and fuzzers) that `null` is a body.
fn absent_not_null(operation: &mut Operation) {
    let Some(body) = operation.request_body.as_mut() else {
        return;
    };
    if body.required == Some(utoipa::openapi::Required::True) {
        return;
    }
    for content in body.content.values_mut() {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
            let not_null: Vec<_> = one_of
                .items
                .iter()
                .filter(|item| !matches!(item, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null)))
                .cloned()
                .collect();
            if let [only] = not_null.as_slice() {
                content.schema = Some(only.clone());
            }
        }
    }
}

/// Operations that answer without the database, so never with `service_unavailable` (`/readyz`
/// says 503 with its own report).
const WITHOUT_DATABASE: &[&str] = &[
    "get_health",
    "get_api_health",
    "get_readiness",
    "get_metrics",
    "get_openapi",
    "get_docs",
];

fn add_shared_errors(operation: &mut Operation) {
    let mut shared: Vec<(&str, &str)> = Vec::new();
    if operation.request_body.is_some() {
        shared.extend([
            ("400", "`malformed_json`: the body is not valid JSON."),
            ("413", "`payload_too_large`: the body is over 1 MiB."),
            (
                "415",
                "`unsupported_media_type`: the body is not `application/json`.",
            ),
            (
                "422",
                "`validation_failed` (see `errors`) or `invalid_body` (wrong shape).",
            ),
        ]);
    } else {
        // Refused before any handler runs (`request_path` in http/mod.rs), though the
        // operation reads no body.
        shared.push((
            "413",
            "`payload_too_large`: the request declares a body over 1 MiB.",
        ));
    }
    // The schemes an operation accepts; a requirement's map is private, its JSON is not.
    let schemes: Vec<String> = operation
        .security
        .iter()
        .flatten()
        .flat_map(|requirement| {
            serde_json::to_value(requirement)
                .ok()
                .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
                .unwrap_or_default()
        })
        .collect();
    if !schemes.is_empty() {
        shared.push((
            "401",
            "`unauthenticated`: no credential, or one that is unknown, expired or revoked.",
        ));
    }
    let touches_database = !operation
        .operation_id
        .as_deref()
        .is_some_and(|id| WITHOUT_DATABASE.contains(&id));
    if touches_database {
        shared.push((
            "503",
            "`service_unavailable`: the database is not answering; retry after `Retry-After` \
             seconds.",
        ));
    }
    if schemes.iter().any(|s| s != "metrics_token") {
        shared.push((
            "403",
            "`insufficient_scope`: the token's scopes do not allow this; or the caller's role \
             does not (`forbidden_role`, `forbidden`, `staff_only`).",
        ));
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in shared {
        if !responses.contains_key(status) {
            responses.insert(
                status.to_owned(),
                RefOr::T(ResponseBuilder::new().description(description).build()),
            );
        }
    }
    for (status, response) in responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let RefOr::T(response) = response
            && is_error
            && response.content.is_empty()
        {
            response.content.insert(
                PROBLEM_JSON.to_owned(),
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ApiError::name())))
                    .build(),
            );
        }
    }
}

/// `GET /api/v1/openapi.json`
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This document",
    description = "The OpenAPI 3.1 document of this API, generated from its code.",
    responses((status = 200, description = "The document.", body = Object)),
)]
pub async fn get_openapi(State(app): State<AppState>) -> Response {
    // Serialized once, on first request, from the products the router was built with, so it
    // describes exactly the routes served (a product's own included). A document built from
    // static attributes always serializes; an empty object would be caught by the tests.
    let document = app.openapi_document.get_or_init(|| {
        Bytes::from(
            super::openapi(&app.products)
                .to_json()
                .unwrap_or_else(|_| "{}".to_owned()),
        )
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.clone(),
    )
        .into_response()
}

/// Scalar's API reference, loaded by the reader's browser from a CDN: the server ships no
/// JavaScript of its own, and the page reads the live document.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>saaskit API</title>
  </head>
  <body>
    <script id="api-reference" data-url="/api/v1/openapi.json"></script>
    <script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference"></script>
  </body>
</html>
"#;

/// `GET /docs`
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    summary = "Interactive documentation",
    description = "An HTML page that renders this document (Scalar, loaded from a CDN).",
    responses((status = 200, description = "The page.", body = String, content_type = "text/html")),
)]
pub async fn get_docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

/// Text fields as the server reads them, each a named schema in the document, so that the
/// rule is written once (in `domain`) and described once (here). Each pattern is derived from
/// the rule the server applies ([`crate::domain::text_pattern`]); lengths count characters
/// as sent (the server trims what it stores, and a required one must keep a character).
macro_rules! text_schemas {
    ($($(#[doc = $doc:literal])* $ty:ident = $name:literal, $min:expr, $max:expr, $pattern:path;)*) => {$(
        $(#[doc = $doc])*
        pub struct $ty;

        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                let description = [$($doc.trim()),*].join(" ");
                let min: usize = $min;
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length((min > 0).then_some(min))
                    .max_length(Some($max))
                    .pattern(Some($pattern()))
                    .description(Some(description))
                    .into()
            }
        }

        impl ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
        }
    )*};
}

text_schemas! {
    /// A first name: 1 to 150 characters, not blank, without control or invisible formatting
    /// characters.
    FirstName = "FirstName", 1, 150, crate::domain::non_blank_text_pattern;
    /// A person's name (a last name): up to 150 characters, possibly empty, without control
    /// or invisible formatting characters.
    PersonNameText = "PersonName", 0, 150, crate::domain::text_pattern;
    /// A business's name: 1 to 200 characters, not blank, without control or invisible
    /// formatting characters.
    BusinessNameText = "BusinessName", 1, 200, crate::domain::non_blank_text_pattern;
    /// The name of an API key or a bot: 1 to 100 characters, not blank, without control or
    /// invisible formatting characters.
    KeyName = "KeyName", 1, 100, crate::domain::non_blank_text_pattern;
    /// A plan's name: 1 to 500 characters, not blank, without control or invisible formatting
    /// characters.
    PlanName = "PlanName", 1, 500, crate::domain::non_blank_text_pattern;
    /// Free text (a plan's description, a note): up to 500 characters, without control or
    /// invisible formatting characters.
    Note = "Note", 0, 500, crate::domain::text_pattern;
}

/// An email address as the server takes it ([`crate::domain::Email`]); the schema's
/// description says what.
pub struct EmailAddress;

impl utoipa::PartialSchema for EmailAddress {
    fn schema() -> RefOr<Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::Custom(
                "idn-email".into(),
            )))
            .max_length(Some(254))
            // What the server asks beyond the format: no quoted local part, a domain of at
            // least two labels, and a last label that is not all digits.
            .pattern(Some(
                r#"^[^\s"(),:;<>\[\\\]@]+@(?:[^\s@.]+\.)+[^\s@.]*[^\s@.0-9][^\s@.]*$"#,
            ))
            .description(Some(
                "An email address: internationalised addresses are welcome (`idn-email`), up to \
                 254 characters, with a domain of at least two labels, the last not all digits, \
                 and no quoted local part. One that mixes look-alike alphabets within one part \
                 is refused (`email_confusable`).",
            ))
            .into()
    }
}

impl ToSchema for EmailAddress {}
