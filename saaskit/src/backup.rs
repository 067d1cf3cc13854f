//! Backups of the SQLite database, and restoring one.
//!
//! [`backup`] takes a consistent snapshot of the live database with `VACUUM INTO`: one read
//! transaction, which in WAL mode never blocks writers. The copy is written under a temporary
//! name, synced, and only then renamed into place, with a `sha256sum`-style checksum beside it
//! (`<file>.sha256`), so a backup that exists is whole.
//!
//! [`restore`] (with the server stopped) trusts nothing: the checksum, `PRAGMA
//! integrity_check`, a schema this binary knows (migrating an older one forward), the audit
//! chain, the foreign keys and the ledger are all checked on a working copy, and only then does
//! the copy replace the database, the old one kept aside.
//!
//! Backups hold what the database holds: digests and sealed values, never the sealing key
//! (`SAASKIT_SECRET_KEY`), which must be kept, and restored, separately.
//!
//! On PostgreSQL both refuse and say what to use instead ([`POSTGRES`]).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use crate::db::Db;
use crate::product::Products;

/// What to do on PostgreSQL instead.
pub const POSTGRES: &str = "saaskit backup and restore work on SQLite only. On PostgreSQL use its \
own tools: pg_dump (and pg_restore) for a small site, or base backups with WAL archiving \
(pg_basebackup, or pgBackRest) for point-in-time recovery; see the README's production section";

/// A backup that was made.
#[derive(Debug, Clone)]
pub struct Made {
    pub path: PathBuf,
    pub bytes: u64,
    /// The SHA-256 of the file, in hex, as written to `<path>.sha256`.
    pub sha256: String,
    pub took: Duration,
}

/// The checksum file of the backup at `path`: `<path>.sha256`.
pub fn checksum_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// A name beside `path` for a file being written, unique to this process.
fn partial_path(path: &Path, what: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{what}-{}", std::process::id()));
    PathBuf::from(name)
}

