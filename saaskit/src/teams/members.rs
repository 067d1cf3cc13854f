//! Managing the members of a business: listing them, changing roles, removing them (or
//! leaving). A business always keeps at least one owner; admins manage members and admins but
//! never owners; only owners make owners. Ownership is transferred in one step
//! ([`transfer_ownership`]: the new owner is made, the old one becomes an admin), or in two
//! (make the new owner, then step down). A member who leaves, is removed or demoted takes back
//! the pending invitations they may no longer send.

use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use crate::accounts::Principal;
use crate::app::App;
use crate::audit::{self, Action, Actor, Event};
use crate::domain::{Permission, Role};
use crate::metering;
use crate::store::members::{self, MemberListing};
use crate::store::{businesses, tokens};
use crate::teams::invitations;

#[derive(Debug, Error)]
pub enum MemberError {
    #[error("not allowed for this role")]
    Forbidden(&'static str),
    #[error("no such member")]
    NotFound,
    #[error("the business must keep at least one owner")]
    LastOwner,
    #[error("a bot's role cannot be changed, nor can anyone be made a bot")]
    BotRole,
    #[error("a bot cannot own a business")]
    BotOwner,
    #[error("ownership can only be transferred to someone else")]
    SelfTransfer,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for MemberError {
    fn from(err: sqlx::Error) -> Self {
        MemberError::Unexpected(err.into())
    }
}

pub async fn list(app: &App, principal: &Principal) -> Result<Vec<MemberListing>, MemberError> {
    let mut tx = app.db.read().await?;
    Ok(members::list_active(tx.conn(), principal.business_id).await?)
}

/// Gives member `id` the role `role` (`owner`, `admin` or `member`).
pub async fn change_role(
    app: &App,
    principal: &Principal,
    id: Uuid,
    role: Role,
) -> Result<MemberListing, MemberError> {
    let Some(member) = &principal.member else {
        return Err(MemberError::Forbidden(
            "Only owners and admins change roles.",
        ));
    };
    if role == Role::Bot {
        return Err(MemberError::BotRole);
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    // Serializes role changes in a business, so two owners cannot demote each other at once.
    businesses::lock(tx.conn(), principal.business_id).await?;
    // The caller's role as it is now, not as it was when the request was authenticated: a
    // concurrent change may just have demoted them.
    let caller = current_role(&mut tx, principal.business_id, member.member_id).await?;
    if !caller.may(Permission::ManageMembers) {
        return Err(MemberError::Forbidden(
            "Only owners and admins change roles.",
        ));
    }
    let target = members::find_by_id(tx.conn(), principal.business_id, id)
        .await?
        .filter(|m| m.status == "active")
        .ok_or(MemberError::NotFound)?;
    let current: Role = target
        .role
        .parse()
        .map_err(|e: String| anyhow::anyhow!("member {id}: {e}"))?;
    if current == Role::Bot {
        return Err(MemberError::BotRole);
    }
    if !caller.may(Permission::ManageOwners) && (current == Role::Owner || role == Role::Owner) {
        return Err(MemberError::Forbidden("Only owners make or unmake owners."));
    }
    if current == Role::Owner
        && role != Role::Owner
        && members::count_owners(tx.conn(), principal.business_id).await? <= 1
    {
        return Err(MemberError::LastOwner);
    }
    members::set_role(tx.conn(), id, role.as_str(), now).await?;
    let revoked = invitations::revoke_unsendable(
        tx.conn(),
        principal.business_id,
        target.user_id,
        Some(role),
        Actor::of(principal),
        "inviter_role_changed",
        now,
    )
    .await?;
    crate::webhooks::emit(
        tx.conn(),
        now,
        principal.business_id,
        "member.role_changed",
        json!({"business_id": principal.business_id, "member_id": id, "user_id": target.user_id,
               "role": role.as_str(), "previous_role": current.as_str()}),
    )
    .await?;
    let event = Event::by(Action::MemberRoleChanged, principal)
        .target("member", id)
        .details(json!({"user_id": target.user_id, "from": current.as_str(), "to": role.as_str()}));
    audit::record(tx.conn(), now, event).await?;
    for event in revoked {
        audit::record(tx.conn(), now, event).await?;
    }
    let listing = members::list_active(tx.conn(), principal.business_id)
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| anyhow::anyhow!("member {id} vanished while changing role"))?;
    tx.commit().await?;
    tracing::info!(member_id = %id, role = %role, "member role changed");
    Ok(listing)
}

/// Removes member `id` from the business, or lets callers remove themselves (leaving). Their
/// tokens for this business stop working at once; they no longer count against `members`.
pub async fn remove(app: &App, principal: &Principal, id: Uuid) -> Result<(), MemberError> {
    let Some(caller) = &principal.member else {
        return Err(MemberError::Forbidden("Only members manage members."));
    };
    let leaving = caller.member_id == id;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    businesses::lock(tx.conn(), principal.business_id).await?;
    // The caller's role as it is now (see `change_role`).
    let caller_role = current_role(&mut tx, principal.business_id, caller.member_id).await?;
    if !leaving && !caller_role.may(Permission::ManageMembers) {
        return Err(MemberError::Forbidden(
            "Only owners and admins remove members.",
        ));
    }
    let target = members::find_by_id(tx.conn(), principal.business_id, id)
        .await?
        .filter(|m| m.status == "active")
        .ok_or(MemberError::NotFound)?;
    if target.role == Role::Owner.as_str() {
        if !leaving && !caller_role.may(Permission::ManageOwners) {
            return Err(MemberError::Forbidden("Only owners remove owners."));
        }
        if members::count_owners(tx.conn(), principal.business_id).await? <= 1 {
            return Err(MemberError::LastOwner);
        }
    }
    if !members::suspend(tx.conn(), target.id, now).await? {
        return Err(MemberError::NotFound);
    }
    tokens::revoke_all_of_member(tx.conn(), principal.business_id, target.user_id, now).await?;
    metering::release(&mut tx, principal.business_id, metering::MEMBERS, 1).await?;
    let (action, reason) = if target.role == Role::Bot.as_str() {
        (Action::BotDeleted, "inviter_removed")
    } else if leaving {
        (Action::MemberLeft, "inviter_left")
    } else {
        (Action::MemberRemoved, "inviter_removed")
    };
    let revoked = invitations::revoke_unsendable(
        tx.conn(),
        principal.business_id,
        target.user_id,
        None,
        Actor::of(principal),
        reason,
        now,
    )
    .await?;
    crate::webhooks::emit(
        tx.conn(),
        now,
        principal.business_id,
        "member.removed",
        json!({"business_id": principal.business_id, "member_id": id, "user_id": target.user_id,
               "role": target.role, "reason": if leaving { "left" } else { "removed" }}),
    )
    .await?;
    let event = Event::by(action, principal)
        .target("member", id)
        .details(json!({"user_id": target.user_id, "role": target.role}));
    audit::record(tx.conn(), now, event).await?;
    for event in revoked {
        audit::record(tx.conn(), now, event).await?;
    }
    tx.commit().await?;
    tracing::info!(member_id = %id, leaving, "member removed");
    Ok(())
}

/// Makes member `id` an owner and the calling owner an admin, in one transaction.
pub async fn transfer_ownership(
    app: &App,
    principal: &Principal,
    id: Uuid,
) -> Result<MemberListing, MemberError> {
    let Some(caller) = &principal.member else {
        return Err(MemberError::Forbidden("Only owners transfer ownership."));
    };
    if caller.member_id == id {
        return Err(MemberError::SelfTransfer);
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    businesses::lock(tx.conn(), principal.business_id).await?;
    if !current_role(&mut tx, principal.business_id, caller.member_id)
        .await?
        .may(Permission::ManageOwners)
    {
        return Err(MemberError::Forbidden("Only owners transfer ownership."));
    }
    let target = members::find_by_id(tx.conn(), principal.business_id, id)
        .await?
        .filter(|m| m.status == "active")
        .ok_or(MemberError::NotFound)?;
    if target.role == Role::Bot.as_str() {
        return Err(MemberError::BotOwner);
    }
    // Not to someone staff turned off: the business would be left without a working owner.
    if !crate::store::users::find(tx.conn(), target.user_id)
        .await?
        .is_some_and(|u| u.is_active)
    {
        return Err(MemberError::NotFound);
    }
    members::set_role(tx.conn(), id, Role::Owner.as_str(), now).await?;
    members::set_role(tx.conn(), caller.member_id, Role::Admin.as_str(), now).await?;
    // Today an admin may send all that an owner may, so this revokes nothing; it keeps the
    // rule should the roles change.
    let revoked = invitations::revoke_unsendable(
        tx.conn(),
        principal.business_id,
        caller.user_id,
        Some(Role::Admin),
        Actor::of(principal),
        "inviter_role_changed",
        now,
    )
    .await?;
    let changed = [
        (
            id,
            target.user_id,
            Role::Owner.as_str(),
            target.role.as_str(),
        ),
        (
            caller.member_id,
            caller.user_id,
            Role::Admin.as_str(),
            Role::Owner.as_str(),
        ),
    ];
    for (member_id, user_id, role, previous_role) in changed {
        crate::webhooks::emit(
            tx.conn(),
            now,
            principal.business_id,
            "member.role_changed",
            json!({"business_id": principal.business_id, "member_id": member_id,
                   "user_id": user_id, "role": role, "previous_role": previous_role}),
        )
        .await?;
    }
    let event = Event::by(Action::OwnershipTransferred, principal)
        .target("member", id)
        .details(json!({"user_id": target.user_id, "previous_role": target.role, "from_member": caller.member_id}));
    audit::record(tx.conn(), now, event).await?;
    for event in revoked {
        audit::record(tx.conn(), now, event).await?;
    }
    let listing = members::list_active(tx.conn(), principal.business_id)
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| anyhow::anyhow!("member {id} vanished during the transfer"))?;
    tx.commit().await?;
    tracing::info!(member_id = %id, "ownership transferred");
    Ok(listing)
}

async fn current_role(
    tx: &mut crate::db::Tx,
    business_id: Uuid,
    member_id: Uuid,
) -> Result<Role, MemberError> {
    let member = members::find_by_id(tx.conn(), business_id, member_id)
        .await?
        .filter(|m| m.status == "active")
        .ok_or(MemberError::Forbidden(
            "You are no longer a member of this business.",
        ))?;
    member
        .role
        .parse()
        .map_err(|e: String| MemberError::Unexpected(anyhow::anyhow!("member {member_id}: {e}")))
}
