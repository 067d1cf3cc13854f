//! The test suite as a check of the OpenAPI document: a layer around the real router (added by
//! [`crate::helpers::TestApp`]) records every exchange — route template, method, request body,
//! status, response body — and checks it against the document the server serves. An answer
//! whose status the operation does not document is a violation, and so is a body that does not
//! match its schema. Request bodies are checked only when the server accepted them (2xx): the
//! tests of refusals send invalid ones on purpose.
//!
//! [`TestApp`](crate::helpers::TestApp) fails the test at its next call (and when dropped) if
//! any exchange broke the document.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

/// What the layer saw of one request and its answer.
struct Exchange {
    method: Method,
    path: String,
    /// The route's template; `None` when no route matched (the 404 fallback).
    route: Option<String>,
    query: Option<String>,
    authorized: bool,
    request_type: Option<String>,
    request_body: Bytes,
    status: u16,
    response_type: Option<String>,
    response_body: Bytes,
}

/// The violations seen so far by one test app's layer.
pub type Violations = Arc<Mutex<Vec<String>>>;

/// Checks one exchange after the other against `contract`: wrap the router with
/// `router.layer(axum::middleware::from_fn(move |req, next| conformance::record(contract.clone(), violations.clone(), req, next)))`.
pub async fn record(
    contract: Arc<Contract>,
    violations: Violations,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let authorized = req.headers().contains_key(header::AUTHORIZATION);
    let request_type = content_type(req.headers());
    // A CORS preflight is the browser asking, answered by the CORS layer before any route:
    // not an operation of the API, so not the document's to describe.
    if method == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return next.run(req).await;
    }

    // The body the handler reads, copied on the way, so the handler sees the same stream
    // (and the same limits) as without the layer.
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (parts, body) = req.into_parts();
    let copy = seen.clone();
    let body = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref()
            && let Ok(mut copy) = copy.lock()
        {
            copy.extend_from_slice(data);
        }
        frame
    });
    let response = next.run(Request::from_parts(parts, Body::new(body))).await;

    let (parts, body) = response.into_parts();
    let response_body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let request_body = seen
        .lock()
        .map(|b| Bytes::copy_from_slice(&b))
        .unwrap_or_default();
    let exchange = Exchange {
        method,
        path,
        route,
        query,
        authorized,
        request_type,
        request_body,
        status: parts.status.as_u16(),
        response_type: content_type(&parts.headers),
        response_body: response_body.clone(),
    };
    let found = contract.check(&exchange);
    if !found.is_empty()
        && let Ok(mut all) = violations.lock()
    {
        all.extend(found);
    }
    Response::from_parts(parts, Body::from(response_body))
}

