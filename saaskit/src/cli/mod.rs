//! The `saaskit` command: `serve` (the default), `migrate` and the operator commands, for
//! saaskit and the products registered on it. A product's binary is one line:
//! `fn main() -> ExitCode { saaskit::cli::main(Products::new().with(my_product())) }`.

use std::process::ExitCode;

use anyhow::Context as _;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::{self, App};
use crate::config::Config;
use crate::db::{Db, redact_url};
use crate::product::Products;

#[derive(Debug, Parser)]
#[command(name = "saaskit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (the default). Applies pending migrations first.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Ask the server at SAASKIT_BIND for `/readyz`; exit 0 when it is ready. For container
    /// health checks (the image has no curl).
    CheckReady,
    /// Run one renewal sweep and exit: renew, charge, expire or fall back every subscription
    /// whose period has ended. For cron jobs. This changes the database (with --at too): add
    /// --dry-run to only print what would happen to each subscription.
    Renew {
        /// Sweep as of this time (RFC 3339, e.g. 2026-01-31T00:00:00Z) instead of now. The
        /// changes are real: subscriptions renewed, charged or stopped as of that time stay so.
        #[arg(long, value_parser = parse_time)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Change nothing: print what the sweep would do to each due subscription, then the
        /// report it would give.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a consistent snapshot of the live SQLite database to FILE (and its checksum to
    /// FILE.sha256) while the server keeps serving. On PostgreSQL, says what to use instead.
    Backup { file: std::path::PathBuf },
    /// Replace the SQLite database with the backup FILE, once it has proved itself (checksum,
    /// integrity, schema, audit chain, references, ledger). Stop the server first; the old
    /// database is kept aside.
    Restore { file: std::path::PathBuf },
    /// Manage plans.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Inspect businesses, set their plan, grant credits.
    #[command(subcommand)]
    Business(BusinessCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The key that seals secrets kept in the database (mail waiting in the outbox).
    #[command(subcommand)]
    SecretKey(SecretKeyCommand),
    /// Write code for your product: `generate resource projects name:text priority:int? --gauge`.
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Print the OpenAPI 3.1 document the server serves at /api/v1/openapi.json (for client
    /// generators and linters; needs no database).
    Openapi,
}

#[derive(Debug, Subcommand)]
enum GenerateCommand {
    /// A business-scoped resource: both migrations, its module (saaskit::resource), its
    /// registration in the product's src/lib.rs and a test file. Run from the workspace root
    /// (or the product crate); nothing is overwritten.
    Resource {
        /// Plural, snake case: the table, the path (/api/v1/<name>) and the module, e.g. projects.
        name: String,
        /// Fields, `name:type` with type text, int or bool; `?` after the type makes it optional
        /// (nullable), e.g. `priority:int?`.
        #[arg(required = true, value_parser = generate::parse_field)]
        fields: Vec<generate::FieldSpec>,
        /// Limit how many exist with a gauge named after the resource.
        #[arg(long)]
        gauge: bool,
        /// Count creations per billing cycle with this meter.
        #[arg(long, conflicts_with = "gauge")]
        meter: Option<String>,
        /// The product crate's folder (default: the current one, or the one product crate
        /// among its subfolders).
        #[arg(long)]
        into: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PlanCommand {
    /// List every plan, hidden and archived ones included.
    List,
    /// Create a plan.
    Create {
        /// Stable slug, e.g. `pro` (a-z, 0-9, -, _).
        #[arg(long)]
        code: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Price per cycle in minor units (cents).
        #[arg(long)]
        price: i64,
        #[arg(long, default_value = "usd")]
        currency: String,
        /// Cycle length in days.
        #[arg(long)]
        days: i64,
        /// A limit, `meter=N` (repeat for several); meters not given are unlimited.
        #[arg(long = "limit", value_parser = parse_limit)]
        limits: Vec<(String, i64)>,
        /// Leave the plan out of the public catalog.
        #[arg(long)]
        hidden: bool,
        /// The plan does not renew when a cycle ends (a trial).
        #[arg(long)]
        no_renew: bool,
        /// Plan code a subscription moves to when this one stops.
        #[arg(long)]
        fallback: Option<String>,
    },
    /// Change a plan; what is not given stays. New limits apply from the next check.
    Update {
        code: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        price: Option<i64>,
        #[arg(long)]
        currency: Option<String>,
        #[arg(long)]
        days: Option<i64>,
        /// Set a limit, `meter=N` (repeatable).
        #[arg(long = "limit", value_parser = parse_limit)]
        limits: Vec<(String, i64)>,
        /// Remove a meter's limit, making it unlimited (repeatable).
        #[arg(long = "unlimit")]
        unlimit: Vec<String>,
        #[arg(long, conflicts_with = "public")]
        hidden: bool,
        #[arg(long)]
        public: bool,
        #[arg(long, conflicts_with = "renew")]
        no_renew: bool,
        #[arg(long)]
        renew: bool,
        #[arg(long, conflicts_with = "no_fallback")]
        fallback: Option<String>,
        #[arg(long)]
        no_fallback: bool,
    },
    /// Archive a plan: it leaves the catalog; subscriptions on it go on. Plans are never deleted.
    Archive { code: String },
    /// Apply a plan catalogue file (TOML, see plans.example.toml): create the plans it names
    /// that do not exist and bring the others to exactly what it says, in one transaction,
    /// printing what changed. Plans it does not name are left as they are. Safe to repeat.
    Import {
        file: std::path::PathBuf,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BusinessCommand {
    /// List businesses with their plan, status and credits.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one business: plan, status, current period, credit balance, the card on file and
    /// the last payment.
    Show {
        id: uuid::Uuid,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move a business to a plan now, without charge (e.g. a beta customer to `unlimited`).
    SetPlan { id: uuid::Uuid, plan: String },
    /// Add credits (minor units; negative to take some back).
    GrantCredits {
        id: uuid::Uuid,
        #[arg(allow_negative_numbers = true)]
        amount: i64,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the audit log's hash chain; print the entry count and exit 0 when intact, or
    /// name the first broken entry and exit 1.
    Verify,
}

#[derive(Debug, Subcommand)]
enum SecretKeyCommand {
    /// Print a new random key, for SAASKIT_SECRET_KEY.
    Generate,
    /// Make a new key current in the key file (older keys stay for reading) and re-seal every
    /// sealed value under it. With SAASKIT_SECRET_KEY set, explains how to rotate that instead.
    Rotate,
    /// Re-seal every sealed value still under an older key (or in clear, from an older
    /// version) under the current one.
    Reseal {
        /// Then drop from the key file the older keys nothing is sealed with any more (once
        /// every server has restarted with the new key).
        #[arg(long)]
        prune: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Give a user staff rights (the admin API).
    MakeStaff { email: String },
    /// Take staff rights away.
    RemoveStaff { email: String },
    /// Turn off a person's two-factor sign-in (their authenticator and recovery codes are lost):
    /// they sign in with their password alone, and are mailed that it happened.
    ResetMfa { email: String },
}

fn parse_limit(s: &str) -> Result<(String, i64), String> {
    let (meter, n) = s
        .split_once('=')
        .ok_or_else(|| format!("a limit is meter=N (got {s:?})"))?;
    let n: i64 = n
        .trim()
        .parse()
        .map_err(|_| format!("the limit of {meter:?} is not a whole number"))?;
    if meter.trim().is_empty() || n < 0 {
        return Err(format!("a limit is meter=N with N >= 0 (got {s:?})"));
    }
    Ok((meter.trim().to_owned(), n))
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2026-01-31T00:00:00Z"))
}

/// Parses the command line and runs the command for saaskit and `products`.
pub fn main(products: Products) -> ExitCode {
    let products = Arc::new(products);
    let cli = Cli::parse();
    // Held to the end of `main`: dropping it writes out the log lines still queued.
    let _log = crate::telemetry::init(cli.config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, products)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "saaskit stopped");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, products: Arc<Products>) -> anyhow::Result<()> {
    let config = cli.config;
    config.validate()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Generate(GenerateCommand::Resource {
            name,
            fields,
            gauge,
            meter,
            into,
        }) => {
            let metering = match (gauge, meter) {
                (true, _) => generate::Metering::Gauge,
                (false, Some(meter)) => generate::Metering::PerCycle(meter),
                (false, None) => generate::Metering::None,
            };
            let scaffold = generate::Scaffold {
                name,
                fields,
                metering,
            };
            for path in generate::generate(&scaffold, into.as_deref())? {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::CheckReady => ops::check_ready(config.bind).await,
        Command::Openapi => {
            use std::io::Write as _;
            let document = crate::http::openapi(&products).to_pretty_json()?;
            match writeln!(std::io::stdout(), "{document}") {
                // A reader that stops early (`| head`) is not a failure.
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                done => Ok(done?),
            }
        }
        Command::Migrate => {
            let db = Db::connect(&config.database_url, 1).await?;
            products.migrate(&db).await?;
            db.close().await;
            tracing::info!(database = %redact_url(&config.database_url), "migrations applied");
            Ok(())
        }
        Command::Backup { file } => {
            // A mistyped URL must not produce the backup of an empty database.
            existing_database(&config)?;
            let db = Db::connect(&config.database_url, 1).await?;
            let made = crate::backup::backup(&db, &file).await;
            db.close().await;
            let made = made?;
            println!(
                "backed up to {} ({} bytes, sha256 {}) in {} ms",
                made.path.display(),
                made.bytes,
                made.sha256,
                made.took.as_millis()
            );
            Ok(())
        }
        Command::Restore { file } => {
            let restored = crate::backup::restore(&config.database_url, &products, &file).await?;
            println!(
                "restored {} into {}: integrity ok, audit log intact ({} entries), references \
                 and {} ledgers checked{}",
                file.display(),
                redact_url(&config.database_url),
                restored.audit_entries,
                restored.businesses_with_credits,
                if restored.migrated {
                    ", schema brought up to date"
                } else {
                    ""
                }
            );
            if let Some(previous) = restored.previous {
                println!("the database it replaced is kept at {}", previous.display());
            }
            Ok(())
        }
        Command::Renew { at, dry_run } => {
            existing_database(&config)?;
            let app = App::connect(config, products).await?;
            let now = match at {
                Some(at) => crate::db::Timestamp::from_datetime(at),
                None => crate::clock::Clock::now(&crate::clock::SystemClock),
            };
            if dry_run {
                let preview = crate::billing::sweep::preview(&app, now).await;
                app.db.close().await;
                let (previews, report) = preview?;
                for p in &previews {
                    println!(
                        "subscription {} (business {}, {} {}, period ended {}): {}",
                        p.subscription_id,
                        p.business_id,
                        p.plan,
                        p.status,
                        p.period_end.to_rfc3339(),
                        p.steps.join("; then ")
                    );
                }
                let mut summary = serde_json::to_value(report)?;
                summary["dry_run"] = serde_json::Value::Bool(true);
                println!("{summary}");
                eprintln!("dry run: nothing was changed");
                return Ok(());
            }
            if at.is_some() {
                eprintln!(
                    "renew --at changes the database: what the sweep does as of {} is stored \
                     (use --dry-run to only see it)",
                    now.to_rfc3339()
                );
            }
            let report = crate::billing::sweep::sweep(&app, now).await?;
            app.db.close().await;
            println!("{}", serde_json::to_string(&report)?);
            if report.errors > 0 {
                anyhow::bail!(
                    "{} subscriptions could not be advanced; see the log",
                    report.errors
                );
            }
            Ok(())
        }
        Command::Plan(cmd) => {
            existing_database(&config)?;
            let app = App::connect(config, products).await?;
            let result = ops::plan(&app, cmd).await;
            app.db.close().await;
            result
        }
        Command::Business(cmd) => {
            existing_database(&config)?;
            let app = App::connect(config, products).await?;
            let result = ops::business(&app, cmd).await;
            app.db.close().await;
            result
        }
        Command::User(cmd) => {
            existing_database(&config)?;
            let app = App::connect(config, products).await?;
            let result = ops::user(&app, cmd).await;
            app.db.close().await;
            result
        }
        Command::SecretKey(cmd) => {
            if !matches!(cmd, SecretKeyCommand::Generate) {
                existing_database(&config)?;
            }
            ops::secret_key(config, cmd, products).await
        }
        Command::Audit(AuditCommand::Verify) => {
            existing_database(&config)?;
            let db = Db::connect(&config.database_url, 1).await?;
            let verdict = crate::audit::verify(&db).await;
            db.close().await;
            match verdict? {
                crate::audit::Verdict::Intact { entries } => {
                    println!("audit log intact: {entries} entries, every hash chained");
                    Ok(())
                }
                crate::audit::Verdict::Broken { seq, reason } => {
                    println!("audit log broken at entry {seq}: {reason}");
                    anyhow::bail!("the audit log's chain is broken at entry {seq}")
                }
            }
        }
        Command::Serve => {
            match crate::server::raise_open_file_limit() {
                Ok(limit) => tracing::debug!(limit, "open file limit"),
                Err(err) => tracing::warn!(error = %err, "cannot raise the open file limit"),
            }
            let bind = config.bind;
            let database = redact_url(&config.database_url);
            let app = App::connect(config, products).await?;
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen on {bind}"))?;
            tracing::info!(address = %bind, database = %database, "saaskit is serving");
            let router = crate::http::router(app.clone());
            app::run(app, router, listener, app::shutdown_signal()).await?;
            tracing::info!("stopped cleanly");
            Ok(())
        }
    }
}

/// Refuses to go on when the configured SQLite file does not exist: connecting would create an
/// empty database (and a key file beside it), and an operator command run from the wrong folder
/// would then report on, or change, nothing at all. Only `serve` and `migrate` create one.
fn existing_database(config: &Config) -> anyhow::Result<()> {
    let Some(path) = crate::db::sqlite_file(&config.database_url) else {
        return Ok(());
    };
    if path.exists() {
        return Ok(());
    }
    let shown = if path.is_relative() {
        std::env::current_dir()
            .map(|dir| dir.join(&path))
            .unwrap_or_else(|_| path.clone())
    } else {
        path
    };
    anyhow::bail!(
        "there is no database at {} (SAASKIT_DATABASE_URL is {}); this command does not create \
         one: run it where the server runs, set SAASKIT_DATABASE_URL (or --database-url) to the \
         server's database, or create one with `saaskit migrate`",
        shown.display(),
        redact_url(&config.database_url)
    )
}

pub mod generate;
mod ops;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn library_defaults_match_the_command_line_defaults() {
        // Compare against clap's declared defaults, not whatever this environment sets.
        let mut cmd = Cli::command();
        let ids: Vec<_> = cmd.get_arguments().map(|a| a.get_id().clone()).collect();
        for id in ids {
            cmd = cmd.mut_arg(id, |a| a.env(None::<&str>));
        }
        let matches = cmd
            .try_get_matches_from(["saaskit"])
            .expect("parse no arguments");
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).expect("build the CLI");
        assert_eq!(cli.config, Config::defaults());
        assert!(cli.command.is_none(), "no subcommand means serve");
    }
}
