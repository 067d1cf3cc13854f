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
        customer.close().await;
        staff.close().await;
    }
}
