//! `/webhooks`: the business's webhook endpoints (owners and admins), and `/webhooks/{id}`, one
//! endpoint's deliveries, newest first, a page at a time. A new signing secret (an endpoint
//! added, or its secret rotated) is shown once, on the page that answers the form, with a copy
//! button; it is never shown again.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::Empty;
use super::format::moment;
use super::session::{SignedIn, Submitted, url_encode};
use super::{Chrome, FormErrors, problem_page, render};
use crate::app::AppState;
use crate::domain::Permission;
use crate::error::ApiError;
use crate::webhooks::{
    self, DeliveryFilter, DeliveryView, EndpointChange, EndpointView, WebhookError,
};

/// Deliveries shown on a page.
const PAGE: i64 = 20;

/// The states a delivery may be filtered by, with how the filter names them.
const STATUSES: [(&str, &str); 3] = [
    ("pending", "Pending or retrying"),
    ("delivered", "Delivered"),
    ("failed", "Failed"),
];

/// The notices these pages show after a redirect (`?notice=`): a fixed list, as
/// [`super::forms::notice_text`]'s.
fn notice_text(name: &str) -> Option<&'static str> {
    Some(match name {
        "webhook_enabled" => "The endpoint is enabled: the deliveries that waited go out now.",
        "webhook_disabled" => {
            "The endpoint is disabled: its deliveries wait until it is enabled again."
        }
        "webhook_deleted" => "The endpoint was deleted, with its deliveries.",
        "test_sent" => "A webhook.test event is queued for this endpoint.",
        "delivery_retried" => "The delivery is due again now.",
        _ => return None,
    })
}

fn chrome(signed_in: &SignedIn, title: &str, notice: Option<&str>) -> Chrome {
    let mut chrome = signed_in.chrome(title);
    chrome.notice = notice.and_then(notice_text);
    chrome
}

fn allowed(signed_in: &SignedIn) -> bool {
    signed_in
        .principal
        .role()
        .is_some_and(|r| r.may(Permission::ManageWebhooks))
}

pub struct EndpointRow {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    pub events: String,
    pub enabled: bool,
    /// Why it is disabled, in words (`None`: enabled; empty: someone disabled it).
    pub disabled: Option<String>,
    pub failing_since: Option<String>,
    /// Until when the secret replaced by the last rotation still signs.
    pub old_secret_until: Option<String>,
}

impl EndpointRow {
    fn of(e: EndpointView) -> EndpointRow {
        let disabled = (!e.enabled).then(|| match e.disabled_reason.as_deref() {
            Some("failing") => "by saaskit: every attempt failed for 5 days".to_owned(),
            Some(other) => format!("({other})"),
            None => String::new(),
        });
        EndpointRow {
            id: e.id,
            url: e.url,
            description: e.description,
            events: e.events.join(", "),
            enabled: e.enabled,
            disabled,
            failing_since: e.failing_since.map(moment),
            old_secret_until: e.previous_secret_expires_at.map(moment),
        }
    }
}

/// An event type to tick in the form.
pub struct EventChoice {
    pub name: String,
    pub description: Vec<Span>,
    pub checked: bool,
}

/// A piece of a catalogue description: the catalogue writes names in backticks, shown as code.
pub struct Span {
    pub code: bool,
    pub text: String,
}

fn spans(text: &str) -> Vec<Span> {
    text.split('`')
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .map(|(i, t)| Span {
            code: i % 2 == 1,
            text: t.to_owned(),
        })
        .collect()
}

/// A secret to show this once.
pub struct Revealed {
    pub what: String,
    pub secret: String,
}

/// The form that adds an endpoint: its fields as typed.
#[derive(Debug, Default)]
pub struct EndpointForm {
    url: String,
    description: String,
    events: Vec<String>,
}

impl EndpointForm {
    /// From the submitted fields: one `events` per ticked box.
    fn from_fields(fields: Vec<(String, String)>) -> EndpointForm {
        let mut form = EndpointForm::default();
        for (name, value) in fields {
            match name.as_str() {
                "url" => form.url = value,
                "description" => form.description = value,
                "events" => form.events.push(value),
                _ => {}
            }
        }
        form
    }

    /// What the service is asked for: a blank URL is a missing one.
    fn change(&self) -> EndpointChange {
        let url = self.url.trim();
        EndpointChange {
            url: (!url.is_empty()).then(|| url.to_owned()),
            events: Some(self.events.clone()),
            description: Some(self.description.clone()),
            enabled: None,
        }
    }
}

