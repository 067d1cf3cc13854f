use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;
use crate::smtp_sink::key_in;

async fn invite(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.post("/api/v1/invitations", Some(token), body).await
}

async fn accept(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/v1/invitations/{key}/accept")))
        .json(&body)
        .send()
        .await
        .expect("send")
}

fn invitee() -> Value {
    json!({"first_name": "Grace", "last_name": "Hopper", "password": "invited passphrase"})
}

db_test! {
    async fn an_invitation_is_mailed_described_and_accepted_once(app) {
        let owner = app.signup("ada@example.com").await;
        let owner_token = token_of(&owner);
        let (status, inv) = invite(&app, &owner_token, json!({"email": "Grace@Example.com", "role": "admin"})).await;
        assert_eq!(status, StatusCode::CREATED, "{inv}");
        assert_eq!(inv["email"], "grace@example.com");
        assert_eq!(inv["role"], "admin");
        assert_eq!(inv["emailed"], true);
        assert_eq!(inv["business"]["id"], owner["business"]["id"]);
        let key = inv["key"].as_str().expect("key").to_owned();
        assert_eq!(inv["link"], format!("http://localhost:8000/invitations/accept?key={key}"));
        assert_eq!(inv["expires_at"], "2026-03-08T12:00:00Z");

        let mail = app.only_mail_to("grace@example.com", "invited to join").await;
        assert!(mail.contains("“Ada Lovelace” invited you to join “ada[@]example[.]com's business” as admin."), "{mail}");
        assert!(mail.contains(inv["link"].as_str().unwrap_or("?")), "the link as it reads: {mail}");
        assert_eq!(key_in(&mail), key);

        let (status, seen) = app.get(&format!("/api/v1/invitations/{key}"), None).await;
        assert_eq!(status, StatusCode::OK, "{seen}");
        assert_eq!(seen["email"], "grace@example.com");
        assert_eq!(seen["role"], "admin");
        assert_eq!(seen["business"]["name"], "ada@example.com's business");
        assert_eq!(seen["inviter"]["name"], "Ada Lovelace");

        let (status, joined) = read(accept(&app, &key, invitee()).await).await;
        assert_eq!(status, StatusCode::CREATED, "{joined}");
        assert_eq!(joined["role"], "admin");
        assert_eq!(joined["user"]["email_verified"], false, "the inviter also held the key");
        let (status, me) = app.get("/api/v1/me", Some(&token_of(&joined))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["business"]["id"], owner["business"]["id"]);
        assert_eq!(me["role"], "admin");
        assert_eq!(me["user"]["first_name"], "Grace");

        assert_problem(accept(&app, &key, invitee()).await, StatusCode::GONE, "key_used").await;
        let res = app.client.get(app.url(&format!("/api/v1/invitations/{key}"))).send().await.expect("send");
        assert_problem(res, StatusCode::GONE, "key_used").await;
        let (status, _) = app.post("/api/v1/login", None, json!({"email": "grace@example.com", "password": "invited passphrase"})).await;
        assert_eq!(status, StatusCode::OK);
    }
}

db_test! {
    async fn invitations_expire_after_seven_days(app) {
        let token = app.signup_token("ada@example.com").await;
        let (_, inv) = invite(&app, &token, json!({"email": "grace@example.com", "role": "member", "send_email": false})).await;
        let key = inv["key"].as_str().expect("key").to_owned();
        app.clock.advance(Duration::days(7) - Duration::seconds(1));
        let (status, _) = app.get(&format!("/api/v1/invitations/{key}"), None).await;
        assert_eq!(status, StatusCode::OK);
        app.clock.advance(Duration::seconds(1));
        let res = app.client.get(app.url(&format!("/api/v1/invitations/{key}"))).send().await.expect("send");
        assert_problem(res, StatusCode::GONE, "key_expired").await;
        assert_problem(accept(&app, &key, invitee()).await, StatusCode::GONE, "key_expired").await;
        assert_eq!(app.count("users").await, 1);
    }
}

