//! Team management: listing members, changing roles, removing members and leaving, with the
//! rule that a business always keeps an owner.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

async fn set_role(app: &TestApp, token: &str, id: &str, role: &str) -> (StatusCode, Value) {
    app.call(
        Method::PATCH,
        &format!("/api/v1/members/{id}"),
        Some(token),
        Some(json!({"role": role})),
    )
    .await
}

async fn remove(app: &TestApp, token: &str, id: &str) -> (StatusCode, Value) {
    app.call(
        Method::DELETE,
        &format!("/api/v1/members/{id}"),
        Some(token),
        None,
    )
    .await
}

async fn members_used(app: &TestApp, token: &str) -> Option<i64> {
    let (_, ent) = app.get("/api/v1/entitlements", Some(token)).await;
    ent["meters"]["members"]["used"].as_i64()
}

async fn member_id(app: &TestApp, token: &str) -> String {
    let (_, me) = app.get("/api/v1/me", Some(token)).await;
    me["member_id"].as_str().expect("member_id").to_owned()
}

db_test!(
    async fn members_are_listed_with_their_roles(app) {
        let owner = app.signup_token("owner@example.com").await;
        app.join(&owner, "ann@example.com", "member").await;
        let (status, _) = app
            .post("/api/v1/bots", Some(&owner), json!({"name": "ci", "scopes": ["sdk"]}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, list) = app.get("/api/v1/members", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let rows: Vec<(String, String, bool)> = list["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|m| {
                (
                    m["email"].as_str().unwrap_or("").to_owned(),
                    m["role"].as_str().unwrap_or("").to_owned(),
                    m["is_bot"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        assert_eq!(rows[0], ("owner@example.com".into(), "owner".into(), false));
        assert_eq!(rows[1], ("ann@example.com".into(), "member".into(), false));
        assert_eq!((rows[2].1.as_str(), rows[2].2), ("bot", true));
    }
);

db_test!(
    async fn owners_and_admins_change_roles_within_their_own(app) {
        let owner = app.signup_token("owner@example.com").await;
        let (ann, ann_id) = app.join(&owner, "ann@example.com", "member").await;
        let (bob, bob_id) = app.join(&owner, "bob@example.com", "member").await;
        let owner_id = member_id(&app, &owner).await;

        // A member changes nobody's role.
        let (status, body) = set_role(&app, &ann, &bob_id, "admin").await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden_role")));

        let (status, body) = set_role(&app, &owner, &ann_id, "admin").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], "admin");
        // The promotion applies to Ann's very next request.
        let (_, me) = app.get("/api/v1/me", Some(&ann)).await;
        assert_eq!(me["role"], "admin");

        // An admin manages members and admins, never owners.
        let (status, _) = set_role(&app, &ann, &bob_id, "admin").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = set_role(&app, &ann, &bob_id, "member").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = set_role(&app, &ann, &bob_id, "owner").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = set_role(&app, &ann, &owner_id, "member").await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        for bad in [json!({"role": "bot"}), json!({"role": "emperor"}), json!({})] {
            let (status, body) = app
                .call(Method::PATCH, &format!("/api/v1/members/{bob_id}"), Some(&owner), Some(bad))
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
        let (_, me) = app.get("/api/v1/me", Some(&bob)).await;
        assert_eq!(me["role"], "member");
    }
);

db_test!(
    async fn a_business_always_keeps_an_owner_and_ownership_can_be_transferred(app) {
        let owner = app.signup_token("owner@example.com").await;
        let owner_id = member_id(&app, &owner).await;
        let (ann, ann_id) = app.join(&owner, "ann@example.com", "admin").await;

        let (status, body) = set_role(&app, &owner, &owner_id, "admin").await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("last_owner")));
        let (status, body) = remove(&app, &owner, &owner_id).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("last_owner")));

        // Transfer: make Ann owner, then step down.
        let (status, _) = set_role(&app, &owner, &ann_id, "owner").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = set_role(&app, &owner, &owner_id, "member").await;
        assert_eq!(status, StatusCode::OK);
        let (_, me) = app.get("/api/v1/me", Some(&ann)).await;
        assert_eq!(me["role"], "owner");
        // Now Ann is the last owner.
        let (status, _) = set_role(&app, &ann, &ann_id, "member").await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
);

db_test!(
    async fn two_owners_demoting_each_other_at_once_leave_one_owner(app) {
        let owner = app.signup_token("owner@example.com").await;
        let owner_id = member_id(&app, &owner).await;
        let (ann, ann_id) = app.join(&owner, "ann@example.com", "admin").await;
        let (status, _) = set_role(&app, &owner, &ann_id, "owner").await;
        assert_eq!(status, StatusCode::OK);
        let (a, b) = tokio::join!(
            set_role(&app, &owner, &ann_id, "member"),
            set_role(&app, &ann, &owner_id, "member"),
        );
        // One wins. The other is refused, either as the last owner's demotion (409) or, when
        // it started after the first, because its caller is no longer an owner (403).
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(statuses[0], StatusCode::OK, "{a:?} {b:?}");
        assert!(
            [StatusCode::FORBIDDEN, StatusCode::CONFLICT].contains(&statuses[1]),
            "{a:?} {b:?}"
        );
        let (_, list) = app.get("/api/v1/members", Some(&owner)).await;
        let owners = list["data"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["role"] == "owner").count());
        assert_eq!(owners, Some(1));
    }
);

db_test!(
    async fn a_removed_member_is_locked_out_at_once_and_frees_a_place(app) {
        let owner = app.signup_token("owner@example.com").await;
        let owner_id = member_id(&app, &owner).await;
        let (ann, ann_id) = app.join(&owner, "ann@example.com", "admin").await;
        let (bob, bob_id) = app.join(&owner, "bob@example.com", "member").await;
        assert_eq!(members_used(&app, &owner).await, Some(3));

        // An admin does not remove an owner; a member removes nobody else.
        let (status, _) = remove(&app, &ann, &owner_id).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = remove(&app, &bob, &ann_id).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let (status, _) = app.get("/api/v1/me", Some(&bob)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = remove(&app, &ann, &bob_id).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = app.get("/api/v1/me", Some(&bob)).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")));
        let (status, _) = remove(&app, &ann, &bob_id).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(members_used(&app, &owner).await, Some(2));

        // Leaving: Ann removes herself.
        let (status, _) = remove(&app, &ann, &ann_id).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = app.get("/api/v1/me", Some(&ann)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (_, list) = app.get("/api/v1/members", Some(&owner)).await;
        assert_eq!(list["data"].as_array().map(Vec::len), Some(1));

        // Another business's owner cannot touch these members.
        let other = app.signup_token("other@example.com").await;
        let (status, _) = remove(&app, &other, &owner_id).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
);
