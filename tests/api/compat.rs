//! The original boilerplate's routes, with its exact request shapes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;
use crate::smtp_sink::key_in;

fn original_signup(email: &str) -> Value {
    json!({
        "business": {"name": "Acme"},
        "email": email,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "password1": PASSWORD,
        "password2": PASSWORD,
    })
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).json(&body);
    if let Some(t) = token {
        req = req.header("authorization", format!("Token {t}"));
    }
    req.send().await.expect("send")
}

db_test! {
    async fn original_signup_login_and_me(app) {
        let (status, body) = read(post(&app, "/saas/signup", None, original_signup("ada@example.com")).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let token = token_of(&body);
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "just the token: {body}");

        let (status, body) = read(post(&app, "/saas/login", None, json!({"email": "ada@example.com", "password": PASSWORD})).await).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["token"].is_string());

        let res = app.client.get(app.url("/saas/me")).header("authorization", format!("Token {token}")).send().await.expect("send");
        let (status, me) = read(res).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["email"], "ada@example.com");
        assert_eq!(me["first_name"], "Ada");
        assert_eq!(me["last_name"], "Lovelace");
        assert_eq!(me["business"]["name"], "Acme");
        assert!(me["business"]["id"].is_string());
        assert!(me["business"]["api_key"].is_null(), "never a secret");
        assert_eq!(me["plan"]["code"], "free-trial");
        assert_eq!(me["plan"]["limits"]["recordings"], 1000);

        let mismatch = json!({"business": {"name": "B"}, "email": "b@example.com", "first_name": "B", "last_name": "C", "password1": PASSWORD, "password2": "something else"});
        assert_problem(post(&app, "/saas/signup", None, mismatch).await, StatusCode::BAD_REQUEST, "password_mismatch").await;
        assert_problem(post(&app, "/saas/signup", None, original_signup("ADA@example.com")).await, StatusCode::CONFLICT, "email_taken").await;
        let short = json!({"business": {"name": "B"}, "email": "b@example.com", "first_name": "B", "last_name": "C", "password1": "short", "password2": "short"});
        let body = assert_problem(post(&app, "/saas/signup", None, short).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "password1");
        assert_problem(post(&app, "/saas/login", None, json!({"email": "ada@example.com", "password": "wrong one"})).await, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        assert_eq!(app.count("users").await, 1);
    }
}

db_test! {
    async fn original_password_reset_never_returns_the_key(app) {
        app.signup("ada@example.com").await;
        let (status, body) = read(post(&app, "/saas/passwd/reset", None, json!({"email": "ada@example.com"})).await).await;
        assert!(status.is_success(), "{status}");
        let (status_unknown, body_unknown) = read(post(&app, "/saas/passwd/reset", None, json!({"email": "nobody@example.com"})).await).await;
        assert_eq!((status, &body), (status_unknown, &body_unknown));
        let key = key_in(&app.only_mail_to("ada@example.com", RESET_SUBJECT).await);
        assert!(!body.to_string().contains(&key));

        let mismatch = json!({"activation_key": key, "password1": "new passphrase 1", "password2": "new passphrase 2"});
        assert_problem(post(&app, "/saas/passwd/reset/cnfrm", None, mismatch).await, StatusCode::BAD_REQUEST, "password_mismatch").await;
        let ok = json!({"activation_key": key, "password1": "new passphrase 1", "password2": "new passphrase 1"});
        let (status, body) = read(post(&app, "/saas/passwd/reset/cnfrm", None, ok.clone()).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["token"].is_string());
        assert_problem(post(&app, "/saas/passwd/reset/cnfrm", None, ok).await, StatusCode::GONE, "key_used").await;
    }
}

db_test! {
    async fn original_invite_prefill_and_signup_with_the_key(app) {
        let owner = app.signup("ada@example.com").await;
        let token = token_of(&owner);
        let business_id = owner["business"]["id"].as_str().expect("id").to_owned();
        let (status, body) = read(post(&app, "/saas/invite", Some(&token), json!({"email": "grace@example.com", "no_email": true})).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let key = body["activation_key"].as_str().expect("activation_key").to_owned();
        assert_eq!(app.mail_to("grace@example.com", "").await.len(), 0, "no_email sends nothing");

        let (status, prefill) = app.get(&format!("/saas/signup/prefill?key={key}"), None).await;
        assert_eq!(status, StatusCode::OK, "{prefill}");
        assert_eq!(prefill["email"], "grace@example.com");
        assert_eq!(prefill["business"]["id"], business_id.as_str());
        assert_eq!(prefill["business"]["name"], "ada@example.com's business");
        assert_eq!(prefill["first_name"], "");
        assert_eq!(prefill["last_name"], "");
        let res = app.client.get(app.url("/saas/signup/prefill?key=unknown")).send().await.expect("send");
        assert_problem(res, StatusCode::NOT_FOUND, "key_not_found").await;
        let res = app.client.get(app.url("/saas/signup/prefill")).send().await.expect("send");
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

        let join = |key: Option<&str>, business: &str| {
            let mut body = json!({
                "business": {"id": business},
                "email": "grace@example.com",
                "first_name": "Grace",
                "last_name": "Hopper",
                "password1": "invited passphrase",
                "password2": "invited passphrase",
            });
            if let Some(k) = key {
                body["activation_key"] = json!(k);
            }
            body
        };
        // The original's hole: a business id and an invited email were enough. Not here.
        let before = app.counts().await;
        let res = post(&app, "/saas/signup", None, join(None, &business_id)).await;
        assert!(res.status().is_client_error());
        assert_problem(post(&app, "/saas/signup", None, join(Some("forged"), &business_id)).await, StatusCode::NOT_FOUND, "key_not_found").await;
        let other_business = uuid::Uuid::now_v7().to_string();
        assert_problem(post(&app, "/saas/signup", None, join(Some(&key), &other_business)).await, StatusCode::BAD_REQUEST, "invitation_mismatch").await;
        let mut wrong_email = join(Some(&key), &business_id);
        wrong_email["email"] = json!("mallory@example.com");
        assert_problem(post(&app, "/saas/signup", None, wrong_email).await, StatusCode::BAD_REQUEST, "invitation_mismatch").await;
        assert_eq!(app.counts().await, before, "nothing changed");

        let (status, body) = read(post(&app, "/saas/signup", None, join(Some(&key), &business_id)).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (_, me) = app.get("/api/v1/me", Some(&token_of(&body))).await;
        assert_eq!(me["business"]["id"], business_id.as_str());
        assert_eq!(me["role"], "member");
        assert_problem(post(&app, "/saas/signup", None, join(Some(&key), &business_id)).await, StatusCode::GONE, "key_used").await;
    }
}

db_test! {
    async fn original_invite_of_an_existing_account_leaves_it_alone(app) {
        let token = app.signup_token("ada@example.com").await;
        app.signup("grace@example.com").await;
        let (status, _) = read(post(&app, "/saas/invite", Some(&token), json!({"email": "grace@example.com", "no_email": true})).await).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = app.post("/api/v1/login", None, json!({"email": "grace@example.com", "password": PASSWORD})).await;
        assert_eq!(status, StatusCode::OK, "the original deactivated such accounts; we do not");
    }
}
