//! The pages, driven in a real browser through whole journeys, on SQLite and (with
//! `SAASKIT_TEST_POSTGRES_URL`) PostgreSQL. See `harness` for what every page is checked for.

mod harness;
#[path = "../common/tools.rs"]
mod tools;

use std::sync::Arc;

use saaskit::product::Products;
pub use saaskit::testing::{Backend, PASSWORD, RESET_SUBJECT, TestApp, VERIFICATION_SUBJECT};

use harness::{Driver, link_in};

pub fn products() -> Arc<Products> {
    Arc::new(Products::new().with(saaskit_example::product()))
}

/// A journey, once per database, each with a fresh server and its own chromedriver.
macro_rules! journey {
    ($(#[$meta:meta])* async fn $name:ident($app:ident, $driver:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn journey($app: TestApp, $driver: Driver) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if harness::available() {
                    let app = TestApp::spawn(Backend::Sqlite, products()).await;
                    journey(app, Driver::start().await).await
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(saaskit_postgres_tests), ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it")]
            async fn postgres() {
                if harness::available() {
                    let app = TestApp::spawn(Backend::Postgres, products()).await;
                    journey(app, Driver::start().await).await
                }
            }
        }
    };
}

/// Logs `b` in as `email` (with the test password), from the login page.
pub async fn log_in(b: &harness::Browser, email: &str) {
    b.open("/login").await;
    b.fill("Email address", email).await;
    b.fill("Password", PASSWORD).await;
    b.press("Log in").await;
    assert_eq!(b.path().await, "/dashboard", "{email} is logged in");
}

mod account;
mod admin;
mod applications;
mod auth;
mod billing;
mod keys;
mod mfa;
mod passkeys;
mod payments;
mod team;
mod webhooks;
