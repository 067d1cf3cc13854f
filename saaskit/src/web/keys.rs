//! `/api-keys`: the business's API keys and bots. A new secret (a key created or rotated, a
//! bot's token) is shown once, on the page that answers the form, with a copy button; it is
//! stored nowhere in clear and never shown again.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Empty, Notice};
use super::format::{day, moment};
use super::session::{SignedIn, Submitted};
use super::{Chrome, FormErrors, problem_page, render};
use crate::app::AppState;
use crate::domain::Permission;
use crate::error::ApiError;
use crate::http::keys::{CreateBotRequest, CreateKeyRequest};
use crate::keys;

pub struct KeyRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    /// Set for a key being rotated out: it works until then.
    pub expires: Option<String>,
}

pub struct BotRow {
    pub id: Uuid,
    pub name: String,
    pub scopes: String,
    pub prefix: String,
    pub created: String,
    pub revoked: bool,
}

/// A secret to show this once.
pub struct Revealed {
    pub what: String,
    pub secret: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct BotForm {
    #[serde(default)]
    name: String,
    scope_dashboard: Option<String>,
    scope_dashboard_read: Option<String>,
    scope_sdk: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "pages/api_keys.html")]
struct KeysPage {
    chrome: Chrome,
    allowed: bool,
    keys: Vec<KeyRow>,
    bots: Vec<BotRow>,
    revealed: Option<Revealed>,
    key_name: String,
    bot_name: String,
    errors: FormErrors,
}

struct Shown {
    revealed: Option<Revealed>,
    key_name: String,
    bot_name: String,
    errors: FormErrors,
}

impl Shown {
    fn nothing() -> Shown {
        Shown {
            revealed: None,
            key_name: String::new(),
            bot_name: String::new(),
            errors: FormErrors::default(),
        }
    }
}

async fn keys_page(
    app: &AppState,
    signed_in: &SignedIn,
    notice: Option<&str>,
    shown: Shown,
    status: StatusCode,
) -> Response {
    let p = &signed_in.principal;
    let allowed = p.role().is_some_and(|r| r.may(Permission::ManageKeys));
    let (keys, bots) = if allowed {
        let listed = match keys::list_api_keys(app, p, false).await {
            Ok(k) => k,
            Err(e) => return problem_page(e.into()),
        };
        let bots = match keys::list_bots(app, p).await {
            Ok(b) => b,
            Err(e) => return problem_page(e.into()),
        };
        (
            listed
                .into_iter()
                .map(|k| KeyRow {
                    id: k.id,
                    name: k.name.unwrap_or_default(),
                    prefix: k.prefix,
                    created: day(k.created_at),
                    last_used: k.last_used_at.map_or_else(|| "Never".to_owned(), moment),
                    expires: k.expires_at.map(moment),
                })
                .collect(),
            bots.into_iter()
                .map(|b| BotRow {
                    id: b.id,
                    name: b.name,
                    scopes: b.scopes.join(", "),
                    prefix: b.token_prefix,
                    created: day(b.created_at),
                    revoked: b.token_revoked_at.is_some(),
                })
                .collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let page = KeysPage {
        chrome: signed_in.chrome("API keys").notice(notice),
        allowed,
        keys,
        bots,
        revealed: shown.revealed,
        key_name: shown.key_name,
        bot_name: shown.bot_name,
        errors: shown.errors,
    };
    render(status, &page)
}

pub async fn show_keys(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<Notice>,
) -> Response {
    keys_page(
        &app,
        &signed_in,
        q.notice.as_deref(),
        Shown::nothing(),
        StatusCode::OK,
    )
    .await
}

/// The page again, with what the action answered: a secret to show, or a refusal.
async fn answer(
    app: &AppState,
    signed_in: &SignedIn,
    result: Result<Revealed, ApiError>,
    mut shown: Shown,
    rename: &[(&str, &str)],
) -> Response {
    match result {
        Ok(revealed) => {
            shown.revealed = Some(revealed);
            shown.key_name.clear();
            shown.bot_name.clear();
            keys_page(app, signed_in, None, shown, StatusCode::CREATED).await
        }
        Err(err) => {
            let status = err.status;
            match FormErrors::from_api(err, rename) {
                Ok(errors) => {
                    shown.errors = errors;
                    keys_page(app, signed_in, None, shown, status).await
                }
                Err(err) => problem_page(err),
            }
        }
    }
}

pub async fn create_key(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<KeyForm>,
) -> Response {
    let request = CreateKeyRequest {
        name: Some(form.name.clone()),
    };
    let result = match request.parse() {
        Ok(name) => keys::create_api_key(&app, &signed_in.principal, &name)
            .await
            .map(|k| Revealed {
                what: format!("The API key “{name}”"),
                secret: k.key,
            })
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    let shown = Shown {
        key_name: form.name,
        ..Shown::nothing()
    };
    answer(&app, &signed_in, result, shown, &[("name", "key_name")]).await
}

pub async fn rotate_key(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    let overlap = app.config.key_rotation_overlap_secs;
    let result = keys::rotate_api_key(&app, &signed_in.principal, id, overlap)
        .await
        .map(|k| {
            let old = match overlap {
                0 => "the old one no longer works".to_owned(),
                secs => format!(
                    "the old one works for {} more",
                    super::forms::duration_words(secs.into())
                ),
            };
            Revealed {
                what: format!("The new secret of “{}” ({old})", k.name.unwrap_or_default()),
                secret: k.key,
            }
        })
        .map_err(Into::into);
    answer(&app, &signed_in, result, Shown::nothing(), &[]).await
}

pub async fn revoke_key(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match keys::revoke_api_key(&app, &signed_in.principal, id).await {
        Ok(()) => Redirect::to("/api-keys?notice=key_revoked").into_response(),
        Err(e) => answer(&app, &signed_in, Err(e.into()), Shown::nothing(), &[]).await,
    }
}

pub async fn create_bot(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<BotForm>,
) -> Response {
    let scopes = [
        (form.scope_dashboard.is_some(), "dashboard"),
        (form.scope_dashboard_read.is_some(), "dashboard:read"),
        (form.scope_sdk.is_some(), "sdk"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| name.to_owned())
    .collect();
    let request = CreateBotRequest {
        name: Some(form.name.clone()),
        scopes: Some(scopes),
    };
    let result = match request.parse() {
        Ok((name, scopes)) => keys::create_bot(&app, &signed_in.principal, &name, scopes)
            .await
            .map(|b| Revealed {
                what: format!("The token of the bot “{name}”"),
                secret: b.token,
            })
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    let shown = Shown {
        bot_name: form.name,
        ..Shown::nothing()
    };
    answer(
        &app,
        &signed_in,
        result,
        shown,
        &[("name", "bot_name"), ("scopes", "bot_scopes")],
    )
    .await
}

pub async fn delete_bot(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match keys::delete_bot(&app, &signed_in.principal, id).await {
        Ok(()) => Redirect::to("/api-keys?notice=bot_deleted").into_response(),
        Err(e) => answer(&app, &signed_in, Err(e.into()), Shown::nothing(), &[]).await,
    }
}
