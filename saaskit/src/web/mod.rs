//! The pages: server-rendered HTML for the people who use the product, from the same process
//! as the API. Handlers here parse a form, call the same service the JSON handler calls, and
//! either redirect (POST → 303) or render the page again with messages next to the fields.
//! They hold no SQL and never call `/api/v1`. Forms work without JavaScript.
//!
//! Every page is sent with a strict Content-Security-Policy (no inline script or style, no
//! framing), `nosniff` and `Referrer-Policy: same-origin` (page addresses may carry a mailed
//! key) — only `/billing`, with payments configured, lets Stripe.js in ([`ThirdParty`]); every
//! submitted form passes [`session::Submitted`]'s same-origin and CSRF checks.

mod account;
mod admin;
pub mod assets;
mod audit;
mod auth;
mod billing;
mod dashboard;
pub mod format;
mod forms;
mod identities;
mod invitations;
mod keys;
mod passkeys;
pub mod session;
mod team;
mod two_factor;
mod webhooks;

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Router, middleware};

use crate::app::AppState;
pub use forms::FormErrors;
use session::SignedIn;

/// saaskit's pages: each path with what each method does there. The router is built from it,
/// and the metrics register its paths.
fn page_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/", get(home)),
        ("/signup", get(auth::signup_page).post(auth::signup)),
        ("/login", get(auth::login_page).post(auth::login)),
        ("/login/two-factor", post(auth::login_second_step)),
        ("/login/passkey/start", post(passkeys::start_sign_in)),
        ("/login/passkey/finish", post(passkeys::finish_sign_in)),
        ("/logout", post(auth::logout)),
        (
            "/magic-link",
            get(auth::magic_link_page).post(auth::request_magic_link),
        ),
        (
            "/magic-login",
            get(auth::magic_login_page).post(auth::magic_login),
        ),
        (
            "/forgot-password",
            get(auth::forgot_password_page).post(auth::forgot_password),
        ),
        (
            "/reset-password",
            get(auth::reset_password_page).post(auth::reset_password),
        ),
        (
            "/verify-email",
            get(auth::verify_email_page).post(auth::verify_email),
        ),
        (
            "/invitations/accept",
            get(invitations::accept_invitation_page).post(invitations::accept_invitation),
        ),
        ("/dashboard", get(dashboard::dashboard_page)),
        ("/api-keys", get(keys::show_keys).post(keys::create_key)),
        ("/api-keys/{id}/rotate", post(keys::rotate_key)),
        ("/api-keys/{id}/revoke", post(keys::revoke_key)),
        ("/api-keys/bots", post(keys::create_bot)),
        ("/api-keys/bots/{id}/delete", post(keys::delete_bot)),
        (
            "/webhooks",
            get(webhooks::show_webhooks).post(webhooks::create_webhook),
        ),
        ("/webhooks/{id}", get(webhooks::show_deliveries)),
        ("/webhooks/{id}/test", post(webhooks::send_test)),
        ("/webhooks/{id}/enable", post(webhooks::enable_webhook)),
        ("/webhooks/{id}/disable", post(webhooks::disable_webhook)),
        ("/webhooks/{id}/rotate", post(webhooks::rotate_secret)),
        ("/webhooks/{id}/delete", post(webhooks::delete_webhook)),
        (
            "/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(webhooks::retry_delivery),
        ),
        ("/admin", get(admin::find_businesses)),
        ("/admin/businesses/{id}", get(admin::show_business)),
        ("/admin/users", get(admin::find_user)),
        ("/admin/users/{id}/deactivate", post(admin::deactivate_user)),
        ("/admin/staff/{change}", post(admin::set_staff)),
        (
            "/admin/plans",
            get(admin::show_plans).post(admin::create_plan),
        ),
        (
            "/admin/plans/{code}",
            get(admin::show_plan).post(admin::update_plan),
        ),
        ("/admin/plans/{code}/archive", post(admin::archive_plan)),
        ("/admin/businesses/{id}/credits", post(admin::grant_credits)),
        ("/admin/businesses/{id}/plan", post(admin::set_plan)),
        (
            "/admin/businesses/{id}/deactivate",
            post(admin::deactivate_business),
        ),
        ("/billing", get(billing::show_billing)),
        ("/billing/preview", post(billing::preview_change)),
        ("/billing/change", post(billing::change_plan)),
        ("/billing/cancel", post(billing::cancel_subscription)),
        ("/billing/resume", post(billing::resume_subscription)),
        ("/billing/card", post(billing::save_card)),
        ("/billing/card/setup", post(billing::start_card_setup)),
        ("/billing/card/remove", post(billing::remove_card)),
        ("/billing/top-up", post(billing::top_up)),
        ("/account", get(account::show_account)),
        ("/account/names", post(account::rename)),
        ("/account/password", post(account::change_password)),
        ("/account/verification", post(account::resend_verification)),
        ("/account/delete", post(account::delete_account)),
        ("/account/switch", post(account::switch_business)),
        ("/auth/{provider}/start", get(identities::start)),
        ("/auth/{provider}/callback", get(identities::callback)),
        (
            "/auth/link",
            get(identities::link_page).post(identities::confirm_link),
        ),
        ("/account/identities", get(identities::show_identities)),
        (
            "/account/identities/{id}/remove",
            post(identities::remove_identity),
        ),
        ("/account/two-factor", get(two_factor::show_two_factor)),
        (
            "/account/two-factor/setup",
            get(two_factor::show_setup).post(two_factor::start_setup),
        ),
        (
            "/account/two-factor/confirm",
            post(two_factor::confirm_setup),
        ),
        (
            "/account/two-factor/disable",
            post(two_factor::disable_two_factor),
        ),
        (
            "/account/two-factor/recovery-codes",
            post(two_factor::regenerate_recovery_codes),
        ),
        ("/account/two-factor/passkeys", get(passkeys::show_passkeys)),
        (
            "/account/two-factor/passkeys/register/start",
            post(passkeys::start_registration),
        ),
        (
            "/account/two-factor/passkeys/register/finish",
            post(passkeys::finish_registration),
        ),
        (
            "/account/two-factor/passkeys/{id}/rename",
            post(passkeys::rename_passkey),
        ),
        (
            "/account/two-factor/passkeys/{id}/remove",
            post(passkeys::remove_passkey),
        ),
        ("/sessions", get(account::show_sessions)),
        ("/sessions/{id}/end", post(account::end_session)),
        ("/sessions/end-others", post(account::end_other_sessions)),
        ("/audit-log", get(audit::show_audit_log)),
        ("/team", get(team::show_team)),
        ("/team/name", post(team::rename_business)),
        ("/team/require-mfa", post(team::require_mfa)),
        ("/team/invitations", post(team::invite_member)),
        (
            "/team/invitations/{id}/resend",
            post(team::resend_invitation),
        ),
        (
            "/team/invitations/{id}/revoke",
            post(team::revoke_invitation),
        ),
        ("/team/members/{id}/role", post(team::change_role)),
        ("/team/members/{id}/remove", post(team::remove_member)),
        (
            "/team/members/{id}/transfer",
            post(team::transfer_ownership),
        ),
        ("/assets/{name}", get(assets::get_asset)),
    ]
}