fn content_type(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

/// The document of what the binary serves (saaskit with the example), and a validator for
/// each schema in it, compiled on first use and shared by every test app serving it.
static SERVED: LazyLock<Arc<Contract>> =
    LazyLock::new(|| Arc::new(Contract::of(&crate::helpers::products())));

/// The contract of a router serving `products`.
pub fn contract(products: &Arc<saaskit::product::Products>) -> Arc<Contract> {
    if Arc::ptr_eq(products, &crate::helpers::products()) {
        SERVED.clone()
    } else {
        Arc::new(Contract::of(products))
    }
}

pub struct Contract {
    document: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Contract {
    fn of(products: &saaskit::product::Products) -> Contract {
        let document =
            serde_json::to_value(saaskit::http::openapi(products)).expect("the document is JSON");
        Contract {
            document,
            validators: Mutex::default(),
        }
    }

    fn check(&self, ex: &Exchange) -> Vec<String> {
        let mut out = Vec::new();
        let what = format!(
            "{} {} (route {}) answered {}",
            ex.method,
            ex.path,
            ex.route.as_deref().unwrap_or("none"),
            ex.status
        );
        let problem = json!({"$ref": "#/components/schemas/Problem"});
        // The pages (HTML, outside /api) are not API: the browser journeys check them.
        let documented = ex
            .route
            .as_deref()
            .is_some_and(|route| self.document["paths"].get(route).is_some());
        let is_page = !documented
            && !ex.path.starts_with("/api/")
            && ex
                .response_type
                .as_deref()
                .is_some_and(|t| t.starts_with("text/html"));
        if is_page {
            return out;
        }

        let operation = ex.route.as_deref().and_then(|route| {
            let item = &self.document["paths"][route];
            let method = match ex.method {
                // axum answers HEAD with the GET handler.
                Method::HEAD => "get".to_owned(),
                ref m => m.as_str().to_ascii_lowercase(),
            };
            item.get(&method).map(|op| (route, method, op))
        });
        let Some((route, method, operation)) = operation else {
            // No route, or no such method at this route: the fallbacks answer with a problem.
            let expected = if ex.route.is_some() { 405 } else { 404 };
            if ex.status != expected {
                out.push(format!(
                    "{what}: no documented operation, so {expected} was expected"
                ));
            }
            self.check_body(
                &mut out,
                &what,
                "problem",
                &problem,
                ex.response_type.as_deref(),
                Some("application/problem+json"),
                &ex.response_body,
            );
            return out;
        };

        let status = ex.status.to_string();
        let Some(response) = operation["responses"].get(&status) else {
            out.push(format!(
                "{what}: status {status} is not documented for {} {route}",
                method.to_uppercase()
            ));
            return out;
        };
        match response.get("content").and_then(Value::as_object) {
            Some(content) if !content.is_empty() && ex.method != Method::HEAD => {
                match ex
                    .response_type
                    .as_deref()
                    .and_then(|t| content.get(t).map(|c| (t, c)))
                {
                    Some((media, c)) => {
                        let key = format!("{route} {method} {status} {media}");
                        self.check_body(
                            &mut out,
                            &what,
                            &key,
                            &c["schema"],
                            Some(media),
                            Some(media),
                            &ex.response_body,
                        );
                        // What the server sends, the document must name: a member it does
                        // not describe is undocumented API, which clients cannot know of.
                        if let Ok(instance) = serde_json::from_slice::<Value>(&ex.response_body) {
                            let mut unknown = Vec::new();
                            self.undocumented(&instance, &c["schema"], "", &mut unknown);
                            if !unknown.is_empty() {
                                out.push(format!(
                                    "{what}: members the document does not describe: {}",
                                    unknown.join(", ")
                                ));
                            }
                        }
                    }
                    None => out.push(format!(
                        "{what}: content type {:?} is not documented (documented: {:?})",
                        ex.response_type,
                        content.keys().collect::<Vec<_>>()
                    )),
                }
            }
            _ => {
                if !ex.response_body.is_empty() {
                    out.push(format!(
                        "{what}: documented without a body, but sent {}",
                        String::from_utf8_lossy(&ex.response_body)
                    ));
                }
            }
        }

        if !(200..300).contains(&ex.status) {
            return out;
        }
        // The request was accepted: it must be one the document describes.
        // An empty requirement (`{}`) among the alternatives makes the credential optional.
        let secured = operation
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                !s.is_empty()
                    && !s
                        .iter()
                        .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
        if secured && !ex.authorized {
            out.push(format!(
                "{what}: succeeded without a credential, but the document asks for one"
            ));
        }
        match operation.get("requestBody") {
            Some(body) if !ex.request_body.is_empty() => {
                match ex
                    .request_type
                    .as_deref()
                    .and_then(|t| body["content"].get(t).map(|c| (t, c)))
                {
                    Some((media, c)) => {
                        let key = format!("{route} {method} request {media}");
                        self.check_body(
                            &mut out,
                            &format!("{what}, request body"),
                            &key,
                            &c["schema"],
                            Some(media),
                            Some(media),
                            &ex.request_body,
                        );
                    }
                    None => out.push(format!(
                        "{what}: request content type {:?} is not documented",
                        ex.request_type
                    )),
                }
            }
            Some(body) if body["required"] == true => out.push(format!(
                "{what}: succeeded without the request body the document requires"
            )),
            Some(_) => {}
            None if !ex.request_body.is_empty() => out.push(format!(
                "{what}: succeeded with a request body, but the document describes none"
            )),
            None => {}
        }
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let in_query = |p: &&Value| p["in"] == "query";
        let sent: Vec<String> = ex
            .query
            .as_deref()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split('=').next().unwrap_or_default().to_owned())
            .collect();
        for name in &sent {
            if !parameters
                .iter()
                .filter(in_query)
                .any(|p| p["name"] == **name)
            {
                out.push(format!(
                    "{what}: query parameter {name:?} is not documented"
                ));
            }
        }
        for p in parameters.iter().filter(in_query) {
            let name = p["name"].as_str().unwrap_or_default();
            if p["required"] == true && !sent.iter().any(|s| s == name) {
                out.push(format!(
                    "{what}: succeeded without the required query parameter {name:?}"
                ));
            }
        }
        out
    }

    /// Checks that a body has the expected media type and, for JSON, matches `schema`.
    #[allow(clippy::too_many_arguments)]
    fn check_body(
        &self,
        out: &mut Vec<String>,
        what: &str,
        key: &str,
        schema: &Value,
        got_type: Option<&str>,
        want_type: Option<&str>,
        body: &[u8],
    ) {
        if got_type != want_type {
            out.push(format!(
                "{what}: content type {got_type:?}, expected {want_type:?}"
            ));
            return;
        }
        let Some(media) = want_type.filter(|t| t.ends_with("json")) else {
            return;
        };
        let instance: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                out.push(format!("{what}: {media} body is not JSON ({e})"));
                return;
            }
        };
        let validator = self.validator(key, schema);
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
            .collect();
        if !errors.is_empty() {
            out.push(format!(
                "{what}: body does not match the document:\n    {}\n  body: {instance}",
                errors.join("\n    ")
            ));
        }
    }

    /// The schema a `$ref` names, or the schema itself.
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(pointer) => self
                .document
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
            None => schema,
        }
    }

    /// Collects the members of `instance` that `schema` does not describe (objects without
    /// `additionalProperties` are closed for this purpose), at any depth.
    fn undocumented(&self, instance: &Value, schema: &Value, at: &str, out: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if let Some(branches) = schema.get("oneOf").or_else(|| schema.get("anyOf")) {
            // `T or null`, or one of several shapes (a login's session or its second step): a
            // value is described if one branch describes all its members. Otherwise the branch
            // that leaves the fewest undescribed is the one meant, and those are reported.
            if instance.is_null() {
                return;
            }
            let mut fewest: Option<Vec<String>> = None;
            for branch in branches.as_array().into_iter().flatten() {
                if self.resolve(branch)["type"] == "null" {
                    continue;
                }
                let mut missing = Vec::new();
                self.undocumented(instance, branch, at, &mut missing);
                if fewest.as_ref().is_none_or(|f| missing.len() < f.len()) {
                    fewest = Some(missing);
                }
            }
            out.extend(fewest.unwrap_or_default());
            return;
        }
        match instance {
            Value::Object(members) => {
                // `allOf` (a flattened struct) describes the union of its parts' members.
                let mut parts = vec![schema];
                parts.extend(
                    schema["allOf"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| self.resolve(p)),
                );
                let mut properties = serde_json::Map::new();
                let mut open = None;
                for part in parts {
                    if let Some(p) = part["properties"].as_object() {
                        properties.extend(p.clone());
                    }
                    match part.get("additionalProperties") {
                        Some(Value::Bool(false)) | None => {}
                        Some(extra) => open = Some(extra.clone()),
                    }
                }
                for (name, value) in members {
                    let here = format!("{at}/{name}");
                    match (properties.get(name), &open) {
                        (Some(property), _) => self.undocumented(value, property, &here, out),
                        (None, Some(Value::Bool(true))) => {}
                        (None, Some(extra)) => self.undocumented(value, extra, &here, out),
                        // A free-form object (`Object`) describes no members and allows any.
                        (None, None) if properties.is_empty() => {}
                        (None, None) => out.push(here),
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.undocumented(item, &schema["items"], &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    fn validator(&self, key: &str, schema: &Value) -> Arc<jsonschema::Validator> {
        let mut cache = self.validators.lock().expect("validator cache");
        cache
            .entry(key.to_owned())
            .or_insert_with(|| {
                // The schema with the document's components beside it, so that its
                // `#/components/schemas/…` references resolve.
                let root = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "allOf": [schema],
                    "components": self.document["components"],
                });
                let validator = jsonschema::draft202012::options()
                    .should_validate_formats(true)
                    .build(&root)
                    .unwrap_or_else(|e| panic!("the schema of {key} does not compile: {e}"));
                Arc::new(validator)
            })
            .clone()
    }
}

/// The checker itself: it must catch what it is for, or a green suite proves nothing.
mod checks {
    use super::*;

    fn exchange(method: Method, route: &str, status: u16, body: Value) -> Exchange {
        Exchange {
            method,
            path: route.to_owned(),
            route: Some(route.to_owned()),
            query: None,
            authorized: true,
            request_type: None,
            request_body: Bytes::new(),
            status,
            response_type: Some("application/json".to_owned()),
            response_body: Bytes::from(body.to_string()),
        }
    }

    fn me() -> Value {
        json!({
            "user": {"id": "0197a6a4-7d8e-7000-8000-000000000001", "email": "a@example.com",
                     "first_name": "Ada", "last_name": "Lovelace", "is_staff": false,
                     "email_verified": false, "created_at": "2026-03-01T12:00:00Z"},
            "business": {"id": "0197a6a4-7d8e-7000-8000-000000000002", "name": "Analytical",
                         "created_at": "2026-03-01T12:00:00Z", "require_mfa": false},
            "mfa_enabled": false,
            "mfa_enrollment_required": false,
            "role": "owner",
            "member_id": "0197a6a4-7d8e-7000-8000-000000000003",
            "scopes": ["dashboard", "sdk"],
            "subscription": null,
        })
    }

    #[test]
    fn a_conforming_exchange_passes() {
        let found = SERVED.check(&exchange(Method::GET, "/api/v1/me", 200, me()));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn an_undocumented_status_is_a_violation() {
        let found = SERVED.check(&exchange(Method::GET, "/api/v1/me", 418, json!({})));
        assert!(found[0].contains("not documented"), "{found:?}");
    }

    #[test]
    fn a_body_that_breaks_its_schema_is_a_violation() {
        let mut body = me();
        body["role"] = json!("emperor");
        body["member_id"] = json!("not a uuid");
        let found = SERVED.check(&exchange(Method::GET, "/api/v1/me", 200, body));
        assert!(
            found[0].contains("/role") && found[0].contains("/member_id"),
            "{found:?}"
        );
    }

    #[test]
    fn an_undocumented_member_is_a_violation() {
        let mut body = me();
        body["user"]["password_hash"] = json!("$argon2id$…");
        let found = SERVED.check(&exchange(Method::GET, "/api/v1/me", 200, body));
        assert!(found[0].contains("/user/password_hash"), "{found:?}");
    }

    #[test]
    fn an_accepted_request_is_checked_and_a_refused_one_is_not() {
        let mut accepted = exchange(Method::POST, "/api/v1/login", 200, json!({}));
        accepted.request_type = Some("application/json".to_owned());
        accepted.request_body = Bytes::from(json!({"email": 42}).to_string());
        let found = SERVED.check(&accepted);
        assert!(
            found.iter().any(|v| v.contains("request body")),
            "{found:?}"
        );

        let mut refused = accepted;
        refused.status = 422;
        refused.response_type = Some("application/problem+json".to_owned());
        refused.response_body = Bytes::from(
            json!({"type": "urn:saaskit:problem:invalid_body", "title": "Unprocessable Entity",
                   "status": 422, "code": "invalid_body", "detail": "…"})
            .to_string(),
        );
        let found = SERVED.check(&refused);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn an_error_must_be_a_problem_document() {
        let mut ex = exchange(Method::GET, "/api/v1/me", 401, json!({"error": "no"}));
        ex.authorized = false;
        let found = SERVED.check(&ex);
        assert!(found[0].contains("content type"), "{found:?}");
    }
}