/// Snapshots the live database `db` into `to` (and its checksum into `to.sha256`) while the
/// server goes on serving and writing.
pub async fn backup(db: &Db, to: &Path) -> anyhow::Result<Made> {
    let Db::Sqlite(pool) = db else {
        bail!("{POSTGRES}");
    };
    let started = Instant::now();
    let partial = partial_path(to, "partial");
    remove_if_present(&partial)?;
    let target = partial
        .to_str()
        .context("a backup's path must be valid UTF-8")?
        .to_owned();
    // SQLite writes the copy itself: one read transaction, so writers go on (WAL mode).
    let made = sqlx::query("VACUUM INTO ?")
        .bind(&target)
        .execute(pool)
        .await
        .with_context(|| format!("writing the snapshot to {}", partial.display()));
    if let Err(err) = made {
        let _ = std::fs::remove_file(&partial);
        return Err(err);
    }
    let finished = tokio::task::spawn_blocking({
        let (partial, to) = (partial.clone(), to.to_owned());
        move || finish(&partial, &to)
    })
    .await
    .context("the backup's finishing task failed")?;
    let (bytes, sha256) = match finished {
        Ok(done) => done,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    Ok(Made {
        path: to.to_owned(),
        bytes,
        sha256,
        took: started.elapsed(),
    })
}

/// Syncs the snapshot at `partial`, writes its checksum, and renames both into place at `to`.
fn finish(partial: &Path, to: &Path) -> anyhow::Result<(u64, String)> {
    let file = std::fs::File::open(partial)
        .with_context(|| format!("reopening the snapshot {}", partial.display()))?;
    file.sync_all().context("syncing the snapshot to disk")?;
    drop(file);
    let (bytes, sha256) = digest_file(partial)?;
    let name = to
        .file_name()
        .and_then(|n| n.to_str())
        .context("a backup's file name must be valid UTF-8")?;
    let sums = checksum_path(to);
    let sums_partial = partial_path(&sums, "partial");
    write_synced(&sums_partial, format!("{sha256}  {name}\n").as_bytes())?;
    std::fs::rename(partial, to)
        .with_context(|| format!("renaming the snapshot to {}", to.display()))?;
    std::fs::rename(&sums_partial, &sums)
        .with_context(|| format!("renaming the checksum to {}", sums.display()))?;
    sync_dir(to)?;
    Ok((bytes, sha256))
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Makes the renames in `path`'s folder durable.
fn sync_dir(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing the folder {}", dir.display()))
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The size and SHA-256 (hex) of the file at `path`.
pub fn digest_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a restore found in the backup it put in place.
#[derive(Debug, Clone)]
pub struct Restored {
    /// Where the database that was replaced now is, if there was one.
    pub previous: Option<PathBuf>,
    pub audit_entries: i64,
    pub businesses_with_credits: i64,
    /// Migrations this binary applied to bring the backup's schema up to date.
    pub migrated: bool,
}

/// Replaces the SQLite database at `database_url` with the backup `from`, once the backup has
/// proved itself (see the module's documentation). The server must be stopped. Nothing is
/// changed when any check fails.
pub async fn restore(
    database_url: &str,
    products: &Products,
    from: &Path,
) -> anyhow::Result<Restored> {
    let Some(target) = crate::db::sqlite_file(database_url) else {
        bail!("{POSTGRES}");
    };
    let sums = checksum_path(from);
    let expected = std::fs::read_to_string(&sums).with_context(|| {
        format!(
            "no checksum beside the backup ({}): a backup is restored only with the checksum \
             `saaskit backup` wrote",
            sums.display()
        )
    })?;
    let expected = expected
        .split_whitespace()
        .next()
        .context("the checksum file is empty")?
        .to_ascii_lowercase();
    let (_, actual) = digest_file(from)?;
    if actual != expected {
        bail!(
            "the backup {} does not match its checksum: it is corrupted or truncated; nothing \
             was restored",
            from.display()
        );
    }
    // Every check runs on a working copy beside the database, so a failure leaves both the
    // backup and the current database as they were.
    let working = partial_path(&target, "restoring");
    for stale in sqlite_files(&working) {
        remove_if_present(&stale)?;
    }
    std::fs::copy(from, &working)
        .with_context(|| format!("copying the backup to {}", working.display()))?;
    let prepared = async {
        let checked = check_copy(&working, products).await?;
        // The working copy reaches the disk before it takes the database's name.
        std::fs::File::open(&working)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", working.display()))?;
        if target.exists() {
            fold_wal(&target).await?;
        }
        anyhow::Ok(checked)
    }
    .await;
    let checked = match prepared {
        Ok(c) => c,
        Err(err) => {
            for file in sqlite_files(&working) {
                let _ = std::fs::remove_file(file);
            }
            return Err(err.context("the backup was not restored"));
        }
    };
    // The current database and whatever side files it left (a WAL that was not folded, a stray
    // one without a database) go aside together: a WAL does not say which database it belongs
    // to, and SQLite would replay it into the restored one.
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let aside = partial_path(&target, &format!("before-restore-{stamp}"));
    let present: Vec<(PathBuf, PathBuf)> = sqlite_files(&target)
        .into_iter()
        .zip(sqlite_files(&aside))
        .filter(|(from, _)| from.exists())
        .collect();
    let previous = (!present.is_empty()).then(|| aside.clone());
    for (from, to) in &present {
        std::fs::rename(from, to)
            .with_context(|| format!("moving {} aside to {}", from.display(), to.display()))?;
    }
    if let Some(left) = sqlite_files(&target).into_iter().find(|f| f.exists()) {
        bail!(
            "{} is still there after moving the current database aside; nothing was restored",
            left.display()
        );
    }
    std::fs::rename(&working, &target)
        .with_context(|| format!("putting the restored database at {}", target.display()))?;
    sync_dir(&target)?;
    // The working copy was closed with its WAL folded in; what is left of its side files is
    // empty.
    for side in sqlite_files(&working).into_iter().skip(1) {
        let _ = std::fs::remove_file(side);
    }
    Ok(Restored {
        previous,
        ..checked
    })
}

/// The SQLite database at `path` (which must exist), opened as saaskit opens its own: by path,
/// so nothing in the name is read as URL syntax.
async fn open_file(path: &Path) -> anyhow::Result<Db> {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    if !path.exists() {
        bail!("there is no database at {}", path.display());
    }
    Db::connect_sqlite(options, 1).await
}

/// Folds the WAL of the database at `path` (a stopped server's) into the file and closes it, so
/// that the file alone holds the database and can be moved.
async fn fold_wal(path: &Path) -> anyhow::Result<()> {
    let db = open_file(path).await?;
    let folded = match &db {
        Db::Sqlite(pool) => {
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(pool)
                .await
                .context("folding the current database's WAL into it")?;
            busy
        }
        Db::Postgres(_) => 0,
    };
    db.close().await;
    if folded != 0 {
        bail!(
            "the current database at {} is in use: stop the server before restoring",
            path.display()
        );
    }
    Ok(())
}

/// A database file and its WAL and shared-memory files.
fn sqlite_files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

/// Checks the working copy at `path` and brings its schema up to date; closes it cleanly (its
/// WAL folded back into the file) before returning.
async fn check_copy(path: &Path, products: &Products) -> anyhow::Result<Restored> {
    let db = open_file(path).await?;
    let result = check_open_copy(&db, products).await;
    if let Db::Sqlite(pool) = &db {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await;
    }
    db.close().await;
    result
}

async fn check_open_copy(db: &Db, products: &Products) -> anyhow::Result<Restored> {
    let Db::Sqlite(pool) = db else {
        bail!("{POSTGRES}");
    };
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(pool)
        .await
        .context("the backup is not a readable SQLite database")?;
    if integrity != ["ok"] {
        bail!(
            "the backup fails SQLite's integrity check: {}",
            integrity.join("; ")
        );
    }
    // A schema from a newer binary would be misread by this one: refuse it, clearly.
    let mut sets = vec![("saaskit".to_owned(), crate::db::sqlite_schema())];
    for (name, migrations) in products.migration_sets() {
        let (table, latest) = migrations.sqlite_schema();
        sets.push((name.to_owned(), (table, latest)));
    }
    let mut migrated = false;
    for (name, (table, known)) in &sets {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?")
                .bind(*table)
                .fetch_optional(pool)
                .await?;
        let applied: i64 = match exists {
            // The table's name is saaskit's constant or a product's checked identifier.
            Some(_) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COALESCE(MAX(version), 0) FROM {table} WHERE success"
                )))
                .fetch_one(pool)
                .await?
            }
            None => 0,
        };
        if applied > *known {
            bail!(
                "the backup was made by a newer saaskit: {name}'s schema is at version \
                 {applied}, and this binary knows versions up to {known}; restore it with the \
                 binary that made it (or a newer one)"
            );
        }
        migrated |= applied < *known;
    }
    products
        .migrate(db)
        .await
        .context("bringing the backup's schema up to date")?;
    let audit_entries = match crate::audit::verify(db).await? {
        crate::audit::Verdict::Intact { entries } => entries,
        crate::audit::Verdict::Broken { seq, reason } => {
            bail!("the backup's audit log is broken at entry {seq}: {reason}")
        }
    };
    let dangling: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(pool)
        .await
        .context("checking the backup's references")?;
    if let Some((table,)) = dangling.first() {
        bail!(
            "the backup holds {} rows that refer to rows it lacks (first in {table})",
            dangling.len()
        );
    }
    // A balance is the sum of a business's entries: every one must still be computable (SQLite
    // refuses a sum that overflows rather than wrap it).
    let balances: Vec<(Vec<u8>, i64)> =
        sqlx::query_as("SELECT business_id, SUM(amount) FROM ledger_entries GROUP BY business_id")
            .fetch_all(pool)
            .await
            .context("summing the backup's ledger")?;
    let businesses_with_credits = i64::try_from(balances.len()).unwrap_or(i64::MAX);
    Ok(Restored {
        previous: None,
        audit_entries,
        businesses_with_credits,
        migrated,
    })
}
