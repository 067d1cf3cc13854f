//! `/account/two-factor`: one's own second factor. Setting up an authenticator app (a QR code
//! and the key in text, then a first code), the recovery codes shown once, turning it off and
//! making new codes (each after the password). The rules live in `accounts::mfa`.
//!
//! A person whose business requires a second factor they lack is sent here from every other
//! page ([`super::session::SignedIn`]), so these pages must never link them anywhere else first.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{Empty, Notice};
use super::session::{SignedIn, Submitted};
use super::{Chrome, FormErrors, problem_page, render};
use crate::accounts::mfa::{self, MfaError, Status};
use crate::app::AppState;

#[derive(askama::Template)]
#[template(path = "pages/account/two_factor.html")]
struct TwoFactorPage {
    chrome: Chrome,
    status: Status,
    /// The business requires a second factor and the person has none yet.
    required: bool,
    /// The business requires one (turning it off means setting it up again at once).
    business_requires: bool,
    errors: FormErrors,
}

async fn two_factor_page(
    app: &AppState,
    signed_in: &SignedIn,
    notice: Option<&str>,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let p = &signed_in.principal;
    let found = match mfa::status(app, p).await {
        Ok(s) => s,
        Err(e) => return problem_page(e.into()),
    };
    let page = TwoFactorPage {
        chrome: signed_in.chrome("Two-factor sign-in").notice(notice),
        status: found,
        required: p.mfa_enrollment_required(),
        business_requires: p.business_require_mfa,
        errors,
    };
    render(status, &page)
}

