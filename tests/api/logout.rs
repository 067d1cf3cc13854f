use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::db_test;
use crate::helpers::*;

db_test! {
    async fn logout_revokes_only_the_presented_token(app) {
        let first = app.signup_token("ada@example.com").await;
        let (_, login) = app.post("/api/v1/login", None, json!({"email": "ada@example.com", "password": PASSWORD})).await;
        let second = token_of(&login);

        let (status, body) = app.call(Method::POST, "/api/v1/logout", Some(&first), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let res = app.client.get(app.url("/api/v1/me")).bearer_auth(&first).send().await.expect("send");
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        let res = app.client.post(app.url("/api/v1/logout")).bearer_auth(&first).send().await.expect("send");
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;

        let (status, _) = app.get("/api/v1/me", Some(&second)).await;
        assert_eq!(status, StatusCode::OK, "the other session still works");
    }
}

db_test! {
    async fn logout_without_a_token_is_unauthenticated(app) {
        let res = app.client.post(app.url("/api/v1/logout")).send().await.expect("send");
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
}
