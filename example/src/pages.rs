//! The example's own page, `/recordings`: the business's recordings, newest first, twenty at a
//! time. Built from what any product has: saaskit's session extractor, its layout
//! (`saaskit::web::page`) and a template of the product's own.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use saaskit::app::AppState;
use saaskit::on_conn;
use saaskit::web::session::SignedIn;
use saaskit::web::{format, page, problem_page, server_error};

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    cursor: Option<Uuid>,
}

struct Row {
    when: String,
    application: String,
    data: String,
}

#[derive(askama::Template)]
#[template(path = "recordings.html")]
struct Recordings {
    rows: Vec<Row>,
    next_cursor: Option<Uuid>,
}

/// `GET /recordings`
pub async fn recordings_page(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<PageQuery>,
) -> Response {
    let p = &signed_in.principal;
    let listed = match crate::recordings::page_of(&app, p, None, q.cursor, 20).await {
        Ok(listed) => listed,
        Err(err) => return problem_page(err),
    };
    let names = match application_names(&app, p.business_id).await {
        Ok(names) => names,
        Err(e) => return server_error(e.into()),
    };
    let rows = listed
        .data
        .into_iter()
        .map(|r| Row {
            when: format::moment(r.created_at),
            application: names
                .get(&r.application_id)
                .cloned()
                .unwrap_or_else(|| "(deleted)".to_owned()),
            data: r.data.to_string(),
        })
        .collect();
    let body = Recordings {
        rows,
        next_cursor: listed.next_cursor,
    };
    match askama::Template::render(&body) {
        Ok(html) => page(signed_in.chrome("Recordings"), StatusCode::OK, html),
        Err(e) => server_error(anyhow::Error::new(e)),
    }
}

/// The names of the business's applications, deleted ones included (their recordings stay).
async fn application_names(
    app: &AppState,
    business_id: Uuid,
) -> sqlx::Result<HashMap<Uuid, String>> {
    let mut tx = app.db.read().await?;
    let rows: Vec<(Uuid, String)> = on_conn!(tx.conn(), c => sqlx::query_as(
        "SELECT id, name FROM applications WHERE business_id = $1",
    )
    .bind(business_id)
    .fetch_all(&mut *c)
    .await)?;
    Ok(rows.into_iter().collect())
}
