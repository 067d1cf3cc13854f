//! Sign in with an identity provider, against a real one: oidc-provider (npm, a certified
//! OpenID Connect implementation; installed by `.ci/oidc-tools`), started per scenario with the
//! machine's Node from `oidc_provider.mjs`. The scenarios play the browser: they follow
//! `/auth/test/start` to the provider, let it log in the account named by `login_hint` (its
//! accounts are `<sub>@example.com`, verified except `unverified`), and bring its answer back to
//! `/auth/test/callback` with the cookie the start set.
//!
//! Without Node and oidc-provider the scenarios are skipped, saying so, unless
//! `SAASKIT_OIDC_TESTS=required` (as `.ci/run` sets), which makes them fail instead.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, Url};
use saaskit::oidc::ProviderSettings;
use serde_json::Value;

use crate::db_test;
use crate::helpers::TestApp;

const SCRIPT: &str = include_str!("oidc_provider.mjs");
const CLIENT_ID: &str = "saaskit-test";
const CLIENT_SECRET: &str = "saaskit-test-secret";
/// The callback the provider knows: the test server's public URL (the default) + our path.
/// The provider never calls it; the scenario, playing the browser, stops there.
const REDIRECT_URI: &str = "http://localhost:8000/auth/test/callback";

/// Where `.ci/oidc-tools` installs oidc-provider (or `SAASKIT_OIDC_TOOLS`), if it is there and
/// Node runs. `None` (skipped) otherwise, unless `SAASKIT_OIDC_TESTS=required`.
fn tools() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            crate::tools::installed_tool(
                "SAASKIT_OIDC_TOOLS",
                "saaskit-oidc",
                |dir| {
                    dir.join("node_modules/oidc-provider/package.json").is_file()
                        && Command::new("node")
                            .arg("--version")
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .is_ok_and(|s| s.success())
                },
                "SAASKIT_OIDC_TESTS",
                "no oidc-provider: run .ci/oidc-tools (or set SAASKIT_OIDC_TOOLS to where it is installed)",
            )
        })
        .clone()
}

/// A running oidc-provider, stopped when dropped (its stdin closes and it exits).
struct Provider {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    log: PathBuf,
}

