//! Transactional mail through a durable outbox. Services queue a rendered message with
//! [`enqueue`] inside their own transaction, so the mail exists exactly when the change that
//! caused it does; the worker in [`crate::jobs::mail`] delivers it through a [`Transport`]:
//! `.eml` files in a folder (the default) or SMTP.

pub mod templates;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport as _, Tokio1Executor};
use uuid::Uuid;

use crate::config::Config;
use crate::db::{Timestamp, Tx};
use crate::seal::Sealer;
use crate::store::outbox::{self, OutboxMessage};
pub use templates::{
    AccountExists, EmailVerification, IdentityLink, Invitation, MagicLink, MfaChanged,
    PasswordReset, PaymentDisputed, PaymentFailed, Rendered, SignInMethod, WebhookDisabled,
};

/// Where mail goes.
#[derive(Clone)]
pub enum Transport {
    /// One `.eml` file per message in this folder.
    Files(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Files(dir) => write!(f, "Files({})", dir.display()),
            Transport::Smtp(_) => f.write_str("Smtp"),
        }
    }
}

/// Sends mail from one sender through one transport. The bodies it queues are sealed (they may
/// hold single-use links) and opened only to send them.
#[derive(Debug, Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
    sealer: Sealer,
}

impl Mailer {
    pub fn from_config(config: &Config, sealer: Sealer) -> anyhow::Result<Mailer> {
        let from: Mailbox = config.mail_from.parse().with_context(|| {
            format!(
                "SAASKIT_MAIL_FROM is not a valid sender: {:?}",
                config.mail_from
            )
        })?;
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(smtp_transport(url)?),
            None => Transport::Files(config.mail_dir.clone()),
        };
        Ok(Mailer {
            from,
            transport,
            sealer,
        })
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The domain of the sender, used on the right of Message-IDs.
    pub fn domain(&self) -> &str {
        self.from.email.domain()
    }

    /// Delivers one message from the outbox. An error leaves the retry to the caller.
    pub async fn send(&self, m: &OutboxMessage) -> anyhow::Result<()> {
        let (text, html) = open_bodies(&self.sealer, m)?;
        let to: Mailbox = m
            .to_address
            .parse()
            .with_context(|| format!("recipient {:?} is not a valid address", m.to_address))?;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&m.subject)
            .message_id(Some(m.message_id.clone()))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(readable_body(&text)),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(readable_body(&html)),
                    ),
            )
            .context("building the message")?;
        match &self.transport {
            Transport::Files(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .with_context(|| format!("creating the mail folder {}", dir.display()))?;
                // Write then rename, so a reader never sees half a message.
                let tmp = dir.join(format!(".{}.eml.tmp", m.id));
                let path = dir.join(format!("{}.eml", m.id));
                tokio::fs::write(&tmp, message.formatted())
                    .await
                    .with_context(|| format!("writing {}", tmp.display()))?;
                tokio::fs::rename(&tmp, &path)
                    .await
                    .with_context(|| format!("renaming to {}", path.display()))?;
            }
            Transport::Smtp(smtp) => {
                smtp.send(message).await.context("SMTP delivery failed")?;
            }
        }
        Ok(())
    }
}

/// A body sent as it reads (7bit, or 8bit when it is not ASCII) rather than quoted-printable, so
/// links stay intact in the `.eml` and in any mail client's source view: lettre would otherwise
/// quote any line over 76 characters, and every link with a key is one. RFC 5322 allows lines up
/// to 998 octets; a body with a longer line (or a NUL) keeps lettre's own choice.
fn readable_body(text: &str) -> Body {
    let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
    let fits = !crlf.contains('\0') && crlf.split("\r\n").all(|line| line.len() <= 998);
    if !fits {
        return Body::new(text.to_owned());
    }
    let encoding = if crlf.is_ascii() {
        ContentTransferEncoding::SevenBit
    } else {
        ContentTransferEncoding::EightBit
    };
    Body::dangerous_pre_encoded(crlf.into_bytes(), encoding)
}

/// Builds the SMTP transport from `SAASKIT_SMTP_URL`: `smtp://` means STARTTLS (required) on port
/// 587 by default, `smtps://` implicit TLS on 465, `?tls=none` a plain connection (port 25) for a
/// local relay, `?tls=opportunistic` STARTTLS when offered.
pub fn smtp_transport(url: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let invalid = || anyhow::anyhow!("SAASKIT_SMTP_URL is not a valid smtp:// or smtps:// URL");
    let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let tls = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("tls="))
        .unwrap_or(if scheme == "smtps" {
            "wrapper"
        } else {
            "required"
        });
    let lettre_url = match (scheme, tls) {
        ("smtp", "none") => format!("smtp://{base}"),
        ("smtp", "required") => format!("smtp://{base}?tls=required"),
        ("smtp", "opportunistic") => format!("smtp://{base}?tls=opportunistic"),
        ("smtps", _) => format!("smtps://{base}"),
        _ => return Err(invalid()),
    };
    Ok(AsyncSmtpTransport::<Tokio1Executor>::from_url(&lettre_url)
        .map_err(|_| invalid())?
        .timeout(Some(Duration::from_secs(15)))
        .build())
}

