//! The audit log: who did what to which account, business, key or plan, from where.
//!
//! Every security, team and billing change records an [`Event`] with [`record`] on the
//! transaction that makes the change, so the entry exists exactly when the change does. Call it
//! last, just before the commit: it locks the chain head until the transaction ends.
//!
//! Entries are tamper-evident: entry `n` stores `hash = SHA-256(prev_hash, its fields)` with
//! `prev_hash` the hash of entry `n - 1` (64 zeros for the first), and `audit_chain` keeps the
//! last sequence number and hash. [`verify`] (`saaskit audit verify`) recomputes the chain and
//! names the first entry that does not fit: an edited field, a removed entry, a truncated tail.
//!
//! The client's address and user agent come from the request being served: the HTTP layer runs
//! each request in a [`crate::telemetry::RequestScope`] holding them, so domain code does not thread them through. Outside a
//! request (the CLI, the sweep) they are empty.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::accounts::{ClientInfo, Principal};
use crate::db::{Conn, Db, Timestamp};
use crate::store::audit as store;

pub use store::{Entry, Filter};

fn current_client() -> ClientInfo {
    // Resolved only here, when an event is recorded: requests that record nothing pay nothing.
    crate::telemetry::RequestScope::with_current(|request| request.origin.resolve())
        .unwrap_or_default()
}

/// Declares [`Action`] once: each variant with its stable name, and the list of all of them.
macro_rules! actions {
    ($($variant:ident => $name:literal,)+) => {
        /// What happened. The names are stable: clients filter on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Action {
            $($variant,)+
        }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)+
                }
            }
        }
    };
}

actions! {
    UserSignedUp => "user.signed_up",
    LoginSucceeded => "login.succeeded",
    LoginFailed => "login.failed",
    Logout => "session.logout",
    SessionRevoked => "session.revoked",
    PasswordChanged => "password.changed",
    UserRenamed => "user.renamed",
    PasswordReset => "password.reset",
    EmailVerified => "email.verified",
    MemberRoleChanged => "member.role_changed",
    OwnershipTransferred => "member.ownership_transferred",
    MemberRemoved => "member.removed",
    MemberLeft => "member.left",
    InvitationSent => "invitation.sent",
    InvitationResent => "invitation.resent",
    InvitationRevoked => "invitation.revoked",
    InvitationAccepted => "invitation.accepted",
    ApiKeyCreated => "api_key.created",
    ApiKeyRotated => "api_key.rotated",
    ApiKeyRevoked => "api_key.revoked",
    SecretReportedLeaked => "token.reported_leaked",
    BotCreated => "bot.created",
    BotDeleted => "bot.deleted",
    PlanChanged => "subscription.plan_changed",
    PlanCreated => "plan.created",
    PlanUpdated => "plan.updated",
    SubscriptionCanceled => "subscription.canceled",
    SubscriptionResumed => "subscription.resumed",
    CreditsGranted => "credits.granted",
    BusinessDeactivated => "business.deactivated",
    UserDeactivated => "user.deactivated",
    StaffChanged => "user.staff_changed",
    AccountDeleted => "user.deleted",
    BusinessClosed => "business.closed",
    BusinessSwitched => "session.business_switched",
    WebhookCreated => "webhook.created",
    WebhookUpdated => "webhook.updated",
    WebhookDeleted => "webhook.deleted",
    WebhookSecretRotated => "webhook.secret_rotated",
    WebhookDisabled => "webhook.disabled",
    PaymentMethodUpdated => "payment_method.updated",
    PaymentMethodRemoved => "payment_method.removed",
    PaymentSucceeded => "payment.succeeded",
    PaymentFailed => "payment.failed",
    PaymentRefunded => "payment.refunded",
    PaymentDisputed => "payment.disputed",
    TotpEnabled => "mfa.totp_enabled",
    TotpDisabled => "mfa.totp_disabled",
    RecoveryCodesRegenerated => "mfa.recovery_codes_regenerated",
    RecoveryCodeUsed => "mfa.recovery_code_used",
    BusinessUpdated => "business.updated",
    IdentityLinked => "identity.linked",
    IdentityRemoved => "identity.removed",
    PasskeyAdded => "passkey.added",
    PasskeyRenamed => "passkey.renamed",
    PasskeyRemoved => "passkey.removed",
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A person, through their session (or proving who they are: login, reset, invitation).
    User(Uuid),
    Bot(Uuid),
    /// A business's API key (its id).
    ApiKey(Uuid),
    /// A staff member through the admin API, or an operator through the CLI (no user).
    Staff(Option<Uuid>),
    /// The server itself (the renewal sweep).
    System,
    /// Nobody known: a failed login for an unknown email, a leaked secret reported.
    Anonymous,
}

