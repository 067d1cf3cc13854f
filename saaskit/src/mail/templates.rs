//! Mail templates: `templates/mail/<name>/{subject.txt,body.txt,body.html}`, compiled into the
//! binary by askama, the engine the pages use too. `{{ name }}` is the message's value `name`:
//! as is in the subject and the text body, HTML-escaped in the HTML body; a placeholder the
//! message has no value for does not compile.
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

/// Declares a message: its values (all text), and its three templates, checked at compile
/// time (a value a template names but the message lacks does not build).
macro_rules! mail {
    ($(#[$doc:meta])* $module:ident :: $name:ident { $($field:ident),* $(,)? }
     subject $subject:literal, text $text:literal, html $html:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            $(pub $field: &'a str,)*
        }

        mod $module {
            #[allow(unused_imports)]
            use super::filters;

            #[derive(askama::Template)]
            #[template(path = $subject)]
            #[allow(dead_code)]
            pub(super) struct Subject<'a> { $(pub(super) $field: &'a str,)* }

            #[derive(askama::Template)]
            #[template(path = $text)]
            #[allow(dead_code)]
            pub(super) struct Text<'a> { $(pub(super) $field: &'a str,)* }

            #[derive(askama::Template)]
            #[template(path = $html)]
            #[allow(dead_code)]
            pub(super) struct Html<'a> { $(pub(super) $field: &'a str,)* }
        }

        impl $name<'_> {
            pub const SOURCES: [&'static str; 3] = [$subject, $text, $html];

            pub fn render(&self) -> anyhow::Result<Rendered> {
                use askama::Template as _;
                let subject = $module::Subject { $($field: self.$field,)* }.render()?;
                Ok(Rendered {
                    // Header values are one line: a value with a line break must not add headers.
                    subject: subject.trim().replace(['\r', '\n'], " "),
                    text: $module::Text { $($field: self.$field,)* }.render()?,
                    html: $module::Html { $($field: self.$field,)* }.render()?,
                })
            }
        }
    };
}

mail!(
    password_reset::PasswordReset { first_name, email, link }
    subject "mail/password_reset/subject.txt",
    text "mail/password_reset/body.txt",
    html "mail/password_reset/body.html"
);
mail!(
    invitation::Invitation { inviter_name, business_name, role, valid_days, link }
    subject "mail/invitation/subject.txt",
    text "mail/invitation/body.txt",
    html "mail/invitation/body.html"
);
mail!(
    email_verification::EmailVerification { first_name, email, valid_hours, link }
    subject "mail/email_verification/subject.txt",
    text "mail/email_verification/body.txt",
    html "mail/email_verification/body.html"
);
mail!(
    /// To the owner of an address someone tried to sign up with again (when signups do not
    /// tell whether an address is registered).
    account_exists::AccountExists { email, link }
    subject "mail/account_exists/subject.txt",
    text "mail/account_exists/body.txt",
    html "mail/account_exists/body.html"
);
mail!(
    /// To a business's owners when saaskit disables a webhook endpoint that failed for 5 days.
    webhook_disabled::WebhookDisabled { business_name, url, since, link }
    subject "mail/webhook_disabled/subject.txt",
    text "mail/webhook_disabled/body.txt",
    html "mail/webhook_disabled/body.html"
);

mail!(
    /// To a business's owners when a renewal's charge to the card on file was declined.
    payment_failed::PaymentFailed { business_name, amount, reason, next_attempt, link }
    subject "mail/payment_failed/subject.txt",
    text "mail/payment_failed/body.txt",
    html "mail/payment_failed/body.html"
);
mail!(
    /// To a business's owners and the staff when a card payment is disputed.
    payment_disputed::PaymentDisputed { business_name, amount, reason, link }
    subject "mail/payment_disputed/subject.txt",
    text "mail/payment_disputed/body.txt",
    html "mail/payment_disputed/body.html"
);
mail!(
    /// To a person who asked to sign in by mail (`POST /api/v1/login/magic-link`).
    magic_link::MagicLink { first_name, email, valid_minutes, link }
    subject "mail/magic_link/subject.txt",
    text "mail/magic_link/body.txt",
    html "mail/magic_link/body.html"
);
mail!(
    /// To a person whose two-factor sign-in was turned on or off (`change`: `on` or `off`).
    mfa_changed::MfaChanged { first_name, email, change, link }
    subject "mail/mfa_changed/subject.txt",
    text "mail/mfa_changed/body.txt",
    html "mail/mfa_changed/body.html"
);
mail!(
    /// To a person when a way to sign in was added to or removed from their account (`method`:
    /// our words, such as `A passkey`; `change`: `added` or `removed`).
    sign_in_method::SignInMethod { first_name, email, method, change, link }
    subject "mail/sign_in_method/subject.txt",
    text "mail/sign_in_method/body.txt",
    html "mail/sign_in_method/body.html"
);

