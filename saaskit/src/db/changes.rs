//! Hearing about commits made by other processes, so that this process's caches (the auth
//! context above all) drop what they read at once instead of when their TTL runs out.
//!
//! - PostgreSQL: every [`super::Tx::commit`] sends `NOTIFY saaskit_writes` inside its
//!   transaction (so it is heard exactly when the commit lands), naming this process; every
//!   replica listens, and a notice from another process counts as a write here
//!   ([`super::note_write`]). When the listening connection is lost, notices may have been
//!   missed: that counts as a write too, and the cache's TTL stays the last resort.
//! - SQLite: the other processes on the file are the CLI and other servers; a dedicated
//!   connection watches `PRAGMA data_version` (which moves when another connection commits)
//!   every [`SQLITE_POLL`].

use std::sync::OnceLock;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use tokio::sync::watch;

use super::Db;

/// The channel commits are announced on.
pub const CHANNEL: &str = "saaskit_writes";
/// How often a SQLite server looks for commits by other processes.
pub const SQLITE_POLL: Duration = Duration::from_millis(20);

/// This process's name on the channel: its own notices are not news.
pub fn process_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Listens (PostgreSQL) or watches (SQLite) until `stop` turns true.
pub async fn run(db: Db, mut stop: watch::Receiver<bool>) {
    let watching = async {
        match &db {
            Db::Postgres(pool) => listen(pool).await,
            Db::Sqlite(pool) => watch_file(pool).await,
        }
    };
    tokio::select! {
        _ = watching => {}
        _ = stop.changed() => {}
    }
}

async fn listen(pool: &sqlx::PgPool) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for other replicas' commits; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(err) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %err, "cannot listen for other replicas' commits; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Whatever happened before listening was not heard.
        super::note_write();
        loop {
            match listener.try_recv().await {
                Ok(Some(notice)) => {
                    if notice.payload() != process_token() {
                        super::note_write();
                    }
                }
                // The connection was lost and is being re-established: notices may be lost.
                Ok(None) => super::note_write(),
                Err(err) => {
                    tracing::warn!(error = %err, "listening for other replicas' commits failed; reconnecting");
                    super::note_write();
                    break;
                }
            }
        }
    }
}

async fn watch_file(pool: &sqlx::SqlitePool) {
    let mut conn = match pool.connect_options().connect().await {
        Ok(c) => c,
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch the database for other processes' commits");
            return;
        }
    };
    let mut last: Option<i64> = None;
    loop {
        match sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(&mut conn)
            .await
        {
            Ok(version) => {
                if last.is_some_and(|l| l != version) {
                    super::note_write();
                }
                last = Some(version);
            }
            Err(err) => {
                tracing::warn!(error = %err, "watching the database for other processes' commits failed");
                last = None;
                super::note_write();
            }
        }
        tokio::time::sleep(SQLITE_POLL).await;
    }
}
