//! No mailed key is ever written to the database in clear: not while the mail waits in the
//! outbox, not after it is sent (free pages, the WAL, dead PostgreSQL tuples). The raw files
//! are scanned for every key the mail carried.

use crate::db_test;
use crate::helpers::*;
use crate::smtp_sink::key_in;
use saaskit::db::Db;
use serde_json::json;

/// The raw bytes a thief of the database's files would get: the SQLite file and its WAL, or
/// PostgreSQL's heap and TOAST files of every table after a checkpoint, and its newest WAL
/// segments (read through the server, which runs the tests' superuser connection).
pub(crate) async fn raw_database_bytes(app: &TestApp) -> Vec<u8> {
    match &app.db {
        Db::Sqlite(_) => {
            let path = app.test_db.url.trim_start_matches("sqlite://").to_owned();
            let mut bytes = std::fs::read(&path).expect("read the SQLite file");
            if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
                bytes.extend(wal);
            }
            bytes
        }
        Db::Postgres(pool) => {
            sqlx::query("CHECKPOINT")
                .execute(pool)
                .await
                .expect("checkpoint");
            let files: Vec<String> = sqlx::query_scalar(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 't') \
                 AND pg_relation_filepath(c.oid) IS NOT NULL",
            )
            .fetch_all(pool)
            .await
            .expect("list table files");
            let wal: Vec<String> = sqlx::query_scalar(
                "SELECT 'pg_wal/' || name FROM pg_ls_waldir() \
                 WHERE name ~ '^[0-9A-F]{24}$' ORDER BY modification DESC LIMIT 3",
            )
            .fetch_all(pool)
            .await
            .expect("list WAL segments");
            let mut bytes = Vec::new();
            for file in files.iter().chain(&wal) {
                let content: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT CASE WHEN (pg_stat_file($1, true)).size IS NULL THEN NULL \
                     ELSE pg_read_binary_file($1) END",
                )
                .bind(file)
                .fetch_one(pool)
                .await
                .expect("read a database file");
                bytes.extend(content.unwrap_or_default());
            }
            assert!(!bytes.is_empty(), "no database file was read");
            bytes
        }
    }
}

pub(crate) fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

db_test! {
    async fn no_mailed_key_is_ever_in_the_database_files(app) {
        // Every kind of mail with a key: verification (at signup), reset, invitation.
        let owner = app.signup_token("ada@example.com").await;
        let (status, _) = app
            .post("/api/v1/password/reset", None, json!({"email": "ada@example.com"}))
            .await;
        assert_eq!(status, 202);
        let (status, _) = app
            .post(
                "/api/v1/invitations",
                Some(&owner),
                json!({"email": "grace@example.com", "role": "admin"}),
            )
            .await;
        assert_eq!(status, 201);

        // While the mail waits in the outbox, it is there, sealed.
        let waiting = raw_database_bytes(&app).await;
        let delivered = app.deliver_mail().await;
        assert_eq!(delivered.sent, 3, "{delivered:?}");
        let keys: Vec<String> = [
            app.only_mail_to("ada@example.com", VERIFICATION_SUBJECT).await,
            app.only_mail_to("ada@example.com", RESET_SUBJECT).await,
            app.only_mail_to("grace@example.com", "").await,
        ]
        .iter()
        .map(|mail| key_in(mail))
        .collect();
        // The mail that left has every key, readable: the seal was opened to send it.
        for key in &keys {
            assert_eq!(key.len(), 43, "{key}");
        }
        let sent = raw_database_bytes(&app).await;
        for key in &keys {
            assert!(!holds(&waiting, key), "a key waiting in the outbox is in clear");
            assert!(!holds(&sent, key), "a sent key is left in the database files");
        }
        // The scan can see clear text: the recipient's address is stored as it is.
        assert!(holds(&sent, "grace@example.com"));

        // And the keys still work: the seal hid them without breaking them.
        let (status, _) = app
            .post(
                "/api/v1/password/reset/confirm",
                None,
                json!({"key": keys[1], "password": "another fine password"}),
            )
            .await;
        assert_eq!(status, 200);
    }
}

db_test! {
    async fn mail_sealed_under_an_old_key_is_sent_after_a_rotation(app) {
        // Queued under the key this server started with, then the key is rotated with the CLI
        // (a new current key, the old one kept for reading, everything re-sealed): a server
        // started afterwards sends it.
        app.signup_token("ada@example.com").await;
        let before: String = sqlx_scalar(&app, "SELECT body_text FROM outbox").await;
        assert!(before.starts_with("sk1."), "{before}");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_saaskit"))
            .args(["secret-key", "rotate"])
            .env("SAASKIT_DATABASE_URL", &app.test_db.url)
            .env("SAASKIT_SECRET_KEY_FILE", &app.test_db.key_file)
            .output()
            .expect("run saaskit secret-key rotate");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("re-sealed 1 outbox message"));
        let after: String = sqlx_scalar(&app, "SELECT body_text FROM outbox").await;
        assert_ne!(before.split('.').nth(1), after.split('.').nth(1), "another key sealed it");

        let restarted = TestApp::spawn_on(app.test_db.clone(), app.clock.clone()).await;
        assert_ne!(restarted.app.sealer.current_id(), app.app.sealer.current_id());
        let key = restarted.verification_key("ada@example.com").await;
        assert_eq!(key.len(), 43);

        // Nothing is left under the old key, so pruning drops it.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_saaskit"))
            .args(["secret-key", "reseal", "--prune"])
            .env("SAASKIT_DATABASE_URL", &app.test_db.url)
            .env("SAASKIT_SECRET_KEY_FILE", &app.test_db.key_file)
            .output()
            .expect("run saaskit secret-key reseal --prune");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 older key(s) dropped"));
    }
}

async fn sqlx_scalar(app: &TestApp, sql: &'static str) -> String {
    match &app.db {
        Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
    }
    .expect("read one value")
}
