//! Signing in beyond the password: TOTP two-factor and its recovery codes, a business's rule
//! that its people use it, and magic links. The codes are computed here from RFC 6238 (module
//! `rfc6238`), not by the server's library, at times picked with the app's clock.

use chrono::Duration;
use reqwest::{Method, StatusCode};
use saaskit::config::Config;
use saaskit::db::Db;
use saaskit::ratelimit::Rule;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;
use crate::smtp_sink::key_in;

use rfc6238::{base32_decode, totp};

#[path = "../common/rfc6238.rs"]
mod rfc6238;

/// One TOTP step.
const STEP: Duration = Duration::seconds(30);

const TURNED_ON: &str = "Two-factor sign-in turned on";
const TURNED_OFF: &str = "Two-factor sign-in turned off";
const MAGIC_SUBJECT: &str = "Your sign-in link";

/// A person's authenticator app: the secret, and the recovery codes shown at confirmation.
struct Authenticator {
    secret_base32: String,
    secret: Vec<u8>,
    recovery_codes: Vec<String>,
}

impl Authenticator {
    /// The six-digit code `steps` steps away from the app's present time.
    fn code(&self, app: &TestApp, steps: i64) -> String {
        totp(&self.secret, now_secs(app) + 30 * steps, 6)
    }

    /// A well-formed code that no step within two of the present produces.
    fn wrong_code(&self, app: &TestApp) -> String {
        let near: Vec<String> = (-2..=2).map(|s| self.code(app, s)).collect();
        (0..1_000_000)
            .map(|n| format!("{n:06}"))
            .find(|c| !near.contains(c))
            .expect("a code far from the present")
    }
}

fn now_secs(app: &TestApp) -> i64 {
    app.clock_now().as_datetime().timestamp()
}

fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// Asserts a problem answer with this status and code.
#[track_caller]
fn assert_refused(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got, body) = answer;
    assert_eq!(
        (*got, body["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
}

/// Asserts a 422 with a field error of this code on `field`.
#[track_caller]
fn assert_field_error(answer: &(StatusCode, Value), field: &str, code: &str) {
    assert_refused(
        answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let errors = answer.1["errors"].as_array().expect("field errors");
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == field && e["code"] == code),
        "no {code} on {field}: {}",
        answer.1
    );
}

async fn setup(app: &TestApp, session: &str) -> (StatusCode, Value) {
    app.call(Method::POST, "/api/v1/mfa/totp/setup", Some(session), None)
        .await
}

async fn confirm(app: &TestApp, session: &str, code: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/mfa/totp/confirm",
        Some(session),
        json!({"code": code}),
    )
    .await
}

async fn mfa_status(app: &TestApp, session: &str) -> Value {
    let (status, body) = app.get("/api/v1/mfa", Some(session)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Sets TOTP up and confirms it with the present step's code, which is then spent: move the
/// clock a step before logging in with a code.
async fn enrol(app: &TestApp, session: &str) -> Authenticator {
    let (status, body) = setup(app, session).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret_base32 = body["secret"].as_str().expect("secret").to_owned();
    let secret = base32_decode(&secret_base32);
    let code = totp(&secret, now_secs(app), 6);
    let (status, confirmed) = confirm(app, session, &code).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    Authenticator {
        secret_base32,
        secret,
        recovery_codes: strings(&confirmed["recovery_codes"]),
    }
}

async fn login(app: &TestApp, email: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/login",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await
}

/// Asserts the answer of a first step that asks for the second factor; its `mfa_token`.
#[track_caller]
fn mfa_token_in(answer: &(StatusCode, Value)) -> String {
    let (status, body) = answer;
    assert_eq!(*status, StatusCode::OK, "{body}");
    assert_eq!(body["mfa_required"], true, "{body}");
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]), "{body}");
    assert!(body.get("token").is_none(), "no session yet: {body}");
    body["mfa_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("no mfa_token in {body}"))
        .to_owned()
}

/// Logs in with the password of someone with two-factor on; the `mfa_token` of the second step.
async fn mfa_token(app: &TestApp, email: &str) -> String {
    mfa_token_in(&login(app, email).await)
}

async fn second_step(app: &TestApp, mfa_token: &str, code: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/login/mfa",
        None,
        json!({"mfa_token": mfa_token, "code": code}),
    )
    .await
}

/// Asserts a completed login, and that its session works; the session.
async fn assert_signed_in(app: &TestApp, answer: (StatusCode, Value), email: &str) -> String {
    let (status, body) = answer;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["token_expires_at"].is_string(), "{body}");
    assert_eq!(body["user"]["email"], email, "{body}");
    assert!(body["business"]["id"].is_string(), "{body}");
    let token = token_of(&body);
    let (status, me) = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["email"], email);
    token
}

