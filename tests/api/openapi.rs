//! The OpenAPI document: served as OpenAPI 3.1, rendered at `/docs`, and describing every route
//! the server answers — each path and method — and nothing else. (That every exchange of the
//! suite matches it is checked by `conformance`, for every test.)

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::db_test;
use crate::helpers::*;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// A template with every `{placeholder}` replaced by a value no fixture has.
fn dummy_path(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "00000000-0000-0000-0000-000000000000"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn served_document(app: &TestApp) -> Value {
    let res = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    res.json().await.expect("the document is JSON")
}

/// Every (method, path template) the document describes.
fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if METHODS.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                found.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    found
}

/// Every (method, path template) the server routes: a request that is not answered 405.
async fn routed(app: &TestApp) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for template in saaskit::http::all_paths(&crate::helpers::products()) {
        let path = dummy_path(&template);
        for name in METHODS {
            let method = Method::from_bytes(name.as_bytes()).expect("a method");
            let (status, _) = app.call(method, &path, None, None).await;
            if status != StatusCode::METHOD_NOT_ALLOWED {
                found.insert((name.to_owned(), template.clone()));
            }
        }
    }
    found
}

fn listing(set: Vec<&(String, String)>) -> String {
    set.iter()
        .map(|(m, p)| format!("  {m} {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_document_describes_every_route_and_nothing_else() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let document = served_document(&app).await;
    let documented = documented(&document);
    let routed = routed(&app).await;

    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes the server answers that the OpenAPI document does not describe; give each \
         handler a #[utoipa::path] and serve it through a route table:\n{}",
        listing(undocumented)
    );
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        unrouted.is_empty(),
        "operations in the OpenAPI document that the server does not answer:\n{}",
        listing(unrouted)
    );

    let paths: BTreeSet<String> = saaskit::http::all_paths(&crate::helpers::products())
        .into_iter()
        .collect();
    let documented_paths: BTreeSet<String> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        paths, documented_paths,
        "all_paths() and the document differ"
    );
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_the_one_generated_from_the_code() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let document = served_document(&app).await;
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "saaskit");
    let generated =
        serde_json::to_value(saaskit::http::openapi(&crate::helpers::products())).expect("JSON");
    assert_eq!(
        document, generated,
        "the served document is not the generated one"
    );

    for scheme in ["session", "api_key", "bot_token", "metrics_token"] {
        let scheme = &document["components"]["securitySchemes"][scheme];
        assert_eq!(scheme["type"], "http", "{scheme}");
        assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    }
    let problem = &document["components"]["schemas"]["Problem"];
    for member in ["type", "title", "status", "code", "detail"] {
        assert!(
            problem["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|m| m == member)),
            "Problem requires {member}"
        );
    }
}

/// The whole document, so that every change to the API's surface shows in review as a diff of
/// `tests/api/snapshots/api__openapi__document.snap` (accept one with `cargo insta review`, or
/// `INSTA_UPDATE=always cargo test --test api openapi`).
#[test]
fn document() {
    let document =
        serde_json::to_value(saaskit::http::openapi(&crate::helpers::products())).expect("JSON");
    insta::assert_json_snapshot!(document);
}