mail!(
    /// To the owner of an address someone signed in with at an identity provider (`provider`:
    /// its label) that is not linked yet: the link confirms it (`/auth/link?key=`).
    identity_link::IdentityLink { first_name, email, provider, valid_minutes, link }
    subject "mail/identity_link/subject.txt",
    text "mail/identity_link/body.txt",
    html "mail/identity_link/body.html"
);

/// The filters templates may use beside askama's own (pages use them too).
pub(crate) mod filters {
    /// `{{ name | quoted }}`: see [`super::quoted`].
    #[askama::filter_fn]
    pub fn quoted(value: impl std::fmt::Display, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(super::quoted(&value.to_string()))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_filled_and_html_is_escaped() {
        let r = Invitation {
            inviter_name: "Ada <script>",
            business_name: "Acme & Co\r\nBcc: x@evil.example",
            role: "member",
            valid_days: "7",
            link: "http://localhost:8000/invitations/accept?key=abc&x=1",
        }
        .render()
        .unwrap();
        assert_eq!(r.subject, "You are invited to join a business");
        assert!(r.text.contains(
            "“Ada <script>” invited you to join “Acme & Co  Bcc: x[@]evil[.]example” as member."
        ));
        assert!(
            r.text
                .contains("http://localhost:8000/invitations/accept?key=abc&x=1")
        );
        assert!(r.html.contains("“Ada &#60;script&#62;”"), "{}", r.html);
        assert!(r.html.contains("key=abc&#38;x=1"), "{}", r.html);
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
    const OURS: [&str; 13] = [
        "link",
        // An identity provider's label, from our settings (`Google`).
        "provider",
        // `A passkey`, `Google sign-in`: what kind of method, never its chosen name.
        "method",
        "valid_minutes",
        // `on` or `off`.
        "change",
        "amount",
        // A sentence of ours, or the provider's dispute reason code (`fraudulent`).
        "reason",
        "next_attempt",
        "role",
        "valid_days",
        "valid_hours",
        "email",
        "since",
    ];

    fn source(path: &str) -> String {
        let file = format!("{}/templates/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    #[test]
    fn the_webhook_disabled_mail_names_the_endpoint_defanged_and_links_to_the_page() {
        let mail = WebhookDisabled {
            business_name: "Acme",
            url: "https://hooks.acme.example/in",
            since: "2026-03-01 12:00 UTC",
            link: "https://app.example.com/webhooks",
        }
        .render()
        .expect("renders");
        assert_eq!(
            mail.subject,
            "A webhook endpoint was disabled after failing for 5 days"
        );
        for body in [&mail.text, &mail.html] {
            assert!(
                body.contains("“https[:]//hooks[.]acme[.]example/in”"),
                "{body}"
            );
            assert!(body.contains("since 2026-03-01 12:00 UTC"), "{body}");
            assert!(body.contains("https://app.example.com/webhooks"), "{body}");
        }
    }

    #[test]
    fn the_payment_mails_say_what_why_and_what_next() {
        let failed = PaymentFailed {
            business_name: "Acme.example",
            amount: "29.00 USD",
            reason: "the card has insufficient funds",
            next_attempt: "We will try the card on file again on 2 Mar 2026, 12:00 UTC.",
            link: "https://app.example.com/billing",
        }
        .render()
        .expect("render");
        assert_eq!(
            failed.subject,
            "A payment for your subscription was declined"
        );
        for body in [&failed.text, &failed.html] {
            assert!(body.contains("29.00 USD"), "{body}");
            assert!(body.contains("“Acme[.]example”"), "{body}");
            assert!(body.contains("insufficient funds"), "{body}");
            assert!(body.contains("2 Mar 2026, 12:00 UTC"), "{body}");
            assert!(body.contains("https://app.example.com/billing"), "{body}");
        }
        let disputed = PaymentDisputed {
            business_name: "Acme",
            amount: "29.00 USD",
            reason: "fraudulent",
            link: "https://app.example.com/billing",
        }
        .render()
        .expect("render");
        assert_eq!(disputed.subject, "A card payment was disputed");
        assert!(
            disputed.text.contains("reason given: fraudulent"),
            "{}",
            disputed.text
        );
    }

    #[test]
    fn sign_in_mails_say_what_happened_and_carry_no_secret_in_the_subject() {
        for (change, words) in [("on", "asks for a code"), ("off", "password only")] {
            let mail = MfaChanged {
                first_name: "Ada",
                email: "ada@example.com",
                change,
                link: "https://app.example.com/account/two-factor",
            }
            .render()
            .expect("renders");
            assert_eq!(mail.subject, format!("Two-factor sign-in turned {change}"));
            for body in [&mail.text, &mail.html] {
                assert!(body.contains(words), "{body}");
                assert!(
                    body.contains("https://app.example.com/account/two-factor"),
                    "{body}"
                );
            }
        }
        let link = "https://app.example.com/magic-login?key=abc";
        let mail = MagicLink {
            first_name: "Ada",
            email: "ada@example.com",
            valid_minutes: "15",
            link,
        }
        .render()
        .expect("renders");
        assert_eq!(mail.subject, "Your sign-in link");
        for body in [&mail.text, &mail.html] {
            assert!(body.contains(link) && body.contains("15 minutes"), "{body}");
        }
        for (change, words) in [
            ("added", "added to your account"),
            ("removed", "removed from"),
        ] {
            let mail = SignInMethod {
                first_name: "Ada",
                email: "ada@example.com",
                method: "A passkey",
                change,
                link: "https://app.example.com/account",
            }
            .render()
            .expect("renders");
            assert_eq!(mail.subject, format!("A passkey was {change}"));
            for body in [&mail.text, &mail.html] {
                assert!(body.contains(words), "{body}");
            }
        }
    }

    #[test]
    fn every_chosen_value_in_every_template_is_quoted() {
        for sources in [
            PasswordReset::SOURCES,
            Invitation::SOURCES,
            EmailVerification::SOURCES,
            AccountExists::SOURCES,
            WebhookDisabled::SOURCES,
            PaymentFailed::SOURCES,
            PaymentDisputed::SOURCES,
            MagicLink::SOURCES,
            MfaChanged::SOURCES,
            SignInMethod::SOURCES,
            IdentityLink::SOURCES,
        ] {
            for (i, path) in sources.iter().enumerate() {
                let text = source(path);
                for placeholder in text.split("{{").skip(1) {
                    let inner = placeholder.split("}}").next().unwrap_or_default();
                    let (name, filter) = match inner.split_once('|') {
                        Some((n, f)) => (n.trim(), Some(f.trim())),
                        None => (inner.trim(), None),
                    };
                    assert!(
                        OURS.contains(&name) || filter == Some("quoted"),
                        "{path}: {{{{ {name} }}}} is someone's choice: write {{{{ {name} | quoted }}}}"
                    );
                }
                assert!(
                    !(i == 0 && text.contains("quoted")),
                    "{path}: the subject names nobody's choice"
                );
            }
        }
    }

    #[test]
    fn reset_mail_has_every_value() {
        let r = PasswordReset {
            first_name: "Ada",
            email: "ada@example.com",
            link: "http://x/reset?key=k",
        }
        .render()
        .unwrap();
        assert!(!r.subject.contains("{{") && !r.text.contains("{{") && !r.html.contains("{{"));
        assert!(r.html.contains("http://x/reset?key=k"));
        assert!(r.text.contains("Hello “Ada”,"));
    }

    #[test]
    fn verification_mail_has_every_value() {
        let r = EmailVerification {
            first_name: "Ada",
            email: "ada@example.com",
            valid_hours: "48",
            link: "http://x/verify-email?key=k&x=1",
        }
        .render()
        .unwrap();
        assert!(!r.subject.contains("{{") && !r.text.contains("{{") && !r.html.contains("{{"));
        assert!(r.text.contains("http://x/verify-email?key=k&x=1"));
        assert!(r.html.contains("http://x/verify-email?key=k&#38;x=1"));
        assert!(r.text.contains("48 hours"));
    }
}
