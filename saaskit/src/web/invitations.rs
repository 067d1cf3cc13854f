//! `/invitations/accept?key=`: the page a mailed invitation opens. It shows who invites whom to
//! what; a signed-in person of the invited address joins with a button, anyone else creates
//! their account with the form. Opening it changes nothing.

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, Submitted, Visitor, url_encode};
use super::{Chrome, FormErrors, problem_page, render};
use crate::app::AppState;
use crate::http::accounts::Fields;
use crate::http::extract::Client;
use crate::http::invitations::{accept_error, parse_acceptance};
use crate::teams::invitations::{self, InvitationDetails};

#[derive(Debug, Default, Deserialize)]
pub struct KeyQuery {
    key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    password: String,
}

#[derive(askama::Template)]
#[template(path = "pages/invitations/accept.html")]
struct AcceptPage {
    chrome: Chrome,
    key: String,
    invitation: InvitationDetails,
    /// Signed in with the invited address: joining is one button.
    signed_in_as_invitee: bool,
    /// Signed in with another address.
    signed_in_as_other: Option<String>,
    login_link: String,
    form: AcceptForm,
    errors: FormErrors,
}

impl AcceptPage {
    fn new(
        visitor: &Visitor,
        key: String,
        invitation: InvitationDetails,
        form: AcceptForm,
        errors: FormErrors,
    ) -> AcceptPage {
        let me = visitor
            .principal
            .as_ref()
            .and_then(|p| p.person())
            .map(|m| m.email.clone());
        let invitee =
            me.as_deref().map(crate::domain::Email::key_of) == Some(invitation.email.clone());
        let login_link = format!(
            "/login?next={}",
            url_encode(&format!("/invitations/accept?key={}", url_encode(&key)))
        );
        AcceptPage {
            chrome: visitor.chrome("Accept the invitation"),
            key,
            signed_in_as_other: me.filter(|_| !invitee),
            signed_in_as_invitee: invitee,
            invitation,
            login_link,
            form,
            errors,
        }
    }
}

pub async fn accept_invitation_page(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Query(q): Query<KeyQuery>,
) -> Response {
    let key = q.key.unwrap_or_default();
    match invitations::describe(&app, &key, &client).await {
        Ok(invitation) => {
            let page = AcceptPage::new(
                &visitor,
                key,
                invitation,
                AcceptForm::default(),
                FormErrors::default(),
            );
            render(StatusCode::OK, &page)
        }
        Err(e) => problem_page(e.into()),
    }
}

pub async fn accept_invitation(
    State(app): State<AppState>,
    visitor: Visitor,
    Client(client): Client,
    Submitted(mut form): Submitted<AcceptForm>,
) -> Response {
    let key = form.key.clone();
    let result = match &visitor.principal {
        Some(p) => invitations::accept_as(&app, &key, p, client.clone())
            .await
            .map_err(|e| accept_error(e, "password")),
        None => {
            let mut f = Fields::default();
            let password = Some(std::mem::take(&mut form.password));
            let acceptance = parse_acceptance(
                &mut f,
                &Some(form.first_name.clone()),
                &Some(form.last_name.clone()),
                password.as_deref(),
            );
            match (f.finish(), acceptance) {
                (Ok(()), Some(acceptance)) => {
                    invitations::accept(&app, &key, acceptance, client.clone())
                        .await
                        .map_err(|e| accept_error(e, "password"))
                }
                (Err(e), _) => Err(e),
                (Ok(()), None) => Err(crate::error::ApiError::validation(Vec::new())),
            }
        }
    };
    match result {
        Ok(done) => match done.session {
            Some(s) => {
                let mut res = Redirect::to("/dashboard?notice=joined").into_response();
                res.headers_mut().append(
                    header::SET_COOKIE,
                    session::start_session(&app.config, &s.token),
                );
                res
            }
            None => Redirect::to("/login?notice=verify_first").into_response(),
        },
        Err(err) if !err.errors.is_empty() => {
            // The form again, with the invitation it is about.
            let invitation = match invitations::describe(&app, &key, &client).await {
                Ok(i) => i,
                Err(e) => return problem_page(e.into()),
            };
            match FormErrors::from_api(err, &[]) {
                Ok(errors) => {
                    let page = AcceptPage::new(&visitor, key, invitation, form, errors);
                    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
                }
                Err(err) => problem_page(err),
            }
        }
        Err(err) => problem_page(err),
    }
}