#[tokio::test]
async fn every_operation_documents_its_parameters_and_problem_errors() {
    let document =
        serde_json::to_value(saaskit::http::openapi(&crate::helpers::products())).expect("JSON");
    let mut operation_ids = BTreeSet::new();
    let mut failures = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let what = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            if id.is_empty() || !operation_ids.insert(id.clone()) {
                failures.push(format!("{what}: operationId {id:?} is missing or repeated"));
            }
            let parameters = op["parameters"].as_array().cloned().unwrap_or_default();
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                    && !parameters
                        .iter()
                        .any(|p| p["in"] == "path" && p["name"] == name)
                {
                    failures.push(format!("{what}: path parameter {name} is not documented"));
                }
            }
            let responses = op["responses"].as_object().expect("responses");
            if !responses.keys().any(|s| s.starts_with('2')) {
                failures.push(format!("{what}: no success response"));
            }
            for (status, response) in responses {
                let problem = &response["content"]["application/problem+json"]["schema"]["$ref"];
                // `/readyz` answers 503 with its own report, not a problem.
                if status.starts_with('4') && problem != "#/components/schemas/Problem" {
                    failures.push(format!("{what}: {status} is not a problem document"));
                }
            }
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured && !responses.contains_key("401") {
                failures.push(format!("{what}: needs a credential but documents no 401"));
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    if !responses.contains_key(status) {
                        failures.push(format!("{what}: takes a body but documents no {status}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn docs_is_an_html_page_that_reads_the_document() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let res = app.client.get(app.url("/docs")).send().await.expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = res.text().await.expect("text");
    assert!(page.contains("<html"), "{page}");
    assert!(page.contains("/api/v1/openapi.json"), "{page}");
}

/// Every list answers `{"data": [...], "next_cursor": ...}`: no bare array, no other key for the
/// items, `next_cursor` always present. The original boilerplate's `/saas/*` routes keep their
/// shapes.
#[test]
fn every_list_has_one_shape() {
    let document =
        serde_json::to_value(saaskit::http::openapi(&crate::helpers::products())).expect("JSON");
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap_or_default();
                document["components"]["schemas"][name].clone()
            }
            None => schema.clone(),
        }
    };
    let mut lists = 0;
    let mut wrong = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        if path.starts_with("/saas/") {
            continue;
        }
        for (method, op) in item.as_object().expect("path item") {
            let Some(schema) = op["responses"]["200"]["content"]["application/json"].get("schema")
            else {
                continue;
            };
            let schema = resolve(schema);
            if schema["type"] == "array" {
                wrong.push(format!("{method} {path}: a bare array"));
                continue;
            }
            let Some(properties) = schema["properties"].as_object() else {
                continue;
            };
            let arrays: Vec<&String> = properties
                .iter()
                .filter(|(_, p)| resolve(p)["type"] == "array")
                .map(|(name, _)| name)
                .collect();
            let is_list = arrays.iter().any(|n| n.as_str() == "data")
                || (method == "get" && properties.len() == 1 && arrays.len() == 1);
            if !is_list {
                continue;
            }
            lists += 1;
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !properties.contains_key("data") {
                wrong.push(format!(
                    "{method} {path}: items not under `data` ({arrays:?})"
                ));
            } else if !(required.contains(&"data") && required.contains(&"next_cursor")) {
                wrong.push(format!(
                    "{method} {path}: `data` and `next_cursor` not both required"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "lists of another shape:\n{}",
        wrong.join("\n")
    );
    assert!(lists >= 10, "only {lists} lists found: is the walk right?");
}

db_test! {
    /// The document's rules for names and addresses are the server's: for each value below,
    /// the server accepts it exactly when the document's schema for the field does (judged by
    /// a JSON Schema validator that is not ours). A client that checks its input against the
    /// document is never refused for its shape, and never lets through what the server refuses.
    async fn the_documents_text_rules_are_exactly_the_servers(app) {
        let app = TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), |c| {
            c.rate_limit = saaskit::ratelimit::Switch::Off;
        })
        .await;
        let document = served_document(&app).await;
        let schema = |name: &str| {
            let root = serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": format!("#/components/schemas/{name}"),
                "components": document["components"],
            });
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
        };
        let long = |n: usize, tail: &str| format!("{}{tail}", "é".repeat(n));
        let names = [
            "Ada".to_owned(), " Ada ".into(), String::new(), " ".into(), "\u{3000}".into(),
            " \tAda".into(), "Ada\n".into(), "A\u{200b}da".into(), "Acme\u{202e}moc.live".into(),
            "Zoë Ñúñez-O'Brien".into(), "李小龍".into(), "🙂".into(), "\u{e0041}".into(),
            "A\u{85}".into(), long(100, ""), long(100, " "), long(150, ""), long(149, " "),
            long(150, " "), long(200, ""), long(201, ""),
        ];
        let (first, person, business, key) =
            (schema("FirstName"), schema("PersonName"), schema("BusinessName"), schema("KeyName"));
        let mut n = 0;
        let mut signup = |field: &str, value: &str| {
            n += 1;
            let mut body = serde_json::json!({
                "business": {"name": "Acme"},
                "email": format!("person{n}@example.com"),
                "first_name": "Ada",
                "last_name": "Lovelace",
                "password": PASSWORD,
            });
            match field {
                "business.name" => body["business"]["name"] = value.into(),
                field => body[field] = value.into(),
            }
            body
        };
        let (token, _) = app.signup_business("owner@example.com").await;
        for name in &names {
            for (field, rule) in [("first_name", &first), ("last_name", &person), ("business.name", &business)] {
                let (status, answer) = app.post("/api/v1/signup", None, signup(field, name)).await;
                let documented = rule.is_valid(&Value::from(name.as_str()));
                assert_eq!(status == StatusCode::CREATED, documented, "{field} {name:?}: {status} {answer}");
            }
            let (status, answer) = app.post("/api/v1/api-keys", Some(&token), serde_json::json!({"name": name})).await;
            let documented = key.is_valid(&Value::from(name.as_str()));
            assert_eq!(status == StatusCode::CREATED, documented, "key name {name:?}: {status} {answer}");
        }

        let address = schema("EmailAddress");
        for email in [
            "ada@example.com", "zoë@exämple.de", "用户@例子.广告", "a.b+c@x.io", "o'brien@example.org",
            "0", "", "ada", "@example.com", "ada@", "ada@example", "ada@@example.com", "a..b@example.com",
            ".ada@example.com", "ada.@example.com", "ada@-example.com", "ada@example.123", "a b@example.com",
            "ada@exa_mple.com", "\"ada\"@example.com",
        ] {
            let body = serde_json::json!({
                "business": {"name": "Acme"}, "email": email, "first_name": "Ada",
                "last_name": "Lovelace", "password": PASSWORD,
            });
            let (status, answer) = app.post("/api/v1/signup", None, body).await;
            let documented = address.is_valid(&Value::from(email));
            assert_eq!(status == StatusCode::CREATED, documented, "email {email:?}: {status} {answer}");
        }
    }
}
