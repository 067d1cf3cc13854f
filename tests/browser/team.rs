//! Inviting someone, who accepts in another browser and sees the team; what each role is shown.

use super::*;

journey! {
    async fn invite_accept_in_another_browser_and_see_the_team(app, driver) {
        app.signup("owner@example.com").await;
        let owner = driver.browser(&app.address, "team").await;
        log_in(&owner, "owner@example.com").await;
        owner.open("/team").await;
        owner.check("team-alone").await;

        owner.fill("Their email address", "not an address").await;
        owner.press("Send the invitation").await;
        assert!(!owner.text_of("#invite_email-error").await.is_empty());
        owner.fill("Their email address", "bob@example.com").await;
        owner.press("Send the invitation").await;
        assert_eq!(owner.path().await, "/team?notice=invited");
        assert!(owner.text().await.contains("bob@example.com"), "pending");
        owner.check("team").await;

        // Bob, in a browser of his own, follows the mailed link.
        let mail = app.only_mail_to("bob@example.com", "invited").await;
        let bob = driver.browser(&app.address, "team").await;
        bob.open(&link_in(&mail, "/invitations/accept")).await;
        let text = bob.text().await;
        assert!(text.contains("invited bob@example.com"), "{text}");
        bob.check("invitation").await;
        bob.fill("First name", "Bob").await;
        bob.fill("Last name", "Builder").await;
        bob.fill("Password (at least 8 characters)", "short").await;
        bob.press("Create account and join").await;
        assert!(!bob.text_of("#password-error").await.is_empty());
        assert_eq!(bob.run("return document.getElementById('first_name').value;").await, "Bob");
        bob.fill("Password (at least 8 characters)", PASSWORD).await;
        bob.press("Create account and join").await;
        assert_eq!(bob.path().await, "/dashboard?notice=joined");

        // The new member sees the team, and no control a member may not use.
        bob.open("/team").await;
        let text = bob.text().await;
        assert!(text.contains("owner@example.com") && text.contains("Bob Builder"), "{text}");
        assert!(!text.contains("Send the invitation") && !text.contains("Remove"), "{text}");
        bob.check("team-as-member").await;

        // A member may not remove anyone, whatever the page shows: a hand-made form with Bob's
        // own valid CSRF code is refused by the service.
        let owner_token = app.login_token("owner@example.com").await;
        let (_, listed) = app.get("/api/v1/members", Some(&owner_token)).await;
        let owner_id = listed["data"].as_array().expect("members").iter()
            .find(|m| m["email"] == "owner@example.com").expect("the owner")["id"]
            .as_str().expect("an id").to_owned();
        bob.run(&format!(
            "const f = document.createElement('form'); f.method = 'post'; \
             f.action = '/team/members/{owner_id}/remove'; \
             const c = document.createElement('input'); c.type = 'hidden'; c.name = 'csrf'; \
             c.value = document.querySelector('input[name=csrf]').value; f.appendChild(c); \
             document.body.appendChild(f); window.__before_press = true; f.submit();"
        )).await;
        bob.next_page().await;
        let text = bob.text().await;
        assert!(text.contains("Only owners and admins"), "{text}");
        assert!(text.contains("owner@example.com"), "the owner is still there: {text}");

        // The owner makes Bob an admin; Bob's page then offers what an admin may do.
        owner.open("/team").await;
        let select = owner.client
            .find(fantoccini::Locator::Css("select[name=role]"))
            .await
            .expect("a role select for Bob");
        select.select_by_value("admin").await.expect("choose admin");
        owner.press("Change role of Bob Builder").await;
        assert_eq!(owner.path().await, "/team?notice=role_changed");
        bob.open("/team").await;
        assert!(bob.text().await.contains("Send the invitation"), "an admin may invite");
        owner.close().await;
        bob.close().await;
    }
}
