//! Two-database plumbing: one enum over a SQLite and a PostgreSQL pool, transactions, migrations,
//! and the few types whose storage differs between the two.
//!
//! SQL is written once (with `$N` parameters, which both drivers accept) and compiled once per
//! database by [`on_conn!`]; the store modules are the only users of it.

pub mod batch;
pub mod changes;
pub mod direct;
pub mod writer;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Serialize, Serializer};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Decode, Encode, PgConnection, Postgres, Sqlite, SqliteConnection, Transaction, Type};

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction on either database. Dropped without [`Tx::commit`], it rolls back.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A pooled connection outside any transaction, for a read that is one statement: a statement
/// sees one consistent state of the database on both engines, and skipping `BEGIN`/`COMMIT`
/// spares two round trips. Anything that reads twice and relies on the two agreeing takes
/// [`Db::read`] instead.
pub enum Single {
    Sqlite(sqlx::pool::PoolConnection<Sqlite>),
    Postgres(sqlx::pool::PoolConnection<Postgres>),
}

impl Single {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Single::Sqlite(c) => Conn::Sqlite(c),
            Single::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// A borrowed connection, the argument every store function takes.
pub enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// Runs the same body against whichever connection `$conn` holds; `$c` is bound to
/// `&mut SqliteConnection` or `&mut PgConnection`, so the body is compiled once per database.
#[macro_export]
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::Conn::Sqlite($c) => $body,
            $crate::db::Conn::Postgres($c) => $body,
        }
    };
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// One set of migrations, a folder per database with the same version numbers, tracked in its
/// own table: saaskit's in `_sqlx_migrations`, a product's beside it (see
/// [`crate::product::Product::migrations`]).
#[derive(Debug)]
pub struct Migrations {
    sqlite: sqlx::migrate::Migrator,
    postgres: sqlx::migrate::Migrator,
}

impl Migrations {
    /// `sqlite` and `postgres` as `sqlx::migrate!` gives them, tracked in `table`.
    pub fn new(
        table: String,
        mut sqlite: sqlx::migrate::Migrator,
        mut postgres: sqlx::migrate::Migrator,
    ) -> Migrations {
        // "Dangerous" only in that a table already used by other migrations would mix them up:
        // each product has a table of its own.
        sqlite.dangerous_set_table_name(table.clone());
        postgres.dangerous_set_table_name(table);
        Migrations { sqlite, postgres }
    }
}

/// The bookkeeping table of saaskit's own SQLite migrations and the latest version this binary
/// knows.
pub(crate) fn sqlite_schema() -> (&'static str, i64) {
    (&SQLITE_MIGRATOR.table_name, latest(&SQLITE_MIGRATOR))
}

impl Migrations {
    /// This set's SQLite bookkeeping table and the latest version this binary knows.
    pub(crate) fn sqlite_schema(&self) -> (&str, i64) {
        (&self.sqlite.table_name, latest(&self.sqlite))
    }
}

/// The latest version a migrator knows.
fn latest(m: &sqlx::migrate::Migrator) -> i64 {
    m.iter().map(|m| m.version).max().unwrap_or(0)
}

