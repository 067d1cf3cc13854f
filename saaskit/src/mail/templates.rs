//! Mail templates, embedded in the binary from `templates/<name>/{subject,body.txt,body.html}`.
//! `{{ name }}` is replaced by the value given for `name`: as is in the subject and the text
//! body, HTML-escaped in the HTML body. A placeholder without a value is a bug, caught by tests.
//!
//! A value someone chose (a person's or a business's name) is written `{{ name | quoted }}`:
//! see [`quoted`]. Mail from our domain must not carry a stranger's words as if they were ours,
//! nor a link they planted; a test holds every template to it.

/// A rendered message, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    PasswordReset,
    Invitation,
    EmailVerification,
    /// To the owner of an address someone tried to sign up with again (when signups do not
    /// tell whether an address is registered).
    AccountExists,
}

impl Template {
    fn sources(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Template::PasswordReset => (
                include_str!("../../templates/password_reset/subject"),
                include_str!("../../templates/password_reset/body.txt"),
                include_str!("../../templates/password_reset/body.html"),
            ),
            Template::Invitation => (
                include_str!("../../templates/invitation/subject"),
                include_str!("../../templates/invitation/body.txt"),
                include_str!("../../templates/invitation/body.html"),
            ),
            Template::EmailVerification => (
                include_str!("../../templates/email_verification/subject"),
                include_str!("../../templates/email_verification/body.txt"),
                include_str!("../../templates/email_verification/body.html"),
            ),
            Template::AccountExists => (
                include_str!("../../templates/account_exists/subject"),
                include_str!("../../templates/account_exists/body.txt"),
                include_str!("../../templates/account_exists/body.html"),
            ),
        }
    }

    pub fn render(self, vars: &[(&str, &str)]) -> Rendered {
        let (subject, text, html) = self.sources();
        // Header values are one line: a value with a line break must not add headers.
        let subject = fill(subject.trim(), vars, |s| s.replace(['\r', '\n'], " "));
        Rendered {
            subject,
            text: fill(text, vars, str::to_owned),
            html: fill(html, vars, escape_html),
        }
    }
}

