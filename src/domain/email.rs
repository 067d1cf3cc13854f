use std::fmt;

use super::{Invalid, has_control_chars};

/// An email address as the user typed it (trimmed), plus the key that makes it unique:
/// addresses that differ only in case belong to the same person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    address: String,
    key: String,
}

const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

impl Email {
    pub fn parse(input: &str) -> Result<Email, Invalid> {
        let address = input.trim();
        let invalid = || Invalid::new("invalid_email", "This is not a valid email address.");
        if address.is_empty() {
            return Err(Invalid::new("required", "An email address is required."));
        }
        if address.len() > MAX_LEN {
            return Err(Invalid::new(
                "too_long",
                format!("An email address has at most {MAX_LEN} characters."),
            ));
        }
        if has_control_chars(address) || address.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
        let (local, domain) = address.rsplit_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || local.len() > MAX_LOCAL_LEN
            || local.contains('@')
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || local.chars().any(|c| "()<>[]\\,;:\"".contains(c))
        {
            return Err(invalid());
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid());
        }
        for label in &labels {
            if label.is_empty()
                || label.len() > 63
                || label.starts_with('-')
                || label.ends_with('-')
                || !label.chars().all(|c| c.is_alphanumeric() || c == '-')
            {
                return Err(invalid());
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(invalid());
        }
        Ok(Email {
            address: address.to_owned(),
            key: address.to_lowercase(),
        })
    }

    /// An address stored by us after it was parsed once (its key). Lower-casing can turn a valid
    /// address into one `parse` would refuse (`İ` grows a combining dot), so it is not re-checked.
    pub fn from_stored_key(key: &str) -> Email {
        Email {
            address: key.to_owned(),
            key: key.to_owned(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The lower-cased address used for lookups and uniqueness.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lookup key of something that may or may not be a valid address (a login attempt):
    /// the same key [`Email::parse`] would give, without refusing anything.
    pub fn key_of(input: &str) -> String {
        input.trim().to_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_keys_them_case_insensitively() {
        let e = Email::parse("  Ada.Lovelace+saas@Example.COM ").expect("valid");
        assert_eq!(e.as_str(), "Ada.Lovelace+saas@Example.COM");
        assert_eq!(e.key(), "ada.lovelace+saas@example.com");
        assert_eq!(Email::key_of(" Ada.Lovelace+saas@Example.COM"), e.key());
        assert!(Email::parse("x@sub.domain.co.uk").is_ok());
        assert!(Email::parse("müller@bücher.de").is_ok());
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@example.com",
            "a b@example.com",
            "a@exa mple.com",
            "a@-example.com",
            "a@example..com",
            ".a@example.com",
            "a..b@example.com",
            "a@example.123",
            "a\u{0}@example.com",
            "a@example.com\u{7}",
            "<a>@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert_eq!(
            Email::parse(&long).map_err(|e| e.code),
            Err("invalid_email")
        );
        let longer = format!("a@{}.com", "b".repeat(260));
        assert_eq!(Email::parse(&longer).map_err(|e| e.code), Err("too_long"));
    }
}
