//! Signing in with an identity provider, in the browser: `/auth/{provider}/start` sends the
//! browser to the provider, `/auth/{provider}/callback` is where it comes back; `/auth/link`
//! confirms, from the mailed link, that an identity may sign in to an existing account; and
//! `/account/identities` lists the linked ones, with Remove and "Link <provider>".
//!
//! A sign-in is bound to the browser that started it: the state also goes into a short-lived
//! cookie, and a callback without the matching cookie is refused (someone else's sign-in,
//! replayed into this browser, links or signs in nobody).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::second_step_page;
use super::session::{self, SignedIn, Submitted, Visitor, local_next};
use super::{Chrome, FormErrors, problem_page, render};
use crate::accounts::SignIn;
use crate::accounts::identities::{self, Callback, Finished, IdentityError};
use crate::app::AppState;
use crate::config::Config;
use crate::http::extract::Client;

/// The cookie that binds a sign-in to the browser that started it.
fn binding_cookie(config: &Config) -> String {
    if secure(config) {
        "__Host-saaskit_oidc".to_owned()
    } else {
        "saaskit_oidc".to_owned()
    }
}

fn secure(config: &Config) -> bool {
    config.public_base().starts_with("https://")
}

fn binding(config: &Config, value: String, max_age_secs: i64) -> HeaderValue {
    // `Lax`: sent on the provider's top-level redirect back to us.
    let cookie = Cookie::build((binding_cookie(config), value))
        .path("/")
        .http_only(true)
        .secure(secure(config))
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn read_binding(config: &Config, headers: &HeaderMap) -> Option<String> {
    let name = binding_cookie(config);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A redirect that is a page too (a line of HTML with the link), as every answer of these
/// browser-only routes is: `to` is ours (a local path) or the provider's authorization address.
fn redirect(status: StatusCode, to: &str) -> Response {
    let escaped = to
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body =
        format!("<!doctype html><title>Redirecting</title><a href=\"{escaped}\">Continue</a>");
    let mut res = (status, axum::response::Html(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    res
}

/// 303 to `to`, opening a session in this browser.
fn signed_in(app: &AppState, token: &str, to: &str) -> Response {
    let mut res = redirect(StatusCode::SEE_OTHER, to);
    res.headers_mut().append(
        header::SET_COOKIE,
        session::start_session(&app.config, token),
    );
    res
}

#[derive(askama::Template)]
#[template(path = "pages/identities/message.html")]
struct MessagePage {
    chrome: Chrome,
    heading: &'static str,
    message: String,
    /// A link to offer, with its words.
    action: Option<(&'static str, &'static str)>,
}

fn message(
    visitor: &Visitor,
    status: StatusCode,
    heading: &'static str,
    message: String,
    action: Option<(&'static str, &'static str)>,
) -> Response {
    render(
        status,
        &MessagePage {
            chrome: visitor.chrome(heading),
            heading,
            message,
            action,
        },
    )
}

/// An error as a page: ours for the sign-in's own failures (400, with a way to start again),
/// the API's sentence for the rest.
fn failure(visitor: &Visitor, err: IdentityError) -> Response {
    let api = crate::error::ApiError::from(err);
    if api.status.is_server_error() {
        return problem_page(api);
    }
    let status = api.status;
    message(
        visitor,
        status,
        "Sign-in did not work",
        super::forms::sentence(&api),
        Some(("/login", "Back to the login page")),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

/// `GET /auth/{provider}/start`: 302 to the provider. Started by a signed-in person, the
/// identity will be linked to them.
pub async fn start(
    State(app): State<AppState>,
    visitor: Visitor,
    Path(provider): Path<String>,
    Query(q): Query<StartQuery>,
) -> Response {
    let link_to = visitor.principal.as_ref().and_then(|p| p.user_id());
    let next = q.next.as_deref().map(|n| local_next(Some(n)));
    match identities::start(&app, &provider, link_to, next).await {
        Ok(started) => {
            let mut res = redirect(StatusCode::FOUND, &started.url);
            let max_age = identities::SIGN_IN_LIFETIME.num_seconds();
            res.headers_mut().append(
                header::SET_COOKIE,
                binding(&app.config, started.state, max_age),
            );
            res
        }
        Err(IdentityError::UnknownProvider) => super::not_found_page().await,
        Err(e) => failure(&visitor, e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

/// `GET /auth/{provider}/callback`: where the provider sends the browser back.
pub async fn callback(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    headers: HeaderMap,
    Path(provider): Path<String>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let bound = read_binding(&app.config, &headers);
    let mut res = if q.state.is_none() || bound != q.state {
        failure(&visitor, IdentityError::InvalidState)
    } else {
        let callback = Callback {
            code: q.code.as_deref(),
            state: q.state.as_deref(),
            iss: q.iss.as_deref(),
            error: q.error.as_deref(),
        };
        finished(
            &app,
            &visitor,
            identities::finish(&app, &provider, callback, client).await,
        )
    };
    // Used or not, this sign-in is over for this browser.
    res.headers_mut()
        .append(header::SET_COOKIE, binding(&app.config, String::new(), 0));
    res
}

fn finished(
    app: &AppState,
    visitor: &Visitor,
    result: Result<Finished, IdentityError>,
) -> Response {
    match result {
        Ok(Finished::SignIn { sign_in, next }) => {
            signed_in_or_second_step(app, visitor, sign_in, next)
        }
        Ok(Finished::Linked { provider, already }) => {
            let done = if already { "already" } else { "linked" };
            redirect(
                StatusCode::SEE_OTHER,
                &format!(
                    "/account/identities?{done}={}",
                    session::url_encode(&provider)
                ),
            )
        }
        Ok(Finished::ConfirmationMailed { .. }) => message(
            visitor,
            StatusCode::OK,
            "Check your mail",
            "An account already uses this email address. To let this provider sign you in to \
             it, open the link we just mailed to the address and confirm; it works once, \
             within 30 minutes. Until then, nothing is linked."
                .to_owned(),
            None,
        ),
        Ok(Finished::Refused { provider }) => message(
            visitor,
            StatusCode::CONFLICT,
            "Log in first",
            format!(
                "An account already uses this email address, and {provider} does not confirm \
                 that the address is yours, so it cannot sign you in to that account. Log in \
                 with your password (or a mailed link), then link {provider} from your \
                 account's sign-in methods."
            ),
            Some(("/login", "Log in")),
        ),
        Err(e) => failure(visitor, e),
    }
}

fn signed_in_or_second_step(
    app: &AppState,
    visitor: &Visitor,
    sign_in: SignIn,
    next: String,
) -> Response {
    match sign_in {
        SignIn::Session(done) => signed_in(app, &done.session.token, &next),
        SignIn::SecondFactor(challenge) => {
            second_step_page(visitor, challenge.token, next, FormErrors::default())
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct KeyQuery {
    key: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "pages/identities/link.html")]
struct LinkPage {
    chrome: Chrome,
    key: String,
}

/// `GET /auth/link?key=`: a button, nothing more (mail scanners fetch links).
pub async fn link_page(visitor: Visitor, Query(q): Query<KeyQuery>) -> Response {
    let page = LinkPage {
        chrome: visitor.chrome("Confirm the sign-in method"),
        key: q.key.unwrap_or_default(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    key: String,
}

/// `POST /auth/link`: links the identity the mailed key names, and signs in.
pub async fn confirm_link(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Submitted(form): Submitted<KeyForm>,
) -> Response {
    match identities::confirm_link(&app, &form.key, client).await {
        Ok(sign_in) => signed_in_or_second_step(
            &app,
            &visitor,
            sign_in,
            "/account/identities?linked=".to_owned(),
        ),
        Err(e) => failure(&visitor, e),
    }
}

struct IdentityRow {
    id: Uuid,
    provider: String,
    email: String,
    linked: String,
}

#[derive(askama::Template)]
#[template(path = "pages/identities/list.html")]
struct IdentitiesPage {
    chrome: Chrome,
    identities: Vec<IdentityRow>,
    /// (name, label) of every configured provider.
    providers: Vec<(String, String)>,
    notice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    linked: Option<String>,
    already: Option<String>,
    removed: Option<String>,
}

/// `GET /account/identities`: the sign-in methods from providers.
pub async fn show_identities(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<ListQuery>,
) -> Response {
    let listed = match identities::list(&app, &signed_in.principal).await {
        Ok(l) => l,
        Err(e) => return problem_page(e.into()),
    };
    let named = |p: &String| {
        if p.is_empty() {
            "the provider".to_owned()
        } else {
            p.clone()
        }
    };
    let notice = if let Some(p) = &q.linked {
        Some(format!(
            "Sign-in with {} is linked to your account.",
            named(p)
        ))
    } else if let Some(p) = &q.already {
        Some(format!(
            "Sign-in with {} was already linked to your account.",
            named(p)
        ))
    } else {
        q.removed
            .as_ref()
            .map(|p| format!("Sign-in with {} is removed.", named(p)))
    };
    let page = IdentitiesPage {
        chrome: signed_in.chrome("Sign-in methods"),
        identities: listed
            .into_iter()
            .map(|i| IdentityRow {
                id: i.id,
                provider: app.identity_providers.label_of(&i.provider),
                email: i.email.unwrap_or_default(),
                linked: super::format::day(i.created_at),
            })
            .collect(),
        providers: app
            .identity_providers
            .all()
            .map(|p| (p.name.clone(), p.label.clone()))
            .collect(),
        notice,
    };
    render(StatusCode::OK, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct Empty {}

/// `POST /account/identities/{id}/remove`
pub async fn remove_identity(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    let provider = identities::list(&app, &signed_in.principal)
        .await
        .ok()
        .and_then(|l| l.into_iter().find(|i| i.id == id))
        .map(|i| app.identity_providers.label_of(&i.provider))
        .unwrap_or_default();
    match identities::remove(&app, &signed_in.principal, id).await {
        Ok(()) => redirect(
            StatusCode::SEE_OTHER,
            &format!(
                "/account/identities?removed={}",
                session::url_encode(&provider)
            ),
        ),
        Err(e) => problem_page(e.into()),
    }
}
