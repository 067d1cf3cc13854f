//! Staff find a business, grant it credits, and its owner sees the balance; the staff pages do
//! not exist for anyone else.

use super::*;

journey! {
    async fn staff_grant_credits_and_the_customer_sees_the_balance(app, driver) {
        app.signup("customer@example.com").await;
        app.signup("staff@example.com").await;
        app.exec("UPDATE users SET is_staff = TRUE WHERE email = 'staff@example.com'").await;

        let customer = driver.browser(&app.address, "admin").await;
        log_in(&customer, "customer@example.com").await;
        assert_eq!(customer.text_of("#credit-balance").await, "0.00 USD");
        // Not staff: there is nothing at /admin.
        customer.open("/admin").await;
        assert!(customer.text().await.contains("Page not found"));

        let staff = driver.browser(&app.address, "admin").await;
        log_in(&staff, "staff@example.com").await;
        staff.client.find(fantoccini::Locator::LinkText("Staff")).await.expect("a staff link")
            .click().await.expect("follow it");
        staff.fill("Name, owner's email or id", "customer@example.com").await;
        staff.press("Find").await;
        let text = staff.text_of("main table").await;
        assert!(text.contains("customer@example.com's business"), "{text}");
        assert!(!text.contains("staff@example.com's business"), "only the match: {text}");
        staff.check("admin-businesses").await;
        staff.client.find(fantoccini::Locator::LinkText("customer@example.com's business")).await
            .expect("the result").click().await.expect("open it");
        staff.check("admin-business").await;
        // Its usage, as the customer's dashboard shows it: one member of the plan's five.
        let usage = staff.run("return [...document.querySelectorAll('#usage-heading + table tbody tr')]\
            .map(r => [...r.cells].slice(0, 3).map(c => c.textContent.trim()).join(' ')).join('; ')").await;
        assert!(usage.as_str().is_some_and(|u| u.contains("members 1 5")), "{usage}");

        staff.fill("Amount (negative takes credits back)", "12.345").await;
        staff.press("Grant").await;
        assert!(!staff.text_of("#amount-error").await.is_empty());
        staff.fill("Amount (negative takes credits back)", "12.50").await;
        staff.fill("Note (optional)", "Sorry for the outage").await;
        staff.press("Grant").await;
        assert!(staff.path().await.ends_with("?notice=credits_granted"));
        assert_eq!(staff.text_of("#credit-balance").await, "12.50");

        customer.open("/dashboard").await;
        assert_eq!(customer.text_of("#credit-balance").await, "12.50 USD");

        // The plan catalog: a new plan, refused then made; archived.
        staff.open("/admin/plans").await;
        staff.fill("Code (a-z, 0-9, - and _)", "Team Plan").await;
        staff.fill("Name", "Team").await;
        staff.fill("Price of a cycle", "49").await;
        staff.fill("Cycle, in days", "30").await;
        staff.fill("Limits (meter=number, …)", "applications=20, members=10").await;
        staff.press("Create the plan").await;
        // Refused: the form again (no redirect), with the service's reason, and no plan made.
        assert_eq!(staff.path().await, "/admin/plans", "a code with a space is refused");
        assert!(!staff.text_of(".alert").await.is_empty(), "the reason is shown");
        assert!(!staff.text_of("main table").await.contains("Team Plan"));
        staff.fill("Code (a-z, 0-9, - and _)", "team").await;
        staff.press("Create the plan").await;
        assert_eq!(staff.path().await, "/admin/plans?notice=plan_created");
        assert!(staff.text_of("main table").await.contains("applications=20, members=10"));
        staff.check("admin-plans").await;
        customer.open("/billing").await;
        assert!(customer.text().await.contains("49.00 USD every 30 days"), "customers see the new plan");

        // Changing it: a price that is not one is refused next to its field, with what was typed
        // kept; then saved, a limit left out of the form is gone (unlimited).
        staff.client.find(fantoccini::Locator::Css("a[href='/admin/plans/team']")).await
            .expect("a link to change the plan").click().await.expect("follow it");
        staff.next_page().await;
        assert_eq!(staff.path().await, "/admin/plans/team");
        let limits = "Limits (meter=number, …; a meter left out is unlimited)";
        staff.fill("Price of a cycle", "forty").await;
        staff.fill(limits, "applications=25").await;
        staff.press("Save the plan").await;
        assert_eq!(staff.path().await, "/admin/plans/team");
        assert!(staff.text_of("#price-error").await.contains("19.00"));
        assert_eq!(staff.run("return document.getElementById('limits').value").await, "applications=25");
        staff.check("admin-plan").await;
        staff.fill("Price of a cycle", "59").await;
        staff.press("Save the plan").await;
        assert_eq!(staff.path().await, "/admin/plans?notice=plan_updated");
        let catalog = staff.text_of("main table").await;
        assert!(catalog.contains("applications=25") && !catalog.contains("members=10"), "{catalog}");
        customer.open("/billing").await;
        assert!(customer.text().await.contains("59.00 USD every 30 days"), "the new price is offered");
        staff.press("Archive Team").await;
        assert_eq!(staff.path().await, "/admin/plans?notice=plan_archived");
        customer.open("/billing").await;
        assert!(!customer.text().await.contains("59.00 USD every 30 days"));

        // Users: find the customer, deactivate them; their browser is logged out.
        staff.open("/admin/users").await;
        staff.fill("Email address", "customer@example.com").await;
        staff.press("Find").await;
        staff.check("admin-user").await;
        staff.press("Deactivate Ada Lovelace").await;
        assert!(staff.text().await.contains("deactivated"));
        customer.open("/dashboard").await;
        assert!(customer.path().await.starts_with("/login"), "{}", customer.path().await);
        customer.close().await;
        staff.close().await;
    }
}