fn fill(source: &str, vars: &[(&str, &str)], escape: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let (name, filter) = match after[..close].split_once('|') {
            Some((name, filter)) => (name.trim(), Some(filter.trim())),
            None => (after[..close].trim(), None),
        };
        match vars.iter().find(|(k, _)| *k == name) {
            Some((_, value)) => match filter {
                None => out.push_str(&escape(value)),
                Some("quoted") => out.push_str(&escape(&quoted(value))),
                Some(other) => {
                    debug_assert!(false, "template filter {other:?} does not exist");
                    out.push_str(&escape(&quoted(value)));
                }
            },
            None => {
                debug_assert!(false, "template placeholder {name:?} has no value");
                out.push_str(&rest[open..open + 2 + close + 2]);
            }
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// A value someone chose, as mail shows it: in quotes (“…”), so it reads as a name and not as
/// our words, and defanged, so no mail client turns it into a link: `://` becomes `[:]//`, `@`
/// becomes `[@]`, and a dot between two letters or digits `[.]` (`evil[.]example[.]com`,
/// `www[.]x`), the ideographic and fullwidth dots included (they read as dots in host names).
/// Quotes inside become plain `"`, so only ours enclose it; line breaks become spaces and
/// invisible format characters are dropped (names are refused with them, but older rows or an
/// address may still carry one).
pub fn quoted(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let word = |i: usize| chars.get(i).is_some_and(|c| c.is_alphanumeric());
    let mut out = String::with_capacity(value.len() + 8);
    out.push('“');
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '“' | '”' => out.push('"'),
            '@' | '＠' => out.push_str("[@]"),
            ':' if chars.get(i + 1) == Some(&'/') && chars.get(i + 2) == Some(&'/') => {
                out.push_str("[:]");
            }
            '.' | '。' | '．' | '｡' if i > 0 && word(i - 1) && word(i + 1) => {
                out.push_str("[.]")
            }
            c if crate::domain::has_control_chars(c.encode_utf8(&mut [0; 4])) => {
                if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                    out.push(' ');
                }
            }
            c => out.push(c),
        }
    }
    out.push('”');
    out
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_html_is_escaped() {
        let r = Template::Invitation.render(&[
            ("inviter_name", "Ada <script>"),
            ("business_name", "Acme & Co\r\nBcc: x@evil.example"),
            ("role", "member"),
            ("valid_days", "7"),
            (
                "link",
                "http://localhost:8000/invitations/accept?key=abc&x=1",
            ),
        ]);
        assert_eq!(r.subject, "You are invited to join a business");
        assert!(r.text.contains(
            "“Ada <script>” invited you to join “Acme & Co  Bcc: x[@]evil[.]example” as member."
        ));
        assert!(
            r.text
                .contains("http://localhost:8000/invitations/accept?key=abc&x=1")
        );
        assert!(r.html.contains("“Ada &lt;script&gt;”"));
        assert!(r.html.contains("key=abc&amp;x=1"));
        assert!(!r.text.contains("{{") && !r.html.contains("{{"));
    }

    #[test]
    fn chosen_values_are_quoted_and_nothing_in_them_reads_as_a_link() {
        assert_eq!(quoted("Ada Lovelace"), "“Ada Lovelace”");
        assert_eq!(
            quoted("Visit evil.example.com now"),
            "“Visit evil[.]example[.]com now”"
        );
        assert_eq!(
            quoted("http://evil.example/login"),
            "“http[:]//evil[.]example/login”"
        );
        assert_eq!(quoted("www.x.io"), "“www[.]x[.]io”");
        assert_eq!(quoted("ada@example.com"), "“ada[@]example[.]com”");
        assert_eq!(
            quoted("evil。com ｅｖｉｌ．ｃｏｍ"),
            "“evil[.]com ｅｖｉｌ[.]ｃｏｍ”"
        );
        assert_eq!(quoted("10.0.0.1"), "“10[.]0[.]0[.]1”");
        // Ordinary punctuation stays.
        assert_eq!(quoted("A. B. Smith, Inc."), "“A. B. Smith, Inc.”");
        assert_eq!(quoted("Ratio: 3:1"), "“Ratio: 3:1”");
        // Only our quotes enclose it; nothing hidden or breaking the line survives.
        assert_eq!(quoted("x” said “y"), "“x\" said \"y”");
        assert_eq!(quoted("a\u{202e}b\u{200b}c\nd"), "“abc d”");
    }

    /// The values that are ours (or the recipient's own address) and need no quoting.
    const OURS: [&str; 5] = ["link", "role", "valid_days", "valid_hours", "email"];

    #[test]
    fn every_chosen_value_in_every_template_is_quoted() {
        for t in [
            Template::PasswordReset,
            Template::Invitation,
            Template::EmailVerification,
            Template::AccountExists,
        ] {
            let (subject, text, html) = t.sources();
            for source in [subject, text, html] {
                for placeholder in source.split("{{").skip(1) {
                    let inner = placeholder.split("}}").next().unwrap_or_default();
                    let (name, filter) = match inner.split_once('|') {
                        Some((n, f)) => (n.trim(), Some(f.trim())),
                        None => (inner.trim(), None),
                    };
                    assert!(
                        OURS.contains(&name) || filter == Some("quoted"),
                        "{t:?}: {{{{ {name} }}}} is someone's choice: write {{{{ {name} | quoted }}}}"
                    );
                }
                assert!(
                    !(source == subject && source.contains("quoted")),
                    "{t:?}: the subject names nobody's choice"
                );
            }
        }
    }

    #[test]
    fn reset_template_has_every_value() {
        let r = Template::PasswordReset.render(&[
            ("first_name", "Ada"),
            ("email", "ada@example.com"),
            ("link", "http://x/reset?key=k"),
        ]);
        assert!(!r.subject.contains("{{") && !r.text.contains("{{") && !r.html.contains("{{"));
        assert!(r.html.contains("http://x/reset?key=k"));
    }

    #[test]
    fn verification_template_has_every_value() {
        let r = Template::EmailVerification.render(&[
            ("first_name", "Ada"),
            ("email", "ada@example.com"),
            ("valid_hours", "48"),
            ("link", "http://x/verify-email?key=k&x=1"),
        ]);
        assert!(!r.subject.contains("{{") && !r.text.contains("{{") && !r.html.contains("{{"));
        assert!(r.text.contains("http://x/verify-email?key=k&x=1"));
        assert!(r.html.contains("http://x/verify-email?key=k&amp;x=1"));
        assert!(r.text.contains("48 hours"));
    }
}