impl Actor {
    /// The caller behind a token.
    pub fn of(p: &Principal) -> Actor {
        match (&p.member, p.token_kind.as_str()) {
            (Some(m), "bot") => Actor::Bot(m.user_id),
            (Some(m), _) => Actor::User(m.user_id),
            (None, _) => Actor::ApiKey(p.token_id),
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::Bot(_) => "bot",
            Actor::ApiKey(_) => "api_key",
            Actor::Staff(_) => "staff",
            Actor::System => "system",
            Actor::Anonymous => "anonymous",
        }
    }

    pub fn id(self) -> Option<Uuid> {
        match self {
            Actor::User(id) | Actor::Bot(id) | Actor::ApiKey(id) => Some(id),
            Actor::Staff(id) => id,
            Actor::System | Actor::Anonymous => None,
        }
    }
}

impl From<crate::billing::events::Actor> for Actor {
    fn from(a: crate::billing::events::Actor) -> Self {
        use crate::billing::events::Actor as Billing;
        match a {
            Billing::User(id) => Actor::User(id),
            Billing::Admin(id) => Actor::Staff(id),
            Billing::System => Actor::System,
        }
    }
}

/// An event about to be recorded: `Event::new(action, actor).business(id).target(..)`.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: Action,
    pub actor: Actor,
    pub business_id: Option<Uuid>,
    pub target: Option<(&'static str, String)>,
    pub details: Value,
}

impl Event {
    pub fn new(action: Action, actor: Actor) -> Event {
        Event {
            action,
            actor,
            business_id: None,
            target: None,
            details: json!({}),
        }
    }

    /// An event by the caller behind `p`, in the business it acts for.
    pub fn by(action: Action, p: &Principal) -> Event {
        Event::new(action, Actor::of(p)).business(p.business_id)
    }

    pub fn business(mut self, id: Uuid) -> Event {
        self.business_id = Some(id);
        self
    }

    /// What the event is about: `("member", id)`, `("api_key", id)`, …
    pub fn target(mut self, kind: &'static str, id: impl ToString) -> Event {
        self.target = Some((kind, id.to_string()));
        self
    }

    /// Anything else worth keeping, as a JSON object. Never a secret.
    pub fn details(mut self, details: Value) -> Event {
        self.details = details;
        self
    }
}

