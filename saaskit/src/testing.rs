//! Test support for saaskit and the products built on it (the `testing` feature): a [`TestApp`]
//! runs the real application on a free port against a fresh database — a temporary SQLite file,
//! or a new PostgreSQL database when `SAASKIT_TEST_POSTGRES_URL` is set — and speaks HTTP to it
//! like any client. Its clock is a [`ManualClock`] the test moves; mail goes to a folder the test
//! reads. [`scenario!`](crate::scenario) runs one scenario on both databases.
//!
//! In a product crate's `Cargo.toml`:
//!
//! ```toml
//! [dev-dependencies]
//! saaskit = { workspace = true, features = ["testing"] }
//! tokio = { workspace = true }
//! ```
//!
//! ```no_run
//! use std::sync::Arc;
//! use saaskit::product::{Product, Products};
//! use saaskit::testing::*;
//!
//! fn served() -> Arc<Products> {
//!     Arc::new(Products::new().with(Product::new("mine")))
//! }
//!
//! saaskit::scenario! {
//!     served() => async fn a_new_business_starts_on_the_trial(app) {
//!         let owner = app.signup_token("ada@example.com").await;
//!         let (status, me) = app.get("/api/v1/me", Some(&owner)).await;
//!         assert_eq!(status, StatusCode::OK);
//!         assert_eq!(me["subscription"]["plan"]["code"], "free-trial");
//!     }
//! }
//! # fn main() {}
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
pub use reqwest::{Method, StatusCode};
pub use serde_json::{Value, json};
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

use crate::app::{App, AppState};
use crate::billing::admin::{self, NewPlan};
use crate::billing::events::Actor;
pub use crate::clock::ManualClock;
use crate::config::Config;
use crate::db::Db;
use crate::product::Products;

/// The variable naming the PostgreSQL server the tests create their databases on.
pub const POSTGRES_ENV: &str = "SAASKIT_TEST_POSTGRES_URL";

/// Runs a scenario once per database against the app serving `products`: `sqlite` always,
/// `postgres` when `SAASKIT_TEST_POSTGRES_URL` is set (and then it fails, not skips, if
/// PostgreSQL cannot be reached). The test crate needs `tokio` (with `macros`).
///
/// ```ignore
/// saaskit::scenario! {
///     my_products() => async fn projects_are_limited_by_the_plan(app) { … }
/// }
/// ```
#[macro_export]
macro_rules! scenario {
    ($products:expr => $(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($app: $crate::testing::TestApp) $body

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let products = $products;
                scenario($crate::testing::TestApp::spawn($crate::testing::Backend::Sqlite, products).await).await
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::testing::postgres_enabled() {
                    let products = $products;
                    scenario($crate::testing::TestApp::spawn($crate::testing::Backend::Postgres, products).await).await
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

/// Whether `SAASKIT_TEST_POSTGRES_URL` is set: scenarios then run on PostgreSQL too.
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

    /// A new pool on this database, migrated for `products`.
    pub async fn connect(&self, products: &Products) -> Db {
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

/// A running server on a test database, and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    pub app: AppState,
    pub db: Db,
    pub mail_dir: PathBuf,
    after_call: Option<Arc<dyn Fn() + Send + Sync>>,
    server: tokio::task::JoinHandle<()>,
    // Dropped last: the database outlives the server using it.
    pub test_db: Arc<TestDb>,
}

/// The time every test starts at (the clock moves only when the test moves it).
pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .expect("valid literal")
        .with_timezone(&Utc)
}

/// How [`TestApp::start`] starts a server.
pub struct Options<'a> {
    pub clock: ManualClock,
    /// Changes to the test configuration (SMTP, time limits…).
    pub configure: Box<dyn FnOnce(&mut Config) + 'a>,
    /// Wraps the router (a layer that records exchanges, say).
    pub layer: Option<Box<dyn FnOnce(axum::Router) -> axum::Router + 'a>>,
    /// Runs after every [`TestApp::call`] (a check that fails the test, say).
    pub after_call: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            clock: ManualClock::new(start_time()),
            configure: Box::new(|_| {}),
            layer: None,
            after_call: None,
        }
    }
}

