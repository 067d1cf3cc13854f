//! saaskit's benchmark harness. Speed and memory targets live here, never in timed tests.
//!
//! `cargo run --release -p saaskit-bench -- sweep --n 1000000` seeds N due subscriptions in a
//! fresh database (SQLite by default, or PostgreSQL with `--postgres URL`, in which a fresh
//! database is created and dropped) and times one renewal sweep over them.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use chrono::Duration;
mod http;
mod path;
mod webhooks;

use clap::{Parser, Subcommand};
use saaskit::app::App;
use saaskit::billing::events::Actor;
use saaskit::clock::ManualClock;
use saaskit::config::Config;
use saaskit::db::{Db, Timestamp};
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "saaskit-bench", about = "saaskit's benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load on the release server over HTTP: /healthz, /me, login and the metered SDK write.
    Http {
        /// Run on PostgreSQL: a URL of a database from which a fresh one is created and dropped.
        #[arg(long)]
        postgres: Option<String>,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Seconds per target.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Businesses seeded (each with an owner, an API key and an application).
        #[arg(long, default_value_t = 64)]
        businesses: usize,
        /// Comma-separated: healthz, me, login, record, record-steady (record once the table holds 1M rows, with a histogram), flood (login and me at once),
        /// reset-timing, dashboard, dashboard-weight, backup-stall, request-path (/healthz and
        /// /me against a bare axum server in the same run), webhooks (deliveries per second),
        /// webhook-overhead (the metered write with and without an endpoint per business).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "healthz,me,record,login,flood"
        )]
        targets: Vec<String>,
        /// `webhooks`: the numbers of endpoints (each on its own business) to measure, one
        /// round each.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        webhook_endpoints: Vec<usize>,
        /// `webhooks`: events queued while the server is down, then drained when it is back.
        #[arg(long, default_value_t = 20_000)]
        webhook_backlog: usize,
    },
    /// The bare axum reference server of the `request-path` target (started by the harness).
    Bare {
        #[arg(long)]
        bind: std::net::SocketAddr,
    },
    /// One renewal sweep over N due subscriptions.
    Sweep {
        #[arg(long, default_value_t = 100_000)]
        n: u64,
        /// Run on PostgreSQL: a URL of a database from which a fresh one is created and dropped.
        #[arg(long)]
        postgres: Option<String>,
        /// Share of subscriptions on a paid plan (charged from credits), 0.0 to 1.0.
        #[arg(long, default_value_t = 0.1)]
        paid_share: f64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Http {
            postgres,
            connections,
            duration,
            businesses,
            targets,
            webhook_endpoints,
            webhook_backlog,
        } => {
            http::run(http::Options {
                postgres,
                connections,
                duration: std::time::Duration::from_secs(duration),
                businesses,
                targets,
                webhook_endpoints,
                webhook_backlog,
            })
            .await
        }
        Command::Bare { bind } => path::serve_bare(bind).await,
        Command::Sweep {
            n,
            postgres,
            paid_share,
        } => sweep(n, postgres, paid_share).await,
    }
}

/// A fresh database that is removed afterwards.
struct Scratch {
    url: String,
    sqlite_path: Option<std::path::PathBuf>,
    pg: Option<(PgConnectOptions, String)>,
}

