use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use super::{Email, Invalid};

/// The 10,000 most common passwords, most common first, one per line, lowercase
/// (`data/common-passwords.txt`: the head of the frequency list zxcvbn 4.4.2 ships, drawn from
/// leaked-password corpora).
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// Whether `input` is one of the most common passwords (letter case ignored).
pub fn is_common(input: &str) -> bool {
    COMMON.contains(input.to_lowercase().as_str())
}

/// A new password that meets the policy: 8 to 128 characters, not one of the 10,000 most
/// common passwords, and not the account's email. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

impl Password {
    pub fn parse(input: &str, email: Option<&Email>) -> Result<Password, Invalid> {
        let len = input.chars().count();
        if len < MIN_LEN {
            return Err(Invalid::new(
                "too_short",
                format!("A password has at least {MIN_LEN} characters."),
            ));
        }
        if len > MAX_LEN {
            return Err(Invalid::new(
                "too_long",
                format!("A password has at most {MAX_LEN} characters."),
            ));
        }
        if email.is_some_and(|e| input.trim().to_lowercase() == e.key()) {
            return Err(Invalid::new(
                "too_guessable",
                "A password may not be the account's email address.",
            ));
        }
        if is_common(input) {
            return Err(Invalid::new(
                "too_common",
                "This password is one of the most commonly used ones; choose another.",
            ));
        }
        Ok(Password(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_bounds_length_and_refuses_the_email() {
        assert_eq!(
            Password::parse("short", None).map_err(|e| e.code).err(),
            Some("too_short")
        );
        assert!(Password::parse("eight ch", None).is_ok());
        assert!(Password::parse(&"ü".repeat(128), None).is_ok());
        assert_eq!(
            Password::parse(&"a".repeat(129), None)
                .map_err(|e| e.code)
                .err(),
            Some("too_long")
        );
        let email = Email::parse("ada@example.com").expect("valid");
        assert_eq!(
            Password::parse("Ada@Example.com", Some(&email))
                .map_err(|e| e.code)
                .err(),
            Some("too_guessable")
        );
        for common in [
            "password",
            "PASSWORD1",
            "iloveyou",
            "12345678",
            "qwertyuiop",
        ] {
            assert_eq!(
                Password::parse(common, None).map_err(|e| e.code).err(),
                Some("too_common"),
                "{common}"
            );
        }
        assert_eq!(COMMON.len(), 10_000, "the shipped list is whole");
        assert_eq!(
            format!("{:?}", Password::parse("hunter2hunter2", None).ok()),
            "Some(Password(***))"
        );
    }
}
