//! Paying on `/billing`: a card saved through Stripe.js (localstripe's stand-in, served by a
//! localstripe of the journey's own), credits bought with it and shown in the payments, a
//! declined card said in words; what a member sees (nothing of it), and the banner of a
//! renewal payment that failed.

use std::sync::Arc;

use fantoccini::Locator;
use saaskit::testing::{Options, TestDb};

use super::*;

#[allow(dead_code)]
#[path = "../api/localstripe.rs"]
mod localstripe;

use localstripe::{Localstripe, cards};

journey! {
    async fn past_due_banner_and_no_payments_without_a_provider(app, driver) {
        app.signup("ada@example.com").await;
        app.exec("UPDATE subscriptions SET status = 'past_due'").await;

        let b = driver.browser(&app.address, "payments-past-due").await;
        log_in(&b, "ada@example.com").await;
        let banner = b.text_of("#past-due").await;
        assert!(
            banner.starts_with("Your last renewal payment failed — update your card or add credits before "),
            "{banner}"
        );
        b.check("dashboard-past-due").await;

        b.open("/billing").await;
        assert!(b.text_of("#past-due").await.contains("update your card or add credits"));
        // Without a payment provider the page is as it always was.
        let text = b.text().await;
        for absent in ["Payment method", "Buy credits", "Payments\n"] {
            assert!(!text.contains(absent), "{absent:?} on a server without payments");
        }
        let scripts = b.run("return [...document.scripts].map(s => s.src).join(' ');").await;
        assert!(!scripts.as_str().unwrap_or_default().contains("stripe"), "{scripts}");
        b.check("billing-past-due").await;
        b.close().await;
    }
}

/// A server whose payments go to a new localstripe; `None` (the journey is skipped) without
/// localstripe.
async fn spawn_with_stripe(backend: Backend) -> Option<(TestApp, Localstripe)> {
    let stripe = Localstripe::start().await?;
    let test_db = Arc::new(TestDb::create(backend).await);
    let (api_base, js_url) = (stripe.api_base(), stripe.js_url());
    let (secret, publishable) = (stripe.secret_key(), stripe.publishable_key());
    let options = Options {
        configure: Box::new(move |config| {
            config.stripe_secret_key = Some(secret.into());
            config.stripe_publishable_key = Some(publishable.into());
            config.stripe_api_base = api_base;
            config.stripe_js_url = js_url;
        }),
        ..Options::default()
    };
    let app = TestApp::start(test_db, products(), options).await;
    Some((app, stripe))
}

/// Types a card into localstripe's card element (its inputs are named by their placeholders;
/// Stripe's own lives in a frame).
async fn type_card(b: &harness::Browser, number: &str) {
    for (field, value) in [
        ("number", number),
        ("exp_month", "12"),
        ("exp_year", "34"),
        ("cvc", "123"),
        ("postal_code", "10001"),
    ] {
        let input = b
            .client
            .find(Locator::Css(&format!(
                "#card-element input[placeholder={field}]"
            )))
            .await
            .unwrap_or_else(|e| panic!("no {field} in the card element: {e}"));
        input.clear().await.expect("clear");
        input.send_keys(value).await.expect("type");
    }
}

