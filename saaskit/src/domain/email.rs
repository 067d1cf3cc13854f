use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_script::Script;
use unicode_security::MixedScript;
use unicode_security::mixed_script::AugmentedScriptSet;

use super::{Invalid, has_control_chars};

/// An email address as the user typed it (trimmed, in Unicode's NFKC form), plus the key that
/// makes it unique: addresses that differ only in case, or only in compatibility forms (a
/// fullwidth `ｋ` for `k`), belong to the same person.
///
/// An address that mixes scripts within its local part or within one domain label (a Cyrillic
/// `а` among Latin letters: `kаte@example.com`) is refused as `email_confusable`: it would look
/// like, and be mistaken for, somebody else's. The check is per part, not over the whole
/// address, because a mailbox in one script at a domain in another is ordinary (`иван@gmail.com`,
/// `用户@example.com`), and a domain name is judged label by label, as browsers judge IDNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    address: String,
    key: String,
}

const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

impl Email {
    pub fn parse(input: &str) -> Result<Email, Invalid> {
        // Compatibility forms (fullwidth letters, ligatures, `＠`) become the characters they
        // stand for before anything is checked, so what is checked is what is stored.
        let normalized: String = input.nfkc().collect();
        let address = normalized.trim();
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
        if !in_one_script(local) || !labels.iter().all(|label| in_one_script(label)) {
            return Err(Invalid::new(
                "email_confusable",
                "This address mixes alphabets that look alike (such as a Cyrillic а among Latin \
                 letters). Type it in one alphabet.",
            ));
        }
        Ok(Email {
            address: address.to_owned(),
            key: Email::key_of(address),
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
    /// the same key [`Email::parse`] would give, without refusing anything. NFKC again after
    /// lower-casing, which can leave a string that is not in NFKC.
    pub fn key_of(input: &str) -> String {
        let normalized: String = input.nfkc().collect();
        normalized.trim().to_lowercase().nfkc().collect()
    }
}

/// Whether one part of an address (the local part, a domain label) is written in one script by
/// Unicode TS #39: single-script, where digits and punctuation go with any script and Han with
/// kana, Hangul or Bopomofo is one writing system; or Latin mixed only with one of those East
/// Asian writing systems (TS #39's "highly restrictive" level, as in `tanaka太郎`), which is
/// common and confuses no one. Latin with Cyrillic or Greek, or any two other scripts, is not.
fn in_one_script(part: &str) -> bool {
    if part.is_single_script() {
        return true;
    }
    let mut besides_latin = AugmentedScriptSet::default();
    for c in part.chars() {
        let set = AugmentedScriptSet::for_char(c);
        if !set.base.contains_script(Script::Latin) {
            besides_latin.intersect_with(set);
        }
    }
    besides_latin.jpan || besides_latin.kore || besides_latin.hanb
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
    fn compatibility_forms_are_the_letters_they_stand_for() {
        let fullwidth = Email::parse("ｋate@example.com").expect("valid");
        assert_eq!(fullwidth.as_str(), "kate@example.com", "stored normalised");
        assert_eq!(fullwidth.key(), "kate@example.com");
        assert_eq!(Email::key_of("ｋate@example.com"), "kate@example.com");
        assert_eq!(
            Email::key_of(" ＫＡＴＥ＠ＥＸＡＭＰＬＥ．ＣＯＭ "),
            "kate@example.com"
        );
        assert_eq!(
            Email::parse("ＫＡＴＥ＠ＥＸＡＭＰＬＥ．ＣＯＭ").map(|e| e.key().to_owned()),
            Ok("kate@example.com".to_owned())
        );
        // The ﬁ ligature, and a decomposed é, as the precomposed é.
        assert_eq!(Email::key_of("oﬁce@example.com"), "ofice@example.com");
        assert_eq!(
            Email::key_of("jose\u{301}@example.com"),
            Email::key_of("josé@example.com")
        );
        // A key is a fixed point: keying a key changes nothing.
        for k in ["kate@example.com", "josé@example.com", "İ@example.com"] {
            let key = Email::key_of(k);
            assert_eq!(Email::key_of(&key), key, "{k}");
        }
    }

    #[test]
    fn addresses_in_one_script_per_part_are_accepted() {
        for good in [
            "иван@почта.рф",
            "josé@example.com",
            "用户@例子.广告",
            "иван@gmail.com",
            "ivan@почта.рф",
            "δοκιμή@παράδειγμα.ελ",
            "たなか太郎@例え.jp",
            "tanaka太郎@example.jp",
            "홍길동@example.kr",
            "иван.петров+2024@mail.ru",
            "user_1-x@xn--80ak6aa92e.com",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn addresses_mixing_look_alike_scripts_are_confusable() {
        for bad in [
            "k\u{430}te@example.com",     // Cyrillic а in a Latin local part
            "kate@ex\u{430}mple.com",     // … in a Latin domain label
            "kate@example.c\u{43e}m",     // Cyrillic о in the top-level domain
            "\u{3b1}pple@example.com",    // Greek α
            "ива\u{6e}@почта.рф",         // Latin n among Cyrillic
            "\u{3bf}\u{43e}@example.com", // Greek ο and Cyrillic о
        ] {
            assert_eq!(
                Email::parse(bad).map_err(|e| e.code),
                Err("email_confusable"),
                "{bad:?}"
            );
        }
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
