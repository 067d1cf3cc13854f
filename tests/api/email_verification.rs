//! Email verification: the mailed link, asking for a new one, the addresses other flows prove,
//! and `SAASKIT_REQUIRE_VERIFIED_EMAIL`.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;
use crate::smtp_sink::key_in;

async fn verify(app: &TestApp, key: &str) -> (StatusCode, Value) {
    app.post("/api/v1/email/verify", None, json!({"key": key}))
        .await
}

async fn resend(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.call(
        reqwest::Method::POST,
        "/api/v1/email/verify/resend",
        Some(token),
        None,
    )
    .await
}

async fn verified(app: &TestApp, token: &str) -> bool {
    let (status, me) = app.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me["user"]["email_verified"]
        .as_bool()
        .unwrap_or_else(|| panic!("no email_verified in {me}"))
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await
}

/// The app again, on the same database and clock, with verified emails required.
async fn requiring_verification(app: TestApp) -> TestApp {
    let (test_db, clock) = (app.test_db.clone(), app.clock.clone());
    drop(app);
    TestApp::spawn_configured(test_db, clock, |c| c.require_verified_email = true).await
}

async fn signup_body(app: &TestApp, email: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/signup",
        None,
        json!({
            "business": {"name": "Acme"},
            "email": email,
            "first_name": "Ada",
            "last_name": "Lovelace",
            "password": PASSWORD,
        }),
    )
    .await
}

db_test! {
    async fn signup_mails_a_link_that_verifies_the_email_once(app) {
        let signed_up = app.signup("ada@example.com").await;
        assert_eq!(signed_up["user"]["email_verified"], false);
        let token = token_of(&signed_up);
        assert!(!verified(&app, &token).await, "unverified until the link is used");

        let mail = app.only_mail_to("ada@example.com", VERIFICATION_SUBJECT).await;
        let key = key_in(&mail);
        assert!(!signed_up.to_string().contains(&key), "the key never appears in a response");
        let link = format!("http://localhost:8000/verify-email?key={key}");
        assert_eq!(mail.matches(&link).count(), 2, "in the text and the HTML part: {mail}");
        assert!(mail.contains("the next 48 hours"), "{mail}");

        let (status, body) = verify(&app, &key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"email": "ada@example.com", "email_verified": true}));
        assert!(verified(&app, &token).await, "`me` sees it at once");
        assert_eq!(app.count("audit_log WHERE action = 'email.verified'").await, 1);

        // A used link is dead, and tells so.
        let (status, body) = verify(&app, &key).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::GONE, json!("key_used")));
        assert!(verified(&app, &token).await);
    }
}

db_test! {
    async fn unknown_and_malformed_keys_answer_like_a_bad_reset_key(app) {
        let token = app.signup_token("ada@example.com").await;
        for bad in ["nope", "", "x\u{0}y", &"k".repeat(500)] {
            let (status, body) = verify(&app, bad).await;
            assert_eq!((status, body["code"].clone()), (StatusCode::NOT_FOUND, json!("key_not_found")), "{bad:?}");
        }
        // A key of another purpose is not a verification key.
        app.post("/api/v1/password/reset", None, json!({"email": "ada@example.com"})).await;
        let reset_key = key_in(&app.only_mail_to("ada@example.com", RESET_SUBJECT).await);
        let (status, body) = verify(&app, &reset_key).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::NOT_FOUND, json!("key_not_found")));
        let (status, body) = app.post("/api/v1/email/verify", None, json!({})).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("validation_failed")));
        assert!(!verified(&app, &token).await);
    }
}

db_test! {
    async fn the_link_expires_after_the_configured_lifetime(app) {
        let token = app.signup_token("ada@example.com").await;
        let key = app.verification_key("ada@example.com").await;
        app.clock.advance(Duration::hours(48));
        let (status, body) = verify(&app, &key).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::GONE, json!("key_expired")));
        assert!(!verified(&app, &token).await);

        // SAASKIT_EMAIL_VERIFICATION_TTL_HOURS sets the lifetime.
        let (test_db, clock) = (app.test_db.clone(), app.clock.clone());
        drop(app);
        let app = TestApp::spawn_configured(test_db, clock, |c| c.email_verification_ttl_hours = 2).await;
        app.signup("grace@example.com").await;
        let key = app.verification_key("grace@example.com").await;
        app.clock.advance(Duration::hours(2) - Duration::seconds(1));
        let (status, _) = verify(&app, &key).await;
        assert_eq!(status, StatusCode::OK);
    }
}

