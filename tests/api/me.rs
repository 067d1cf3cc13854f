use chrono::Duration;
use reqwest::StatusCode;

use crate::db_test;
use crate::helpers::*;

db_test! {
    async fn me_describes_user_business_role_and_plan(app) {
        let token = app.signup_token("ada@example.com").await;
        let (status, me) = app.get("/api/v1/me", Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["user"]["email"], "ada@example.com");
        assert_eq!(me["user"]["first_name"], "Ada");
        assert_eq!(me["user"]["last_name"], "Lovelace");
        assert_eq!(me["role"], "owner");
        assert_eq!(me["subscription"]["status"], "trialing");
        assert_eq!(me["subscription"]["current_period_end"], "2026-03-16T12:00:00Z");
        let plan = &me["subscription"]["plan"];
        assert_eq!(plan["code"], "free-trial");
        assert_eq!(plan["renews"], false);
        assert_eq!(plan["limits"]["applications"], 3);
        assert_eq!(plan["limits"]["members"], 5);
        assert_eq!(plan["limits"]["recordings"], 1000);
    }
}

db_test! {
    async fn me_accepts_bearer_and_token_schemes_only(app) {
        let token = app.signup_token("ada@example.com").await;
        for header in [format!("Bearer {token}"), format!("Token {token}"), format!("bearer  {token} ")] {
            let res = app.client.get(app.url("/api/v1/me")).header("authorization", &header).send().await.expect("send");
            assert_eq!(res.status(), StatusCode::OK, "{header}");
        }
        for header in [
            token.clone(),
            format!("Basic {token}"),
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            format!("Bearer {token}x"),
            format!("Bearer {}", "a".repeat(10_000)),
            "Bearer sks_\u{e9}\u{e8}".to_owned(),
        ] {
            let res = app.client.get(app.url("/api/v1/me")).header("authorization", header.as_bytes()).send().await.expect("send");
            let res_headers = res.headers().clone();
            assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
            assert_eq!(res_headers.get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
        }
        let res = app.client.get(app.url("/api/v1/me")).send().await.expect("send");
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
}

db_test! {
    async fn sessions_expire_after_their_lifetime(app) {
        let token = app.signup_token("ada@example.com").await;
        // Used every six days (within the idle lifetime), it lives 30 days in all.
        for _ in 0..4 {
            app.clock.advance(Duration::days(6));
            let (status, _) = app.get("/api/v1/me", Some(&token)).await;
            assert_eq!(status, StatusCode::OK);
        }
        app.clock.advance(Duration::days(6) - Duration::seconds(1));
        let (status, _) = app.get("/api/v1/me", Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
        app.clock.advance(Duration::seconds(1));
        let res = app.client.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.expect("send");
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
}

db_test! {
    async fn use_of_a_token_is_recorded_at_most_once_a_minute(app) {
        let token = app.signup_token("ada@example.com").await;
        let last_used = |app: &TestApp| {
            let db = app.db.clone();
            async move {
                let sql = "SELECT last_used_at FROM tokens";
                match &db {
                    saaskit::db::Db::Sqlite(p) => sqlx::query_scalar::<_, saaskit::db::Timestamp>(sql).fetch_one(p).await,
                    saaskit::db::Db::Postgres(p) => sqlx::query_scalar::<_, saaskit::db::Timestamp>(sql).fetch_one(p).await,
                }
                .expect("read last_used_at")
            }
        };
        let created = last_used(&app).await;
        app.clock.advance(Duration::seconds(30));
        app.get("/api/v1/me", Some(&token)).await;
        assert_eq!(last_used(&app).await, created, "within a minute nothing is written");
        app.clock.advance(Duration::seconds(31));
        app.get("/api/v1/me", Some(&token)).await;
        assert_eq!(last_used(&app).await, app.clock_now());
    }
}

impl TestApp {
    pub fn clock_now(&self) -> saaskit::db::Timestamp {
        use saaskit::clock::Clock as _;
        self.clock.now()
    }
}
