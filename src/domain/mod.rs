//! Values parsed once at the edge. A value of one of these types that exists is valid.

mod email;
mod names;
mod password;
mod role;
mod scope;

pub use email::Email;
pub use names::{BusinessName, PersonName};
pub use password::{MAX_LEN as PASSWORD_MAX_LEN, MIN_LEN as PASSWORD_MIN_LEN, Password};
pub use role::{PERMISSIONS, Permission, Role};
pub use scope::{Scope, Scopes};

/// Why a value was refused: a stable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Control characters (NUL included) have no place in names or addresses; PostgreSQL cannot
/// even store NUL in TEXT.
pub fn has_control_chars(s: &str) -> bool {
    s.chars().any(char::is_control)
}
