//! Signing up, confirming the address from the mailed link, logging in and out, a forgotten
//! password, and a forged form from another site.

use super::*;

journey! {
    async fn sign_up_verify_from_the_mailed_link_and_see_the_dashboard(app, driver) {
        let b = driver.browser(&app.address, "signup").await;
        b.open("/dashboard").await;
        assert_eq!(b.path().await, "/login?next=%2Fdashboard", "a page needs a session");
        b.check("login").await;

        b.open("/signup").await;
        b.check("signup").await;
        // A mistake is shown next to its field; what was typed stays (not the password).
        b.fill("First name", "Ada").await;
        b.fill("Last name", "Lovelace").await;
        b.fill("Email address", "not an address").await;
        b.fill("Password (at least 8 characters)", PASSWORD).await;
        b.fill("Business name", "Analytical <Engines>").await;
        b.press("Create account").await;
        assert_eq!(b.path().await, "/signup", "{}", b.text().await);
        let error = b.text_of("#email-error").await;
        assert!(!error.is_empty(), "the email field says what is wrong");
        let kept = b.run("return [document.getElementById('first_name').value, document.getElementById('password').value];").await;
        assert_eq!(kept, serde_json::json!(["Ada", ""]), "names kept, the password not");
        b.check("signup-errors").await;

        b.fill("Email address", "ada@example.com").await;
        b.fill("Password (at least 8 characters)", PASSWORD).await;
        b.press("Create account").await;
        assert_eq!(b.path().await, "/dashboard?notice=welcome");
        let text = b.text().await;
        // The name someone chose is shown as text, never as markup.
        assert!(text.contains("Analytical <Engines>"), "{text}");
        assert!(text.contains("not confirmed yet"), "{text}");
        b.check("dashboard-unverified").await;

        let mail = app.only_mail_to("ada@example.com", VERIFICATION_SUBJECT).await;
        let link = link_in(&mail, "/verify-email");
        b.open(&link).await;
        b.check("verify-email").await;
        // Opening the link did nothing yet: a mail scanner fetching it uses no key.
        assert_eq!(app.count("users WHERE email_verified_at IS NOT NULL").await, 0);
        b.press("Confirm my email address").await;
        assert_eq!(b.path().await, "/dashboard?notice=email_verified");
        let text = b.text().await;
        assert!(!text.contains("not confirmed yet"), "{text}");
        assert_eq!(b.text_of("#credit-balance").await, "0.00 USD");
        b.check("dashboard").await;

        // Logging out revokes the session: the cookie the browser held no longer opens a page.
        let cookie = b.client.get_named_cookie("saaskit_session").await.expect("a session cookie");
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");
        b.press("Log out").await;
        assert_eq!(b.path().await, "/login?notice=logged_out");
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        let res = no_redirects.get(app.url("/dashboard"))
            .header("cookie", format!("saaskit_session={}", cookie.value()))
            .send().await.expect("request");
        assert_eq!(res.status(), 303, "the old session is revoked");
        // Nor did the cookie ever open the JSON API.
        let res = app.client.get(app.url("/api/v1/me"))
            .header("cookie", format!("saaskit_session={}", cookie.value()))
            .send().await.expect("request");
        assert_eq!(res.status(), 401);

        // Logging in again goes where the visitor was going.
        b.open("/dashboard").await;
        b.fill("Email address", "ada@example.com").await;
        b.fill("Password", "wrong password!").await;
        b.press("Log in").await;
        assert!(b.text().await.contains("The email or the password is wrong."));
        b.check("login-error").await;
        b.fill("Password", PASSWORD).await;
        b.press("Log in").await;
        assert_eq!(b.path().await, "/dashboard");

        // Guessing at an account is slowed down, and the page says for how long in words.
        b.press("Log out").await;
        let mut said = String::new();
        for _ in 0..8 {
            b.open("/login").await;
            b.fill("Email address", "grace@example.com").await;
            b.fill("Password", "a guess, again").await;
            b.press("Log in").await;
            said = b.text_of(".alert").await;
            if !said.contains("The email or the password is wrong.") {
                break;
            }
        }
        assert!(said.starts_with("Too many attempts. Try again in ") && said.contains("minute"), "{said}");
        assert!(!said.contains("rate_limited"), "no problem codes: {said}");
        b.check("login-rate-limited").await;

        // When the server fails (here its database lost a table), the page is ours, and it
        // tells nothing of the cause.
        log_in(&b, "ada@example.com").await;
        app.exec("ALTER TABLE ledger_entries RENAME TO ledger_entries_gone").await;
        b.open("/dashboard").await;
        let text = b.text().await;
        assert!(text.contains("Something went wrong on our side."), "{text}");
        assert!(!text.contains("ledger") && !text.contains("sqlx"), "no internals: {text}");
        b.check("error-500").await;
        let session = b.client.get_named_cookie("saaskit_session").await.expect("a session cookie");
        let res = app.client.get(app.url("/dashboard"))
            .header("cookie", format!("saaskit_session={}", session.value()))
            .send().await.expect("request");
        assert_eq!(res.status(), 500);
        b.close().await;
    }
}

