//! Invitations: an owner or admin invites an email to their business with a role; the invitee
//! gets a single-use link valid 7 days, and accepting it creates their account and membership.
//! Inviting an email that already has an account never changes that account.
//!
//! An invitation speaks for its sender: it is revoked when the sender leaves, is removed, loses
//! the right to offer its role or has their account turned off ([`revoke_unsendable`]), and
//! acceptance checks again that the sender may still offer it.

use chrono::Duration;
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use crate::accounts::keys::{self, KeyProblem};
use crate::accounts::verification;
use crate::accounts::{ClientInfo, Membership, Principal, Session, open_session};
use crate::app::App;
use crate::audit::{self, Action, Actor, Event};
use crate::db::{Conn, Timestamp, Tx};
use crate::domain::{Email, Invalid, Password, Permission, PersonName, Role};
use crate::mail;
use crate::metering;
use crate::ratelimit;
use crate::secret;
use crate::store::businesses::{self, Business};
use crate::store::members::{self, Member};
use crate::store::one_time_keys::{self, OneTimeKey};
use crate::store::users::{self, User};

pub const PURPOSE: &str = "invitation";

#[derive(Debug)]
pub struct NewInvitation {
    pub email: Email,
    pub role: Role,
    pub send_email: bool,
}

/// A created invitation; `key` and `link` are shown to the inviter once.
#[derive(Debug)]
pub struct CreatedInvitation {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub business_id: Uuid,
    pub business_name: String,
    pub expires_at: Timestamp,
    pub key: String,
    pub link: String,
    pub emailed: bool,
}

