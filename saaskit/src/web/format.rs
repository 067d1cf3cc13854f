//! Dates and amounts as the pages write them (and amounts as people type them).

use crate::db::Timestamp;

/// A date as people write it: `1 Mar 2026`.
pub fn day(at: Timestamp) -> String {
    at.as_datetime().format("%-d %b %Y").to_string()
}

/// A moment: `1 Mar 2026, 12:00 UTC`.
pub fn moment(at: Timestamp) -> String {
    at.as_datetime().format("%-d %b %Y, %H:%M UTC").to_string()
}

/// An amount in minor units of `currency`: `12.34 EUR`.
pub fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100)
}

/// An amount as a person types it, in the currency's units (`12.50`, `-3`): minor units.
pub fn parse_amount(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, cents) = match digits.split_once('.') {
        Some((w, c)) if c.len() <= 2 && !c.is_empty() => (w, format!("{c:0<2}")),
        Some(_) => return None,
        None => (digits, "00".to_owned()),
    };
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !cents.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let minor = whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents.parse().ok()?)?;
    Some(if negative { -minor } else { minor })
}

#[cfg(test)]
mod tests {
    use super::parse_amount;

    #[test]
    fn amounts_are_read_in_the_currency_units() {
        assert_eq!(parse_amount("12.50"), Some(1250));
        assert_eq!(parse_amount("12.5"), Some(1250));
        assert_eq!(parse_amount("-3"), Some(-300));
        assert_eq!(parse_amount(" 7 "), Some(700));
        for bad in [
            "",
            "-",
            "1.234",
            "1.",
            ".5",
            "abc",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(parse_amount(bad), None, "{bad}");
        }
    }
}
