//! Scheduled backups inside `serve`: every `SAASKIT_BACKUP_EVERY`, a [`crate::backup::backup`]
//! of the SQLite database into `SAASKIT_BACKUP_DIR` (`saaskit-<time>.db` with its checksum),
//! keeping the newest `SAASKIT_BACKUP_KEEP`.
//!
//! The schedule is cut into slots (the clock's time divided by the period). Each process claims
//! a slot in `backup_runs` before taking its backup, so one backup is taken per slot however
//! many processes serve the database. A failed backup is logged as an error, counted
//! (`saaskit_backup_failures_total`), its claim given up, and tried again after [`RETRY`]; a
//! claim whose process died is taken over after [`LEASE`].

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::app::AppState;
use crate::db::Timestamp;
use crate::store::backup_runs;

/// How often the loop looks at the clock.
const TICK: Duration = Duration::from_secs(1);
/// How long after a failure the same slot is tried again.
pub const RETRY: chrono::Duration = chrono::Duration::seconds(30);
/// How long an unfinished claim holds before another process may take the slot over.
pub const LEASE: chrono::Duration = chrono::Duration::hours(1);

pub async fn run(app: AppState, mut stop: watch::Receiver<bool>) {
    let (Some(every), Some(dir)) = (app.config.backup_every, app.config.backup_dir.clone()) else {
        return;
    };
    let period = i64::try_from(every)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    tracing::info!(every_secs = every, dir = %dir.display(), keep = app.config.backup_keep, "scheduled backups started");
    let mut done: Option<i64> = None;
    let mut retry_at: Option<Timestamp> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let now = app.clock.now();
        let slot = now.micros().div_euclid(period);
        if done != Some(slot) && retry_at.is_none_or(|t| now >= t) {
            match take(&app, &dir, slot, period, now).await {
                Ok(Some(made)) => {
                    done = Some(slot);
                    retry_at = None;
                    let m = &app.metrics;
                    let finished = app.clock.now().micros().max(0) / 1_000_000;
                    m.backup_last_success
                        .store(u64::try_from(finished).unwrap_or(0), Ordering::Relaxed);
                    m.backup_last_bytes.store(made.bytes, Ordering::Relaxed);
                    m.backup_last_millis.store(
                        u64::try_from(made.took.as_millis()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                    tracing::info!(
                        file = %made.path.display(),
                        bytes = made.bytes,
                        millis = made.took.as_millis() as u64,
                        "scheduled backup written"
                    );
                }
                // Another process has this slot.
                Ok(None) => done = Some(slot),
                Err(err) => {
                    app.metrics.backup_failures.fetch_add(1, Ordering::Relaxed);
                    retry_at = Some(now.plus(RETRY));
                    tracing::error!(
                        error = format!("{err:#}"),
                        retry_in_secs = RETRY.num_seconds(),
                        "scheduled backup failed; it will be tried again"
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => {}
        }
    }
    tracing::info!("scheduled backups stopped");
}

/// Claims `slot` and takes its backup: `None` when another process has it.
async fn take(
    app: &AppState,
    dir: &Path,
    slot: i64,
    period: i64,
    now: Timestamp,
) -> anyhow::Result<Option<crate::backup::Made>> {
    let mut tx = app.db.begin().await?;
    let claimed = backup_runs::claim(tx.conn(), slot, now, now.plus(-LEASE)).await?;
    // Quiet: no cache holds backup runs.
    tx.commit_quietly().await?;
    if !claimed {
        return Ok(None);
    }
    let made = async {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the backup folder {}", dir.display()))?;
        let at = Timestamp::from_micros(slot.saturating_mul(period)).unwrap_or(now);
        let file = dir.join(format!(
            "saaskit-{}.db",
            at.as_datetime().format("%Y%m%dT%H%M%SZ")
        ));
        crate::backup::backup(&app.db, &file).await
    }
    .await;
    let made = match made {
        Ok(made) => made,
        Err(err) => {
            let mut tx = app.db.begin().await?;
            backup_runs::release(tx.conn(), slot).await?;
            tx.commit_quietly().await?;
            return Err(err);
        }
    };
    let mut tx = app.db.begin().await?;
    let name = made.path.display().to_string();
    let bytes = i64::try_from(made.bytes).unwrap_or(i64::MAX);
    backup_runs::finish(tx.conn(), slot, app.clock.now(), &name, bytes).await?;
    tx.commit_quietly().await?;
    prune(dir, app.config.backup_keep as usize)
        .with_context(|| format!("removing old backups from {}", dir.display()))?;
    Ok(Some(made))
}

/// Removes all but the newest `keep` scheduled backups (and their checksums) from `dir`.
fn prune(dir: &Path, keep: usize) -> anyhow::Result<()> {
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("saaskit-") && n.ends_with(".db"))
        })
        .collect();
    // The names hold the time, so they sort oldest first.
    backups.sort();
    let excess = backups.len().saturating_sub(keep);
    for old in &backups[..excess] {
        std::fs::remove_file(old)?;
        let sums = crate::backup::checksum_path(old);
        if sums.exists() {
            std::fs::remove_file(sums)?;
        }
    }
    Ok(())
}
