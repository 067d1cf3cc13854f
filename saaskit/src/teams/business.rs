//! A business's own settings: its name (owners and admins) and whether its members must sign in
//! with a second factor (owners only; see `accounts::mfa`).

use serde_json::json;
use thiserror::Error;

use crate::accounts::Principal;
use crate::app::App;
use crate::audit::{self, Action, Event};
use crate::domain::{BusinessName, Invalid, Permission};
use crate::store::businesses::{self, Business};

#[derive(Debug, Error)]
pub enum BusinessError {
    #[error("not allowed for this role")]
    Forbidden(&'static str),
    #[error("the business name is not acceptable: {}", .0.message)]
    Name(Invalid),
    /// Requiring a second factor of everyone, without one oneself, would lock oneself out.
    #[error("turn on two-factor sign-in for yourself first")]
    MfaNotEnabled,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for BusinessError {
    fn from(err: sqlx::Error) -> Self {
        BusinessError::Unexpected(err.into())
    }
}

/// The caller's business.
pub async fn get(app: &App, principal: &Principal) -> Result<Business, BusinessError> {
    let mut tx = app.db.read().await?;
    Ok(businesses::find(tx.conn(), principal.business_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("business {} vanished", principal.business_id))?)
}

/// What may change; `None` leaves a setting as it is.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    pub name: Option<&'a str>,
    pub require_mfa: Option<bool>,
}

/// Changes the caller's business. Each setting asks for its own permission, checked against the
/// caller's role as it is now.
pub async fn update(
    app: &App,
    principal: &Principal,
    changes: Changes<'_>,
) -> Result<Business, BusinessError> {
    let name = changes
        .name
        .map(BusinessName::parse)
        .transpose()
        .map_err(BusinessError::Name)?;
    let member = principal.member.as_ref().ok_or(BusinessError::Forbidden(
        "Only the business's owners and admins change it.",
    ))?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    businesses::lock(tx.conn(), principal.business_id).await?;
    let role =
        crate::store::members::find_by_id(tx.conn(), principal.business_id, member.member_id)
            .await?
            .filter(|m| m.status == "active")
            .and_then(|m| m.role.parse::<crate::domain::Role>().ok())
            .ok_or(BusinessError::Forbidden(
                "You are no longer a member of this business.",
            ))?;
    if name.is_some() && !role.may(Permission::ManageBusiness) {
        return Err(BusinessError::Forbidden(
            "Only owners and admins rename the business.",
        ));
    }
    if changes.require_mfa.is_some() && !role.may(Permission::ManageSecurity) {
        return Err(BusinessError::Forbidden(
            "Only owners decide whether members must use two-factor sign-in.",
        ));
    }
    let business = businesses::find(tx.conn(), principal.business_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("business {} vanished", principal.business_id))?;
    if changes.require_mfa == Some(true)
        && !business.require_mfa
        && !crate::accounts::mfa::has_second_factor(tx.conn(), member.user_id).await?
    {
        return Err(BusinessError::MfaNotEnabled);
    }
    let new_name = name
        .as_ref()
        .map_or(business.name.as_str(), BusinessName::as_str)
        .to_owned();
    let require_mfa = changes.require_mfa.unwrap_or(business.require_mfa);
    if new_name == business.name && require_mfa == business.require_mfa {
        return Ok(business);
    }
    businesses::set_settings(tx.conn(), business.id, &new_name, require_mfa, now).await?;
    let mut changed = serde_json::Map::new();
    if new_name != business.name {
        changed.insert(
            "name".into(),
            json!({"from": business.name, "to": new_name}),
        );
    }
    if require_mfa != business.require_mfa {
        changed.insert(
            "require_mfa".into(),
            json!({"from": business.require_mfa, "to": require_mfa}),
        );
    }
    let event = Event::by(Action::BusinessUpdated, principal)
        .target("business", business.id)
        .details(serde_json::Value::Object(changed));
    audit::record(tx.conn(), now, event).await?;
    // A loud commit: every cached caller of this business learns the new rule and name.
    tx.commit().await?;
    Ok(Business {
        name: new_name,
        require_mfa,
        updated_at: now,
        ..business
    })
}