/// `GET /account/two-factor`
pub async fn show_two_factor(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<Notice>,
) -> Response {
    two_factor_page(
        &app,
        &signed_in,
        q.notice.as_deref(),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// A refusal as the two-factor pages word it: their own sentences where the API's would name
/// API routes, the field it concerns where it concerns one. Server errors are not a form's
/// business (`Err`, for the error page).
fn refusal(err: MfaError, password_field: &str) -> Result<FormErrors, crate::error::ApiError> {
    let mut errors = FormErrors::default();
    match err {
        MfaError::WrongPassword => errors.add(password_field, "This is not your password."),
        MfaError::InvalidCode => errors.add(
            "code",
            "That is not the code your app shows now. Check that the device's clock is right, \
             and type the six digits it shows.",
        ),
        MfaError::SetupRequired => {
            errors.general = Some(
                "No set-up is waiting for a code. Start again with “Set up an authenticator app”."
                    .to_owned(),
            );
        }
        MfaError::AlreadyEnabled => {
            errors.general = Some("Two-factor sign-in is already on.".to_owned());
        }
        MfaError::NotEnabled => {
            errors.general = Some("Two-factor sign-in is already off.".to_owned());
        }
        other => return FormErrors::from_api(other.into(), &[]),
    }
    Ok(errors)
}

/// The status page again, with what went wrong.
async fn refused(
    app: &AppState,
    signed_in: &SignedIn,
    err: MfaError,
    password_field: &str,
) -> Response {
    let status = match &err {
        MfaError::WrongPassword | MfaError::InvalidCode => StatusCode::UNPROCESSABLE_ENTITY,
        MfaError::SetupRequired | MfaError::AlreadyEnabled | MfaError::NotEnabled => {
            StatusCode::CONFLICT
        }
        MfaError::NotAPerson => StatusCode::FORBIDDEN,
        MfaError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
        MfaError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    match refusal(err, password_field) {
        Ok(errors) => two_factor_page(app, signed_in, None, errors, status).await,
        Err(err) => problem_page(err),
    }
}

/// Pages that show a secret (the seed, recovery codes) are not kept by any cache.
fn not_stored(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `POST /account/two-factor/setup`: a new seed waiting for its first code, then (303) the page
/// that shows it — so reloading that page shows the same seed instead of replacing it.
pub async fn start_setup(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match mfa::setup(&app, &signed_in.principal).await {
        Ok(_) => Redirect::to("/account/two-factor/setup").into_response(),
        Err(e) => refused(&app, &signed_in, e, "").await,
    }
}

#[derive(askama::Template)]
#[template(path = "pages/account/two_factor_setup.html")]
struct SetupPage {
    chrome: Chrome,
    /// The QR code: SVG markup that `qrcode` generated from the `otpauth://` URI (our own
    /// markup, no text of anyone's in it but the URI's, which the crate encodes as modules).
    qr_svg: String,
    /// The seed in groups of four, for typing by hand.
    secret_groups: String,
    errors: FormErrors,
}

/// The set-up page for the seed waiting, or back to `/account/two-factor` when none waits.
async fn setup_page(app: &AppState, signed_in: &SignedIn, errors: FormErrors) -> Response {
    let pending = match mfa::pending_setup(app, &signed_in.principal).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/account/two-factor").into_response(),
        Err(e) => return problem_page(e.into()),
    };
    // The SVG is a document of its own; inside a page its XML declaration is noise.
    let qr_svg = pending
        .qr_svg
        .find("<svg")
        .map_or(pending.qr_svg.as_str(), |at| &pending.qr_svg[at..])
        .to_owned();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        errors.status()
    };
    let page = SetupPage {
        chrome: signed_in.chrome("Set up an authenticator app"),
        qr_svg,
        secret_groups: groups_of_four(&pending.secret),
        errors,
    };
    not_stored(render(status, &page))
}

fn groups_of_four(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `GET /account/two-factor/setup`
pub async fn show_setup(State(app): State<AppState>, signed_in: SignedIn) -> Response {
    setup_page(&app, &signed_in, FormErrors::default()).await
}

#[derive(askama::Template)]
#[template(path = "pages/account/recovery_codes.html")]
struct RecoveryCodesPage {
    chrome: Chrome,
    /// Two-factor sign-in was just turned on (rather than the codes renewed).
    turned_on: bool,
    codes: Vec<String>,
}

fn recovery_codes_page(signed_in: &SignedIn, turned_on: bool, codes: Vec<String>) -> Response {
    let title = if turned_on {
        "Two-factor sign-in is on"
    } else {
        "Your new recovery codes"
    };
    let page = RecoveryCodesPage {
        chrome: signed_in.chrome(title),
        turned_on,
        codes,
    };
    not_stored(render(StatusCode::OK, &page))
}

#[derive(Debug, Default, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

/// `POST /account/two-factor/confirm`: the first code turns two-factor sign-in on; the recovery
/// codes are shown in the answer, this once (not behind a redirect: they are not kept).
pub async fn confirm_setup(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<CodeForm>,
) -> Response {
    if form.code.trim().is_empty() {
        let mut errors = FormErrors::default();
        errors.add("code", "Enter the six-digit code your app shows.");
        return setup_page(&app, &signed_in, errors).await;
    }
    match mfa::confirm(&app, &signed_in.principal, &form.code).await {
        Ok(codes) => recovery_codes_page(&signed_in, true, codes),
        Err(MfaError::InvalidCode) => match refusal(MfaError::InvalidCode, "") {
            Ok(errors) => setup_page(&app, &signed_in, errors).await,
            Err(err) => problem_page(err),
        },
        Err(e) => refused(&app, &signed_in, e, "").await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DisableForm {
    #[serde(default)]
    disable_password: String,
}

/// `POST /account/two-factor/disable`
pub async fn disable_two_factor(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<DisableForm>,
) -> Response {
    if form.disable_password.is_empty() {
        let mut errors = FormErrors::default();
        errors.add("disable_password", "Enter your password.");
        let status = errors.status();
        return two_factor_page(&app, &signed_in, None, errors, status).await;
    }
    match mfa::disable(&app, &signed_in.principal, &form.disable_password).await {
        Ok(()) => Redirect::to("/account/two-factor?notice=mfa_disabled").into_response(),
        Err(e) => refused(&app, &signed_in, e, "disable_password").await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NewCodesForm {
    #[serde(default)]
    codes_password: String,
}

/// `POST /account/two-factor/recovery-codes`: a new set, shown once; the old ones stop working.
pub async fn regenerate_recovery_codes(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<NewCodesForm>,
) -> Response {
    if form.codes_password.is_empty() {
        let mut errors = FormErrors::default();
        errors.add("codes_password", "Enter your password.");
        let status = errors.status();
        return two_factor_page(&app, &signed_in, None, errors, status).await;
    }
    match mfa::regenerate_recovery_codes(&app, &signed_in.principal, &form.codes_password).await {
        Ok(codes) => recovery_codes_page(&signed_in, false, codes),
        Err(e) => refused(&app, &signed_in, e, "codes_password").await,
    }
}

#[cfg(test)]
mod tests {
    use super::groups_of_four;

    #[test]
    fn the_key_is_shown_in_groups_of_four() {
        assert_eq!(groups_of_four("ABCDEFGHIJ"), "ABCD EFGH IJ");
        assert_eq!(groups_of_four(""), "");
    }
}
