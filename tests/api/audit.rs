//! The audit log: what is recorded (with actor, business, address and user agent, in the same
//! transaction as the change), who may read it, and the hash chain `saaskit audit verify` checks.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::saaskit;
use crate::db_test;
use crate::helpers::*;
use crate::signup::futures_join_all;

async fn log(app: &TestApp, token: &str, query: &str) -> (StatusCode, Value) {
    app.get(&format!("/api/v1/audit-log{query}"), Some(token))
        .await
}

fn actions(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["action"].as_str().expect("action").to_owned())
        .collect()
}

fn verify(app: &TestApp) -> (bool, String) {
    let out = saaskit()
        .args(["audit", "verify"])
        .env("SAASKIT_DATABASE_URL", &app.test_db.url)
        .output()
        .expect("run saaskit audit verify");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

db_test!(
    async fn team_and_security_events_are_recorded_with_who_where_and_when(app) {
        let signed_up = app.signup("owner@example.com").await;
        let owner = token_of(&signed_up);
        let owner_id = signed_up["user"]["id"].as_str().expect("user id").to_owned();
        let business = signed_up["business"]["id"].as_str().expect("business id").to_owned();
        // A login from a client that names itself.
        let res = app
            .client
            .post(app.url("/api/v1/login"))
            .header("user-agent", "audit-test/1.0")
            .json(&json!({"email": "owner@example.com", "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        let (status, login) = read(res).await;
        assert_eq!(status, StatusCode::OK, "{login}");
        let (_, member_id) = app.join(&owner, "member@example.com", "member").await;
        let (status, _) = app
            .call(Method::PATCH, &format!("/api/v1/members/{member_id}"), Some(&owner), Some(json!({"role": "admin"})))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, key) = app.post("/api/v1/api-keys", Some(&owner), json!({"name": "ci"})).await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let key_id = key["id"].as_str().expect("key id");
        let (status, _) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{key_id}"), Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = app.call(Method::DELETE, &format!("/api/v1/members/{member_id}"), Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        let (status, page) = log(&app, &owner, "").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            actions(&page),
            [
                "member.removed",
                "api_key.revoked",
                "api_key.created",
                "member.role_changed",
                "invitation.accepted",
                "invitation.sent",
                "login.succeeded",
                "user.signed_up",
            ]
        );
        let entries = page["data"].as_array().expect("data");
        for e in entries {
            assert_eq!(e["business_id"], business.as_str(), "{e}");
            assert_eq!(e["ip"], "127.0.0.1", "{e}");
            assert_eq!(e["hash"].as_str().map(str::len), Some(64), "{e}");
        }
        let login_entry = &entries[6];
        assert_eq!(login_entry["actor"], json!({"kind": "user", "id": owner_id}));
        assert_eq!(login_entry["user_agent"], "audit-test/1.0");
        let role = &entries[3];
        assert_eq!(role["target"]["kind"], "member");
        assert_eq!(role["target"]["id"], member_id.as_str());
        assert_eq!(role["details"]["from"], "member");
        assert_eq!(role["details"]["to"], "admin");
        // No secret in any entry: not the API key, not a session, not the password.
        let text = page.to_string();
        assert!(!text.contains(key["key"].as_str().expect("key")));
        assert!(!text.contains(&owner));
        assert!(!text.contains(PASSWORD));

        // Filtered by action, and paginated.
        let (_, only) = log(&app, &owner, "?action=api_key.created").await;
        assert_eq!(actions(&only), ["api_key.created"]);
        let (_, first) = log(&app, &owner, "?limit=3").await;
        assert_eq!(actions(&first).len(), 3);
        let cursor = first["next_cursor"].as_i64().expect("a next page");
        let (_, second) = log(&app, &owner, &format!("?limit=3&cursor={cursor}")).await;
        assert_eq!(
            actions(&second),
            ["member.role_changed", "invitation.accepted", "invitation.sent"]
        );
        let (_, rest) = log(&app, &owner, &format!("?limit=3&cursor={}", second["next_cursor"])).await;
        assert_eq!(actions(&rest), ["login.succeeded", "user.signed_up"]);
        assert_eq!(rest["next_cursor"], Value::Null);
        let (status, bad) = log(&app, &owner, "?action=nothing.happened").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(bad["errors"][0]["code"], "unknown_action");
        app.assert_conformant();
    }
);

db_test!(
    async fn failed_logins_are_recorded_for_known_and_unknown_emails_and_staff_see_everything(app) {
        let owner = app.signup_token("owner@example.com").await;
        let other = app.signup_token("other@example.com").await;
        for email in ["owner@example.com", "nobody@example.com"] {
            let (status, _) = app
                .post("/api/v1/login", None, json!({"email": email, "password": "wrong password!"}))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        // A business's owner sees only their business: not another's, and failed logins (which
        // act for no business) are for staff.
        let (_, mine) = log(&app, &owner, "").await;
        assert_eq!(actions(&mine), ["user.signed_up"]);
        let (_, theirs) = log(&app, &other, "").await;
        assert_eq!(actions(&theirs), ["user.signed_up"]);
        let other_business = {
            let (_, me) = app.get("/api/v1/me", Some(&other)).await;
            me["business"]["id"].as_str().expect("id").to_owned()
        };
        let (status, refused) = log(&app, &owner, &format!("?business_id={other_business}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
        assert_eq!(refused["code"], "staff_only");

        app.signup("staff@example.com").await;
        saaskit::billing::admin::set_staff(&app.app, "staff@example.com", true)
            .await
            .expect("make staff");
        let staff = app.login_token("staff@example.com").await;
        let (status, all) = log(&app, &staff, "?action=login.failed").await;
        assert_eq!(status, StatusCode::OK, "{all}");
        let failed = all["data"].as_array().expect("data");
        assert_eq!(failed.len(), 2);
        assert_eq!(failed[0]["actor"]["kind"], "anonymous");
        assert_eq!(failed[1]["actor"]["kind"], "user");
        assert_eq!(failed[1]["business_id"], Value::Null);
        let (_, one) = log(&app, &staff, &format!("?business_id={other_business}")).await;
        assert_eq!(actions(&one), ["user.signed_up"]);
        let (_, everything) = log(&app, &staff, "").await;
        assert!(actions(&everything).contains(&"user.staff_changed".to_owned()));
        // The plan catalog's changes are billing events too.
        let (status, _) = app
            .post("/api/v1/admin/plans", Some(&staff), json!({"code": "team", "name": "Team", "price": 900, "cycle_days": 30}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, created) = log(&app, &staff, "?action=plan.created").await;
        assert_eq!(created["data"][0]["target"], json!({"kind": "plan", "id": "team"}));
        assert_eq!(created["data"][0]["actor"]["kind"], "staff");

        // A plain member may not read it.
        let (member, _) = app.join(&owner, "member@example.com", "member").await;
        let (status, body) = log(&app, &member, "").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "forbidden_role");
        app.assert_conformant();
    }
);

db_test!(
    async fn a_refused_change_records_nothing(app) {
        let owner = app.signup_token("owner@example.com").await;
        let (_, me) = app.get("/api/v1/me", Some(&owner)).await;
        let own_id = me["member_id"].as_str().expect("member_id");
        // An accepted change is recorded…
        let before = app.count("audit_log").await;
        let (status, _) = app.post("/api/v1/api-keys", Some(&owner), json!({"name": "k"})).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(app.count("audit_log").await, before + 1);
        let before = before + 1;
        // …a refused one is not. The last owner cannot step down: 409, and no entry claims a
        // role changed.
        let (status, _) = app
            .call(Method::PATCH, &format!("/api/v1/members/{own_id}"), Some(&owner), Some(json!({"role": "member"})))
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(app.count("audit_log").await, before);
        let (_, page) = log(&app, &owner, "?action=member.role_changed").await;
        assert_eq!(actions(&page), Vec::<String>::new());
    }
);

db_test!(
    async fn concurrent_events_form_one_unbroken_chain(app) {
        let owner = app.signup_token("owner@example.com").await;
        let mut calls = Vec::new();
        for i in 0..24 {
            let client = app.client.clone();
            let url = app.url("/api/v1/api-keys");
            let owner = owner.clone();
            calls.push(async move {
                let res = client
                    .post(url)
                    .bearer_auth(owner)
                    .json(&json!({"name": format!("k{i}")}))
                    .send()
                    .await
                    .expect("create a key");
                read(res).await
            });
        }
        for (status, body) in futures_join_all(calls).await {
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let verdict = saaskit::audit::verify(&app.db).await.expect("verify");
        assert_eq!(verdict, saaskit::audit::Verdict::Intact { entries: 25 });
    }
);

db_test!(
    async fn audit_verify_names_the_first_edited_or_missing_entry(app) {
        let owner = app.signup_token("owner@example.com").await;
        for name in ["a", "b", "c"] {
            let (status, _) = app.post("/api/v1/api-keys", Some(&owner), json!({"name": name})).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (ok, out) = verify(&app);
        assert!(ok, "{out}");
        assert!(out.contains("intact: 4 entries"), "{out}");

        // Someone with database access edits entry 3: verify fails and names it.
        app.exec("UPDATE audit_log SET details = '{\"name\":\"innocent\"}' WHERE seq = 3").await;
        let (ok, out) = verify(&app);
        assert!(!ok, "{out}");
        assert!(out.contains("broken at entry 3"), "{out}");
        assert!(out.contains("edited"), "{out}");

        // Recomputing that entry's hash does not help: the next one no longer links to it.
        let edited = saaskit::audit::verify(&app.db).await.expect("verify");
        assert!(matches!(edited, saaskit::audit::Verdict::Broken { seq: 3, .. }));
        let rows = {
            let mut tx = app.db.read().await.expect("read");
            saaskit::store::audit::page(tx.conn(), 2, 1).await.expect("entry 3")
        };
        let mut entry = rows.into_iter().next().expect("entry 3");
        entry.hash = saaskit::audit::hash_of(&entry);
        app.exec(&format!("UPDATE audit_log SET hash = '{}' WHERE seq = 3", entry.hash)).await;
        let (ok, out) = verify(&app);
        assert!(!ok, "{out}");
        assert!(out.contains("broken at entry 4"), "{out}");
    }
);

db_test!(
    async fn audit_verify_notices_removed_entries(app) {
        let owner = app.signup_token("owner@example.com").await;
        for name in ["a", "b", "c"] {
            app.post("/api/v1/api-keys", Some(&owner), json!({"name": name})).await;
        }
        // From the middle: a gap.
        app.exec("DELETE FROM audit_log WHERE seq = 2").await;
        let (ok, out) = verify(&app);
        assert!(!ok && out.contains("broken at entry 2"), "{out}");
        app.exec("DELETE FROM audit_log WHERE seq > 1").await;
        // From the end: the chain head still names the last entry.
        let (ok, out) = verify(&app);
        assert!(!ok && out.contains("broken at entry 2"), "{out}");
        assert!(out.contains("head"), "{out}");
    }
);

db_test!(
    async fn customers_see_that_staff_acted_but_not_who_or_from_where(app) {
        let signed_up = app.signup("owner@example.com").await;
        let owner = token_of(&signed_up);
        let business = signed_up["business"]["id"].as_str().expect("id").to_owned();
        app.signup("staff@example.com").await;
        saaskit::billing::admin::set_staff(&app.app, "staff@example.com", true)
            .await
            .expect("make staff");
        let staff = app.login_token("staff@example.com").await;
        let (status, _) = app
            .post(&format!("/api/v1/admin/businesses/{business}/credits"), Some(&staff), json!({"amount": 500}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, seen) = log(&app, &owner, "?action=credits.granted").await;
        let entry = &seen["data"][0];
        assert_eq!(entry["actor"], json!({"kind": "staff", "id": null}), "{entry}");
        assert_eq!((&entry["ip"], &entry["user_agent"]), (&Value::Null, &Value::Null));
        assert_eq!(entry["details"]["amount"], 500);
        // Staff see it whole.
        let (_, whole) = log(&app, &staff, "?action=credits.granted").await;
        assert!(whole["data"][0]["actor"]["id"].is_string(), "{whole}");
        assert_eq!(whole["data"][0]["ip"], "127.0.0.1");
    }
);
