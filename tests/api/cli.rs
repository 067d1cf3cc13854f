//! The `saaskit` binary itself: its help, `migrate`, and `serve` started and stopped like an
//! operator would, on both databases.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

pub fn saaskit() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_saaskit"));
    // Only what each test sets: no SAASKIT_* from the environment running the tests.
    for (key, _) in std::env::vars() {
        if key.starts_with("SAASKIT_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn help_documents_every_setting_and_subcommand() {
    let out = saaskit()
        .arg("--help")
        .output()
        .expect("run saaskit --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "serve",
        "migrate",
        "SAASKIT_DATABASE_URL",
        "SAASKIT_BIND",
        "SAASKIT_PUBLIC_URL",
        "SAASKIT_MAIL_DIR",
        "SAASKIT_SMTP_URL",
        "SAASKIT_MAIL_FROM",
        "SAASKIT_DEFAULT_PLAN",
        "SAASKIT_BACKUP_EVERY",
        "SAASKIT_BACKUP_DIR",
        "SAASKIT_BACKUP_KEEP",
        "backup",
        "restore",
    ] {
        assert!(
            help.contains(needle),
            "--help does not mention {needle}:\n{help}"
        );
    }
    for sub in ["serve", "migrate"] {
        let out = saaskit()
            .args([sub, "--help"])
            .output()
            .expect("run subcommand help");
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("SAASKIT_DATABASE_URL"));
    }
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let out = saaskit()
        .args(["migrate"])
        .env("SAASKIT_DATABASE_URL", "mysql://nope")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SAASKIT_DATABASE_URL"));
    let out = saaskit()
        .args(["migrate", "--public-url", "ftp://x"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SAASKIT_PUBLIC_URL"));
    for (every, dir) in [
        ("90s", None),
        ("1h", None),
        ("0m", Some("/tmp")),
        ("soon", Some("/tmp")),
    ] {
        let mut cmd = saaskit();
        cmd.args(["migrate"]).env("SAASKIT_BACKUP_EVERY", every);
        if let Some(dir) = dir {
            cmd.env("SAASKIT_BACKUP_DIR", dir);
        }
        let out = cmd.output().expect("run");
        assert!(
            !out.status.success(),
            "SAASKIT_BACKUP_EVERY={every} without a usable setting"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("SAASKIT_BACKUP_"),
            "{every}"
        );
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

impl Server {
    pub(crate) async fn start(database_url: &str, workdir: &std::path::Path) -> Server {
        Self::start_with(database_url, workdir, None, &[]).await
    }

    /// Starts `saaskit serve` with `env` set; with `log`, its output (both streams, JSON lines,
    /// at debug level unless `env` sets `RUST_LOG`) goes to that file.
    pub(crate) async fn start_with(
        database_url: &str,
        workdir: &std::path::Path,
        log: Option<&std::path::Path>,
        env: &[(&str, &str)],
    ) -> Server {
        let port = free_port();
        let mut cmd = saaskit();
        cmd.current_dir(workdir)
            .env("SAASKIT_DATABASE_URL", database_url)
            .env("SAASKIT_BIND", format!("127.0.0.1:{port}"));
        match log {
            Some(path) => {
                let file = std::fs::File::create(path).expect("log file");
                let copy = file.try_clone().expect("log file");
                cmd.env("SAASKIT_LOG_FORMAT", "json")
                    .env("RUST_LOG", "debug")
                    .envs(env.iter().copied())
                    .stdout(Stdio::from(file))
                    .stderr(Stdio::from(copy));
            }
            None => {
                cmd.envs(env.iter().copied())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
            }
        }
        let child = cmd.spawn().expect("start saaskit");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(res) = client.get(format!("{}/healthz", server.base)).send().await
                && res.status() == StatusCode::OK
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("saaskit did not start serving on port {port}");
    }

    /// Kills it with SIGKILL, as a crash or the OOM killer would: nothing runs on its way out.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns the exit code.
    pub(crate) async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        panic!("saaskit did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve_stop_and_restart(test_db: Arc<TestDb>) {
    let workdir =
        std::env::temp_dir().join(format!("saaskit_cli_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let client = reqwest::Client::new();

    let server = Server::start(&test_db.url, &workdir).await;
    // Ready once the database answers, the migrations are applied and the mail worker runs.
    let mut ready = Value::Null;
    for _ in 0..100 {
        let res = client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .expect("readyz");
        ready = res.json().await.expect("readyz body");
        if ready["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ready,
        json!({"status": "ready", "checks": {"database": "ok", "migrations": "ok", "mail_worker": "ok"}})
    );
    // The container health check asks the same thing through the binary.
    let address = server.base.trim_start_matches("http://").to_owned();
    let check = saaskit()
        .arg("check-ready")
        .env("SAASKIT_BIND", &address)
        .output()
        .expect("check-ready");
    assert!(check.status.success(), "{check:?}");
    let res = client
        .post(format!("{}/api/v1/signup", server.base))
        .json(&json!({"business": {"name": "Acme"}, "email": "ada@example.com", "first_name": "Ada", "last_name": "L", "password": PASSWORD}))
        .send()
        .await
        .expect("signup");
    assert_eq!(res.status(), StatusCode::CREATED);
    let signup: Value = res.json().await.expect("signup body");
    let token = signup["token"].as_str().expect("token").to_owned();
    let business = signup["business"]["id"].as_str().expect("id").to_owned();
    let plan_of = |client: reqwest::Client, base: String, token: String| async move {
        let me: Value = client
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("me")
            .json()
            .await
            .expect("me body");
        me["subscription"]["plan"]["code"].clone()
    };
    assert_eq!(
        plan_of(client.clone(), server.base.clone(), token.clone()).await,
        "free-trial"
    );
    // Another process (the CLI) changes the plan: the server's auth-context cache may answer
    // from memory for up to a second (SAASKIT_AUTH_CACHE_TTL_MS), never longer.
    let out = saaskit()
        .current_dir(&workdir)
        .env("SAASKIT_DATABASE_URL", &test_db.url)
        .args(["business", "set-plan", &business, "unlimited"])
        .output()
        .expect("set-plan");
    assert!(out.status.success(), "{out:?}");
    let changed = std::time::Instant::now();
    loop {
        let plan = plan_of(client.clone(), server.base.clone(), token.clone()).await;
        if plan == "unlimited" {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(3),
            "the change made by another process was not seen within the cache's lifetime"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The mail worker runs inside `serve`: a reset mail lands in ./mail by itself.
    let res = client
        .post(format!("{}/api/v1/password/reset", server.base))
        .json(&json!({"email": "ada@example.com"}))
        .send()
        .await
        .expect("reset");
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mail_dir = workdir.join("mail");
    let mut delivered = false;
    for _ in 0..200 {
        let count = std::fs::read_dir(&mail_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .count()
            })
            .unwrap_or(0);
        if count == 1 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        delivered,
        "the worker wrote the reset mail to {}",
        mail_dir.display()
    );
    assert_eq!(server.terminate().await, Some(0), "SIGTERM is a clean stop");

    let server = Server::start(&test_db.url, &workdir).await;
    let res = client
        .post(format!("{}/api/v1/login", server.base))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the account survived the restart"
    );
    assert_eq!(server.terminate().await, Some(0));
    // Nothing listens any more: not ready, and a non-zero exit.
    let check = saaskit()
        .arg("check-ready")
        .env("SAASKIT_BIND", &address)
        .output()
        .expect("check-ready");
    assert!(!check.status.success());
    let _ = std::fs::remove_dir_all(&workdir);
}

/// The request lines a server wrote with `SAASKIT_REQUEST_LOG=setting` while answering
/// `requests` more `/healthz` after it started, and all it logged.
/// `2026-12-07T08:30:00.123456Z  INFO request{method=GET route="/healthz" request_id="<uuid>"}:
/// saaskit::request: response status=200 latency_ms=0.3`
fn is_a_text_request_line(line: &str) -> bool {
    let Some((time, rest)) =
        line.split_once("  INFO request{method=GET route=\"/healthz\" request_id=\"")
    else {
        return false;
    };
    let Some((id, rest)) =
        rest.split_once("\"}: saaskit::request: response status=200 latency_ms=")
    else {
        return false;
    };
    time.ends_with('Z')
        && chrono::DateTime::parse_from_rfc3339(time).is_ok()
        && uuid::Uuid::parse_str(id).is_ok()
        && rest.trim().parse::<f64>().is_ok()
}

async fn request_lines(setting: &str, requests: usize) -> (Vec<Value>, String) {
    request_lines_in(setting, requests, "json").await
}

async fn request_lines_in(setting: &str, requests: usize, format: &str) -> (Vec<Value>, String) {
    let test_db = TestDb::create(Backend::Sqlite).await;
    let workdir = std::env::temp_dir().join(format!(
        "saaskit_request_log_{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let log = workdir.join("server.log");
    let server = Server::start_with(
        &test_db.url,
        &workdir,
        Some(&log),
        &[
            ("SAASKIT_REQUEST_LOG", setting),
            ("RUST_LOG", "info"),
            ("SAASKIT_LOG_FORMAT", format),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..requests {
        let res = client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(server.terminate().await, Some(0));
    // Written by the log thread; flushed as the server stopped.
    let logged = std::fs::read_to_string(&log).expect("the log");
    let _ = std::fs::remove_dir_all(&workdir);
    let lines = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "saaskit::request" && l["fields"]["message"] == "response")
        .collect();
    (lines, logged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_lines_are_all_sampled_or_off_as_configured_and_other_lines_stay() {
    let (all, logged) = request_lines("all", 20).await;
    assert!(all.len() >= 20, "every request is logged:\n{logged}");
    for line in &all {
        let span = &line["span"];
        assert_eq!(span["route"], "/healthz", "{line}");
        assert_eq!(span["method"], "GET", "{line}");
        assert_eq!(
            span["request_id"].as_str().map(str::len),
            Some(36),
            "{line}"
        );
        assert_eq!(line["fields"]["status"], 200, "{line}");
        assert!(line["fields"]["latency_ms"].is_number(), "{line}");
    }
    // The startup polls count too: 100 more requests make ten lines, and a few for those.
    let (sampled, logged) = request_lines("1/10", 100).await;
    assert!(
        (10..=25).contains(&sampled.len()),
        "one request in ten: {} lines\n{logged}",
        sampled.len()
    );
    let (none, logged) = request_lines("off", 20).await;
    assert!(none.is_empty(), "no request line:\n{logged}");
    assert!(
        logged.contains("saaskit is serving"),
        "the other INFO lines are still written:\n{logged}"
    );
    // The text format names the request where a span would be, its id quoted.
    let (_, logged) = request_lines_in("all", 3, "text").await;
    let line = logged
        .lines()
        .find(|l| l.contains(" saaskit::request: response "))
        .unwrap_or_else(|| panic!("a request line in text:\n{logged}"));
    let shape = is_a_text_request_line(line);
    assert!(shape, "{line}");
    let out = saaskit()
        .args(["migrate"])
        .env("SAASKIT_REQUEST_LOG", "some")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1/N"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_cleanly_on_sigterm_and_restarts_with_its_data_sqlite() {
    serve_stop_and_restart(Arc::new(TestDb::create(Backend::Sqlite).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn serve_stops_cleanly_on_sigterm_and_restarts_with_its_data_postgres() {
    serve_stop_and_restart(Arc::new(TestDb::create(Backend::Postgres).await)).await;
}

#[test]
fn migrate_creates_the_default_sqlite_database_in_the_working_directory() {
    let workdir =
        std::env::temp_dir().join(format!("saaskit_cli_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let out = saaskit()
        .current_dir(&workdir)
        .arg("migrate")
        .output()
        .expect("run migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(workdir.join("saaskit.db").exists());
    let again = saaskit()
        .current_dir(&workdir)
        .arg("migrate")
        .output()
        .expect("run migrate again");
    assert!(again.status.success());
    let _ = std::fs::remove_dir_all(&workdir);
}

/// Every secret a client sends or receives in the account flows, and the server's log of them
/// at debug level: none of the secrets may appear in it, whole or as its random part.
async fn no_secret_in_the_logs(test_db: Arc<TestDb>) {
    let workdir =
        std::env::temp_dir().join(format!("saaskit_logs_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let log = workdir.join("server.log");
    let server = Server::start_with(&test_db.url, &workdir, Some(&log), &[]).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut req = client.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move {
            let res = req.send().await.expect("request");
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned()];
    let (status, signup) = post(
        "/api/v1/signup",
        None,
        json!({"business": {"name": "Logs"}, "email": "ada@example.com", "first_name": "Ada", "last_name": "L", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{signup}");
    let token = token_of(&signup);
    secrets.push(token.clone());
    let (_, login) = post(
        "/api/v1/login",
        None,
        json!({"email": "ada@example.com", "password": PASSWORD}),
    )
    .await;
    secrets.push(token_of(&login));
    let (_, wrong) = post(
        "/api/v1/login",
        None,
        json!({"email": "ada@example.com", "password": "a wrong guess at it"}),
    )
    .await;
    assert_eq!(wrong["code"], "invalid_credentials");
    secrets.push("a wrong guess at it".to_owned());
    let (status, key) = post("/api/v1/api-keys", Some(&token), json!({"name": "k"})).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    secrets.push(key["key"].as_str().expect("key").to_owned());
    let (status, bot) = post(
        "/api/v1/bots",
        Some(&token),
        json!({"name": "b", "scopes": ["sdk"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bot}");
    secrets.push(bot["token"].as_str().expect("token").to_owned());
    let (status, inv) = post(
        "/api/v1/invitations",
        Some(&token),
        json!({"email": "grace@example.com", "send_email": false}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    let invitation = inv["key"].as_str().expect("key").to_owned();
    secrets.push(invitation.clone());
    let res = client
        .get(format!("{base}/api/v1/invitations/{invitation}"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let (status, joined) = post(
        &format!("/api/v1/invitations/{invitation}/accept"),
        None,
        json!({"first_name": "Grace", "last_name": "H", "password": "grace's own passphrase"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    secrets.push("grace's own passphrase".to_owned());
    secrets.push(token_of(&joined));
    let (status, _) = post(
        "/api/v1/password/reset",
        None,
        json!({"email": "ada@example.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The mail worker writes the message to ./mail in the server's working directory.
    let reset_key = key_mailed(&workdir, &["reset-password?key="]).await;
    secrets.push(reset_key.clone());
    let (status, reset) = post(
        "/api/v1/password/reset/confirm",
        None,
        json!({"key": reset_key, "password": "the new secret passphrase"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    secrets.push("the new secret passphrase".to_owned());
    secrets.push(token_of(&reset));
    let (status, _) = post(
        "/api/v1/password/change",
        Some(&token_of(&reset)),
        json!({"current_password": "the new secret passphrase", "new_password": "the newest passphrase"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    secrets.push("the newest passphrase".to_owned());
    // Email verification: the link mailed at signup.
    let verify_key = key_mailed(&workdir, &["verify-email?key=", "ada@example.com"]).await;
    secrets.push(verify_key.clone());
    let (status, verified) = post("/api/v1/email/verify", None, json!({"key": verify_key})).await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    // Switching business, and deleting an account with its password.
    let grace = token_of(&joined);
    let (_, me) = {
        let res = client
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(&grace)
            .send()
            .await
            .expect("request");
        (
            res.status(),
            res.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let (status, switched) = post(
        "/api/v1/sessions/switch",
        Some(&grace),
        json!({"business_id": me["business"]["id"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{switched}");
    secrets.push(token_of(&switched));
    let res = client
        .delete(format!("{base}/api/v1/me"))
        .bearer_auth(token_of(&switched))
        .json(&json!({"password": "grace's own passphrase"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let res = client
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the reset ended the first session"
    );
    assert_eq!(server.terminate().await, Some(0));

    let logged = std::fs::read_to_string(&log).expect("the log");
    assert!(
        logged.lines().count() > 20,
        "the server logged its requests:\n{logged}"
    );
    assert!(logged.contains("request_id"), "{logged}");
    for secret in &secrets {
        // The random part of a token (after its `sks_`-like prefix) must not appear either.
        let random = secret.rsplit('_').next().unwrap_or(secret);
        assert!(
            !logged.contains(secret.as_str()) && (random.len() < 16 || !logged.contains(random)),
            "a secret ({}…) is in the server's log",
            secret.chars().take(6).collect::<String>()
        );
    }
    let _ = std::fs::remove_dir_all(&workdir);
}

/// The key in the first mail the server wrote to `<workdir>/mail` that contains every needle,
/// waiting up to five seconds for the mail worker.
async fn key_mailed(workdir: &std::path::Path, needles: &[&str]) -> String {
    for _ in 0..100 {
        if let Some(mail) = std::fs::read_dir(workdir.join("mail"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|m| needles.iter().all(|n| m.contains(n)))
        {
            return crate::smtp_sink::key_in(&mail);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no mail with {needles:?} was written");
}

#[tokio::test]
async fn no_secret_reaches_the_logs_sqlite() {
    no_secret_in_the_logs(Arc::new(TestDb::create(Backend::Sqlite).await)).await;
}

#[tokio::test]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn no_secret_reaches_the_logs_postgres() {
    no_secret_in_the_logs(Arc::new(TestDb::create(Backend::Postgres).await)).await;
}