/// The entries of the business's audit log with this action, newest first.
async fn audited(app: &TestApp, owner: &str, action: &str) -> Vec<Value> {
    let (status, page) = app
        .get(
            &format!("/api/v1/audit-log?action={action}&limit=200"),
            Some(owner),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["data"].as_array().expect("data").clone()
}

/// The same database and clock, served with `configure`'s settings.
async fn reconfigured(app: TestApp, configure: impl FnOnce(&mut Config)) -> TestApp {
    let (test_db, clock) = (app.test_db.clone(), app.clock.clone());
    drop(app);
    TestApp::spawn_configured(test_db, clock, configure).await
}

async fn one_value(app: &TestApp, sql: &'static str) -> String {
    match &app.db {
        Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
    }
    .expect("read one value")
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII");
            out.push(u8::from_str_radix(hex, 16).expect("a percent escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

db_test! {
    async fn totp_setup_shows_a_secret_and_is_confirmed_by_a_right_code_only(app) {
        let ada = app.signup_token("ada@example.com").await;
        assert_eq!(mfa_status(&app, &ada).await, json!({"totp_enabled": false, "recovery_codes_remaining": 0}));
        assert_refused(&confirm(&app, &ada, "123456").await, StatusCode::CONFLICT, "mfa_setup_required");

        let (status, first) = setup(&app, &ada).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        let secret = first["secret"].as_str().expect("secret");
        assert!(!secret.is_empty() && secret.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)), "base32 without padding: {secret}");
        assert!(base32_decode(secret).len() >= 16, "RFC 4226 asks for at least 128 bits: {secret}");
        let uri = reqwest::Url::parse(first["otpauth_uri"].as_str().expect("otpauth_uri")).expect("a URI");
        assert_eq!((uri.scheme(), uri.host_str()), ("otpauth", Some("totp")), "{uri}");
        assert_eq!(percent_decoded(uri.path()), "/saaskit:ada@example.com", "{uri}");
        let query: Vec<(String, String)> = uri.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert!(query.contains(&("secret".into(), secret.into())), "{uri}");
        assert!(query.contains(&("issuer".into(), "saaskit".into())), "{uri}");
        assert!(first["qr_svg"].as_str().is_some_and(|svg| svg.contains("<svg")), "{first}");
        assert_eq!(mfa_status(&app, &ada).await["totp_enabled"], false, "nothing is active before confirmation");

        // Setting up again replaces the pending secret: the first one's codes no longer confirm.
        let (status, second) = setup(&app, &ada).await;
        assert_eq!(status, StatusCode::OK, "{second}");
        let replaced = base32_decode(secret);
        let current = base32_decode(second["secret"].as_str().expect("secret"));
        assert_ne!(replaced, current, "a new secret");
        let old_code = totp(&replaced, now_secs(&app), 6);
        let new_code = totp(&current, now_secs(&app), 6);
        if old_code != new_code {
            assert_field_error(&confirm(&app, &ada, &old_code).await, "code", "invalid_mfa_code");
        }
        let wrong = if new_code == "000000" { "000001" } else { "000000" };
        assert_field_error(&confirm(&app, &ada, wrong).await, "code", "invalid_mfa_code");
        assert_eq!(mfa_status(&app, &ada).await["totp_enabled"], false);

        let (status, confirmed) = confirm(&app, &ada, &new_code).await;
        assert_eq!(status, StatusCode::OK, "{confirmed}");
        let codes = strings(&confirmed["recovery_codes"]);
        assert_eq!(codes.len(), 10, "{confirmed}");
        let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), 10, "{codes:?}");
        for code in &codes {
            let (left, right) = code.split_once('-').unwrap_or_else(|| panic!("xxxxx-xxxxx: {code}"));
            for part in [left, right] {
                assert!(part.len() == 5 && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "xxxxx-xxxxx: {code}");
            }
        }
        assert_eq!(mfa_status(&app, &ada).await, json!({"totp_enabled": true, "recovery_codes_remaining": 10}));

        assert_refused(&setup(&app, &ada).await, StatusCode::CONFLICT, "mfa_already_enabled");
        assert_refused(&confirm(&app, &ada, &totp(&current, now_secs(&app) + 30, 6)).await, StatusCode::CONFLICT, "mfa_already_enabled");
        let (status, _) = app.get("/api/v1/me", Some(&ada)).await;
        assert_eq!(status, StatusCode::OK, "the session that enrolled goes on");
    }
}