db_test! {
    async fn who_may_invite_and_what(app) {
        let owner = app.signup_token("ada@example.com").await;
        // send_email: false queues nothing.
        let queued = app.count("outbox").await;
        let (status, inv) = invite(&app, &owner, json!({"email": "member@example.com", "send_email": false})).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(inv["role"], "member", "the default role");
        assert_eq!(app.count("outbox").await, queued);
        let (_, joined) = read(accept(&app, inv["key"].as_str().expect("key"), invitee()).await).await;
        let member = token_of(&joined);

        let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&member).json(&json!({"email": "x@example.com"})).send().await.expect("send");
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&owner).json(&json!({"email": "member@example.com"})).send().await.expect("send");
        assert_problem(res, StatusCode::CONFLICT, "already_member").await;
        for role in ["owner", "bot", "god", ""] {
            let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&owner).json(&json!({"email": "y@example.com", "role": role})).send().await.expect("send");
            let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
            assert_eq!(body["errors"][0]["field"], "role");
        }
        let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&owner).json(&json!({"email": "nope"})).send().await.expect("send");
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let res = app.client.post(app.url("/api/v1/invitations")).json(&json!({"email": "z@example.com"})).send().await.expect("send");
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;

        // The free trial ends after 15 days; without a live subscription nobody can be invited.
        app.clock.advance(Duration::days(15));
        let owner = app.login_token("ada@example.com").await;
        let res = app.client.post(app.url("/api/v1/invitations")).bearer_auth(&owner).json(&json!({"email": "late@example.com"})).send().await.expect("send");
        assert_problem(res, StatusCode::PAYMENT_REQUIRED, "no_active_subscription").await;
    }
}

db_test! {
    async fn unknown_and_replaced_keys_are_refused(app) {
        let owner = app.signup_token("ada@example.com").await;
        for key in ["unknown", "%ff%fe", "a.b", &"k".repeat(300)] {
            let res = app.client.get(app.url(&format!("/api/v1/invitations/{key}"))).send().await.expect("send");
            assert_problem(res, StatusCode::NOT_FOUND, "key_not_found").await;
            assert_problem(accept(&app, key, invitee()).await, StatusCode::NOT_FOUND, "key_not_found").await;
        }
        let (_, first) = invite(&app, &owner, json!({"email": "grace@example.com", "send_email": false})).await;
        let (_, second) = invite(&app, &owner, json!({"email": "grace@example.com", "send_email": false})).await;
        let first = first["key"].as_str().expect("key");
        assert_problem(accept(&app, first, invitee()).await, StatusCode::GONE, "key_revoked").await;
        let res = accept(&app, second["key"].as_str().expect("key"), json!({"first_name": "G", "last_name": "H", "password": "short"})).await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let (status, _) = read(accept(&app, second["key"].as_str().expect("key"), invitee()).await).await;
        assert_eq!(status, StatusCode::CREATED);
    }
}

db_test! {
    async fn inviting_an_existing_account_never_changes_it(app) {
        let owner = app.signup_token("ada@example.com").await;
        app.signup("grace@example.com").await;
        let (status, inv) = invite(&app, &owner, json!({"email": "grace@example.com", "send_email": false})).await;
        assert_eq!(status, StatusCode::CREATED, "{inv}");
        let res = accept(&app, inv["key"].as_str().expect("key"), invitee()).await;
        assert_problem(res, StatusCode::CONFLICT, "account_exists").await;
        let (status, body) = app.post("/api/v1/login", None, json!({"email": "grace@example.com", "password": PASSWORD})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["business"]["name"], "grace@example.com's business");
        assert_eq!(app.count("members").await, 2);
    }
}