impl TestApp {
    /// A server for `products` on a fresh database.
    pub async fn spawn(backend: Backend, products: Arc<Products>) -> TestApp {
        let test_db = Arc::new(TestDb::create(backend).await);
        Self::start(test_db, products, Options::default()).await
    }

    /// Another server on this one's database and clock, as a restart or a second replica would.
    pub async fn another(&self) -> TestApp {
        let options = Options {
            clock: self.clock.clone(),
            ..Options::default()
        };
        Self::start(self.test_db.clone(), self.app.products.clone(), options).await
    }

    /// A server for `products` on `test_db` (migrated first), started as `options` say.
    pub async fn start(
        test_db: Arc<TestDb>,
        products: Arc<Products>,
        options: Options<'_>,
    ) -> TestApp {
        let db = test_db.connect(&products).await;
        let mail_dir =
            std::env::temp_dir().join(format!("saaskit_mail_{}", Uuid::new_v4().simple()));
        let mut config = Config::defaults();
        config.database_url = test_db.url.clone();
        config.mail_dir = mail_dir.clone();
        config.shutdown_timeout_secs = 1;
        config.secret_key_file = Some(test_db.key_file.clone());
        (options.configure)(&mut config);
        let clock = options.clock;
        let app = App::with_db(config, db.clone(), Arc::new(clock.clone()), products)
            .expect("valid test configuration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let address = format!("http://{}", listener.local_addr().expect("local address"));
        let mut router = crate::http::router(app.clone());
        if let Some(layer) = options.layer {
            router = layer(router);
        }
        let server_app = app.clone();
        let server = tokio::spawn(async move {
            let _ = crate::app::serve(server_app, router, listener, std::future::pending()).await;
        });
        TestApp {
            address,
            client: reqwest::Client::new(),
            clock,
            app,
            db,
            mail_dir,
            after_call: options.after_call,
            server,
            test_db,
        }
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
        if let Some(check) = &self.after_call {
            check();
        }
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
    pub async fn deliver_mail(&self) -> crate::jobs::mail::Delivery {
        self.app.background_idle().await;
        crate::jobs::mail::deliver_due(&self.app)
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

    /// Creates a renewing, free plan `code` with these limits and moves `business` onto it now.
    pub async fn put_on_plan(&self, business: Uuid, code: &str, limits: &[(&str, i64)]) {
        let plan = NewPlan {
            code: code.into(),
            name: code.to_uppercase(),
            description: String::new(),
            price_minor: 0,
            currency: "usd".into(),
            cycle_days: 30,
            renews: true,
            fallback_code: None,
            limits: limits
                .iter()
                .map(|(m, n)| ((*m).to_owned(), *n))
                .collect::<BTreeMap<_, _>>(),
            is_public: true,
        };
        admin::create_plan(&self.app, plan, Actor::Admin(None))
            .await
            .expect("create plan");
        admin::set_plan(&self.app, business, code, Actor::Admin(None))
            .await
            .expect("set plan");
    }

    /// Signs up `email` and returns (its session, its business's id).
    pub async fn signup_business(&self, email: &str) -> (String, Uuid) {
        let signup = self.signup(email).await;
        let business = signup["business"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no business id in {signup}"));
        (token_of(&signup), business)
    }

    /// A new API key (scope `sdk`) of the business of `session`.
    pub async fn api_key(&self, session: &str) -> String {
        let (status, key) = self
            .post("/api/v1/api-keys", Some(session), json!({"name": "SDK"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        key["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key in {key}"))
            .to_owned()
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

/// The kinds of caller [`TestApp::authorization_matrix`] tries, in the order of a [`Row`]'s
/// columns.
pub const CALLERS: [&str; 7] = [
    "anonymous",      // no Authorization header
    "owner",          // a session of the owner of the business the fixtures belong to
    "admin",          // a session of an admin of that business
    "member",         // a session of a member of that business
    "bot",            // a bot member of that business, with the scope `dashboard`
    "api_key",        // an API key of that business (scope `sdk`)
    "other_business", // a session of the owner of another business
];

/// One route of a product and the status each of [`CALLERS`] gets for an otherwise valid
/// request. `{placeholders}` in the path are filled from the fixtures.
#[derive(Debug, Clone)]
pub struct Row {
    pub method: &'static str,
    pub path: &'static str,
    pub body: Option<Value>,
    pub expect: [u16; 7],
}

impl Row {
    pub fn new(method: &'static str, path: &'static str, expect: [u16; 7]) -> Row {
        Row {
            method,
            path,
            body: None,
            expect,
        }
    }

    /// The JSON body to send.
    pub fn body(mut self, body: Value) -> Row {
        self.body = Some(body);
        self
    }
}

/// The callers of the matrix: tokens of one business's members and keys, and of another's owner.
#[derive(Debug, Clone)]
pub struct Callers {
    pub business: Uuid,
    /// A session of the owner that no column uses, for setting fixtures up.
    pub setup: String,
    /// A token per column of [`CALLERS`] (`None` for `anonymous`).
    pub tokens: [Option<String>; 7],
}

impl TestApp {
    /// The callers of [`TestApp::authorization_matrix`], freshly made.
    pub async fn callers(&self) -> Callers {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (setup, business) = self.signup_business(&format!("owner{n}@example.com")).await;
        let owner = self.login_token(&format!("owner{n}@example.com")).await;
        let (admin, _) = self
            .join(&setup, &format!("admin{n}@example.com"), "admin")
            .await;
        let (member, _) = self
            .join(&setup, &format!("member{n}@example.com"), "member")
            .await;
        let (status, bot) = self
            .post(
                "/api/v1/bots",
                Some(&setup),
                json!({"name": "Matrix bot", "scopes": ["dashboard"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{bot}");
        let bot = bot["token"].as_str().expect("the bot's token").to_owned();
        let api_key = self.api_key(&setup).await;
        let other = self.signup_token(&format!("other{n}@example.com")).await;
        Callers {
            business,
            setup,
            tokens: [
                None,
                Some(owner),
                Some(admin),
                Some(member),
                Some(bot),
                Some(api_key),
                Some(other),
            ],
        }
    }

    /// Checks a product's authorization matrix: every route `routes` serves must have a row
    /// (and every row a route), and each of `callers` must get the row's status. Before each
    /// request, `fixtures` makes what the row points at (with `callers.setup`) and returns each
    /// `{placeholder}`'s value for the path and the body, so a deleting row does not change the
    /// next caller's answer.
    pub async fn authorization_matrix(
        &self,
        routes: &[crate::http::Route],
        callers: &Callers,
        rows: &[Row],
        fixtures: impl AsyncFn(&TestApp, &Callers) -> Vec<(&'static str, String)>,
    ) {
        let mut served: std::collections::BTreeSet<(String, String)> = Default::default();
        for (_, paths, _) in routes {
            for (path, item) in &paths.paths {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ];
                for (method, present) in methods {
                    if present {
                        served.insert((method.to_owned(), format!("/api/v1{path}")));
                    }
                }
            }
        }
        let listed: std::collections::BTreeSet<(String, String)> = rows
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        let missing: Vec<_> = served.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "routes without a row in the matrix: {missing:?}"
        );
        let extra: Vec<_> = listed.difference(&served).collect();
        assert!(
            extra.is_empty(),
            "rows for routes the product does not serve: {extra:?}"
        );

        let mut wrong = Vec::new();
        for row in rows {
            for (column, caller) in CALLERS.iter().enumerate() {
                let mut path = row.path.to_owned();
                let mut body = row.body.as_ref().map(Value::to_string);
                for (name, value) in fixtures(self, callers).await {
                    let placeholder = format!("{{{name}}}");
                    path = path.replace(&placeholder, &value);
                    body = body.map(|b| b.replace(&placeholder, &value));
                }
                let body = body.map(|b| serde_json::from_str(&b).expect("the body stays JSON"));
                let method = Method::from_bytes(row.method.as_bytes()).expect("a method name");
                let token = callers.tokens[column].as_deref();
                let (status, body) = self.call(method, &path, token, body).await;
                if status.as_u16() != row.expect[column] {
                    wrong.push(format!(
                        "{} {} as {caller}: {} (expected {}) {body}",
                        row.method,
                        row.path,
                        status.as_u16(),
                        row.expect[column]
                    ));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "answers that differ from the matrix:\n{}",
            wrong.join("\n")
        );
    }
}
