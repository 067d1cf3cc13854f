//! API keys and bots: the credentials that are not a person's login. Keys carry the `sdk` scope
//! and belong to the business; rotation keeps the id and may keep the old secret alive for a
//! while; anyone may kill a leaked secret; bots are members with a token of given scopes.

use chrono::Duration;
use reqwest::{Method, StatusCode};
use saaskit::db::Db;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;

use crate::db_test;
use crate::helpers::*;

/// Sends a request and returns the raw response, for [`assert_problem`].
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("request reaches the server")
}

/// Creates an API key named `name` and returns the whole answer.
async fn create_key(app: &TestApp, token: &str, name: &str) -> Value {
    let (status, key) = app
        .post("/api/v1/api-keys", Some(token), json!({ "name": name }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    key
}

fn str_of<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {body}"))
}

/// The status a token gets on an SDK endpoint: 200 while it works, 401 once it does not.
async fn sdk_status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/api/v1/entitlements", Some(token)).await.0
}

async fn assert_dead(app: &TestApp, token: &str) {
    let res = send(app, Method::GET, "/api/v1/entitlements", Some(token), None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

async fn create_bot(app: &TestApp, token: &str, name: &str, scopes: Value) -> Value {
    let (status, bot) = app
        .post(
            "/api/v1/bots",
            Some(token),
            json!({ "name": name, "scopes": scopes }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bot}");
    bot
}

/// Invites `email` into the owner's business with `role`, accepts, and returns their session.
async fn join_as(app: &TestApp, owner: &str, email: &str, role: &str) -> String {
    let (status, inv) = app
        .post(
            "/api/v1/invitations",
            Some(owner),
            json!({ "email": email, "role": role, "send_email": false }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    let key = str_of(&inv, "key");
    let (status, joined) = app
        .post(
            &format!("/api/v1/invitations/{key}/accept"),
            None,
            json!({ "password": "invited passphrase", "first_name": "Grace", "last_name": "Hopper" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    assert_eq!(joined["role"], role);
    token_of(&joined)
}

/// Every text or byte value stored in the `tokens` table, whatever its column.
async fn every_stored_token_value(db: &Db) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    macro_rules! collect {
        ($pool:expr) => {
            for row in sqlx::query("SELECT * FROM tokens")
                .fetch_all($pool)
                .await
                .expect("read tokens")
            {
                for i in 0..row.len() {
                    if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                        values.push(text.into_bytes());
                    } else if let Ok(Some(bytes)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                        values.push(bytes);
                    }
                }
            }
        };
    }
    match db {
        Db::Sqlite(pool) => collect!(pool),
        Db::Postgres(pool) => collect!(pool),
    }
    values
}

/// The `hash` column of the token with this id.
async fn stored_hash(db: &Db, id: &str) -> Vec<u8> {
    let id: uuid::Uuid = id.parse().expect("a UUID");
    let sql = "SELECT hash FROM tokens WHERE id = $1";
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await,
    }
    .expect("the key's row")
}

/// `(revoked_reason, leak_reported_ip)` of the token whose secret is `secret`.
async fn leak_record(db: &Db, secret: &str) -> (Option<String>, Option<String>) {
    let hash = Sha256::digest(secret.as_bytes()).to_vec();
    let sql = "SELECT revoked_reason, leak_reported_ip FROM tokens WHERE hash = $1";
    match db {
        Db::Sqlite(p) => sqlx::query_as(sql).bind(hash).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_as(sql).bind(hash).fetch_one(p).await,
    }
    .expect("the secret's row")
}

async fn report_leak(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.post("/api/v1/api-keys/revoke-leaked", None, body).await
}

db_test! {
    async fn creating_a_key_shows_its_secret_once_and_stores_only_its_digest(app) {
        let owner = app.signup_token("ada@example.com").await;
        let created = create_key(&app, &owner, "Production SDK").await;
        let fields: Vec<&str> = created.as_object().expect("an object").keys().map(String::as_str).collect();
        for field in ["id", "name", "prefix", "key", "scopes", "created_at"] {
            assert!(fields.contains(&field), "no {field} in {created}");
        }
        assert_eq!(created["name"], "Production SDK");
        assert_eq!(created["scopes"], json!(["sdk"]));
        assert_eq!(created["created_at"], "2026-03-01T12:00:00Z");
        assert!(created.get("previous_key_expires_at").is_none(), "{created}");
        let key = str_of(&created, "key");
        assert!(key.starts_with("sk_live_"), "{key}");
        assert_eq!(key.len(), "sk_live_".len() + 43, "256 bits, base64url: {key}");
        assert_eq!(created["prefix"], key[..12]);

        let hash = stored_hash(&app.db, str_of(&created, "id")).await;
        assert_eq!(hash.len(), 32);
        assert_eq!(hash, Sha256::digest(key.as_bytes()).to_vec(), "the SHA-256 of the key");
        let secret_part = &key["sk_live_".len()..];
        let stored = every_stored_token_value(&app.db).await;
        assert!(
            stored.iter().any(|v| v == str_of(&created, "prefix").as_bytes()) && stored.contains(&hash),
            "the check reads both text and byte columns"
        );
        for value in stored {
            assert!(
                !value.windows(secret_part.len()).any(|w| w == secret_part.as_bytes()),
                "a column holds the key: {}",
                String::from_utf8_lossy(&value)
            );
        }

        // Two keys never share a secret.
        let other = create_key(&app, &owner, "Staging SDK").await;
        assert_ne!(other["key"], created["key"]);
        assert_ne!(other["id"], created["id"]);
    }
}

db_test! {
    async fn a_key_name_is_required_and_sane(app) {
        let owner = app.signup_token("ada@example.com").await;
        let before = app.count("tokens").await;
        for bad in [json!({}), json!({"name": ""}), json!({"name": "   "}), json!({"name": "a\u{0}b"}), json!({"name": "x".repeat(101)})] {
            let res = send(&app, Method::POST, "/api/v1/api-keys", Some(&owner), Some(bad.clone())).await;
            let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
            assert_eq!(body["errors"][0]["field"], "name", "{bad}: {body}");
        }
        assert_eq!(app.count("tokens").await, before);
    }
}

db_test! {
    async fn listing_keys_never_shows_a_secret_and_records_last_use(app) {
        let owner = app.signup_token("ada@example.com").await;
        let first = create_key(&app, &owner, "first").await;
        app.clock.advance(Duration::seconds(1));
        let second = create_key(&app, &owner, "second").await;

        let (status, list) = app.get("/api/v1/api-keys", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let data = list["data"].as_array().expect("data");
        assert_eq!(data.len(), 2, "{list}");
        assert_eq!(data[0]["id"], second["id"], "newest first");
        assert_eq!(data[1]["id"], first["id"]);
        for (item, created) in data.iter().zip([&second, &first]) {
            assert_eq!(item["name"], created["name"]);
            assert_eq!(item["prefix"], created["prefix"]);
            assert_eq!(item["created_at"], created["created_at"]);
            assert_eq!(item["scopes"], json!(["sdk"]));
            assert!(item["last_used_at"].is_null(), "{item}");
            assert!(item.get("last_used_at").is_some(), "{item}");
            assert!(item.get("key").is_none(), "{item}");
        }
        let text = list.to_string();
        for created in [&first, &second] {
            let key = str_of(created, "key");
            assert!(!text.contains(&key[12..]), "the secret is listed: {text}");
        }

        app.clock.advance(Duration::minutes(5));
        assert_eq!(sdk_status(&app, str_of(&first, "key")).await, StatusCode::OK);
        let (_, list) = app.get("/api/v1/api-keys", Some(&owner)).await;
        assert_eq!(list["data"][1]["id"], first["id"]);
        assert_eq!(list["data"][1]["last_used_at"], "2026-03-01T12:05:01Z");
        assert!(list["data"][0]["last_used_at"].is_null(), "the other key was not used: {list}");
    }
}

db_test! {
    async fn an_api_key_works_on_sdk_endpoints_and_nowhere_on_the_dashboard(app) {
        let owner = app.signup_token("ada@example.com").await;
        let created = create_key(&app, &owner, "sdk").await;
        let key = str_of(&created, "key");
        let id = str_of(&created, "id");

        let (status, ent) = app.get("/api/v1/entitlements", Some(key)).await;
        assert_eq!(status, StatusCode::OK, "{ent}");
        assert_eq!(ent["plan"], "free-trial");
        assert_eq!(ent["live"], true);
        let (status, used) = app.post("/api/v1/usage", Some(key), json!({"meter": "api_calls", "quantity": 1})).await;
        assert_eq!(status, StatusCode::OK, "{used}");
        assert_eq!(used["meter"], "api_calls");
        assert_eq!(used["used"], 1);

        let dashboard = [
            (Method::GET, "/api/v1/me".to_owned(), None),
            (Method::GET, "/api/v1/api-keys".to_owned(), None),
            (Method::POST, "/api/v1/api-keys".to_owned(), Some(json!({"name": "another"}))),
            (Method::DELETE, format!("/api/v1/api-keys/{id}"), None),
            (Method::POST, format!("/api/v1/api-keys/{id}/rotate"), None),
            (Method::GET, "/api/v1/subscription".to_owned(), None),
            (Method::GET, "/api/v1/usage".to_owned(), None),
            (Method::GET, "/api/v1/applications".to_owned(), None),
            (Method::POST, "/api/v1/applications".to_owned(), Some(json!({"name": "App"}))),
            (Method::GET, "/api/v1/bots".to_owned(), None),
            (Method::POST, "/api/v1/bots".to_owned(), Some(json!({"name": "bot", "scopes": ["sdk"]}))),
            (Method::POST, "/api/v1/invitations".to_owned(), Some(json!({"email": "x@example.com"}))),
        ];
        let before = app.counts().await;
        for (method, path, body) in dashboard {
            let res = send(&app, method.clone(), &path, Some(key), body).await;
            let problem = assert_problem(res, StatusCode::FORBIDDEN, "insufficient_scope").await;
            assert!(problem["required_scopes"].is_array(), "{method} {path}: {problem}");
        }
        let res = send(&app, Method::GET, "/api/v1/me", Some(key), None).await;
        let problem = assert_problem(res, StatusCode::FORBIDDEN, "insufficient_scope").await;
        assert_eq!(problem["required_scopes"], json!(["dashboard:read"]));
        assert_eq!(app.counts().await, before, "nothing was written");
        assert_eq!(sdk_status(&app, key).await, StatusCode::OK, "the key was neither revoked nor rotated");
    }
}

db_test! {
    async fn a_deleted_key_stops_working_at_once(app) {
        let owner = app.signup_token("ada@example.com").await;
        let created = create_key(&app, &owner, "doomed").await;
        let kept = create_key(&app, &owner, "kept").await;
        let key = str_of(&created, "key");
        let id = str_of(&created, "id");
        assert_eq!(sdk_status(&app, key).await, StatusCode::OK);

        app.clock.advance(Duration::minutes(1));
        let (status, body) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{id}"), Some(&owner), None).await;
        assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
        assert_dead(&app, key).await;
        let res = send(&app, Method::POST, "/api/v1/usage", Some(key), Some(json!({"meter": "api_calls"}))).await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        assert_eq!(sdk_status(&app, str_of(&kept, "key")).await, StatusCode::OK, "only that key");

        let res = send(&app, Method::DELETE, &format!("/api/v1/api-keys/{id}"), Some(&owner), None).await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        for path in [format!("/api/v1/api-keys/{}", uuid::Uuid::now_v7()), "/api/v1/api-keys/not-a-uuid".to_owned()] {
            let res = send(&app, Method::DELETE, &path, Some(&owner), None).await;
            assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        }

        let (_, list) = app.get("/api/v1/api-keys", Some(&owner)).await;
        let ids: Vec<&Value> = list["data"].as_array().expect("data").iter().map(|k| &k["id"]).collect();
        assert_eq!(ids, vec![&kept["id"]], "{list}");

        let (status, all) = app.get("/api/v1/api-keys?include_revoked=true", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{all}");
        let data = all["data"].as_array().expect("data");
        assert_eq!(data.len(), 2, "{all}");
        let revoked = data.iter().find(|k| k["id"] == created["id"]).expect("the revoked key is listed");
        assert_eq!(revoked["revoked_at"], "2026-03-01T12:01:00Z");
        assert_eq!(revoked["revoked_reason"], "revoked");
        let live = data.iter().find(|k| k["id"] == kept["id"]).expect("the live key is listed");
        assert!(live["revoked_at"].is_null(), "{live}");

        let res = send(&app, Method::GET, "/api/v1/api-keys?include_revoked=maybe", Some(&owner), None).await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}

db_test! {
    async fn rotating_a_key_without_overlap_kills_the_old_secret_at_once(app) {
        let owner = app.signup_token("ada@example.com").await;
        let created = create_key(&app, &owner, "rotated").await;
        let old = str_of(&created, "key").to_owned();
        let id = str_of(&created, "id");
        assert_eq!(sdk_status(&app, &old).await, StatusCode::OK);

        app.clock.advance(Duration::minutes(1));
        let (status, rotated) = app.call(Method::POST, &format!("/api/v1/api-keys/{id}/rotate"), Some(&owner), None).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        assert_eq!(rotated["id"], created["id"]);
        assert_eq!(rotated["name"], "rotated");
        assert_eq!(rotated["scopes"], json!(["sdk"]));
        assert_eq!(rotated["created_at"], created["created_at"]);
        assert!(rotated["previous_key_expires_at"].is_null(), "{rotated}");
        let new = str_of(&rotated, "key");
        assert!(new.starts_with("sk_live_"), "{new}");
        assert_ne!(new, old);
        assert_eq!(rotated["prefix"], new[..12]);

        assert_dead(&app, &old).await;
        assert_eq!(sdk_status(&app, new).await, StatusCode::OK);

        // One key, with the new prefix; the old secret is not a key of its own.
        let (_, list) = app.get("/api/v1/api-keys?include_revoked=true", Some(&owner)).await;
        let data = list["data"].as_array().expect("data");
        assert_eq!(data.len(), 1, "{list}");
        assert_eq!(data[0]["id"], created["id"]);
        assert_eq!(data[0]["prefix"], rotated["prefix"]);
        assert!(data[0]["revoked_at"].is_null(), "{list}");

        // An explicit zero overlap is the same, and rotating an unknown key is a 404.
        let (status, again) = app.post(&format!("/api/v1/api-keys/{id}/rotate"), Some(&owner), json!({"overlap_seconds": 0})).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_dead(&app, new).await;
        assert_eq!(sdk_status(&app, str_of(&again, "key")).await, StatusCode::OK);
        let res = send(&app, Method::POST, &format!("/api/v1/api-keys/{}/rotate", uuid::Uuid::now_v7()), Some(&owner), None).await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
}

db_test! {
    async fn rotating_with_an_overlap_keeps_the_old_secret_alive_until_it_ends(app) {
        let owner = app.signup_token("ada@example.com").await;
        let created = create_key(&app, &owner, "rotated").await;
        let old = str_of(&created, "key").to_owned();
        let id = str_of(&created, "id");

        let (status, rotated) = app.post(&format!("/api/v1/api-keys/{id}/rotate"), Some(&owner), json!({"overlap_seconds": 3600})).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        assert_eq!(rotated["id"], created["id"]);
        assert_eq!(rotated["previous_key_expires_at"], "2026-03-01T13:00:00Z");
        let new = str_of(&rotated, "key");
        assert_ne!(new, old);

        assert_eq!(sdk_status(&app, &old).await, StatusCode::OK, "the old secret works during the overlap");
        assert_eq!(sdk_status(&app, new).await, StatusCode::OK);
        let (status, _) = app.post("/api/v1/usage", Some(&old), json!({"meter": "api_calls"})).await;
        assert_eq!(status, StatusCode::OK);

        // Still one key in the listing, during the overlap as after it.
        let (_, list) = app.get("/api/v1/api-keys?include_revoked=true", Some(&owner)).await;
        assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(list["data"][0]["prefix"], rotated["prefix"]);

        app.clock.advance(Duration::seconds(3599));
        assert_eq!(sdk_status(&app, &old).await, StatusCode::OK, "a second before the end");
        app.clock.advance(Duration::seconds(2));
        assert_dead(&app, &old).await;
        assert_eq!(sdk_status(&app, new).await, StatusCode::OK);
        let (_, list) = app.get("/api/v1/api-keys?include_revoked=true", Some(&owner)).await;
        assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    }
}

db_test! {
    async fn deleting_a_key_during_an_overlap_kills_both_secrets(app) {
        let owner = app.signup_token("ada@example.com").await;
        let created = create_key(&app, &owner, "rotated").await;
        let old = str_of(&created, "key").to_owned();
        let id = str_of(&created, "id");
        let (status, rotated) = app.post(&format!("/api/v1/api-keys/{id}/rotate"), Some(&owner), json!({"overlap_seconds": 3600})).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        let new = str_of(&rotated, "key");
        assert_eq!(sdk_status(&app, &old).await, StatusCode::OK);

        let (status, _) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{id}"), Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_dead(&app, new).await;
        assert_dead(&app, &old).await;
        let (_, list) = app.get("/api/v1/api-keys?include_revoked=true", Some(&owner)).await;
        let data = list["data"].as_array().expect("data");
        assert_eq!(data.len(), 1, "{list}");
        assert!(data[0]["revoked_at"].is_string(), "{list}");
    }
}

db_test! {
    async fn a_rotation_overlap_is_at_most_seven_days(app) {
        let owner = app.signup_token("ada@example.com").await;
        let created = create_key(&app, &owner, "rotated").await;
        let key = str_of(&created, "key").to_owned();
        let id = str_of(&created, "id");
        let path = format!("/api/v1/api-keys/{id}/rotate");

        let res = send(&app, Method::POST, &path, Some(&owner), Some(json!({"overlap_seconds": 7 * 24 * 3600 + 1}))).await;
        let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "overlap_seconds", "{body}");
        for bad in [json!({"overlap_seconds": -1}), json!({"overlap_seconds": "soon"})] {
            let res = send(&app, Method::POST, &path, Some(&owner), Some(bad)).await;
            assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        }
        assert_eq!(sdk_status(&app, &key).await, StatusCode::OK, "a refused rotation changes nothing");

        let (status, rotated) = app.post(&path, Some(&owner), json!({"overlap_seconds": 7 * 24 * 3600})).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        assert_eq!(rotated["previous_key_expires_at"], "2026-03-08T12:00:00Z");
        assert_eq!(sdk_status(&app, &key).await, StatusCode::OK);
    }
}

db_test! {
    async fn anyone_holding_a_leaked_key_can_revoke_it(app) {
        let owner = app.signup_token("ada@example.com").await;
        let created = create_key(&app, &owner, "leaky").await;
        let key = str_of(&created, "key").to_owned();
        assert_eq!(sdk_status(&app, &key).await, StatusCode::OK);

        app.clock.advance(Duration::minutes(2));
        let (status, body) = report_leak(&app, json!({"key": key})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"revoked": true}));
        assert_dead(&app, &key).await;
        let (reason, ip) = leak_record(&app.db, &key).await;
        assert_eq!(reason.as_deref(), Some("leaked"));
        assert_eq!(ip.as_deref(), Some("127.0.0.1"), "where the report came from");

        let (status, body) = report_leak(&app, json!({"key": key})).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"revoked": false})), "already dead");
        let random = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
        for unknown in [random.as_str(), "not a secret at all"] {
            let (status, body) = report_leak(&app, json!({"key": unknown})).await;
            assert_eq!((status, body), (StatusCode::OK, json!({"revoked": false})), "{unknown}");
        }
        for bad in [json!({}), json!({"key": ""}), json!({"key": "x".repeat(257)})] {
            let res = send(&app, Method::POST, "/api/v1/api-keys/revoke-leaked", None, Some(bad)).await;
            let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
            assert_eq!(problem["errors"][0]["field"], "key", "{problem}");
        }

        let (_, list) = app.get("/api/v1/api-keys?include_revoked=true", Some(&owner)).await;
        assert_eq!(list["data"][0]["revoked_reason"], "leaked", "{list}");
        assert_eq!(list["data"][0]["revoked_at"], "2026-03-01T12:02:00Z");
        let (_, live) = app.get("/api/v1/api-keys", Some(&owner)).await;
        assert_eq!(live["data"], json!([]));
    }
}

db_test! {
    async fn a_leaked_session_token_can_be_revoked_too(app) {
        let session = app.signup_token("ada@example.com").await;
        assert!(session.starts_with("sks_"), "{session}");
        let (status, body) = report_leak(&app, json!({"key": session})).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"revoked": true})));
        let res = send(&app, Method::GET, "/api/v1/me", Some(&session), None).await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        let (reason, ip) = leak_record(&app.db, &session).await;
        assert_eq!(reason.as_deref(), Some("leaked"));
        assert!(ip.is_some());
    }
}

