//! A person's sessions: listing their live tokens, revoking one or all the others, and changing
//! the password (which ends every other session). Each revocation commits with
//! [`Tx::commit`](crate::db::Tx::commit), so the revoked tokens stop working at once on this
//! replica and within the auth cache's TTL on the others.

use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use super::{Principal, idle_before};
use crate::app::App;
use crate::audit::{self, Action, Actor, Event};
use crate::db::Timestamp;
use crate::domain::Role;
use crate::domain::{Email, Invalid, Password};
use crate::store::tokens::{self, SessionRow};
use crate::store::{businesses, members, one_time_keys, subscriptions, users};

#[derive(Debug, Error)]
pub enum SessionError {
    /// The caller is not a person: an API key has no sessions, a bot no password.
    #[error("only people have sessions and passwords")]
    NotAPerson,
    #[error("no such session")]
    NotFound,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("the new password does not meet the policy")]
    Password(Invalid),
    #[error("the caller is the only owner of businesses with other members")]
    OwnershipTransferRequired(Vec<Uuid>),
    #[error(transparent)]
    Limited(#[from] crate::ratelimit::Limited),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SessionError {
    fn from(err: sqlx::Error) -> Self {
        SessionError::Unexpected(err.into())
    }
}

/// One live token of the caller, with when it lapses.
#[derive(Debug, Clone)]
pub struct SessionListing {
    pub row: SessionRow,
    /// The token the request came with.
    pub current: bool,
    /// When it lapses if unused (sessions only).
    pub idle_expires_at: Option<Timestamp>,
}

fn user_of(principal: &Principal) -> Result<Uuid, SessionError> {
    principal.user_id().ok_or(SessionError::NotAPerson)
}

/// The caller's live sessions (and, for a bot, its tokens), most recently used first.
pub async fn list(app: &App, principal: &Principal) -> Result<Vec<SessionListing>, SessionError> {
    let user = user_of(principal)?;
    let now = app.clock.now();
    let idle = chrono::Duration::hours(i64::from(app.config.session_idle_hours));
    let mut tx = app.db.read().await?;
    let rows = tokens::live_of_user(tx.conn(), user, now, idle_before(app, now)).await?;
    Ok(rows
        .into_iter()
        .map(|row| SessionListing {
            current: row.id == principal.token_id,
            idle_expires_at: (row.kind == "session")
                .then(|| row.last_used_at.unwrap_or(row.created_at).plus(idle)),
            row,
        })
        .collect())
}

