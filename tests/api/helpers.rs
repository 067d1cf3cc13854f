//! The test harness: a [`TestApp`] runs the real application on a free port against a fresh
//! database (a temporary SQLite file, or a new PostgreSQL database when
//! `SAASKIT_TEST_POSTGRES_URL` is set) and speaks HTTP to it like any client.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use saaskit::app::{App, AppState};
use saaskit::clock::ManualClock;
use saaskit::config::Config;
use saaskit::db::Db;
use serde_json::{Value, json};
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

use crate::conformance;

pub const POSTGRES_ENV: &str = "SAASKIT_TEST_POSTGRES_URL";

/// Runs a scenario once per database: `sqlite` always, `postgres` when `SAASKIT_TEST_POSTGRES_URL`
/// is set (and then it fails, not skips, if PostgreSQL cannot be reached).
#[macro_export]
macro_rules! db_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($app: $crate::helpers::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                scenario($crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::postgres_enabled() {
                    scenario($crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await).await
                }
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_enabled() -> bool {
    std::env::var(POSTGRES_ENV).is_ok_and(|v| !v.is_empty())
}

/// A fresh database that removes itself when dropped.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// The secret key file of this database's servers (`SAASKIT_SECRET_KEY_FILE`): beside a
    /// SQLite file, where saaskit puts it by default; in the temporary folder for PostgreSQL.
    pub key_file: PathBuf,
    sqlite_path: Option<PathBuf>,
    pg_admin: Option<(PgConnectOptions, String)>,
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        let name = format!("saaskit_test_{}", Uuid::new_v4().simple());
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                TestDb {
                    backend,
                    url: format!("sqlite://{}", path.display()),
                    key_file: std::env::temp_dir().join(format!("{name}.db.key")),
                    sqlite_path: Some(path),
                    pg_admin: None,
                }
            }
            Backend::Postgres => {
                let admin_url = std::env::var(POSTGRES_ENV)
                    .unwrap_or_else(|_| panic!("{POSTGRES_ENV} is not set"));
                let admin = PgConnectOptions::from_str(&admin_url)
                    .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is not a PostgreSQL URL: {e}"));
                let mut conn = admin.connect().await.unwrap_or_else(|e| {
                    panic!("{POSTGRES_ENV} is set but PostgreSQL is unreachable: {e}")
                });
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                let url = admin.clone().database(&name).to_url_lossy().to_string();
                TestDb {
                    backend,
                    url,
                    key_file: std::env::temp_dir().join(format!("{name}.key")),
                    sqlite_path: None,
                    pg_admin: Some((admin, name)),
                }
            }
        }
    }

    /// A new pool on this database, migrated for what the binary serves ([`products`]).
    pub async fn connect(&self) -> Db {
        self.connect_with(&products()).await
    }

    /// A new pool on this database, migrated for `products`.
    pub async fn connect_with(&self, products: &saaskit::product::Products) -> Db {
        let db = match self.backend {
            Backend::Sqlite => Db::connect(&self.url, 8).await,
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(&self.url).expect("test database URL");
                Db::connect_postgres(options, 8).await
            }
        }
        .expect("connect to the test database");
        products
            .migrate(&db)
            .await
            .expect("migrate the test database");
        db
    }
}

