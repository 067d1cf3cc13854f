use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A member's role in a business, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Bot,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Bot => "bot",
        }
    }

    /// Whether this role may do `what`, by the table in [`PERMISSIONS`].
    pub fn may(self, what: Permission) -> bool {
        let column = match self {
            Role::Owner => 0,
            Role::Admin => 1,
            Role::Member => 2,
            Role::Bot => 3,
        };
        PERMISSIONS
            .iter()
            .find(|(p, _, _)| *p == what)
            .is_some_and(|(_, _, allowed)| allowed[column])
    }

    /// How much the role may do: owner > admin > member = bot. A bot works on the business's
    /// resources like a member (within its token's scopes) and manages nothing.
    fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Member | Role::Bot => 1,
        }
    }

    /// Whether this role may do what `min` may.
    pub fn at_least(self, min: Role) -> bool {
        self.rank() >= min.rank()
    }

    /// Whether this role may send an invitation offering `offered`: those who manage
    /// invitations offer `admin` or `member`, never more than their own role. Ownership is
    /// transferred, never invited; bots are created, not invited.
    pub fn may_invite(self, offered: Role) -> bool {
        self.may(Permission::ManageInvitations)
            && matches!(offered, Role::Admin | Role::Member)
            && self.at_least(offered)
    }
}

/// What saaskit's routes ask of a member's role. (A product's own routes use
/// [`Role::at_least`] through `Principal::require_role`, as `src/example` does.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read the business's data and create or edit its resources.
    UseProduct,
    ManageBilling,
    ManageInvitations,
    ManageKeys,
    /// Change the roles of members and admins, and remove them.
    ManageMembers,
    /// Make, unmake or remove owners, and transfer ownership.
    ManageOwners,
    ReadAuditLog,
    /// Register, change and remove webhook endpoints; see and retry their deliveries.
    ManageWebhooks,
    /// Rename the business.
    ManageBusiness,
    /// Require every member to sign in with a second factor.
    ManageSecurity,
}

/// The roles table: each permission, as the README words it, and whether an owner, an admin, a
/// member and a bot have it (in that order). The README's table is checked against this one.
pub const PERMISSIONS: [(Permission, &str, [bool; 4]); 10] = [
    (
        Permission::UseProduct,
        "use the product: read the business's data, create and edit its resources",
        [true, true, true, true],
    ),
    (
        Permission::ManageBilling,
        "change, cancel or resume the subscription; pay, see payments, manage the card on file",
        [true, true, false, false],
    ),
    (
        Permission::ManageInvitations,
        "invite people; list, revoke and resend invitations",
        [true, true, false, false],
    ),
    (
        Permission::ManageKeys,
        "create, rotate and revoke API keys; create and delete bots",
        [true, true, false, false],
    ),
    (
        Permission::ManageMembers,
        "change the roles of members and admins; remove them",
        [true, true, false, false],
    ),
    (
        Permission::ManageOwners,
        "make, unmake or remove owners; transfer ownership",
        [true, false, false, false],
    ),
    (
        Permission::ReadAuditLog,
        "read the business's audit log",
        [true, true, false, false],
    ),
    (
        Permission::ManageWebhooks,
        "manage webhook endpoints; see and retry their deliveries",
        [true, true, false, false],
    ),
    (
        Permission::ManageBusiness,
        "rename the business",
        [true, true, false, false],
    ),
    (
        Permission::ManageSecurity,
        "require every member to sign in with a second factor",
        [true, false, false, false],
    ),
];

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            "bot" => Ok(Role::Bot),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_shows_the_roles_table_of_the_code() {
        let readme = include_str!("../../../README.md");
        let mark = |yes: bool| if yes { "✓" } else { "—" };
        for (_, what, allowed) in PERMISSIONS {
            let row = format!(
                "| {what} | {} | {} | {} | {} |",
                mark(allowed[0]),
                mark(allowed[1]),
                mark(allowed[2]),
                mark(allowed[3])
            );
            assert!(
                readme.contains(&row),
                "README.md lacks the roles-table row:\n{row}"
            );
        }
    }

    #[test]
    fn owners_and_admins_invite_admins_and_members_only() {
        for inviter in [Role::Owner, Role::Admin] {
            assert!(inviter.may_invite(Role::Admin) && inviter.may_invite(Role::Member));
            assert!(!inviter.may_invite(Role::Owner) && !inviter.may_invite(Role::Bot));
        }
        for inviter in [Role::Member, Role::Bot] {
            for offered in [Role::Owner, Role::Admin, Role::Member, Role::Bot] {
                assert!(!inviter.may_invite(offered), "{inviter} invites {offered}");
            }
        }
    }

    #[test]
    fn only_owners_manage_owners_and_bots_manage_nothing() {
        assert!(Role::Owner.may(Permission::ManageOwners));
        assert!(!Role::Admin.may(Permission::ManageOwners));
        for p in PERMISSIONS.map(|(p, _, _)| p) {
            assert!(Role::Owner.may(p), "an owner may do everything");
            assert_eq!(Role::Bot.may(p), p == Permission::UseProduct);
        }
    }
}