db_test! {
    async fn members_cannot_manage_keys_or_bots_but_admins_can(app) {
        let owner = app.signup_token("ada@example.com").await;
        let key = create_key(&app, &owner, "owner's").await;
        let key_id = str_of(&key, "id");
        let bot = create_bot(&app, &owner, "owner's bot", json!(["sdk"])).await;
        let bot_id = str_of(&bot, "id");
        let member = join_as(&app, &owner, "member@example.com", "member").await;
        let admin = join_as(&app, &owner, "admin@example.com", "admin").await;

        let before = app.counts().await;
        let routes = [
            (Method::POST, "/api/v1/api-keys".to_owned(), Some(json!({"name": "mine"}))),
            (Method::GET, "/api/v1/api-keys".to_owned(), None),
            (Method::DELETE, format!("/api/v1/api-keys/{key_id}"), None),
            (Method::POST, format!("/api/v1/api-keys/{key_id}/rotate"), None),
            (Method::POST, "/api/v1/bots".to_owned(), Some(json!({"name": "mine", "scopes": ["sdk"]}))),
            (Method::GET, "/api/v1/bots".to_owned(), None),
            (Method::DELETE, format!("/api/v1/bots/{bot_id}"), None),
        ];
        for (method, path, body) in routes {
            let res = send(&app, method.clone(), &path, Some(&member), body).await;
            assert_problem(res, StatusCode::FORBIDDEN, "forbidden_role").await;
        }
        assert_eq!(app.counts().await, before, "a member changed nothing");
        assert_eq!(sdk_status(&app, str_of(&key, "key")).await, StatusCode::OK);
        assert_eq!(sdk_status(&app, str_of(&bot, "token")).await, StatusCode::OK);

        // An admin manages the business's keys and bots, whoever created them.
        let (status, list) = app.get("/api/v1/api-keys", Some(&admin)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["data"][0]["id"], key["id"], "the business's key: {list}");
        let admins_key = create_key(&app, &admin, "admin's").await;
        let (status, rotated) = app.call(Method::POST, &format!("/api/v1/api-keys/{key_id}/rotate"), Some(&admin), None).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        let (status, _) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{key_id}"), Some(&admin), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_dead(&app, str_of(&rotated, "key")).await;
        let (status, _) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{}", str_of(&admins_key, "id")), Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "the owner deletes the admin's key");

        let admins_bot = create_bot(&app, &admin, "admin's bot", json!(["dashboard:read"])).await;
        let (status, bots) = app.get("/api/v1/bots", Some(&admin)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(bots["data"].as_array().map(Vec::len), Some(2), "{bots}");
        for id in [bot_id, str_of(&admins_bot, "id")] {
            let (status, _) = app.call(Method::DELETE, &format!("/api/v1/bots/{id}"), Some(&admin), None).await;
            assert_eq!(status, StatusCode::NO_CONTENT);
        }
        assert_dead(&app, str_of(&bot, "token")).await;
    }
}

db_test! {
    async fn a_business_cannot_touch_another_business_key(app) {
        let owner_a = app.signup_token("ada@example.com").await;
        let owner_b = app.signup_token("bob@example.com").await;
        let key_a = create_key(&app, &owner_a, "A's").await;
        let id_a = str_of(&key_a, "id");
        let bot_a = create_bot(&app, &owner_a, "A's bot", json!(["sdk"])).await;

        let res = send(&app, Method::DELETE, &format!("/api/v1/api-keys/{id_a}"), Some(&owner_b), None).await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        let res = send(&app, Method::POST, &format!("/api/v1/api-keys/{id_a}/rotate"), Some(&owner_b), None).await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        let res = send(&app, Method::POST, &format!("/api/v1/api-keys/{id_a}/rotate"), Some(&owner_b), Some(json!({"overlap_seconds": 60}))).await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        let res = send(&app, Method::DELETE, &format!("/api/v1/bots/{}", str_of(&bot_a, "id")), Some(&owner_b), None).await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

        let (_, keys_b) = app.get("/api/v1/api-keys?include_revoked=true", Some(&owner_b)).await;
        assert_eq!(keys_b["data"], json!([]));
        let (_, bots_b) = app.get("/api/v1/bots", Some(&owner_b)).await;
        assert_eq!(bots_b["data"], json!([]));
        assert_eq!(sdk_status(&app, str_of(&key_a, "key")).await, StatusCode::OK, "A's key is untouched");
        assert_eq!(sdk_status(&app, str_of(&bot_a, "token")).await, StatusCode::OK);
        let (_, keys_a) = app.get("/api/v1/api-keys", Some(&owner_a)).await;
        assert_eq!(keys_a["data"][0]["prefix"], key_a["prefix"], "not rotated: {keys_a}");

        // A's key speaks for A's business only.
        let (_, ent) = app.get("/api/v1/entitlements", Some(str_of(&key_a, "key"))).await;
        let (_, ent_b) = app.get("/api/v1/entitlements", Some(&owner_b)).await;
        let (status, _) = app.post("/api/v1/usage", Some(str_of(&key_a, "key")), json!({"meter": "api_calls", "quantity": 7})).await;
        assert_eq!(status, StatusCode::OK);
        let (_, usage_a) = app.get("/api/v1/usage", Some(&owner_a)).await;
        let (_, usage_b) = app.get("/api/v1/usage", Some(&owner_b)).await;
        assert_eq!(usage_a["meters"]["api_calls"]["used"], 7, "{usage_a}");
        assert!(usage_b["meters"].get("api_calls").is_none(), "{usage_b}");
        assert_eq!(ent["plan"], ent_b["plan"]);
    }
}

db_test! {
    async fn a_bot_is_a_member_with_a_token_of_the_scopes_it_was_given(app) {
        let owner = app.signup_token("ada@example.com").await;
        let sdk = create_bot(&app, &owner, "CI", json!(["sdk"])).await;
        let fields: Vec<&str> = sdk.as_object().expect("an object").keys().map(String::as_str).collect();
        for field in ["id", "user_id", "name", "role", "scopes", "token_prefix", "token"] {
            assert!(fields.contains(&field), "no {field} in {sdk}");
        }
        assert_eq!(sdk["name"], "CI");
        assert_eq!(sdk["role"], "bot");
        assert_eq!(sdk["scopes"], json!(["sdk"]));
        let token = str_of(&sdk, "token");
        assert!(token.starts_with("skb_"), "{token}");
        assert_eq!(sdk["token_prefix"], token[..12]);
        assert_ne!(sdk["id"], sdk["user_id"], "id is the member's, user_id the user's");

        // sdk: the SDK's endpoints, not the dashboard.
        assert_eq!(sdk_status(&app, token).await, StatusCode::OK);
        let (status, used) = app.post("/api/v1/usage", Some(token), json!({"meter": "api_calls", "quantity": 1})).await;
        assert_eq!(status, StatusCode::OK, "{used}");
        let res = send(&app, Method::GET, "/api/v1/me", Some(token), None).await;
        assert_problem(res, StatusCode::FORBIDDEN, "insufficient_scope").await;

        // dashboard:read: the dashboard's reads, no writes, no SDK.
        let reader = create_bot(&app, &owner, "Reporter", json!(["dashboard:read"])).await;
        let reader_token = str_of(&reader, "token");
        let (status, me) = app.get("/api/v1/me", Some(reader_token)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["role"], "bot");
        assert_eq!(me["scopes"], json!(["dashboard:read"]));
        assert_eq!(me["user"]["id"], reader["user_id"]);
        assert_eq!(me["user"]["email"], format!("bot-{}@bots.invalid", str_of(&reader, "user_id")));
        let (status, apps) = app.get("/api/v1/applications", Some(reader_token)).await;
        assert_eq!(status, StatusCode::OK, "{apps}");
        let res = send(&app, Method::POST, "/api/v1/applications", Some(reader_token), Some(json!({"name": "App"}))).await;
        assert_problem(res, StatusCode::FORBIDDEN, "insufficient_scope").await;
        let res = send(&app, Method::POST, "/api/v1/usage", Some(reader_token), Some(json!({"meter": "api_calls"}))).await;
        assert_problem(res, StatusCode::FORBIDDEN, "insufficient_scope").await;
        assert_eq!(app.count("applications").await, 0);

        // dashboard: the dashboard's writes too (but a bot manages nothing).
        let writer = create_bot(&app, &owner, "Provisioner", json!(["dashboard"])).await;
        let writer_token = str_of(&writer, "token");
        let (status, created) = app.post("/api/v1/applications", Some(writer_token), json!({"name": "App"})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(app.count("applications").await, 1);
        let res = send(&app, Method::POST, "/api/v1/api-keys", Some(writer_token), Some(json!({"name": "k"}))).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden_role").await;
        let res = send(&app, Method::POST, "/api/v1/bots", Some(writer_token), Some(json!({"name": "b", "scopes": ["sdk"]}))).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden_role").await;
    }
}

db_test! {
    async fn bot_scopes_must_be_known_and_not_empty(app) {
        let owner = app.signup_token("ada@example.com").await;
        let before = app.counts().await;
        for bad in [
            json!({"name": "b", "scopes": ["admin"]}),
            json!({"name": "b", "scopes": ["sdk", "admin"]}),
            json!({"name": "b", "scopes": ["*"]}),
            json!({"name": "b", "scopes": []}),
            json!({"name": "b"}),
        ] {
            let res = send(&app, Method::POST, "/api/v1/bots", Some(&owner), Some(bad.clone())).await;
            let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
            assert_eq!(problem["errors"][0]["field"], "scopes", "{bad}: {problem}");
        }
        let res = send(&app, Method::POST, "/api/v1/bots", Some(&owner), Some(json!({"scopes": ["sdk"]}))).await;
        let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "name", "{problem}");
        assert_eq!(app.counts().await, before, "no bot was half-made");
    }
}

db_test! {
    async fn a_bot_cannot_log_in(app) {
        let owner = app.signup_token("ada@example.com").await;
        let bot = create_bot(&app, &owner, "CI", json!(["dashboard"])).await;
        let email = format!("bot-{}@bots.invalid", str_of(&bot, "user_id"));
        let res = send(&app, Method::POST, "/api/v1/login", None, Some(json!({"email": "nobody@example.com", "password": PASSWORD}))).await;
        let unknown = assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        let sessions = app.count("tokens").await;
        for password in [PASSWORD, "!", "", "anything at all"] {
            let res = send(&app, Method::POST, "/api/v1/login", None, Some(json!({"email": email, "password": password}))).await;
            let problem = assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
            assert_eq!(problem["detail"], unknown["detail"], "like an unknown email");
        }
        assert_eq!(app.count("tokens").await, sessions, "no session was opened");
    }
}

db_test! {
    async fn bots_are_listed_and_deleting_one_kills_its_token(app) {
        let owner = app.signup_token("ada@example.com").await;
        let bot = create_bot(&app, &owner, "CI", json!(["sdk", "dashboard:read"])).await;
        let token = str_of(&bot, "token").to_owned();
        let id = str_of(&bot, "id");

        let (status, list) = app.get("/api/v1/bots", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let data = list["data"].as_array().expect("data");
        assert_eq!(data.len(), 1, "{list}");
        assert_eq!(data[0]["id"], bot["id"]);
        assert_eq!(data[0]["user_id"], bot["user_id"]);
        assert_eq!(data[0]["name"], "CI");
        assert_eq!(data[0]["role"], "bot");
        assert_eq!(data[0]["scopes"], json!(["dashboard:read", "sdk"]));
        assert_eq!(data[0]["token_prefix"], bot["token_prefix"]);
        assert!(data[0].get("token").is_none(), "{list}");
        assert!(!list.to_string().contains(&token[12..]), "the token is listed: {list}");
        // A bot is not an API key.
        let (_, keys) = app.get("/api/v1/api-keys?include_revoked=true", Some(&owner)).await;
        assert_eq!(keys["data"], json!([]));

        assert_eq!(sdk_status(&app, &token).await, StatusCode::OK);
        let (status, body) = app.call(Method::DELETE, &format!("/api/v1/bots/{id}"), Some(&owner), None).await;
        assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
        assert_dead(&app, &token).await;
        let res = send(&app, Method::GET, "/api/v1/me", Some(&token), None).await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        let res = send(&app, Method::DELETE, &format!("/api/v1/bots/{id}"), Some(&owner), None).await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        let (_, list) = app.get("/api/v1/bots", Some(&owner)).await;
        assert_eq!(list["data"], json!([]));

        // The owner is a member, not a bot: not deletable here.
        let (_, me) = app.get("/api/v1/me", Some(&owner)).await;
        assert_eq!(me["role"], "owner");
    }
}

db_test! {
    async fn bots_count_against_the_members_limit(app) {
        let owner = app.signup_token("ada@example.com").await;
        let mut bots = Vec::new();
        for n in 1..=4 {
            bots.push(create_bot(&app, &owner, &format!("bot {n}"), json!(["sdk"])).await);
        }
        let users = app.count("users").await;
        let res = send(&app, Method::POST, "/api/v1/bots", Some(&owner), Some(json!({"name": "one too many", "scopes": ["sdk"]}))).await;
        let problem = assert_problem(res, StatusCode::PAYMENT_REQUIRED, "quota_exceeded").await;
        assert_eq!(problem["meter"], "members");
        assert_eq!(problem["limit"], 5);
        assert_eq!(problem["used"], 5, "the owner and four bots");
        assert_eq!(problem["requested"], 1);
        assert_eq!(app.count("users").await, users, "the refused bot was not created");
        // Bots and people share the limit: nobody is even invited past it.
        let (status, problem) = app.post("/api/v1/invitations", Some(&owner), json!({"email": "grace@example.com", "send_email": false})).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{problem}");
        assert_eq!(problem["code"], "quota_exceeded");
        assert_eq!(problem["meter"], "members");

        let (status, _) = app.call(Method::DELETE, &format!("/api/v1/bots/{}", str_of(&bots[0], "id")), Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let fifth = create_bot(&app, &owner, "in its place", json!(["sdk"])).await;
        assert_eq!(sdk_status(&app, str_of(&fifth, "token")).await, StatusCode::OK);
        let res = send(&app, Method::POST, "/api/v1/bots", Some(&owner), Some(json!({"name": "again too many", "scopes": ["sdk"]}))).await;
        let problem = assert_problem(res, StatusCode::PAYMENT_REQUIRED, "quota_exceeded").await;
        assert_eq!(problem["used"], 5);
    }
}

db_test! {
    async fn a_session_carries_the_dashboard_scope(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (status, me) = app.get("/api/v1/me", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["scopes"], json!(["dashboard"]));
        assert_eq!(me["role"], "owner");
        // Which is why it may also use the SDK's endpoints.
        assert_eq!(sdk_status(&app, &owner).await, StatusCode::OK);
        let (status, _) = app.post("/api/v1/usage", Some(&owner), json!({"meter": "api_calls"})).await;
        assert_eq!(status, StatusCode::OK);
    }
}

db_test! {
    async fn a_leaked_current_secret_takes_the_old_secrets_of_its_rotation_with_it(app) {
        let owner = app.signup_token("leak-rotate@example.com").await;
        let key = create_key(&app, &owner, "ci").await;
        let id = str_of(&key, "id");
        let old = str_of(&key, "key").to_owned();
        let (status, rotated) = app
            .post(
                &format!("/api/v1/api-keys/{id}/rotate"),
                Some(&owner),
                json!({ "overlap_seconds": 3600 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        let new = str_of(&rotated, "key").to_owned();
        assert_eq!(sdk_status(&app, &old).await, StatusCode::OK);
        let (status, report) = report_leak(&app, json!({ "key": new })).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["revoked"], true);
        assert_dead(&app, &new).await;
        assert_dead(&app, &old).await;
    }
}

db_test! {
    async fn a_bot_whose_token_leaked_stays_listed_until_it_is_deleted(app) {
        let owner = app.signup_token("leak-bot@example.com").await;
        let bot = create_bot(&app, &owner, "ingest", json!(["sdk"])).await;
        let (status, _) = report_leak(&app, json!({ "key": str_of(&bot, "token") })).await;
        assert_eq!(status, StatusCode::OK);
        let (status, list) = app.get("/api/v1/bots", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK);
        let listed = list["data"].as_array().expect("data");
        assert_eq!(listed.len(), 1, "{list}");
        assert_eq!(listed[0]["id"], bot["id"]);
        assert!(listed[0]["token_revoked_at"].is_string(), "{list}");
        let (status, _) = app
            .call(
                Method::DELETE,
                &format!("/api/v1/bots/{}", str_of(&bot, "id")),
                Some(&owner),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, ent) = app.get("/api/v1/entitlements", Some(&owner)).await;
        assert_eq!(ent["meters"]["members"]["used"], 1);
    }
}

db_test! {
    async fn a_rotation_body_is_optional_but_held_to_the_json_rules_when_sent(app) {
        let owner = app.signup_token("rotate-body@example.com").await;
        let key = create_key(&app, &owner, "ci").await;
        let path = format!("/api/v1/api-keys/{}/rotate", str_of(&key, "id"));
        let res = app
            .client
            .post(app.url(&path))
            .bearer_auth(&owner)
            .header("content-type", "text/plain")
            .body("overlap_seconds=60")
            .send()
            .await
            .expect("request");
        assert_problem(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        let res = app
            .client
            .post(app.url(&path))
            .bearer_auth(&owner)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("request");
        assert_problem(res, StatusCode::BAD_REQUEST, "malformed_json").await;
        // Neither refused request rotated anything: the original secret still works.
        assert_eq!(sdk_status(&app, str_of(&key, "key")).await, StatusCode::OK);
        let res = app
            .client
            .post(app.url(&path))
            .bearer_auth(&owner)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK);
        assert_dead(&app, str_of(&key, "key")).await;
    }
}

db_test! {
    async fn a_rotation_ends_the_secrets_left_alive_by_earlier_rotations(app) {
        let owner = app.signup_token("rotate-twice@example.com").await;
        let key = create_key(&app, &owner, "ci").await;
        let path = format!("/api/v1/api-keys/{}/rotate", str_of(&key, "id"));
        let first = str_of(&key, "key").to_owned();
        let (status, second) = app
            .post(&path, Some(&owner), json!({ "overlap_seconds": 86400 }))
            .await;
        assert_eq!(status, StatusCode::OK, "{second}");
        assert_eq!(sdk_status(&app, &first).await, StatusCode::OK);
        // The first secret leaked: rotate again with no overlap, and it must die with it.
        let (status, third) = app.post(&path, Some(&owner), json!({ "overlap_seconds": 0 })).await;
        assert_eq!(status, StatusCode::OK, "{third}");
        assert_dead(&app, &first).await;
        assert_dead(&app, str_of(&second, "key")).await;
        assert_eq!(sdk_status(&app, str_of(&third, "key")).await, StatusCode::OK);
    }
}

db_test! {
    async fn deleting_a_bot_many_times_at_once_gives_its_place_back_once(app) {
        let owner = app.signup_token("bot-race@example.com").await;
        let bot = create_bot(&app, &owner, "racer", json!(["sdk"])).await;
        let path = format!("/api/v1/bots/{}", str_of(&bot, "id"));
        let app = std::sync::Arc::new(app);
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (app, owner, path) = (app.clone(), owner.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                app.call(Method::DELETE, &path, Some(&owner), None).await.0
            }));
        }
        let mut deleted = 0;
        for task in tasks {
            match task.await.expect("task") {
                StatusCode::NO_CONTENT => deleted += 1,
                StatusCode::NOT_FOUND => {}
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(deleted, 1);
        let (_, ent) = app.get("/api/v1/entitlements", Some(&owner)).await;
        assert_eq!(ent["meters"]["members"]["used"], 1, "{ent}");
    }
}
