//! Values parsed once at the edge. A value of one of these types that exists is valid.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

mod email;
mod names;
mod password;
mod role;
mod scope;

pub use email::Email;
pub use names::{BusinessName, PersonName, parse_text};
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

/// Whether `s` is a name saaskit may write into SQL as an identifier (a table, a column, a
/// product's bookkeeping table): 1 to 63 characters (PostgreSQL's limit), a-z, 0-9 and `_`,
/// starting with a letter.
pub fn is_identifier(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `s` has characters that have no place in a name or an address: control characters
/// (NUL included; PostgreSQL cannot even store NUL in TEXT), and the invisible ones that change
/// how the text around them reads: format characters (Unicode general category Cf: the
/// bidirectional embeddings, overrides and isolates that can make `moc.live` read as
/// `evil.com`, zero-width spaces and joiners, word joiners, soft hyphens, the byte-order mark)
/// and the line and paragraph separators.
pub fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| {
        matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_invisible_format_characters_are_refused() {
        for bad in [
            "\u{0}",
            "\u{7}",
            "\u{1b}",
            "\u{7f}",
            "\u{85}",
            "\u{ad}",
            "\u{200b}",
            "\u{200c}",
            "\u{200d}",
            "\u{200e}",
            "\u{200f}",
            "\u{2028}",
            "\u{2029}",
            "\u{202a}",
            "\u{202e}",
            "\u{2060}",
            "\u{2066}",
            "\u{2069}",
            "\u{feff}",
            "\u{e0041}",
        ] {
            assert!(has_control_chars(&format!("Ada{bad}Lovelace")), "{bad:?}");
        }
        for good in [
            "Ada Lovelace",
            "Zoë Ñúñez-O'Brien",
            "李小龍",
            "Ахмед",
            "محمد",
            "🙂",
        ] {
            assert!(!has_control_chars(good), "{good:?}");
        }
    }
}
