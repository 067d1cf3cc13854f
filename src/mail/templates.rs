//! Mail templates, embedded in the binary from `templates/<name>/{subject,body.txt,body.html}`.
//! `{{ name }}` is replaced by the value given for `name`: as is in the subject and the text
//! body, HTML-escaped in the HTML body. A placeholder without a value is a bug, caught by tests.

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
        let name = after[..close].trim();
        match vars.iter().find(|(k, _)| *k == name) {
            Some((_, value)) => out.push_str(&escape(value)),
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
        assert_eq!(
            r.subject,
            "Ada <script> invited you to join Acme & Co  Bcc: x@evil.example"
        );
        assert!(
            r.text
                .contains("http://localhost:8000/invitations/accept?key=abc&x=1")
        );
        assert!(r.html.contains("Ada &lt;script&gt;"));
        assert!(r.html.contains("key=abc&amp;x=1"));
        assert!(!r.text.contains("{{") && !r.html.contains("{{"));
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
