use reqwest::StatusCode;
use serde_json::json;

use crate::db_test;
use crate::helpers::*;

db_test! {
    async fn login_returns_a_working_session_whatever_the_email_case(app) {
        let signup = app.signup("ada@example.com").await;
        let (status, body) = app
            .post("/api/v1/login", None, json!({"email": " Ada@EXAMPLE.com", "password": PASSWORD}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = token_of(&body);
        assert_ne!(token, token_of(&signup), "each login is a new session");
        assert_eq!(body["user"]["id"], signup["user"]["id"]);
        assert_eq!(body["business"]["id"], signup["business"]["id"]);
        let (status, me) = app.get("/api/v1/me", Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["user"]["email"], "ada@example.com");
    }
}

db_test! {
    async fn unknown_email_and_wrong_password_get_the_same_answer_for_the_same_work(app) {
        app.signup("ada@example.com").await;
        // Warm the decoy hash so both attempts below do exactly one verification.
        let _ = app.post("/api/v1/login", None, json!({"email": "warm@example.com", "password": "x"})).await;

        let before = app.app.hasher.verifications();
        let wrong = app
            .client
            .post(app.url("/api/v1/login"))
            .json(&json!({"email": "ada@example.com", "password": "wrong password"}))
            .send()
            .await
            .expect("send");
        let wrong = assert_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        assert_eq!(app.app.hasher.verifications() - before, 1);

        let before = app.app.hasher.verifications();
        let unknown = app
            .client
            .post(app.url("/api/v1/login"))
            .json(&json!({"email": "nobody@example.com", "password": "wrong password"}))
            .send()
            .await
            .expect("send");
        let unknown = assert_problem(unknown, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        assert_eq!(app.app.hasher.verifications() - before, 1, "unknown emails cost a verification too");
        assert_eq!(wrong, unknown, "the bodies must not tell the cases apart");
        assert_eq!(app.count("tokens").await, 1, "failed logins open no session");
    }
}

db_test! {
    async fn login_needs_both_fields_and_refuses_oversized_passwords(app) {
        app.signup("ada@example.com").await;
        let res = app.client.post(app.url("/api/v1/login")).json(&json!({"email": "ada@example.com"})).send().await.expect("send");
        let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "password");
        let res = app.client.post(app.url("/api/v1/login")).json(&json!({"email": "ada@example.com", "password": "p".repeat(100_000)})).send().await.expect("send");
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        let res = app.client.post(app.url("/api/v1/login")).json(&json!({"email": "ada@example.com\u{0}", "password": PASSWORD})).send().await.expect("send");
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
}
