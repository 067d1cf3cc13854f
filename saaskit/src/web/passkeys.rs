//! `/account/two-factor/passkeys`: one's own passkeys (listed, renamed, removed with plain
//! forms; added through the page's script, since only a browser's script can ask an
//! authenticator), and the passwordless sign-in behind `/login`'s "Sign in with a passkey".
//! The rules live in `accounts::passkeys`.
//!
//! The page lives under `/account/two-factor/` because a passkey is a second factor: a person
//! whose business requires one must be able to reach it before they have any.
//!
//! The four ceremony routes answer JSON to `assets/passkeys.js` (`{ceremony, options}`, then
//! `{redirect}`, or `{error}` with a sentence to show). They are forms all the same: the script
//! posts the page's CSRF code, and [`Submitted`] checks it and the origin before they run.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::{Empty, Notice};
use super::format::moment;
use super::session::{self, SignedIn, Submitted, local_next};
use super::{Chrome, FormErrors, assets, problem_page, render};
use crate::accounts::passkeys::{self, PasskeyError};
use crate::app::AppState;
use crate::error::ApiError;
use crate::http::extract::Client;

pub struct PasskeyRow {
    pub id: Uuid,
    pub name: String,
    pub added: String,
    pub last_used: String,
}

#[derive(askama::Template)]
#[template(path = "pages/account/passkeys.html")]
struct PasskeysPage {
    chrome: Chrome,
    passkeys: Vec<PasskeyRow>,
    /// The business requires a second factor and the person has none yet.
    required: bool,
    errors: FormErrors,
}

async fn passkeys_page(
    app: &AppState,
    signed_in: &SignedIn,
    notice: Option<&str>,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let p = &signed_in.principal;
    let found = match passkeys::list(app, p).await {
        Ok(found) => found,
        Err(e) => return problem_page(e.into()),
    };
    let page = PasskeysPage {
        chrome: with_script(signed_in.chrome("Passkeys").notice(notice)),
        passkeys: found
            .into_iter()
            .map(|k| PasskeyRow {
                id: k.id,
                name: k.name,
                added: moment(k.created_at),
                last_used: k.last_used_at.map_or_else(|| "Never".to_owned(), moment),
            })
            .collect(),
        required: p.mfa_enrollment_required(),
        errors,
    };
    render(status, &page)
}

/// `chrome` with the passkeys script (on the passkeys page and `/login` only).
pub(super) fn with_script(mut chrome: Chrome) -> Chrome {
    chrome.page_scripts = vec![assets::PASSKEYS_SCRIPT.path.clone()];
    chrome
}

