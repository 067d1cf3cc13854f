//! Running a team through the API: transferring ownership, switching between businesses, and
//! deleting one's own account (the business goes with it when nobody else is in it).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

async fn me(app: &TestApp, token: &str) -> Value {
    let (status, me) = app.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me
}

async fn transfer(app: &TestApp, token: &str, member: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/members/{member}/transfer-ownership"),
        Some(token),
        json!({}),
    )
    .await
}

async fn delete_me(app: &TestApp, token: &str, password: &str) -> (StatusCode, Value) {
    app.call(
        Method::DELETE,
        "/api/v1/me",
        Some(token),
        Some(json!({"password": password})),
    )
    .await
}

db_test!(
    async fn an_owner_hands_the_business_over_in_one_step(app) {
        let owner = app.signup_token("owner@example.com").await;
        let own_id = me(&app, &owner).await["member_id"].as_str().expect("id").to_owned();
        let (admin, admin_id) = app.join(&owner, "admin@example.com", "admin").await;
        let (_, member_id) = app.join(&owner, "member@example.com", "member").await;

        // Only owners transfer; not to oneself, not to a bot.
        let (status, body) = transfer(&app, &admin, &member_id).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden_role")));
        let (status, body) = transfer(&app, &owner, &own_id).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("self_transfer")));
        let (_, bot) = app
            .post("/api/v1/bots", Some(&owner), json!({"name": "ci", "scopes": ["dashboard"]}))
            .await;
        let (status, body) = transfer(&app, &owner, bot["id"].as_str().expect("bot id")).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("bot_cannot_own")));

        // Read (and so cached, with its `me` document) before the change, twice each.
        for _ in 0..2 {
            assert_eq!(me(&app, &owner).await["role"], "owner");
            assert_eq!(me(&app, &admin).await["role"], "admin");
        }
        let (status, body) = transfer(&app, &owner, &admin_id).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], "owner");
        // At once: the old owner is an admin, the new one an owner.
        assert_eq!(me(&app, &owner).await["role"], "admin");
        assert_eq!(me(&app, &admin).await["role"], "owner");
        // The old owner can no longer transfer; the new one can.
        let (status, _) = transfer(&app, &owner, &member_id).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (_, log) = app.get("/api/v1/audit-log?action=member.ownership_transferred", Some(&admin)).await;
        assert_eq!(log["data"][0]["target"]["id"], admin_id.as_str(), "{log}");
        app.assert_conformant();
    }
);