db_test! {
    async fn with_totp_on_login_asks_for_a_code_before_opening_a_session(app) {
        let signed_up = app.signup("ada@example.com").await;
        let ada = token_of(&signed_up);
        let authenticator = enrol(&app, &ada).await;
        let sessions = app.count("tokens").await;

        let answer = login(&app, "ada@example.com").await;
        let token = mfa_token_in(&answer);
        assert!(!answer.1.to_string().contains(&authenticator.secret_base32));
        // The legacy login says the same.
        let legacy = app.post("/saas/login", None, json!({"email": "ada@example.com", "password": PASSWORD})).await;
        mfa_token_in(&legacy);
        assert_eq!(app.count("tokens").await, sessions, "no session opened by the password alone");
        // A wrong password is still just that.
        let (status, body) = app.post("/api/v1/login", None, json!({"email": "ada@example.com", "password": "not the password"})).await;
        assert_refused(&(status, body), StatusCode::UNAUTHORIZED, "invalid_credentials");

        // The code that confirmed the set-up was spent there.
        let spent = authenticator.code(&app, 0);
        assert_refused(&second_step(&app, &token, &spent).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");
        assert_eq!(app.count("tokens").await, sessions);

        app.clock.advance(STEP);
        let code = authenticator.code(&app, 0);
        let answer = second_step(&app, &token, &code).await;
        assert_eq!(answer.1["user"]["id"], signed_up["user"]["id"]);
        assert_eq!(answer.1["business"]["id"], signed_up["business"]["id"]);
        let session = assert_signed_in(&app, answer, "ada@example.com").await;
        assert_ne!(session, ada);

        // The same code once more, with a fresh mfa_token, is a replay.
        let token = mfa_token(&app, "ada@example.com").await;
        assert_refused(&second_step(&app, &token, &code).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");

        // Missing fields.
        for body in [json!({"mfa_token": token}), json!({"code": code}), json!({})] {
            let answer = app.post("/api/v1/login/mfa", None, body).await;
            assert_refused(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        }
    }
}

db_test! {
    async fn codes_of_the_present_step_and_one_either_side_are_accepted_once_each(app) {
        // Loose login limits: the replays below are failures too.
        let app = reconfigured(app, |c| c.rate_limit_login_account = Rule::per(100, 900)).await;
        let ada = app.signup_token("ada@example.com").await;
        let authenticator = enrol(&app, &ada).await;
        app.clock.advance(Duration::minutes(5));

        let token = mfa_token(&app, "ada@example.com").await;
        for far in [-2, 2] {
            let code = authenticator.code(&app, far);
            assert_refused(&second_step(&app, &token, &code).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");
        }
        // In the order a slow then a fast clock would give them.
        for near in [-1, 0, 1] {
            let token = if near == -1 { token.clone() } else { mfa_token(&app, "ada@example.com").await };
            let code = authenticator.code(&app, near);
            let answer = second_step(&app, &token, &code).await;
            assert_signed_in(&app, answer, "ada@example.com").await;
            let again = mfa_token(&app, "ada@example.com").await;
            assert_refused(&second_step(&app, &again, &code).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");
        }
    }
}

db_test! {
    async fn a_recovery_code_signs_in_once(app) {
        let ada = app.signup_token("ada@example.com").await;
        let authenticator = enrol(&app, &ada).await;
        let [first, second, ..] = &authenticator.recovery_codes[..] else { panic!("recovery codes") };

        let token = mfa_token(&app, "ada@example.com").await;
        let session = assert_signed_in(&app, second_step(&app, &token, first).await, "ada@example.com").await;
        assert_eq!(mfa_status(&app, &session).await, json!({"totp_enabled": true, "recovery_codes_remaining": 9}));

        let token = mfa_token(&app, "ada@example.com").await;
        assert_refused(&second_step(&app, &token, first).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");
        assert_signed_in(&app, second_step(&app, &token, second).await, "ada@example.com").await;
        assert_eq!(mfa_status(&app, &ada).await["recovery_codes_remaining"], 8);

        let logins = audited(&app, &ada, "login.succeeded").await;
        assert_eq!(logins[0]["details"]["method"], "recovery_code", "{logins:?}");
        assert_eq!(logins[1]["details"]["method"], "recovery_code", "{logins:?}");
        let used = audited(&app, &ada, "mfa.recovery_code_used").await;
        let recorded = app.count("audit_log WHERE action = 'mfa.recovery_code_used'").await;
        assert_eq!(used.len(), 2, "in the business's log: {used:?} ({recorded} recorded in all)");
        let text = Value::Array(used).to_string();
        assert!(!text.contains(first.as_str()) && !text.contains(second.as_str()), "no code in the log: {text}");
    }
}

db_test! {
    async fn regenerated_recovery_codes_replace_the_old_ones(app) {
        let ada = app.signup_token("ada@example.com").await;
        let regenerate = async |password: &str| {
            app.post("/api/v1/mfa/recovery-codes", Some(&ada), json!({"password": password})).await
        };
        assert_refused(&regenerate(PASSWORD).await, StatusCode::CONFLICT, "mfa_not_enabled");
        let authenticator = enrol(&app, &ada).await;
        let token = mfa_token(&app, "ada@example.com").await;
        assert_signed_in(&app, second_step(&app, &token, &authenticator.recovery_codes[0]).await, "ada@example.com").await;

        assert_field_error(&regenerate("not the password").await, "password", "incorrect");
        assert_eq!(mfa_status(&app, &ada).await["recovery_codes_remaining"], 9, "a wrong password changes nothing");
        let (status, body) = regenerate(PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let fresh = strings(&body["recovery_codes"]);
        assert_eq!(fresh.len(), 10);
        assert!(fresh.iter().all(|c| !authenticator.recovery_codes.contains(c)), "all new: {fresh:?}");
        assert_eq!(mfa_status(&app, &ada).await, json!({"totp_enabled": true, "recovery_codes_remaining": 10}));

        let token = mfa_token(&app, "ada@example.com").await;
        assert_refused(&second_step(&app, &token, &authenticator.recovery_codes[1]).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");
        assert_signed_in(&app, second_step(&app, &token, &fresh[0]).await, "ada@example.com").await;
        assert_eq!(audited(&app, &ada, "mfa.recovery_codes_regenerated").await.len(), 1);
    }
}

db_test! {
    async fn an_mfa_token_works_once_and_for_five_minutes(app) {
        let ada = app.signup_token("ada@example.com").await;
        let authenticator = enrol(&app, &ada).await;
        app.clock.advance(STEP);

        let first = mfa_token(&app, "ada@example.com").await;
        assert_signed_in(&app, second_step(&app, &first, &authenticator.code(&app, 0)).await, "ada@example.com").await;
        app.clock.advance(STEP);
        assert_refused(&second_step(&app, &first, &authenticator.code(&app, 0)).await, StatusCode::UNAUTHORIZED, "invalid_mfa_token");

        // Just before its five minutes are up, a token still works...
        let second = mfa_token(&app, "ada@example.com").await;
        app.clock.advance(Duration::minutes(5) - Duration::seconds(1));
        assert_signed_in(&app, second_step(&app, &second, &authenticator.code(&app, 0)).await, "ada@example.com").await;
        // ...and at five minutes it is dead, whatever the code.
        let third = mfa_token(&app, "ada@example.com").await;
        app.clock.advance(Duration::minutes(5));
        assert_refused(&second_step(&app, &third, &authenticator.code(&app, 0)).await, StatusCode::UNAUTHORIZED, "invalid_mfa_token");

        for unknown in ["not-a-token", "", &"t".repeat(5000)] {
            assert_refused(&second_step(&app, unknown, &authenticator.code(&app, 0)).await, StatusCode::UNAUTHORIZED, "invalid_mfa_token");
        }
        // A session's token is not an mfa_token.
        assert_refused(&second_step(&app, &ada, &authenticator.code(&app, 0)).await, StatusCode::UNAUTHORIZED, "invalid_mfa_token");
    }
}

db_test! {
    async fn an_mfa_token_dies_after_five_wrong_codes(app) {
        // Loose login limits here, so the token's own limit is what shows.
        let app = reconfigured(app, |c| c.rate_limit_login_account = Rule::per(100, 900)).await;
        let ada = app.signup_token("ada@example.com").await;
        let authenticator = enrol(&app, &ada).await;
        app.clock.advance(STEP);

        let token = mfa_token(&app, "ada@example.com").await;
        for _ in 0..5 {
            assert_refused(&second_step(&app, &token, &authenticator.wrong_code(&app)).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");
        }
        assert_refused(&second_step(&app, &token, &authenticator.code(&app, 0)).await, StatusCode::UNAUTHORIZED, "invalid_mfa_token");
        let recovery = &authenticator.recovery_codes[0];
        assert_refused(&second_step(&app, &token, recovery).await, StatusCode::UNAUTHORIZED, "invalid_mfa_token");

        // A new login starts afresh.
        let token = mfa_token(&app, "ada@example.com").await;
        assert_signed_in(&app, second_step(&app, &token, &authenticator.code(&app, 0)).await, "ada@example.com").await;
        let failed = "audit_log WHERE action = 'login.failed' AND details LIKE '%invalid_mfa_code%'";
        assert_eq!(app.count(failed).await, 5, "each wrong code is a failed login");
    }
}

db_test! {
    async fn wrong_codes_count_against_the_account_login_limit(app) {
        let app = reconfigured(app, |c| c.rate_limit_login_account = Rule::per(3, 900)).await;
        let ada = app.signup_token("ada@example.com").await;
        app.signup("grace@example.com").await;
        let authenticator = enrol(&app, &ada).await;
        app.clock.advance(STEP);

        let token = mfa_token(&app, "ada@example.com").await;
        for _ in 0..3 {
            assert_refused(&second_step(&app, &token, &authenticator.wrong_code(&app)).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");
        }
        assert_refused(&second_step(&app, &token, &authenticator.wrong_code(&app)).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        // The same limit as wrong passwords: the password cannot be tried either...
        assert_refused(&login(&app, "ada@example.com").await, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        // ...but it is this account's limit, not the address's.
        let (status, body) = login(&app, "grace@example.com").await;
        assert_eq!(status, StatusCode::OK, "{body}");

        app.clock.advance(Duration::minutes(15));
        let token = mfa_token(&app, "ada@example.com").await;
        assert_signed_in(&app, second_step(&app, &token, &authenticator.code(&app, 0)).await, "ada@example.com").await;
    }
}

db_test! {
    async fn wrong_codes_count_against_the_address_login_limit(app) {
        let app = reconfigured(app, |c| {
            c.rate_limit_login_ip = Rule::per(3, 60);
            c.rate_limit_login_account = Rule::per(100, 900);
        })
        .await;
        let ada = app.signup_token("ada@example.com").await;
        let grace = app.signup_token("grace@example.com").await;
        let ada_app = enrol(&app, &ada).await;
        let grace_app = enrol(&app, &grace).await;
        app.clock.advance(STEP);

        let token = mfa_token(&app, "ada@example.com").await;
        for _ in 0..2 {
            assert_refused(&second_step(&app, &token, &ada_app.wrong_code(&app)).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");
        }
        let token = mfa_token(&app, "grace@example.com").await;
        assert_refused(&second_step(&app, &token, &grace_app.wrong_code(&app)).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");
        // Three failures from this address, whichever the accounts.
        assert_refused(&second_step(&app, &token, &grace_app.wrong_code(&app)).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        app.signup("alan@example.com").await;
        assert_refused(&login(&app, "alan@example.com").await, StatusCode::TOO_MANY_REQUESTS, "rate_limited");

        app.clock.advance(Duration::minutes(1));
        let token = mfa_token(&app, "grace@example.com").await;
        assert_signed_in(&app, second_step(&app, &token, &grace_app.code(&app, 0)).await, "grace@example.com").await;
    }
}

db_test! {
    async fn turning_totp_off_needs_the_password_and_makes_login_plain_again(app) {
        let ada = app.signup_token("ada@example.com").await;
        let disable = async |password: &str| {
            app.call(Method::DELETE, "/api/v1/mfa/totp", Some(&ada), Some(json!({"password": password}))).await
        };
        assert_refused(&disable(PASSWORD).await, StatusCode::CONFLICT, "mfa_not_enabled");
        let authenticator = enrol(&app, &ada).await;

        assert_field_error(&disable("not the password").await, "password", "incorrect");
        assert_eq!(mfa_status(&app, &ada).await["totp_enabled"], true, "a wrong password changes nothing");
        mfa_token(&app, "ada@example.com").await;

        let (status, body) = disable(PASSWORD).await;
        assert_eq!((status, &body), (StatusCode::NO_CONTENT, &Value::Null));
        assert_eq!(mfa_status(&app, &ada).await, json!({"totp_enabled": false, "recovery_codes_remaining": 0}));
        let (status, body) = login(&app, "ada@example.com").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body.get("mfa_required"), None, "{body}");
        assert_signed_in(&app, (status, body), "ada@example.com").await;
        assert_refused(&disable(PASSWORD).await, StatusCode::CONFLICT, "mfa_not_enabled");

        // The recovery codes went with it, even with a login's second step at hand.
        app.clock.advance(STEP);
        let answer = app.post("/api/v1/mfa/recovery-codes", Some(&ada), json!({"password": PASSWORD})).await;
        assert_refused(&answer, StatusCode::CONFLICT, "mfa_not_enabled");
        // And it can be set up again, with a new secret.
        let again = enrol(&app, &ada).await;
        assert_ne!(again.secret, authenticator.secret);
        assert!(again.recovery_codes.iter().all(|c| !authenticator.recovery_codes.contains(c)));
    }
}

db_test! {
    async fn turning_totp_on_and_off_is_audited_and_mailed_without_secrets(app) {
        let ada = app.signup_token("ada@example.com").await;
        let authenticator = enrol(&app, &ada).await;
        app.clock.advance(STEP);

        let mail = app.only_mail_to("ada@example.com", TURNED_ON).await;
        assert!(!mail.contains(&authenticator.secret_base32), "{mail}");
        assert!(!mail.to_lowercase().contains(&authenticator.secret_base32.to_lowercase()), "{mail}");
        for code in &authenticator.recovery_codes {
            assert!(!mail.contains(code.as_str()), "{mail}");
        }

        let token = mfa_token(&app, "ada@example.com").await;
        assert_refused(&second_step(&app, &token, &authenticator.wrong_code(&app)).await, StatusCode::UNAUTHORIZED, "invalid_mfa_code");
        assert_signed_in(&app, second_step(&app, &token, &authenticator.code(&app, 0)).await, "ada@example.com").await;
        let token = mfa_token(&app, "ada@example.com").await;
        assert_signed_in(&app, second_step(&app, &token, &authenticator.recovery_codes[0]).await, "ada@example.com").await;
        let (status, _) = app.call(Method::DELETE, "/api/v1/mfa/totp", Some(&ada), Some(json!({"password": PASSWORD}))).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, plain) = login(&app, "ada@example.com").await;
        assert_eq!(status, StatusCode::OK, "{plain}");
        app.only_mail_to("ada@example.com", TURNED_OFF).await;

        let methods: Vec<Value> = audited(&app, &ada, "login.succeeded").await.iter().map(|e| e["details"]["method"].clone()).collect();
        assert_eq!(methods, [json!("password"), json!("recovery_code"), json!("totp")], "newest first");
        let failed = "audit_log WHERE action = 'login.failed' AND details LIKE '%invalid_mfa_code%'";
        assert_eq!(app.count(failed).await, 1);
        let mut missing = Vec::new();
        for action in ["mfa.totp_enabled", "mfa.recovery_code_used", "mfa.totp_disabled"] {
            let entries = audited(&app, &ada, action).await;
            let recorded = app.count(&format!("audit_log WHERE action = '{action}'")).await;
            if entries.len() != 1 || entries[0]["actor"]["kind"] != "user" {
                missing.push(format!("{action}: {entries:?} in the business's log ({recorded} recorded in all)"));
            }
        }

        // The secret is sealed at rest.
        app.clock.advance(STEP);
        let again = enrol(&app, &ada).await;
        let sealed = one_value(&app, "SELECT secret_sealed FROM user_totp").await;
        assert!(sealed.starts_with("sk1."), "{sealed}");
        for clear in [again.secret_base32.clone(), again.secret_base32.to_lowercase()] {
            assert!(!sealed.contains(&clear), "{sealed}");
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }
}

db_test! {
    async fn two_factor_settings_are_for_people_only(app) {
        let owner = app.signup_token("ada@example.com").await;
        let api_key = app.api_key(&owner).await;
        let (status, bot) = app.post("/api/v1/bots", Some(&owner), json!({"name": "CI", "scopes": ["dashboard"]})).await;
        assert_eq!(status, StatusCode::CREATED, "{bot}");
        let bot = bot["token"].as_str().expect("the bot's token").to_owned();
        // A bot is a member with dashboard scopes, but not a person; an API key is refused
        // before that, like on every dashboard route: its scope is `sdk`.
        for (caller, code) in [(&bot, "not_a_person"), (&api_key, "insufficient_scope")] {
            let (status, body) = app.get("/api/v1/mfa", Some(caller)).await;
            assert_refused(&(status, body), StatusCode::FORBIDDEN, code);
            assert_refused(&setup(&app, caller).await, StatusCode::FORBIDDEN, code);
            assert_refused(&confirm(&app, caller, "123456").await, StatusCode::FORBIDDEN, code);
        }
        let (status, body) = app.get("/api/v1/mfa", None).await;
        assert_refused(&(status, body), StatusCode::UNAUTHORIZED, "unauthenticated");
    }
}

async fn business(app: &TestApp, session: &str) -> Value {
    let (status, body) = app.get("/api/v1/business", Some(session)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn patch_business(app: &TestApp, session: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::PATCH, "/api/v1/business", Some(session), Some(body))
        .await
}

db_test! {
    async fn only_an_owner_with_two_factor_may_require_it(app) {
        let signed_up = app.signup("ada@example.com").await;
        let owner = token_of(&signed_up);
        let (admin, _) = app.join(&owner, "grace@example.com", "admin").await;
        let (member, _) = app.join(&owner, "alan@example.com", "member").await;

        let shown = business(&app, &member).await;
        assert_eq!(shown["id"], signed_up["business"]["id"]);
        assert_eq!(shown["name"], signed_up["business"]["name"]);
        assert!(shown["created_at"].is_string(), "{shown}");
        assert_eq!(shown["require_mfa"], false);

        // The role decides first: an admin and a member with a second factor of their own.
        enrol(&app, &admin).await;
        enrol(&app, &member).await;
        for caller in [&admin, &member] {
            assert_refused(&patch_business(&app, caller, json!({"require_mfa": true})).await, StatusCode::FORBIDDEN, "forbidden_role");
        }
        assert_refused(&patch_business(&app, &member, json!({"name": "Alan's"})).await, StatusCode::FORBIDDEN, "forbidden_role");
        let (status, renamed) = patch_business(&app, &admin, json!({"name": "Renamed by Grace"})).await;
        assert_eq!(status, StatusCode::OK, "{renamed}");
        assert_eq!((&renamed["name"], &renamed["require_mfa"]), (&json!("Renamed by Grace"), &json!(false)));

        // The owner must have a second factor before requiring one.
        assert_refused(&patch_business(&app, &owner, json!({"require_mfa": true})).await, StatusCode::CONFLICT, "mfa_not_enabled");
        assert_eq!(business(&app, &owner).await["require_mfa"], false);
        enrol(&app, &owner).await;
        let (status, body) = patch_business(&app, &owner, json!({"require_mfa": true})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["require_mfa"], true);
        assert_eq!(body["name"], "Renamed by Grace");
        assert_eq!(business(&app, &admin).await["require_mfa"], true);
        let (_, me) = app.get("/api/v1/me", Some(&owner)).await;
        assert_eq!(me["business"]["require_mfa"], true, "{me}");
        assert_eq!(audited(&app, &owner, "business.updated").await.len(), 2, "the rename and the rule");
    }
}

db_test! {
    async fn under_the_rule_a_member_without_two_factor_must_enrol_first(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (member, _) = app.join(&owner, "alan@example.com", "member").await;
        enrol(&app, &owner).await;
        let (status, body) = patch_business(&app, &owner, json!({"require_mfa": true})).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        for path in ["/api/v1/usage", "/api/v1/members", "/api/v1/business", "/api/v1/sessions"] {
            let (status, body) = app.get(path, Some(&member)).await;
            assert_refused(&(status, body), StatusCode::FORBIDDEN, "mfa_enrollment_required");
        }
        let (status, me) = app.get("/api/v1/me", Some(&member)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["business"]["require_mfa"], true, "{me}");
        assert_eq!(mfa_status(&app, &member).await["totp_enabled"], false);
        // A new login of the member says so too, and may log out.
        let (status, login_body) = login(&app, "alan@example.com").await;
        assert_eq!(status, StatusCode::OK, "{login_body}");
        assert_eq!(login_body["business"]["require_mfa"], true, "{login_body}");
        let other = token_of(&login_body);
        let (status, body) = app.call(Method::POST, "/api/v1/logout", Some(&other), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

        // Enrolling is allowed, and then the same session does everything again.
        enrol(&app, &member).await;
        for path in ["/api/v1/usage", "/api/v1/members", "/api/v1/business", "/api/v1/sessions"] {
            let (status, body) = app.get(path, Some(&member)).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
        // The owner, who had a second factor, was never held.
        let (status, body) = app.get("/api/v1/members", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

db_test! {
    async fn the_rule_holds_people_not_api_keys_or_bots(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (member, _) = app.join(&owner, "alan@example.com", "member").await;
        let api_key = app.api_key(&owner).await;
        let (status, bot) = app.post("/api/v1/bots", Some(&owner), json!({"name": "CI", "scopes": ["dashboard"]})).await;
        assert_eq!(status, StatusCode::CREATED, "{bot}");
        let bot = bot["token"].as_str().expect("the bot's token").to_owned();
        enrol(&app, &owner).await;
        let (status, body) = patch_business(&app, &owner, json!({"require_mfa": true})).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let (status, body) = app.get("/api/v1/usage", Some(&member)).await;
        assert_refused(&(status, body), StatusCode::FORBIDDEN, "mfa_enrollment_required");
        let (status, body) = app.get("/api/v1/entitlements", Some(&api_key)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app.post("/api/v1/usage", Some(&api_key), json!({"meter": "api_calls", "quantity": 1})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for path in ["/api/v1/usage", "/api/v1/members", "/api/v1/entitlements"] {
            let (status, body) = app.get(path, Some(&bot)).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
    }
}

async fn ask_for_link(app: &TestApp, email: &str) -> (StatusCode, Value) {
    app.post("/api/v1/login/magic-link", None, json!({"email": email}))
        .await
}

async fn use_link(app: &TestApp, key: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/login/magic-link/confirm",
        None,
        json!({"key": key}),
    )
    .await
}

/// The keys of the magic links mailed to `to`, oldest first.
async fn magic_keys(app: &TestApp, to: &str) -> Vec<String> {
    app.mail_to(to, MAGIC_SUBJECT)
        .await
        .iter()
        .map(|m| key_in(m))
        .collect()
}

db_test! {
    async fn a_magic_link_is_mailed_to_a_known_address_only_and_signs_in_once(app) {
        let signed_up = app.signup("ada@example.com").await;
        let owner = token_of(&signed_up);
        let (status, known) = ask_for_link(&app, "ada@example.com").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{known}");
        assert!(known["detail"].is_string(), "{known}");
        let (status, unknown) = ask_for_link(&app, "nobody@example.com").await;
        assert_eq!((status, &unknown), (StatusCode::ACCEPTED, &known), "the answer does not tell");
        let answer = app.post("/api/v1/login/magic-link", None, json!({})).await;
        assert_refused(&answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

        assert!(app.mail_to("nobody@example.com", "").await.is_empty());
        let mail = app.only_mail_to("ada@example.com", MAGIC_SUBJECT).await;
        let key = key_in(&mail);
        assert!(key.len() >= 32, "{key}");
        assert!(mail.contains(&format!("http://localhost:8000/magic-login?key={key}")), "{mail}");
        assert!(!known.to_string().contains(&key));

        // The page shows a button; looking at it does not use the key.
        let (status, page) = app.get(&format!("/magic-login?key={key}"), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.as_str().is_some_and(|html| html.contains("<form") || html.contains("<button")), "{page}");

        let answer = use_link(&app, &key).await;
        assert_eq!(answer.1["user"]["id"], signed_up["user"]["id"]);
        let session = assert_signed_in(&app, answer, "ada@example.com").await;
        assert_ne!(session, owner);
        assert_refused(&use_link(&app, &key).await, StatusCode::GONE, "key_used");
        for bad in ["nope", "", &"k".repeat(500)] {
            assert_refused(&use_link(&app, bad).await, StatusCode::NOT_FOUND, "key_not_found");
        }
        let logins = audited(&app, &owner, "login.succeeded").await;
        assert_eq!(logins[0]["details"]["method"], "magic_link", "{logins:?}");
    }
}

db_test! {
    async fn a_magic_link_expires_after_fifteen_minutes(app) {
        app.signup("ada@example.com").await;
        ask_for_link(&app, "ada@example.com").await;
        let key = key_in(&app.only_mail_to("ada@example.com", MAGIC_SUBJECT).await);
        app.clock.advance(Duration::minutes(15));
        assert_refused(&use_link(&app, &key).await, StatusCode::GONE, "key_expired");

        ask_for_link(&app, "ada@example.com").await;
        let keys = magic_keys(&app, "ada@example.com").await;
        assert_eq!(keys.len(), 2);
        app.clock.advance(Duration::minutes(15) - Duration::seconds(1));
        assert_signed_in(&app, use_link(&app, &keys[1]).await, "ada@example.com").await;
    }
}

db_test! {
    async fn a_newer_magic_link_revokes_the_older(app) {
        app.signup("ada@example.com").await;
        ask_for_link(&app, "ada@example.com").await;
        ask_for_link(&app, "ada@example.com").await;
        let keys = magic_keys(&app, "ada@example.com").await;
        assert_eq!(keys.len(), 2);
        assert_ne!(keys[0], keys[1]);
        assert_refused(&use_link(&app, &keys[0]).await, StatusCode::GONE, "key_revoked");
        assert_signed_in(&app, use_link(&app, &keys[1]).await, "ada@example.com").await;
    }
}

db_test! {
    async fn with_totp_on_a_magic_link_still_asks_for_the_code(app) {
        let ada = app.signup_token("ada@example.com").await;
        let authenticator = enrol(&app, &ada).await;
        app.clock.advance(STEP);
        let sessions = app.count("tokens").await;
        ask_for_link(&app, "ada@example.com").await;
        let key = key_in(&app.only_mail_to("ada@example.com", MAGIC_SUBJECT).await);
        let token = mfa_token_in(&use_link(&app, &key).await);
        assert_eq!(app.count("tokens").await, sessions, "no session from the link alone");
        assert_refused(&use_link(&app, &key).await, StatusCode::GONE, "key_used");
        assert_signed_in(&app, second_step(&app, &token, &authenticator.code(&app, 0)).await, "ada@example.com").await;
        let logins = audited(&app, &ada, "login.succeeded").await;
        assert_eq!(logins[0]["details"]["method"], "totp", "{logins:?}");
    }
}

db_test! {
    async fn a_magic_link_verifies_the_email(app) {
        let signed_up = app.signup("ada@example.com").await;
        assert_eq!(signed_up["user"]["email_verified"], false);
        let ada = token_of(&signed_up);
        ask_for_link(&app, "ada@example.com").await;
        let key = key_in(&app.only_mail_to("ada@example.com", MAGIC_SUBJECT).await);
        let (status, body) = use_link(&app, &key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["user"]["email_verified"], true, "{body}");
        for session in [token_of(&body), ada] {
            let (status, me) = app.get("/api/v1/me", Some(&session)).await;
            assert_eq!(status, StatusCode::OK, "{me}");
            assert_eq!(me["user"]["email_verified"], true, "{me}");
        }
    }
}

db_test! {
    async fn magic_link_requests_are_limited_like_password_resets(app) {
        app.signup("ada@example.com").await;
        assert_eq!(app.app.config.rate_limit_reset_account, Rule::per(5, 3600));
        for email in ["ada@example.com", "nobody@example.com"] {
            for _ in 0..5 {
                assert_eq!(ask_for_link(&app, email).await.0, StatusCode::ACCEPTED, "{email}");
            }
            assert_refused(&ask_for_link(&app, email).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        }
        assert_eq!(magic_keys(&app, "ada@example.com").await.len(), 5);
        app.clock.advance(Duration::hours(1));
        assert_eq!(ask_for_link(&app, "ada@example.com").await.0, StatusCode::ACCEPTED);
    }
}

db_test! {
    async fn seeds_are_sealed_in_the_files_survive_a_key_rotation_and_an_operator_can_reset_them(app) {
        let owner = app.signup_token("ada@example.com").await;
        let auth = enrol(&app, &owner).await;
        // Neither the seed as shown nor its bytes are in the files a thief would copy.
        let files = crate::sealing::raw_database_bytes(&app).await;
        assert!(!crate::sealing::holds(&files, &auth.secret_base32));
        assert!(
            !files.windows(auth.secret.len()).any(|w| w == auth.secret.as_slice()),
            "the raw seed is in the database files"
        );

        // A new key: the seed is re-sealed, and a server started with the new key reads it.
        let out = crate::cli::saaskit()
            .args(["secret-key", "rotate"])
            .env("SAASKIT_DATABASE_URL", &app.test_db.url)
            .env("SAASKIT_SECRET_KEY_FILE", &app.test_db.key_file)
            .output()
            .expect("run saaskit secret-key rotate");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("re-sealed 1 two-factor seed"), "{stdout}");
        let restarted = TestApp::spawn_on(app.test_db.clone(), app.clock.clone()).await;
        app.clock.advance(STEP);
        let token = mfa_token(&restarted, "ada@example.com").await;
        let answer = second_step(&restarted, &token, &auth.code(&restarted, 0)).await;
        assert_signed_in(&restarted, answer, "ada@example.com").await;

        // Lost phone and lost codes: the operator turns it off; the person is told.
        let out = crate::cli::saaskit()
            .args(["user", "reset-mfa", "ada@example.com"])
            .env("SAASKIT_DATABASE_URL", &app.test_db.url)
            .env("SAASKIT_SECRET_KEY_FILE", &app.test_db.key_file)
            .output()
            .expect("run saaskit user reset-mfa");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("password alone"), "{stdout}");
        let (status, body) = login(&restarted, "ada@example.com").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["token"].is_string(), "a plain login again: {body}");
        // Queued by the command, at the machine's time (this app's clock is in the past).
        let queued = one_value(
            &restarted,
            "SELECT CAST(COUNT(*) AS TEXT) FROM outbox \
             WHERE to_address = 'ada@example.com' AND subject = 'Two-factor sign-in turned off'",
        )
        .await;
        assert_eq!(queued, "1", "the person is told");
        let reset = audited(&restarted, body["token"].as_str().expect("token"), "mfa.totp_disabled").await;
        assert_eq!(reset.len(), 1, "{reset:?}");
        assert_eq!(reset[0]["actor"]["kind"], "staff", "{reset:?}");

        // Again: nothing to reset, said so.
        let out = crate::cli::saaskit()
            .args(["user", "reset-mfa", "ada@example.com"])
            .env("SAASKIT_DATABASE_URL", &app.test_db.url)
            .env("SAASKIT_SECRET_KEY_FILE", &app.test_db.key_file)
            .output()
            .expect("run saaskit user reset-mfa");
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("nothing changed"));
    }
}

db_test! {
    async fn a_business_change_is_a_json_object(app) {
        let owner = app.signup_token("ada@example.com").await;
        // Every member is optional: an array would otherwise read as "change nothing".
        let (status, body) = patch_business(&app, &owner, json!([null, null])).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = patch_business(&app, &owner, json!({"colour": "blue"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = patch_business(&app, &owner, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
