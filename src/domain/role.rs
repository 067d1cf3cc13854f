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

    /// Owners and admins manage the business (invitations, keys, members).
    pub fn can_manage(self) -> bool {
        self.at_least(Role::Admin)
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
}

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