impl Provider {
    async fn start() -> Option<Provider> {
        let dir = tools()?;
        let log = std::env::temp_dir().join(format!("saaskit-oidc-{}.log", uuid::Uuid::now_v7()));
        tokio::task::spawn_blocking(move || spawn(&dir, log))
            .await
            .expect("start oidc-provider")
            .map(Some)
            .unwrap_or_else(|e| panic!("start oidc-provider: {e}"))
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Publishes an unrelated key at the provider's `jwks_uri`; its ID tokens stay signed with
    /// the real one.
    async fn publish_other_key(&self) {
        let res = reqwest::Client::new()
            .post(format!("{}/__test/jwks?mode=other", self.issuer()))
            .send()
            .await
            .expect("reach oidc-provider");
        assert_eq!(res.status(), StatusCode::OK);
    }
}

fn spawn(dir: &Path, log: PathBuf) -> Result<Provider, String> {
    let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = Command::new("node")
        .args(["--input-type=module", "-e", SCRIPT])
        .current_dir(dir)
        .env("REDIRECT_URI", REDIRECT_URI)
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("run node: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut first = String::new();
    let mut reader = std::io::BufReader::new(stdout);
    reader
        .read_line(&mut first)
        .map_err(|e| format!("read its port: {e}"))?;
    // The rest of what it prints goes to its log: a closed pipe would kill it (EPIPE).
    let mut rest = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    std::thread::spawn(move || std::io::copy(&mut reader, &mut rest));
    let port = serde_json::from_str::<Value>(&first)
        .ok()
        .and_then(|v| v["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            format!(
                "no port on its first line ({first:?}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
    Ok(Provider {
        child,
        _stdin: stdin,
        port,
        log,
    })
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The scenario's server again, on its database, now with the provider configured as `test`.
async fn with_provider(app: TestApp) -> Option<(TestApp, Provider)> {
    let Some(op) = Provider::start().await else {
        eprintln!("skipped: no oidc-provider (run .ci/oidc-tools)");
        return None;
    };
    let settings = ProviderSettings::oidc("test", &op.issuer(), CLIENT_ID, CLIENT_SECRET);
    let served = TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), |c| {
        c.identity_providers = vec![settings];
    })
    .await;
    Some((served, op))
}

/// Name=value of a `Set-Cookie` named `name`, if the response sets it.
fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// A sign-in brought back from the provider: the callback address it sent the browser to,
/// and the cookie that binds it to the browser that started it.
struct Returned {
    callback: Url,
    binding: String,
}

/// `url` with its query parameter `name` set to `value`.
fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    let mut changed = url.clone();
    changed.query_pairs_mut().clear().extend_pairs(pairs);
    changed
}

impl Returned {
    fn param(&self, name: &str) -> Option<String> {
        self.callback
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn with_param(&self, name: &str, value: &str) -> Returned {
        Returned {
            callback: with_param(&self.callback, name, value),
            binding: self.binding.clone(),
        }
    }
}

/// Starts a sign-in at `/auth/test/start` (as the person behind `session`, if any), lets the
/// provider log in `who` (`tamper` may change the authorization request first, as an attacker
/// would), and returns what it sends back.
async fn go_to_provider(
    app: &TestApp,
    session: Option<&str>,
    who: &str,
    tamper: impl FnOnce(&mut Url),
) -> Returned {
    let mut start = no_redirects().get(app.url("/auth/test/start"));
    if let Some(token) = session {
        start = start.header(COOKIE, format!("saaskit_session={token}"));
    }
    let res = start.send().await.expect("reach saaskit");
    assert_eq!(
        res.status(),
        StatusCode::FOUND,
        "start: {:?}",
        res.text().await
    );
    let binding = set_cookie(&res, "saaskit_oidc").expect("the start binds the browser");
    let location = res.headers()[LOCATION].to_str().expect("a location");
    let mut url = Url::parse(location).expect("a URL");
    for required in ["state", "nonce", "code_challenge"] {
        assert!(
            url.query_pairs().any(|(k, _)| k == required),
            "{required} in {url}"
        );
    }
    assert!(
        url.query_pairs()
            .any(|(k, v)| k == "code_challenge_method" && v == "S256")
    );
    url.query_pairs_mut().append_pair("login_hint", who);
    tamper(&mut url);
    // The provider's side of the browser: its cookies, its redirects, until it sends us back.
    let mut jar: HashMap<String, String> = HashMap::new();
    let client = no_redirects();
    for _ in 0..10 {
        let cookies = jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let res = client
            .get(url.clone())
            .header(COOKIE, cookies)
            .send()
            .await
            .expect("reach oidc-provider");
        for v in res.headers().get_all(SET_COOKIE) {
            if let Some((k, v)) = v
                .to_str()
                .ok()
                .and_then(|v| v.split(';').next())
                .and_then(|p| p.split_once('='))
            {
                jar.insert(k.to_owned(), v.to_owned());
            }
        }
        let Some(next) = res.headers().get(LOCATION) else {
            panic!(
                "oidc-provider stopped at {url} with {}: {}",
                res.status(),
                res.text().await.unwrap_or_default()
            );
        };
        url = url.join(next.to_str().expect("a location")).expect("a URL");
        if url.as_str().starts_with(REDIRECT_URI) {
            return Returned {
                callback: url,
                binding,
            };
        }
    }
    panic!("oidc-provider never sent the browser back");
}

/// Brings the provider's answer to our callback, with the binding cookie (and `session`).
async fn come_back(app: &TestApp, returned: &Returned, session: Option<&str>) -> reqwest::Response {
    let mut cookies = returned.binding.clone();
    if let Some(token) = session {
        cookies.push_str(&format!("; saaskit_session={token}"));
    }
    no_redirects()
        .get(app.url(&format!(
            "/auth/test/callback?{}",
            returned.callback.query().unwrap_or_default()
        )))
        .header(COOKIE, cookies)
        .header("accept", "text/html")
        .send()
        .await
        .expect("reach saaskit")
}

/// A whole sign-in as `who`; the callback's answer.
async fn sign_in(app: &TestApp, who: &str) -> reqwest::Response {
    let returned = go_to_provider(app, None, who, |_| {}).await;
    come_back(app, &returned, None).await
}

/// The session a signed-in answer opened in the browser (303 to `to`).
fn session_of(res: &reqwest::Response, to: &str) -> String {
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{res:?}");
    assert_eq!(res.headers()[LOCATION], to);
    set_cookie(res, "saaskit_session")
        .and_then(|c| c.split_once('=').map(|(_, v)| v.to_owned()))
        .expect("a session cookie")
}

async fn me(app: &TestApp, token: &str) -> Value {
    let (status, me) = app.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me
}

async fn identities(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, list) = app.get("/api/v1/identities", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["data"].as_array().cloned().unwrap_or_default()
}

async fn audit(app: &TestApp, token: &str, action: &str) -> Vec<Value> {
    let (status, log) = app
        .get(&format!("/api/v1/audit-log?action={action}"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    log["data"].as_array().cloned().unwrap_or_default()
}

/// A refused callback: 400, a page that says so, and no session.
async fn assert_refused(res: reqwest::Response, words: &str) {
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{res:?}");
    assert!(set_cookie(&res, "saaskit_session").is_none());
    let page = res.text().await.unwrap_or_default();
    assert!(page.contains(words), "{page}");
}

db_test!(
    async fn a_new_identity_makes_an_account_and_signs_in_to_it_again(app) {
        let Some((app, _op)) = with_provider(app).await else { return };
        let first = sign_in(&app, "alice").await;
        let token = session_of(&first, "/dashboard");
        let me1 = me(&app, &token).await;
        assert_eq!(me1["user"]["email"], "alice@example.com");
        assert_eq!(me1["user"]["email_verified"], true, "the provider vouched for it");
        assert_eq!(me1["role"], "owner");

        let again = sign_in(&app, "alice").await;
        let token2 = session_of(&again, "/dashboard");
        let me2 = me(&app, &token2).await;
        assert_eq!(me2["user"]["id"], me1["user"]["id"], "the same account");
        assert_eq!(app.count("users").await, 1);

        let linked = identities(&app, &token2).await;
        assert_eq!(linked.len(), 1, "{linked:?}");
        assert_eq!(linked[0]["provider"], "test");
        assert_eq!(linked[0]["subject"], "alice");
        assert_eq!(linked[0]["email"], "alice@example.com");
        let logins = audit(&app, &token2, "login.succeeded").await;
        assert_eq!(logins.len(), 2, "{logins:?}");
        assert!(logins.iter().all(|e| e["details"]["method"] == "oidc"), "{logins:?}");
        assert_eq!(audit(&app, &token2, "identity.linked").await.len(), 1);
        // No password signs in to it.
        let (status, _) = app
            .post(
                "/api/v1/login",
                None,
                serde_json::json!({"email": "alice@example.com", "password": "!"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
);

db_test!(
    async fn a_wrong_state_or_another_browser_is_refused(app) {
        let Some((app, _op)) = with_provider(app).await else { return };
        let returned = go_to_provider(&app, None, "alice", |_| {}).await;
        // A state we never issued (the browser's cookie agreeing with it).
        let mut forged = returned.with_param("state", "not-the-state");
        forged.binding = "saaskit_oidc=not-the-state".to_owned();
        assert_refused(come_back(&app, &forged, None).await, "Start again").await;
        // The right state, but not the browser that started it.
        let elsewhere = Returned {
            callback: returned.callback.clone(),
            binding: "saaskit_oidc=someone-else".to_owned(),
        };
        assert_refused(come_back(&app, &elsewhere, None).await, "Start again").await;
        assert_eq!(app.count("users").await, 0);
    }
);

db_test!(
    async fn a_callback_works_once_and_a_code_is_not_taken_twice(app) {
        let Some((app, _op)) = with_provider(app).await else { return };
        let returned = go_to_provider(&app, None, "alice", |_| {}).await;
        session_of(&come_back(&app, &returned, None).await, "/dashboard");
        // The same answer again (a replay): its state is spent.
        assert_refused(come_back(&app, &returned, None).await, "Start again").await;
        // The used code with a fresh sign-in's state: the provider refuses it (used, and not
        // for this PKCE verifier).
        let fresh = go_to_provider(&app, None, "alice", |_| {}).await;
        let replayed = fresh.with_param("code", &returned.param("code").expect("a code"));
        assert_refused(come_back(&app, &replayed, None).await, "could not be trusted").await;
        assert_eq!(app.count("users").await, 1);
    }
);

db_test!(
    async fn an_id_token_with_another_nonce_is_refused(app) {
        let Some((app, _op)) = with_provider(app).await else { return };
        // An attacker's authorization request: the ID token will carry their nonce.
        let returned = go_to_provider(&app, None, "alice", |url| {
            *url = with_param(url, "nonce", "forged");
        })
        .await;
        assert_refused(come_back(&app, &returned, None).await, "could not be trusted").await;
        assert_eq!(app.count("users").await, 0);
        assert_eq!(app.count("user_identities").await, 0);
    }
);

db_test!(
    async fn an_id_token_signed_by_a_key_the_provider_does_not_publish_is_refused(app) {
        let Some((app, op)) = with_provider(app).await else { return };
        op.publish_other_key().await;
        let res = sign_in(&app, "alice").await;
        assert_refused(res, "could not be trusted").await;
        assert_eq!(app.count("users").await, 0);
    }
);

db_test!(
    async fn an_unverified_address_meeting_an_account_links_nothing(app) {
        let Some((app, _op)) = with_provider(app).await else { return };
        let owner = app.signup_token("unverified@example.com").await;
        let res = sign_in(&app, "unverified").await;
        assert_eq!(res.status(), StatusCode::CONFLICT);
        assert!(set_cookie(&res, "saaskit_session").is_none(), "nobody signed in");
        let page = res.text().await.unwrap_or_default();
        assert!(page.contains("Log in first") && page.contains("link Test"), "{page}");
        assert_eq!(app.count("user_identities").await, 0);
        assert_eq!(app.count("users").await, 1);
        assert!(identities(&app, &owner).await.is_empty());
        assert!(
            app.mail_to("unverified@example.com", "Confirm sign-in").await.is_empty(),
            "no link offered for an address the provider does not vouch for"
        );
    }
);

/// The mailed link's page, then its button (with the page's CSRF code and cookie).
async fn confirm_mailed_link(app: &TestApp, key: &str) -> reqwest::Response {
    let client = no_redirects();
    let page = client
        .get(app.url(&format!("/auth/link?key={key}")))
        .send()
        .await
        .expect("reach saaskit");
    assert_eq!(page.status(), StatusCode::OK);
    let csrf_cookie = set_cookie(&page, "saaskit_csrf").expect("a CSRF cookie");
    let html = page.text().await.unwrap_or_default();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF code in the form")
        .to_owned();
    client
        .post(app.url("/auth/link"))
        .header(COOKIE, csrf_cookie)
        .form(&[("csrf", csrf.as_str()), ("key", key)])
        .send()
        .await
        .expect("reach saaskit")
}

db_test!(
    async fn a_verified_address_meeting_an_account_links_once_its_owner_confirms_by_mail(app) {
        let Some((app, _op)) = with_provider(app).await else { return };
        let owner = app.signup_token("bob@example.com").await;
        let res = sign_in(&app, "bob").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(set_cookie(&res, "saaskit_session").is_none(), "not signed in yet");
        assert!(res.text().await.unwrap_or_default().contains("Check your mail"));
        assert_eq!(app.count("user_identities").await, 0, "nothing linked silently");

        let mail = app.only_mail_to("bob@example.com", "Confirm sign-in with Test").await;
        let key = crate::smtp_sink::key_in(&mail);
        let confirmed = confirm_mailed_link(&app, &key).await;
        let token = session_of(&confirmed, "/account/identities?linked=");
        assert_eq!(me(&app, &token).await["user"]["email"], "bob@example.com");
        let linked = identities(&app, &owner).await;
        assert_eq!(linked.len(), 1, "{linked:?}");
        assert_eq!(linked[0]["subject"], "bob");
        let events = audit(&app, &owner, "identity.linked").await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["details"]["proven_by"], "email");
        app.only_mail_to("bob@example.com", "Sign-in with Test was added").await;

        // The link works once; the provider now signs in to bob's account directly.
        assert_eq!(confirm_mailed_link(&app, &key).await.status(), StatusCode::GONE);
        let again = session_of(&sign_in(&app, "bob").await, "/dashboard");
        assert_eq!(
            me(&app, &again).await["user"]["id"],
            me(&app, &owner).await["user"]["id"]
        );
        assert_eq!(app.count("users").await, 1);
    }
);

db_test!(
    async fn a_signed_in_person_links_an_identity_that_then_signs_them_in(app) {
        let Some((app, _op)) = with_provider(app).await else { return };
        let carol = app.signup_token("carol@example.com").await;
        // Carol is signed in; the provider's account is another address altogether.
        let returned = go_to_provider(&app, Some(&carol), "dave", |_| {}).await;
        let res = come_back(&app, &returned, Some(&carol)).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()[LOCATION], "/account/identities?linked=Test");
        let linked = identities(&app, &carol).await;
        assert_eq!(linked.len(), 1, "{linked:?}");
        assert_eq!(linked[0]["subject"], "dave");
        assert_eq!(audit(&app, &carol, "identity.linked").await.len(), 1);
        app.only_mail_to("carol@example.com", "Sign-in with Test was added").await;

        let token = session_of(&sign_in(&app, "dave").await, "/dashboard");
        assert_eq!(me(&app, &token).await["user"]["email"], "carol@example.com");
        assert_eq!(app.count("users").await, 1);
    }
);

db_test!(
    async fn an_identity_is_removed_unless_it_is_the_last_way_to_sign_in(app) {
        let Some((app, _op)) = with_provider(app).await else { return };
        let token = session_of(&sign_in(&app, "erin").await, "/dashboard");
        let only = identities(&app, &token).await;
        let only_id = only[0]["id"].as_str().expect("an id").to_owned();
        let (status, body) = app
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/identities/{only_id}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "last_sign_in_method");

        // A second identity: now either may go, but not both.
        let returned = go_to_provider(&app, Some(&token), "erin-work", |_| {}).await;
        assert_eq!(come_back(&app, &returned, Some(&token)).await.status(), StatusCode::SEE_OTHER);
        assert_eq!(identities(&app, &token).await.len(), 2);
        let (status, _) = app
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/identities/{only_id}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let left = identities(&app, &token).await;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["subject"], "erin-work");
        let removed = audit(&app, &token, "identity.removed").await;
        assert_eq!(removed.len(), 1, "{removed:?}");
        app.only_mail_to("erin@example.com", "Sign-in with Test was removed").await;
        let last = left[0]["id"].as_str().expect("an id");
        let (status, body) = app
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/identities/{last}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "last_sign_in_method");

        // Someone else's identity is not found.
        let other = app.signup_token("frank@example.com").await;
        let (status, _) = app
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/identities/{last}"),
                Some(&other),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
);
