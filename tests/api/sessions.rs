//! Sessions: listing them, ending one or all the others, idle and absolute lifetimes, and the
//! password change that ends every other session.

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

impl TestApp {
    async fn login_as(&self, email: &str, user_agent: &str) -> String {
        let res = self
            .client
            .post(self.url("/api/v1/login"))
            .header("User-Agent", user_agent)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("request");
        let (status, body) = read(res).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        token_of(&body)
    }

    async fn sessions(&self, token: &str) -> Vec<Value> {
        let (status, body) = self.get("/api/v1/sessions", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].as_array().expect("a list").clone()
    }

    async fn works(&self, token: &str) -> bool {
        self.get("/api/v1/me", Some(token)).await.0 == StatusCode::OK
    }
}

fn current_id(sessions: &[Value]) -> String {
    sessions
        .iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["id"].as_str())
        .expect("the current session is listed")
        .to_owned()
}

db_test!(
    async fn sessions_are_listed_with_their_client_and_the_current_one_marked(app) {
        let signup = app.signup("ada@example.com").await;
        let laptop = app.login_as("ada@example.com", "Laptop/1.0").await;
        let phone = app.login_as("ada@example.com", "Phone/2.0").await;
        app.signup("grace@example.com").await;

        let listed = app.sessions(&phone).await;
        assert_eq!(listed.len(), 3, "{listed:?}");
        let mine: Vec<_> = listed.iter().filter(|s| s["current"] == true).collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0]["user_agent"], "Phone/2.0");
        assert_eq!(mine[0]["kind"], "session");
        assert_eq!(mine[0]["ip"], "127.0.0.1");
        assert_eq!(mine[0]["business_id"], signup["business"]["id"]);
        for s in &listed {
            for field in ["id", "created_at", "last_used_at", "expires_at", "idle_expires_at"] {
                assert!(s[field].is_string(), "{field} in {s}");
            }
        }
        assert!(listed.iter().any(|s| s["user_agent"] == "Laptop/1.0"));
        // No secret, nor anything of it, is shown.
        let text = serde_json::to_string(&listed).expect("json");
        assert!(!text.contains(&laptop) && !text.contains(&phone));
    }
);