async fn save_card_buy_credits_and_see_them(app: TestApp, stripe: Localstripe, driver: Driver) {
    app.signup("ada@example.com").await;
    let owner = app.login_token("ada@example.com").await;
    app.join(&owner, "bob@example.com", "member").await;

    let b = driver.browser(&app.address, "payments").await;
    log_in(&b, "ada@example.com").await;
    b.open("/billing").await;
    assert!(
        b.text_of("#card-on-file")
            .await
            .starts_with("No card on file")
    );
    // Stripe.js came, from localstripe, and only the page's policy lets it in.
    let policy = b
        .run("return fetch('/billing').then(r => r.headers.get('content-security-policy'));")
        .await;
    let policy = policy.as_str().unwrap_or_default().to_owned();
    let origin = stripe.api_base();
    for directive in [
        format!("script-src 'self' {origin};"),
        format!("frame-src {origin};"),
        format!("connect-src 'self' {origin};"),
    ] {
        assert!(policy.contains(&directive), "{directive} in {policy}");
    }
    let dashboard_policy = b
        .run("return fetch('/dashboard').then(r => r.headers.get('content-security-policy'));")
        .await;
    assert!(
        !dashboard_policy
            .as_str()
            .unwrap_or_default()
            .contains(&origin),
        "{dashboard_policy}"
    );
    b.check("billing-no-card").await;

    // Buying credits needs a card, and an amount.
    b.fill("Amount (USD)", "25.00").await;
    b.press("Buy credits").await;
    assert!(
        b.text_of("#top-up-error")
            .await
            .contains("Add a card first")
    );
    b.fill("Amount (USD)", "abc").await;
    b.press("Buy credits").await;
    assert_eq!(
        b.text_of("#amount-error").await,
        "Enter an amount such as 25.00."
    );
    assert_eq!(
        b.run("return document.getElementById('amount').value;")
            .await,
        "abc",
        "what was typed is kept"
    );
    b.fill("Amount (USD)", "0.10").await;
    b.press("Buy credits").await;
    assert_eq!(
        b.text_of("#amount-error").await,
        "From 0.50 USD to 999999.99 USD."
    );
    b.check("billing-amount-error").await;

    // The card, through the page's script and Stripe.js.
    type_card(&b, cards::GOOD).await;
    b.press("Save the card").await;
    assert_eq!(b.path().await, "/billing?notice=card_saved");
    assert_eq!(b.text_of("#card-on-file").await, "Visa •••• 4242");
    assert!(b.text().await.contains("Expires 12/2034"));

    b.fill("Amount (USD)", "25.00").await;
    b.press("Buy credits").await;
    assert!(
        b.path().await.starts_with("/billing?paid="),
        "{}",
        b.path().await
    );
    assert_eq!(b.text_of("#paid").await, "Payment of 25.00 USD received.");
    assert_eq!(b.text_of("#credit-balance").await, "25.00 USD");
    let row = b.text_of("#payments tbody tr").await;
    for part in ["Credits", "25.00 USD", "Paid", "Visa •••• 4242"] {
        assert!(row.contains(part), "{part:?} in {row:?}");
    }

    // A card the bank declines: said in words, the form kept.
    type_card(&b, cards::DECLINE_ON_CHARGE).await;
    b.press("Replace the card").await;
    assert_eq!(b.path().await, "/billing?notice=card_saved");
    b.fill("Amount (USD)", "12.34").await;
    b.press("Buy credits").await;
    let declined = b.text_of("#top-up-error").await;
    assert!(
        declined.starts_with("The card was declined: "),
        "{declined}"
    );
    assert_eq!(
        b.run("return document.getElementById('amount').value;")
            .await,
        "12.34"
    );
    // Newest first: the decline, then the success.
    let first = b.text_of("#payments tbody tr").await;
    assert!(
        first.contains("Failed") && first.contains("12.34 USD"),
        "{first}"
    );

    // A refund recorded (Stripe's event applies it; here, directly) shows with its payment.
    app.exec("UPDATE payments SET refunded_amount = 1000 WHERE status = 'succeeded'")
        .await;
    b.open("/billing").await;
    assert!(b.text().await.contains("Refunded 10.00 USD"));
    b.check("billing-card-and-payments").await;
    b.run("document.getElementById('payments').scrollIntoView();")
        .await;
    b.check("billing-payments-history").await;

    // A member sees none of it, and gets no Stripe.js.
    let member = driver.browser(&app.address, "payments-member").await;
    log_in(&member, "bob@example.com").await;
    member.open("/billing").await;
    let text = member.text().await;
    for absent in ["Payment method", "Buy credits", "Visa", "Payments\n"] {
        assert!(!text.contains(absent), "a member sees {absent:?}");
    }
    assert_eq!(
        member
            .run("return document.querySelectorAll('#card-form, script[src*=\"stripe\"]').length;")
            .await,
        0
    );
    member.check("billing-member").await;
    member.close().await;

    b.press("Remove the card").await;
    assert_eq!(b.path().await, "/billing?notice=card_removed");
    assert!(
        b.text_of("#card-on-file")
            .await
            .starts_with("No card on file")
    );
    b.close().await;
}

mod save_card_buy_credits_and_see_them {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        if harness::available()
            && let Some((app, stripe)) = spawn_with_stripe(Backend::Sqlite).await
        {
            save_card_buy_credits_and_see_them(app, stripe, Driver::start().await).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(saaskit_postgres_tests),
        ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
    )]
    async fn postgres() {
        if harness::available()
            && let Some((app, stripe)) = spawn_with_stripe(Backend::Postgres).await
        {
            save_card_buy_credits_and_see_them(app, stripe, Driver::start().await).await
        }
    }
}
