//! Adding a webhook endpoint on its page, its secret shown once, a test event that cannot be
//! delivered (the host does not resolve here) listed with its error and retried, the
//! deliveries a page at a time; a member is told who manages webhooks.

use fantoccini::Locator;
use serde_json::json;

use super::*;

const URL: &str = "https://hooks.example.com/x";

/// Runs the webhook worker's pass, as the server's worker would.
async fn deliver(app: &TestApp) -> saaskit::jobs::webhooks::Pass {
    saaskit::jobs::webhooks::deliver_due(&app.app)
        .await
        .expect("a delivery pass")
}

async fn tick(b: &harness::Browser, event: &str) {
    b.client
        .find(Locator::Css(&format!(
            "input[name=events][value='{event}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("no box for {event}: {e}"))
        .click()
        .await
        .expect("tick it");
}

async fn filter_by(b: &harness::Browser, status: &str) {
    b.client
        .find(Locator::Css("select[name=status]"))
        .await
        .expect("the state filter")
        .select_by_value(status)
        .await
        .expect("choose a state");
    b.press("Filter").await;
}

async fn rows(b: &harness::Browser) -> usize {
    b.client
        .find_all(Locator::Css("tbody tr[id^=delivery-]"))
        .await
        .expect("rows")
        .len()
}

journey! {
    async fn add_webhook_see_secret_once_send_test_and_see_delivery(app, driver) {
        app.signup("ada@example.com").await;
        let b = driver.browser(&app.address, "webhooks").await;
        log_in(&b, "ada@example.com").await;
        b.client.find(Locator::LinkText("Webhooks")).await
            .expect("the entry in the navigation").click().await.expect("follow it");
        assert_eq!(b.path().await, "/webhooks");
        let text = b.text().await;
        assert!(text.contains("No endpoint yet"), "{text}");
        assert!(text.contains("application.created"), "the products' event types are offered: {text}");
        b.check("webhooks-empty").await;

        // Nothing filled: each field says what it lacks.
        b.press("Add the endpoint").await;
        assert!(!b.text_of("#url-error").await.is_empty(), "a URL is required");
        assert!(!b.text_of("#events-error").await.is_empty(), "an event type is required");
        b.check("webhooks-errors").await;
        // Plain http is refused next to the field; what was typed and ticked stays.
        b.fill("URL", "http://hooks.example.com/x").await;
        b.fill("Description (optional)", "Orders <sync>").await;
        tick(&b, "member.joined").await;
        b.press("Add the endpoint").await;
        assert!(b.text_of("#url-error").await.contains("https"), "{}", b.text().await);
        assert_eq!(b.run("return document.getElementById('description').value;").await, "Orders <sync>");
        assert_eq!(
            b.run("return document.querySelector(\"input[value='member.joined']\").checked;").await,
            true
        );

        b.fill("URL", URL).await;
        tick(&b, "api_key.created").await;
        b.press("Add the endpoint").await;
        let secret = b.text_of("#new-secret").await;
        assert!(secret.starts_with("whsec_"), "{secret}");
        let copy = b.client.find(Locator::Css("button[data-copy]")).await.expect("copy");
        assert!(copy.is_displayed().await.expect("visible"), "the copy button is shown");
        let text = b.text().await;
        assert!(text.contains(URL) && text.contains("Orders <sync>"), "{text}");
        assert!(text.contains("api_key.created, member.joined"), "{text}");
        b.check("webhook-created").await;

        // Shown once: gone after a reload.
        b.open("/webhooks").await;
        let text = b.text().await;
        assert!(!text.contains(&secret), "the secret is not shown again");
        assert!(text.contains("enabled"), "{text}");
        b.check("webhooks").await;
        let link = b.client.find(Locator::Css("tbody a[href^='/webhooks/']")).await
            .expect("a link to the deliveries").attr("href").await.expect("href").expect("an address");
        let id = link.trim_start_matches("/webhooks/").to_owned();

        // A test event: queued, then sent by the worker; the host does not resolve, so it
        // waits for its retry with the error.
        b.press(&format!("Send a test event to {URL}")).await;
        assert_eq!(b.path().await, format!("/webhooks/{id}?notice=test_sent"));
        let text = b.text().await;
        assert!(text.contains("webhook.test") && text.contains("not tried yet"), "{text}");
        let pass = deliver(&app).await;
        assert_eq!(pass.retrying, 1, "{pass:?}");
        b.open("/webhooks").await;
        b.client.find(Locator::Css(&format!("a[href='/webhooks/{id}']"))).await
            .expect("the endpoint's deliveries").click().await.expect("follow it");
        assert_eq!(b.path().await, format!("/webhooks/{id}"));
        let row = b.text_of("tbody tr[id^=delivery-]").await;
        assert!(row.contains("webhook.test") && row.contains("retrying"), "{row}");
        assert!(row.contains("1 attempt") && row.contains("next:"), "{row}");
        // The error's first clause ("could not connect"), and the whole of it a click away.
        let error = b.text_of("tbody tr[id^=delivery-] .delivery-error").await;
        assert!(!error.is_empty(), "the attempt's error is shown: {row}");
        if let Ok(summary) = b.client.find(Locator::Css(".delivery-error summary")).await {
            let first = summary.text().await.expect("its text");
            summary.click().await.expect("open it");
            let whole = b.text_of(".delivery-error details").await;
            assert!(!first.is_empty() && whole.len() > first.len() + 2, "{first} / {whole}");
        }
        b.run("document.getElementById('deliveries-heading').scrollIntoView();").await;
        b.check("webhook-deliveries").await;

        // The filter: none failed; the retrying one is pending.
        filter_by(&b, "failed").await;
        assert_eq!(rows(&b).await, 0);
        assert!(b.text().await.contains("No delivery in this state"));
        filter_by(&b, "pending").await;
        assert_eq!(b.path().await, format!("/webhooks/{id}?status=pending"));
        assert_eq!(rows(&b).await, 1);

        // Retry it: due at once, and the worker tries again.
        let delivery = b.client.find(Locator::Css("tbody tr[id^=delivery-]")).await.expect("the row")
            .attr("id").await.expect("id").expect("an id");
        let delivery: uuid::Uuid = delivery.trim_start_matches("delivery-").parse().expect("a uuid");
        b.press(&format!("Retry msg_{}", delivery.simple())).await;
        assert_eq!(b.path().await, format!("/webhooks/{id}?status=pending&notice=delivery_retried"));
        assert!(b.text().await.contains("The delivery is due again now."));
        assert_eq!(deliver(&app).await.retrying, 1);
        b.open(&format!("/webhooks/{id}")).await;
        assert!(b.text_of("tbody tr[id^=delivery-]").await.contains("2 attempts"));

        // A page at a time, newest first.
        let owner = app.login_token("ada@example.com").await;
        for _ in 0..20 {
            let (status, body) = app.post(&format!("/api/v1/webhooks/{id}/test"), Some(&owner), json!({})).await;
            assert_eq!(status, 202, "{body}");
        }
        b.open(&format!("/webhooks/{id}")).await;
        assert_eq!(rows(&b).await, 20);
        assert!(b.text_of("tbody tr[id^=delivery-]").await.contains("not tried yet"), "newest first");
        b.client.find(Locator::LinkText("Older deliveries")).await
            .expect("a next page").click().await.expect("follow it");
        assert_eq!(rows(&b).await, 1);
        assert!(b.text_of("tbody tr[id^=delivery-]").await.contains("2 attempts"), "the oldest");
        assert!(b.client.find(Locator::LinkText("Older deliveries")).await.is_err(), "the last page");
        b.run("document.getElementById('deliveries-heading').scrollIntoView();").await;
        b.check("webhook-deliveries-older").await;

        // A new secret, shown once; the old one signs a day more.
        b.open("/webhooks").await;
        b.press(&format!("Rotate the secret of {URL}")).await;
        let rotated = b.text_of("#new-secret").await;
        assert!(rotated.starts_with("whsec_") && rotated != secret, "{rotated}");
        assert!(b.text().await.contains("the old one also signs until"));

        b.open("/webhooks").await;
        b.press(&format!("Disable {URL}")).await;
        assert_eq!(b.path().await, "/webhooks?notice=webhook_disabled");
        assert!(b.text().await.contains("disabled"));
        let enable = b.client.find(Locator::XPath("//button[starts-with(normalize-space(), 'Enable')]")).await;
        assert!(enable.is_ok(), "a disabled endpoint may be enabled again");
        b.check("webhooks-disabled").await;
        b.press(&format!("Delete {URL}")).await;
        assert_eq!(b.path().await, "/webhooks?notice=webhook_deleted");
        assert!(b.text().await.contains("No endpoint yet"));
        let (status, _) = app.get(&format!("/api/v1/webhooks/{id}"), Some(&owner)).await;
        assert_eq!(status, 404, "deleted for the API too");

        // A business has at most 20: the 21st is refused on the form, with what was typed.
        for i in 0..20 {
            let (status, body) = app
                .post("/api/v1/webhooks", Some(&owner), json!({"url": format!("{URL}{i}"), "events": ["member.joined"]}))
                .await;
            assert_eq!(status, 201, "{body}");
        }
        b.fill("URL", URL).await;
        tick(&b, "member.joined").await;
        b.press("Add the endpoint").await;
        assert!(b.text_of("#add-error").await.contains("at most 20"), "{}", b.text().await);
        assert_eq!(b.run("return document.getElementById('url').value;").await, URL);
        b.close().await;
    }
}

journey! {
    async fn a_member_is_told_who_manages_webhooks(app, driver) {
        let owner = app.signup_token("owner@example.com").await;
        let (status, created) = app
            .post("/api/v1/webhooks", Some(&owner), json!({"url": URL, "events": ["member.joined"]}))
            .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("an id").to_owned();
        app.join(&owner, "bob@example.com", "member").await;

        let b = driver.browser(&app.address, "webhooks-member").await;
        log_in(&b, "bob@example.com").await;
        b.open("/webhooks").await;
        let text = b.text().await;
        assert!(text.contains("Only owners and admins manage the business's webhooks."), "{text}");
        assert!(!text.contains(URL) && !text.contains("Add the endpoint"), "{text}");
        b.check("webhooks-as-member").await;
        b.open(&format!("/webhooks/{id}")).await;
        let text = b.text().await;
        assert!(text.contains("Only owners and admins") && !text.contains(URL), "{text}");

        // Whatever the page shows, the service refuses: a hand-made form with Bob's own valid
        // CSRF code.
        b.open("/webhooks").await;
        b.run(&format!(
            "const f = document.createElement('form'); f.method = 'post'; \
             f.action = '/webhooks/{id}/delete'; \
             const c = document.createElement('input'); c.type = 'hidden'; c.name = 'csrf'; \
             c.value = document.querySelector('input[name=csrf]').value; f.appendChild(c); \
             document.body.appendChild(f); window.__before_press = true; f.submit();"
        )).await;
        b.next_page().await;
        let text = b.text().await;
        assert!(text.contains("Only the business's owners and admins manage webhooks."), "{text}");
        let (status, _) = app.get(&format!("/api/v1/webhooks/{id}"), Some(&owner)).await;
        assert_eq!(status, 200, "still there");
        b.close().await;
    }
}
