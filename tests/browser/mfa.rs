//! Signing in beyond the password: setting up an authenticator app from its page and logging in
//! with its codes (or a recovery code), mailed sign-in links, and a business that requires two
//! factors of every member. The codes are computed here (RFC 6238), for the server's clock: the
//! test app's clock stands still until the journey moves it.

use chrono::Duration;
use fantoccini::Locator;
use saaskit::clock::Clock as _;

use super::*;

#[path = "../common/rfc6238.rs"]
mod rfc6238;

/// The server's present time, in Unix seconds.
fn now_secs(app: &TestApp) -> i64 {
    app.clock.now().as_datetime().timestamp()
}

/// The code the authenticator shows now; the clock first moves on a step, since each step's
/// code is taken once and the journey has used the one before.
fn next_code(app: &TestApp, secret: &[u8]) -> String {
    app.clock.advance(Duration::seconds(30));
    rfc6238::totp(secret, now_secs(app), 6)
}

/// Six digits that no step around the server's present time produces.
fn wrong_code(app: &TestApp, secret: &[u8]) -> String {
    let near: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|d| rfc6238::totp(secret, now_secs(app) + d, 6))
        .collect();
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !near.contains(c))
        .expect("ten candidates, three codes")
}

/// On the set-up page: the key shown in text, decoded.
async fn key_on_page(b: &harness::Browser) -> Vec<u8> {
    let shown = b.text_of("#totp-secret").await;
    assert!(
        shown
            .chars()
            .all(|c| c == ' ' || c.is_ascii_uppercase() || ('2'..='7').contains(&c)),
        "base32 in groups: {shown}"
    );
    rfc6238::base32_decode(&shown)
}

/// From `/account/two-factor` with two-factor sign-in off: sets up an authenticator and returns
/// its key and the recovery codes shown.
async fn set_up_authenticator(app: &TestApp, b: &harness::Browser) -> (Vec<u8>, Vec<String>) {
    b.press("Set up an authenticator app").await;
    assert_eq!(b.path().await, "/account/two-factor/setup");
    let key = key_on_page(b).await;
    b.fill(
        "Six-digit code from the app",
        &rfc6238::totp(&key, now_secs(app), 6),
    )
    .await;
    b.press("Turn on two-factor sign-in").await;
    (key, recovery_codes_on_page(b).await)
}

async fn recovery_codes_on_page(b: &harness::Browser) -> Vec<String> {
    let mut codes = Vec::new();
    for item in b
        .client
        .find_all(Locator::Css("#recovery-codes li"))
        .await
        .expect("the codes")
    {
        codes.push(item.text().await.expect("a code").trim().to_owned());
    }
    codes
}

/// Logs in with the password, up to the second step's page.
async fn log_in_to_second_step(b: &harness::Browser, email: &str) {
    b.open("/login").await;
    b.fill("Email address", email).await;
    b.fill("Password", PASSWORD).await;
    b.press("Log in").await;
    assert!(
        b.text().await.contains("Enter the six-digit code"),
        "{}",
        b.text().await
    );
}