/// The paths of saaskit's pages (the products' are not listed).
pub fn page_paths() -> impl Iterator<Item = &'static str> {
    page_table().into_iter().map(|(path, _)| path)
}

/// Every page route, the products' included. Merged into [`crate::http::router`].
pub fn router(app: &AppState) -> Router<AppState> {
    page_table()
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
        .merge(app.products.pages())
        .layer(middleware::from_fn_with_state(
            app.clone(),
            session::ensure_csrf_cookie,
        ))
        .layer(middleware::map_response(harden))
}

/// `/`: the dashboard for a signed-in person, the login page for anyone else.
async fn home(SignedIn { .. }: SignedIn) -> Redirect {
    Redirect::to("/dashboard")
}

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Origins beyond our own that one page lets in, put in its response's extensions by its
/// handler: Stripe.js on `/billing` (its script, its card frame, the API it calls). No other
/// page loads anything from elsewhere.
#[derive(Debug, Clone)]
pub struct ThirdParty {
    script: String,
    frame: String,
    connect: String,
}

impl ThirdParty {
    /// What Stripe.js from `js_url` needs: its own origin for the script and the card frame,
    /// and the API it calls — Stripe's `api.stripe.com` (and `hooks.stripe.com`, 3-D Secure's
    /// frame) for the real one, the same origin for a stand-in such as localstripe, which
    /// serves both. `None` for an address that is not a plain origin we can put in a policy.
    pub fn stripe(js_url: &str) -> Option<ThirdParty> {
        let origin = crate::payments::origin_of(js_url).filter(|o| {
            o.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:/-[]".contains(&b))
        })?;
        if origin == "https://js.stripe.com" {
            Some(ThirdParty {
                script: origin.clone(),
                frame: format!("{origin} https://hooks.stripe.com"),
                connect: "https://api.stripe.com".into(),
            })
        } else {
            Some(ThirdParty {
                script: origin.clone(),
                frame: origin.clone(),
                connect: origin,
            })
        }
    }