#[derive(Debug, Error)]
pub enum InviteError {
    #[error("only owners and admins may invite")]
    Forbidden,
    #[error("the business has no live subscription")]
    NoLiveSubscription,
    #[error("this email already belongs to a member of the business")]
    AlreadyMember,
    #[error("no such pending invitation")]
    NotFound,
    #[error(transparent)]
    Quota(#[from] metering::QuotaError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for InviteError {
    fn from(err: sqlx::Error) -> Self {
        InviteError::Unexpected(err.into())
    }
}

/// Invites `new.email` to the caller's business. A pending invitation of the same email to the
/// same business is replaced: only the newest link works.
pub async fn invite(
    app: &App,
    inviter: &Principal,
    new: NewInvitation,
) -> Result<CreatedInvitation, InviteError> {
    create(app, inviter, new, Action::InvitationSent).await
}

async fn create(
    app: &App,
    inviter: &Principal,
    new: NewInvitation,
    action: Action,
) -> Result<CreatedInvitation, InviteError> {
    send(app, inviter, new, action, None).await
}

/// Sends an invitation: a new one, or with `resend`, the pending invitation of that id with a
/// new key (same id; the old key stops working).
async fn send(
    app: &App,
    inviter: &Principal,
    new: NewInvitation,
    action: Action,
    resend: Option<&OneTimeKey>,
) -> Result<CreatedInvitation, InviteError> {
    let inviter_member = manager(inviter)?;
    if !inviter_member.role.may_invite(new.role) {
        return Err(InviteError::Forbidden);
    }
    let inviter_user_id = inviter_member.user_id;
    let now = app.clock.now();
    if !inviter
        .subscription
        .as_ref()
        .is_some_and(|s| s.is_live(now))
    {
        return Err(InviteError::NoLiveSubscription);
    }
    let mut tx = app.db.begin().await?;
    // Concurrent invitations of one email replace each other in turn, never both stay live.
    businesses::lock(tx.conn(), inviter.business_id).await?;
    if let Some(existing) = users::find_by_email_key(tx.conn(), new.email.key()).await?
        && members::find(tx.conn(), inviter.business_id, existing.id)
            .await?
            .is_some()
    {
        return Err(InviteError::AlreadyMember);
    }
    let secret = secret::generate("");
    let valid_days = i64::from(app.config.invitation_ttl_days);
    let expires_at = now.plus(Duration::days(valid_days));
    let id = match resend {
        // The invitation keeps its id and its seat; only the key, sender and expiry change.
        Some(old) => {
            let rekeyed = one_time_keys::rekey_invitation(
                tx.conn(),
                old,
                &secret.hash,
                inviter_user_id,
                expires_at,
                now,
            )
            .await?;
            if !rekeyed {
                return Err(InviteError::NotFound);
            }
            old.id
        }
        None => {
            one_time_keys::revoke_invitations_of(
                tx.conn(),
                inviter.business_id,
                new.email.key(),
                now,
            )
            .await?;
            // The plan's `members` limit counts pending invitations as seats (checked again
            // when one is accepted, since the limit or the members may change meanwhile).
            let pending =
                one_time_keys::count_pending_invitations(tx.conn(), inviter.business_id, now)
                    .await?;
            if let Some(sub) = &inviter.subscription {
                metering::ensure_room(
                    tx.conn(),
                    inviter.business_id,
                    sub,
                    metering::MEMBERS,
                    pending,
                    1,
                )
                .await?;
            }
            let id = Uuid::now_v7();
            one_time_keys::insert(
                tx.conn(),
                &OneTimeKey {
                    id,
                    purpose: PURPOSE.to_owned(),
                    hash: secret.hash.clone(),
                    user_id: None,
                    business_id: Some(inviter.business_id),
                    email: Some(new.email.key().to_owned()),
                    role: Some(new.role.as_str().to_owned()),
                    created_by: Some(inviter_user_id),
                    failed_attempts: 0,
                    created_at: now,
                    expires_at,
                    used_at: None,
                    revoked_at: None,
                },
            )
            .await?;
            id
        }
    };
    let link = format!(
        "{}/invitations/accept?key={}",
        app.config.public_base(),
        secret.clear
    );
    if new.send_email {
        let inviter_name = display_name(
            &inviter_member.first_name,
            &inviter_member.last_name,
            &inviter_member.email,
        );
        let rendered = mail::Invitation {
            inviter_name: &inviter_name,
            business_name: &inviter.business_name,
            role: new.role.as_str(),
            valid_days: &valid_days.to_string(),
            link: &link,
        }
        .render()?;
        mail::enqueue(&mut tx, &app.mailer, new.email.as_str(), rendered, now).await?;
    }
    let event = Event::by(action, inviter)
        .target("invitation", id)
        .details(json!({
            "email": new.email.key(),
            "role": new.role.as_str(),
            "emailed": new.send_email,
        }));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    if new.send_email {
        app.mail_queued.notify_one();
    }
    tracing::info!(invitation_id = %id, business_id = %inviter.business_id, "invitation created");
    Ok(CreatedInvitation {
        id,
        email: new.email.key().to_owned(),
        role: new.role,
        business_id: inviter.business_id,
        business_name: inviter.business_name.clone(),
        expires_at,
        key: secret.clear,
        link,
        emailed: new.send_email,
    })
}

/// The caller's membership if it may manage invitations (owners and admins).
fn manager(caller: &Principal) -> Result<&Membership, InviteError> {
    caller
        .member
        .as_ref()
        .filter(|m| m.role.may(Permission::ManageInvitations))
        .ok_or(InviteError::Forbidden)
}

/// The role an invitation offers.
fn role_of(key: &OneTimeKey) -> anyhow::Result<Role> {
    key.role
        .as_deref()
        .unwrap_or("member")
        .parse::<Role>()
        .map_err(|e| anyhow::anyhow!("invitation {}: {e}", key.id))
}

/// A business's pending invitations, newest first (owners and admins).
pub async fn list_pending(app: &App, caller: &Principal) -> Result<Vec<OneTimeKey>, InviteError> {
    manager(caller)?;
    let mut tx = app.db.read().await?;
    Ok(one_time_keys::pending_invitations(tx.conn(), caller.business_id, app.clock.now()).await?)
}

/// Revokes a pending invitation: its link stops working at once.
pub async fn revoke(app: &App, caller: &Principal, id: Uuid) -> Result<(), InviteError> {
    manager(caller)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    if !one_time_keys::revoke_invitation(tx.conn(), caller.business_id, id, now).await? {
        return Err(InviteError::NotFound);
    }
    let event = Event::by(Action::InvitationRevoked, caller).target("invitation", id);
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    tracing::info!(invitation_id = %id, business_id = %caller.business_id, "invitation revoked");
    Ok(())
}

/// Revokes the pending invitations `inviter` sent to `business_id` that they may no longer
/// send: those their new `role` may not offer, or all of them when `role` is `None` (they left,
/// were removed, or their account was turned off). Runs on the caller's transaction and returns
/// one `invitation.revoked` event by `actor` per invitation, for the caller to record last.
pub async fn revoke_unsendable(
    mut c: Conn<'_>,
    business_id: Uuid,
    inviter: Uuid,
    role: Option<Role>,
    actor: Actor,
    reason: &'static str,
    now: Timestamp,
) -> anyhow::Result<Vec<Event>> {
    let sent =
        one_time_keys::pending_invitations_sent_by(c.reborrow(), business_id, inviter, now).await?;
    let mut events = Vec::new();
    for key in sent {
        let offered = role_of(&key)?;
        if role.is_some_and(|r| r.may_invite(offered)) {
            continue;
        }
        if one_time_keys::revoke_invitation(c.reborrow(), business_id, key.id, now).await? {
            events.push(
                Event::new(Action::InvitationRevoked, actor)
                    .business(business_id)
                    .target("invitation", key.id)
                    .details(json!({
                        "email": key.email,
                        "role": offered.as_str(),
                        "invited_by": inviter,
                        "reason": reason,
                    })),
            );
        }
    }
    Ok(events)
}

/// Whether the sender of an invitation may still offer its role in its business: an active
/// member, with an account that is on, whose role may invite that role. An invitation without a
/// known sender is vouched for by nobody.
async fn sender_may_still_offer(
    mut c: Conn<'_>,
    business_id: Uuid,
    sender: Option<Uuid>,
    offered: Role,
) -> anyhow::Result<bool> {
    let Some(sender) = sender else {
        return Ok(false);
    };
    let Some(member) = members::find(c.reborrow(), business_id, sender)
        .await?
        .filter(|m| m.status == "active")
    else {
        return Ok(false);
    };
    let role: Role = member
        .role
        .parse()
        .map_err(|e: String| anyhow::anyhow!("member {}: {e}", member.id))?;
    if !role.may_invite(offered) {
        return Ok(false);
    }
    Ok(users::find(c, sender).await?.is_some_and(|u| u.is_active))
}

/// Sends a pending invitation again with a new key (and a new expiry); the old link stops
/// working.
pub async fn resend(
    app: &App,
    caller: &Principal,
    id: Uuid,
) -> Result<CreatedInvitation, InviteError> {
    manager(caller)?;
    let old = {
        let mut tx = app.db.read().await?;
        one_time_keys::find_pending_invitation(tx.conn(), caller.business_id, id, app.clock.now())
            .await?
            .ok_or(InviteError::NotFound)?
    };
    let role = role_of(&old)?;
    let email = Email::from_stored_key(old.email.as_deref().unwrap_or_default());
    send(
        app,
        caller,
        NewInvitation {
            email,
            role,
            send_email: true,
        },
        Action::InvitationResent,
        Some(&old),
    )
    .await
}

/// How a person is named to others: their names, or their address when they gave none.
pub fn display_name(first: &str, last: &str, email: &str) -> String {
    let name = format!("{first} {last}");
    let name = name.trim();
    if name.is_empty() {
        email.to_owned()
    } else {
        name.to_owned()
    }
}

/// What a signup form shows about an invitation before it is accepted.
#[derive(Debug)]
pub struct InvitationDetails {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub business: Business,
    /// The user who sent it.
    pub inviter_id: Option<Uuid>,
    pub inviter_name: String,
    pub inviter_email: Option<String>,
    pub expires_at: Timestamp,
}

#[derive(Debug, Error)]
pub enum LookupError {
    #[error(transparent)]
    Key(#[from] KeyProblem),
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for LookupError {
    fn from(err: sqlx::Error) -> Self {
        LookupError::Unexpected(err.into())
    }
}

async fn load(app: &App, presented: &str) -> Result<(OneTimeKey, InvitationDetails), LookupError> {
    let mut tx = app.db.read().await?;
    let key = keys::find_usable(tx.conn(), PURPOSE, presented, app.clock.now()).await??;
    let business_id = key
        .business_id
        .ok_or_else(|| anyhow::anyhow!("invitation {} has no business", key.id))?;
    let business = businesses::find(tx.conn(), business_id)
        .await?
        .filter(|b| b.is_active)
        .ok_or(KeyProblem::NotFound)?;
    let role = role_of(&key)?;
    if !sender_may_still_offer(tx.conn(), business.id, key.created_by, role).await? {
        return Err(KeyProblem::Revoked.into());
    }
    let inviter = match key.created_by {
        Some(id) => users::find(tx.conn(), id).await?,
        None => None,
    };
    let details = InvitationDetails {
        id: key.id,
        email: key.email.clone().unwrap_or_default(),
        role,
        business,
        inviter_id: key.created_by,
        inviter_name: inviter
            .as_ref()
            .map(|u| display_name(&u.first_name, &u.last_name, &u.email))
            .unwrap_or_default(),
        inviter_email: inviter.map(|u| u.email),
        expires_at: key.expires_at,
    };
    Ok((key, details))
}

/// Looks up a live invitation by its key. A look-up that finds nothing usable counts against
/// the client's address like any failed use of a mailed key: else it would be a free oracle
/// for guessing keys.
pub async fn describe(
    app: &App,
    presented: &str,
    client: &ClientInfo,
) -> Result<InvitationDetails, LookupError> {
    let attempt = ratelimit::key_attempt(app, client).await??;
    let (_, details) = load(app, presented).await?;
    attempt.refund(app).await?;
    Ok(details)
}

/// What accepting needs from the invitee.
#[derive(Debug)]
pub struct Acceptance {
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub password: String,
}

#[derive(Debug)]
pub struct Accepted {
    /// `None` for a new account whose email must be verified first
    /// (`SAASKIT_REQUIRE_VERIFIED_EMAIL`).
    pub session: Option<Session>,
    pub user: User,
    pub business: Business,
    pub role: Role,
}

#[derive(Debug, Error)]
pub enum AcceptError {
    #[error(transparent)]
    Key(#[from] KeyProblem),
    #[error("the password is not acceptable: {}", .0.message)]
    Password(Invalid),
    #[error("an account with this email exists; log in to accept")]
    AccountExists,
    #[error("the invitation is for another email than the logged-in account's")]
    OtherEmail,
    #[error("only a person's session can accept an invitation")]
    NotAPerson,
    #[error("already a member of this business")]
    AlreadyMember,
    #[error(transparent)]
    Quota(#[from] metering::QuotaError),
    #[error(transparent)]
    Limited(#[from] ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AcceptError {
    fn from(err: sqlx::Error) -> Self {
        AcceptError::Unexpected(err.into())
    }
}

impl From<LookupError> for AcceptError {
    fn from(err: LookupError) -> Self {
        match err {
            LookupError::Key(k) => AcceptError::Key(k),
            LookupError::Limited(l) => AcceptError::Limited(l),
            LookupError::Unexpected(e) => AcceptError::Unexpected(e),
        }
    }
}

/// Accepts an invitation as a new account: creates the user, the membership, and a session, in
/// one transaction. The email is not marked verified: the inviter also holds the key, so using
/// it proves nothing about who reads that mailbox. The new account is mailed a verification
/// link, as at signup (and gets no session yet when verified emails are required).
pub async fn accept(
    app: &App,
    presented: &str,
    acceptance: Acceptance,
    client: ClientInfo,
) -> Result<Accepted, AcceptError> {
    let attempt = ratelimit::key_attempt(app, &client).await??;
    let accepted = accept_with(app, presented, acceptance, client).await?;
    attempt.refund(app).await?;
    Ok(accepted)
}

/// Accepts an invitation with an existing account, as its logged-in owner: no password, and
/// only for the invited email. Opens a session for the business joined.
pub async fn accept_as(
    app: &App,
    presented: &str,
    caller: &Principal,
    client: ClientInfo,
) -> Result<Accepted, AcceptError> {
    let attempt = ratelimit::key_attempt(app, &client).await??;
    let member = caller.person().ok_or(AcceptError::NotAPerson)?;
    let (key, details) = load(app, presented).await?;
    if Email::key_of(&member.email) != details.email {
        return Err(AcceptError::OtherEmail);
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let user = users::find(tx.conn(), member.user_id)
        .await?
        .filter(|u| u.is_active)
        .ok_or(AcceptError::NotAPerson)?;
    lock_and_recheck(&mut tx, &details).await?;
    if members::find(tx.conn(), details.business.id, user.id)
        .await?
        .is_some()
    {
        return Err(AcceptError::AlreadyMember);
    }
    if !one_time_keys::consume(tx.conn(), key.id, now).await? {
        return Err(KeyProblem::Used.into());
    }
    join(&mut tx, &details, user.id, now).await?;
    let session = open_session(app, &mut tx, user.id, details.business.id, now, client).await?;
    tx.commit().await?;
    attempt.refund(app).await?;
    tracing::info!(invitation_id = %key.id, user_id = %user.id, "invitation accepted by an existing account");
    Ok(Accepted {
        session: Some(session),
        user,
        business: details.business,
        role: details.role,
    })
}

/// Locks the invitation's business (against a concurrent removal or role change of its sender)
/// and checks again, under the lock, that the sender may still offer the invitation's role.
async fn lock_and_recheck(tx: &mut Tx, details: &InvitationDetails) -> Result<(), AcceptError> {
    businesses::lock(tx.conn(), details.business.id).await?;
    if !sender_may_still_offer(
        tx.conn(),
        details.business.id,
        details.inviter_id,
        details.role,
    )
    .await?
    {
        return Err(KeyProblem::Revoked.into());
    }
    Ok(())
}

/// Adds the membership an invitation offers, counting it against the plan's `members` limit.
async fn join(
    tx: &mut Tx,
    details: &InvitationDetails,
    user_id: Uuid,
    now: Timestamp,
) -> Result<(), AcceptError> {
    let member_id = Uuid::now_v7();
    members::insert(
        tx.conn(),
        &Member {
            id: member_id,
            business_id: details.business.id,
            user_id,
            role: details.role.as_str().to_owned(),
            status: "active".to_owned(),
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    // The plan's `members` limit, checked again now that the member is really added.
    let sub = metering::current_subscription(tx.conn(), details.business.id).await?;
    metering::consume_for(
        tx,
        details.business.id,
        sub.as_ref(),
        metering::MEMBERS,
        1,
        now,
    )
    .await?;
    let business = details.business.id;
    let events = [
        crate::webhooks::Outgoing::new(
            business,
            "invitation.accepted",
            json!({"business_id": business, "invitation_id": details.id, "user_id": user_id,
                   "email": details.email, "role": details.role.as_str()}),
        ),
        crate::webhooks::Outgoing::new(
            business,
            "member.joined",
            json!({"business_id": business, "member_id": member_id, "user_id": user_id,
                   "email": details.email, "role": details.role.as_str()}),
        ),
    ];
    crate::webhooks::emit_many(tx.conn(), now, &events).await?;
    let event = Event::new(Action::InvitationAccepted, Actor::User(user_id))
        .business(details.business.id)
        .target("invitation", details.id)
        .details(json!({"email": details.email, "role": details.role.as_str()}));
    audit::record(tx.conn(), now, event).await?;
    Ok(())
}

async fn accept_with(
    app: &App,
    presented: &str,
    acceptance: Acceptance,
    client: ClientInfo,
) -> Result<Accepted, AcceptError> {
    let (key, details) = load(app, presented).await?;
    let email = Email::from_stored_key(&details.email);
    let password =
        Password::parse(&acceptance.password, Some(&email)).map_err(AcceptError::Password)?;
    {
        let mut tx = app.db.read().await?;
        if users::find_by_email_key(tx.conn(), email.key())
            .await?
            .is_some()
        {
            return Err(AcceptError::AccountExists);
        }
    }
    let password_hash = app.hasher.hash(password.expose()).await?;

    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    lock_and_recheck(&mut tx, &details).await?;
    if !one_time_keys::consume(tx.conn(), key.id, now).await? {
        return Err(KeyProblem::Used.into());
    }
    let user = User {
        id: Uuid::now_v7(),
        email: email.as_str().to_owned(),
        email_key: email.key().to_owned(),
        first_name: acceptance.first_name.as_str().to_owned(),
        last_name: acceptance.last_name.as_str().to_owned(),
        is_active: true,
        is_staff: false,
        email_verified_at: None,
        created_at: now,
        updated_at: now,
    };
    match users::insert(tx.conn(), &user, &password_hash).await {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            return Err(AcceptError::AccountExists);
        }
        other => other?,
    }
    join(&mut tx, &details, user.id, now).await?;
    verification::issue(app, &mut tx, &user, now).await?;
    let session = if verification::may_open_session(app, &user) {
        Some(open_session(app, &mut tx, user.id, details.business.id, now, client).await?)
    } else {
        None
    };
    tx.commit().await?;
    app.mail_queued.notify_one();
    tracing::info!(invitation_id = %key.id, user_id = %user.id, "invitation accepted");
    Ok(Accepted {
        session,
        user,
        business: details.business,
        role: details.role,
    })
}