db_test!(
    async fn a_person_in_two_businesses_switches_between_them(app) {
        let alice = app.signup_token("alice@example.com").await;
        let bob = app.signup_token("bob@example.com").await;
        let alice_business = me(&app, &alice).await["business"]["id"].as_str().expect("id").to_owned();
        let bob_business = me(&app, &bob).await["business"]["id"].as_str().expect("id").to_owned();
        // Bob invites Alice, who accepts while logged in: that session acts for Bob's business.
        let (_, inv) = app
            .post("/api/v1/invitations", Some(&bob), json!({"email": "alice@example.com", "role": "member", "send_email": false}))
            .await;
        let (status, accepted) = app
            .call(
                Method::POST,
                &format!("/api/v1/invitations/{}/accept", inv["key"].as_str().expect("key")),
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{accepted}");
        let in_bobs = token_of(&accepted);
        assert_eq!(me(&app, &in_bobs).await["business"]["id"], bob_business.as_str());

        let (status, list) = app.get("/api/v1/businesses", Some(&in_bobs)).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let listed: Vec<(String, String, bool)> = list["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|b| (b["id"].as_str().expect("id").to_owned(), b["role"].as_str().expect("role").to_owned(), b["current"] == true))
            .collect();
        assert_eq!(
            listed,
            [(alice_business.clone(), "owner".to_owned(), false), (bob_business.clone(), "member".to_owned(), true)]
        );

        // Switching replaces the session: the new token acts for the other business, the old
        // one stops working.
        let (status, switched) = app
            .post("/api/v1/sessions/switch", Some(&in_bobs), json!({"business_id": alice_business}))
            .await;
        assert_eq!(status, StatusCode::OK, "{switched}");
        let in_alices = token_of(&switched);
        assert_eq!(switched["business"]["id"], alice_business.as_str());
        assert_eq!(me(&app, &in_alices).await["role"], "owner");
        let (status, _) = app.get("/api/v1/me", Some(&in_bobs)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Not to a business one is not in.
        let carol = app.signup_token("carol@example.com").await;
        let carol_business = me(&app, &carol).await["business"]["id"].as_str().expect("id").to_owned();
        let (status, _) = app
            .post("/api/v1/sessions/switch", Some(&in_alices), json!({"business_id": carol_business}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Logging in again picks the business used last.
        app.clock.advance(chrono::Duration::seconds(1));
        let (_, switched_back) = app
            .post("/api/v1/sessions/switch", Some(&in_alices), json!({"business_id": bob_business}))
            .await;
        assert_eq!(switched_back["business"]["id"], bob_business.as_str());
        let (_, login) = app
            .post("/api/v1/login", None, json!({"email": "alice@example.com", "password": PASSWORD}))
            .await;
        assert_eq!(login["business"]["id"], bob_business.as_str(), "{login}");
        app.assert_conformant();
    }
);

db_test!(
    async fn deleting_the_only_member_closes_the_business_and_frees_the_email(app) {
        let signed_up = app.signup("solo@example.com").await;
        let owner = token_of(&signed_up);
        let (_, key) = app.post("/api/v1/api-keys", Some(&owner), json!({"name": "sdk"})).await;
        let sdk = key["key"].as_str().expect("key").to_owned();
        let (_, bot) = app
            .post("/api/v1/bots", Some(&owner), json!({"name": "ci", "scopes": ["dashboard"]}))
            .await;
        let bot_token = bot["token"].as_str().expect("bot token").to_owned();
        let second = app.login_token("solo@example.com").await;

        // A wrong password deletes nothing.
        let (status, body) = delete_me(&app, &owner, "not my password").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["errors"][0]["field"], "password");
        // Bots have no account to delete.
        let (status, body) = delete_me(&app, &bot_token, PASSWORD).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_a_person")));

        let (status, body) = delete_me(&app, &owner, PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["closed_businesses"], json!([signed_up["business"]["id"]]));
        // Every token of the account and of its business stops at once: sessions, key, bot.
        for token in [&owner, &second, &bot_token] {
            let (status, _) = app.get("/api/v1/me", Some(token)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, _) = app.get("/api/v1/entitlements", Some(&sdk)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // The password no longer logs in, the same answer as for an unknown email.
        let (status, body) = app
            .post("/api/v1/login", None, json!({"email": "solo@example.com", "password": PASSWORD}))
            .await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
        // Personal data is gone from the row that stays.
        let user_id = signed_up["user"]["id"].as_str().expect("id");
        let remaining = app.count("users").await;
        assert_eq!(remaining, 2, "the user and the bot rows stay, anonymous");
        assert_eq!(app.count("users WHERE email = 'solo@example.com' OR first_name = 'Ada'").await, 0);
        let tombstones = "users WHERE email LIKE 'deleted-%@deleted.invalid' AND first_name = '' \
                          AND last_name = '' AND password_hash = '!' AND NOT is_active";
        assert_eq!(app.count(tombstones).await, 1);
        // The address is free again.
        app.signup("solo@example.com").await;
        // The closed business's subscription no longer renews.
        let (_, staff_view) = {
            app.signup("staff@example.com").await;
            saaskit::billing::admin::set_staff(&app.app, "staff@example.com", true).await.expect("staff");
            let staff = app.login_token("staff@example.com").await;
            let business = signed_up["business"]["id"].as_str().expect("id");
            let (_, log) = app.get("/api/v1/audit-log?action=user.deleted", Some(&staff)).await;
            assert_eq!(log["data"][0]["target"]["id"], user_id, "{log}");
            app.get(&format!("/api/v1/admin/businesses/{business}"), Some(&staff)).await
        };
        assert_eq!(staff_view["active"], false, "{staff_view}");
        assert_eq!(staff_view["status"], "canceled", "{staff_view}");
        app.assert_conformant();
    }
);

db_test!(
    async fn an_only_owner_transfers_ownership_before_leaving_with_the_account(app) {
        let owner = app.signup_token("owner@example.com").await;
        let business = me(&app, &owner).await["business"]["id"].as_str().expect("id").to_owned();
        let (member, member_id) = app.join(&owner, "member@example.com", "member").await;

        let (status, body) = delete_me(&app, &owner, PASSWORD).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "ownership_transfer_required");
        assert!(body["detail"].as_str().expect("detail").contains(&business), "{body}");
        // Nothing changed.
        assert_eq!(me(&app, &owner).await["role"], "owner");

        let (status, _) = transfer(&app, &owner, &member_id).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = delete_me(&app, &owner, PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["closed_businesses"], json!([]));
        // The business goes on with its new owner, who no longer sees the old one.
        let (status, members) = app.get("/api/v1/members", Some(&member)).await;
        assert_eq!(status, StatusCode::OK);
        let emails: Vec<&str> = members["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|m| m["email"].as_str())
            .collect();
        assert_eq!(emails, ["member@example.com"]);
        assert_eq!(me(&app, &member).await["role"], "owner");
        app.assert_conformant();
    }
);

db_test!(
    async fn a_business_staff_turned_off_does_not_block_deleting_an_account(app) {
        let signed_up = app.signup("owner@example.com").await;
        let owner = token_of(&signed_up);
        let business = signed_up["business"]["id"].as_str().expect("id").to_owned();
        app.join(&owner, "member@example.com", "member").await;
        // The owner also belongs to another business, where they are a member.
        let other = app.signup_token("other@example.com").await;
        let (_, inv) = app
            .post("/api/v1/invitations", Some(&other), json!({"email": "owner@example.com", "role": "member", "send_email": false}))
            .await;
        let (status, _) = app
            .call(Method::POST, &format!("/api/v1/invitations/{}/accept", inv["key"].as_str().expect("key")), Some(&owner), None)
            .await;
        assert_eq!(status, StatusCode::CREATED);
        app.signup("staff@example.com").await;
        saaskit::billing::admin::set_staff(&app.app, "staff@example.com", true).await.expect("staff");
        let staff = app.login_token("staff@example.com").await;
        let (status, _) = app
            .post(&format!("/api/v1/admin/businesses/{business}/deactivate"), Some(&staff), json!({}))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        // Nobody can act in the business staff turned off, nor transfer it, so its only owner
        // is not held back by it: they leave it with the account.
        let owner = app.login_token("owner@example.com").await;
        let (status, body) = delete_me(&app, &owner, PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["closed_businesses"], json!([]));
    }
);
