//! Attacks on accounts, and that each fails: guessing passwords (alone, in parallel, from many
//! addresses), enumerating emails through login, signup and reset, abusing reset keys, and
//! forging the client address.

use std::sync::Arc;

use chrono::Duration;
use reqwest::StatusCode;
use saaskit::config::Config;
use saaskit::ratelimit::Rule;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;
use crate::smtp_sink::key_in;

/// A second server on the same database, believing `X-Forwarded-For` from the tests (so each
/// request can come from the address it names) and with `configure`'s limits.
async fn behind_proxy(app: &TestApp, configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), |c| {
        c.trusted_proxies = "127.0.0.1, ::1".parse().expect("valid");
        configure(c);
    })
    .await
}

/// What an answer says, without what differs between any two requests.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> Answer {
    let res = app
        .client
        .post(app.url("/api/v1/login"))
        .header("X-Forwarded-For", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (_, body) = read(res).await;
    Answer {
        status,
        retry_after,
        body,
    }
}

db_test!(
    async fn fifty_guesses_at_once_do_not_slip_past_a_limit_of_five(app) {
        app.signup("ada@example.com").await;
        let app = Arc::new(behind_proxy(&app, |_| {}).await);
        assert_eq!(app.app.config.rate_limit_login_account, Rule::per(5, 15 * 60));
        let mut guesses = Vec::new();
        for i in 0..50 {
            let app = app.clone();
            guesses.push(tokio::spawn(async move {
                login_from(&app, "198.51.100.7", "ada@example.com", &format!("guess {i}")).await
            }));
        }
        let mut answers = Vec::new();
        for guess in guesses {
            answers.push(guess.await.expect("task"));
        }
        let judged = answers.iter().filter(|a| a.status == 401).count();
        let refused: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
        assert_eq!(judged, 5, "{answers:?}");
        assert_eq!(refused.len(), 45);
        for a in refused {
            assert_eq!(a.body["code"], "rate_limited");
            let secs: u64 = a.retry_after.as_deref().and_then(|s| s.parse().ok()).expect("Retry-After");
            assert!((1..=900).contains(&secs), "{secs}");
            assert_eq!(a.body["retry_after"], secs);
        }

        // The owner, from their own address, is not locked out by it...
        let owner = login_from(&app, "203.0.113.1", "ada@example.com", PASSWORD).await;
        assert_eq!(owner.status, 200, "{owner:?}");
        // ...and once the window has passed, the attacker's address may try again.
        app.clock.advance(Duration::minutes(15));
        let later = login_from(&app, "198.51.100.7", "ada@example.com", "guess 51").await;
        assert_eq!(later.status, 401);
    }
);

db_test!(
    async fn login_answers_alike_for_a_known_and_an_unknown_email_rate_limits_included(app) {
        app.signup("ada@example.com").await;
        let app = behind_proxy(&app, |_| {}).await;
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for _ in 0..7 {
            known.push(login_from(&app, "198.51.100.1", "ada@example.com", "wrong password").await);
            unknown.push(login_from(&app, "198.51.100.2", "nobody@example.com", "wrong password").await);
        }
        assert_eq!(known, unknown);
        let statuses: Vec<u16> = known.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    }
);

db_test!(
    async fn login_takes_as_long_for_an_unknown_email_as_for_a_wrong_password(app) {
        app.signup("ada@example.com").await;
        let app = behind_proxy(&app, |c| c.rate_limit = saaskit::ratelimit::Switch::Off).await;
        // Interleaved, so both see the same machine; medians, so a hiccup does not decide.
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for i in 0..15 {
            let ip = format!("198.51.100.{i}");
            let started = std::time::Instant::now();
            login_from(&app, &ip, "ada@example.com", "wrong password").await;
            known.push(started.elapsed());
            let started = std::time::Instant::now();
            login_from(&app, &ip, "nobody@example.com", "wrong password").await;
            unknown.push(started.elapsed());
        }
        known.sort();
        unknown.sort();
        let (k, u) = (known[7].as_secs_f64(), unknown[7].as_secs_f64());
        // Both verify one Argon2id hash; skipping it would make the unknown email ~20x faster.
        // The bound is loose on purpose (tests share the cores); what it catches is an order
        // of magnitude.
        assert!(u > k * 0.5 && u < k * 2.0, "known {k:.4} s, unknown {u:.4} s");
    }
);