/// `GET /account/two-factor/passkeys`
pub async fn show_passkeys(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<Notice>,
) -> Response {
    passkeys_page(
        &app,
        &signed_in,
        q.notice.as_deref(),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// A refusal as a person reads it, in one sentence (a passkey's forms have no field to put it
/// beside), with its status; a server error stays an error (the caller logs it or shows the
/// error page).
fn worded(err: PasskeyError) -> Result<(StatusCode, String), ApiError> {
    let err = ApiError::from(err);
    let status = err.status;
    Ok((status, FormErrors::from_api(err, &[])?.summary()))
}

async fn refused(app: &AppState, signed_in: &SignedIn, err: PasskeyError) -> Response {
    match worded(err) {
        Ok((status, message)) => {
            let mut errors = FormErrors::default();
            errors.general = Some(message);
            passkeys_page(app, signed_in, None, errors, status).await
        }
        Err(err) => problem_page(err),
    }
}

/// The JSON answer to the page's script for a refusal: `{"error": <sentence>}`.
fn script_refused(err: PasskeyError, what: &str) -> Response {
    let (status, message) = match worded(err) {
        Ok(said) => said,
        Err(err) => {
            tracing::error!(error = ?err.source, code = err.code, "{what} failed");
            (
                err.status,
                "Something went wrong on our side. Try again in a moment.".to_owned(),
            )
        }
    };
    (status, Json(json!({ "error": message }))).into_response()
}

fn ceremony_answer(started: passkeys::Started) -> Response {
    Json(json!({ "ceremony": started.ceremony, "options": started.options })).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    name: String,
}

/// `POST /account/two-factor/passkeys/{id}/rename`
pub async fn rename_passkey(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(form): Submitted<RenameForm>,
) -> Response {
    match passkeys::rename(&app, &signed_in.principal, id, &form.name).await {
        Ok(_) => {
            Redirect::to("/account/two-factor/passkeys?notice=passkey_renamed").into_response()
        }
        Err(e) => refused(&app, &signed_in, e).await,
    }
}

/// `POST /account/two-factor/passkeys/{id}/remove`
pub async fn remove_passkey(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match passkeys::remove(&app, &signed_in.principal, id).await {
        Ok(()) => {
            Redirect::to("/account/two-factor/passkeys?notice=passkey_removed").into_response()
        }
        Err(e) => refused(&app, &signed_in, e).await,
    }
}

/// `POST /account/two-factor/passkeys/register/start`, from the page's script: the options for
/// `navigator.credentials.create`.
pub async fn start_registration(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match passkeys::start_registration(&app, &signed_in.principal).await {
        Ok(started) => ceremony_answer(started),
        Err(e) => script_refused(e, "starting a passkey registration"),
    }
}

/// What the script sends back: the ceremony, and the authenticator's answer
/// (`PublicKeyCredential.toJSON()`) as JSON text in a form field.
#[derive(Debug, Default, Deserialize)]
pub struct CeremonyForm {
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
    name: Option<String>,
    next: Option<String>,
}

impl CeremonyForm {
    fn parse(&self) -> Option<(Uuid, Value)> {
        let ceremony = self.ceremony.parse::<Uuid>().ok()?;
        let credential = serde_json::from_str::<Value>(&self.credential).ok()?;
        Some((ceremony, credential))
    }
}

fn incomplete() -> Response {
    let message = "The browser's answer was incomplete. Reload the page and try again.";
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "error": message })),
    )
        .into_response()
}

/// `POST /account/two-factor/passkeys/register/finish`: the passkey is kept; the script goes
/// to `{"redirect"}`.
pub async fn finish_registration(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<CeremonyForm>,
) -> Response {
    let Some((ceremony, credential)) = form.parse() else {
        return incomplete();
    };
    // An empty name is the default one, as the API has it.
    let name = form.name.as_deref().filter(|n| !n.trim().is_empty());
    match passkeys::finish_registration(&app, &signed_in.principal, ceremony, credential, name)
        .await
    {
        Ok(_) => Json(json!({"redirect": "/account/two-factor/passkeys?notice=passkey_added"}))
            .into_response(),
        Err(e) => script_refused(e, "finishing a passkey registration"),
    }
}

/// `POST /login/passkey/start`, from `/login`'s script: the options for
/// `navigator.credentials.get`.
pub async fn start_sign_in(
    State(app): State<AppState>,
    Client(client): Client,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match passkeys::start_sign_in(&app, &client).await {
        Ok(started) => ceremony_answer(started),
        Err(e) => script_refused(e, "starting a passkey sign-in"),
    }
}

/// `POST /login/passkey/finish`: a session in this browser (its cookie set here), and where
/// the script goes next (`{"redirect"}`: the page the login was for, else the dashboard).
pub async fn finish_sign_in(
    State(app): State<AppState>,
    Client(client): Client,
    Submitted(form): Submitted<CeremonyForm>,
) -> Response {
    let Some((ceremony, credential)) = form.parse() else {
        return incomplete();
    };
    match passkeys::finish_sign_in(&app, ceremony, credential, client).await {
        Ok(done) => {
            let next = local_next(form.next.as_deref());
            let mut res = Json(json!({ "redirect": next })).into_response();
            res.headers_mut().append(
                header::SET_COOKIE,
                session::start_session(&app.config, &done.session.token),
            );
            res
        }
        Err(e) => script_refused(e, "a passkey sign-in"),
    }
}
