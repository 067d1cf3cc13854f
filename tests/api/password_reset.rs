use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;

use crate::db_test;
use crate::helpers::*;
use crate::smtp_sink::key_in;

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn request_reset(app: &TestApp, email: &str) -> serde_json::Value {
    let (status, body) = app
        .post("/api/v1/password/reset", None, json!({"email": email}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body
}

async fn confirm(app: &TestApp, key: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/password/reset/confirm"))
        .json(&json!({"key": key, "password": password}))
        .send()
        .await
        .expect("send")
}

db_test! {
    async fn reset_key_is_mailed_works_once_and_ends_other_sessions(app) {
        let old_token = app.signup_token("ada@example.com").await;
        let body = request_reset(&app, "ADA@example.com").await;
        let mail = app.only_mail_to("ada@example.com", RESET_SUBJECT).await;
        assert!(mail.contains("Subject: Reset your password"), "{mail}");
        let key = key_in(&mail);
        assert_eq!(key.len(), 43);
        assert!(!body.to_string().contains(&key), "the key never appears in a response");
        // The link is in the file as it reads (not quoted-printable), in both parts.
        let link = format!("http://localhost:8000/reset-password?key={key}");
        assert_eq!(mail.matches(&link).count(), 2, "{mail}");
        // 8bit, not 7bit: the name is in quotes (“Ada”).
        assert!(mail.contains("Content-Transfer-Encoding: 8bit"), "{mail}");
        assert!(mail.contains("Hello “Ada”,"), "{mail}");

        let res = confirm(&app, &key, NEW_PASSWORD).await;
        let (status, body) = read(res).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let new_token = token_of(&body);
        let (status, _) = app.get("/api/v1/me", Some(&new_token)).await;
        assert_eq!(status, StatusCode::OK);
        let res = app.client.get(app.url("/api/v1/me")).bearer_auth(&old_token).send().await.expect("send");
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;

        let (status, _) = app.post("/api/v1/login", None, json!({"email": "ada@example.com", "password": NEW_PASSWORD})).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app.post("/api/v1/login", None, json!({"email": "ada@example.com", "password": PASSWORD})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        assert_problem(confirm(&app, &key, "yet another passphrase").await, StatusCode::GONE, "key_used").await;
    }
}

db_test! {
    async fn reset_key_expires_after_an_hour(app) {
        app.signup("ada@example.com").await;
        request_reset(&app, "ada@example.com").await;
        let key = key_in(&app.only_mail_to("ada@example.com", RESET_SUBJECT).await);
        app.clock.advance(Duration::hours(1));
        assert_problem(confirm(&app, &key, NEW_PASSWORD).await, StatusCode::GONE, "key_expired").await;
        let (status, _) = app.post("/api/v1/login", None, json!({"email": "ada@example.com", "password": PASSWORD})).await;
        assert_eq!(status, StatusCode::OK, "the password did not change");
    }
}

db_test! {
    async fn reset_answers_the_same_for_unknown_emails_and_mails_nothing(app) {
        app.signup("ada@example.com").await;
        let signup_mail = app.count("outbox").await;
        let known = request_reset(&app, "ada@example.com").await;
        let unknown = request_reset(&app, "nobody@example.com").await;
        assert_eq!(known, unknown);
        for odd in ["", "not an email", "a\u{0}@example.com"] {
            let (status, body) = app.post("/api/v1/password/reset", None, json!({"email": odd})).await;
            assert_eq!((status, &body), (StatusCode::ACCEPTED, &known));
        }
        assert_eq!(app.count("outbox").await, signup_mail + 1, "only the registered email gets mail");
        let res = app.client.post(app.url("/api/v1/password/reset")).json(&json!({})).send().await.expect("send");
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}

db_test! {
    async fn a_new_reset_request_kills_the_previous_key(app) {
        app.signup("ada@example.com").await;
        request_reset(&app, "ada@example.com").await;
        let first = key_in(&app.only_mail_to("ada@example.com", RESET_SUBJECT).await);
        request_reset(&app, "ada@example.com").await;
        let mails = app.mail_to("ada@example.com", RESET_SUBJECT).await;
        assert_eq!(mails.len(), 2);
        let second = mails.iter().map(|m| key_in(m)).find(|k| *k != first).expect("a second key");
        assert_problem(confirm(&app, &first, NEW_PASSWORD).await, StatusCode::GONE, "key_revoked").await;
        let (status, _) = read(confirm(&app, &second, NEW_PASSWORD).await).await;
        assert_eq!(status, StatusCode::OK);
    }
}

db_test! {
    async fn confirming_checks_the_key_and_the_new_password(app) {
        app.signup("ada@example.com").await;
        request_reset(&app, "ada@example.com").await;
        let key = key_in(&app.only_mail_to("ada@example.com", RESET_SUBJECT).await);
        let res = confirm(&app, &key, "short").await;
        let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "password");
        let res = confirm(&app, &key, "ada@example.com").await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        for bad in ["nope", "", "x\u{0}y", &"k".repeat(5000)] {
            assert_problem(confirm(&app, bad, NEW_PASSWORD).await, StatusCode::NOT_FOUND, "key_not_found").await;
        }
        let res = app.client.post(app.url("/api/v1/password/reset/confirm")).json(&json!({"key": key})).send().await.expect("send");
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        // After all those failures the key still works.
        let (status, _) = read(confirm(&app, &key, NEW_PASSWORD).await).await;
        assert_eq!(status, StatusCode::OK);
    }
}

db_test! {
    async fn concurrent_confirmations_of_one_key_succeed_once(app) {
        app.signup("ada@example.com").await;
        request_reset(&app, "ada@example.com").await;
        let key = key_in(&app.only_mail_to("ada@example.com", RESET_SUBJECT).await);
        let attempts: Vec<_> = (0..6)
            .map(|i| {
                let client = app.client.clone();
                let url = app.url("/api/v1/password/reset/confirm");
                let key = key.clone();
                tokio::spawn(async move {
                    client.post(url).json(&json!({"key": key, "password": format!("passphrase number {i}")})).send().await.expect("send").status()
                })
            })
            .collect();
        let mut ok = 0;
        for a in attempts {
            let status = a.await.expect("task");
            if status == StatusCode::OK { ok += 1 } else { assert_eq!(status, StatusCode::GONE) }
        }
        assert_eq!(ok, 1);
    }
}

db_test! {
    async fn concurrent_reset_requests_leave_one_live_key(app) {
        app.signup("ada@example.com").await;
        // As many as the default limit of reset requests for one email allows.
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let client = app.client.clone();
                let url = app.url("/api/v1/password/reset");
                tokio::spawn(async move {
                    client.post(url).json(&json!({"email": "ada@example.com"})).send().await.expect("send").status()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), StatusCode::ACCEPTED);
        }
        // The requests were answered before their work; count once it is done.
        app.app.background_idle().await;
        let sql = "SELECT COUNT(*) FROM one_time_keys WHERE purpose = 'password_reset' \
                   AND used_at IS NULL AND revoked_at IS NULL";
        let live: i64 = match &app.db {
            saaskit::db::Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            saaskit::db::Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .expect("count");
        assert_eq!(live, 1);
    }
}
