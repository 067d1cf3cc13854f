use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;

use crate::db_test;
use crate::helpers::*;

db_test! {
    async fn signup_creates_owner_business_and_trial(app) {
        let body = app.signup("ada@example.com").await;
        assert!(body["token"].as_str().is_some_and(|t| t.starts_with("sks_")));
        assert_eq!(body["user"]["email"], "ada@example.com");
        assert_eq!(body["user"]["first_name"], "Ada");
        assert_eq!(body["user"]["email_verified"], false);
        assert_eq!(body["business"]["name"], "ada@example.com's business");
        let sub = &body["subscription"];
        assert_eq!(sub["status"], "trialing");
        assert_eq!(sub["plan"]["code"], "free-trial");
        assert_eq!(sub["plan"]["price"], 0);
        assert_eq!(sub["plan"]["cycle_days"], 15);
        let start = start_time();
        assert_eq!(sub["current_period_start"], "2026-03-01T12:00:00Z");
        let end = (start + Duration::days(15)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        assert_eq!(sub["current_period_end"], end.as_str());
        assert!(body.get("password").is_none());

        let (status, me) = app.get("/api/v1/me", Some(&token_of(&body))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["role"], "owner");
        assert_eq!(me["business"]["id"], body["business"]["id"]);
        assert_eq!(app.count("members").await, 1);
        assert_eq!(app.count("subscriptions").await, 1);
    }
}

db_test! {
    async fn signup_with_a_registered_email_is_a_conflict_whatever_its_case(app) {
        app.signup("ada@example.com").await;
        let before = app.counts().await;
        let res = app
            .client
            .post(app.url("/api/v1/signup"))
            .json(&json!({
                "business": {"name": "Other"},
                "email": "  ADA@Example.COM ",
                "first_name": "Eve",
                "last_name": "X",
                "password": "another password",
            }))
            .send()
            .await
            .expect("send");
        assert_problem(res, StatusCode::CONFLICT, "email_taken").await;
        assert_eq!(app.counts().await, before, "a refused signup writes nothing");
    }
}

db_test! {
    async fn signup_names_every_invalid_field(app) {
        let res = app
            .client
            .post(app.url("/api/v1/signup"))
            .json(&json!({
                "business": {"name": "   "},
                "email": "not-an-email",
                "first_name": "Ada\u{0}",
                "password": "short",
            }))
            .send()
            .await
            .expect("send");
        let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let mut fields: Vec<(String, String)> = body["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| (e["field"].as_str().unwrap_or_default().to_owned(), e["code"].as_str().unwrap_or_default().to_owned()))
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            vec![
                ("business.name".to_owned(), "required".to_owned()),
                ("email".to_owned(), "invalid_email".to_owned()),
                ("first_name".to_owned(), "invalid_characters".to_owned()),
                ("last_name".to_owned(), "required".to_owned()),
                ("password".to_owned(), "too_short".to_owned()),
            ]
        );
        assert_eq!(app.count("users").await, 0);
        assert_eq!(app.count("businesses").await, 0);
    }
}

db_test! {
    async fn signup_refuses_the_email_as_password_and_overlong_values(app) {
        let cases = [
            (json!({"business": {"name": "B"}, "email": "ada@example.com", "first_name": "A", "last_name": "L", "password": "ADA@example.com"}), "password", "too_guessable"),
            (json!({"business": {"name": "B"}, "email": "ada@example.com", "first_name": "A", "last_name": "L", "password": "x".repeat(129)}), "password", "too_long"),
            (json!({"business": {"name": "B".repeat(201)}, "email": "ada@example.com", "first_name": "A", "last_name": "L", "password": PASSWORD}), "business.name", "too_long"),
            (json!({"business": {"name": "B"}, "email": format!("{}@example.com", "a".repeat(250)), "first_name": "A", "last_name": "L", "password": PASSWORD}), "email", "too_long"),
            (json!({"business": {"name": "B"}, "email": "ada@example.com", "first_name": "A".repeat(151), "last_name": "L", "password": PASSWORD}), "first_name", "too_long"),
            (json!({"business": {"name": "B"}, "email": "ada@example.com", "first_name": "A", "last_name": "L\u{1b}[31m", "password": PASSWORD}), "last_name", "invalid_characters"),
            (json!({"email": "ada@example.com", "first_name": "A", "last_name": "L", "password": PASSWORD}), "business", "required"),
            (json!({"business": {"name": "B"}, "email": "ada@example.com", "first_name": "  ", "last_name": "L", "password": PASSWORD}), "first_name", "required"),
        ];
        for (body, field, code) in cases {
            let res = app.client.post(app.url("/api/v1/signup")).json(&body).send().await.expect("send");
            let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
            assert!(
                problem["errors"].as_array().expect("errors").iter().any(|e| e["field"] == field && e["code"] == code),
                "expected {field}/{code} in {problem}"
            );
        }
        assert_eq!(app.count("users").await, 0);
    }
}

db_test! {
    async fn signup_accepts_unicode_names_and_keeps_them_exactly(app) {
        let (status, body) = app
            .post(
                "/api/v1/signup",
                None,
                json!({
                    "business": {"name": "Café Ünïcødé 株式会社 🚀"},
                    "email": "zoë@bücher.example",
                    "first_name": "Zoë",
                    "last_name": "O'Brien-Łukasz",
                    "password": "pässwörd-🔑-long",
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (_, me) = app.get("/api/v1/me", Some(&token_of(&body))).await;
        assert_eq!(me["business"]["name"], "Café Ünïcødé 株式会社 🚀");
        assert_eq!(me["user"]["last_name"], "O'Brien-Łukasz");
        let (status, _) = app
            .post("/api/v1/login", None, json!({"email": "ZOË@BÜCHER.EXAMPLE", "password": "pässwörd-🔑-long"}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}

db_test! {
    async fn concurrent_signups_with_one_email_create_one_account(app) {
        let attempts = (0..8).map(|i| {
            let client = app.client.clone();
            let url = app.url("/api/v1/signup");
            async move {
                client
                    .post(url)
                    .json(&json!({
                        "business": {"name": format!("Race {i}")},
                        "email": "race@example.com",
                        "first_name": "R",
                        "last_name": "C",
                        "password": PASSWORD,
                    }))
                    .send()
                    .await
                    .expect("send")
                    .status()
            }
        });
        let statuses = futures_join_all(attempts).await;
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 7, "{statuses:?}");
        assert_eq!(app.count("users").await, 1);
        assert_eq!(app.count("businesses").await, 1);
        assert_eq!(app.count("subscriptions").await, 1);
    }
}

/// Polls every future concurrently on the test runtime.
/// Signs up `email` with the test password; the answer.
async fn sign_up_as(app: &TestApp, email: &str) -> reqwest::Response {
    let body = json!({"business": {"name": "B"}, "email": email, "first_name": "Kate", "last_name": "K", "password": PASSWORD});
    app.client
        .post(app.url("/api/v1/signup"))
        .json(&body)
        .send()
        .await
        .expect("send")
}

db_test! {
    async fn a_fullwidth_address_is_the_account_of_its_plain_form(app) {
        let (status, body) = read(sign_up_as(&app, "ｋate@example.com").await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["user"]["email"], "kate@example.com", "stored in its normal form");
        for again in ["kate@example.com", "ｋａｔｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "KATE@EXAMPLE.COM"] {
            assert_problem(sign_up_as(&app, again).await, StatusCode::CONFLICT, "email_taken").await;
        }
        for login in ["kate@example.com", "ｋate@example.com", "ＫＡＴＥ＠example.com"] {
            let (status, body) = app.post("/api/v1/login", None, json!({"email": login, "password": PASSWORD})).await;
            assert_eq!(status, StatusCode::OK, "{login}: {body}");
        }
        assert_eq!(app.count("users").await, 1);
    }
}

db_test! {
    async fn an_address_mixing_look_alike_scripts_is_refused_as_confusable(app) {
        let owner = app.signup_token("ada@example.com").await;
        // A Cyrillic а (U+0430) in a Latin local part, then in a Latin domain label.
        for confusable in ["k\u{430}te@example.com", "kate@ex\u{430}mple.com"] {
            let problem = assert_problem(sign_up_as(&app, confusable).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
            assert_eq!((&problem["errors"][0]["field"], &problem["errors"][0]["code"]), (&json!("email"), &json!("email_confusable")), "{problem}");
            let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&owner).json(&json!({"email": confusable})).send().await.expect("send");
            let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
            assert_eq!(problem["errors"][0]["code"], "email_confusable", "{problem}");
        }
        assert_eq!(app.count("users").await, 1);
    }
}

db_test! {
    async fn addresses_in_one_script_sign_up_whatever_the_script(app) {
        for email in ["иван@почта.рф", "josé@example.com", "用户@例子.广告", "иван@gmail.com"] {
            let (status, body) = read(sign_up_as(&app, email).await).await;
            assert_eq!(status, StatusCode::CREATED, "{email}: {body}");
            assert_eq!(body["user"]["email"], email);
            let (status, _) = app.post("/api/v1/login", None, json!({"email": email, "password": PASSWORD})).await;
            assert_eq!(status, StatusCode::OK, "{email}");
        }
    }
}

pub async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
