//! The example product's own tests, written as a product's are: through saaskit::testing, on
//! both databases, against saaskit serving only this product.

use std::sync::Arc;

use saaskit::product::Products;
use saaskit::testing::*;

fn served() -> Arc<Products> {
    Arc::new(Products::new().with(saaskit_example::product()))
}

saaskit::scenario! {
    served() => async fn applications_are_limited_by_the_plan_and_recorded_by_api_keys(app) {
        let (owner, business) = app.signup_business("ada@example.com").await;
        app.put_on_plan(business, "solo", &[("applications", 1), ("recordings", 1)]).await;

        let (status, first) = app.post("/api/v1/applications", Some(&owner), json!({"name": "Web"})).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        let (status, over) = app.post("/api/v1/applications", Some(&owner), json!({"name": "iOS"})).await;
        assert_eq!((status, &over["code"]), (StatusCode::PAYMENT_REQUIRED, &json!("quota_exceeded")));

        let sdk = app.api_key(&owner).await;
        let recording = json!({"application_id": first["id"], "data": {"page": "/"}});
        let (status, _) = app.post("/api/v1/recordings", Some(&sdk), recording.clone()).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = app.post("/api/v1/recordings", Some(&sdk), recording).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "one recording per cycle on this plan");

        let (_, usage) = app.get("/api/v1/usage", Some(&owner)).await;
        assert_eq!(usage["meters"]["applications"]["kind"], "gauge", "{usage}");
        assert_eq!(usage["meters"]["recordings"]["used"], 1, "{usage}");

        // Deleting an application gives its place back.
        let path = format!("/api/v1/applications/{}", first["id"].as_str().unwrap_or_default());
        let (status, _) = app.call(Method::DELETE, &path, Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = app.post("/api/v1/applications", Some(&owner), json!({"name": "iOS"})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
}

saaskit::scenario! {
    served() => async fn every_route_answers_each_kind_of_caller_as_the_matrix_says(app) {
        let callers = app.callers().await;
        // Room for every row's creations: the matrix is about who, not how many.
        app.put_on_plan(callers.business, "matrix", &[]).await;
        #[rustfmt::skip]
        let rows = [
            //                                                            anon  own  adm  mem  bot  key  other
            Row::new("GET",    "/api/v1/applications",                    [401, 200, 200, 200, 200, 403, 200]),
            Row::new("POST",   "/api/v1/applications",                    [401, 201, 201, 201, 201, 403, 201])
                .body(json!({"name": "Matrix"})),
            Row::new("GET",    "/api/v1/applications/{id}",               [401, 200, 200, 200, 200, 403, 404]),
            Row::new("PATCH",  "/api/v1/applications/{id}",               [401, 200, 200, 200, 200, 403, 404])
                .body(json!({"name": "Renamed"})),
            Row::new("DELETE", "/api/v1/applications/{id}",               [401, 204, 204, 403, 403, 403, 404]),
            Row::new("GET",    "/api/v1/recordings",                      [401, 200, 200, 200, 200, 403, 200]),
            // The application is the owner's business's: another business's caller names an
            // application it does not have.
            Row::new("POST",   "/api/v1/recordings",                      [401, 201, 201, 201, 201, 201, 422])
                .body(json!({"application_id": "{id}", "data": {}})),
        ];
        let application = async |app: &TestApp, callers: &Callers| {
            let (status, made) = app
                .post("/api/v1/applications", Some(&callers.setup), json!({"name": "Fixture"}))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{made}");
            vec![("id", made["id"].as_str().unwrap_or_default().to_owned())]
        };
        app.authorization_matrix(&served().routes(), &callers, &rows, application).await;
    }
}
