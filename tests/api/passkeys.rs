//! Passkeys through the API, with a software authenticator (1Password's passkey-rs) playing the
//! browser: its answers go over HTTP as JSON, as `PublicKeyCredential.toJSON()` would send them,
//! and the server's WebAuthn checks (webauthn-rs) judge them.

use std::sync::Arc;

use chrono::Duration;
use passkey::authenticator::{
    Authenticator, CredentialStore, DiscoverabilitySupport, StoreInfo, UiHint, UserCheck,
    UserValidationMethod,
};
use passkey::client::{Client, DefaultClientData};
use passkey::crypto::rust_crypto::RustCryptoBackend;
use passkey::types::ctap2::make_credential::{
    Options as MakeOptions, PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity,
};
use passkey::types::ctap2::{Aaguid, Ctap2Error, StatusCode as CtapStatus};
use passkey::types::{Passkey as DeviceKey, webauthn as wa};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

/// The origin the test server's relying party expects (`SAASKIT_PUBLIC_URL` in tests).
const ORIGIN: &str = "http://localhost:8000";

/// The person at the device: always there, always unlocks it.
struct Present;

#[async_trait::async_trait]
impl UserValidationMethod for Present {
    type PasskeyItem = DeviceKey;

    async fn check_user<'a>(
        &self,
        _: UiHint<'a, DeviceKey>,
        _presence: bool,
        _verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck {
            presence: true,
            verification: true,
        })
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }
}

/// The device's keys: unlike passkey-rs' memory store, it also finds them when the site names
/// none (a discoverable sign-in).
#[derive(Clone, Default)]
struct Keys(Arc<std::sync::Mutex<Vec<DeviceKey>>>);

impl Keys {
    fn held(&self) -> std::sync::MutexGuard<'_, Vec<DeviceKey>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl CredentialStore for Keys {
    type PasskeyItem = DeviceKey;

    async fn find_credentials(
        &self,
        ids: Option<&[wa::PublicKeyCredentialDescriptor]>,
        rp_id: &str,
        _user_handle: Option<&[u8]>,
    ) -> Result<Vec<DeviceKey>, CtapStatus> {
        let found: Vec<DeviceKey> = self
            .held()
            .iter()
            .filter(|k| k.rp_id == rp_id)
            .filter(|k| ids.is_none_or(|ids| ids.iter().any(|d| d.id == k.credential_id)))
            .cloned()
            .collect();
        if found.is_empty() {
            Err(Ctap2Error::NoCredentials.into())
        } else {
            Ok(found)
        }
    }

    async fn save_credential(
        &mut self,
        key: DeviceKey,
        _user: PublicKeyCredentialUserEntity,
        _rp: PublicKeyCredentialRpEntity,
        _options: MakeOptions,
    ) -> Result<(), CtapStatus> {
        self.held().push(key);
        Ok(())
    }

    async fn update_credential(&mut self, key: &DeviceKey) -> Result<(), CtapStatus> {
        if let Some(k) = self
            .held()
            .iter_mut()
            .find(|k| k.credential_id == key.credential_id)
        {
            *k = key.clone();
        }
        Ok(())
    }

    async fn get_info(&self) -> StoreInfo {
        StoreInfo {
            discoverability: DiscoverabilitySupport::Full,
        }
    }
}

/// A phone or a laptop with a platform authenticator.
#[derive(Clone, Default)]
pub(crate) struct Device(Keys);

impl Device {
    /// Answers a registration's options, as `navigator.credentials.create` would at `origin`.
    async fn create(&self, options: &Value, origin: &str) -> Value {
        let request: wa::CredentialCreationOptions =
            serde_json::from_value(options.clone()).expect("creation options");
        let origin = url::Url::parse(origin).expect("origin");
        let authenticator = Authenticator::new(
            Aaguid::new_empty(),
            self.0.clone(),
            Present,
            RustCryptoBackend,
        );
        let created = Client::new(authenticator)
            .allows_insecure_localhost(true)
            .register(&origin, request, DefaultClientData)
            .await
            .expect("the authenticator makes a credential");
        serde_json::to_value(&created).expect("as JSON")
    }