impl Db {
    /// Connects to `url`: `sqlite://path` (the file is created if missing) or `postgres://…`.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .context("SAASKIT_DATABASE_URL is not a valid PostgreSQL URL")?;
            Self::connect_postgres(options, max_connections).await
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("SAASKIT_DATABASE_URL is not a valid SQLite URL")?;
            Self::connect_sqlite(options, max_connections).await
        } else {
            anyhow::bail!(
                "SAASKIT_DATABASE_URL must start with sqlite:// or postgres:// (got {:?})",
                redact_url(url)
            )
        }
    }

    pub async fn connect_sqlite(
        options: SqliteConnectOptions,
        max_connections: u32,
    ) -> anyhow::Result<Db> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Deleted and overwritten content is zeroed on its page instead of lingering in
            // free space: the outbox's bodies (sealed anyway) and cleared rows leave nothing.
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // A connection to a file cannot hang up the way a server's can, and each test is a
            // round trip to the connection's thread (a third of the dashboard's cost when
            // measured); the pool still tests every connection as it comes back.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .context("opening the SQLite database")?;
        Ok(Db::Sqlite(pool))
    }

    pub async fn connect_postgres(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> anyhow::Result<Db> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .context("connecting to PostgreSQL")?;
        Ok(Db::Postgres(pool))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
            Db::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await,
        }
        .context("applying database migrations")
    }

    /// Applies the pending migrations of `migrations` (a product's).
    pub async fn migrate_with(&self, migrations: &Migrations) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(pool) => migrations.sqlite.run(pool).await,
            Db::Postgres(pool) => migrations.postgres.run(pool).await,
        }
        .context("applying database migrations")
    }

    /// Whether every one of saaskit's migrations this binary knows has been applied (one small
    /// query; also proves the database answers).
    pub async fn migrations_applied(&self) -> Result<bool, sqlx::Error> {
        let migrator = match self {
            Db::Sqlite(_) => &SQLITE_MIGRATOR,
            Db::Postgres(_) => &POSTGRES_MIGRATOR,
        };
        self.latest_applied(&migrator.table_name)
            .await
            .map(|v| v >= latest(migrator))
    }

    /// Whether every migration of `migrations` has been applied.
    pub async fn applied(&self, migrations: &Migrations) -> Result<bool, sqlx::Error> {
        let migrator = match self {
            Db::Sqlite(_) => &migrations.sqlite,
            Db::Postgres(_) => &migrations.postgres,
        };
        if latest(migrator) == 0 {
            return Ok(true);
        }
        self.latest_applied(&migrator.table_name)
            .await
            .map(|v| v >= latest(migrator))
    }

    /// The highest version recorded as applied in the bookkeeping table `table` (0 when the
    /// table holds none).
    async fn latest_applied(&self, table: &str) -> Result<i64, sqlx::Error> {
        // `table` is saaskit's constant or `_sqlx_migrations_<product>`, whose product name
        // was checked to be an identifier.
        debug_assert!(crate::domain::is_identifier(table.trim_start_matches('_')));
        let sql = format!("SELECT MAX(version) FROM {table} WHERE success");
        let applied: Option<i64> = match self {
            Db::Sqlite(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(applied.unwrap_or(0))
    }

    /// Starts a transaction that may write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails with
    /// SQLITE_BUSY instead of waiting when another writer got there first.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Starts a transaction for reading (a deferred one on SQLite, so readers never wait for the
    /// write lock). Writes that depend on what was read must re-check it in their own transaction.
    pub async fn read(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A connection for one statement's read, without a transaction (see [`Single`]).
    pub async fn single(&self) -> Result<Single, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Single::Sqlite(pool.acquire().await?),
            Db::Postgres(pool) => Single::Postgres(pool.acquire().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }

    /// Connections currently checked out of the pool, and the pool's size.
    pub fn pool_usage(&self) -> (u32, u32) {
        match self {
            Db::Sqlite(p) => (p.size() - p.num_idle() as u32, p.size()),
            Db::Postgres(p) => (p.size() - p.num_idle() as u32, p.size()),
        }
    }
}

/// `(…), (…)` with `rows × cols` placeholders for a multi-row `VALUES`, bound in row order. SQLite
/// gets anonymous `?`: with numbered ones, binding looks each name up in a list, quadratic in
/// the number of parameters (75% of a bulk statement's time when measured). PostgreSQL gets
/// `$N`, with `casts[col]` appended where given (`VALUES` rows outside an `INSERT` need types).
pub fn values_list(backend: Backend, rows: usize, cols: usize, casts: &[&str]) -> String {
    let mut out = String::with_capacity(rows * cols * 8);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => {
                    out.push('$');
                    out.push_str(&(r * cols + c + 1).to_string());
                    if let Some(cast) = casts.get(c).filter(|c| !c.is_empty()) {
                        out.push_str("::");
                        out.push_str(cast);
                    }
                }
            }
        }
        out.push(')');
    }
    out
}

impl Conn<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// Borrows the connection again, for a function that runs several statements.
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Sqlite(c) => Conn::Sqlite(c),
            Conn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
            Tx::Postgres(tx) => Conn::Postgres(tx),
        }
    }

    /// Commits, then tells this process's caches that anything may have changed (see
    /// [`write_generation`]). The safe default for every write.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        // Noted however the commit ends (success, error, or the request being dropped while it
        // runs): a COMMIT that reached the server may have taken effect even if we never hear.
        struct NoteOnDrop;
        impl Drop for NoteOnDrop {
            fn drop(&mut self) {
                note_write();
            }
        }
        let _noted = NoteOnDrop;
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(mut tx) => {
                // Heard by the other replicas when (and only if) this commit lands.
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(changes::CHANNEL)
                    .bind(changes::process_token())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
        }
    }

    /// Commits without invalidating caches: only for writes that change nothing a cache holds
    /// (new rows nobody has looked up yet, usage counters, the outbox, `last_used_at`).
    pub async fn commit_quietly(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

static WRITE_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Tells this process's caches that the database changed: [`Tx::commit`] does it; call it
/// after any write made some other way.
pub fn note_write() {
    WRITE_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Release);
}