impl Scratch {
    async fn new(postgres: Option<&str>) -> anyhow::Result<Scratch> {
        let name = format!("saaskit_bench_{}", Uuid::now_v7().simple());
        match postgres {
            None => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                Ok(Scratch {
                    url: format!("sqlite://{}", path.display()),
                    sqlite_path: Some(path),
                    pg: None,
                })
            }
            Some(url) => {
                let admin = PgConnectOptions::from_str(url)
                    .context("--postgres is not a PostgreSQL URL")?;
                let mut conn = admin.connect().await.context("connecting to PostgreSQL")?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await?;
                let url = admin.clone().database(&name).to_url_lossy().to_string();
                Ok(Scratch {
                    url,
                    sqlite_path: None,
                    pg: Some((admin, name)),
                })
            }
        }
    }

    async fn drop_now(self) {
        if let Some(path) = &self.sqlite_path {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        if let Some((admin, name)) = &self.pg
            && let Ok(mut conn) = admin.connect().await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn sweep(n: u64, postgres: Option<String>, paid_share: f64) -> anyhow::Result<()> {
    let scratch = Scratch::new(postgres.as_deref()).await?;
    let result = run_sweep(&scratch, n, paid_share).await;
    scratch.drop_now().await;
    result
}

async fn run_sweep(scratch: &Scratch, n: u64, paid_share: f64) -> anyhow::Result<()> {
    let db = Db::connect(&scratch.url, 8).await?;
    let products = Arc::new(saaskit::product::Products::new());
    products.migrate(&db).await?;
    let start = Timestamp::from_micros(1_767_225_600_000_000).context("start time")?;
    let clock = ManualClock::new(start.as_datetime());
    let mut config = Config::defaults();
    config.database_url = scratch.url.clone();
    let app = App::with_db(config, db.clone(), Arc::new(clock.clone()), products)?;

    let free =
        saaskit::billing::admin::create_plan(&app, plan("bench-free", 0), Actor::Admin(None))
            .await?;
    let paid =
        saaskit::billing::admin::create_plan(&app, plan("bench-paid", 500), Actor::Admin(None))
            .await?;
    let seeding = Instant::now();
    seed(&db, n, paid_share, free.id, paid.id, start).await?;
    let seeded_in = seeding.elapsed();
    // In production the subscriptions due today were written a cycle ago and autovacuum has
    // long since visited them; measure that steady state, not the first touch of rows still
    // carrying their inserting transaction's hint bits.
    if let Db::Postgres(pool) = &db {
        sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await?;
    }

    // Every subscription's 30-day period has just ended.
    let now = start.plus(Duration::days(30));
    let sweeping = Instant::now();
    let report = saaskit::billing::sweep::sweep(&app, now).await?;
    let took = sweeping.elapsed();
    let backend = if scratch.pg.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "{}",
        serde_json::json!({
            "benchmark": "sweep",
            "backend": backend,
            "subscriptions": n,
            "paid_share": paid_share,
            "seed_seconds": seeded_in.as_secs_f64(),
            "sweep_seconds": took.as_secs_f64(),
            "per_second": n as f64 / took.as_secs_f64(),
            "renewals": report.renewals,
            "charged": report.charged,
            "errors": report.errors,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    anyhow::ensure!(
        report.renewals == n && report.errors == 0,
        "the sweep did not renew everything: {report:?}"
    );
    db.close().await;
    Ok(())
}

fn plan(code: &str, price: i64) -> saaskit::billing::admin::NewPlan {
    saaskit::billing::admin::NewPlan {
        code: code.into(),
        name: code.into(),
        description: String::new(),
        price_minor: price,
        currency: "USD".into(),
        cycle_days: 30,
        renews: true,
        fallback_code: None,
        limits: Default::default(),
        is_public: true,
    }
}

/// Inserts N businesses, each with a current subscription whose period ends 30 days after
/// `start`; paid ones get a credit grant covering one renewal.
async fn seed(
    db: &Db,
    n: u64,
    paid_share: f64,
    free: Uuid,
    paid: Uuid,
    start: Timestamp,
) -> anyhow::Result<()> {
    const CHUNK: u64 = 400;
    let end = start.plus(Duration::days(30));
    let paid_every = if paid_share <= 0.0 {
        u64::MAX
    } else {
        (1.0 / paid_share).round().max(1.0) as u64
    };
    let mut done = 0;
    while done < n {
        let count = CHUNK.min(n - done);
        let rows: Vec<(Uuid, Uuid, bool)> = (0..count)
            .map(|i| (Uuid::now_v7(), Uuid::now_v7(), (done + i) % paid_every == 0))
            .collect();
        let mut tx = db.begin().await?;
        insert_chunk(&mut tx, &rows, free, paid, start, end).await?;
        tx.commit().await?;
        done += count;
    }
    Ok(())
}

async fn insert_chunk(
    tx: &mut saaskit::db::Tx,
    rows: &[(Uuid, Uuid, bool)],
    free: Uuid,
    paid: Uuid,
    start: Timestamp,
    end: Timestamp,
) -> anyhow::Result<()> {
    // Built from placeholders only: every value is bound.
    let backend = match tx.conn() {
        saaskit::db::Conn::Sqlite(_) => saaskit::db::Backend::Sqlite,
        saaskit::db::Conn::Postgres(_) => saaskit::db::Backend::Postgres,
    };
    let values = |cols: usize, n: usize| saaskit::db::values_list(backend, n, cols, &[]);
    let businesses = format!(
        "INSERT INTO businesses (id, name, is_active, created_at, updated_at) VALUES {}",
        values(5, rows.len())
    );
    let subscriptions = format!(
        "INSERT INTO subscriptions (id, business_id, plan_id, status, current_period_start, current_period_end, is_current, created_at, updated_at) VALUES {}",
        values(9, rows.len())
    );
    let paid_rows: Vec<_> = rows.iter().filter(|r| r.2).collect();
    let grants = format!(
        "INSERT INTO ledger_entries (id, business_id, kind, amount, currency, actor_kind, created_at) VALUES {}",
        values(7, paid_rows.len())
    );
    macro_rules! run {
        ($c:ident) => {{
            let mut q = sqlx::query(sqlx::AssertSqlSafe(businesses.clone()));
            for (b, _, _) in rows {
                q = q.bind(*b).bind("bench").bind(true).bind(start).bind(start);
            }
            q.execute(&mut *$c).await?;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(subscriptions.clone()));
            for (b, s, is_paid) in rows {
                q = q
                    .bind(*s)
                    .bind(*b)
                    .bind(if *is_paid { paid } else { free })
                    .bind("active")
                    .bind(start)
                    .bind(end)
                    .bind(true)
                    .bind(start)
                    .bind(start);
            }
            q.execute(&mut *$c).await?;
            if !paid_rows.is_empty() {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(grants.clone()));
                for (b, _, _) in &paid_rows {
                    q = q
                        .bind(Uuid::now_v7())
                        .bind(*b)
                        .bind("grant")
                        .bind(500i64)
                        .bind("USD")
                        .bind("admin")
                        .bind(start);
                }
                q.execute(&mut *$c).await?;
            }
        }};
    }
    match tx.conn() {
        saaskit::db::Conn::Sqlite(c) => run!(c),
        saaskit::db::Conn::Postgres(c) => run!(c),
    }
    Ok(())
}
