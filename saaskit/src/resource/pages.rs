//! The pages of a toolkit resource, from the same declaration as its API: `/{plural}` lists
//! the business's items a page at a time with the quota of its meter, and has forms to create,
//! change and delete them. The forms go through the same operations as the JSON routes
//! ([`Spec::create`], [`Spec::update`], [`Spec::delete`]): the same fields, rules, roles and
//! meter.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Kind, PageQuery, Spec, capitalized};
use crate::app::AppState;
use crate::error::ApiError;
use crate::web::session::{SignedIn, Submitted};
use crate::web::{Chrome, FormErrors, NavLink, problem_page, render};

/// One field of a form or of a row, as the template shows it.
pub struct FieldView {
    pub name: &'static str,
    pub label: String,
    /// `text`, `number` or `checkbox`.
    pub input: &'static str,
    pub value: String,
    pub checked: bool,
}

pub struct Row {
    pub id: Uuid,
    pub title: String,
    pub fields: Vec<FieldView>,
    pub created: String,
}

pub struct Quota {
    pub used: i64,
    pub limit: Option<i64>,
    pub shown: i64,
}

#[derive(askama::Template)]
#[template(path = "pages/resource.html")]
struct ResourcePage {
    chrome: Chrome,
    heading: String,
    singular: String,
    plural: &'static str,
    quota: Option<Quota>,
    rows: Vec<Row>,
    new_fields: Vec<FieldView>,
    may_write: bool,
    may_delete: bool,
    next_cursor: Option<String>,
    errors: FormErrors,
}

fn label(name: &str) -> String {
    capitalized(&name.replace('_', " "))
}

impl Spec {
    /// The pages' router and the navigation entry that leads to them.
    pub(super) fn pages(self: &Arc<Spec>) -> (Router<AppState>, NavLink) {
        let plural = self.r.plural;
        let (list, create, update, delete) =
            (self.clone(), self.clone(), self.clone(), self.clone());
        let router = Router::new()
            .route(
                &format!("/{plural}"),
                get(
                    move |State(app): State<AppState>, signed_in: SignedIn, Query(q): Query<ListQuery>| async move {
                        list.page(&app, &signed_in, q, None, FormErrors::default(), StatusCode::OK).await
                    },
                )
                .post(
                    move |State(app): State<AppState>,
                          signed_in: SignedIn,
                          Submitted(form): Submitted<BTreeMap<String, String>>| async move {
                        create.create_from_page(&app, &signed_in, form).await
                    },
                ),
            )
            .route(
                &format!("/{plural}/{{id}}/edit"),
                post(
                    move |State(app): State<AppState>,
                          signed_in: SignedIn,
                          Path(id): Path<Uuid>,
                          Submitted(form): Submitted<BTreeMap<String, String>>| async move {
                        update.update_from_page(&app, &signed_in, id, form).await
                    },
                ),
            )
            .route(
                &format!("/{plural}/{{id}}/delete"),
                post(
                    move |State(app): State<AppState>,
                          signed_in: SignedIn,
                          Path(id): Path<Uuid>,
                          Submitted(_): Submitted<BTreeMap<String, String>>| async move {
                        let plural = delete.r.plural;
                        match delete.delete(&app, &signed_in.principal, id).await {
                            Ok(_) => Redirect::to(&format!("/{plural}?notice=item_deleted")).into_response(),
                            Err(err) => {
                                delete
                                    .refused(&app, &signed_in, None, err)
                                    .await
                            }
                        }
                    },
                ),
            );
        let link = NavLink {
            label: label(plural),
            path: format!("/{plural}"),
        };
        (router, link)
    }

    /// A form's fields as the JSON body the API would have received: checkboxes are present
    /// or not, an empty optional field is null, a number is a number when it reads as one.
    fn body_of(&self, form: &BTreeMap<String, String>) -> Map<String, Value> {
        let mut body = Map::new();
        for field in &self.r.fields {
            let sent = form.get(field.name);
            let value = match field.kind {
                Kind::Boolean => Value::Bool(sent.is_some()),
                _ if sent.is_none_or(|s| s.trim().is_empty()) && field.optional => Value::Null,
                Kind::Integer { .. } => {
                    let text = sent.map(|s| s.trim()).unwrap_or_default();
                    text.parse::<i64>()
                        .map_or_else(|_| Value::String(text.to_owned()), Value::from)
                }
                Kind::Text { .. } => Value::String(sent.cloned().unwrap_or_default()),
            };
            body.insert(field.name.to_owned(), value);
        }
        body
    }