/// Appends `event` to the log on the caller's transaction, chained to the entry before it.
pub async fn record(mut c: Conn<'_>, at: Timestamp, event: Event) -> sqlx::Result<()> {
    let client = current_client();
    let (seq, prev_hash) = store::advance_head(c.reborrow()).await?;
    let mut entry = Entry {
        seq,
        occurred_at: at,
        action: event.action.as_str().to_owned(),
        actor_kind: event.actor.kind().to_owned(),
        actor_id: event.actor.id(),
        business_id: event.business_id,
        target_kind: event.target.as_ref().map(|(k, _)| (*k).to_owned()),
        target_id: event.target.map(|(_, id)| id),
        ip: client.ip,
        user_agent: client.user_agent.map(|ua| truncate(ua, 512)),
        details: event.details.to_string(),
        prev_hash,
        hash: String::new(),
    };
    entry.hash = hash_of(&entry);
    store::insert(c.reborrow(), &entry).await?;
    store::set_head_hash(c, &entry.hash).await
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The hash an entry must carry: SHA-256 over its previous hash and every field, as one JSON
/// array (unambiguous: no field can run into the next).
pub fn hash_of(e: &Entry) -> String {
    let canonical = json!([
        e.prev_hash,
        e.seq,
        e.occurred_at.micros(),
        e.action,
        e.actor_kind,
        e.actor_id,
        e.business_id,
        e.target_kind,
        e.target_id,
        e.ip,
        e.user_agent,
        e.details,
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every entry fits, and the head names the last one.
    Intact { entries: i64 },
    /// The first entry (by sequence number) that does not fit, and why.
    Broken { seq: i64, reason: String },
}

/// Recomputes the chain from the first entry, a page at a time, up to the head as it was when
/// the check began (entries committed meanwhile are left for the next check, so a live server
/// does not make an intact log look cut short).
pub async fn verify(db: &Db) -> anyhow::Result<Verdict> {
    const PAGE: i64 = 1000;
    let mut tx = db.read().await?;
    let (head_seq, head_hash) = store::head(tx.conn()).await?;
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS.to_owned();
    'pages: while expected_seq <= head_seq {
        let page = store::page(tx.conn(), expected_seq - 1, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for e in page {
            if e.seq > head_seq {
                break 'pages;
            }
            if e.seq != expected_seq {
                return Ok(Verdict::Broken {
                    seq: expected_seq,
                    reason: format!("entry {expected_seq} is missing (the next is {})", e.seq),
                });
            }
            if e.prev_hash != prev_hash {
                return Ok(Verdict::Broken {
                    seq: e.seq,
                    reason: "its previous hash is not the hash of the entry before it".into(),
                });
            }
            if hash_of(&e) != e.hash {
                return Ok(Verdict::Broken {
                    seq: e.seq,
                    reason: "its content does not match its hash (edited)".into(),
                });
            }
            prev_hash = e.hash;
            expected_seq += 1;
        }
    }
    let last = expected_seq - 1;
    if last != head_seq || prev_hash != head_hash {
        return Ok(Verdict::Broken {
            seq: last + 1,
            reason: format!(
                "the chain head names entry {head_seq}, but the log ends at entry {last} \
                 (entries removed from the end, or the head edited)"
            ),
        });
    }
    Ok(Verdict::Intact { entries: last })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut e = Entry {
            seq: 1,
            occurred_at: Timestamp::from_micros(1_700_000_000_000_000).expect("valid"),
            action: "login.succeeded".into(),
            actor_kind: "user".into(),
            actor_id: Some(Uuid::nil()),
            business_id: None,
            target_kind: None,
            target_id: None,
            ip: Some("203.0.113.9".into()),
            user_agent: Some("curl".into()),
            details: "{}".into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        e.hash = hash_of(&e);
        e
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let base = entry();
        type Edit = Box<dyn Fn(&mut Entry)>;
        let edits: Vec<Edit> = vec![
            Box::new(|e| e.seq = 2),
            Box::new(|e| e.occurred_at = e.occurred_at.plus(chrono::Duration::microseconds(1))),
            Box::new(|e| e.action = "login.failed".into()),
            Box::new(|e| e.actor_kind = "staff".into()),
            Box::new(|e| e.actor_id = None),
            Box::new(|e| e.business_id = Some(Uuid::nil())),
            Box::new(|e| e.target_kind = Some("member".into())),
            Box::new(|e| e.target_id = Some("x".into())),
            Box::new(|e| e.ip = None),
            Box::new(|e| e.user_agent = Some("curl2".into())),
            Box::new(|e| e.details = "{\"a\":1}".into()),
            Box::new(|e| e.prev_hash = "1".repeat(64)),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut e = base.clone();
            edit(&mut e);
            assert_ne!(hash_of(&e), base.hash, "edit {i} left the hash unchanged");
        }
        assert_eq!(hash_of(&base), base.hash);
        assert_eq!(base.hash.len(), 64);
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let mut a = entry();
        a.target_kind = Some("ab".into());
        a.target_id = Some("c".into());
        let mut b = entry();
        b.target_kind = Some("a".into());
        b.target_id = Some("bc".into());
        assert_ne!(hash_of(&a), hash_of(&b));
    }

    #[test]
    fn action_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for a in Action::ALL {
            assert!(seen.insert(a.as_str()), "{} twice", a.as_str());
            assert_eq!(Action::parse(a.as_str()), Some(*a));
        }
        assert_eq!(Action::parse("nope"), None);
    }

    #[test]
    fn long_user_agents_are_cut_on_a_character_boundary() {
        let ua = "é".repeat(300);
        let cut = truncate(ua, 511);
        assert!(cut.len() <= 511);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