db_test!(
    async fn ending_a_session_stops_its_token_at_once_and_only_its_owner_may(app) {
        app.signup("ada@example.com").await;
        let laptop = app.login_as("ada@example.com", "Laptop").await;
        let phone = app.login_as("ada@example.com", "Phone").await;
        let grace = app.signup_token("grace@example.com").await;
        let laptop_id = current_id(&app.sessions(&laptop).await);
        assert!(app.works(&laptop).await);

        // Someone else cannot end it, nor learn that it exists.
        let path = format!("/api/v1/sessions/{laptop_id}");
        let (status, _) = app.call(Method::DELETE, &path, Some(&grace), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(app.works(&laptop).await);

        let (status, _) = app.call(Method::DELETE, &path, Some(&phone), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(!app.works(&laptop).await, "the ended session is refused at once");
        assert!(app.works(&phone).await);
        let (status, _) = app.call(Method::DELETE, &path, Some(&phone), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "ending it twice");

        // All the others at once: the current one stays.
        let tablet = app.login_as("ada@example.com", "Tablet").await;
        let (status, body) = app.call(Method::DELETE, "/api/v1/sessions", Some(&phone), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["revoked"], 2, "the signup's session and the tablet's");
        assert!(!app.works(&tablet).await);
        assert!(app.works(&phone).await);
        assert_eq!(app.sessions(&phone).await.len(), 1);
        assert!(app.works(&grace).await, "other people's sessions are untouched");
    }
);

db_test!(
    async fn changing_the_password_needs_the_current_one_and_ends_every_other_session(app) {
        app.signup("ada@example.com").await;
        let laptop = app.login_as("ada@example.com", "Laptop").await;
        let phone = app.login_as("ada@example.com", "Phone").await;
        let change = |current: &str, new: &str| {
            json!({"current_password": current, "new_password": new})
        };

        let (status, body) = app
            .post("/api/v1/password/change", Some(&phone), change("not my password", "a fresh passphrase"))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["errors"][0]["field"], "current_password");
        assert_eq!(body["errors"][0]["code"], "incorrect");
        for (new, code) in [
            ("short", "too_short"),
            ("password1", "too_common"),
            ("ada@example.com", "too_guessable"),
        ] {
            let (status, body) = app
                .post("/api/v1/password/change", Some(&phone), change(PASSWORD, new))
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{new}");
            assert_eq!(body["errors"][0]["field"], "new_password");
            assert_eq!(body["errors"][0]["code"], code, "{new}");
        }
        let (status, body) = app.post("/api/v1/password/change", Some(&phone), json!({})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["errors"].as_array().map(Vec::len), Some(2));
        assert!(app.works(&laptop).await, "nothing changed yet");

        let (status, body) = app
            .post("/api/v1/password/change", Some(&phone), change(PASSWORD, "a fresh passphrase"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["revoked"], 2);
        assert!(!app.works(&laptop).await, "other sessions end");
        assert!(app.works(&phone).await, "the current one goes on");

        let (status, _) = app
            .post("/api/v1/login", None, json!({"email": "ada@example.com", "password": PASSWORD}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password is gone");
        let (status, _) = app
            .post(
                "/api/v1/login",
                None,
                json!({"email": "ada@example.com", "password": "a fresh passphrase"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
);

db_test!(
    async fn a_session_lapses_when_unused_for_the_idle_lifetime_and_at_its_absolute_end(app) {
        let idle = i64::from(app.app.config.session_idle_hours);
        let lifetime = i64::from(app.app.config.session_lifetime_hours);
        assert!(idle < lifetime);
        let used = app.signup_token("ada@example.com").await;
        let unused = app.login_as("ada@example.com", "Forgotten").await;

        // Used a little before each idle lifetime ends, a session lives on...
        let mut elapsed = 0;
        while elapsed + idle - 1 < lifetime {
            app.clock.advance(Duration::hours(idle - 1));
            elapsed += idle - 1;
            assert!(app.works(&used).await, "used after {elapsed} h");
            if elapsed == idle - 1 {
                app.clock.advance(Duration::hours(2));
                elapsed += 2;
                assert!(!app.works(&unused).await, "unused for {elapsed} h");
                let listed = app.sessions(&used).await;
                assert_eq!(listed.len(), 1, "a lapsed session is not listed: {listed:?}");
            }
        }
        // ... until its absolute end, however active it is.
        app.clock.advance(Duration::hours(lifetime - elapsed + 1));
        assert!(!app.works(&used).await, "past the absolute lifetime");
    }
);

db_test!(
    async fn an_api_key_has_no_sessions_and_a_bot_no_password(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (_, key) = app.post("/api/v1/api-keys", Some(&owner), json!({"name": "k"})).await;
        let key = key["key"].as_str().expect("key").to_owned();
        let (status, body) = app.get("/api/v1/sessions", Some(&key)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "insufficient_scope");

        let (_, bot) = app
            .post("/api/v1/bots", Some(&owner), json!({"name": "b", "scopes": ["dashboard"]}))
            .await;
        let bot = bot["token"].as_str().expect("token").to_owned();
        let (status, body) = app
            .post(
                "/api/v1/password/change",
                Some(&bot),
                json!({"current_password": "x", "new_password": "a fresh passphrase"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "not_a_person");
        // A bot's own tokens are its sessions.
        let listed = app.sessions(&bot).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["kind"], "bot");
    }
);

db_test!(
    async fn a_stolen_session_cannot_guess_the_current_password_at_leisure(app) {
        let token = app.signup_token("ada@example.com").await;
        let mut statuses = Vec::new();
        for i in 0..7 {
            let body = json!({"current_password": format!("guess number {i}"), "new_password": "a fresh passphrase"});
            statuses.push(app.post("/api/v1/password/change", Some(&token), body).await.0.as_u16());
        }
        assert_eq!(statuses, [422, 422, 422, 422, 422, 429, 429]);
    }
);
