//! Changing plan with the cost shown before confirming, cancelling and resuming, and the
//! history of credits and charges.

use super::*;

journey! {
    async fn change_plan_after_seeing_what_it_costs(app, driver) {
        let signed_up = app.signup("ada@example.com").await;
        let business = signed_up["business"]["id"].as_str().expect("an id").to_owned();
        app.signup("staff@example.com").await;
        saaskit::billing::admin::set_staff(&app.app, "staff@example.com", true).await.expect("make staff");
        let staff = app.login_token("staff@example.com").await;
        let (status, plan) = app.post("/api/v1/admin/plans", Some(&staff), serde_json::json!({
            "code": "pro", "name": "Pro", "description": "For growing teams.", "price": 1900,
            "currency": "usd", "cycle_days": 30, "limits": {"applications": 50}
        })).await;
        assert_eq!(status, 201, "{plan}");
        let (status, granted) = app.post(&format!("/api/v1/admin/businesses/{business}/credits"), Some(&staff),
            serde_json::json!({"amount": 5000, "note": "Welcome credit"})).await;
        assert_eq!(status, 201, "{granted}");

        let b = driver.browser(&app.address, "billing").await;
        log_in(&b, "ada@example.com").await;
        b.open("/billing").await;
        assert_eq!(b.text_of("#credit-balance").await, "50.00 USD");
        assert!(b.text().await.contains("Welcome credit"), "the history shows the grant");
        b.check("billing").await;

        b.press("See what Pro costs").await;
        assert_eq!(b.text_of("#amount-due").await, "19.00 USD", "a trial leaves no credit to prorate");
        b.check("billing-preview").await;
        // Seeing the cost changed nothing.
        let (_, sub) = app.get("/api/v1/subscription", Some(&app.login_token("ada@example.com").await)).await;
        assert_eq!(sub["plan"]["code"], "free-trial");

        b.press("Confirm the change").await;
        assert_eq!(b.path().await, "/billing?notice=plan_changed");
        assert_eq!(b.text_of("#credit-balance").await, "31.00 USD");
        assert!(b.text().await.contains("Charge for a period"));

        b.press("Cancel at the end of the period").await;
        assert_eq!(b.path().await, "/billing?notice=canceled");
        assert!(b.text_of("#pending").await.contains("Cancels at the end of the period"));
        b.check("billing-canceled").await;
        b.press("Keep the subscription as it is").await;
        assert_eq!(b.path().await, "/billing?notice=resumed");
        assert!(!b.text().await.contains("Cancels at the end"));
        b.close().await;
    }
}
