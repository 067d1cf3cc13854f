//! `/account` (names, password, email confirmation, two-factor sign-in's state, the businesses
//! one belongs to and switching between them, deleting the account) and `/sessions` (where one is
//! logged in; ending them).

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Empty, Notice};
use super::format::{day, moment};
use super::session::{self, SignedIn, Submitted};
use super::{FormErrors, problem_page, render};
use crate::accounts::{mfa, sessions, verification};
use crate::app::AppState;
use crate::domain::PersonName;
use crate::error::{ApiError, FieldError};
use crate::http::accounts::Fields;
use crate::http::extract::Client;

pub struct BusinessRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub current: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct NamesForm {
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
}

#[derive(askama::Template)]
#[template(path = "pages/account.html")]
struct AccountPage {
    chrome: super::Chrome,
    email: String,
    verified: bool,
    names: NamesForm,
    businesses: Vec<BusinessRow>,
    two_factor: mfa::Status,
    errors: FormErrors,
}

async fn account_page(
    app: &AppState,
    signed_in: &SignedIn,
    notice: Option<&str>,
    names: Option<NamesForm>,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let p = &signed_in.principal;
    let Some(me) = p.person() else {
        return problem_page(ApiError::not_found());
    };
    let businesses = match sessions::businesses_of(app, p).await {
        Ok(rows) => rows
            .into_iter()
            .map(|b| BusinessRow {
                current: b.business_id == p.business_id,
                id: b.business_id,
                name: b.name,
                role: b.role,
            })
            .collect(),
        Err(e) => return problem_page(e.into()),
    };
    let two_factor = match mfa::status(app, p).await {
        Ok(s) => s,
        Err(e) => return problem_page(e.into()),
    };
    let page = AccountPage {
        chrome: signed_in.chrome("Your account").notice(notice),
        email: me.email.clone(),
        verified: me.email_verified_at.is_some(),
        names: names.unwrap_or_else(|| NamesForm {
            first_name: me.first_name.clone(),
            last_name: me.last_name.clone(),
        }),
        businesses,
        two_factor,
        errors,
    };
    render(status, &page)
}

pub async fn show_account(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<Notice>,
) -> Response {
    account_page(
        &app,
        &signed_in,
        q.notice.as_deref(),
        None,
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

async fn refused(
    app: &AppState,
    signed_in: &SignedIn,
    names: Option<NamesForm>,
    err: ApiError,
    rename: &[(&str, &str)],
) -> Response {
    let status = err.status;
    match FormErrors::from_api(err, rename) {
        Ok(errors) => account_page(app, signed_in, None, names, errors, status).await,
        Err(err) => problem_page(err),
    }
}

pub async fn rename(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<NamesForm>,
) -> Response {
    let mut f = Fields::default();
    let first = f.check("first_name", PersonName::parse(&form.first_name));
    if first.as_ref().is_some_and(PersonName::is_empty) {
        f.push("first_name", "required", "A first name is required.");
    }
    let last = f.check("last_name", PersonName::parse(&form.last_name));
    let result = match (f.finish(), first, last) {
        (Ok(()), Some(first), Some(last)) => {
            sessions::rename(&app, &signed_in.principal, &first, &last)
                .await
                .map_err(Into::into)
        }
        (Err(e), _, _) => Err(e),
        _ => Err(ApiError::validation(Vec::new())),
    };
    match result {
        Ok(()) => Redirect::to("/account?notice=renamed").into_response(),
        Err(err) => refused(&app, &signed_in, Some(form), err, &[]).await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn change_password(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<PasswordForm>,
) -> Response {
    match sessions::change_password(
        &app,
        &signed_in.principal,
        &form.current_password,
        &form.new_password,
    )
    .await
    {
        Ok(_) => Redirect::to("/account?notice=password_changed").into_response(),
        Err(sessions::SessionError::WrongPassword) => {
            let err = ApiError::validation(vec![FieldError::new(
                "current_password",
                "incorrect",
                "This is not your current password.",
            )]);
            refused(&app, &signed_in, None, err, &[]).await
        }
        Err(e) => {
            refused(
                &app,
                &signed_in,
                None,
                e.into(),
                &[("password", "new_password")],
            )
            .await
        }
    }
}

pub async fn resend_verification(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match verification::resend(&app, &signed_in.principal).await {
        Ok(_) => Redirect::to("/account?notice=verification_sent").into_response(),
        Err(e) => refused(&app, &signed_in, None, e.into(), &[]).await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    password: String,
}

pub async fn delete_account(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<DeleteForm>,
) -> Response {
    match sessions::delete_account(&app, &signed_in.principal, &form.password).await {
        Ok(_) => {
            let mut res = Redirect::to("/login?notice=account_deleted").into_response();
            res.headers_mut()
                .append(header::SET_COOKIE, session::end_session(&app.config));
            res
        }
        Err(sessions::SessionError::WrongPassword) => {
            let err = ApiError::validation(vec![FieldError::new(
                "delete_password",
                "incorrect",
                "This is not your current password.",
            )]);
            refused(&app, &signed_in, None, err, &[]).await
        }
        Err(e) => refused(&app, &signed_in, None, e.into(), &[]).await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SwitchForm {
    business_id: Option<Uuid>,
}

/// `POST /account/switch`: a new session for another of one's businesses, in this browser.
pub async fn switch_business(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Client(client): Client,
    Submitted(form): Submitted<SwitchForm>,
) -> Response {
    let Some(id) = form.business_id else {
        return problem_page(ApiError::not_found());
    };
    match sessions::switch_business(&app, &signed_in.principal, id, client).await {
        Ok((new_session, _)) => {
            let mut res = Redirect::to("/dashboard?notice=switched").into_response();
            res.headers_mut().append(
                header::SET_COOKIE,
                session::start_session(&app.config, &new_session.token),
            );
            res
        }
        Err(e) => refused(&app, &signed_in, None, e.into(), &[]).await,
    }
}

pub struct SessionRow {
    pub id: Uuid,
    pub current: bool,
    pub device: String,
    pub address: String,
    pub started: String,
    pub last_used: String,
}

#[derive(askama::Template)]
#[template(path = "pages/sessions.html")]
struct SessionsPage {
    chrome: super::Chrome,
    sessions: Vec<SessionRow>,
}

pub async fn show_sessions(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<Notice>,
) -> Response {
    let listed = match sessions::list(&app, &signed_in.principal).await {
        Ok(l) => l,
        Err(e) => return problem_page(e.into()),
    };
    let rows = listed
        .into_iter()
        .map(|s| SessionRow {
            id: s.row.id,
            current: s.current,
            device: s
                .row
                .user_agent
                .clone()
                .unwrap_or_else(|| "Unknown device".to_owned()),
            address: s.row.ip.clone().unwrap_or_else(|| "—".to_owned()),
            started: day(s.row.created_at),
            last_used: s.row.last_used_at.map_or_else(|| "—".to_owned(), moment),
        })
        .collect();
    let page = SessionsPage {
        chrome: signed_in.chrome("Sessions").notice(q.notice.as_deref()),
        sessions: rows,
    };
    render(StatusCode::OK, &page)
}

pub async fn end_session(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match sessions::revoke(&app, &signed_in.principal, id).await {
        Ok(()) => Redirect::to("/sessions?notice=session_ended").into_response(),
        Err(e) => problem_page(e.into()),
    }
}

pub async fn end_other_sessions(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match sessions::revoke_others(&app, &signed_in.principal).await {
        Ok(_) => Redirect::to("/sessions?notice=sessions_ended").into_response(),
        Err(e) => problem_page(e.into()),
    }
}
