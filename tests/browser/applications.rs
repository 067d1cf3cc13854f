//! The example product's pages, from its resource declaration: create applications until the
//! plan's quota refuses one, rename one, delete one (which gives its room back).

use super::*;

journey! {
    async fn create_applications_until_the_quota_refuses(app, driver) {
        app.signup("ada@example.com").await;
        let b = driver.browser(&app.address, "applications").await;
        log_in(&b, "ada@example.com").await;
        b.client.find(fantoccini::Locator::LinkText("Applications")).await
            .expect("the product's entry in the navigation").click().await.expect("follow it");
        assert_eq!(b.path().await, "/applications");
        b.check("applications-empty").await;

        b.press("Create application").await;
        assert!(!b.text_of("#new-name-error").await.is_empty(), "a name is required");
        for name in ["Web <app>", "iOS", "Android"] {
            b.fill("Name", name).await;
            b.press("Create application").await;
            assert_eq!(b.path().await, "/applications?notice=item_created");
        }
        assert_eq!(b.text_of("#quota-used").await, "3 of 3");
        assert!(b.text().await.contains("Web <app>"), "names are shown as text");
        b.check("applications").await;

        // The free trial allows three: the fourth is refused, and the name typed stays.
        b.fill("Name", "Desktop").await;
        b.press("Create application").await;
        let text = b.text().await;
        assert!(text.contains("The free-trial plan allows 3 applications"), "{text}");
        assert_eq!(b.run("return document.getElementById('new-name').value;").await, "Desktop");
        b.check("applications-quota").await;
        assert_eq!(app.count("applications WHERE deleted_at IS NULL").await, 3);

        // Rename one, delete another: its room comes back.
        b.open("/applications").await;
        let field = b.client.find(fantoccini::Locator::Css("input[name=name][form]")).await.expect("a row's name");
        field.clear().await.expect("clear");
        field.send_keys("Web app").await.expect("type");
        b.press("Save Web <app>").await;
        assert_eq!(b.path().await, "/applications?notice=item_saved");
        assert!(b.text().await.contains("Web app"));
        b.press("Delete iOS").await;
        assert_eq!(b.path().await, "/applications?notice=item_deleted");
        assert_eq!(b.text_of("#quota-used").await, "2 of 3");
        b.fill("Name", "Desktop").await;
        b.press("Create application").await;
        assert_eq!(b.path().await, "/applications?notice=item_created");
        b.close().await;
    }
}

journey! {
    async fn recordings_newest_first_a_page_at_a_time(app, driver) {
        let session = app.signup_token("ada@example.com").await;
        let (status, created) = app.post("/api/v1/applications", Some(&session), serde_json::json!({"name": "Web"})).await;
        assert_eq!(status, 201, "{created}");
        let key = app.api_key(&session).await;
        for i in 0..23 {
            let (status, body) = app
                .post("/api/v1/recordings", Some(&key), serde_json::json!({"application_id": created["id"], "seq": i, "note": "<b>hi</b>"}))
                .await;
            assert_eq!(status, 201, "{body}");
        }
        let b = driver.browser(&app.address, "recordings").await;
        log_in(&b, "ada@example.com").await;
        b.client.find(fantoccini::Locator::LinkText("Recordings")).await
            .expect("the product's own entry").click().await.expect("follow it");
        assert_eq!(b.path().await, "/recordings");
        let rows = b.client.find_all(fantoccini::Locator::Css("tbody tr")).await.expect("rows");
        assert_eq!(rows.len(), 20, "twenty a page");
        let first = rows[0].text().await.expect("text");
        assert!(first.contains("\"seq\":22") && first.contains("Web"), "newest first: {first}");
        assert!(first.contains("<b>hi</b>"), "recording data is shown as text: {first}");
        b.check("recordings").await;
        b.client.find(fantoccini::Locator::LinkText("Older recordings")).await
            .expect("a next page").click().await.expect("follow it");
        let rows = b.client.find_all(fantoccini::Locator::Css("tbody tr")).await.expect("rows");
        assert_eq!(rows.len(), 3);
        assert!(rows[2].text().await.expect("text").contains("\"seq\":0"));
        b.close().await;
    }
}