    /// Answers a sign-in's options, as `navigator.credentials.get` would at `origin`; an error
    /// when the device keeps no passkey for the site.
    async fn try_get(&self, options: &Value, origin: &str) -> Result<Value, String> {
        let request: wa::CredentialRequestOptions =
            serde_json::from_value(options.clone()).expect("request options");
        let origin = url::Url::parse(origin).expect("origin");
        let authenticator = Authenticator::new(
            Aaguid::new_empty(),
            self.0.clone(),
            Present,
            RustCryptoBackend,
        );
        let asserted = Client::new(authenticator)
            .allows_insecure_localhost(true)
            .authenticate(&origin, request, DefaultClientData)
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(serde_json::to_value(&asserted).expect("as JSON"))
    }

    async fn get(&self, options: &Value, origin: &str) -> Value {
        self.try_get(options, origin)
            .await
            .expect("the authenticator signs")
    }
}

async fn start_registration(app: &TestApp, session: &str) -> Value {
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/passkeys/register/start",
            Some(session),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn finish_registration(
    app: &TestApp,
    session: &str,
    ceremony: &Value,
    credential: Value,
    name: &str,
) -> (StatusCode, Value) {
    app.post(
        "/api/v1/passkeys/register/finish",
        Some(session),
        json!({"ceremony": ceremony, "credential": credential, "name": name}),
    )
    .await
}

/// Registers a passkey on `device` for the person of `session`; its id.
pub(crate) async fn register(app: &TestApp, session: &str, device: &Device, name: &str) -> String {
    let started = start_registration(app, session).await;
    let selection = &started["options"]["publicKey"]["authenticatorSelection"];
    assert_eq!(selection["residentKey"], "required", "{started}");
    let credential = device.create(&started["options"], ORIGIN).await;
    let (status, body) =
        finish_registration(app, session, &started["ceremony"], credential, name).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], name, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

async fn start_sign_in(app: &TestApp) -> Value {
    let (status, body) = app
        .call(Method::POST, "/api/v1/login/passkey/start", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["options"]["publicKey"]["allowCredentials"],
        json!([]),
        "a discoverable sign-in names no credential: {body}"
    );
    body
}

async fn finish_sign_in(app: &TestApp, ceremony: &Value, credential: Value) -> (StatusCode, Value) {
    app.post(
        "/api/v1/login/passkey/finish",
        None,
        json!({"ceremony": ceremony, "credential": credential}),
    )
    .await
}

/// Signs in with `device` and nothing else; the session's token.
async fn sign_in(app: &TestApp, device: &Device) -> (StatusCode, Value) {
    let started = start_sign_in(app).await;
    let answer = device.get(&started["options"], ORIGIN).await;
    finish_sign_in(app, &started["ceremony"], answer).await
}

async fn me_email(app: &TestApp, token: &str) -> String {
    let (status, me) = app.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me["user"]["email"].as_str().expect("email").to_owned()
}

#[track_caller]
fn assert_code(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
}

db_test! {
    async fn a_passkey_signs_in_without_a_password(app) {
        let owner = app.signup_token("ada@example.com").await;
        app.signup_token("grace@example.com").await;
        let laptop = Device::default();
        let id = register(&app, &owner, &laptop, "Laptop").await;

        let (status, list) = app.get("/api/v1/passkeys", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(list["data"][0]["id"], id.as_str());
        assert_eq!(list["data"][0]["last_used_at"], Value::Null);

        let answer = sign_in(&app, &laptop).await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
        let token = token_of(&answer.1);
        assert_eq!(me_email(&app, &token).await, "ada@example.com");
        let (_, list) = app.get("/api/v1/passkeys", Some(&owner)).await;
        assert!(list["data"][0]["last_used_at"].is_string(), "its use is recorded: {list}");

        // Audited and mailed; a passkey counts as a second factor (no code is asked after it).
        let (status, log) = app.get("/api/v1/audit-log?limit=50", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{log}");
        let actions: Vec<&str> = log["data"].as_array().expect("data").iter()
            .filter_map(|e| e["action"].as_str()).collect();
        assert!(actions.contains(&"passkey.added"), "{actions:?}");
        let passkey_login = log["data"].as_array().expect("data").iter()
            .find(|e| e["action"] == "login.succeeded" && e["details"]["method"] == "passkey");
        assert!(passkey_login.is_some(), "{log}");
        app.only_mail_to("ada@example.com", "A passkey was added").await;
        let (_, me) = app.get("/api/v1/me", Some(&owner)).await;
        assert_eq!(me["mfa_enabled"], true, "{me}");

        // Another device, with no passkey for this site, has nothing to offer.
        let stranger = Device::default();
        let started = start_sign_in(&app).await;
        assert!(stranger.try_get(&started["options"], ORIGIN).await.is_err());
    }
}

db_test! {
    async fn a_ceremony_is_used_once_within_five_minutes_and_only_from_our_origin(app) {
        let owner = app.signup_token("ada@example.com").await;
        let laptop = Device::default();

        // Registration: the same ceremony twice, then one that waited too long.
        let started = start_registration(&app, &owner).await;
        let credential = laptop.create(&started["options"], ORIGIN).await;
        let first = finish_registration(&app, &owner, &started["ceremony"], credential.clone(), "Laptop").await;
        assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
        let again = finish_registration(&app, &owner, &started["ceremony"], credential, "Laptop").await;
        assert_code(&again, StatusCode::GONE, "ceremony_expired");
        let started = start_registration(&app, &owner).await;
        let credential = Device::default().create(&started["options"], ORIGIN).await;
        app.clock.advance(Duration::minutes(5));
        let late = finish_registration(&app, &owner, &started["ceremony"], credential, "Late").await;
        assert_code(&late, StatusCode::GONE, "ceremony_expired");

        // Sign-in: an answer made for another site (a phishing page's origin) is refused.
        let started = start_sign_in(&app).await;
        let phished = laptop.get(&started["options"], "http://localhost:9999").await;
        let refused = finish_sign_in(&app, &started["ceremony"], phished).await;
        assert_code(&refused, StatusCode::UNAUTHORIZED, "invalid_passkey");
        // The ceremony died with the refusal; a good answer needs a new one.
        let started = start_sign_in(&app).await;
        let answer = laptop.get(&started["options"], ORIGIN).await;
        let ok = finish_sign_in(&app, &started["ceremony"], answer.clone()).await;
        assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
        // Replayed: the ceremony is spent.
        let replayed = finish_sign_in(&app, &started["ceremony"], answer.clone()).await;
        assert_code(&replayed, StatusCode::GONE, "ceremony_expired");
        // And the same answer against a fresh challenge does not pass either.
        let fresh = start_sign_in(&app).await;
        let replayed = finish_sign_in(&app, &fresh["ceremony"], answer).await;
        assert_code(&replayed, StatusCode::UNAUTHORIZED, "invalid_passkey");
        // Garbage is refused as such, and missing fields are named.
        let fresh = start_sign_in(&app).await;
        let garbage = finish_sign_in(&app, &fresh["ceremony"], json!({"id": "x"})).await;
        assert_code(&garbage, StatusCode::UNAUTHORIZED, "invalid_passkey");
        let (status, body) = app.post("/api/v1/login/passkey/finish", None, json!({})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        // Refusals are in the log, which staff read (nobody is known to have failed).
        app.signup("staff@example.com").await;
        saaskit::billing::admin::set_staff(&app.app, "staff@example.com", true)
            .await
            .expect("make staff");
        let staff = app.login_token("staff@example.com").await;
        let (status, failed) = app.get("/api/v1/audit-log?action=login.failed&limit=50", Some(&staff)).await;
        assert_eq!(status, StatusCode::OK, "{failed}");
        let refusals = failed["data"].as_array().expect("data").iter()
            .filter(|e| e["details"]["reason"] == "invalid_passkey")
            .count();
        // The phishing origin, the replay against a fresh challenge, the garbage.
        assert_eq!(refusals, 3, "{failed}");
    }
}

db_test! {
    async fn passkeys_are_renamed_and_removed_by_their_owner_only(app) {
        let owner = app.signup_token("ada@example.com").await;
        let other = app.signup_token("grace@example.com").await;
        let laptop = Device::default();
        let id = register(&app, &owner, &laptop, "Laptop").await;
        let path = format!("/api/v1/passkeys/{id}");

        let (status, body) = app.call(Method::PATCH, &path, Some(&owner), Some(json!({"name": "Work laptop"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["name"], "Work laptop");
        let (status, body) = app.call(Method::PATCH, &path, Some(&owner), Some(json!({"name": "  "}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        // Someone else's passkey does not exist for them.
        let (status, _) = app.call(Method::PATCH, &path, Some(&other), Some(json!({"name": "Mine"}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = app.call(Method::DELETE, &path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, list) = app.get("/api/v1/passkeys", Some(&other)).await;
        assert_eq!(list["data"], json!([]));

        let (status, body) = app.call(Method::DELETE, &path, Some(&owner), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        app.only_mail_to("ada@example.com", "A passkey was removed").await;
        // The device still holds it, but it no longer signs in.
        let refused = sign_in(&app, &laptop).await;
        assert_code(&refused, StatusCode::UNAUTHORIZED, "invalid_passkey");
        let (_, me) = app.get("/api/v1/me", Some(&owner)).await;
        assert_eq!(me["mfa_enabled"], false, "{me}");
    }
}

db_test! {
    async fn a_passkey_satisfies_the_business_two_factor_rule(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (member, _) = app.join(&owner, "alan@example.com", "member").await;
        // The owner's passkey is their second factor: they may require one of everybody.
        register(&app, &owner, &Device::default(), "Phone").await;
        let (status, body) = app.call(Method::PATCH, "/api/v1/business", Some(&owner), Some(json!({"require_mfa": true}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let (status, body) = app.get("/api/v1/usage", Some(&member)).await;
        assert_code(&(status, body), StatusCode::FORBIDDEN, "mfa_enrollment_required");
        // Registering a passkey is one of the ways out, and then the same session works.
        let phone = Device::default();
        register(&app, &member, &phone, "Phone").await;
        let (status, body) = app.get("/api/v1/usage", Some(&member)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // A sign-in with it opens a session the rule lets through.
        let answer = sign_in(&app, &phone).await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
        let (status, body) = app.get("/api/v1/members", Some(&token_of(&answer.1))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

db_test! {
    async fn passkeys_are_for_people(app) {
        let owner = app.signup_token("ada@example.com").await;
        let (status, bot) = app.post("/api/v1/bots", Some(&owner), json!({"name": "CI", "scopes": ["dashboard"]})).await;
        assert_eq!(status, StatusCode::CREATED, "{bot}");
        let bot = bot["token"].as_str().expect("token").to_owned();
        let answer = app.call(Method::POST, "/api/v1/passkeys/register/start", Some(&bot), None).await;
        assert_code(&answer, StatusCode::FORBIDDEN, "not_a_person");
        let answer = app.get("/api/v1/passkeys", Some(&bot)).await;
        assert_code(&answer, StatusCode::FORBIDDEN, "not_a_person");
        // A registration started by one person cannot be finished by another.
        let other = app.signup_token("grace@example.com").await;
        let started = start_registration(&app, &owner).await;
        let credential = Device::default().create(&started["options"], ORIGIN).await;
        let stolen = finish_registration(&app, &other, &started["ceremony"], credential, "Mine").await;
        assert_code(&stolen, StatusCode::GONE, "ceremony_expired");
    }
}