/// Queues a message inside the caller's transaction, its bodies sealed: the database never
/// holds a mailed link in clear, not even until it is sent.
pub async fn enqueue(
    tx: &mut Tx,
    mailer: &Mailer,
    to: &str,
    rendered: Rendered,
    now: Timestamp,
) -> sqlx::Result<Uuid> {
    let id = Uuid::now_v7();
    outbox::insert(
        tx.conn(),
        &OutboxMessage {
            id,
            message_id: format!("<{}@{}>", id.simple(), mailer.domain()),
            to_address: to.to_owned(),
            subject: rendered.subject,
            body_text: mailer
                .sealer
                .seal(&rendered.text, &body_context(TEXT_BODY, id)),
            body_html: mailer
                .sealer
                .seal(&rendered.html, &body_context(HTML_BODY, id)),
            attempts: 0,
            next_attempt_at: now,
            sent_at: None,
            failed_at: None,
            last_error: None,
            created_at: now,
        },
    )
    .await?;
    Ok(id)
}

const TEXT_BODY: &str = "outbox.body_text";
const HTML_BODY: &str = "outbox.body_html";

/// What a sealed body is bound to: its column and its message.
fn body_context(column: &str, id: Uuid) -> Vec<u8> {
    let mut context = column.as_bytes().to_vec();
    context.push(b':');
    context.extend_from_slice(id.as_bytes());
    context
}

fn open_bodies(sealer: &Sealer, m: &OutboxMessage) -> anyhow::Result<(String, String)> {
    let text = sealer
        .open(&m.body_text, &body_context(TEXT_BODY, m.id))
        .context("opening the sealed text body")?;
    let html = sealer
        .open(&m.body_html, &body_context(HTML_BODY, m.id))
        .context("opening the sealed HTML body")?;
    Ok((text, html))
}

/// Seals every kept message's bodies under the current key (after a key rotation, or bodies
/// queued in clear by an older version); returns how many messages changed. Each batch is its
/// own transaction, so a message being sent meanwhile is at worst re-sealed once more.
pub async fn reseal_outbox(db: &crate::db::Db, sealer: &Sealer) -> anyhow::Result<u64> {
    let mut changed = 0;
    each_kept_batch(db, 100, async |tx, batch| {
        for (id, text, html) in batch {
            let text = sealer
                .reseal(text, &body_context(TEXT_BODY, *id))
                .with_context(|| format!("outbox message {id}: text body"))?;
            let html = sealer
                .reseal(html, &body_context(HTML_BODY, *id))
                .with_context(|| format!("outbox message {id}: HTML body"))?;
            if text.is_some() || html.is_some() {
                outbox::replace_bodies(tx.conn(), *id, text.as_deref(), html.as_deref()).await?;
                changed += 1;
            }
        }
        Ok(())
    })
    .await?;
    Ok(changed)
}

/// How many kept messages have a body that is not sealed under the current key.
pub async fn unsealed_or_old(db: &crate::db::Db, sealer: &Sealer) -> anyhow::Result<u64> {
    let mut count = 0;
    each_kept_batch(db, 500, async |_, batch| {
        let stale = |b: &String| !b.is_empty() && !sealer.is_current(b);
        count += batch
            .iter()
            .filter(|(_, t, h)| stale(t) || stale(h))
            .count() as u64;
        Ok(())
    })
    .await?;
    Ok(count)
}

/// Runs `work` on the kept messages' bodies, `size` messages at a time in id order, each batch
/// in a transaction of its own.
async fn each_kept_batch(
    db: &crate::db::Db,
    size: i64,
    mut work: impl AsyncFnMut(&mut crate::db::Tx, &[(Uuid, String, String)]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after: Option<Uuid> = None;
    loop {
        let mut tx = db.begin().await?;
        let batch = outbox::kept_bodies(tx.conn(), after, size).await?;
        let Some(last) = batch.last() else {
            tx.commit_quietly().await?;
            return Ok(());
        };
        after = Some(last.0);
        work(&mut tx, &batch).await?;
        tx.commit_quietly().await?;
    }
}

/// How long to wait before attempt `attempts + 1` after `attempts` failed ones: 30 s doubling
/// up to an hour. `None` once it is time to give up (after [`MAX_ATTEMPTS`], about a day).
pub fn retry_delay(attempts: i64) -> Option<chrono::Duration> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let secs = 30i64.saturating_mul(1i64 << exponent).min(3600);
    Some(chrono::Duration::seconds(secs))
}

pub const MAX_ATTEMPTS: i64 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour_then_give_up() {
        assert_eq!(retry_delay(1), Some(chrono::Duration::seconds(30)));
        assert_eq!(retry_delay(2), Some(chrono::Duration::seconds(60)));
        assert_eq!(retry_delay(3), Some(chrono::Duration::seconds(120)));
        assert_eq!(retry_delay(8), Some(chrono::Duration::seconds(3600)));
        assert_eq!(
            retry_delay(MAX_ATTEMPTS - 1),
            Some(chrono::Duration::seconds(3600))
        );
        assert_eq!(retry_delay(MAX_ATTEMPTS), None);
        let total: i64 = (1..MAX_ATTEMPTS)
            .filter_map(retry_delay)
            .map(|d| d.num_seconds())
            .sum();
        assert!(
            total > 20 * 3600,
            "keeps trying through a long outage ({total} s)"
        );
    }

    #[test]
    fn smtp_urls_map_to_the_documented_tls_modes() {
        for ok in [
            "smtp://user:pass@mail.example.com:587",
            "smtps://user:pass@mail.example.com",
            "smtp://127.0.0.1:2525?tls=none",
            "smtp://mail.example.com?tls=opportunistic",
        ] {
            assert!(smtp_transport(ok).is_ok(), "{ok}");
        }
        for bad in ["http://x", "smtp://x?tls=bogus", "nonsense"] {
            assert!(smtp_transport(bad).is_err(), "{bad}");
        }
    }
}
