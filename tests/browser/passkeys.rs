//! Passkeys in Chromium, with its virtual authenticator (WebDriver's WebAuthn extension)
//! standing in for the device: adding one from its page, then signing in with it alone.
//!
//! WebAuthn wants a host name, never an address: the browser opens the server as
//! `http://localhost:<port>`, the address `SAASKIT_PUBLIC_URL` names. The test server listens on
//! a port it picks itself once its configuration is made, so the journey puts a small relay on
//! a port known beforehand.

use std::sync::Arc;

use axum::http::Method;
use fantoccini::wd::WebDriverCompatibleCommand;
use reqwest::Url;
use saaskit::testing::{Options, TestDb};
use serde_json::json;

use super::*;

/// `POST /session/{id}/webauthn/authenticator`: a platform authenticator that keeps passkeys
/// and whose user is always there and always unlocks it.
#[derive(Debug)]
struct AddVirtualAuthenticator;

impl WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(
        &self,
        base: &Url,
        session_id: Option<&str>,
    ) -> Result<Url, <Url as std::str::FromStr>::Err> {
        base.join(&format!(
            "session/{}/webauthn/authenticator",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &Url) -> (Method, Option<String>) {
        let body = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
            "isUserConsenting": true,
        });
        (Method::POST, Some(body.to_string()))
    }
}

/// A server whose public address is `http://localhost:<port>`, and that address.
async fn spawn_on_localhost(backend: Backend) -> (TestApp, String) {
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the relay");
    let public = format!(
        "http://localhost:{}",
        relay.local_addr().expect("its address").port()
    );
    let url = public.clone();
    let options = Options {
        configure: Box::new(move |config| config.public_url = url),
        ..Options::default()
    };
    let app = TestApp::start(Arc::new(TestDb::create(backend).await), products(), options).await;
    let server = app.address.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = relay.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&server).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (app, public)
}

async fn add_a_passkey_and_sign_in_with_it(backend: Backend) {
    if !harness::available() {
        return;
    }
    let (app, public) = spawn_on_localhost(backend).await;
    let driver = Driver::start().await;
    let b = driver.browser(&public, "passkeys").await;
    b.client
        .issue_cmd(AddVirtualAuthenticator)
        .await
        .expect("a virtual authenticator");

    b.open("/signup").await;
    b.fill("First name", "Ada").await;
    b.fill("Last name", "Lovelace").await;
    b.fill("Email address", "ada@example.com").await;
    b.fill("Password (at least 8 characters)", PASSWORD).await;
    b.fill("Business name", "Analytical Engines").await;
    b.press("Create account").await;
    assert!(
        b.path().await.starts_with("/dashboard"),
        "{}",
        b.path().await
    );

    b.open("/account/two-factor").await;
    b.client
        .find(fantoccini::Locator::LinkText("Manage your passkeys"))
        .await
        .expect("a link to the passkeys")
        .click()
        .await
        .expect("follow it");
    assert_eq!(b.path().await, "/account/two-factor/passkeys");
    assert!(b.text().await.contains("You have no passkeys yet."));

    b.fill("Name for the new passkey", "Work laptop").await;
    b.press("Add a passkey").await;
    let text = b.text().await;
    assert_eq!(
        b.path().await,
        "/account/two-factor/passkeys?notice=passkey_added",
        "{text}"
    );
    assert!(text.contains("The passkey is added"), "{text}");
    assert_eq!(b.text_of(".passkey-name").await, "Work laptop");
    b.check("passkeys").await;

    b.press("Log out").await;
    b.open("/login").await;
    b.press("Sign in with a passkey").await;
    assert_eq!(b.path().await, "/dashboard", "{}", b.text().await);
    assert!(b.text().await.contains("Ada"), "{}", b.text().await);

    // The passkey shows its use; it is renamed, then removed, with plain forms.
    b.open("/account/two-factor/passkeys").await;
    let text = b.text().await;
    assert!(!text.contains("Never"), "last used is shown: {text}");
    b.fill("New name for Work laptop", "Old laptop").await;
    b.press("Rename Work laptop").await;
    assert!(b.text().await.contains("The passkey is renamed."));
    assert_eq!(b.text_of(".passkey-name").await, "Old laptop");
    b.press("Remove Old laptop").await;
    assert!(b.text().await.contains("The passkey is removed"));
    assert!(b.text().await.contains("You have no passkeys yet."));
    b.close().await;
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_a_passkey_and_sign_in_with_it_sqlite() {
    add_a_passkey_and_sign_in_with_it(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn add_a_passkey_and_sign_in_with_it_postgres() {
    add_a_passkey_and_sign_in_with_it(Backend::Postgres).await;
}
