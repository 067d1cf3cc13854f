//! Signing up, logging in and out (with a password or a mailed sign-in link), a forgotten
//! password, confirming an email address.
//!
//! A page opened from a mailed link (`/reset-password?key=`, `/verify-email?key=`,
//! `/magic-login?key=`) does nothing by being opened: it shows a button, and the POST behind it
//! does the work. Mail scanners that fetch every link in a message must not use up the key.

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, Submitted, Visitor, local_next};
use super::{Chrome, FormErrors, problem_page, render, server_error};
use crate::accounts::{self, magic, reset, verification};
use crate::app::AppState;
use crate::http::accounts::{BusinessInput, SignupRequest, login_with};
use crate::http::extract::Client;

#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    pub notice: Option<String>,
    next: Option<String>,
    key: Option<String>,
}

/// 303 to `to`, opening a session in this browser.
fn signed_in(app: &AppState, token: &str, to: &str) -> Response {
    let mut res = Redirect::to(to).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        session::start_session(&app.config, token),
    );
    res
}

#[derive(Debug, Default, Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    business_name: String,
}

#[derive(askama::Template)]
#[template(path = "pages/auth/signup.html")]
struct SignupPage {
    chrome: Chrome,
    form: SignupForm,
    errors: FormErrors,
}

pub async fn signup_page(visitor: Visitor, Query(q): Query<Notice>) -> Response {
    if visitor.principal.is_some() {
        return Redirect::to("/dashboard").into_response();
    }
    let page = SignupPage {
        chrome: visitor
            .chrome("Create your account")
            .notice(q.notice.as_deref()),
        form: SignupForm::default(),
        errors: FormErrors::default(),
    };
    render(StatusCode::OK, &page)
}

