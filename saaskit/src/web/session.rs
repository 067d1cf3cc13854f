//! Who is looking at a page, and whether a submitted form is theirs.
//!
//! A browser holds two cookies, both HttpOnly and `SameSite=Lax` (and `Secure`, with the
//! `__Host-` prefix, when `SAASKIT_PUBLIC_URL` is https):
//! - the session: the same session token the JSON API hands out, so the session is listed,
//!   revoked and expired like any other. It authenticates pages only: `/api/v1` reads the
//!   `Authorization` header and nothing else.
//! - the CSRF cookie: a random value every visitor gets on their first page. Each form carries
//!   a code derived from it under the server's key ([`crate::seal::Sealer::mac`]); a
//!   submission whose code does not match, or that a browser says came from another site
//!   (`Origin`, `Sec-Fetch-Site`), is refused with 403 before any handler runs.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use rand::TryRngCore as _;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use super::{Chrome, NavLink, PastDue};
use crate::accounts::{self, Principal};
use crate::app::AppState;
use crate::config::Config;

const CSRF_PURPOSE: &str = "page form";

/// The cookie names: with `__Host-` (which browsers accept only from a secure origin, for the
/// whole site, never from a subdomain) when the site is served over https.
fn cookie_name(config: &Config, base: &'static str) -> String {
    if secure(config) {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

fn secure(config: &Config) -> bool {
    config.public_base().starts_with("https://")
}

fn session_cookie(config: &Config) -> String {
    cookie_name(config, "saaskit_session")
}

fn csrf_cookie(config: &Config) -> String {
    cookie_name(config, "saaskit_csrf")
}

fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
        // Real values are short and URL-safe; anything else cannot match.
        .filter(|v| !v.is_empty() && v.len() <= 256)
}

fn set_cookie(config: &Config, name: String, value: String, max_age_secs: i64) -> HeaderValue {
    let cookie = Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure(config))
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    // Names and values are ours: printable ASCII.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` for a new session (at login, signup, a reset or an accepted invitation).
pub fn start_session(config: &Config, token: &str) -> HeaderValue {
    let max_age = i64::from(config.session_lifetime_hours) * 3600;
    set_cookie(config, session_cookie(config), token.to_owned(), max_age)
}

/// `Set-Cookie` that removes the session cookie.
pub fn end_session(config: &Config) -> HeaderValue {
    set_cookie(config, session_cookie(config), String::new(), 0)
}

/// The CSRF cookie's value for this request, put there by [`ensure_csrf_cookie`].
#[derive(Clone)]
struct CsrfSeed(String);

/// Gives every visitor a CSRF cookie on their first request, so the first form they see
/// already carries a valid code.
pub async fn ensure_csrf_cookie(
    axum::extract::State(app): axum::extract::State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let name = csrf_cookie(&app.config);
    match read_cookie(req.headers(), &name) {
        Some(seed) => {
            req.extensions_mut().insert(CsrfSeed(seed));
            next.run(req).await
        }
        None => {
            let seed = random_seed();
            req.extensions_mut().insert(CsrfSeed(seed.clone()));
            let mut res = next.run(req).await;
            // A year: the cookie holds nothing secret by itself, and a stale one only means a
            // form must be sent again.
            let cookie = set_cookie(&app.config, name, seed, 365 * 24 * 3600);
            res.headers_mut().append(header::SET_COOKIE, cookie);
            res
        }
    }
}

fn random_seed() -> String {
    let mut bytes = [0u8; 32];
    // The operating system's generator failing is not something a request can recover from;
    // an all-zero seed would still be bound to this server's key, but refuse to go on quietly.
    if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
        tracing::error!("the operating system's random number generator failed");
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whoever is looking at a page: the CSRF code for the forms on it, and the person, if a live
/// session cookie came with the request.
pub struct Visitor {
    pub csrf: String,
    pub principal: Option<Principal>,
    links: Arc<[NavLink]>,
}

impl Visitor {
    /// The layout of a page for this visitor.
    pub fn chrome(&self, title: impl Into<String>) -> Chrome {
        Chrome::new(
            title,
            &self.csrf,
            self.principal.as_ref(),
            self.links.clone(),
        )
    }
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let seed = parts
            .extensions
            .get::<CsrfSeed>()
            .map(|s| s.0.clone())
            .unwrap_or_default();
        let csrf = URL_SAFE_NO_PAD.encode(app.sealer.mac(CSRF_PURPOSE, seed.as_bytes()));
        let principal = match read_cookie(&parts.headers, &session_cookie(&app.config)) {
            Some(token) => match accounts::authenticate(app, &token).await {
                // Only a person's login session opens pages; an API key pasted into the cookie
                // does not.
                Ok(Some(p)) if p.person().is_some() => Some(p),
                Ok(_) => None,
                Err(e) => return Err(super::server_error(e)),
            },
            None => None,
        };
        let links = app.products.nav();
        Ok(Visitor {
            csrf,
            principal,
            links,
        })
    }
}

/// A visitor with a live session. Anyone else is sent (303) to `/login?next=<this page>`.
pub struct SignedIn {
    pub csrf: String,
    pub principal: Principal,
    links: Arc<[NavLink]>,
    /// `SAASKIT_GRACE_PERIOD_DAYS`, for the past-due banner.
    grace_period_days: u32,
}

impl SignedIn {
    /// The layout of a page for this person, with the banner of a renewal payment that failed.
    pub fn chrome(&self, title: impl Into<String>) -> Chrome {
        let mut chrome = Chrome::new(title, &self.csrf, Some(&self.principal), self.links.clone());
        chrome.past_due = self
            .principal
            .subscription
            .as_ref()
            .filter(|s| s.status == "past_due")
            .map(|s| PastDue {
                // The grace period runs from the end of the unpaid period (`billing::lifecycle`).
                until: super::format::day(
                    s.current_period_end
                        .plus(chrono::Duration::days(i64::from(self.grace_period_days))),
                ),
                may_pay: self
                    .principal
                    .role()
                    .is_some_and(|r| r.may(crate::domain::Permission::ManageBilling)),
            });
        chrome
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let visitor = Visitor::from_request_parts(parts, app).await?;
        match visitor.principal {
            Some(principal)
                if principal.mfa_enrollment_required()
                    && !accounts::mfa::page_allows_before_enrolment(parts.uri.path()) =>
            {
                Err(Redirect::to("/account/two-factor").into_response())
            }
            Some(principal) => Ok(SignedIn {
                csrf: visitor.csrf,
                principal,
                links: visitor.links,
                grace_period_days: app.config.grace_period_days,
            }),
            None => {
                let here = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let next: String = url_encode(if parts.method == axum::http::Method::GET {
                    here
                } else {
                    "/dashboard"
                });
                Err(Redirect::to(&format!("/login?next={next}")).into_response())
            }
        }
    }
}

pub fn url_encode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// Where to go after logging in: `next` if it is a path on this site, else the dashboard. A
/// `//host` or `/\host` path would leave the site; so would anything with a scheme.
pub fn local_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control() || c == '\\') =>
        {
            n
        }
        _ => "/dashboard",
    }
}

