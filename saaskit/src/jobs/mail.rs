//! The mail worker: claims due messages from the outbox, sends them, and records the outcome —
//! sent, retried later with backoff, or (after about a day of failures) kept as failed.
//! Mail survives SMTP outages and restarts because it only leaves the outbox once sent.

use std::time::Duration;

use tokio::sync::watch;

use crate::app::AppState;
use crate::mail::retry_delay;
use crate::store::outbox;

/// Claimed one at a time, so a slow SMTP server cannot outlast the lease of messages still
/// waiting in a batch (and get them sent twice by another replica).
const BATCH: i64 = 1;
const POLL: Duration = Duration::from_secs(1);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
}

/// Delivers every message due now and returns what happened.
pub async fn deliver_due(app: &AppState) -> anyhow::Result<Delivery> {
    deliver_until(app, None).await
}

/// Like [`deliver_due`], but stops before the next message once `stop` turns true.
async fn deliver_until(
    app: &AppState,
    stop: Option<&watch::Receiver<bool>>,
) -> anyhow::Result<Delivery> {
    let mut total = Delivery::default();
    loop {
        if stop.is_some_and(|s| *s.borrow()) {
            return Ok(total);
        }
        let now = app.clock.now();
        // How long the claimed message is reserved for this worker (`SAASKIT_MAIL_LEASE_SECS`).
        let lease = chrono::Duration::seconds(
            i64::try_from(app.config.mail_lease_secs).unwrap_or(i64::MAX / 1_000_000),
        );
        let batch = {
            let mut tx = app.db.begin().await?;
            let batch = outbox::claim_due(tx.conn(), now, now.plus(lease), BATCH).await?;
            tx.commit_quietly().await?;
            batch
        };
        if batch.is_empty() {
            return Ok(total);
        }
        for message in batch {
            // Abandoned at half the lease, long before another replica may take the message:
            // a send that outlived its lease could deliver it twice. (The SMTP client bounds
            // only its connect; a server that stalls after the greeting would hang it.)
            let limit = Duration::from_secs(app.config.mail_lease_secs) / 2;
            let outcome = match tokio::time::timeout(limit, app.mailer.send(&message)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(anyhow::anyhow!(
                    "the send took longer than {} s (half the mail lease) and was abandoned",
                    limit.as_secs()
                )),
            };
            let now = app.clock.now();
            let mut tx = app.db.begin().await?;
            match outcome {
                Ok(()) => {
                    outbox::mark_sent(tx.conn(), message.id, now).await?;
                    total.sent += 1;
                    tracing::info!(outbox_id = %message.id, "mail sent");
                }
                Err(err) => {
                    let error = format!("{err:#}");
                    let (id, attempt) = (message.id, message.attempts);
                    // Recorded only while this worker's claim is the latest (see
                    // `outbox::schedule_retry`).
                    let applied = match retry_delay(attempt) {
                        Some(delay) => {
                            let retry = now.plus(delay);
                            let applied =
                                outbox::schedule_retry(tx.conn(), id, attempt, retry, &error)
                                    .await?;
                            if applied {
                                total.retrying += 1;
                                app.metrics.mail_retries.inc();
                                tracing::warn!(outbox_id = %id, attempts = attempt, error, "mail not sent; will retry");
                            }
                            applied
                        }
                        None => {
                            let applied =
                                outbox::mark_failed(tx.conn(), id, attempt, now, &error).await?;
                            if applied {
                                total.failed += 1;
                                app.metrics.mail_failures.inc();
                                tracing::error!(outbox_id = %id, attempts = attempt, error, "mail given up on; kept in the outbox");
                            }
                            applied
                        }
                    };
                    if !applied {
                        tracing::warn!(outbox_id = %id, attempts = attempt, error, "mail not sent; another worker has taken it since");
                    }
                }
            }
            tx.commit_quietly().await?;
        }
    }
}

/// Runs until `stop` turns true, delivering as soon as mail is queued on this replica
/// (or within a second of it being queued on another). Stops between messages, never mid-send.
pub async fn run(app: AppState, mut stop: watch::Receiver<bool>) {
    tracing::info!(transport = ?app.mailer.transport(), "mail worker started");
    app.mail_worker_running
        .store(true, std::sync::atomic::Ordering::Relaxed);
    loop {
        if *stop.borrow() {
            break;
        }
        if let Err(err) = deliver_until(&app, Some(&stop)).await {
            tracing::error!(error = format!("{err:#}"), "mail worker pass failed");
        }
        tokio::select! {
            _ = app.mail_queued.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
    app.mail_worker_running
        .store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("mail worker stopped");
}
