//! Values parsed once at the edge. A value of one of these types that exists is valid.

use std::sync::LazyLock;

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
    s.chars().any(is_control_char)
}

fn is_control_char(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// The API document's `pattern` for free text (names, notes): no character
/// [`has_control_chars`] refuses. Spelled out as ranges from that same rule, so the document
/// and the server cannot disagree: `\uXXXX` for the basic plane and the characters themselves
/// beyond it, which ECMA-262, Python's `re` and Rust's `regex` all read alike.
pub fn text_pattern() -> &'static str {
    static PATTERN: LazyLock<String> = LazyLock::new(|| {
        let Classes { refused, .. } = &*CLASSES;
        format!("^[^{refused}]*$")
    });
    &PATTERN
}

/// [`text_pattern`], and not blank: at least one character that trimming keeps (a business
/// name, a first name, a key's name).
pub fn non_blank_text_pattern() -> &'static str {
    static PATTERN: LazyLock<String> = LazyLock::new(|| {
        let Classes { refused, blank } = &*CLASSES;
        format!("^[^{refused}]*[^{refused}{blank}][^{refused}]*$")
    });
    &PATTERN
}

/// [`text_pattern`] for text that keeps at least `min` characters once trimmed.
pub fn text_pattern_keeping(min: usize) -> String {
    let Classes { refused, blank } = &*CLASSES;
    match min {
        0 => text_pattern().to_owned(),
        1 => non_blank_text_pattern().to_owned(),
        _ => {
            let inner = min - 2;
            format!(
                "^[{blank}]*[^{refused}{blank}][^{refused}]{{{inner},}}[^{refused}{blank}][{blank}]*$"
            )
        }
    }
}

struct Classes {
    /// What [`has_control_chars`] refuses.
    refused: String,
    /// What trimming removes, less what is refused anyway.
    blank: String,
}

static CLASSES: LazyLock<Classes> = LazyLock::new(|| Classes {
    refused: char_class(is_control_char),
    blank: char_class(|c| c.is_whitespace() && !is_control_char(c)),
});

/// The characters `keep` holds for, as the inside of a regular expression's character class.
fn char_class(keep: impl Fn(char) -> bool) -> String {
    let mut ranges: Vec<(char, char)> = Vec::new();
    for c in (0..=char::MAX as u32)
        .filter_map(char::from_u32)
        .filter(|&c| keep(c))
    {
        match ranges.last_mut() {
            Some((_, end)) if *end as u32 + 1 == c as u32 => *end = c,
            _ => ranges.push((c, c)),
        }
    }
    let spell = |c: char| {
        if u32::from(c) <= 0xFFFF {
            format!("\\u{:04X}", u32::from(c))
        } else {
            c.to_string()
        }
    };
    ranges
        .into_iter()
        .map(|(start, end)| match u32::from(end) - u32::from(start) {
            0 => spell(start),
            1 => format!("{}{}", spell(start), spell(end)),
            _ => format!("{}-{}", spell(start), spell(end)),
        })
        .collect()
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

    /// The document's patterns say exactly what the server refuses: checked with a regular
    /// expression engine (not ours) over every character, alone and inside a name.
    #[test]
    fn the_text_patterns_match_what_the_rule_accepts() {
        let text = regex::Regex::new(text_pattern()).expect("the text pattern compiles");
        let non_blank =
            regex::Regex::new(non_blank_text_pattern()).expect("the non-blank pattern compiles");
        for c in (0..=char::MAX as u32).filter_map(char::from_u32) {
            let inside = format!("Ada{c}Lovelace");
            assert_eq!(text.is_match(&inside), !has_control_chars(&inside), "{c:?}");
            assert_eq!(
                non_blank.is_match(&inside),
                !has_control_chars(&inside),
                "{c:?}"
            );
            let alone = c.to_string();
            let kept = !has_control_chars(&alone) && !alone.trim().is_empty();
            assert_eq!(non_blank.is_match(&alone), kept, "{c:?} alone");
        }
        assert!(text.is_match(""));
        assert!(!non_blank.is_match(""));
        assert!(!non_blank.is_match(" \u{3000} "));
        assert!(non_blank.is_match(" Acme "));
        assert!(!text.is_match("Acme\n"));
        let three = regex::Regex::new(&text_pattern_keeping(3)).expect("compiles");
        for (sent, kept) in [
            ("abc", true),
            ("  a c\u{3000}", true),
            ("  ab  ", false),
            ("a\tb", false),
            (" abc\n", false),
        ] {
            let as_served = parse_text(sent, 100, "It").is_ok_and(|t| t.chars().count() >= 3);
            assert_eq!(as_served, kept, "{sent:?}");
            assert_eq!(three.is_match(sent), kept, "{sent:?}");
        }
    }
}
