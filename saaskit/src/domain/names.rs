use super::{Invalid, has_control_chars};

/// A person's first or last name: trimmed, at most 150 characters, no control or invisible
/// format characters ([`has_control_chars`]).
/// May be empty (not everyone has two names); callers that require one check for that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

/// A business's display name: trimmed, 1 to 200 characters, no control or invisible format
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessName(String);

const PERSON_MAX: usize = 150;
const BUSINESS_MAX: usize = 200;

/// Refuses `input` when over `max` characters (`too_long`) or with control or invisible
/// formatting characters anywhere (`invalid_characters`), as sent, and trims what it keeps; `what`
/// starts the message. Judged before trimming, so that the API document's `maxLength` and
/// `pattern` ([`super::text_pattern`]) say exactly what is accepted.
pub fn parse_text(input: &str, max: usize, what: &str) -> Result<String, Invalid> {
    if input.chars().count() > max {
        return Err(Invalid::new(
            "too_long",
            format!("{what} has at most {max} characters."),
        ));
    }
    if has_control_chars(input) {
        return Err(Invalid::new(
            "invalid_characters",
            format!(
                "{what} may not contain control characters or invisible formatting characters \
                 (such as text direction overrides or zero-width spaces)."
            ),
        ));
    }
    Ok(input.trim().to_owned())
}

impl PersonName {
    pub fn parse(input: &str) -> Result<PersonName, Invalid> {
        parse_text(input, PERSON_MAX, "A name").map(PersonName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl BusinessName {
    pub fn parse(input: &str) -> Result<BusinessName, Invalid> {
        let value = parse_text(input, BUSINESS_MAX, "A business name")?;
        if value.is_empty() {
            return Err(Invalid::new("required", "A business name is required."));
        }
        Ok(BusinessName(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(PersonName::parse("  Ada ").map(|n| n.0), Ok("Ada".into()));
        assert!(PersonName::parse("").is_ok_and(|n| n.is_empty()));
        assert!(PersonName::parse(&"é".repeat(150)).is_ok());
        assert_eq!(
            PersonName::parse(&"é".repeat(151)).map_err(|e| e.code),
            Err("too_long")
        );
        assert_eq!(
            PersonName::parse("A\u{0}da").map_err(|e| e.code),
            Err("invalid_characters")
        );
        assert_eq!(
            BusinessName::parse(" \u{3000} ").map_err(|e| e.code),
            Err("required")
        );
        // Judged as sent, as the API document says: a control character that trimming would
        // have removed is still refused, and the spaces around a name count towards its length.
        assert_eq!(
            BusinessName::parse(" \tAcme").map_err(|e| e.code),
            Err("invalid_characters")
        );
        assert_eq!(
            PersonName::parse(&format!("{} ", "é".repeat(150))).map_err(|e| e.code),
            Err("too_long")
        );
        assert_eq!(
            BusinessName::parse("Acme\nInc").map_err(|e| e.code),
            Err("invalid_characters")
        );
        for hidden in ["\u{202e}", "\u{2066}", "\u{200b}", "\u{feff}", "\u{ad}"] {
            assert_eq!(
                PersonName::parse(&format!("Ada{hidden}")).map_err(|e| e.code),
                Err("invalid_characters")
            );
            assert_eq!(
                BusinessName::parse(&format!("Acme{hidden}moc.live")).map_err(|e| e.code),
                Err("invalid_characters")
            );
        }
        assert_eq!(
            BusinessName::parse(" Acme ").map(|n| n.0),
            Ok("Acme".into())
        );
    }
}
