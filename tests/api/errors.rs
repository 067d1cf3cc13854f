//! Malformed requests of every kind get a clear 4xx problem document and write nothing.

use reqwest::StatusCode;

use crate::db_test;
use crate::helpers::*;

async fn send_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.expect("send")
}

db_test! {
    async fn malformed_bodies_are_clear_client_errors_that_write_nothing(app) {
        let before = app.counts().await;
        let valid = br#"{"business":{"name":"B"},"email":"ada@example.com","first_name":"A","last_name":"L","password":"correct horse battery"}"#.to_vec();
        let json = Some("application/json");
        let cases: Vec<(Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
            (json, b"{".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
            (json, b"".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
            (json, b"not json".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
            (json, b"{\"email\": \"a\xff\xfe@example.com\"}".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
            (json, br#"{"email": "\ud800@example.com"}"#.to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
            (json, b"[]".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            (json, b"null".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            (json, br#"{"email": 42}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            (json, br#"{"email": "a\u0000b@example.com", "business":{"name":"B"},"first_name":"A","last_name":"L","password":"correct horse battery"}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json, br#"{"email": "ab@example.com", "business":{"name":"B\u0000"},"first_name":"A","last_name":"L","password":"correct horse battery"}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (None, valid.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (Some("text/plain"), valid.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (Some("application/x-www-form-urlencoded"), b"email=a".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ];
        for (content_type, body, status, code) in cases {
            for path in ["/api/v1/signup", "/api/v1/login"] {
                let shown = String::from_utf8_lossy(&body).into_owned();
                let res = send_raw(&app, path, content_type, body.clone()).await;
                let got = res.status();
                if path == "/api/v1/login" && code == "validation_failed" {
                    // Login does not validate the shape of an email: it just finds no account.
                    assert!(got.is_client_error(), "{path} {shown:?}: {got}");
                    continue;
                }
                assert_eq!(got, status, "{path} {shown:?}");
                assert_problem(res, status, code).await;
            }
        }
        // A field of the wrong type, nested.
        let res = send_raw(&app, "/api/v1/signup", json, br#"{"business": "Acme"}"#.to_vec()).await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert_eq!(app.counts().await, before);
    }
}

db_test! {
    async fn bodies_over_one_mebibyte_are_refused(app) {
        let mut big = br#"{"business":{"name":"B"},"email":"ada@example.com","first_name":""#.to_vec();
        big.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        big.extend(br#"","last_name":"L","password":"correct horse battery"}"#);
        let res = send_raw(&app, "/api/v1/signup", Some("application/json"), big.clone()).await;
        assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

        // The same without a Content-Length (chunked): the limit holds while reading.
        let mut raw = "POST /api/v1/signup HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".as_bytes().to_vec();
        for chunk in big.chunks(64 * 1024) {
            raw.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
            raw.extend(chunk);
            raw.extend(b"\r\n");
        }
        raw.extend(b"0\r\n\r\n");
        let (status, head, body) = app.raw(&raw).await;
        assert_eq!(status, 413, "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{head}");
        assert!(body.contains("payload_too_large"), "{body}");
        assert_eq!(app.count("users").await, 0);
    }
}

db_test! {
    async fn a_body_declared_over_one_mebibyte_is_refused_at_once_on_every_route(app) {
        // The body never comes: without the check a handler reading it would wait for the
        // request timeout (30 s), and one not reading it would answer as if it were not there.
        for (method, path) in [("POST", "/api/v1/signup"), ("POST", "/api/v1/api-keys"), ("GET", "/healthz")] {
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{{\"a\":"
            );
            let started = std::time::Instant::now();
            let (status, head, body) = tokio::time::timeout(std::time::Duration::from_secs(10), app.raw(request.as_bytes()))
                .await
                .unwrap_or_else(|_| panic!("{method} {path}: no answer within 10 s"));
            assert_eq!(status, 413, "{method} {path}: {head}");
            assert!(head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{head}");
            assert!(body.contains("payload_too_large"), "{body}");
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
        }
        assert_eq!(app.count("users").await, 0);
    }
}

db_test! {
    async fn unknown_routes_and_methods_are_problem_documents(app) {
        let res = app.client.get(app.url("/api/v1/nope")).send().await.expect("send");
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        let res = app.client.get(app.url("/nope")).send().await.expect("send");
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        // A browser asking for a page that is not there gets a page; under /api/v1, never.
        let res = app.client.get(app.url("/nope")).header("accept", "text/html").send().await.expect("send");
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert!(res.text().await.expect("body").contains("Page not found"));
        let res = app.client.get(app.url("/api/v1/nope")).header("accept", "text/html").send().await.expect("send");
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        let res = app.client.get(app.url("/api/v1/signup")).send().await.expect("send");
        assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        let res = app.client.put(app.url("/api/v1/me")).send().await.expect("send");
        assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
}

db_test! {
    async fn every_response_carries_a_request_id(app) {
        let res = app.client.get(app.url("/healthz")).send().await.expect("send");
        assert_eq!(res.status(), StatusCode::OK);
        let generated = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert!(generated.is_some_and(|id| id.len() == 36));
        let res = app.client.get(app.url("/api/v1/nope")).header("x-request-id", "abc-123").send().await.expect("send");
        assert_eq!(res.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("abc-123"));
        let (status, body) = app.get("/healthz", None).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
        let (status, _) = app.get("/api/v1/healthz", None).await;
        assert_eq!(status, StatusCode::OK);
    }
}

db_test! {
    async fn an_array_is_never_read_as_a_body_whose_members_are_all_optional(app) {
        // serde reads a JSON array as a struct, member by member: a body whose members are all
        // optional took `[0]` for "nothing given" (found by the fuzzer on key rotation).
        let owner = app.signup_token("ada@example.com").await;
        let (status, key) = app.post("/api/v1/api-keys", Some(&owner), serde_json::json!({"name": "sdk"})).await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let secret = key["key"].as_str().expect("a key").to_owned();
        let id = key["id"].as_str().expect("an id").to_owned();
        for (path, body) in [
            (format!("/api/v1/api-keys/{id}/rotate"), " [0]"),
            (format!("/api/v1/api-keys/{id}/rotate"), "[]"),
            ("/api/v1/business".to_owned(), "[null, null]"),
        ] {
            let method = if path.ends_with("business") { reqwest::Method::PATCH } else { reqwest::Method::POST };
            let res = app
                .client
                .request(method, app.url(&path))
                .bearer_auth(&owner)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("send");
            assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        }
        // The key was not rotated: its secret still works.
        assert_eq!(app.get("/api/v1/entitlements", Some(&secret)).await.0, StatusCode::OK);
        // A bracket that is not JSON is still a syntax error.
        let res = send_raw(&app, "/api/v1/signup", Some("application/json"), b"[".to_vec()).await;
        assert_problem(res, StatusCode::BAD_REQUEST, "malformed_json").await;
    }
}