/// Revokes one of the caller's sessions (the current one included: that is a logout).
pub async fn revoke(app: &App, principal: &Principal, id: Uuid) -> Result<(), SessionError> {
    let user = user_of(principal)?;
    let mut tx = app.db.begin().await?;
    let now = app.clock.now();
    if !tokens::revoke_of_user(tx.conn(), user, id, now, "session_revoked").await? {
        return Err(SessionError::NotFound);
    }
    let event = Event::by(Action::SessionRevoked, principal).target("session", id);
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes every session of the caller but the current one; returns how many.
pub async fn revoke_others(app: &App, principal: &Principal) -> Result<u64, SessionError> {
    let user = user_of(principal)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let n =
        tokens::revoke_others_of_user(tx.conn(), user, principal.token_id, now, "session_revoked")
            .await?;
    let event = Event::by(Action::SessionRevoked, principal)
        .details(json!({"all_others": true, "revoked": n}));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(n)
}

/// Checks the caller's current password (counted like failed logins to the account); returns
/// the caller's user id and membership.
pub(crate) async fn check_password(
    app: &App,
    principal: &Principal,
    current: &str,
) -> Result<(Uuid, super::Membership), SessionError> {
    let member = principal.person().ok_or(SessionError::NotAPerson)?;
    let user = member.user_id;
    let creds = {
        let mut tx = app.db.read().await?;
        users::find_credentials_by_email_key(tx.conn(), &Email::key_of(&member.email)).await?
    }
    .filter(|c| c.user.id == user)
    .ok_or(SessionError::NotAPerson)?;
    // Whoever holds a stolen session may not guess the password at leisure: wrong current
    // passwords count like failed logins to the account.
    let attempt = crate::ratelimit::hit(
        app,
        app.config.rate_limit_login_account,
        crate::ratelimit::bucket("password-change", &user.to_string()),
    )
    .await??;
    if !app.hasher.verify(current, &creds.password_hash).await? {
        return Err(SessionError::WrongPassword);
    }
    attempt.refund(app).await?;
    Ok((user, member.clone()))
}

/// Changes the caller's password after checking the current one, and ends every other session
/// (the current one stays). Returns how many sessions ended.
pub async fn change_password(
    app: &App,
    principal: &Principal,
    current: &str,
    new: &str,
) -> Result<u64, SessionError> {
    let (user, member) = check_password(app, principal, current).await?;
    let email = Email::parse(&member.email).ok();
    let password = Password::parse(new, email.as_ref()).map_err(SessionError::Password)?;
    let hash = app.hasher.hash(password.expose()).await?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    users::lock(tx.conn(), user).await?;
    users::set_password_hash(tx.conn(), user, &hash, now).await?;
    let ended =
        tokens::revoke_others_of_user(tx.conn(), user, principal.token_id, now, "password_changed")
            .await?;
    let event = Event::by(Action::PasswordChanged, principal).details(json!({"revoked": ended}));
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok(ended)
}

/// Changes the caller's own names (a person's session only).
pub async fn rename(
    app: &App,
    principal: &Principal,
    first_name: &crate::domain::PersonName,
    last_name: &crate::domain::PersonName,
) -> Result<(), SessionError> {
    let user = principal.person().ok_or(SessionError::NotAPerson)?.user_id;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    users::set_names(
        tx.conn(),
        user,
        first_name.as_str(),
        last_name.as_str(),
        now,
    )
    .await?;
    audit::record(tx.conn(), now, Event::by(Action::UserRenamed, principal)).await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes the caller's own account, after checking their password. Each business of which
/// they are the only person goes with it (closed: every token, key and invitation revoked, the
/// subscription ended, the members let go); a business with other people needs another owner
/// first when the caller is its only one. Their personal data is erased and every session ends;
/// the row stays, anonymous, so the ledger and the audit log still point somewhere. Returns the
/// businesses closed.
pub async fn delete_account(
    app: &App,
    principal: &Principal,
    password: &str,
) -> Result<Vec<Uuid>, SessionError> {
    let (user, _) = check_password(app, principal, password).await?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    users::lock(tx.conn(), user).await?;
    let mut businesses_joined: Vec<Uuid> = members::active_of_user(tx.conn(), user)
        .await?
        .into_iter()
        .map(|m| m.business_id)
        .collect();
    // Locked in one global order, so two deletions never wait on each other.
    businesses_joined.sort();
    let mut closing = Vec::new();
    let mut leaving = Vec::new();
    let mut blocked = Vec::new();
    for business_id in businesses_joined {
        businesses::lock(tx.conn(), business_id).await?;
        // Read again under the lock: a removal or a transfer may just have committed.
        let Some(m) = members::find(tx.conn(), business_id, user)
            .await?
            .filter(|m| m.status == "active")
        else {
            continue;
        };
        let others = members::count_active_people(tx.conn(), business_id).await? - 1;
        let active = businesses::find(tx.conn(), business_id)
            .await?
            .is_some_and(|b| b.is_active);
        if others <= 0 {
            closing.push(m);
        } else if active
            && m.role == Role::Owner.as_str()
            && members::count_owners(tx.conn(), business_id).await? <= 1
        {
            // A business that staff turned off never blocks: nobody could transfer it.
            blocked.push(business_id);
        } else {
            leaving.push(m);
        }
    }
    if !blocked.is_empty() {
        return Err(SessionError::OwnershipTransferRequired(blocked));
    }
    // Recorded last, all at once: the chain head stays unlocked until every row is.
    let mut events = Vec::new();
    for m in &leaving {
        if members::suspend(tx.conn(), m.id, now).await? {
            crate::metering::release(&mut tx, m.business_id, crate::metering::MEMBERS, 1).await?;
        }
        crate::webhooks::emit(
            tx.conn(),
            now,
            m.business_id,
            "member.removed",
            json!({"business_id": m.business_id, "member_id": m.id, "user_id": user,
                   "role": m.role, "reason": "left"}),
        )
        .await?;
        events.push(
            Event::new(Action::MemberLeft, Actor::User(user))
                .business(m.business_id)
                .target("member", m.id)
                .details(json!({"user_id": user, "role": m.role, "account_deleted": true})),
        );
        events.extend(
            crate::teams::invitations::revoke_unsendable(
                tx.conn(),
                m.business_id,
                user,
                None,
                Actor::User(user),
                "inviter_left",
                now,
            )
            .await?,
        );
    }
    let mut closed = Vec::new();
    for m in &closing {
        close_business(&mut tx, m.business_id, user, now).await?;
        events.push(
            Event::new(Action::BusinessClosed, Actor::User(user))
                .business(m.business_id)
                .target("business", m.business_id),
        );
        closed.push(m.business_id);
    }
    tokens::revoke_all_of_user(tx.conn(), user, now).await?;
    for purpose in [
        super::reset::PURPOSE,
        super::verification::PURPOSE,
        super::magic::PURPOSE,
        super::mfa::CHALLENGE_PURPOSE,
    ] {
        one_time_keys::revoke_for_user(tx.conn(), user, purpose, now).await?;
    }
    // Second factors are personal secrets: erased with the rest.
    crate::store::mfa::delete_totp(tx.conn(), user).await?;
    crate::store::mfa::delete_recovery_codes(tx.conn(), user).await?;
    crate::store::passkeys::delete_all_of_user(tx.conn(), user).await?;
    users::erase(tx.conn(), user, now).await?;
    events.push(
        Event::new(Action::AccountDeleted, Actor::User(user))
            .target("user", user)
            .details(json!({"closed_businesses": closed})),
    );
    for event in events {
        audit::record(tx.conn(), now, event).await?;
    }
    tx.commit().await?;
    tracing::info!(user_id = %user, closed = closed.len(), "account deleted");
    Ok(closed)
}

/// Closes a business whose last person is leaving: nothing of it works any more, and its
/// subscription stops (the sweep neither renews nor charges it). Its rows stay for the ledger.
async fn close_business(
    tx: &mut crate::db::Tx,
    business_id: Uuid,
    user: Uuid,
    now: crate::db::Timestamp,
) -> Result<(), SessionError> {
    businesses::set_active(tx.conn(), business_id, false, now).await?;
    tokens::revoke_all_of_business(tx.conn(), business_id, now).await?;
    one_time_keys::revoke_all_invitations_of(tx.conn(), business_id, now).await?;
    members::suspend_all_of_business(tx.conn(), business_id, now).await?;
    // A renewal or a plan change may be changing the subscription right now: once it commits,
    // look again (the conditional update fails on the state it replaced).
    for _ in 0..5 {
        let Some(current) = subscriptions::current_of(tx.conn(), business_id).await? else {
            return Ok(());
        };
        let ended = subscriptions::Subscription {
            status: "canceled".to_owned(),
            ended_at: Some(now),
            cancel_at_period_end: false,
            pending_plan_id: None,
            updated_at: now,
            ..current.clone()
        };
        if subscriptions::update_state(tx.conn(), &current, &ended).await? {
            let plan = crate::store::plans::find(tx.conn(), current.plan_id)
                .await?
                .map(|p| p.code)
                .unwrap_or_default();
            crate::billing::events::record(
                tx,
                &ended,
                "canceled",
                crate::billing::events::Actor::User(user),
                Some(crate::billing::events::snapshot(&current, &plan)),
                Some(crate::billing::events::snapshot(&ended, &plan)),
                now,
            )
            .await?;
            return Ok(());
        }
    }
    Err(anyhow::anyhow!("the subscription of {business_id} kept changing while closing it").into())
}

/// Moves the caller to another business they belong to: the current session ends and a new one,
/// acting for `business_id`, replaces it. A business they do not (or no longer) belong to, or
/// one that is off, is not found.
pub async fn switch_business(
    app: &App,
    principal: &Principal,
    business_id: Uuid,
    client: super::ClientInfo,
) -> Result<(super::Session, businesses::Business), SessionError> {
    let user = principal.person().ok_or(SessionError::NotAPerson)?.user_id;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let business = businesses::find(tx.conn(), business_id)
        .await?
        .filter(|b| b.is_active)
        .ok_or(SessionError::NotFound)?;
    members::find(tx.conn(), business_id, user)
        .await?
        .filter(|m| m.status == "active")
        .ok_or(SessionError::NotFound)?;
    tokens::revoke(tx.conn(), principal.token_id, now).await?;
    let session = super::open_session(app, &mut tx, user, business_id, now, client).await?;
    let event = Event::new(Action::BusinessSwitched, Actor::User(user))
        .business(business_id)
        .target("session", session.token_id);
    audit::record(tx.conn(), now, event).await?;
    tx.commit().await?;
    Ok((session, business))
}

/// The businesses the caller belongs to, with their role in each.
pub async fn businesses_of(
    app: &App,
    principal: &Principal,
) -> Result<Vec<members::BusinessOfUser>, SessionError> {
    let user = user_of(principal)?;
    let mut tx = app.db.read().await?;
    Ok(members::businesses_of_user(tx.conn(), user).await?)
}