db_test! {
    async fn an_address_that_changes_when_lower_cased_can_still_accept(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (status, inv) = invite(&app, &owner, json!({"email": "İlker@İstanbul.example", "send_email": false})).await;
        assert_eq!(status, StatusCode::CREATED, "{inv}");
        let (status, body) = read(accept(&app, inv["key"].as_str().expect("key"), invitee()).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

db_test! {
    async fn concurrent_invitations_of_one_email_leave_one_live_key(app) {
        let owner = app.signup_token("ada@example.com").await;
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let client = app.client.clone();
                let url = app.url("/api/v1/invitations");
                let owner = owner.clone();
                tokio::spawn(async move {
                    client.post(url).bearer_auth(owner).json(&json!({"email": "grace@example.com", "send_email": false})).send().await.expect("send").status()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), StatusCode::CREATED);
        }
        let sql = "SELECT COUNT(*) FROM one_time_keys WHERE purpose = 'invitation' \
                   AND used_at IS NULL AND revoked_at IS NULL";
        let live: i64 = match &app.db {
            saaskit::db::Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            saaskit::db::Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .expect("count");
        assert_eq!(live, 1);
    }
}

db_test! {
    async fn owners_list_revoke_and_resend_pending_invitations(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (_, first) = invite(&app, &owner, json!({"email": "grace@example.com", "send_email": false})).await;
        let (_, second) = invite(&app, &owner, json!({"email": "alan@example.com", "role": "admin", "send_email": false})).await;
        let (status, list) = app.get("/api/v1/invitations", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let emails: Vec<&str> = list["data"].as_array().expect("list").iter().filter_map(|i| i["email"].as_str()).collect();
        assert_eq!(emails, ["alan@example.com", "grace@example.com"], "newest first");
        assert_eq!(list["data"][0]["role"], "admin");
        assert!(list["data"][0]["expires_at"].is_string());
        assert!(!list.to_string().contains(first["key"].as_str().expect("key")), "keys are never listed");

        // Revoked: the link stops working, and the list forgets it.
        let path = format!("/api/v1/invitations/{}", first["id"].as_str().expect("id"));
        let (status, _) = app.call(reqwest::Method::DELETE, &path, Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let res = accept(&app, first["key"].as_str().expect("key"), invitee()).await;
        assert_problem(res, StatusCode::GONE, "key_revoked").await;
        let (status, _) = app.call(reqwest::Method::DELETE, &path, Some(&owner), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "revoking twice");
        let (_, list) = app.get("/api/v1/invitations", Some(&owner)).await;
        assert_eq!(list["data"].as_array().map(Vec::len), Some(1));

        // Resent: a new key is mailed, the old one is dead, the role is kept.
        let path = format!("/api/v1/invitations/{}/resend", second["id"].as_str().expect("id"));
        let (status, resent) = app.post(&path, Some(&owner), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{resent}");
        assert_eq!(resent["emailed"], true);
        assert_eq!(resent["role"], "admin");
        assert_ne!(resent["key"], second["key"]);
        assert_eq!(resent["id"], second["id"], "a resent invitation keeps its id");
        let (_, list) = app.get("/api/v1/invitations", Some(&owner)).await;
        let ids: Vec<&Value> = list["data"].as_array().expect("list").iter().map(|i| &i["id"]).collect();
        assert_eq!(ids, [&second["id"]], "still one pending invitation, under the same id");
        let mailed = key_in(&app.only_mail_to("alan@example.com", "invited to join").await);
        assert_eq!(mailed, resent["key"].as_str().expect("key"));
        let res = accept(&app, second["key"].as_str().expect("key"), invitee()).await;
        assert_problem(res, StatusCode::GONE, "key_revoked").await;
        let res = accept(&app, &mailed, invitee()).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let (status, _) = app.post(&path, Some(&owner), json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "an accepted invitation is not sent again");

        // Members may not manage invitations; other businesses cannot see them.
        let (_, member) = invite(&app, &owner, json!({"email": "m@example.com", "role": "member", "send_email": false})).await;
        let res = accept(&app, member["key"].as_str().expect("key"), invitee()).await;
        let member_token = token_of(&read(res).await.1);
        let (status, _) = app.get("/api/v1/invitations", Some(&member_token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (_, pending) = invite(&app, &owner, json!({"email": "p@example.com", "send_email": false})).await;
        let other = app.signup_token("other@example.com").await;
        let path = format!("/api/v1/invitations/{}", pending["id"].as_str().expect("id"));
        let (status, _) = app.call(reqwest::Method::DELETE, &path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, list) = app.get("/api/v1/invitations", Some(&other)).await;
        assert_eq!(list["data"].as_array().map(Vec::len), Some(0));
    }
}

db_test! {
    async fn an_existing_account_accepts_while_logged_in_and_no_one_else_can(app) {
        let owner = app.signup_token("ada@example.com").await;
        let grace_signup = app.signup("grace@example.com").await;
        let grace = token_of(&grace_signup);
        let alan = app.signup_token("alan@example.com").await;
        let (_, inv) = invite(&app, &owner, json!({"email": "grace@example.com", "role": "admin", "send_email": false})).await;
        let key = inv["key"].as_str().expect("key");
        let path = format!("/api/v1/invitations/{key}/accept");

        // Without logging in: the account exists, so a second password is refused.
        assert_problem(accept(&app, key, invitee()).await, StatusCode::CONFLICT, "account_exists").await;
        // Logged in as someone else: refused, and the key still works.
        let res = app.client.post(app.url(&path)).bearer_auth(&alan).send().await.expect("send");
        assert_problem(res, StatusCode::FORBIDDEN, "invitation_for_another_email").await;

        // As Grace herself, no body and no password: she joins with her account.
        let res = app.client.post(app.url(&path)).bearer_auth(&grace).send().await.expect("send");
        let (status, joined) = read(res).await;
        assert_eq!(status, StatusCode::CREATED, "{joined}");
        assert_eq!(joined["role"], "admin");
        assert_eq!(joined["user"]["id"], grace_signup["user"]["id"]);
        let new_session = token_of(&joined);
        let (_, me) = app.get("/api/v1/me", Some(&new_session)).await;
        assert_eq!(me["business"]["id"], inv["business"]["id"], "the new session acts for the business joined");
        assert_eq!(me["role"], "admin");
        let (_, me) = app.get("/api/v1/me", Some(&grace)).await;
        assert_eq!(me["business"]["id"], grace_signup["business"]["id"], "her first session still acts for her own business");

        // Used: a replay fails; her next login lands in the business she used last.
        let res = app.client.post(app.url(&path)).bearer_auth(&grace).send().await.expect("send");
        assert_problem(res, StatusCode::GONE, "key_used").await;
        let (_, members) = app.get("/api/v1/members", Some(&owner)).await;
        assert!(members["data"].as_array().expect("list").iter().any(|m| m["email"] == "grace@example.com"));
    }
}

db_test! {
    async fn invitations_count_against_the_members_limit_and_expire_as_configured(app) {
        let owner = app.signup_token("ada@example.com").await;
        // free-trial allows 5 members: the owner and four pending invitations fill it.
        for i in 0..4 {
            let (status, body) = invite(&app, &owner, json!({"email": format!("p{i}@example.com"), "send_email": false})).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let (status, refused) = invite(&app, &owner, json!({"email": "late@example.com", "send_email": false})).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{refused}");
        assert_eq!(refused["code"], "quota_exceeded");
        assert_eq!(refused["meter"], "members");
        assert_eq!(refused["used"], 5);
        // Re-inviting a pending email replaces it, so it needs no new seat.
        let (status, _) = invite(&app, &owner, json!({"email": "p0@example.com", "send_email": false})).await;
        assert_eq!(status, StatusCode::CREATED);

        let short = TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), |c| c.invitation_ttl_days = 2).await;
        let (_, inv) = invite(&short, &owner, json!({"email": "p1@example.com", "send_email": false})).await;
        let expires: chrono::DateTime<chrono::Utc> = inv["expires_at"].as_str().expect("time").parse().expect("rfc3339");
        assert_eq!(expires - start_time(), Duration::days(2), "the clock has not moved yet");
        app.clock.advance(Duration::days(2));
        let res = accept(&short, inv["key"].as_str().expect("key"), invitee()).await;
        assert_problem(res, StatusCode::GONE, "key_expired").await;
    }
}

/// Invites `email` as `role` without mail; the invitation's key.
async fn key_for(app: &TestApp, token: &str, email: &str, role: &str) -> String {
    let (status, inv) = invite(
        app,
        token,
        json!({"email": email, "role": role, "send_email": false}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    inv["key"].as_str().expect("key").to_owned()
}

/// The status and code of looking up an invitation key.
async fn looked_up(app: &TestApp, key: &str) -> (StatusCode, Value) {
    let (status, body) = app.get(&format!("/api/v1/invitations/{key}"), None).await;
    (status, body["code"].clone())
}

async fn user_id(app: &TestApp, token: &str) -> String {
    let (_, me) = app.get("/api/v1/me", Some(token)).await;
    me["user"]["id"].as_str().expect("user id").to_owned()
}

/// The business's `invitation.revoked` entries, oldest first: (invited email, actor id, reason).
async fn revocations(app: &TestApp, owner: &str) -> Vec<(String, String, String)> {
    let (status, page) = app
        .get("/api/v1/audit-log?action=invitation.revoked", Some(owner))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut found: Vec<_> = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&e["details"]["email"]),
                text(&e["actor"]["id"]),
                text(&e["details"]["reason"]),
            )
        })
        .collect();
    found.reverse();
    found
}

db_test! {
    async fn removing_demoting_or_losing_an_admin_revokes_the_invitations_they_sent(app) {
        let owner = app.signup_token("owner@example.com").await;
        let owner_id = user_id(&app, &owner).await;
        // In turns: the trial's five seats count pending invitations too.
        let (removed, removed_member) = app.join(&owner, "removed@example.com", "admin").await;
        let (demoted, demoted_member) = app.join(&owner, "demoted@example.com", "admin").await;
        let from_removed = key_for(&app, &removed, "a1@example.com", "admin").await;
        let from_demoted = key_for(&app, &demoted, "a2@example.com", "admin").await;
        let (status, _) = app.call(Method::DELETE, &format!("/api/v1/members/{removed_member}"), Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let member_from_demoted = key_for(&app, &demoted, "m2@example.com", "member").await;
        let (status, _) = app.call(Method::PATCH, &format!("/api/v1/members/{demoted_member}"), Some(&owner), Some(json!({"role": "member"}))).await;
        assert_eq!(status, StatusCode::OK);
        let (leaver, leaver_member) = app.join(&owner, "leaver@example.com", "admin").await;
        let leaver_id = user_id(&app, &leaver).await;
        let from_leaver = key_for(&app, &leaver, "a3@example.com", "admin").await;
        let from_owner = key_for(&app, &owner, "o@example.com", "admin").await;
        let (status, _) = app.call(Method::DELETE, &format!("/api/v1/members/{leaver_member}"), Some(&leaver), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        for key in [&from_removed, &from_demoted, &member_from_demoted, &from_leaver] {
            assert_eq!(looked_up(&app, key).await, (StatusCode::GONE, json!("key_revoked")));
            assert_problem(accept(&app, key, invitee()).await, StatusCode::GONE, "key_revoked").await;
        }
        let (_, pending) = app.get("/api/v1/invitations", Some(&owner)).await;
        assert_eq!(pending["data"].as_array().map(Vec::len), Some(1), "{pending}");
        assert_eq!(pending["data"][0]["email"], "o@example.com");
        let by = |email: &str, actor: &str, reason: &str| (email.to_owned(), actor.to_owned(), reason.to_owned());
        assert_eq!(
            revocations(&app, &owner).await,
            [
                by("a1@example.com", &owner_id, "inviter_removed"),
                by("a2@example.com", &owner_id, "inviter_role_changed"),
                by("m2@example.com", &owner_id, "inviter_role_changed"),
                by("a3@example.com", &leaver_id, "inviter_left"),
            ]
        );

        // Handing ownership over leaves the old owner an admin, who may still offer `admin`.
        let (status, _) = app.post(&format!("/api/v1/members/{demoted_member}/transfer-ownership"), Some(&owner), json!({})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(looked_up(&app, &from_owner).await.0, StatusCode::OK);
        let (status, joined) = read(accept(&app, &from_owner, invitee()).await).await;
        assert_eq!(status, StatusCode::CREATED, "{joined}");
        assert_eq!(joined["role"], "admin");
    }
}

db_test! {
    async fn an_invitation_is_accepted_only_while_its_sender_may_still_send_it(app) {
        let owner = app.signup_token("owner@example.com").await;
        let (admin, admin_member) = app.join(&owner, "admin@example.com", "admin").await;
        let key = key_for(&app, &admin, "new@example.com", "admin").await;
        let (status, _) = app.call(Method::PATCH, &format!("/api/v1/members/{admin_member}"), Some(&owner), Some(json!({"role": "member"}))).await;
        assert_eq!(status, StatusCode::OK);
        // As if the invitation had outlived the demotion (sent before revocation existed).
        let unrevoke = "UPDATE one_time_keys SET revoked_at = NULL WHERE revoked_at IS NOT NULL";
        assert_eq!(app.exec(unrevoke).await, 1);
        assert_eq!(looked_up(&app, &key).await, (StatusCode::GONE, json!("key_revoked")));
        assert_problem(accept(&app, &key, invitee()).await, StatusCode::GONE, "key_revoked").await;

        // Once the sender may offer the role again, it works.
        let (status, _) = app.call(Method::PATCH, &format!("/api/v1/members/{admin_member}"), Some(&owner), Some(json!({"role": "admin"}))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, joined) = read(accept(&app, &key, invitee()).await).await;
        assert_eq!(status, StatusCode::CREATED, "{joined}");
        assert_eq!(joined["role"], "admin");
    }
}

db_test! {
    async fn a_deactivated_user_s_invitations_stop_working(app) {
        let owner = app.signup_token("owner@example.com").await;
        let (admin, _) = app.join(&owner, "admin@example.com", "admin").await;
        let admin_id = user_id(&app, &admin).await;
        let key = key_for(&app, &admin, "new@example.com", "admin").await;
        app.signup("staff@example.com").await;
        saaskit::billing::admin::set_staff(&app.app, "staff@example.com", true).await.expect("make staff");
        let staff = app.login_token("staff@example.com").await;
        let (status, _) = app.post(&format!("/api/v1/admin/users/{admin_id}/deactivate"), Some(&staff), json!({})).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(looked_up(&app, &key).await, (StatusCode::GONE, json!("key_revoked")));
        let revoked = revocations(&app, &owner).await;
        assert_eq!(revoked.len(), 1, "{revoked:?}");
        assert_eq!((revoked[0].0.as_str(), revoked[0].2.as_str()), ("new@example.com", "inviter_deactivated"));
        // Even if it were not revoked, the sender's account is off.
        assert_eq!(app.exec("UPDATE one_time_keys SET revoked_at = NULL WHERE revoked_at IS NOT NULL").await, 1);
        assert_problem(accept(&app, &key, invitee()).await, StatusCode::GONE, "key_revoked").await;
    }
}

db_test! {
    async fn names_in_an_invitation_mail_are_quoted_and_link_nowhere(app) {
        let (status, signed_up) = app
            .post(
                "/api/v1/signup",
                None,
                json!({"business": {"name": "http://evil.example/login"}, "email": "ada@example.com",
                       "first_name": "Visit evil.example.com now", "last_name": "", "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{signed_up}");
        let (status, _) = invite(&app, &token_of(&signed_up), json!({"email": "grace@example.com"})).await;
        assert_eq!(status, StatusCode::CREATED);
        let mail = app.only_mail_to("grace@example.com", "invited to join").await;
        let subject = mail.lines().find(|l| l.starts_with("Subject: ")).unwrap_or_default();
        assert_eq!(subject, "Subject: You are invited to join a business", "no chosen name in the subject");
        assert!(
            mail.contains("“Visit evil[.]example[.]com now” invited you to join “http[:]//evil[.]example/login” as member."),
            "{mail}"
        );
        for linkable in ["evil.example", "http://evil", "://evil"] {
            assert!(!mail.contains(linkable), "{linkable:?} in {mail}");
        }
        // Our own link is intact.
        let key = key_in(&mail);
        assert!(mail.contains(&format!("http://localhost:8000/invitations/accept?key={key}")), "{mail}");
    }
}
