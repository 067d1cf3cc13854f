use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;
use crate::smtp_sink::key_in;

async fn invite(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.post("/api/v1/invitations", Some(token), body).await
}

async fn accept(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/v1/invitations/{key}/accept")))
        .json(&body)
        .send()
        .await
        .expect("send")
}

fn invitee() -> Value {
    json!({"first_name": "Grace", "last_name": "Hopper", "password": "invited passphrase"})
}

db_test! {
    async fn an_invitation_is_mailed_described_and_accepted_once(app) {
        let owner = app.signup("ada@example.com").await;
        let owner_token = token_of(&owner);
        let (status, inv) = invite(&app, &owner_token, json!({"email": "Grace@Example.com", "role": "admin"})).await;
        assert_eq!(status, StatusCode::CREATED, "{inv}");
        assert_eq!(inv["email"], "grace@example.com");
        assert_eq!(inv["role"], "admin");
        assert_eq!(inv["emailed"], true);
        assert_eq!(inv["business"]["id"], owner["business"]["id"]);
        let key = inv["key"].as_str().expect("key").to_owned();
        assert_eq!(inv["link"], format!("http://localhost:8000/invitations/accept?key={key}"));
        assert_eq!(inv["expires_at"], "2026-03-08T12:00:00Z");

        let mail = app.only_mail_to("grace@example.com").await;
        assert!(mail.contains("Ada Lovelace invited you to join"), "{mail}");
        assert!(mail.contains(inv["link"].as_str().unwrap_or("?")), "the link as it reads: {mail}");
        assert_eq!(key_in(&mail), key);

        let (status, seen) = app.get(&format!("/api/v1/invitations/{key}"), None).await;
        assert_eq!(status, StatusCode::OK, "{seen}");
        assert_eq!(seen["email"], "grace@example.com");
        assert_eq!(seen["role"], "admin");
        assert_eq!(seen["business"]["name"], "ada@example.com's business");
        assert_eq!(seen["inviter"]["name"], "Ada Lovelace");

        let (status, joined) = read(accept(&app, &key, invitee()).await).await;
        assert_eq!(status, StatusCode::CREATED, "{joined}");
        assert_eq!(joined["role"], "admin");
        assert_eq!(joined["user"]["email_verified"], false, "the inviter also held the key");
        let (status, me) = app.get("/api/v1/me", Some(&token_of(&joined))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["business"]["id"], owner["business"]["id"]);
        assert_eq!(me["role"], "admin");
        assert_eq!(me["user"]["first_name"], "Grace");

        assert_problem(accept(&app, &key, invitee()).await, StatusCode::GONE, "key_used").await;
        let res = app.client.get(app.url(&format!("/api/v1/invitations/{key}"))).send().await.expect("send");
        assert_problem(res, StatusCode::GONE, "key_used").await;
        let (status, _) = app.post("/api/v1/login", None, json!({"email": "grace@example.com", "password": "invited passphrase"})).await;
        assert_eq!(status, StatusCode::OK);
    }
}

db_test! {
    async fn invitations_expire_after_seven_days(app) {
        let token = app.signup_token("ada@example.com").await;
        let (_, inv) = invite(&app, &token, json!({"email": "grace@example.com", "role": "member", "send_email": false})).await;
        let key = inv["key"].as_str().expect("key").to_owned();
        app.clock.advance(Duration::days(7) - Duration::seconds(1));
        let (status, _) = app.get(&format!("/api/v1/invitations/{key}"), None).await;
        assert_eq!(status, StatusCode::OK);
        app.clock.advance(Duration::seconds(1));
        let res = app.client.get(app.url(&format!("/api/v1/invitations/{key}"))).send().await.expect("send");
        assert_problem(res, StatusCode::GONE, "key_expired").await;
        assert_problem(accept(&app, &key, invitee()).await, StatusCode::GONE, "key_expired").await;
        assert_eq!(app.count("users").await, 1);
    }
}