#[derive(askama::Template)]
#[template(path = "pages/webhooks/list.html")]
struct WebhooksPage {
    chrome: Chrome,
    allowed: bool,
    endpoints: Vec<EndpointRow>,
    choices: Vec<EventChoice>,
    revealed: Option<Revealed>,
    form: EndpointForm,
    /// A refusal of the form as a whole (too many endpoints).
    form_error: Option<String>,
    errors: FormErrors,
    max: usize,
}

/// What the page shows beyond the list: the answer to a form.
#[derive(Default)]
struct Shown {
    revealed: Option<Revealed>,
    form: EndpointForm,
    form_error: Option<String>,
    errors: FormErrors,
}

async fn list_page(
    app: &AppState,
    signed_in: &SignedIn,
    notice: Option<&str>,
    shown: Shown,
    status: StatusCode,
) -> Response {
    let allowed = allowed(signed_in);
    let endpoints = if allowed {
        match webhooks::list_endpoints(app, &signed_in.principal).await {
            Ok(list) => list.into_iter().map(EndpointRow::of).collect(),
            Err(e) => return problem_page(e.into()),
        }
    } else {
        Vec::new()
    };
    let choices = webhooks::catalogue::event_types(&app.products)
        .into_iter()
        .map(|t| EventChoice {
            checked: shown.form.events.contains(&t.name),
            name: t.name,
            description: spans(&t.description),
        })
        .collect();
    let page = WebhooksPage {
        chrome: chrome(signed_in, "Webhooks", notice),
        allowed,
        endpoints,
        choices,
        revealed: shown.revealed,
        form: shown.form,
        form_error: shown.form_error,
        errors: shown.errors,
        max: webhooks::MAX_ENDPOINTS,
    };
    render(status, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

pub async fn show_webhooks(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<NoticeQuery>,
) -> Response {
    list_page(
        &app,
        &signed_in,
        q.notice.as_deref(),
        Shown::default(),
        StatusCode::OK,
    )
    .await
}

/// The list again, with what the action answered: a secret to show, or a refusal (next to
/// the field it concerns when it concerns one).
async fn answer(
    app: &AppState,
    signed_in: &SignedIn,
    result: Result<Revealed, WebhookError>,
    mut shown: Shown,
) -> Response {
    let err = match result {
        Ok(revealed) => {
            let shown = Shown {
                revealed: Some(revealed),
                ..Shown::default()
            };
            return list_page(app, signed_in, None, shown, StatusCode::CREATED).await;
        }
        Err(err) => err,
    };
    let too_many = matches!(err, WebhookError::TooMany);
    let err = ApiError::from(err);
    let status = err.status;
    match FormErrors::from_api(err, &[]) {
        Ok(mut errors) => {
            if too_many {
                shown.form_error = errors.general.take();
            }
            shown.errors = errors;
            list_page(app, signed_in, None, shown, status).await
        }
        Err(err) => problem_page(err),
    }
}

/// `POST /webhooks`: adds an endpoint and shows its secret this once.
pub async fn create_webhook(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(fields): Submitted<Vec<(String, String)>>,
) -> Response {
    let form = EndpointForm::from_fields(fields);
    let mut result = webhooks::create_endpoint(&app, &signed_in.principal, form.change())
        .await
        .map(|c| Revealed {
            what: format!("The signing secret of {}", c.endpoint.url),
            secret: c.secret,
        });
    // The service names one missing thing at a time; the form says every one at once.
    if form.url.trim().is_empty()
        && let Err(WebhookError::Invalid(problems)) = &mut result
        && !problems.iter().any(|(field, _, _)| *field == "url")
    {
        problems.push(("url", "required", "This field is required.".to_owned()));
    }
    let shown = Shown {
        form,
        ..Shown::default()
    };
    answer(&app, &signed_in, result, shown).await
}

/// `POST /webhooks/{id}/rotate`: a new secret, shown this once; the old one signs beside it
/// for a day.
pub async fn rotate_secret(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    let result = webhooks::rotate_secret(&app, &signed_in.principal, id)
        .await
        .map(|r| {
            let old = r.endpoint.previous_secret_expires_at.map_or_else(
                || "the old one no longer signs".to_owned(),
                |until| format!("the old one also signs until {}", moment(until)),
            );
            Revealed {
                what: format!("The new signing secret of {} ({old})", r.endpoint.url),
                secret: r.secret,
            }
        });
    answer(&app, &signed_in, result, Shown::default()).await
}

async fn set_enabled(app: &AppState, signed_in: &SignedIn, id: Uuid, enabled: bool) -> Response {
    let change = EndpointChange {
        enabled: Some(enabled),
        ..EndpointChange::default()
    };
    match webhooks::update_endpoint(app, &signed_in.principal, id, change).await {
        Ok(e) if e.enabled => Redirect::to("/webhooks?notice=webhook_enabled").into_response(),
        Ok(_) => Redirect::to("/webhooks?notice=webhook_disabled").into_response(),
        Err(e) => answer(app, signed_in, Err(e), Shown::default()).await,
    }
}

/// `POST /webhooks/{id}/enable`: deliveries that waited go out.
pub async fn enable_webhook(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    set_enabled(&app, &signed_in, id, true).await
}

/// `POST /webhooks/{id}/disable`: deliveries wait until it is enabled again.
pub async fn disable_webhook(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    set_enabled(&app, &signed_in, id, false).await
}

/// `POST /webhooks/{id}/test`: queues a `webhook.test` event, and shows the deliveries.
pub async fn send_test(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match webhooks::send_test(&app, &signed_in.principal, id).await {
        Ok(_) => Redirect::to(&format!("/webhooks/{id}?notice=test_sent")).into_response(),
        Err(e) => answer(&app, &signed_in, Err(e), Shown::default()).await,
    }
}

/// `POST /webhooks/{id}/delete`: the endpoint and its deliveries.
pub async fn delete_webhook(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    match webhooks::delete_endpoint(&app, &signed_in.principal, id).await {
        Ok(()) => Redirect::to("/webhooks?notice=webhook_deleted").into_response(),
        Err(e) => answer(&app, &signed_in, Err(e), Shown::default()).await,
    }
}

pub struct DeliveryRow {
    pub id: Uuid,
    pub webhook_id: String,
    pub when: String,
    pub event: String,
    /// `pending`, `retrying` (pending after a failed attempt), `delivered` or `failed`.
    pub status: &'static str,
    /// The badge's class: `ok`, `warn` or none.
    pub tone: &'static str,
    /// `1 attempt`, `not tried yet`…
    pub attempts: String,
    /// The last attempt's status code and duration: `HTTP 500 in 31 ms` (`None`: no attempt).
    pub answer: Option<String>,
    /// When the next attempt is due (pending ones only).
    pub next_retry: Option<String>,
    /// The last attempt's error: its first clause (`could not connect`), and the rest of it
    /// (its causes) when there is more.
    pub error: String,
    pub error_detail: Option<String>,
}

impl DeliveryRow {
    fn of(d: DeliveryView) -> DeliveryRow {
        let (status, tone) = match (d.status.as_str(), d.attempts) {
            ("delivered", _) => ("delivered", "ok"),
            ("failed", _) => ("failed", "warn"),
            ("pending", 0) => ("pending", ""),
            ("pending", _) => ("retrying", "warn"),
            _ => ("unknown", ""),
        };
        let attempts = match d.attempts {
            0 => "not tried yet".to_owned(),
            1 => "1 attempt".to_owned(),
            n => format!("{n} attempts"),
        };
        let error = d.error.unwrap_or_default();
        let answer = match (d.response_status, d.duration_ms) {
            (Some(code), Some(ms)) => Some(format!("HTTP {code} in {ms} ms")),
            (Some(code), None) => Some(format!("HTTP {code}")),
            (None, Some(ms)) => Some(format!("no answer ({ms} ms)")),
            (None, None) => None,
        };
        DeliveryRow {
            id: d.id,
            webhook_id: d.webhook_id,
            when: moment(d.created_at),
            event: d.event_type,
            status,
            tone,
            attempts,
            answer,
            next_retry: d.next_attempt_at.map(moment),
            error: error
                .split_once(": ")
                .map_or(error.as_str(), |(first, _)| first)
                .to_owned(),
            error_detail: error.split_once(": ").map(|(_, rest)| rest.to_owned()),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "pages/webhooks/deliveries.html")]
struct DeliveriesPage {
    chrome: Chrome,
    allowed: bool,
    endpoint: Option<EndpointRow>,
    deliveries: Vec<DeliveryRow>,
    statuses: &'static [(&'static str, &'static str)],
    /// The status filtered by (empty: every one).
    status: String,
    /// The next (older) page, and the first page when this is not it.
    next: Option<String>,
    newest: Option<String>,
    errors: FormErrors,
}

#[derive(Debug, Default, Deserialize)]
pub struct DeliveriesQuery {
    notice: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
}

/// The address of the deliveries page of `id`, filtered by `status`, from `cursor`.
fn deliveries_path(id: Uuid, status: &str, cursor: Option<Uuid>) -> String {
    let mut query = Vec::new();
    if !status.is_empty() {
        query.push(format!("status={}", url_encode(status)));
    }
    if let Some(c) = cursor {
        query.push(format!("cursor={c}"));
    }
    if query.is_empty() {
        format!("/webhooks/{id}")
    } else {
        format!("/webhooks/{id}?{}", query.join("&"))
    }
}

async fn deliveries_page(
    app: &AppState,
    signed_in: &SignedIn,
    id: Uuid,
    q: DeliveriesQuery,
    mut errors: FormErrors,
    status: StatusCode,
) -> Response {
    let filter_status = q.status.filter(|s| !s.is_empty()).unwrap_or_default();
    let mut page = DeliveriesPage {
        chrome: chrome(signed_in, "Webhook deliveries", q.notice.as_deref()),
        allowed: allowed(signed_in),
        endpoint: None,
        deliveries: Vec::new(),
        statuses: &STATUSES,
        status: filter_status.clone(),
        next: None,
        newest: None,
        errors: FormErrors::default(),
    };
    if !page.allowed {
        page.errors = errors;
        return render(status, &page);
    }
    let p = &signed_in.principal;
    let endpoint = match webhooks::get_endpoint(app, p, id).await {
        Ok(e) => e,
        Err(e) => return problem_page(e.into()),
    };
    page.endpoint = Some(EndpointRow::of(endpoint));
    let known = filter_status.is_empty() || STATUSES.iter().any(|(s, _)| *s == filter_status);
    if !known {
        errors.add("status", "Choose one of the states listed.");
        page.errors = errors;
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    // A cursor that is not one (a hand-edited address) starts from the newest.
    let cursor = q.cursor.and_then(|c| c.parse::<Uuid>().ok());
    let filter = DeliveryFilter {
        status: (!filter_status.is_empty()).then(|| filter_status.clone()),
        event_type: None,
        before: cursor,
        limit: PAGE,
    };
    match webhooks::list_deliveries(app, p, id, &filter).await {
        Ok((deliveries, next)) => {
            page.deliveries = deliveries.into_iter().map(DeliveryRow::of).collect();
            page.next = next.map(|c| deliveries_path(id, &filter_status, Some(c)));
            page.newest = cursor.map(|_| deliveries_path(id, &filter_status, None));
        }
        Err(e) => return problem_page(e.into()),
    }
    page.errors = errors;
    render(status, &page)
}

/// `GET /webhooks/{id}`: the endpoint and its deliveries.
pub async fn show_deliveries(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return problem_page(ApiError::not_found());
    };
    deliveries_page(
        &app,
        &signed_in,
        id,
        q,
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct RetryForm {
    /// The filter of the page the button was on, to go back to it.
    #[serde(default)]
    status: String,
}

/// `POST /webhooks/{id}/deliveries/{delivery_id}/retry`: due again now.
pub async fn retry_delivery(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path((id, delivery)): Path<(Uuid, Uuid)>,
    Submitted(form): Submitted<RetryForm>,
) -> Response {
    let status = if STATUSES.iter().any(|(s, _)| *s == form.status) {
        form.status
    } else {
        String::new()
    };
    match webhooks::retry_delivery(&app, &signed_in.principal, id, delivery).await {
        Ok(_) => {
            let back = deliveries_path(id, &status, None);
            let sep = if back.contains('?') { '&' } else { '?' };
            Redirect::to(&format!("{back}{sep}notice=delivery_retried")).into_response()
        }
        Err(WebhookError::NotFound) => problem_page(ApiError::not_found()),
        Err(e) => {
            let err = ApiError::from(e);
            let code = err.status;
            let q = DeliveriesQuery {
                status: Some(status),
                ..DeliveriesQuery::default()
            };
            match FormErrors::from_api(err, &[]) {
                Ok(errors) => deliveries_page(&app, &signed_in, id, q, errors, code).await,
                Err(err) => problem_page(err),
            }
        }
    }
}
