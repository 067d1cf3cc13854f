//! `saaskit backup` while the server writes, and `saaskit restore` into a fresh place: the backup
//! holds every write acknowledged before it began and proves itself; a damaged backup, or one
//! from a newer binary, is refused and changes nothing. On PostgreSQL both say what to use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::json;

use crate::cli::saaskit;
use crate::db_test;
use crate::helpers::*;

/// Runs `saaskit args…` on the database at `url`: (success, stdout, stderr).
fn run(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = saaskit()
        .args(args)
        .env("SAASKIT_DATABASE_URL", url)
        .output()
        .expect("run saaskit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn digest(path: &Path) -> String {
    saaskit::backup::digest_file(path).expect("digest").1
}

/// What the flood had acknowledged by some moment.
#[derive(Default, Clone)]
struct Acked {
    recordings: BTreeSet<String>,
    emails: BTreeSet<String>,
    granted: i64,
}

async fn ids_in(url: &str, sql: &str) -> BTreeSet<String> {
    let db = saaskit::db::Db::connect(url, 1)
        .await
        .expect("open the restored database");
    let saaskit::db::Db::Sqlite(pool) = &db else {
        panic!("a SQLite database")
    };
    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .expect("query the restored database");
    db.close().await;
    rows.into_iter().map(|(s,)| s).collect()
}

db_test! {
    async fn a_backup_taken_under_writes_restores_whole_and_a_damaged_one_is_refused(app) {
        let dir = std::env::temp_dir().join(format!("saaskit-backup-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a folder");
        let path = |name: &str| dir.join(name);
        let url = app.test_db.url.clone();
        if app.test_db.backend == Backend::Postgres {
            for args in [["backup", "x.db"], ["restore", "x.db"]] {
                let (ok, _, err) = run(&url, &args);
                assert!(!ok, "{args:?} does not pretend on PostgreSQL");
                assert!(err.contains("pg_dump") && err.contains("WAL archiving"), "{err}");
            }
            return;
        }

        // A business that can record freely, with its SDK key and one application.
        let signup = app.signup("owner@example.com").await;
        let owner = token_of(&signup);
        let business: uuid::Uuid = signup["business"]["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
        app.put_on_plan(business, "big", &[("recordings", 1_000_000)]).await;
        let (_, key) = app.post("/api/v1/api-keys", Some(&owner), json!({"name": "sdk"})).await;
        let sdk = key["key"].as_str().expect("key").to_owned();
        let (_, application) = app.post("/api/v1/applications", Some(&owner), json!({"name": "web"})).await;
        let application = application["id"].as_str().expect("id").to_owned();

        // The flood: metered writes and signups at once, each noted once acknowledged.
        let acked = Arc::new(Mutex::new(Acked::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..3 {
            let (client, base, sdk, application) = (app.client.clone(), app.url(""), sdk.clone(), application.clone());
            let (acked, stop) = (acked.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if w == 0 && n % 5 == 0 {
                        let email = format!("flood{n}@example.com");
                        let res = client.post(format!("{base}/api/v1/signup"))
                            .json(&json!({"email": email, "password": PASSWORD, "first_name": "F",
                                          "last_name": "L", "business": {"name": "Flood"}}))
                            .send().await.expect("signup");
                        if res.status() == StatusCode::CREATED {
                            acked.lock().expect("lock").emails.insert(email);
                        }
                        continue;
                    }
                    let res = client.post(format!("{base}/api/v1/recordings")).bearer_auth(&sdk)
                        .json(&json!({"application_id": application, "duration_ms": 1200}))
                        .send().await.expect("record");
                    if res.status() == StatusCode::CREATED {
                        let body: serde_json::Value = res.json().await.expect("json");
                        let id = body["id"].as_str().expect("id").to_owned();
                        acked.lock().expect("lock").recordings.insert(id);
                    }
                }
            }));
        }
        let grant = |amount: i64| {
            let (ok, out, err) = run(&url, &["business", "grant-credits", &business.to_string(), &amount.to_string()]);
            assert!(ok, "{out}{err}");
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        grant(700);
        acked.lock().expect("lock").granted += 700;
        let (ok, out, err) = run(&url, &["renew"]);
        assert!(ok, "a renewal sweep runs during the flood: {out}{err}");

        // Two backups while the writes go on; what was acknowledged before each began is in it.
        let mut taken: Vec<(PathBuf, Acked)> = Vec::new();
        for name in ["first.db", "second.db"] {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let before = acked.lock().expect("lock").clone();
            let file = path(name);
            let (ok, out, err) = run(&url, &["backup", file.to_str().expect("utf-8")]);
            assert!(ok, "{out}{err}");
            assert!(out.contains("backed up to") && out.contains("sha256"), "{out}");
            taken.push((file, before));
            grant(50);
            acked.lock().expect("lock").granted += 50;
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.expect("a writer");
        }
        let (last, before) = taken.pop().expect("a backup");
        assert!(before.recordings.len() > 20 && !before.emails.is_empty(), "the flood wrote");

        // The checksum sits beside it in sha256sum's format.
        let sums = std::fs::read_to_string(saaskit::backup::checksum_path(&last)).expect("checksum");
        assert_eq!(sums, format!("{}  second.db\n", digest(&last)));

        // Restored into a fresh place, it proves itself and holds every acknowledged write.
        let fresh = path("fresh.db");
        let fresh_url = format!("sqlite://{}", fresh.display());
        let (ok, out, err) = run(&fresh_url, &["restore", last.to_str().expect("utf-8")]);
        assert!(ok, "{out}{err}");
        assert!(out.contains("integrity ok") && out.contains("audit log intact"), "{out}");
        let recordings = ids_in(&fresh_url, "SELECT lower(hex(id)) FROM recordings").await;
        for id in &before.recordings {
            assert!(recordings.contains(&id.replace('-', "")), "recording {id} was acknowledged before the backup");
        }
        let emails = ids_in(&fresh_url, "SELECT email FROM users").await;
        assert!(before.emails.is_subset(&emails), "every acknowledged signup is there");
        let balance = ids_in(&fresh_url, &format!(
            "SELECT CAST(SUM(amount) AS TEXT) FROM ledger_entries WHERE lower(hex(business_id)) = '{}'",
            business.simple()
        )).await;
        assert_eq!(balance, BTreeSet::from([before.granted.to_string()]), "the ledger as it was");
        let (ok, out, err) = run(&fresh_url, &["audit", "verify"]);
        assert!(ok && out.contains("intact"), "{out}{err}");

        // Damaged backups are refused, and the database they would replace is left as it was.
        let untouched = digest(&fresh);
        let damaged = |name: &str, bytes: Vec<u8>, recompute: bool| {
            let file = path(name);
            std::fs::write(&file, &bytes).expect("write");
            let sum = if recompute { digest(&file) } else { digest(&last) };
            std::fs::write(saaskit::backup::checksum_path(&file), format!("{sum}  {name}\n")).expect("write");
            file
        };
        let original = std::fs::read(&last).expect("read the backup");
        let mut flipped = original.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let truncated = original[..original.len() / 3].to_vec();
        let mut scrambled = original.clone();
        for b in &mut scrambled[4096..12288] {
            *b = 0x5a;
        }
        for (file, says) in [
            (damaged("flipped.db", flipped, false), "does not match its checksum"),
            (damaged("truncated.db", truncated, false), "does not match its checksum"),
            (damaged("scrambled.db", scrambled, true), "not a readable SQLite database"),
        ] {
            let (ok, out, err) = run(&fresh_url, &["restore", file.to_str().expect("utf-8")]);
            assert!(!ok, "{} is refused: {out}", file.display());
            assert!(err.contains(says), "{err}");
            assert_eq!(digest(&fresh), untouched, "the database is untouched");
        }
        let (ok, _, err) = run(&fresh_url, &["restore", path("missing.db").to_str().expect("utf-8")]);
        assert!(!ok && err.contains("no checksum beside the backup"), "{err}");
        // Nor is an empty database made and backed up from a mistyped URL.
        let nowhere = format!("sqlite://{}", path("typo.db").display());
        let (ok, _, err) = run(&nowhere, &["backup", path("empty.db").to_str().expect("utf-8")]);
        assert!(!ok && err.contains("there is no database at"), "{err}");
        assert!(!path("typo.db").exists() && !path("empty.db").exists());

        // A backup from a newer binary: its schema is one this binary does not know.
        let newer = path("newer.db");
        std::fs::copy(&last, &newer).expect("copy");
        {
            let newer_url = format!("sqlite://{}", newer.display());
            let db = saaskit::db::Db::connect(&newer_url, 1).await.expect("open");
            let saaskit::db::Db::Sqlite(pool) = &db else { panic!("SQLite") };
            sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                         VALUES (9999, 'from the future', TRUE, x'00', 0)")
                .execute(pool).await.expect("a future migration");
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await.expect("checkpoint");
            db.close().await;
        }
        std::fs::write(saaskit::backup::checksum_path(&newer), format!("{}  newer.db\n", digest(&newer))).expect("write");
        let (ok, _, err) = run(&fresh_url, &["restore", newer.to_str().expect("utf-8")]);
        assert!(!ok && err.contains("made by a newer saaskit"), "{err}");
        assert_eq!(digest(&fresh), untouched);

        // A backup from an older binary (here: before the newest migration) is brought up to
        // date as it is restored.
        let older = path("older.db");
        std::fs::copy(&last, &older).expect("copy");
        let newest: i64 = {
            let older_url = format!("sqlite://{}", older.display());
            let db = saaskit::db::Db::connect(&older_url, 1).await.expect("open");
            let saaskit::db::Db::Sqlite(pool) = &db else { panic!("SQLite") };
            let newest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(pool).await.expect("the schema's version");
            // The newest migration made the tables of sign-in with identity providers; the
            // older schema did not have them.
            assert_eq!(newest, 12, "this test unmakes migration 0012 (identities); update it with the schema");
            for table in ["identity_link_keys", "identity_sign_ins", "user_identities"] {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}"))).execute(pool).await.expect("unmake it");
            }
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 12").execute(pool).await.expect("unrecord it");
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await.expect("checkpoint");
            db.close().await;
            newest
        };
        std::fs::write(saaskit::backup::checksum_path(&older), format!("{}  older.db
", digest(&older))).expect("write");
        let upgraded_url = format!("sqlite://{}", path("upgraded.db").display());
        let (ok, out, err) = run(&upgraded_url, &["restore", older.to_str().expect("utf-8")]);
        assert!(ok && out.contains("schema brought up to date"), "{out}{err}");
        let versions = ids_in(&upgraded_url, "SELECT CAST(MAX(version) AS TEXT) FROM _sqlx_migrations").await;
        assert_eq!(versions, BTreeSet::from([newest.to_string()]));
        let tables = ids_in(&upgraded_url, "SELECT name FROM sqlite_master WHERE name = 'user_identities'").await;
        assert_eq!(tables.len(), 1, "the newest migration was applied");
        let emails = ids_in(&upgraded_url, "SELECT email FROM users").await;
        assert!(before.emails.is_subset(&emails), "with the data it held");

        // Restoring over a database keeps the old one aside, and a stray WAL beside it (which
        // SQLite would replay into whatever file has that name) goes aside too.
        let (first, first_before) = taken.pop().expect("the first backup");
        let before_restore = ids_in(&fresh_url, "SELECT lower(hex(id)) FROM recordings").await;
        std::fs::write(path("fresh.db-wal"), b"not a WAL of this database").expect("a stray WAL");
        let (ok, out, err) = run(&fresh_url, &["restore", first.to_str().expect("utf-8")]);
        assert!(ok, "{out}{err}");
        assert!(out.contains("the database it replaced is kept at"), "{out}");
        let aside: Vec<_> = std::fs::read_dir(&dir).expect("list").flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("fresh.db.before-restore-") && !name.ends_with("-wal") && !name.ends_with("-shm")
            })
            .collect();
        assert_eq!(aside.len(), 1, "the replaced database is kept");
        assert_eq!(digest(&aside[0].path()), untouched);
        let now_there = ids_in(&fresh_url, "SELECT lower(hex(id)) FROM recordings").await;
        for id in &first_before.recordings {
            assert!(now_there.contains(&id.replace('-', "")), "the first backup's recording {id}");
        }
        assert!(now_there.len() < before_restore.len(), "the first backup, not the second, is in place");
        let integrity = ids_in(&fresh_url, "PRAGMA integrity_check").await;
        assert_eq!(integrity, BTreeSet::from(["ok".to_owned()]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The scheduled backups' files in `dir`, oldest first.
fn scheduled(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("saaskit-") && n.ends_with(".db"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits (a bounded while: the loops look at the clock every second) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("not within 10 s: {what}");
}

db_test! {
    async fn serve_backs_up_on_a_schedule_once_per_slot_keeps_the_newest_and_retries_failures(app) {
        let dir = std::env::temp_dir().join(format!("saaskit-scheduled-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a folder");
        if app.test_db.backend == Backend::Postgres {
            // The schedule is refused at start on PostgreSQL, with what to use instead.
            let (ok, _, err) = crate::cli::saaskit()
                .args(["migrate"])
                .env("SAASKIT_DATABASE_URL", &app.test_db.url)
                .env("SAASKIT_BACKUP_EVERY", "1h")
                .env("SAASKIT_BACKUP_DIR", &dir)
                .output()
                .map(|o| (o.status.success(), (), String::from_utf8_lossy(&o.stderr).into_owned()))
                .expect("run saaskit");
            assert!(!ok && err.contains("pg_dump"), "{err}");
            return;
        }
        // The folder cannot be made at first (a file is in the way): the backup fails, is
        // counted, and is tried again once the way is clear.
        let blocker = dir.join("blocked");
        std::fs::write(&blocker, b"a file, not a folder").expect("write");
        let target = blocker.join("backups");
        let start = |target: PathBuf| {
            let options = Options {
                clock: app.clock.clone(),
                configure: Box::new(move |c| {
                    c.backup_every = Some(3600);
                    c.backup_dir = Some(target);
                    c.backup_keep = 2;
                }),
                ..Options::default()
            };
            saaskit::testing::TestApp::start(app.test_db.clone(), app.app.products.clone(), options)
        };
        // Two processes on one database, as two replicas would be.
        let (one, two) = (start(target.clone()).await, start(target.clone()).await);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let loops = [
            tokio::spawn(saaskit::jobs::backup::run(one.app.clone(), stopped.clone())),
            tokio::spawn(saaskit::jobs::backup::run(two.app.clone(), stopped.clone())),
        ];
        let failures = || {
            [&one, &two].iter().map(|a| a.app.metrics.backup_failures.get()).sum::<u64>()
        };
        eventually("the failure is counted", || failures() >= 1).await;
        assert!(!target.exists(), "nothing was written");
        std::fs::remove_file(&blocker).expect("clear the way");
        app.clock.advance(chrono::Duration::seconds(31));
        eventually("the retry succeeds", || scheduled(&target).len() == 1).await;

        // Three more slots: one backup each (never two), and only the newest two are kept.
        for _ in 0..3 {
            let before = scheduled(&target);
            app.clock.advance(chrono::Duration::hours(1));
            eventually("the next slot's backup", || {
                let now = scheduled(&target);
                now.last() != before.last() && now.len() <= 2
            }).await;
        }
        let kept = scheduled(&target);
        assert_eq!(kept.len(), 2, "{kept:?}");
        for name in &kept {
            let file = target.join(name);
            let sums = std::fs::read_to_string(saaskit::backup::checksum_path(&file)).expect("its checksum");
            assert_eq!(sums, format!("{}  {name}\n", digest(&file)));
        }
        assert_eq!(app.count("backup_runs").await, 4, "one run per slot, whichever process took it");
        let taken_by: u64 = [&one, &two].iter()
            .map(|a| a.app.metrics.backups_taken.get()).sum();
        assert_eq!(taken_by, 4, "four backups taken in all by the two processes, never two for a slot");
        let unfinished = app.exec("UPDATE backup_runs SET bytes = bytes WHERE finished_at IS NULL").await;
        assert_eq!(unfinished, 0, "every claim finished");
        let taken: u64 = [&one, &two].iter()
            .filter(|a| a.app.metrics.backup_last_success.get() > 0)
            .map(|a| a.app.metrics.backup_last_bytes.get())
            .sum();
        assert!(taken > 0, "the metrics name the last backup");
        let metrics = one.app.metrics.render(&saaskit::metrics::Gauges {
            pool_in_use: 0, pool_size: 0, outbox_backlog: 0, outbox_failed: 0, webhooks_queued: 0,
        });
        assert!(metrics.contains("saaskit_backup_last_success_timestamp_seconds"), "{metrics}");
        let _ = stop.send(true);
        for l in loops {
            l.await.expect("the loop stops");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Litestream's binary: `SAASKIT_LITESTREAM`, or where `.ci/litestream-tools` installs it.
/// `None` (the drill is skipped) when it is not there, unless `SAASKIT_LITESTREAM_TESTS=required`.
fn litestream() -> Option<PathBuf> {
    crate::tools::installed_tool(
        "SAASKIT_LITESTREAM",
        "saaskit-litestream/venv/bin/litestream",
        |p| p.is_file(),
        "SAASKIT_LITESTREAM_TESTS",
        "Litestream is missing: run .ci/litestream-tools",
    )
}

db_test! {
    async fn litestream_replicates_the_live_database_and_a_restore_drill_finds_every_write(app) {
        if app.test_db.backend == Backend::Postgres {
            return; // Litestream is for SQLite; PostgreSQL has WAL archiving (see the README).
        }
        let Some(litestream) = litestream() else { return };
        let live = saaskit::db::sqlite_file(&app.test_db.url).expect("a SQLite file");
        let dir = std::env::temp_dir().join(format!("saaskit-litestream-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a folder");
        let config = dir.join("litestream.yml");
        std::fs::write(&config, format!(
            "dbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
            live.display(), dir.join("replica").display()
        )).expect("write the configuration");
        let mut replicating = std::process::Command::new(&litestream)
            .args(["replicate", "-config", config.to_str().expect("utf-8")])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("litestream.log")).expect("a log"))
            .spawn()
            .expect("start litestream replicate");

        // The server goes on as usual while Litestream follows its WAL: signups, and a backup
        // of our own taken meanwhile.
        let mut emails = BTreeSet::new();
        for i in 0..20 {
            let email = format!("replicated{i}@example.com");
            app.signup(&email).await;
            emails.insert(email);
            if i == 10 {
                let file = dir.join("ours.db");
                let (ok, out, err) = run(&app.test_db.url, &["backup", file.to_str().expect("utf-8")]);
                assert!(ok, "saaskit backup beside Litestream: {out}{err}");
            }
        }

        // The drill: restore the replica into a fresh file until every acknowledged signup is in
        // it (Litestream ships the WAL each second), then prove it as any restore is proved.
        let restored = dir.join("restored.db");
        let restored_url = format!("sqlite://{}", restored.display());
        let mut found = BTreeSet::new();
        for _ in 0..40 {
            let _ = std::fs::remove_file(&restored);
            let done = std::process::Command::new(&litestream)
                .args(["restore", "-config", config.to_str().expect("utf-8"), "-o",
                       restored.to_str().expect("utf-8"), live.to_str().expect("utf-8")])
                .output()
                .expect("run litestream restore");
            if done.status.success() {
                found = ids_in(&restored_url, "SELECT email FROM users").await;
                if emails.is_subset(&found) {
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let _ = replicating.kill();
        let _ = replicating.wait();
        let log = std::fs::read_to_string(dir.join("litestream.log")).unwrap_or_default();
        assert!(emails.is_subset(&found), "every acknowledged signup is in the replica; litestream said:\n{log}");
        assert!(!log.contains("level=ERROR"), "Litestream replicated without errors:\n{log}");
        let integrity = ids_in(&restored_url, "PRAGMA integrity_check").await;
        assert_eq!(integrity, BTreeSet::from(["ok".to_owned()]));
        let (ok, out, err) = run(&restored_url, &["audit", "verify"]);
        assert!(ok && out.contains("intact"), "{out}{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