    fn policy(&self) -> String {
        format!(
            "default-src 'none'; script-src 'self' {}; style-src 'self'; img-src 'self' data:; \
             frame-src {}; connect-src 'self' {}; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
            self.script, self.frame, self.connect
        )
    }
}

/// The headers every page carries.
pub async fn harden(mut res: Response) -> Response {
    let policy = res
        .extensions()
        .get::<ThirdParty>()
        .and_then(|t| HeaderValue::from_str(&t.policy()).ok())
        .unwrap_or_else(|| HeaderValue::from_static(POLICY));
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, policy);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// What the layout shows around every page.
pub struct Chrome {
    pub title: String,
    /// The CSRF code every form on the page carries.
    pub csrf: String,
    /// The signed-in person, for the navigation; `None` on the public pages.
    pub nav: Option<Nav>,
    /// A one-line message after a redirect (`?notice=`).
    pub notice: Option<&'static str>,
    pub stylesheet: &'static str,
    pub script: &'static str,
    /// Scripts of this page alone, after ours (Stripe.js, then the page's own).
    pub page_scripts: Vec<String>,
    /// The banner of a business whose renewal payment failed (`past_due`).
    pub past_due: Option<PastDue>,
}

pub struct PastDue {
    /// The last day of the grace period.
    pub until: String,
    /// Whether the person may update the card or buy credits (owners and admins).
    pub may_pay: bool,
}

pub struct Nav {
    pub name: String,
    pub business: String,
    pub is_staff: bool,
    /// The products' pages, after saaskit's.
    pub links: Arc<[NavLink]>,
}

/// An entry of the navigation: a product's page ([`crate::product::Product::nav`]).
#[derive(Debug, Clone)]
pub struct NavLink {
    pub label: String,
    pub path: String,
}

impl Chrome {
    /// The layout for `principal` (`None`: a visitor who is not signed in), with the
    /// products' entries in the navigation.
    pub fn new(
        title: impl Into<String>,
        csrf: &str,
        principal: Option<&crate::accounts::Principal>,
        links: Arc<[NavLink]>,
    ) -> Chrome {
        Chrome {
            title: title.into(),
            csrf: csrf.to_owned(),
            nav: principal.and_then(|p| {
                p.member.as_ref().map(|m| Nav {
                    name: crate::teams::invitations::display_name(
                        &m.first_name,
                        &m.last_name,
                        &m.email,
                    ),
                    business: p.business_name.clone(),
                    is_staff: m.is_staff,
                    links,
                })
            }),
            notice: None,
            stylesheet: &assets::STYLESHEET.path,
            script: &assets::SCRIPT.path,
            page_scripts: Vec::new(),
            past_due: None,
        }
    }

