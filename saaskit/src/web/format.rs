//! Dates and amounts as the pages write them.

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
