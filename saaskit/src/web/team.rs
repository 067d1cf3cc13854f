//! `/team`: the members and their roles, invitations sent and pending, and the business's own
//! settings (its name; whether every member must sign in with two factors). Each action is a
//! small form posting to `/team/…`; the page shows only what the viewer's role allows (by the
//! roles table, [`Role::may`]), and the services refuse the rest anyway.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Empty, Notice};
use super::format::day;
use super::session::{SignedIn, Submitted};
use super::{Chrome, FormErrors, problem_page, render};
use crate::app::AppState;
use crate::domain::{Permission, Role};
use crate::error::ApiError;
use crate::http::invitations::InviteRequest;
use crate::http::members::RoleChange;
use crate::teams::business::{self, BusinessError, Changes};
use crate::teams::invitations::{self, display_name};
use crate::teams::members;

pub struct MemberRow {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: String,
    pub since: String,
    pub is_me: bool,
    pub is_bot: bool,
    /// The roles the viewer may give this member (empty: no role change offered).
    pub roles: Vec<&'static str>,
    pub removable: bool,
    pub transferable: bool,
}

pub struct InvitationRow {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    pub expires: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// The business's settings as the page shows them, and which of them the viewer may change.
pub struct Settings {
    /// The name in the rename form: the business's, or what was typed when it was refused.
    pub name: String,
    pub require_mfa: bool,
    pub may_rename: bool,
    pub may_require_mfa: bool,
    /// Requiring two-factor sign-in was refused: the viewer has none of their own yet.
    pub own_mfa_missing: bool,
}

#[derive(askama::Template)]
#[template(path = "pages/team.html")]
struct TeamPage {
    chrome: Chrome,
    members: Vec<MemberRow>,
    invitations: Vec<InvitationRow>,
    /// The roles the viewer may offer in an invitation (empty: no invite form).
    invite_roles: Vec<&'static str>,
    invite: InviteForm,
    settings: Settings,
    errors: FormErrors,
}

/// What a refused form asks the page to show again beyond its errors.
#[derive(Default)]
struct Typed {
    invite: InviteForm,
    business_name: Option<String>,
    own_mfa_missing: bool,
}

async fn team_page(
    app: &AppState,
    signed_in: &SignedIn,
    notice: Option<&str>,
    typed: Typed,
    errors: FormErrors,
    status: StatusCode,
) -> Response {
    let p = &signed_in.principal;
    let Some(me) = p.person() else {
        return problem_page(ApiError::not_found());
    };
    let role = me.role;
    let listed = match members::list(app, p).await {
        Ok(m) => m,
        Err(e) => return problem_page(e.into()),
    };
    let manages_members = role.may(Permission::ManageMembers);
    let manages_owners = role.may(Permission::ManageOwners);
    let members = listed
        .into_iter()
        .map(|m| {
            let is_me = m.user_id == me.user_id;
            let their_role: Option<Role> = m.role.parse().ok();
            let is_owner = their_role == Some(Role::Owner);
            let may_touch =
                !m.is_bot && !is_me && (manages_owners || (manages_members && !is_owner));
            let roles = if may_touch {
                ["owner", "admin", "member"]
                    .into_iter()
                    .filter(|r| manages_owners || *r != "owner")
                    .collect()
            } else {
                Vec::new()
            };
            MemberRow {
                id: m.id,
                name: display_name(&m.first_name, &m.last_name, &m.email),
                since: day(m.created_at),
                removable: may_touch,
                transferable: manages_owners && !is_me && !m.is_bot && !is_owner,
                email: m.email,
                role: m.role,
                is_me,
                is_bot: m.is_bot,
                roles,
            }
        })
        .collect();
    let invitations = if role.may(Permission::ManageInvitations) {
        match invitations::list_pending(app, p).await {
            Ok(pending) => pending
                .into_iter()
                .map(|k| InvitationRow {
                    id: k.id,
                    email: k.email.unwrap_or_default(),
                    role: k.role.unwrap_or_else(|| "member".to_owned()),
                    expires: day(k.expires_at),
                })
                .collect(),
            Err(e) => return problem_page(e.into()),
        }
    } else {
        Vec::new()
    };
    let invite_roles = [Role::Member, Role::Admin]
        .into_iter()
        .filter(|r| role.may_invite(*r))
        .map(Role::as_str)
        .collect();
    let business = match business::get(app, p).await {
        Ok(b) => b,
        Err(e) => return problem_page(e.into()),
    };
    let settings = Settings {
        name: typed.business_name.unwrap_or(business.name),
        require_mfa: business.require_mfa,
        may_rename: role.may(Permission::ManageBusiness),
        may_require_mfa: role.may(Permission::ManageSecurity),
        own_mfa_missing: typed.own_mfa_missing,
    };
    let page = TeamPage {
        chrome: signed_in.chrome("Team").notice(notice),
        members,
        invitations,
        invite_roles,
        invite: typed.invite,
        settings,
        errors,
    };
    render(status, &page)
}

pub async fn show_team(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<Notice>,
) -> Response {
    team_page(
        &app,
        &signed_in,
        q.notice.as_deref(),
        Typed::default(),
        FormErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// After an action: back to the team page with a notice, or the page again with the refusal.
async fn after(
    app: &AppState,
    signed_in: &SignedIn,
    result: Result<&'static str, ApiError>,
    invite: InviteForm,
) -> Response {
    match result {
        Ok(notice) => Redirect::to(&format!("/team?notice={notice}")).into_response(),
        Err(err) => {
            let status = err.status;
            match FormErrors::from_api(err, &[("email", "invite_email"), ("role", "invite_role")]) {
                Ok(errors) => {
                    let typed = Typed {
                        invite,
                        ..Typed::default()
                    };
                    team_page(app, signed_in, None, typed, errors, status).await
                }
                Err(err) => problem_page(err),
            }
        }
    }
}

pub async fn invite_member(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<InviteForm>,
) -> Response {
    let request = InviteRequest {
        email: Some(form.email.clone()),
        role: Some(form.role.clone()),
        send_email: Some(true),
    };
    let result = match request.parse() {
        Ok(new) => invitations::invite(&app, &signed_in.principal, new)
            .await
            .map(|_| "invited")
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    after(&app, &signed_in, result, form).await
}

pub async fn resend_invitation(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    let result = invitations::resend(&app, &signed_in.principal, id)
        .await
        .map(|_| "invitation_resent")
        .map_err(Into::into);
    after(&app, &signed_in, result, InviteForm::default()).await
}

pub async fn revoke_invitation(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    let result = invitations::revoke(&app, &signed_in.principal, id)
        .await
        .map(|_| "invitation_revoked")
        .map_err(Into::into);
    after(&app, &signed_in, result, InviteForm::default()).await
}

#[derive(Debug, Default, Deserialize)]
pub struct RoleForm {
    role: Option<String>,
}

pub async fn change_role(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(form): Submitted<RoleForm>,
) -> Response {
    let result = match (RoleChange { role: form.role }).parse() {
        Ok(role) => members::change_role(&app, &signed_in.principal, id, role)
            .await
            .map(|_| "role_changed")
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    after(&app, &signed_in, result, InviteForm::default()).await
}

pub async fn remove_member(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    let leaving = signed_in.principal.member.as_ref().map(|m| m.member_id) == Some(id);
    match members::remove(&app, &signed_in.principal, id).await {
        // Whoever leaves has no session for this business any more.
        Ok(()) if leaving => {
            let mut res = Redirect::to("/login?notice=left").into_response();
            res.headers_mut()
                .append(header::SET_COOKIE, super::session::end_session(&app.config));
            res
        }
        Ok(()) => Redirect::to("/team?notice=member_removed").into_response(),
        Err(e) => after(&app, &signed_in, Err(e.into()), InviteForm::default()).await,
    }
}

pub async fn transfer_ownership(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<Uuid>,
    Submitted(_): Submitted<Empty>,
) -> Response {
    let result = members::transfer_ownership(&app, &signed_in.principal, id)
        .await
        .map(|_| "ownership_transferred")
        .map_err(Into::into);
    after(&app, &signed_in, result, InviteForm::default()).await
}

#[derive(Debug, Default, Deserialize)]
pub struct NameForm {
    #[serde(default)]
    business_name: String,
}

/// `POST /team/name` (owners and admins).
pub async fn rename_business(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<NameForm>,
) -> Response {
    let changes = Changes {
        name: Some(&form.business_name),
        require_mfa: None,
    };
    match business::update(&app, &signed_in.principal, changes).await {
        Ok(_) => Redirect::to("/team?notice=business_renamed").into_response(),
        Err(e) => {
            let err = ApiError::from(e);
            let status = err.status;
            match FormErrors::from_api(err, &[("name", "business_name")]) {
                Ok(errors) => {
                    let typed = Typed {
                        business_name: Some(form.business_name),
                        ..Typed::default()
                    };
                    team_page(&app, &signed_in, None, typed, errors, status).await
                }
                Err(err) => problem_page(err),
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RequireMfaForm {
    /// `on` or `off`.
    #[serde(default)]
    require_mfa: String,
}

/// `POST /team/require-mfa` (owners): whether every member must sign in with two factors.
pub async fn require_mfa(
    State(app): State<AppState>,
    signed_in: SignedIn,
    Submitted(form): Submitted<RequireMfaForm>,
) -> Response {
    let require = match form.require_mfa.as_str() {
        "on" => true,
        "off" => false,
        _ => return super::bad_request_page(),
    };
    let changes = Changes {
        name: None,
        require_mfa: Some(require),
    };
    match business::update(&app, &signed_in.principal, changes).await {
        Ok(_) if require => Redirect::to("/team?notice=mfa_required").into_response(),
        Ok(_) => Redirect::to("/team?notice=mfa_not_required").into_response(),
        // Said next to the setting, with the way to one's own second factor (the API's sentence
        // names its own route).
        Err(BusinessError::MfaNotEnabled) => {
            let typed = Typed {
                own_mfa_missing: true,
                ..Typed::default()
            };
            team_page(
                &app,
                &signed_in,
                None,
                typed,
                FormErrors::default(),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => after(&app, &signed_in, Err(e.into()), InviteForm::default()).await,
    }
}
