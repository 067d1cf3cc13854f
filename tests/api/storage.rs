//! What is stored: secrets only as digests, passwords only as Argon2id, and nothing lost when
//! the server restarts.

use reqwest::StatusCode;
use saaskit::db::Db;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::db_test;
use crate::helpers::*;

async fn fetch_strings(db: &Db, sql: &'static str) -> Vec<String> {
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
    }
    .expect("query")
}

async fn fetch_bytes(db: &Db, sql: &'static str) -> Vec<Vec<u8>> {
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
    }
    .expect("query")
}

db_test! {
    async fn tokens_and_passwords_are_never_stored_in_clear(app) {
        let token = app.signup_token("ada@example.com").await;
        let hashes = fetch_bytes(&app.db, "SELECT hash FROM tokens").await;
        assert_eq!(hashes, vec![Sha256::digest(token.as_bytes()).to_vec()]);
        let prefixes = fetch_strings(&app.db, "SELECT prefix FROM tokens").await;
        assert_eq!(prefixes, vec![token[..12].to_owned()]);

        let stored = fetch_strings(&app.db, "SELECT password_hash FROM users").await;
        assert_eq!(stored.len(), 1);
        assert!(stored[0].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", stored[0]);
        assert!(!stored[0].contains(PASSWORD));

        // No text column anywhere holds the token or the password.
        for sql in [
            "SELECT email || first_name || last_name || password_hash FROM users",
            "SELECT prefix || scopes || COALESCE(user_agent, '') || COALESCE(ip, '') FROM tokens",
        ] {
            for value in fetch_strings(&app.db, sql).await {
                assert!(!value.contains(&token[4..]) && !value.contains(PASSWORD), "{value}");
            }
        }
    }
}

db_test! {
    async fn a_restart_loses_nothing(app) {
        let token = app.signup_token("ada@example.com").await;
        let test_db = app.test_db.clone();
        let clock = app.clock.clone();
        drop(app);

        let again = TestApp::spawn_on(test_db, clock).await;
        let (status, me) = again.get("/api/v1/me", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["user"]["email"], "ada@example.com");
        let (status, _) = again
            .post("/api/v1/login", None, json!({"email": "ada@example.com", "password": PASSWORD}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}

db_test! {
    async fn migrations_can_run_again_without_effect(app) {
        app.signup("ada@example.com").await;
        crate::helpers::products().migrate(&app.db).await.expect("second migration run is a no-op");
        assert_eq!(app.count("users").await, 1);
        assert_eq!(app.count("plans").await, 2);
    }
}

db_test! {
    async fn one_current_subscription_per_business_is_enforced_by_the_database(app) {
        let body = app.signup("ada@example.com").await;
        let business: uuid::Uuid = body["business"]["id"].as_str().and_then(|s| s.parse().ok()).expect("business id");
        let now = app.clock_now();
        let sub = saaskit::store::subscriptions::Subscription {
            id: uuid::Uuid::now_v7(),
            business_id: business,
            plan_id: uuid::Uuid::parse_str("00000000-0000-7000-8000-000000000002").expect("uuid"),
            status: "active".into(),
            current_period_start: now,
            current_period_end: now,
            is_current: true,
            pending_plan_id: None,
            cancel_at_period_end: false,
            ended_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut tx = app.db.begin().await.expect("begin");
        let err = saaskit::store::subscriptions::insert(tx.conn(), &sub).await.expect_err("second current subscription");
        assert!(err.as_database_error().is_some_and(|e| e.is_unique_violation()), "{err}");
        drop(tx);
        let past = saaskit::store::subscriptions::Subscription { is_current: false, id: uuid::Uuid::now_v7(), ..sub };
        let mut tx = app.db.begin().await.expect("begin");
        saaskit::store::subscriptions::insert(tx.conn(), &past).await.expect("history rows are unlimited");
        tx.commit().await.expect("commit");
    }
}
