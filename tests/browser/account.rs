//! One's own account: names, password, sessions elsewhere, and switching between businesses.

use super::*;

journey! {
    async fn manage_my_account_sessions_and_businesses(app, driver) {
        let ada = app.signup_token("ada@example.com").await;
        // Grace's business invites Ada, who joins with her existing account.
        let grace = app.signup_token("grace@example.com").await;
        let (status, inv) = app.post("/api/v1/invitations", Some(&grace),
            serde_json::json!({"email": "ada@example.com", "role": "member", "send_email": false})).await;
        assert_eq!(status, 201, "{inv}");
        let key = inv["key"].as_str().expect("a key");
        let (status, joined) = app.post(&format!("/api/v1/invitations/{key}/accept"), Some(&ada), serde_json::json!({})).await;
        assert_eq!(status, 201, "{joined}");

        let b = driver.browser(&app.address, "account").await;
        log_in(&b, "ada@example.com").await;
        let elsewhere = driver.browser(&app.address, "account").await;
        log_in(&elsewhere, "ada@example.com").await;

        b.client.find(fantoccini::Locator::Css(".who-name")).await.expect("my name").click().await.expect("open");
        assert_eq!(b.path().await, "/account");
        b.check("account").await;
        b.fill("First name", "").await;
        b.press("Save the name").await;
        assert!(!b.text_of("#first_name-error").await.is_empty());
        b.fill("First name", "Augusta Ada").await;
        b.fill("Last name", "King").await;
        b.press("Save the name").await;
        assert_eq!(b.path().await, "/account?notice=renamed");
        assert_eq!(b.text_of(".who-name").await, "Augusta Ada King");

        b.fill("Current password", "not my password").await;
        b.fill("New password (at least 8 characters)", "a fresh passphrase").await;
        b.press("Change the password").await;
        assert!(!b.text_of("#current_password-error").await.is_empty());
        b.fill("Current password", PASSWORD).await;
        b.fill("New password (at least 8 characters)", "a fresh passphrase").await;
        b.press("Change the password").await;
        assert_eq!(b.path().await, "/account?notice=password_changed");
        // The other browser's session ended with the change.
        elsewhere.open("/dashboard").await;
        assert!(elsewhere.path().await.starts_with("/login"), "{}", elsewhere.path().await);
        elsewhere.fill("Email address", "ada@example.com").await;
        elsewhere.fill("Password", "a fresh passphrase").await;
        elsewhere.press("Log in").await;

        b.open("/sessions").await;
        assert_eq!(b.client.find_all(fantoccini::Locator::Css("tbody tr")).await.expect("rows").len(), 2);
        b.check("sessions").await;
        b.press("End every other session").await;
        assert_eq!(b.path().await, "/sessions?notice=sessions_ended");
        elsewhere.open("/dashboard").await;
        assert!(elsewhere.path().await.starts_with("/login"));

        // Two businesses: switch to Grace's.
        b.open("/account").await;
        b.press("Switch to grace@example.com's business").await;
        assert_eq!(b.path().await, "/dashboard?notice=switched");
        assert!(b.text_of("h1").await.contains("grace@example.com's business"));
        b.close().await;
        elsewhere.close().await;
    }
}

journey! {
    async fn read_the_audit_log_filtered_by_action(app, driver) {
        let owner = app.signup_token("owner@example.com").await;
        app.join(&owner, "member@example.com", "member").await;
        let b = driver.browser(&app.address, "audit-log").await;
        log_in(&b, "owner@example.com").await;
        b.client.find(fantoccini::Locator::LinkText("Audit log")).await.expect("a link").click().await.expect("open");
        let text = b.text_of("main table").await;
        assert!(text.contains("login.succeeded") && text.contains("invitation.sent"), "{text}");
        b.check("audit-log").await;
        let select = b.client.find(fantoccini::Locator::Id("action")).await.expect("the filter");
        select.select_by_value("login.succeeded").await.expect("choose");
        b.press("Filter").await;
        assert_eq!(b.path().await, "/audit-log?action=login.succeeded");
        let rows = b.client.find_all(fantoccini::Locator::Css("tbody tr")).await.expect("rows");
        assert!(!rows.is_empty());
        for row in rows {
            assert!(row.text().await.expect("text").contains("login.succeeded"));
        }
        b.close().await;

        // A member may not read it: the service says so.
        let m = driver.browser(&app.address, "audit-log").await;
        m.open("/login").await;
        m.fill("Email address", "member@example.com").await;
        m.fill("Password", PASSWORD).await;
        m.press("Log in").await;
        m.open("/audit-log").await;
        assert!(m.text().await.contains("Owners and admins read the audit log."), "{}", m.text().await);
        m.close().await;
    }
}
