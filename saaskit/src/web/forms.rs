//! What a page tells a person when something did not work: the API's problems as sentences,
//! next to the field they concern when they concern one.

use axum::http::StatusCode;

use crate::error::ApiError;

/// The messages a form is shown again with: one per field, and one for the whole form.
#[derive(Debug, Default)]
pub struct FormErrors {
    pub general: Option<String>,
    fields: Vec<(String, String)>,
}

impl FormErrors {
    /// The API's answer, for a form whose fields are named as in `rename` (API field → form
    /// field; others keep their name). A server error is not a form's business: `Err`, for the
    /// error page.
    pub fn from_api(err: ApiError, rename: &[(&str, &str)]) -> Result<FormErrors, ApiError> {
        if err.status.is_server_error() {
            return Err(err);
        }
        let mut out = FormErrors::default();
        for f in &err.errors {
            let name = rename
                .iter()
                .find(|(api, _)| *api == f.field)
                .map_or(f.field.as_str(), |(_, form)| form);
            if out.field(name).is_none() {
                out.fields.push((name.to_owned(), f.message.clone()));
            }
        }
        if err.errors.is_empty() {
            out.general = Some(sentence(&err));
        }
        Ok(out)
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.as_str())
    }

    /// Adds a message to a field (a check only the page makes, such as a confirmation).
    pub fn add(&mut self, name: &str, message: &str) {
        if self.field(name).is_none() {
            self.fields.push((name.to_owned(), message.to_owned()));
        }
    }

    /// Everything in one sentence, for a form with no field to put it beside: the general
    /// message, else the first field's.
    pub fn summary(&self) -> String {
        self.general
            .clone()
            .or_else(|| self.fields.first().map(|(_, m)| m.clone()))
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.general.is_none() && self.fields.is_empty()
    }

    /// The status to render the form again with.
    pub fn status(&self) -> StatusCode {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

/// The API's problem as a person reads it. The API's details are already sentences; a rate
/// limit says when to come back, in words.
pub fn sentence(err: &ApiError) -> String {
    match (err.status, err.retry_after) {
        (StatusCode::TOO_MANY_REQUESTS, Some(secs)) => {
            format!("Too many attempts. Try again in {}.", duration_words(secs))
        }
        // A person followed a link: they know it as that, not as a key.
        _ => match err.code {
            "key_not_found" => {
                "This link is not valid. Check that you opened the whole link from the message."
                    .to_owned()
            }
            "key_used" => {
                "This link was already used: each works once. Ask for a new one if you need it."
                    .to_owned()
            }
            "key_revoked" => "This link was withdrawn and no longer works.".to_owned(),
            "key_expired" => "This link has expired. Ask for a new one.".to_owned(),
            _ => err.detail.clone(),
        },
    }
}

pub(crate) fn duration_words(secs: u64) -> String {
    match secs {
        0..=59 => plural(secs.max(1), "second"),
        60..=5399 => plural(secs.div_ceil(60), "minute"),
        _ => plural(secs.div_ceil(3600), "hour"),
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// The one-line notices a redirect may ask a page to show (`?notice=<name>`): a fixed list,
/// so a link cannot make our page say something we did not write.
pub fn notice_text(name: &str) -> Option<&'static str> {
    Some(match name {
        "welcome" => {
            "Welcome! Your account is ready. We mailed you a link to confirm your email address."
        }
        "verify_first" => {
            "Your account is ready. Confirm your email address with the link we mailed you, then log in."
        }
        "logged_out" => "You are logged out.",
        "sign_in_expired" => "That sign-in expired or was already completed. Please log in again.",
        "reset_sent" => {
            "If an account uses that address, we have mailed it a link to choose a new password. It works for an hour."
        }
        "magic_link_sent" => {
            "If an account uses that address, we have mailed it a sign-in link. It works once, within 15 minutes."
        }
        "mfa_disabled" => {
            "Two-factor sign-in is off: your password alone signs you in. We mailed you a note of the change."
        }
        "business_renamed" => "The business is renamed.",
        "mfa_required" => {
            "Every member must now sign in with two factors; those without one are asked to set it up before anything else."
        }
        "mfa_not_required" => "Members may sign in without a second factor again.",
        "password_changed" => "Your password is changed, and every other session is logged out.",
        "email_verified" => "Your email address is confirmed. Thank you!",
        "joined" => "You joined the business.",
        "left" => "You left the business.",
        "invited" => "The invitation is on its way.",
        "invitation_resent" => "The invitation was sent again; the earlier link no longer works.",
        "invitation_revoked" => "The invitation was revoked; its link no longer works.",
        "role_changed" => "The role was changed.",
        "member_removed" => {
            "The member was removed; their sessions and keys for this business no longer work."
        }
        "ownership_transferred" => "Ownership was transferred.",
        "credits_granted" => "The credits were granted.",
        "plan_set" => "The business is on its new plan from now.",
        "business_deactivated" => "The business is deactivated.",
        "plan_changed" => "The plan is changed.",
        "canceled" => "The subscription will stop at the end of the period.",
        "resumed" => "The subscription continues as it was.",
        "card_saved" => {
            "The card is saved: it pays renewals your credits do not cover, plan changes and credits you buy."
        }
        "card_removed" => "The card is removed: renewals are paid from your credits only.",
        "renamed" => "Your name is saved.",
        "verification_sent" => "A new confirmation link is on its way; older links no longer work.",
        "account_deleted" => "Your account is deleted.",
        "switched" => "You switched business.",
        "session_ended" => "The session is ended.",
        "sessions_ended" => "Every other session is ended.",
        "item_created" => "Created.",
        "item_saved" => "Saved.",
        "item_deleted" => "Deleted.",
        "user_deactivated" => "The user is deactivated: they can no longer log in.",
        "staff_granted" => "The user is staff now.",
        "staff_removed" => "The user is no longer staff.",
        "plan_created" => "The plan was created.",
        "plan_updated" => "The plan was changed: its new limits apply from the next check.",
        "plan_archived" => "The plan was archived: no one can choose it any more.",
        "key_revoked" => "The key was revoked: it no longer works.",
        "bot_deleted" => "The bot was deleted; its token no longer works.",
        "passkey_added" => "The passkey is added: you can sign in with it now.",
        "passkey_renamed" => "The passkey is renamed.",
        "passkey_removed" => "The passkey is removed: it no longer signs you in.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_as_words() {
        assert_eq!(duration_words(1), "1 second");
        assert_eq!(duration_words(30), "30 seconds");
        assert_eq!(duration_words(60), "1 minute");
        assert_eq!(duration_words(61), "2 minutes");
        assert_eq!(duration_words(900), "15 minutes");
        assert_eq!(duration_words(7200), "2 hours");
    }

    #[test]
    fn the_sign_in_link_notice_says_how_long_links_last() {
        let minutes = crate::accounts::magic::KEY_LIFETIME.num_minutes();
        let said = notice_text("magic_link_sent").unwrap_or_default();
        assert!(
            said.contains(&format!("within {minutes} minutes")),
            "{said}"
        );
    }

    #[test]
    fn field_problems_go_to_their_field_and_the_rest_to_the_form() {
        let err = ApiError::validation(vec![
            crate::error::FieldError::new("business.name", "required", "This field is required."),
            crate::error::FieldError::new("email", "invalid_email", "Not an address."),
        ]);
        let f = FormErrors::from_api(err, &[("business.name", "business_name")]).unwrap();
        assert_eq!(f.field("business_name"), Some("This field is required."));
        assert_eq!(f.field("email"), Some("Not an address."));
        assert_eq!(f.general, None);
        let mut limited = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "x");
        limited.retry_after = Some(600);
        let f = FormErrors::from_api(limited, &[]).unwrap();
        assert_eq!(
            f.general.as_deref(),
            Some("Too many attempts. Try again in 10 minutes.")
        );
    }
}
