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
    let live = crate::db::sqlite_file(&app.config.database_url);
    let mut done: Option<i64> = None;
    // The slot to try again, and when.
    let mut retry: Option<(i64, Timestamp)> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let now = app.clock.now();
        let slot = now.micros().div_euclid(period);
        let due = done != Some(slot) && retry.is_none_or(|(s, at)| s != slot || now >= at);
        if due {
            match take(&app, &dir, live.as_deref(), slot, period, now).await {
                Ok(Taken::Made(made)) => {
                    done = Some(slot);
                    retry = None;
                    let m = &app.metrics;
                    let finished = app.clock.now().micros().max(0) / 1_000_000;
                    m.backups_taken.inc();
                    m.backup_last_success.set(finished);
                    m.backup_last_bytes.set(made.bytes);
                    m.backup_last_duration.set(made.took.as_secs_f64());
                    tracing::info!(
                        file = %made.path.display(),
                        bytes = made.bytes,
                        millis = made.took.as_millis() as u64,
                        "scheduled backup written"
                    );
                }
                Ok(Taken::Elsewhere) => done = Some(slot),
                // Another process is on it; if it died, take the slot over once its claim lapses.
                Ok(Taken::Held { since }) => retry = Some((slot, since.plus(LEASE))),
                Err(err) => {
                    app.metrics.backup_failures.inc();
                    retry = Some((slot, now.plus(RETRY)));
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

/// What became of a slot this process tried to take.
enum Taken {
    Made(crate::backup::Made),
    /// Another process took it.
    Elsewhere,
    /// Another process claimed it at `since` and has not finished.
    Held {
        since: Timestamp,
    },
}

/// Claims `slot` and takes its backup.
async fn take(
    app: &AppState,
    dir: &Path,
    live: Option<&Path>,
    slot: i64,
    period: i64,
    now: Timestamp,
) -> anyhow::Result<Taken> {
    let mut tx = app.db.begin().await?;
    let claimed = backup_runs::claim(tx.conn(), slot, now, now.plus(-LEASE)).await?;
    let state = if claimed {
        None
    } else {
        backup_runs::state(tx.conn(), slot).await?
    };
    // Quiet: no cache holds backup runs.
    tx.commit_quietly().await?;
    if !claimed {
        return Ok(match state {
            Some((since, None)) => Taken::Held { since },
            _ => Taken::Elsewhere,
        });
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
            let released = async {
                let mut tx = app.db.begin().await?;
                backup_runs::release(tx.conn(), slot).await?;
                anyhow::Ok(tx.commit_quietly().await?)
            }
            .await;
            return Err(match released {
                Ok(()) => err,
                Err(also) => err.context(format!(
                    "and giving up the claim failed too ({also:#}); it lapses after an hour"
                )),
            });
        }
    };
    let mut tx = app.db.begin().await?;
    let name = made.path.display().to_string();
    let bytes = i64::try_from(made.bytes).unwrap_or(i64::MAX);
    backup_runs::finish(tx.conn(), slot, app.clock.now(), &name, bytes).await?;
    tx.commit_quietly().await?;
    // The backup is made; a failure to remove old ones is its own problem.
    if let Err(err) = prune(dir, live, app.config.backup_keep as usize) {
        tracing::error!(
            error = format!("{err:#}"),
            dir = %dir.display(),
            "removing old scheduled backups failed"
        );
    }
    Ok(Taken::Made(made))
}

/// Whether `name` is a scheduled backup's: `saaskit-YYYYMMDDTHHMMSSZ.db` exactly.
fn is_scheduled_name(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix("saaskit-")
        .and_then(|n| n.strip_suffix(".db"))
    else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// Removes all but the newest `keep` scheduled backups (and their checksums) from `dir`: only
/// files named as [`is_scheduled_name`] says, and never the live database (`live`).
fn prune(dir: &Path, live: Option<&Path>, keep: usize) -> anyhow::Result<()> {
    let live = live.and_then(|l| l.canonicalize().ok());
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_scheduled_name)
        })
        .filter(|p| live.is_none() || p.canonicalize().ok() != live)
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

#[cfg(test)]
mod tests {
    use super::is_scheduled_name;

    #[test]
    fn only_the_schedules_own_names_are_pruned() {
        assert!(is_scheduled_name("saaskit-20261201T130000Z.db"));
        for other in [
            "saaskit-prod.db",
            "saaskit-0.db",
            "saaskit-20261201T130000Z.db.sha256",
            "saaskit-20261201X130000Z.db",
            "my-20261201T130000Z.db",
            "saaskit-2026120T1130000Z.db",
        ] {
            assert!(!is_scheduled_name(other), "{other}");
        }
    }
}