db_test! {
    async fn a_new_link_kills_the_previous_one(app) {
        let token = app.signup_token("ada@example.com").await;
        let first = app.verification_key("ada@example.com").await;
        let (status, body) = resend(&app, &token).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let second = app.verification_key("ada@example.com").await;
        assert_ne!(first, second);
        assert_eq!(app.mail_to("ada@example.com", VERIFICATION_SUBJECT).await.len(), 2);

        let (status, body) = verify(&app, &first).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::GONE, json!("key_revoked")));
        assert!(!verified(&app, &token).await);
        let (status, _) = verify(&app, &second).await;
        assert_eq!(status, StatusCode::OK);
        assert!(verified(&app, &token).await);
    }
}

db_test! {
    async fn a_verified_address_gets_no_new_link(app) {
        let token = app.signup_token("ada@example.com").await;
        let key = app.verification_key("ada@example.com").await;
        assert_eq!(verify(&app, &key).await.0, StatusCode::OK);
        let (status, body) = resend(&app, &token).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::CONFLICT, json!("already_verified")));
        assert_eq!(app.mail_to("ada@example.com", VERIFICATION_SUBJECT).await.len(), 1, "nothing more was mailed");
    }
}

db_test! {
    async fn bots_and_api_keys_have_no_address_to_verify(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (_, bot) = app
            .post("/api/v1/bots", Some(&owner), json!({"name": "b", "scopes": ["dashboard"]}))
            .await;
        let (status, body) = resend(&app, bot["token"].as_str().expect("bot token")).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::FORBIDDEN, json!("not_a_person")));
        let (_, key) = app.post("/api/v1/api-keys", Some(&owner), json!({"name": "k"})).await;
        let (status, body) = resend(&app, key["key"].as_str().expect("api key")).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::FORBIDDEN, json!("insufficient_scope")));
        let (status, body) = app.call(reqwest::Method::POST, "/api/v1/email/verify/resend", None, None).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::UNAUTHORIZED, json!("unauthenticated")));
        assert_eq!(app.mail_to("ada@example.com", VERIFICATION_SUBJECT).await.len(), 1);
    }
}

db_test! {
    async fn new_links_are_limited_per_account(app) {
        let ada = app.signup_token("ada@example.com").await;
        let grace = app.signup_token("grace@example.com").await;
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(resend(&app, &ada).await.0.as_u16());
        }
        assert_eq!(statuses, [202, 202, 202, 202, 202, 429]);
        assert_eq!(resend(&app, &grace).await.0, StatusCode::ACCEPTED, "another account is not affected");
        app.clock.advance(Duration::hours(1));
        let ada = app.login_token("ada@example.com").await;
        assert_eq!(resend(&app, &ada).await.0, StatusCode::ACCEPTED, "a new window");

        // SAASKIT_RATE_LIMIT=off turns it off too.
        let (test_db, clock) = (app.test_db.clone(), app.clock.clone());
        drop(app);
        let app = TestApp::spawn_configured(test_db, clock, |c| {
            c.rate_limit = saaskit::ratelimit::Switch::Off;
        })
        .await;
        for _ in 0..7 {
            assert_eq!(resend(&app, &ada).await.0, StatusCode::ACCEPTED);
        }
    }
}

db_test! {
    async fn failed_verifications_count_against_the_address(app) {
        let (test_db, clock) = (app.test_db.clone(), app.clock.clone());
        drop(app);
        let app = TestApp::spawn_configured(test_db, clock, |c| {
            c.rate_limit_keys_ip = saaskit::ratelimit::Rule::per(3, 600);
        })
        .await;
        let token = app.signup_token("ada@example.com").await;
        let key = app.verification_key("ada@example.com").await;
        for i in 0..3 {
            assert_eq!(verify(&app, &format!("guess{i}")).await.0, StatusCode::NOT_FOUND);
        }
        let (status, body) = verify(&app, &key).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::TOO_MANY_REQUESTS, json!("rate_limited")));
        assert!(!verified(&app, &token).await);
        app.clock.advance(Duration::minutes(10));
        assert_eq!(verify(&app, &key).await.0, StatusCode::OK, "the key itself still works");
    }
}