journey! {
    async fn set_up_an_authenticator_and_log_in_with_its_codes(app, driver) {
        let b = driver.browser(&app.address, "mfa").await;
        b.open("/signup").await;
        b.fill("First name", "Ada").await;
        b.fill("Last name", "Lovelace").await;
        b.fill("Email address", "ada@example.com").await;
        b.fill("Password (at least 8 characters)", PASSWORD).await;
        b.fill("Business name", "Analytical Engines").await;
        b.press("Create account").await;
        assert_eq!(b.path().await, "/dashboard?notice=welcome");

        // The account page tells whether two-factor sign-in is on, and leads to it.
        b.open("/account").await;
        assert!(b.text_of("#two-factor-status").await.contains("off"));
        b.client.find(Locator::LinkText("Set up two-factor sign-in")).await.expect("a link")
            .click().await.expect("follow it");
        assert_eq!(b.path().await, "/account/two-factor");
        b.check("two-factor-off").await;

        b.press("Set up an authenticator app").await;
        assert_eq!(b.path().await, "/account/two-factor/setup");
        let qr = b.client.find(Locator::Css(".qr[role=img] svg")).await.expect("the QR code");
        assert!(qr.attr("viewBox").await.expect("an attribute").is_some(), "an SVG drawing");
        let key = key_on_page(&b).await;
        assert_eq!(key.len(), 20, "160 bits");
        b.check("two-factor-setup").await;
        // Reloading the page shows the same key: what was scanned stays valid.
        b.open("/account/two-factor/setup").await;
        assert_eq!(key_on_page(&b).await, key);

        // A wrong code is said next to the field, and the same key is shown again.
        b.fill("Six-digit code from the app", &wrong_code(&app, &key)).await;
        b.press("Turn on two-factor sign-in").await;
        let error = b.text_of("#code-error").await;
        assert!(error.contains("not the code your app shows"), "{error}");
        assert_eq!(key_on_page(&b).await, key, "the pending key is not replaced");
        b.check("two-factor-setup-wrong-code").await;

        b.fill("Six-digit code from the app", &rfc6238::totp(&key, now_secs(&app), 6)).await;
        b.press("Turn on two-factor sign-in").await;
        let codes = recovery_codes_on_page(&b).await;
        assert_eq!(codes.len(), 10, "{codes:?}");
        assert!(codes.iter().all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'), "{codes:?}");
        assert!(b.text().await.contains("shown only this once"));
        b.check("two-factor-recovery-codes").await;
        let mail = app.only_mail_to("ada@example.com", "Two-factor sign-in turned on").await;
        assert!(codes.iter().all(|c| !mail.contains(c.as_str())), "no code in the mail");

        b.open("/account/two-factor").await;
        assert!(b.text_of("#mfa-status").await.contains("on"));
        assert!(b.text_of("#recovery-remaining").await.starts_with("10 of 10"));
        b.check("two-factor-on").await;

        // Logging in now asks for a code after the password.
        b.press("Log out").await;
        log_in_to_second_step(&b, "ada@example.com").await;
        b.check("login-two-factor").await;
        b.fill("Code", &wrong_code(&app, &key)).await;
        b.press("Continue").await;
        assert!(!b.text_of("#code-error").await.is_empty(), "{}", b.text().await);
        b.check("login-two-factor-wrong-code").await;
        b.fill("Code", &next_code(&app, &key)).await;
        b.press("Continue").await;
        assert_eq!(b.path().await, "/dashboard");

        // A recovery code does instead of the app's code, once.
        b.press("Log out").await;
        log_in_to_second_step(&b, "ada@example.com").await;
        b.fill("Code", &codes[3].to_uppercase()).await;
        b.press("Continue").await;
        assert_eq!(b.path().await, "/dashboard");
        b.press("Log out").await;
        log_in_to_second_step(&b, "ada@example.com").await;
        b.fill("Code", &codes[3]).await;
        b.press("Continue").await;
        assert!(!b.text_of("#code-error").await.is_empty(), "a recovery code works once");
        b.fill("Code", &next_code(&app, &key)).await;
        b.press("Continue").await;
        assert_eq!(b.path().await, "/dashboard");

        // A mailed link replaces the password, not the second factor.
        b.press("Log out").await;
        b.open("/magic-link").await;
        b.fill("Email address", "ada@example.com").await;
        b.press("Email me a sign-in link").await;
        let mail = app.only_mail_to("ada@example.com", "Your sign-in link").await;
        b.open(&link_in(&mail, "/magic-login")).await;
        b.press("Sign in").await;
        assert!(b.text().await.contains("Enter the six-digit code"), "{}", b.text().await);
        b.fill("Code", &next_code(&app, &key)).await;
        b.press("Continue").await;
        assert_eq!(b.path().await, "/dashboard");

        // New recovery codes, after the password; the old ones stop working.
        b.open("/account/two-factor").await;
        assert!(b.text_of("#recovery-remaining").await.starts_with("9 of 10"));
        b.fill("Your password, to confirm", "not my password").await;
        b.press("Make new recovery codes").await;
        let error = b.text_of("#codes_password-error").await;
        assert!(error.contains("not your password"), "{error}");
        b.check("two-factor-wrong-password").await;
        b.fill("Your password, to confirm", PASSWORD).await;
        b.press("Make new recovery codes").await;
        let renewed = recovery_codes_on_page(&b).await;
        assert_eq!(renewed.len(), 10);
        assert!(!renewed.contains(&codes[0]));
        b.check("two-factor-new-recovery-codes").await;

        // Turning it off: the password alone signs in again.
        b.open("/account/two-factor").await;
        b.fill("Your password, to turn it off", PASSWORD).await;
        b.press("Turn off two-factor sign-in").await;
        assert_eq!(b.path().await, "/account/two-factor?notice=mfa_disabled");
        assert!(b.text_of("#mfa-status").await.contains("off"));
        app.only_mail_to("ada@example.com", "Two-factor sign-in turned off").await;
        b.press("Log out").await;
        log_in(&b, "ada@example.com").await;
        b.close().await;
    }
}

journey! {
    async fn sign_in_with_a_mailed_link(app, driver) {
        app.signup("grace@example.com").await;
        let b = driver.browser(&app.address, "magic-link").await;
        b.open("/login").await;
        b.client.find(Locator::LinkText("Email me a sign-in link")).await.expect("a link")
            .click().await.expect("follow it");
        assert_eq!(b.path().await, "/magic-link");
        b.check("magic-link").await;
        b.press("Email me a sign-in link").await;
        assert!(!b.text_of("#email-error").await.is_empty(), "an address is asked for");

        // The same answer for an address nobody uses, and no mail.
        b.fill("Email address", "nobody@example.com").await;
        b.press("Email me a sign-in link").await;
        assert_eq!(b.path().await, "/magic-link?notice=magic_link_sent");
        assert!(app.mail_to("nobody@example.com", "").await.is_empty());
        b.fill("Email address", "grace@example.com").await;
        b.press("Email me a sign-in link").await;
        assert_eq!(b.path().await, "/magic-link?notice=magic_link_sent");
        b.check("magic-link-sent").await;

        let mail = app.only_mail_to("grace@example.com", "Your sign-in link").await;
        let link = link_in(&mail, "/magic-login");
        b.open(&link).await;
        b.check("magic-login").await;
        // Opening the link used nothing: a mail scanner fetching it signs no one in.
        assert_eq!(app.count("one_time_keys WHERE purpose = 'magic_link' AND used_at IS NOT NULL").await, 0);
        b.press("Sign in").await;
        assert_eq!(b.path().await, "/dashboard");
        // The link proved the address.
        assert!(!b.text().await.contains("not confirmed yet"), "{}", b.text().await);

        // It works once; the page says so in words, and offers a new link.
        b.press("Log out").await;
        b.open(&link).await;
        b.press("Sign in").await;
        let said = b.text_of(".alert").await;
        assert!(said.contains("already used"), "{said}");
        assert!(!said.contains("key_used"), "no problem codes: {said}");
        b.check("magic-login-used").await;
        b.client.find(Locator::LinkText("Ask for a new sign-in link")).await.expect("a link")
            .click().await.expect("follow it");
        assert_eq!(b.path().await, "/magic-link");

        // An expired link says so too.
        b.fill("Email address", "grace@example.com").await;
        b.press("Email me a sign-in link").await;
        let mails = app.mail_to("grace@example.com", "Your sign-in link").await;
        let newest = link_in(mails.last().expect("a second link"), "/magic-login");
        app.clock.advance(Duration::minutes(16));
        b.open(&newest).await;
        b.press("Sign in").await;
        assert!(b.text_of(".alert").await.contains("expired"), "{}", b.text().await);

        // Asking again and again is slowed down, like password resets, and said in words.
        let mut said = String::new();
        for _ in 0..8 {
            b.open("/magic-link").await;
            b.fill("Email address", "grace@example.com").await;
            b.press("Email me a sign-in link").await;
            if b.path().await == "/magic-link" {
                said = b.text_of(".alert").await;
                break;
            }
        }
        assert!(said.starts_with("Too many attempts. Try again in ") && said.contains("minute"), "{said}");
        b.check("magic-link-rate-limited").await;
        b.close().await;
    }
}

journey! {
    async fn an_owner_requires_two_factor_and_a_member_sets_it_up(app, driver) {
        let owner_token = app.signup_token("owner@example.com").await;
        app.join(&owner_token, "member@example.com", "member").await;

        let owner = driver.browser(&app.address, "mfa-required").await;
        log_in(&owner, "owner@example.com").await;
        owner.open("/team").await;
        assert!(owner.text_of("#require-mfa-status").await.contains("not required"));
        // Not without a second factor of one's own: the page says so by the button, and how.
        owner.press("Require two-factor sign-in for every member").await;
        let said = owner.text_of("#require-mfa-error").await;
        assert!(said.contains("Turn on two-factor sign-in for yourself first"), "{said}");
        owner.check("team-require-mfa-refused").await;
        owner.client.find(Locator::LinkText("Set up your own two-factor sign-in")).await
            .expect("a link").click().await.expect("follow it");
        assert_eq!(owner.path().await, "/account/two-factor");
        set_up_authenticator(&app, &owner).await;

        // The owner renames the business on the way (a refused name is said by its field).
        owner.open("/team").await;
        owner.fill("Business name", "").await;
        owner.press("Rename the business").await;
        assert!(!owner.text_of("#business_name-error").await.is_empty(), "{}", owner.text().await);
        owner.fill("Business name", "Lovelace & Co").await;
        owner.press("Rename the business").await;
        assert_eq!(owner.path().await, "/team?notice=business_renamed");
        assert_eq!(owner.text_of(".who-business").await, "Lovelace & Co");

        owner.press("Require two-factor sign-in for every member").await;
        assert_eq!(owner.path().await, "/team?notice=mfa_required");
        assert!(owner.text_of("#require-mfa-status").await.contains("required"));
        owner.check("team-mfa-required").await;

        // A member without a second factor may open nothing but its set-up.
        let member = driver.browser(&app.address, "mfa-required").await;
        member.open("/login").await;
        member.fill("Email address", "member@example.com").await;
        member.fill("Password", PASSWORD).await;
        member.press("Log in").await;
        assert_eq!(member.path().await, "/account/two-factor", "sent from /dashboard");
        assert!(member.text_of("#mfa-required").await.contains("Your business requires two-factor sign-in"));
        member.check("two-factor-required").await;
        member.open("/team").await;
        assert_eq!(member.path().await, "/account/two-factor");
        let (_, codes) = set_up_authenticator(&app, &member).await;
        assert_eq!(codes.len(), 10);
        member.client.find(Locator::LinkText("I have stored them: go to the dashboard")).await
            .expect("a link").click().await.expect("follow it");
        assert_eq!(member.path().await, "/dashboard");
        member.open("/team").await;
        assert_eq!(member.path().await, "/team");
        assert!(member.text_of("#require-mfa-status").await.contains("requires"));
        member.close().await;

        // Lifting the rule again.
        owner.open("/team").await;
        owner.press("Stop requiring two-factor sign-in").await;
        assert_eq!(owner.path().await, "/team?notice=mfa_not_required");
        owner.close().await;
    }
}