/// A number that grows after every [`Tx::commit`] in this process. A cache that read the
/// database while this number was `g` may trust what it read only while it is still `g`
/// (read it *before* the query: a commit landing during the query then invalidates the result).
pub fn write_generation() -> u64 {
    WRITE_GENERATION.load(std::sync::atomic::Ordering::Acquire)
}

/// Hides the password of a database URL before it is shown anywhere.
/// The file a `sqlite:` URL names (without its `?options`), or `None` for PostgreSQL and
/// in-memory databases.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A point in time with microsecond precision (PostgreSQL's), stored as TIMESTAMPTZ on
/// PostgreSQL and as integer microseconds since the Unix epoch on SQLite, where a text format
/// would make comparisons in SQL depend on how many fractional digits each value happened to get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        let micros = at.timestamp_micros();
        Self::from_micros(micros).unwrap_or(Timestamp(at))
    }

    pub fn from_micros(micros: i64) -> Option<Self> {
        DateTime::from_timestamp_micros(micros).map(Timestamp)
    }

    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }

    pub fn micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    /// `self + by`, saturating at the far end of the representable range.
    pub fn plus(self, by: chrono::Duration) -> Self {
        Timestamp::from_datetime(
            self.0
                .checked_add_signed(by)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Timestamp::from_datetime(at)
    }
}

/// [`Timestamp::to_rfc3339`]'s text as items: formatted straight into the serializer (every
/// answer carries a few timestamps; a `String` each showed in profiles).
const RFC3339_ITEMS: &[chrono::format::Item<'static>] = {
    use chrono::format::{Fixed, Item, Numeric, Pad};
    &[
        Item::Numeric(Numeric::Year, Pad::Zero),
        Item::Literal("-"),
        Item::Numeric(Numeric::Month, Pad::Zero),
        Item::Literal("-"),
        Item::Numeric(Numeric::Day, Pad::Zero),
        Item::Literal("T"),
        Item::Numeric(Numeric::Hour, Pad::Zero),
        Item::Literal(":"),
        Item::Numeric(Numeric::Minute, Pad::Zero),
        Item::Literal(":"),
        Item::Numeric(Numeric::Second, Pad::Zero),
        Item::Fixed(Fixed::Nanosecond),
        Item::Literal("Z"),
    ]
};

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.format_with_items(RFC3339_ITEMS.iter()))
    }
}

/// In the API, an RFC 3339 date-time in UTC with up to microseconds (`2026-03-01T12:00:00Z`).
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Timestamp {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let micros = <i64 as Decode<Sqlite>>::decode(value)?;
        Timestamp::from_micros(micros)
            .ok_or_else(|| format!("timestamp out of range: {micros}").into())
    }
}

impl Type<Postgres> for Timestamp {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode(self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Timestamp {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Timestamp(Utc.from_utc_datetime(
            &<DateTime<Utc> as Decode<Postgres>>::decode(value)?.naive_utc(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_microseconds_only() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .map(|d| d.with_timezone(&Utc))
            .expect("valid literal");
        let ts = Timestamp::from_datetime(at);
        assert_eq!(ts.to_rfc3339(), "2026-01-02T03:04:05.123456Z");
        assert_eq!(Timestamp::from_micros(ts.micros()), Some(ts));
    }

    #[test]
    fn timestamps_serialize_as_their_rfc3339_text() {
        // Whole seconds, milliseconds, microseconds; the first year, a leap day, the last second.
        for micros in [
            0,
            1_000,
            1_500_000,
            1_234_567,
            1_767_236_645_000_000,
            1_767_236_645_120_000,
            1_767_236_645_123_456,
            1_709_164_800_000_001,
            -62_135_596_800_000_000,
            253_402_300_799_999_999,
        ] {
            let ts = Timestamp::from_micros(micros).expect("in range");
            let json = serde_json::to_string(&ts).expect("serializes");
            assert_eq!(json, format!("\"{}\"", ts.to_rfc3339()), "{micros}");
        }
    }

    #[test]
    fn database_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/saaskit"),
            "postgres://app:***@db:5432/saaskit"
        );
        assert_eq!(redact_url("sqlite://saaskit.db"), "sqlite://saaskit.db");
        assert_eq!(
            redact_url("postgres://app@db/saaskit"),
            "postgres://app@db/saaskit"
        );
    }
}
