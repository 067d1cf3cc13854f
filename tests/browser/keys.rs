//! Creating an API key on its page, using it from outside over HTTP, rotating and revoking it;
//! a bot with its token.

use super::*;

async fn status_with(app: &TestApp, secret: &str) -> u16 {
    app.client
        .get(app.url("/api/v1/entitlements"))
        .bearer_auth(secret)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

journey! {
    async fn create_an_api_key_and_use_it_over_http(app, driver) {
        app.signup("ada@example.com").await;
        let b = driver.browser(&app.address, "api-keys").await;
        log_in(&b, "ada@example.com").await;
        b.open("/api-keys").await;
        b.check("api-keys-empty").await;

        b.press("Create the key").await;
        assert!(!b.text_of("#key_name-error").await.is_empty(), "a key needs a name");
        b.fill("Name of a new key", "Production <server>").await;
        b.press("Create the key").await;
        let secret = b.text_of("#new-secret").await;
        assert!(secret.starts_with("sk_"), "{secret}");
        assert!(b.text().await.contains("Production <server>"));
        // The copy button appears (the script runs under the page's CSP).
        let copy = b.client.find(fantoccini::Locator::Css("button[data-copy]")).await.expect("copy");
        assert!(copy.is_displayed().await.expect("visible"), "the copy button is shown");
        b.check("api-key-created").await;
        assert_eq!(status_with(&app, &secret).await, 200, "the key works from outside");

        // Shown once: the list shows its start only.
        b.open("/api-keys").await;
        let text = b.text().await;
        assert!(!text.contains(&secret), "the secret is not shown again");
        assert!(text.contains(&secret[..8]), "{text}");

        b.press("Rotate Production <server>").await;
        let rotated = b.text_of("#new-secret").await;
        assert_ne!(rotated, secret);
        assert_eq!(status_with(&app, &rotated).await, 200);
        // No overlap by default (SAASKIT_KEY_ROTATION_OVERLAP): the old secret stops at once.
        assert!(b.text().await.contains("the old one no longer works"));
        assert_eq!(status_with(&app, &secret).await, 401);

        b.open("/api-keys").await;
        b.press("Revoke Production <server>").await;
        assert_eq!(b.path().await, "/api-keys?notice=key_revoked");
        assert_eq!(status_with(&app, &rotated).await, 401, "revoked at once");

        b.fill("Name of a new bot", "Reporter").await;
        b.press("Create the bot").await;
        let token = b.text_of("#new-secret").await;
        assert_eq!(status_with(&app, &token).await, 200, "the bot's token works");
        b.check("bot-created").await;
        b.close().await;
    }
}