pub async fn signup(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Submitted(mut form): Submitted<SignupForm>,
) -> Response {
    let request = SignupRequest {
        business: Some(BusinessInput {
            name: Some(form.business_name.clone()),
        }),
        email: Some(form.email.clone()),
        first_name: Some(form.first_name.clone()),
        last_name: Some(form.last_name.clone()),
        password: Some(std::mem::take(&mut form.password)),
    };
    let result = match request.parse() {
        Ok(new) => accounts::signup(&app, new, client)
            .await
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    match result {
        Ok(done) => match done.session {
            Some(s) => signed_in(&app, &s.token, "/dashboard?notice=welcome"),
            None => Redirect::to("/login?notice=verify_first").into_response(),
        },
        Err(err) => match FormErrors::from_api(err, &[("business.name", "business_name")]) {
            Ok(errors) => {
                let page = SignupPage {
                    chrome: visitor.chrome("Create your account"),
                    form,
                    errors,
                };
                render(StatusCode::UNPROCESSABLE_ENTITY, &page)
            }
            Err(err) => problem_page(err),
        },
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "pages/auth/login.html")]
struct LoginPage {
    chrome: Chrome,
    email: String,
    next: String,
    errors: FormErrors,
    /// (name, label) of each identity provider: a "Sign in with" button each.
    providers: Vec<(String, String)>,
}

fn providers(app: &AppState) -> Vec<(String, String)> {
    app.identity_providers
        .all()
        .map(|p| (p.name.clone(), p.label.clone()))
        .collect()
}

pub async fn login_page(
    State(app): State<AppState>,
    visitor: Visitor,
    Query(q): Query<Notice>,
) -> Response {
    let next = local_next(q.next.as_deref()).to_owned();
    if visitor.principal.is_some() {
        return Redirect::to(&next).into_response();
    }
    let page = LoginPage {
        chrome: super::passkeys::with_script(visitor.chrome("Log in").notice(q.notice.as_deref())),
        email: String::new(),
        next,
        errors: FormErrors::default(),
        providers: providers(&app),
    };
    render(StatusCode::OK, &page)
}

pub async fn login(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Submitted(form): Submitted<LoginForm>,
) -> Response {
    let next = local_next(form.next.as_deref()).to_owned();
    let mut errors = FormErrors::default();
    if form.email.trim().is_empty() {
        errors.add("email", "Enter your email address.");
    }
    if form.password.is_empty() {
        errors.add("password", "Enter your password.");
    }
    let status = if errors.is_empty() {
        match login_with(&app, &form.email, &form.password, client).await {
            Ok(accounts::SignIn::Session(done)) => {
                return signed_in(&app, &done.session.token, &next);
            }
            Ok(accounts::SignIn::SecondFactor(challenge)) => {
                return second_step_page(&visitor, challenge.token, next, FormErrors::default());
            }
            Err(err) => {
                let status = err.status;
                match FormErrors::from_api(err, &[]) {
                    Ok(e) => errors = e,
                    Err(err) => return problem_page(err),
                }
                status
            }
        }
    } else {
        errors.status()
    };
    let page = LoginPage {
        chrome: super::passkeys::with_script(visitor.chrome("Log in")),
        email: form.email,
        next,
        errors,
        providers: providers(&app),
    };
    render(status, &page)
}

#[derive(askama::Template)]
#[template(path = "pages/auth/two_factor.html")]
struct SecondStepPage {
    chrome: Chrome,
    /// The login's second-step key: in the form only (never in a URL), single-use, 5 minutes.
    mfa_token: String,
    next: String,
    errors: FormErrors,
}

/// The second step of a login (or of a magic link) for a person who signs in with two factors.
pub(super) fn second_step_page(
    visitor: &Visitor,
    mfa_token: String,
    next: String,
    errors: FormErrors,
) -> Response {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        errors.status()
    };
    let page = SecondStepPage {
        chrome: visitor.chrome("Two-factor sign-in"),
        mfa_token,
        next,
        errors,
    };
    render(status, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct SecondStepForm {
    #[serde(default)]
    mfa_token: String,
    #[serde(default)]
    code: String,
    next: Option<String>,
}

/// `POST /login/two-factor`: completes a login with a code (authenticator or recovery).
pub async fn login_second_step(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Submitted(form): Submitted<SecondStepForm>,
) -> Response {
    use crate::accounts::mfa::{self, SecondStepError};
    let next = local_next(form.next.as_deref()).to_owned();
    let mut errors = FormErrors::default();
    if form.code.trim().is_empty() {
        errors.add("code", "Enter the code from your authenticator app.");
        return second_step_page(&visitor, form.mfa_token, next, errors);
    }
    if form.mfa_token.len() > 128 || form.code.len() > 64 {
        return Redirect::to("/login?notice=sign_in_expired").into_response();
    }
    match mfa::complete_login(&app, &form.mfa_token, &form.code, client).await {
        Ok(done) => signed_in(&app, &done.session.token, &next),
        Err(SecondStepError::InvalidToken) => {
            Redirect::to("/login?notice=sign_in_expired").into_response()
        }
        Err(SecondStepError::InvalidCode) => {
            errors.add(
                "code",
                "That code is wrong or was already used. Type the code your app shows now.",
            );
            second_step_page(&visitor, form.mfa_token, next, errors)
        }
        Err(err) => match FormErrors::from_api(err.into(), &[]) {
            Ok(errors) => second_step_page(&visitor, form.mfa_token, next, errors),
            Err(err) => problem_page(err),
        },
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Empty {}

/// `POST /logout`: revokes this browser's session (it is gone for the API too) and forgets it.
pub async fn logout(
    State(app): State<AppState>,
    visitor: Visitor,
    Submitted(_): Submitted<Empty>,
) -> Response {
    if let Some(p) = &visitor.principal
        && let Err(e) = accounts::logout(&app, p).await
    {
        return server_error(e);
    }
    let mut res = Redirect::to("/login?notice=logged_out").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, session::end_session(&app.config));
    res
}

#[derive(Debug, Default, Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    email: String,
}

#[derive(askama::Template)]
#[template(path = "pages/auth/forgot_password.html")]
struct ForgotPage {
    chrome: Chrome,
    email: String,
    errors: FormErrors,
}

pub async fn forgot_password_page(visitor: Visitor, Query(q): Query<Notice>) -> Response {
    let page = ForgotPage {
        chrome: visitor
            .chrome("Forgot your password?")
            .notice(q.notice.as_deref()),
        email: String::new(),
        errors: FormErrors::default(),
    };
    render(StatusCode::OK, &page)
}

/// The same answer whether or not the address has an account (the API's rule, by its service).
pub async fn forgot_password(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Submitted(form): Submitted<ForgotForm>,
) -> Response {
    let mut errors = FormErrors::default();
    if form.email.trim().is_empty() {
        errors.add("email", "Enter the email address of your account.");
    } else {
        match reset::request_reset(&app, form.email.trim(), &client).await {
            Ok(()) => return Redirect::to("/forgot-password?notice=reset_sent").into_response(),
            Err(e) => {
                match FormErrors::from_api(crate::http::passwords::reset_error(e, "password"), &[])
                {
                    Ok(e) => errors = e,
                    Err(err) => return problem_page(err),
                }
            }
        }
    }
    let page = ForgotPage {
        chrome: visitor.chrome("Forgot your password?"),
        email: form.email,
        errors,
    };
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    password: String,
}

#[derive(askama::Template)]
#[template(path = "pages/auth/reset_password.html")]
struct ResetPage {
    chrome: Chrome,
    key: String,
    errors: FormErrors,
}

pub async fn reset_password_page(visitor: Visitor, Query(q): Query<Notice>) -> Response {
    let page = ResetPage {
        chrome: visitor.chrome("Choose a new password"),
        key: q.key.unwrap_or_default(),
        errors: FormErrors::default(),
    };
    render(StatusCode::OK, &page)
}

pub async fn reset_password(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Submitted(form): Submitted<ResetForm>,
) -> Response {
    let mut errors = FormErrors::default();
    if form.password.is_empty() {
        errors.add("password", "Choose a new password.");
    } else {
        match reset::confirm_reset(&app, &form.key, &form.password, client).await {
            Ok(s) => return signed_in(&app, &s.token, "/dashboard?notice=password_changed"),
            Err(e) => {
                match FormErrors::from_api(crate::http::passwords::reset_error(e, "password"), &[])
                {
                    Ok(e) => errors = e,
                    Err(err) => return problem_page(err),
                }
            }
        }
    }
    let page = ResetPage {
        chrome: visitor.chrome("Choose a new password"),
        key: form.key,
        errors,
    };
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    key: String,
}

#[derive(askama::Template)]
#[template(path = "pages/auth/verify_email.html")]
struct VerifyPage {
    chrome: Chrome,
    key: String,
}

pub async fn verify_email_page(visitor: Visitor, Query(q): Query<Notice>) -> Response {
    let page = VerifyPage {
        chrome: visitor.chrome("Confirm your email address"),
        key: q.key.unwrap_or_default(),
    };
    render(StatusCode::OK, &page)
}

pub async fn verify_email(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Submitted(form): Submitted<KeyForm>,
) -> Response {
    match verification::verify(&app, &form.key, &client).await {
        Ok(_) if visitor.principal.is_some() => {
            Redirect::to("/dashboard?notice=email_verified").into_response()
        }
        Ok(_) => Redirect::to("/login?notice=email_verified").into_response(),
        Err(e) => problem_page(e.into()),
    }
}

#[derive(askama::Template)]
#[template(path = "pages/auth/magic_link.html")]
struct MagicLinkPage {
    chrome: Chrome,
    email: String,
    errors: FormErrors,
    valid_minutes: i64,
}

/// `GET /magic-link`: asks for the address to mail a sign-in link to.
pub async fn magic_link_page(visitor: Visitor, Query(q): Query<Notice>) -> Response {
    let page = MagicLinkPage {
        chrome: visitor
            .chrome("Sign in with a mailed link")
            .notice(q.notice.as_deref()),
        email: String::new(),
        errors: FormErrors::default(),
        valid_minutes: magic::KEY_LIFETIME.num_minutes(),
    };
    render(StatusCode::OK, &page)
}

/// `POST /magic-link`: the same answer whether or not the address has an account (the
/// service mails only a registered one).
pub async fn request_magic_link(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Submitted(form): Submitted<ForgotForm>,
) -> Response {
    let mut errors = FormErrors::default();
    let mut status = errors.status();
    if form.email.trim().is_empty() {
        errors.add("email", "Enter the email address of your account.");
    } else {
        match magic::request(&app, form.email.trim(), &client).await {
            Ok(()) => return Redirect::to("/magic-link?notice=magic_link_sent").into_response(),
            Err(e) => {
                let err = crate::error::ApiError::from(e);
                status = err.status;
                match FormErrors::from_api(err, &[]) {
                    Ok(e) => errors = e,
                    Err(err) => return problem_page(err),
                }
            }
        }
    }
    let page = MagicLinkPage {
        chrome: visitor.chrome("Sign in with a mailed link"),
        email: form.email,
        errors,
        valid_minutes: magic::KEY_LIFETIME.num_minutes(),
    };
    render(status, &page)
}

#[derive(askama::Template)]
#[template(path = "pages/auth/magic_login.html")]
struct MagicLoginPage {
    chrome: Chrome,
    key: String,
    /// Why the link did not sign in, as a sentence; the page then offers a new link instead.
    problem: Option<String>,
}

/// `GET /magic-login?key=`: a button, nothing more. Opening the link uses no key (mail scanners
/// fetch links); the POST behind the button does.
pub async fn magic_login_page(visitor: Visitor, Query(q): Query<Notice>) -> Response {
    let page = MagicLoginPage {
        chrome: visitor.chrome("Sign in"),
        key: q.key.unwrap_or_default(),
        problem: None,
    };
    render(StatusCode::OK, &page)
}

/// `POST /magic-login`: a session and the dashboard, or the login's second step for a person
/// with two-factor sign-in (the link replaces the password, not the second factor).
pub async fn magic_login(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Submitted(form): Submitted<KeyForm>,
) -> Response {
    match magic::sign_in(&app, &form.key, client).await {
        Ok(accounts::SignIn::Session(done)) => signed_in(&app, &done.session.token, "/dashboard"),
        Ok(accounts::SignIn::SecondFactor(challenge)) => second_step_page(
            &visitor,
            challenge.token,
            "/dashboard".to_owned(),
            FormErrors::default(),
        ),
        Err(e) => {
            let err = crate::error::ApiError::from(e);
            if err.status.is_server_error() {
                return problem_page(err);
            }
            let page = MagicLoginPage {
                chrome: visitor.chrome("Sign in"),
                key: String::new(),
                problem: Some(super::forms::sentence(&err)),
            };
            render(err.status, &page)
        }
    }
}