/// What the tests serve: saaskit with the example product, as the binary does.
pub fn products() -> Arc<saaskit::product::Products> {
    static PRODUCTS: std::sync::OnceLock<Arc<saaskit::product::Products>> =
        std::sync::OnceLock::new();
    PRODUCTS
        .get_or_init(|| {
            Arc::new(saaskit::product::Products::new().with(saaskit_example::product()))
        })
        .clone()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.key_file);
        if let Some(path) = &self.sqlite_path {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        if let Some((admin, name)) = self.pg_admin.take() {
            // Drop runs inside the test's runtime, which cannot block on itself: use a thread
            // with a runtime of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime for dropping the test database");
                rt.block_on(async move {
                    if let Ok(mut conn) = admin.connect().await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    pub app: AppState,
    pub db: Db,
    pub mail_dir: PathBuf,
    /// Exchanges that broke the OpenAPI document (see `conformance`); checked at every `call`
    /// and when the app is dropped.
    violations: conformance::Violations,
    server: tokio::task::JoinHandle<()>,
    // Dropped last: the database outlives the server using it.
    pub test_db: Arc<TestDb>,
}

pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .expect("valid literal")
        .with_timezone(&Utc)
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        let test_db = Arc::new(TestDb::create(backend).await);
        Self::spawn_on(test_db, ManualClock::new(start_time())).await
    }

    /// Starts another server on an existing test database, as a restart or a second replica would.
    pub async fn spawn_on(test_db: Arc<TestDb>, clock: ManualClock) -> TestApp {
        Self::spawn_configured(test_db, clock, |_| {}).await
    }

    /// Like [`TestApp::spawn_on`], with a chance to change the configuration (SMTP, say).
    pub async fn spawn_configured(
        test_db: Arc<TestDb>,
        clock: ManualClock,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        Self::start(test_db, clock, products(), configure).await
    }

    /// A server for `products` instead of the binary's saaskit-with-the-example.
    pub async fn spawn_serving(
        backend: Backend,
        products: Arc<saaskit::product::Products>,
    ) -> TestApp {
        let test_db = Arc::new(TestDb::create(backend).await);
        Self::start(test_db, ManualClock::new(start_time()), products, |_| {}).await
    }

    async fn start(
        test_db: Arc<TestDb>,
        clock: ManualClock,
        products: Arc<saaskit::product::Products>,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let db = test_db.connect_with(&products).await;
        let mail_dir =
            std::env::temp_dir().join(format!("saaskit_mail_{}", Uuid::new_v4().simple()));
        let mut config = Config::defaults();
        config.database_url = test_db.url.clone();
        config.mail_dir = mail_dir.clone();
        config.shutdown_timeout_secs = 1;
        config.secret_key_file = Some(test_db.key_file.clone());
        configure(&mut config);
        let app = App::with_db(config, db.clone(), Arc::new(clock.clone()), products)
            .expect("valid test configuration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let address = format!("http://{}", listener.local_addr().expect("local address"));
        let violations = conformance::Violations::default();
        let recorder = violations.clone();
        let contract = conformance::contract(&app.products);
        let router = saaskit::http::router(app.clone()).layer(axum::middleware::from_fn(
            move |req, next| conformance::record(contract.clone(), recorder.clone(), req, next),
        ));
        let server_app = app.clone();
        let server = tokio::spawn(async move {
            let _ = saaskit::app::serve(server_app, router, listener, std::future::pending()).await;
        });
        TestApp {
            address,
            client: reqwest::Client::new(),
            clock,
            app,
            db,
            mail_dir,
            violations,
            server,
            test_db,
        }
    }

    /// Fails the test if an exchange so far did not match the OpenAPI document.
    pub fn assert_conformant(&self) {
        let found: Vec<String> = match self.violations.lock() {
            Ok(mut all) => all.drain(..).collect(),
            Err(_) => return,
        };
        assert!(
            found.is_empty(),
            "{} exchange(s) do not match the OpenAPI document (/api/v1/openapi.json):\n{}",
            found.len(),
            found.join("\n")
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Sends a request and returns the status and the body as JSON (Null when empty, a string for
    /// a `text/…` body such as `/docs` or `/metrics`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request reaches the server");
        let answer = read(res).await;
        self.assert_conformant();
        answer
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    /// Signs up `email` with the password `correct horse battery` and returns the response.
    pub async fn signup(&self, email: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/signup",
                None,
                json!({
                    "business": {"name": format!("{email}'s business")},
                    "email": email,
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "password": PASSWORD,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "signup failed: {body}");
        body
    }

    /// Invites `email` as `role` into the business of `owner`'s session, and accepts as a new
    /// account with the test password; returns (its session, its member id).
    pub async fn join(&self, owner: &str, email: &str, role: &str) -> (String, String) {
        let (status, inv) = self
            .post(
                "/api/v1/invitations",
                Some(owner),
                json!({"email": email, "role": role, "send_email": false}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{inv}");
        let key = inv["key"].as_str().expect("key");
        let (status, joined) = self
            .post(
                &format!("/api/v1/invitations/{key}/accept"),
                None,
                json!({"first_name": "T", "last_name": "M", "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{joined}");
        let token = token_of(&joined);
        let (_, me) = self.get("/api/v1/me", Some(&token)).await;
        let member_id = me["member_id"].as_str().expect("member_id").to_owned();
        (token, member_id)
    }

    /// Logs in with the test password and returns the new session token (after a long jump of
    /// the clock, an old session has lapsed like a real one would).
    pub async fn login_token(&self, email: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        token_of(&body)
    }

    /// Signs up and returns the session token.
    pub async fn signup_token(&self, email: &str) -> String {
        token_of(&self.signup(email).await)
    }

    /// Sends raw bytes over a new connection and returns the status, the head and the body of
    /// the answer: for requests a well-behaved client would never send.
    pub async fn raw(&self, request: &[u8]) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = self.address.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may answer (and close) before it has read everything; that is fine.
        let _ = stream.write_all(request).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
        (status, head.to_owned(), body.to_owned())
    }

    /// Runs the mail worker's pass once, as the background loop would.
    /// Work answered before it was done (a reset request's mail) is waited for first.
    pub async fn deliver_mail(&self) -> saaskit::jobs::mail::Delivery {
        self.app.background_idle().await;
        saaskit::jobs::mail::deliver_due(&self.app)
            .await
            .expect("deliver mail")
    }

    /// The messages written to the mail folder (the default transport), oldest first.
    pub fn mailbox(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.mail_dir) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| std::fs::read_to_string(p).expect("read .eml"))
            .collect()
    }

    /// Delivers queued mail and returns the messages sent to `to` whose subject contains
    /// `about`, oldest first.
    pub async fn mail_to(&self, to: &str, about: &str) -> Vec<String> {
        self.deliver_mail().await;
        self.mailbox()
            .into_iter()
            .filter(|m| {
                m.lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
                    && m.lines()
                        .any(|l| l.starts_with("Subject: ") && l.contains(about))
            })
            .collect()
    }

    /// Delivers queued mail and returns the one message sent to `to` whose subject contains
    /// `about` (every new account is also mailed an email verification link).
    pub async fn only_mail_to(&self, to: &str, about: &str) -> String {
        let found = self.mail_to(to, about).await;
        assert_eq!(
            found.len(),
            1,
            "expected one message about {about:?} to {to}, found {}",
            found.len()
        );
        found.into_iter().next().unwrap_or_default()
    }

    /// The key of the newest email verification link mailed to `to`.
    pub async fn verification_key(&self, to: &str) -> String {
        let mails = self.mail_to(to, VERIFICATION_SUBJECT).await;
        let newest = mails
            .last()
            .unwrap_or_else(|| panic!("no verification mail to {to}"));
        crate::smtp_sink::key_in(newest)
    }

    /// Rows in `table`, once the work answered before it was done has finished.
    pub async fn count(&self, table: &str) -> i64 {
        self.app.background_idle().await;
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        match &self.db {
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("count rows")
    }

    /// Runs one SQL statement directly on the database (to tamper with it, as an attacker with
    /// database access would).
    pub async fn exec(&self, sql: &str) -> u64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.db {
            Db::Sqlite(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Db::Postgres(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
        .expect("run SQL")
    }

    /// Row counts of every table that a request could write to.
    pub async fn counts(&self) -> Vec<(String, i64)> {
        let mut all = Vec::new();
        for table in [
            "users",
            "businesses",
            "members",
            "subscriptions",
            "tokens",
            "one_time_keys",
            "outbox",
        ] {
            all.push((table.to_owned(), self.count(table).await));
        }
        all
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.mail_dir);
        // The requests a test made without `call` (reqwest directly, `raw`) are checked here;
        // not while unwinding from another failure, which would abort the test binary.
        if !std::thread::panicking() {
            self.assert_conformant();
        }
    }
}

pub const PASSWORD: &str = "correct horse battery";

/// The subject of the mail with an email verification link.
pub const VERIFICATION_SUBJECT: &str = "Confirm your email address";
/// The subject of the mail with a password reset link.
pub const RESET_SUBJECT: &str = "Reset your password";

pub fn token_of(body: &Value) -> String {
    body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {body}"))
        .to_owned()
}

pub async fn read(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let is_text = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/"));
    let bytes = res.bytes().await.expect("read the body");
    if is_text {
        return (
            status,
            Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        );
    }
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

/// Asserts a problem document with this status and code, and returns it.
pub async fn assert_problem(res: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (got, body) = read(res).await;
    assert_eq!(got, status, "unexpected status, body: {body}");
    assert_eq!(content_type, "application/problem+json", "body: {body}");
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}
