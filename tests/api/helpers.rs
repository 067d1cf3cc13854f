//! The test harness of the API suite: saaskit's own [`saaskit::testing`] (a real server on a
//! fresh SQLite file or PostgreSQL database, spoken to over HTTP), serving what the binary
//! serves, with every exchange checked against the OpenAPI document (`conformance`).

use std::sync::Arc;

use saaskit::config::Config;
pub use saaskit::testing::{
    Backend, ManualClock, Options, PASSWORD, RESET_SUBJECT, TestDb, VERIFICATION_SUBJECT,
    assert_problem, postgres_enabled, read, start_time, token_of,
};

use crate::conformance;

/// Runs a scenario once per database: `sqlite` always, `postgres` when `SAASKIT_TEST_POSTGRES_URL`
/// is set (and then it fails, not skips, if PostgreSQL cannot be reached); without it the
/// `postgres` variant is reported as ignored (the cfg comes from `build.rs`).
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
            #[cfg_attr(not(saaskit_postgres_tests), ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it")]
            async fn postgres() {
                scenario($crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await).await
            }
        }
    };
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

/// A [`saaskit::testing::TestApp`] whose exchanges are all checked against the OpenAPI
/// document: at every `call`, and when dropped (for requests made without `call`).
pub struct TestApp {
    inner: saaskit::testing::TestApp,
    violations: conformance::Violations,
}

impl std::ops::Deref for TestApp {
    type Target = saaskit::testing::TestApp;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
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
        let violations = conformance::Violations::default();
        let recorder = violations.clone();
        let checked = violations.clone();
        let contract = conformance::contract(&products);
        let options = Options {
            clock,
            configure: Box::new(configure),
            layer: Some(Box::new(move |router: axum::Router| {
                router.layer(axum::middleware::from_fn(move |req, next| {
                    conformance::record(contract.clone(), recorder.clone(), req, next)
                }))
            })),
            after_call: Some(Arc::new(move || assert_conformant(&checked))),
        };
        let inner = saaskit::testing::TestApp::start(test_db, products, options).await;
        TestApp { inner, violations }
    }

    /// Fails the test if an exchange so far did not match the OpenAPI document.
    pub fn assert_conformant(&self) {
        assert_conformant(&self.violations);
    }

    /// The key of the newest email verification link mailed to `to`.
    pub async fn verification_key(&self, to: &str) -> String {
        let mails = self.mail_to(to, VERIFICATION_SUBJECT).await;
        let newest = mails
            .last()
            .unwrap_or_else(|| panic!("no verification mail to {to}"));
        crate::smtp_sink::key_in(newest)
    }
}

fn assert_conformant(violations: &conformance::Violations) {
    let found: Vec<String> = match violations.lock() {
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

impl Drop for TestApp {
    fn drop(&mut self) {
        // The requests a test made without `call` (reqwest directly, `raw`) are checked here;
        // not while unwinding from another failure, which would abort the test binary.
        if !std::thread::panicking() {
            self.assert_conformant();
        }
    }
}