    /// The layout alone, for a page that knows nobody (an error page).
    pub fn bare(title: impl Into<String>) -> Chrome {
        Chrome::new(title, "", None, Arc::from(Vec::new()))
    }

    pub fn notice(mut self, notice: Option<&str>) -> Chrome {
        self.notice = notice.and_then(forms::notice_text);
        self
    }
}

/// Renders a page with `status`. A template that fails to render is a bug: logged, and the
/// visitor sees our error page.
pub fn render(status: StatusCode, page: &impl askama::Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => server_error(anyhow::Error::new(e).context("rendering a page")),
    }
}

#[derive(askama::Template)]
#[template(path = "pages/product.html")]
struct ProductPage {
    chrome: Chrome,
    body: String,
}

/// A product's page: `body`, HTML the product rendered with its own templates (which escape
/// what they show), inside saaskit's layout, with `status`.
pub fn page(chrome: Chrome, status: StatusCode, body: String) -> Response {
    render(status, &ProductPage { chrome, body })
}

#[derive(askama::Template)]
#[template(path = "pages/error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: &'static str,
    message: String,
}

fn error_page(status: StatusCode, heading: &'static str, message: impl Into<String>) -> Response {
    let page = ErrorPage {
        chrome: Chrome::bare(heading),
        heading,
        message: message.into(),
    };
    match askama::Template::render(&page) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, heading).into_response(),
    }
}

/// 500, our own page; the cause is logged, never shown.
pub fn server_error(cause: anyhow::Error) -> Response {
    tracing::error!(error = ?cause, "a page failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Something went wrong on our side. It has been logged; please try again in a moment.",
    )
}

/// 404, our own page, for a browser asking for an address that does not exist.
pub async fn not_found_page() -> Response {
    harden(error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address. Check the link, or go back to your dashboard.",
    ))
    .await
}

pub(crate) fn forbidden_page(message: &str) -> Response {
    error_page(StatusCode::FORBIDDEN, "Not allowed", message)
}

pub(crate) fn bad_request_page() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "That did not work",
        "The form could not be read. Go back, reload the page and try again.",
    )
}

/// A page for an error that is not about one field (an expired link, a refusal), as the API
/// would have answered it: its status, its sentence.
pub fn problem_page(err: crate::error::ApiError) -> Response {
    if err.status.is_server_error() {
        return server_error(
            err.source
                .unwrap_or_else(|| anyhow::anyhow!("{}: {}", err.code, err.detail)),
        );
    }
    let message = forms::sentence(&err);
    error_page(err.status, "That did not work", message)
}

/// Whether a request is a browser's asking for a page (it accepts HTML).
pub fn wants_html(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::ThirdParty;

    #[test]
    fn stripe_js_is_let_in_from_its_origin_only() {
        let real = ThirdParty::stripe("https://js.stripe.com/v3/").map(|t| t.policy());
        let real = real.unwrap_or_default();
        assert!(
            real.contains("script-src 'self' https://js.stripe.com;"),
            "{real}"
        );
        assert!(real.contains("frame-src https://js.stripe.com https://hooks.stripe.com;"));
        assert!(
            real.contains("connect-src 'self' https://api.stripe.com;"),
            "{real}"
        );
        let local = ThirdParty::stripe("http://127.0.0.1:8420/js.stripe.com/v3/")
            .map(|t| t.policy())
            .unwrap_or_default();
        assert!(
            local.contains("connect-src 'self' http://127.0.0.1:8420;"),
            "{local}"
        );
        // Nothing that could end a directive or add a source.
        assert!(ThirdParty::stripe("https://evil.example;script-src *").is_none());
        assert!(ThirdParty::stripe("https://a.example 'unsafe-inline'/x").is_none());
        assert!(ThirdParty::stripe("not a url").is_none());
    }
}