    fn views(&self, values: &dyn Fn(&str) -> Option<Value>) -> Vec<FieldView> {
        self.r
            .fields
            .iter()
            .map(|field| {
                let value = values(field.name).unwrap_or(Value::Null);
                FieldView {
                    name: field.name,
                    label: label(field.name),
                    input: match field.kind {
                        Kind::Text { .. } => "text",
                        Kind::Integer { .. } => "number",
                        Kind::Boolean => "checkbox",
                    },
                    checked: value.as_bool().unwrap_or(false),
                    value: match value {
                        Value::String(s) => s,
                        Value::Null | Value::Bool(_) => String::new(),
                        other => other.to_string(),
                    },
                }
            })
            .collect()
    }

    async fn page(
        &self,
        app: &AppState,
        signed_in: &SignedIn,
        q: ListQuery,
        entered: Option<&BTreeMap<String, String>>,
        errors: FormErrors,
        status: StatusCode,
    ) -> Response {
        let p = &signed_in.principal;
        let listed = match self
            .list(
                app,
                p,
                PageQuery {
                    limit: Some(20),
                    cursor: q.cursor,
                },
            )
            .await
        {
            Ok(axum::Json(v)) => v,
            Err(err) => return problem_page(err),
        };
        let quota = match self.r.meter {
            Some(meter) => {
                let statuses = async {
                    let mut tx = app.db.read().await?;
                    anyhow::Ok(
                        crate::metering::meter_statuses(tx.conn(), p, app.products.meters())
                            .await?,
                    )
                }
                .await;
                match statuses {
                    Ok(s) => s.get(meter.name()).map(|m| Quota {
                        used: m.used,
                        limit: m.limit,
                        shown: m.limit.map_or(m.used, |l| m.used.min(l)),
                    }),
                    Err(e) => return crate::web::server_error(e),
                }
            }
            None => None,
        };
        let rows = listed["data"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        let id: Uuid = item["id"].as_str()?.parse().ok()?;
                        let fields = self.views(&|name| item.get(name).cloned());
                        let title = fields
                            .iter()
                            .find(|f| f.input == "text" && !f.value.is_empty())
                            .map_or_else(|| id.to_string(), |f| f.value.clone());
                        let created = item["created_at"]
                            .as_str()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .map(|t| crate::web::format::day(t.with_timezone(&chrono::Utc).into()))
                            .unwrap_or_default();
                        Some(Row {
                            id,
                            title,
                            fields,
                            created,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let new_fields = self.views(&|name| {
            entered
                .and_then(|form| form.get(name))
                .map(|v| Value::String(v.clone()))
        });
        let role = p.role();
        let page = ResourcePage {
            chrome: signed_in
                .chrome(label(self.r.plural))
                .notice(q.notice.as_deref()),
            heading: label(self.r.plural),
            singular: self.r.singular.replace('_', " "),
            plural: self.r.plural,
            quota,
            rows,
            new_fields,
            may_write: role.is_some_and(|r| r.at_least(self.r.write_role)),
            may_delete: role.is_some_and(|r| r.at_least(self.r.delete_role)),
            next_cursor: listed["next_cursor"].as_str().map(str::to_owned),
            errors,
        };
        render(status, &page)
    }

    async fn refused(
        &self,
        app: &AppState,
        signed_in: &SignedIn,
        entered: Option<&BTreeMap<String, String>>,
        err: ApiError,
    ) -> Response {
        let status = err.status;
        match FormErrors::from_api(err, &[]) {
            Ok(errors) => {
                self.page(
                    app,
                    signed_in,
                    ListQuery::default(),
                    entered,
                    errors,
                    status,
                )
                .await
            }
            Err(err) => problem_page(err),
        }
    }

    async fn create_from_page(
        &self,
        app: &AppState,
        signed_in: &SignedIn,
        form: BTreeMap<String, String>,
    ) -> Response {
        let body = self.body_of(&form);
        match self.create(app, &signed_in.principal, None, body).await {
            Ok(_) => {
                Redirect::to(&format!("/{}?notice=item_created", self.r.plural)).into_response()
            }
            Err(err) => self.refused(app, signed_in, Some(&form), err).await,
        }
    }

    async fn update_from_page(
        &self,
        app: &AppState,
        signed_in: &SignedIn,
        id: Uuid,
        form: BTreeMap<String, String>,
    ) -> Response {
        let body = self.body_of(&form);
        match self.update(app, &signed_in.principal, id, body).await {
            Ok(_) => Redirect::to(&format!("/{}?notice=item_saved", self.r.plural)).into_response(),
            // A problem with a row's field is told for the whole form: the row's own inputs
            // show what is stored.
            Err(mut err) => {
                for e in &mut err.errors {
                    e.message = format!("{}: {}", label(&e.field), e.message);
                }
                let general = err
                    .errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join(" ");
                if !err.errors.is_empty() {
                    err.errors.clear();
                    err.detail = general;
                }
                self.refused(app, signed_in, None, err).await
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    cursor: Option<Uuid>,
    notice: Option<String>,
}