/// A submitted form: the request came from one of our pages (same origin, and the CSRF code
/// matches the visitor's cookie), and its fields parse as `T`. Anything else is refused with
/// 403 (a forged or stale form) or 400 (fields that are not a form), before the handler runs.
pub struct Submitted<T>(pub T);

#[derive(serde::Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Submitted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        if !same_origin(req.headers()) {
            return Err(super::forbidden_page(
                "This form was sent from another site, so it was not accepted.",
            ));
        }
        let seed = req
            .extensions()
            .get::<CsrfSeed>()
            .map(|s| s.0.clone())
            .unwrap_or_default();
        let body = Bytes::from_request(req, app)
            .await
            .map_err(|_| super::bad_request_page())?;
        let field: CsrfField =
            serde_urlencoded::from_bytes(&body).map_err(|_| super::bad_request_page())?;
        let valid = field
            .csrf
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .is_some_and(|code| app.sealer.verify_mac(CSRF_PURPOSE, seed.as_bytes(), &code));
        if !valid {
            return Err(super::forbidden_page(
                "This form has expired or was not sent from this site. Go back, reload the page and try again.",
            ));
        }
        let form = serde_urlencoded::from_bytes(&body).map_err(|_| super::bad_request_page())?;
        Ok(Submitted(form))
    }
}

/// Whether the browser says the request came from this site. `Sec-Fetch-Site` (every current
/// browser sends it) must not be `cross-site` or `same-site` (a sibling subdomain is another
/// site to us); an `Origin` must be the one the request was sent to. A client that sends
/// neither (an old browser, curl) is judged by the CSRF code alone.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return false;
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let origin = origin.to_str().ok();
            match (origin, host) {
                (Some(origin), Some(host)) => {
                    origin
                        .strip_prefix("https://")
                        .or_else(|| origin.strip_prefix("http://"))
                        == Some(host)
                }
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_next(Some("/team?x=1")), "/team?x=1");
        for away in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "",
        ] {
            assert_eq!(local_next(Some(away)), "/dashboard", "{away}");
        }
        assert_eq!(local_next(None), "/dashboard");
    }

    #[test]
    fn session_cookies_are_secure_on_an_https_site() {
        let mut config = Config::defaults();
        config.public_url = "http://localhost:8000".into();
        let plain = start_session(&config, "tok")
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(plain.starts_with("saaskit_session=tok"), "{plain}");
        assert!(
            plain.contains("HttpOnly") && plain.contains("SameSite=Lax"),
            "{plain}"
        );
        assert!(!plain.contains("Secure"), "{plain}");
        config.public_url = "https://app.example".into();
        let secure = start_session(&config, "tok")
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(secure.starts_with("__Host-saaskit_session=tok"), "{secure}");
        assert!(
            secure.contains("Secure") && secure.contains("Path=/"),
            "{secure}"
        );
        let ended = end_session(&config).to_str().unwrap_or_default().to_owned();
        assert!(ended.contains("Max-Age=0"), "{ended}");
    }

    #[test]
    fn cross_site_submissions_are_told_apart() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[
            ("host", "app.example"),
            ("origin", "https://app.example")
        ])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&headers(&[])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!same_origin(&headers(&[
            ("host", "app.example"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "app.example"),
            ("origin", "null")
        ])));
    }
}