journey! {
    async fn forgotten_password_through_the_mailed_link(app, driver) {
        app.signup("grace@example.com").await;
        let b = driver.browser(&app.address, "reset").await;
        b.open("/login").await;
        b.client.find(fantoccini::Locator::LinkText("Forgot your password?")).await.expect("a link")
            .click().await.expect("follow it");
        assert_eq!(b.path().await, "/forgot-password");
        b.check("forgot-password").await;
        b.fill("Email address", "grace@example.com").await;
        b.press("Mail me a link").await;
        assert_eq!(b.path().await, "/forgot-password?notice=reset_sent");
        b.check("forgot-password-sent").await;

        let mail = app.only_mail_to("grace@example.com", RESET_SUBJECT).await;
        b.open(&link_in(&mail, "/reset-password")).await;
        b.check("reset-password").await;
        b.fill("New password (at least 8 characters)", "short").await;
        b.press("Save the new password").await;
        assert!(!b.text_of("#password-error").await.is_empty());
        b.fill("New password (at least 8 characters)", "an entirely new passphrase").await;
        b.press("Save the new password").await;
        assert_eq!(b.path().await, "/dashboard?notice=password_changed");

        // The link worked once.
        b.press("Log out").await;
        b.open(&link_in(&mail, "/reset-password")).await;
        b.fill("New password (at least 8 characters)", "yet another passphrase").await;
        b.press("Save the new password").await;
        assert!(b.text().await.contains("This link was already used"), "{}", b.text().await);
        b.check("reset-password-used").await;

        b.open("/login").await;
        b.fill("Email address", "grace@example.com").await;
        b.fill("Password", "an entirely new passphrase").await;
        b.press("Log in").await;
        assert_eq!(b.path().await, "/dashboard");
        b.close().await;
    }
}

journey! {
    async fn a_form_posted_from_another_site_is_refused(app, driver) {
        app.signup("ada@example.com").await;
        let b = driver.browser(&app.address, "csrf").await;
        b.open("/login").await;
        b.fill("Email address", "ada@example.com").await;
        b.fill("Password", PASSWORD).await;
        b.press("Log in").await;
        assert_eq!(b.path().await, "/dashboard");

        // Another site's page (served from another origin: localhost is not 127.0.0.1) posts a
        // form to ours. The browser sends our cookies along (a top-level POST); we refuse it.
        let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let evil_port = evil.local_addr().expect("address").port();
        let target = app.url("/logout");
        let page = format!(
            "<!doctype html><title>Win a prize</title><form method=post action='{target}'>\
             <input type=hidden name=csrf value=guess><button>Claim</button></form>"
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = evil.accept().await else { return };
                let page = page.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let res = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                        page.len()
                    );
                    let _ = socket.write_all(res.as_bytes()).await;
                });
            }
        });
        b.client.goto(&format!("http://localhost:{evil_port}/")).await.expect("open the other site");
        b.press("Claim").await;
        assert!(b.text().await.contains("another site"), "{}", b.text().await);
        b.check("forbidden").await;

        // Still logged in: the forged logout did nothing.
        b.open("/dashboard").await;
        assert_eq!(b.path().await, "/dashboard");

        // A browser asking for a page that does not exist gets our page.
        b.open("/no-such-page").await;
        assert!(b.text().await.contains("Page not found"));
        b.check("not-found").await;
        b.close().await;
    }
}