db_test!(
    async fn a_distributed_attack_slows_the_account_but_not_its_owner(app) {
        app.signup("ada@example.com").await;
        let app = behind_proxy(&app, |c| c.rate_limit_login_account_all = Rule::per(3, 3600)).await;
        // The owner has logged in from home before.
        assert_eq!(login_from(&app, "203.0.113.1", "ada@example.com", PASSWORD).await.status, 200);
        let mut statuses = Vec::new();
        for i in 0..6 {
            let ip = format!("198.51.100.{i}");
            statuses.push(login_from(&app, &ip, "ada@example.com", "guess").await.status);
        }
        assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
        // A new address is refused even with the right password while the attack lasts...
        assert_eq!(login_from(&app, "192.0.2.50", "ada@example.com", PASSWORD).await.status, 429);
        // ...but the owner's own address still gets in (and may still mistype).
        assert_eq!(login_from(&app, "203.0.113.1", "ada@example.com", "typo").await.status, 401);
        assert_eq!(login_from(&app, "203.0.113.1", "ada@example.com", PASSWORD).await.status, 200);
        // A password reset ends the slowdown for everyone.
        let (status, _) = app.post("/api/v1/password/reset", None, json!({"email": "ada@example.com"})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let key = key_in(&app.only_mail_to("ada@example.com", RESET_SUBJECT).await);
        let (status, _) = app
            .post("/api/v1/password/reset/confirm", None, json!({"key": key, "password": "a brand new passphrase"}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let fresh = login_from(&app, "192.0.2.50", "ada@example.com", "a brand new passphrase").await;
        assert_eq!(fresh.status, 200);
    }
);

db_test!(
    async fn successful_logins_are_not_counted_and_limits_can_be_turned_off(app) {
        app.signup("ada@example.com").await;
        let limited = behind_proxy(&app, |_| {}).await;
        for _ in 0..12 {
            assert_eq!(login_from(&limited, "198.51.100.9", "ada@example.com", PASSWORD).await.status, 200);
        }
        let off = behind_proxy(&app, |c| c.rate_limit = saaskit::ratelimit::Switch::Off).await;
        for _ in 0..12 {
            assert_eq!(login_from(&off, "198.51.100.9", "ada@example.com", "wrong").await.status, 401);
        }
    }
);

db_test!(
    async fn a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(app) {
        app.signup("ada@example.com").await;
        // The default configuration trusts no proxy: the header is anyone's to write.
        let mut statuses = Vec::new();
        for i in 0..7 {
            let ip = format!("198.51.100.{i}");
            statuses.push(login_from(&app, &ip, "ada@example.com", "guess").await.status);
        }
        assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
        let token = app.signup_token("grace@example.com").await;
        let (_, sessions) = app.get("/api/v1/sessions", Some(&token)).await;
        assert_eq!(sessions["data"][0]["ip"], "127.0.0.1");
    }
);

db_test!(
    async fn signup_and_password_reset_are_limited_per_address_and_per_email(app) {
        app.signup("ada@example.com").await;
        let app = behind_proxy(&app, |c| {
            c.rate_limit_signup_ip = Rule::per(2, 3600);
            c.rate_limit_reset_account = Rule::per(2, 3600);
            c.rate_limit_reset_ip = Rule::per(5, 3600);
        })
        .await;
        let signup = |email: &str| {
            json!({"business": {"name": "B"}, "email": email, "first_name": "A", "last_name": "B", "password": PASSWORD})
        };
        let mut statuses = Vec::new();
        for i in 0..3 {
            let res = app
                .client
                .post(app.url("/api/v1/signup"))
                .header("X-Forwarded-For", "198.51.100.1")
                .json(&signup(&format!("s{i}@example.com")))
                .send()
                .await
                .expect("request");
            statuses.push(res.status().as_u16());
        }
        assert_eq!(statuses, [201, 201, 429]);

        // Reset: the same answers for an email with an account and one without.
        let reset = |email: &'static str, ip: &'static str| {
            let app = &app;
            async move {
                let res = app
                    .client
                    .post(app.url("/api/v1/password/reset"))
                    .header("X-Forwarded-For", ip)
                    .json(&json!({"email": email}))
                    .send()
                    .await
                    .expect("request");
                let status = res.status().as_u16();
                let (_, body) = read(res).await;
                (status, body)
            }
        };
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for _ in 0..3 {
            known.push(reset("ada@example.com", "198.51.100.2").await);
            unknown.push(reset("nobody@example.com", "198.51.100.3").await);
        }
        assert_eq!(known, unknown);
        assert_eq!(known.iter().map(|a| a.0).collect::<Vec<_>>(), [202, 202, 429]);
        // Per address too: many emails from one address.
        let mut statuses = Vec::new();
        for email in ["a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com", "f@example.com"] {
            let res = app
                .client
                .post(app.url("/api/v1/password/reset"))
                .header("X-Forwarded-For", "198.51.100.4")
                .json(&json!({"email": email}))
                .send()
                .await
                .expect("request");
            statuses.push(res.status().as_u16());
        }
        assert_eq!(statuses, [202, 202, 202, 202, 202, 429]);
    }
);

db_test!(
    async fn a_reset_key_dies_after_five_refused_passwords_and_when_a_new_one_is_requested(app) {
        app.signup("ada@example.com").await;
        let request = || app.post("/api/v1/password/reset", None, json!({"email": "ada@example.com"}));
        assert_eq!(request().await.0, StatusCode::ACCEPTED);
        let key = key_in(&app.only_mail_to("ada@example.com", RESET_SUBJECT).await);
        for _ in 0..5 {
            let (status, body) = app
                .post("/api/v1/password/reset/confirm", None, json!({"key": key, "password": "short"}))
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
        let (status, body) = app
            .post("/api/v1/password/reset/confirm", None, json!({"key": key, "password": "a brand new passphrase"}))
            .await;
        assert_eq!(status, StatusCode::GONE, "{body}");
        assert_eq!(body["code"], "key_revoked");

        // A new key works; requesting yet another kills it.
        app.deliver_mail().await;
        assert_eq!(request().await.0, StatusCode::ACCEPTED);
        app.deliver_mail().await;
        assert_eq!(request().await.0, StatusCode::ACCEPTED);
        let (status, body) = app
            .post("/api/v1/password/reset/confirm", None, json!({"key": key, "password": "a brand new passphrase"}))
            .await;
        assert_eq!(status, StatusCode::GONE, "{body}");
    }
);

db_test!(
    async fn browsers_may_call_from_the_configured_origins_only(app) {
        let closed = app.client.get(app.url("/api/v1/plans")).header("Origin", "https://app.example.com").send().await.expect("request");
        assert!(closed.headers().get("access-control-allow-origin").is_none(), "no origin is allowed by default");

        let open = TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), |c| {
            c.cors_origins = vec!["https://app.example.com".into()];
        })
        .await;
        let preflight = open
            .client
            .request(reqwest::Method::OPTIONS, open.url("/api/v1/me"))
            .header("Origin", "https://app.example.com")
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
            .await
            .expect("request");
        assert!(preflight.status().is_success(), "{}", preflight.status());
        let headers = preflight.headers();
        assert_eq!(headers.get("access-control-allow-origin").map(|v| v.as_bytes()), Some(&b"https://app.example.com"[..]));
        assert!(headers.get("access-control-allow-credentials").is_none(), "bearer tokens, no cookies");

        let other = open.client.get(open.url("/api/v1/plans")).header("Origin", "https://evil.example").send().await.expect("request");
        assert!(other.headers().get("access-control-allow-origin").is_none());
        let same = open.client.get(open.url("/api/v1/plans")).header("Origin", "https://app.example.com").send().await.expect("request");
        assert_eq!(same.headers().get("access-control-allow-origin").map(|v| v.as_bytes()), Some(&b"https://app.example.com"[..]));
        // The request path's own refusal (a declared body over the limit) is readable by the
        // allowed origin too, with its request id.
        let big = open
            .client
            .post(open.url("/api/v1/login"))
            .header("Origin", "https://app.example.com")
            .header("content-type", "application/json")
            .body(vec![b' '; 2 * 1024 * 1024])
            .send()
            .await
            .expect("request");
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(big.headers().get("access-control-allow-origin").map(|v| v.as_bytes()), Some(&b"https://app.example.com"[..]));
        assert!(big.headers().get("x-request-id").is_some());

        let mut config = saaskit::config::Config::defaults();
        config.cors_origins = vec!["*".into()];
        assert!(config.validate().is_err(), "a wildcard is refused");
    }
);

db_test!(
    async fn answers_carrying_secrets_are_never_cached(app) {
        let signup = app.client.post(app.url("/api/v1/signup")).json(&json!({
            "business": {"name": "B"}, "email": "ada@example.com", "first_name": "A", "last_name": "B", "password": PASSWORD,
        })).send().await.expect("request");
        assert_eq!(signup.headers().get("cache-control").map(|v| v.as_bytes()), Some(&b"no-store"[..]));
        let token = token_of(&read(signup).await.1);
        for res in [
            app.client.post(app.url("/api/v1/login")).json(&json!({"email": "ada@example.com", "password": PASSWORD})).send().await.expect("request"),
            app.client.post(app.url("/api/v1/api-keys")).bearer_auth(&token).json(&json!({"name": "k"})).send().await.expect("request"),
            app.client.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.expect("request"),
            app.client.get(app.url("/api/v1/nowhere")).send().await.expect("request"),
        ] {
            assert_eq!(res.headers().get("cache-control").map(|v| v.as_bytes()), Some(&b"no-store"[..]), "{}", res.url());
        }
    }
);

db_test!(
    async fn oversized_headers_are_refused_before_any_work(app) {
        let mut request = String::from("GET /api/v1/plans HTTP/1.1\r\nHost: localhost\r\n");
        for i in 0..200 {
            request.push_str(&format!("X-Padding-{i}: {}\r\n", "a".repeat(64)));
        }
        request.push_str("Connection: close\r\n\r\n");
        let (status, _, _) = app.raw(request.as_bytes()).await;
        assert_eq!(status, 431, "too many headers");
        let huge = format!("GET /api/v1/plans HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "a".repeat(1_000_000));
        let (status, _, _) = app.raw(huge.as_bytes()).await;
        assert_eq!(status, 431, "a header too large");
    }
);

/// `value` with every string, number and boolean replaced by its type: what a response looks
/// like, without the ids and times that differ between any two answers.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(members) => members
            .iter()
            .map(|(k, v)| (k.clone(), shape(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Value::Array(items) => items.iter().map(shape).collect(),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(b) => json!(b),
        Value::Null => Value::Null,
    }
}

db_test!(
    async fn signup_does_not_tell_a_taken_email_when_verification_is_required(app) {
        app.signup("ada@example.com").await;
        let app = TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), |c| {
            c.require_verified_email = true;
        })
        .await;
        let users = app.count("users").await;
        let attempt = |email: &str| {
            json!({
                "business": {"name": "Mallory's"},
                "email": email,
                "first_name": "Mallory",
                "last_name": "M",
                "password": "mallory's own passphrase",
            })
        };
        let (taken_status, taken) = app.post("/api/v1/signup", None, attempt("ada@example.com")).await;
        let (new_status, fresh) = app.post("/api/v1/signup", None, attempt("grace@example.com")).await;
        assert_eq!((taken_status, new_status), (StatusCode::CREATED, StatusCode::CREATED), "{taken} {fresh}");
        assert_eq!(shape(&taken), shape(&fresh), "{taken}\n{fresh}");
        assert_eq!(taken["token"], Value::Null);
        assert_eq!(taken["user"]["email"], "ada@example.com");
        // Only the new address got an account; each address got one mail, the taken one a
        // notice instead of a link.
        assert_eq!(app.count("users").await, users + 1);
        assert_eq!(app.mail_to("ada@example.com", "tried to sign up").await.len(), 1);
        assert_eq!(app.mail_to("grace@example.com", "Confirm your email").await.len(), 1);
        // The existing account is untouched: Mallory's password does not open it.
        let (status, _) = app
            .post("/api/v1/login", None, json!({"email": "ada@example.com", "password": "mallory's own passphrase"}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        app.assert_conformant();
    }
);

db_test!(
    async fn an_ipv6_network_is_one_address_for_the_limits(app) {
        let app = behind_proxy(&app, |c| c.rate_limit_login_ip = Rule::per(3, 60)).await;
        // Four addresses of one /64 (what one customer line or host gets) share a limit of 3.
        let mut statuses = Vec::new();
        for host in 1..=4 {
            let ip = format!("2001:db8:1:2::{host}");
            statuses.push(login_from(&app, &ip, &format!("u{host}@example.com"), "guess").await.status);
        }
        assert_eq!(statuses, [401, 401, 401, 429]);
        // Another /64 is another client.
        let other = login_from(&app, "2001:db8:1:3::1", "u5@example.com", "guess").await;
        assert_eq!(other.status, 401);
    }
);

db_test!(
    async fn a_forwarded_for_line_the_proxy_appended_is_read_too(app) {
        let app = behind_proxy(&app, |c| c.rate_limit_login_ip = Rule::per(2, 60)).await;
        // The client sends its own header line, forged; the trusted proxy appends another with
        // the address it saw. Rotating the forged line must not escape the limit.
        let mut statuses = Vec::new();
        for i in 0..3 {
            let res = app
                .client
                .post(app.url("/api/v1/login"))
                .header("X-Forwarded-For", format!("198.51.100.{i}"))
                .header("X-Forwarded-For", "203.0.113.7")
                .json(&json!({"email": "ada@example.com", "password": "guess"}))
                .send()
                .await
                .expect("request");
            statuses.push(res.status().as_u16());
        }
        assert_eq!(statuses, [401, 401, 429]);
    }
);

/// Looks up an invitation key `way`s (`invitation`: `GET /api/v1/invitations/{key}`, `prefill`:
/// `GET /saas/signup/prefill`, `signup`: `POST /saas/signup` with it as `activation_key`) from
/// `ip`; the status and the problem's code.
async fn look_up_key(
    app: &TestApp,
    way: &str,
    key: &str,
    business: &str,
    ip: &str,
) -> (u16, Value) {
    let req = match way {
        "invitation" => app
            .client
            .get(app.url(&format!("/api/v1/invitations/{key}"))),
        "prefill" => app
            .client
            .get(app.url(&format!("/saas/signup/prefill?key={key}"))),
        _ => app.client.post(app.url("/saas/signup")).json(&json!({
            "business": {"id": business},
            "email": "grace@example.com",
            "first_name": "Grace",
            "last_name": "Hopper",
            "password1": "invited passphrase",
            "password2": "invited passphrase",
            "activation_key": key,
        })),
    };
    let res = req
        .header("X-Forwarded-For", ip)
        .send()
        .await
        .expect("request");
    let (status, body) = read(res).await;
    (status.as_u16(), body["code"].clone())
}

db_test!(
    async fn failed_invitation_look_ups_count_against_the_address(app) {
        let app = behind_proxy(&app, |c| c.rate_limit_keys_ip = Rule::per(3, 600)).await;
        let owner = app.signup("ada@example.com").await;
        let business = owner["business"]["id"].as_str().expect("business id").to_owned();
        let (status, inv) = app
            .post("/api/v1/invitations", Some(&token_of(&owner)), json!({"email": "grace@example.com", "send_email": false}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{inv}");
        let key = inv["key"].as_str().expect("key").to_owned();

        for (i, way) in ["invitation", "prefill", "signup"].into_iter().enumerate() {
            let ip = format!("198.51.100.{}", i + 1);
            for n in 0..3 {
                let guess = format!("guess{n}");
                assert_eq!(look_up_key(&app, way, &guess, &business, &ip).await, (404, json!("key_not_found")), "{way}");
            }
            assert_eq!(look_up_key(&app, way, "guess3", &business, &ip).await, (429, json!("rate_limited")), "{way}");
            assert_eq!(look_up_key(&app, way, &key, &business, &ip).await, (429, json!("rate_limited")), "{way}: the address is limited, whatever the key");
        }
        // A look-up that finds the invitation gives its hit back.
        for _ in 0..4 {
            assert_eq!(look_up_key(&app, "invitation", &key, &business, "198.51.100.9").await.0, 200);
            assert_eq!(look_up_key(&app, "prefill", &key, &business, "198.51.100.9").await.0, 200);
        }
    }
);

/// Sends `body` to `path` and asserts a 422 naming `field` with `code`.
async fn refused_field(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Value,
    field: &str,
    code: &str,
) {
    let mut req = app.client.request(method, app.url(path)).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.expect("request");
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(
        problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .any(|e| e["field"] == field && e["code"] == code),
        "{path}: expected {field}/{code} in {problem}"
    );
}

db_test!(
    async fn names_with_invisible_format_characters_are_refused_wherever_they_enter(app) {
        use reqwest::Method;
        // U+202E RIGHT-TO-LEFT OVERRIDE: "Acme\u{202e}moc.live" reads "Acmeevil.com".
        let spoof = "Acme\u{202e}moc.live";
        let signed_up = app.signup("ada@example.com").await;
        let owner = token_of(&signed_up);
        let business = signed_up["business"]["id"].as_str().expect("business id").to_owned();
        let person = |first: &str, last: &str, business: &str| {
            json!({"business": {"name": business}, "email": "new@example.com", "first_name": first, "last_name": last, "password": PASSWORD})
        };
        for (body, field) in [
            (person(spoof, "L", "B"), "first_name"),
            (person("A", spoof, "B"), "last_name"),
            (person("A", "L", spoof), "business.name"),
        ] {
            refused_field(&app, Method::POST, "/api/v1/signup", None, body, field, "invalid_characters").await;
        }
        let legacy = |first: &str, last: &str, business: Value, key: Option<&str>| {
            json!({"business": business, "email": "grace@example.com", "first_name": first, "last_name": last,
                   "password1": PASSWORD, "password2": PASSWORD, "activation_key": key})
        };
        for (body, field) in [
            (legacy(spoof, "L", json!({"name": "B"}), None), "first_name"),
            (legacy("A", spoof, json!({"name": "B"}), None), "last_name"),
            (legacy("A", "L", json!({"name": spoof}), None), "business.name"),
        ] {
            refused_field(&app, Method::POST, "/saas/signup", None, body, field, "invalid_characters").await;
        }
        let (_, inv) = app.post("/api/v1/invitations", Some(&owner), json!({"email": "grace@example.com", "send_email": false})).await;
        let key = inv["key"].as_str().expect("key").to_owned();
        for (first, last, field) in [(spoof, "L", "first_name"), ("A", spoof, "last_name")] {
            let body = legacy(first, last, json!({"id": business}), Some(&key));
            refused_field(&app, Method::POST, "/saas/signup", None, body, field, "invalid_characters").await;
            let body = json!({"first_name": first, "last_name": last, "password": PASSWORD});
            refused_field(&app, Method::POST, &format!("/api/v1/invitations/{key}/accept"), None, body, field, "invalid_characters").await;
        }

        refused_field(&app, Method::POST, "/api/v1/api-keys", Some(&owner), json!({"name": spoof}), "name", "invalid_name").await;
        // A resource of the toolkit names the problem as saaskit's person and business names do.
        refused_field(&app, Method::POST, "/api/v1/applications", Some(&owner), json!({"name": spoof}), "name", "invalid_characters").await;
        refused_field(&app, Method::POST, "/api/v1/bots", Some(&owner), json!({"name": spoof, "scopes": ["sdk"]}), "name", "invalid_name").await;
        let (status, application) = app.post("/api/v1/applications", Some(&owner), json!({"name": "Acme"})).await;
        assert_eq!(status, StatusCode::CREATED, "{application}");
        let path = format!("/api/v1/applications/{}", application["id"].as_str().expect("id"));
        refused_field(&app, Method::PATCH, &path, Some(&owner), json!({"name": spoof}), "name", "invalid_characters").await;

        app.signup("staff@example.com").await;
        saaskit::billing::admin::set_staff(&app.app, "staff@example.com", true).await.expect("make staff");
        let staff = app.login_token("staff@example.com").await;
        let plan = json!({"code": "team", "name": spoof, "price": 100, "cycle_days": 30});
        refused_field(&app, Method::POST, "/api/v1/admin/plans", Some(&staff), plan, "plan", "invalid_characters").await;
        refused_field(&app, Method::PATCH, "/api/v1/admin/plans/free-trial", Some(&staff), json!({"name": spoof}), "plan", "invalid_characters").await;

        assert_eq!(app.count("users").await, 2, "nobody signed up or joined");
        let (_, seen) = app.get(&format!("/api/v1/invitations/{key}"), None).await;
        assert_eq!(seen["email"], "grace@example.com", "the invitation is still pending");
    }
);
