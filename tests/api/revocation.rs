//! Revocation everywhere at once: `saaskit serve` processes on one database, each caching auth
//! contexts for a minute (so the cache's TTL cannot be what refreshes them), see a change made
//! on another replica — or by the CLI, on SQLite — within 100 ms: pushed (PostgreSQL
//! LISTEN/NOTIFY, SQLite's `data_version`), not waited for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::{Server, saaskit};
use crate::helpers::*;

/// Long enough that only a pushed notice can explain a refusal seen in time.
const TTL_MS: &str = "60000";
/// The promise: refused on every replica within this.
const WITHIN: Duration = Duration::from_millis(100);

async fn start(db: &TestDb, workdir: &std::path::Path) -> Server {
    Server::start_with(
        &db.url,
        workdir,
        None,
        &[
            ("SAASKIT_AUTH_CACHE_TTL_MS", TTL_MS),
            ("SAASKIT_RATE_LIMIT", "off"),
            (
                "SAASKIT_SECRET_KEY_FILE",
                db.key_file.to_str().expect("utf-8"),
            ),
        ],
    )
    .await
}

async fn call(
    client: &reqwest::Client,
    server: &Server,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = client
        .request(method, format!("{}{path}", server.base))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("the server answers");
    let status = res.status();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn signup(client: &reqwest::Client, server: &Server, email: &str) -> String {
    let res = client
        .post(format!("{}/api/v1/signup", server.base))
        .json(
            &json!({"email": email, "password": PASSWORD, "first_name": "R",
                      "last_name": "Eplica", "business": {"name": email}}),
        )
        .send()
        .await
        .expect("signup");
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    token_of(&body)
}

/// Asks each of `servers` `path` with `token` until `done` says the change is seen, and returns
/// how long each took from `since`.
async fn seen_within(
    client: &reqwest::Client,
    servers: &[&Server],
    path: &str,
    token: &str,
    since: Instant,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> Vec<Duration> {
    let mut took = Vec::new();
    for server in servers {
        loop {
            let (status, body) = call(client, server, Method::GET, path, token, None).await;
            if done(status, &body) {
                took.push(since.elapsed());
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "{path} on {} still answers {status} {body}",
                server.base
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    took
}

/// Runs the CLI on `db`, as an operator would from another process.
fn cli(db: &TestDb, args: &[&str]) {
    let out = saaskit()
        .args(args)
        .env("SAASKIT_DATABASE_URL", &db.url)
        .env("SAASKIT_SECRET_KEY_FILE", &db.key_file)
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The business `token` acts for.
async fn business_of(client: &reqwest::Client, server: &Server, token: &str) -> String {
    let (_, me) = call(client, server, Method::GET, "/api/v1/me", token, None).await;
    me["business"]["id"]
        .as_str()
        .expect("business id")
        .to_owned()
}

/// Warms each replica's cache for `token` (two reads: the second is served from the cache).
async fn warm(client: &reqwest::Client, servers: &[&Server], path: &str, token: &str) {
    for server in servers {
        for _ in 0..2 {
            let (status, body) = call(client, server, Method::GET, path, token, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
}

fn assert_within(what: &str, took: &[Duration]) {
    eprintln!("{what}: seen on the other replicas after {took:?}");
    for t in took {
        assert!(
            *t < WITHIN,
            "{what}: a replica took {t:?} (more than {WITHIN:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn a_change_on_one_of_three_postgres_replicas_is_seen_by_the_others_within_100_ms() {
    let db = Arc::new(TestDb::create(Backend::Postgres).await);
    let workdir = std::env::temp_dir().join(format!("saaskit_rev_{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let a = start(&db, &workdir).await;
    let b = start(&db, &workdir).await;
    let c = start(&db, &workdir).await;
    let others = [&b, &c];
    let client = reqwest::Client::new();

    // A session logged out on A.
    let owner = signup(&client, &a, "owner@example.com").await;
    let session = {
        let res = client
            .post(format!("{}/api/v1/login", a.base))
            .json(&json!({"email": "owner@example.com", "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        token_of(&res.json().await.expect("json"))
    };
    warm(&client, &others, "/api/v1/me", &session).await;
    let (status, _) = call(&client, &a, Method::POST, "/api/v1/logout", &session, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let since = Instant::now();
    let took = seen_within(&client, &others, "/api/v1/me", &session, since, |s, _| {
        s == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_within("a session logged out", &took);

    // An API key revoked on A.
    let (status, key) = call(
        &client,
        &a,
        Method::POST,
        "/api/v1/api-keys",
        &owner,
        Some(json!({"name": "replicated"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let secret = key["key"].as_str().expect("secret").to_owned();
    warm(&client, &others, "/api/v1/entitlements", &secret).await;
    let path = format!("/api/v1/api-keys/{}", key["id"].as_str().expect("id"));
    let (status, _) = call(&client, &a, Method::DELETE, &path, &owner, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let since = Instant::now();
    let took = seen_within(
        &client,
        &others,
        "/api/v1/entitlements",
        &secret,
        since,
        |s, _| s == StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_within("an API key revoked", &took);

    // A member removed on A.
    let (status, invitation) = call(
        &client,
        &a,
        Method::POST,
        "/api/v1/invitations",
        &owner,
        Some(json!({"email": "member@example.com", "role": "member", "send_email": false})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    let key = invitation["key"].as_str().expect("key");
    let res = client
        .post(format!("{}/api/v1/invitations/{key}/accept", a.base))
        .json(&json!({"first_name": "M", "last_name": "M", "password": PASSWORD}))
        .send()
        .await
        .expect("accept");
    assert_eq!(res.status(), StatusCode::CREATED);
    let member = token_of(&res.json().await.expect("json"));
    let (_, me) = call(&client, &a, Method::GET, "/api/v1/me", &member, None).await;
    let member_id = me["member_id"].as_str().expect("member id").to_owned();
    warm(&client, &others, "/api/v1/me", &member).await;
    let path = format!("/api/v1/members/{member_id}");
    let (status, _) = call(&client, &a, Method::DELETE, &path, &owner, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let since = Instant::now();
    let took = seen_within(&client, &others, "/api/v1/me", &member, since, |s, _| {
        s == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_within("a member removed", &took);

    // A plan changed by an operator (the CLI, another process): seen by all three.
    let owners_business = business_of(&client, &a, &owner).await;
    warm(&client, &[&a, &b, &c], "/api/v1/subscription", &owner).await;
    cli(
        &db,
        &["business", "set-plan", &owners_business, "unlimited"],
    );
    let since = Instant::now();
    let took = seen_within(
        &client,
        &[&a, &b, &c],
        "/api/v1/subscription",
        &owner,
        since,
        |_, b| b["plan"]["code"] == "unlimited",
    )
    .await;
    assert_within("a plan changed", &took);

    // A user deactivated and a business deactivated by staff on A.
    let staff = signup(&client, &a, "staff@example.com").await;
    cli(&db, &["user", "make-staff", "staff@example.com"]);
    let business = business_of(&client, &a, &owner).await;
    let (_, me) = call(&client, &a, Method::GET, "/api/v1/me", &owner, None).await;
    let user = me["user"]["id"].as_str().expect("user id").to_owned();
    // The staff session must see itself made staff on A (the CLI's commit, heard there too).
    let path = "/api/v1/admin/plans";
    let since = Instant::now();
    let took = seen_within(&client, &[&a], path, &staff, since, |s, _| {
        s == StatusCode::OK
    })
    .await;
    eprintln!("made staff by the CLI: seen after {took:?}");

    warm(&client, &others, "/api/v1/me", &owner).await;
    let path = format!("/api/v1/admin/users/{user}/deactivate");
    let (status, body) = call(&client, &a, Method::POST, &path, &staff, None).await;
    assert!(status.is_success(), "{status} {body}");
    let since = Instant::now();
    let took = seen_within(&client, &others, "/api/v1/me", &owner, since, |s, _| {
        s == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_within("a user deactivated", &took);

    let other = signup(&client, &a, "other@example.com").await;
    let other_business = business_of(&client, &a, &other).await;
    assert_ne!(other_business, business);
    warm(&client, &others, "/api/v1/me", &other).await;
    let path = format!("/api/v1/admin/businesses/{other_business}/deactivate");
    let (status, body) = call(&client, &a, Method::POST, &path, &staff, None).await;
    assert!(status.is_success(), "{status} {body}");
    let since = Instant::now();
    let took = seen_within(&client, &others, "/api/v1/me", &other, since, |s, _| {
        s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN
    })
    .await;
    assert_within("a business deactivated", &took);
    drop((a, b, c));
    let _ = std::fs::remove_dir_all(&workdir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_by_the_cli_reaches_a_running_sqlite_server_within_100_ms() {
    let db = TestDb::create(Backend::Sqlite).await;
    let workdir = std::env::temp_dir().join(format!("saaskit_rev_{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let server = start(&db, &workdir).await;
    let client = reqwest::Client::new();
    let owner = signup(&client, &server, "cli@example.com").await;
    let business = business_of(&client, &server, &owner).await;
    warm(&client, &[&server], "/api/v1/subscription", &owner).await;
    cli(&db, &["business", "set-plan", &business, "unlimited"]);
    let since = Instant::now();
    let took = seen_within(
        &client,
        &[&server],
        "/api/v1/subscription",
        &owner,
        since,
        |_, b| b["plan"]["code"] == "unlimited",
    )
    .await;
    assert_within("a plan set by the CLI", &took);
    drop(server);
    let _ = std::fs::remove_dir_all(&workdir);
}