/// Asks for a reset link for `email` and confirms it with `password`; the answer.
async fn reset_password(app: &TestApp, email: &str, password: &str) -> Value {
    app.post("/api/v1/password/reset", None, json!({"email": email}))
        .await;
    let key = key_in(&app.only_mail_to(email, RESET_SUBJECT).await);
    let (status, body) = app
        .post(
            "/api/v1/password/reset/confirm",
            None,
            json!({"key": key, "password": password}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

db_test! {
    async fn a_confirmed_password_reset_verifies_the_email(app) {
        app.signup("ada@example.com").await;
        let body = reset_password(&app, "ada@example.com", "a brand new passphrase").await;
        assert!(verified(&app, &token_of(&body)).await);
        // The verification link has nothing left to prove, and says so harmlessly.
        let verification = app.verification_key("ada@example.com").await;
        assert_eq!(verify(&app, &verification).await.0, StatusCode::OK);
    }
}

db_test! {
    async fn an_accepted_invitation_does_not_verify_but_mails_a_link(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (status, inv) = app
            .post("/api/v1/invitations", Some(&owner), json!({"email": "grace@example.com"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{inv}");
        let key = inv["key"].as_str().expect("key").to_owned();
        let body = json!({"first_name": "Grace", "last_name": "Hopper", "password": "invited passphrase"});
        let (status, joined) = app.post(&format!("/api/v1/invitations/{key}/accept"), None, body).await;
        assert_eq!(status, StatusCode::CREATED, "{joined}");
        // The inviter was shown the invitation's key: using it proves nothing about who reads
        // the mailbox.
        assert_eq!(joined["user"]["email_verified"], false);
        let token = token_of(&joined);
        assert!(!verified(&app, &token).await);
        let link = app.verification_key("grace@example.com").await;
        assert_eq!(verify(&app, &link).await.0, StatusCode::OK);
        assert!(verified(&app, &token).await);
    }
}

db_test! {
    async fn with_verification_required_signup_opens_no_session(app) {
        let app = requiring_verification(app).await;
        let (status, body) = signup_body(&app, "ada@example.com").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["token"], Value::Null);
        assert_eq!(body["token_expires_at"], Value::Null);
        assert_eq!(body["user"]["email_verified"], false);
        assert_eq!(app.count("tokens").await, 0, "no session exists");
        let (status, body) = app
            .post(
                "/saas/signup",
                None,
                json!({"business": {"name": "Old"}, "email": "old@example.com", "first_name": "O",
                       "last_name": "L", "password1": PASSWORD, "password2": PASSWORD}),
            )
            .await;
        assert_eq!((status, &body), (StatusCode::CREATED, &json!({"token": null})));
        assert_eq!(app.count("tokens").await, 0);
    }
}

db_test! {
    async fn with_verification_required_only_the_right_password_learns_the_email_is_unverified(app) {
        let app = requiring_verification(app).await;
        signup_body(&app, "ada@example.com").await;
        let (wrong_status, wrong) = login(&app, "ada@example.com", "not the password").await;
        let (unknown_status, unknown) = login(&app, "nobody@example.com", "not the password").await;
        assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
        assert_eq!((wrong_status, &wrong), (unknown_status, &unknown), "identical for both");

        let (status, body) = login(&app, "ada@example.com", PASSWORD).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::FORBIDDEN, json!("email_not_verified")));
        let (status, body) = app.post("/saas/login", None, json!({"email": "ada@example.com", "password": PASSWORD})).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::FORBIDDEN, json!("email_not_verified")));

        let key = app.verification_key("ada@example.com").await;
        assert_eq!(verify(&app, &key).await.0, StatusCode::OK);
        let (status, body) = login(&app, "ada@example.com", PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(verified(&app, &token_of(&body)).await);
    }
}

db_test! {
    async fn with_verification_required_a_password_reset_lets_the_owner_in(app) {
        let app = requiring_verification(app).await;
        signup_body(&app, "ada@example.com").await;
        reset_password(&app, "ada@example.com", "a brand new passphrase").await;
        let (status, _) = login(&app, "ada@example.com", "a brand new passphrase").await;
        assert_eq!(status, StatusCode::OK);
    }
}

db_test! {
    async fn with_verification_required_an_invitee_logs_in_after_verifying(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (_, inv) = app
            .post("/api/v1/invitations", Some(&owner), json!({"email": "grace@example.com", "send_email": false}))
            .await;
        let key = inv["key"].as_str().expect("key").to_owned();
        let app = requiring_verification(app).await;
        let body = json!({"first_name": "Grace", "last_name": "Hopper", "password": "invited passphrase"});
        let (status, joined) = app.post(&format!("/api/v1/invitations/{key}/accept"), None, body).await;
        assert_eq!(status, StatusCode::CREATED, "{joined}");
        assert_eq!(joined["token"], Value::Null);
        assert_eq!(joined["token_expires_at"], Value::Null);
        let (status, body) = login(&app, "grace@example.com", "invited passphrase").await;
        assert_eq!((status, body["code"].clone()), (StatusCode::FORBIDDEN, json!("email_not_verified")));
        let link = app.verification_key("grace@example.com").await;
        assert_eq!(verify(&app, &link).await.0, StatusCode::OK);
        let (status, _) = login(&app, "grace@example.com", "invited passphrase").await;
        assert_eq!(status, StatusCode::OK);
    }
}