db_test! {
    async fn who_may_invite_and_what(app) {
        let owner = app.signup_token("ada@example.com").await;
        // send_email: false queues nothing.
        let (status, inv) = invite(&app, &owner, json!({"email": "member@example.com", "send_email": false})).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(inv["role"], "member", "the default role");
        assert_eq!(app.count("outbox").await, 0);
        let (_, joined) = read(accept(&app, inv["key"].as_str().expect("key"), invitee()).await).await;
        let member = token_of(&joined);

        let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&member).json(&json!({"email": "x@example.com"})).send().await.expect("send");
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&owner).json(&json!({"email": "member@example.com"})).send().await.expect("send");
        assert_problem(res, StatusCode::CONFLICT, "already_member").await;
        for role in ["owner", "bot", "god", ""] {
            let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&owner).json(&json!({"email": "y@example.com", "role": role})).send().await.expect("send");
            let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
            assert_eq!(body["errors"][0]["field"], "role");
        }
        let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&owner).json(&json!({"email": "nope"})).send().await.expect("send");
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let res = app.client.post(app.url("/api/v1/invitations")).json(&json!({"email": "z@example.com"})).send().await.expect("send");
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;

        // The free trial ends after 15 days; without a live subscription nobody can be invited.
        app.clock.advance(Duration::days(15));
        let owner = app.login_token("ada@example.com").await;
        let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&owner).json(&json!({"email": "late@example.com"})).send().await.expect("send");
        assert_problem(res, StatusCode::PAYMENT_REQUIRED, "no_active_subscription").await;
    }
}

db_test! {
    async fn unknown_and_replaced_keys_are_refused(app) {
        let owner = app.signup_token("ada@example.com").await;
        for key in ["unknown", "%ff%fe", "a.b", &"k".repeat(300)] {
            let res = app.client.get(app.url(&format!("/api/v1/invitations/{key}"))).send().await.expect("send");
            assert_problem(res, StatusCode::NOT_FOUND, "key_not_found").await;
            assert_problem(accept(&app, key, invitee()).await, StatusCode::NOT_FOUND, "key_not_found").await;
        }
        let (_, first) = invite(&app, &owner, json!({"email": "grace@example.com", "send_email": false})).await;
        let (_, second) = invite(&app, &owner, json!({"email": "grace@example.com", "send_email": false})).await;
        let first = first["key"].as_str().expect("key");
        assert_problem(accept(&app, first, invitee()).await, StatusCode::GONE, "key_revoked").await;
        let res = accept(&app, second["key"].as_str().expect("key"), json!({"first_name": "G", "last_name": "H", "password": "short"})).await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let (status, _) = read(accept(&app, second["key"].as_str().expect("key"), invitee()).await).await;
        assert_eq!(status, StatusCode::CREATED);
    }
}

db_test! {
    async fn inviting_an_existing_account_never_changes_it(app) {
        let owner = app.signup_token("ada@example.com").await;
        app.signup("grace@example.com").await;
        let (status, inv) = invite(&app, &owner, json!({"email": "grace@example.com", "send_email": false})).await;
        assert_eq!(status, StatusCode::CREATED, "{inv}");
        let res = accept(&app, inv["key"].as_str().expect("key"), invitee()).await;
        assert_problem(res, StatusCode::CONFLICT, "account_exists").await;
        let (status, body) = app.post("/api/v1/login", None, json!({"email": "grace@example.com", "password": PASSWORD})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["business"]["name"], "grace@example.com's business");
        assert_eq!(app.count("members").await, 2);
    }
}

db_test! {
    async fn an_address_that_changes_when_lower_cased_can_still_accept(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (status, inv) = invite(&app, &owner, json!({"email": "İlker@İstanbul.example", "send_email": false})).await;
        assert_eq!(status, StatusCode::CREATED, "{inv}");
        let (status, body) = read(accept(&app, inv["key"].as_str().expect("key"), invitee()).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

db_test! {
    async fn concurrent_invitations_of_one_email_leave_one_live_key(app) {
        let owner = app.signup_token("ada@example.com").await;
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let client = app.client.clone();
                let url = app.url("/api/v1/invitations");
                let owner = owner.clone();
                tokio::spawn(async move {
                    client.post(url).bearer_auth(owner).json(&json!({"email": "grace@example.com", "send_email": false})).send().await.expect("send").status()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), StatusCode::CREATED);
        }
        let sql = "SELECT COUNT(*) FROM one_time_keys WHERE used_at IS NULL AND revoked_at IS NULL";
        let live: i64 = match &app.db {
            saaskit::db::Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            saaskit::db::Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .expect("count");
        assert_eq!(live, 1);
    }
}
