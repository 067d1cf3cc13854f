//! Configuration: every setting is an environment variable and a command-line flag, with a
//! default that works on a laptop. Parsed and checked once, at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::ratelimit::{Rule, Switch, TrustedProxies};

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Config {
    /// Database to use: `sqlite://<file>` (created if missing by `serve` and `migrate` only) or
    /// `postgres://user:pass@host/db`.
    #[arg(
        long,
        env = "SAASKIT_DATABASE_URL",
        default_value = "sqlite://saaskit.db",
        global = true,
        hide_env_values = true
    )]
    pub database_url: String,

    /// Most connections the database pool opens.
    #[arg(
        long,
        env = "SAASKIT_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub database_max_connections: u32,

    /// Address and port the HTTP server listens on.
    #[arg(
        long,
        env = "SAASKIT_BIND",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub bind: SocketAddr,

    /// Public base URL of the service, used to build links in emails.
    #[arg(
        long,
        env = "SAASKIT_PUBLIC_URL",
        default_value = "http://localhost:8000",
        global = true
    )]
    pub public_url: String,

    /// Folder where outgoing mail is written, one `.eml` file per message, when SMTP is not set.
    #[arg(
        long,
        env = "SAASKIT_MAIL_DIR",
        default_value = "./mail",
        global = true
    )]
    pub mail_dir: PathBuf,

    /// Send mail over SMTP instead of to files: `smtp://user:pass@host:587` (STARTTLS),
    /// `smtps://…` (implicit TLS), `smtp://host:25?tls=none` (plain, for a local relay).
    #[arg(long, env = "SAASKIT_SMTP_URL", global = true, hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Sender of outgoing mail, e.g. `Acme <no-reply@acme.example>`.
    #[arg(
        long,
        env = "SAASKIT_MAIL_FROM",
        default_value = "saaskit <no-reply@saaskit.localhost>",
        global = true
    )]
    pub mail_from: String,

    /// The name authenticator apps show beside a person's two-factor codes (no `:`).
    #[arg(
        long,
        env = "SAASKIT_TOTP_ISSUER",
        default_value = "saaskit",
        global = true
    )]
    pub totp_issuer: String,

    /// Code of the plan every new business is subscribed to at signup.
    #[arg(
        long,
        env = "SAASKIT_DEFAULT_PLAN",
        default_value = "free-trial",
        global = true
    )]
    pub default_plan: String,

    /// Days a paid subscription stays usable (`past_due`) after a renewal it could not pay for,
    /// before it falls back to its plan's fallback or expires.
    #[arg(
        long,
        env = "SAASKIT_GRACE_PERIOD_DAYS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(0..=365),
        global = true
    )]
    pub grace_period_days: u32,

    /// Seconds between two renewal sweeps inside `serve`.
    #[arg(
        long,
        env = "SAASKIT_RENEW_EVERY",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub renew_every: u64,

    /// How long a login session lasts, in hours, however active it is.
    #[arg(
        long,
        env = "SAASKIT_SESSION_LIFETIME_HOURS",
        default_value_t = 24 * 30,
        value_parser = clap::value_parser!(u32).range(1..=24 * 366),
        global = true
    )]
    pub session_lifetime_hours: u32,

    /// How long an invitation link works, in days.
    #[arg(
        long,
        env = "SAASKIT_INVITATION_TTL_DAYS",
        default_value_t = 7,
        value_parser = clap::value_parser!(u32).range(1..=365),
        global = true
    )]
    pub invitation_ttl_days: u32,

    /// How long an email verification link works, in hours.
    #[arg(
        long,
        env = "SAASKIT_EMAIL_VERIFICATION_TTL_HOURS",
        default_value_t = 48,
        value_parser = clap::value_parser!(u32).range(1..=24 * 366),
        global = true
    )]
    pub email_verification_ttl_hours: u32,

    /// Refuse to log in (403 `email_not_verified`) people who have not verified their email,
    /// and give no session at signup until they do. Off: they may log in, and `me` says
    /// `email_verified: false`.
    #[arg(
        long,
        env = "SAASKIT_REQUIRE_VERIFIED_EMAIL",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub require_verified_email: bool,

    /// How long a login session survives without being used, in hours.
    #[arg(
        long,
        env = "SAASKIT_SESSION_IDLE_HOURS",
        default_value_t = 24 * 7,
        value_parser = clap::value_parser!(u32).range(1..=24 * 366),
        global = true
    )]
    pub session_idle_hours: u32,

    /// How long this replica may answer from its auth-context cache before re-reading a
    /// token's context, in milliseconds: the most a change made by another replica (or the
    /// CLI) takes to be seen here. Changes made on this replica are seen at once. 0 disables.
    #[arg(
        long,
        env = "SAASKIT_AUTH_CACHE_TTL_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(0..=60_000),
        global = true
    )]
    pub auth_cache_ttl_ms: u64,

    /// Seconds an API key's old secret keeps working after the key is rotated (0: it stops at
    /// once). A rotation request may ask for another overlap, up to 7 days.
    #[arg(
        long,
        env = "SAASKIT_KEY_ROTATION_OVERLAP",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=7 * 24 * 3600),
        global = true
    )]
    pub key_rotation_overlap_secs: u32,

    /// Password hashes computed at once; each takes 19 MiB and one core for ~20 ms.
    /// Defaults to the number of cores.
    #[arg(long, env = "SAASKIT_HASH_CONCURRENCY", global = true)]
    pub hash_concurrency: Option<usize>,

    /// Bearer token that opens `/metrics` on the main address; without it (and without
    /// `SAASKIT_METRICS_BIND`) metrics are not served at all.
    #[arg(
        long,
        env = "SAASKIT_METRICS_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,

    /// A separate address serving `/metrics` without authentication, for a scraper on a
    /// private network (e.g. `0.0.0.0:9100` inside a container).
    #[arg(long, env = "SAASKIT_METRICS_BIND", global = true)]
    pub metrics_bind: Option<SocketAddr>,

    /// Where `serve` writes its scheduled backups of the SQLite database (see
    /// SAASKIT_BACKUP_EVERY).
    #[arg(long, env = "SAASKIT_BACKUP_DIR", global = true)]
    pub backup_dir: Option<PathBuf>,

    /// How often `serve` backs the SQLite database up into SAASKIT_BACKUP_DIR, e.g. `1h` or
    /// `30m` (s, m, h or d). Unset: no scheduled backups. Each backup is taken once, by one
    /// process, however many serve the database.
    #[arg(long, env = "SAASKIT_BACKUP_EVERY", value_parser = parse_every, global = true)]
    pub backup_every: Option<u64>,

    /// How many scheduled backups to keep; older ones are removed after each new one.
    #[arg(
        long,
        env = "SAASKIT_BACKUP_KEEP",
        default_value_t = 24,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub backup_keep: u32,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(
        long,
        env = "SAASKIT_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Which answered requests get an INFO line: `all`, `off`, or `1/N` (one in N). An answer
    /// with a server error always logs an ERROR line; other lines are not affected.
    #[arg(
        long,
        env = "SAASKIT_REQUEST_LOG",
        default_value = "all",
        global = true
    )]
    pub request_log: crate::telemetry::RequestLog,

    /// Seconds to let requests in flight finish after SIGTERM or Ctrl-C.
    #[arg(
        long,
        env = "SAASKIT_SHUTDOWN_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub shutdown_timeout_secs: u64,

    /// Seconds a client has to send a request's line and headers, counted from when it connects
    /// and, on a kept-alive connection, from the first byte of its next request; then the
    /// connection is closed. Bounds what a client that sends nothing, or a header a byte at a
    /// time, can hold.
    #[arg(
        long,
        env = "SAASKIT_HEADER_READ_TIMEOUT",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    pub header_read_timeout_secs: u64,

    /// Seconds a kept-alive connection may wait for its next request before it is closed. Keep
    /// it longer than the idle timeout of a proxy or load balancer in front (often 60 s), so
    /// that the proxy, not saaskit, closes the connections it pools.
    #[arg(
        long,
        env = "SAASKIT_KEEP_ALIVE_TIMEOUT",
        default_value_t = 75,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    pub keep_alive_timeout_secs: u64,

    /// Most client connections open at once; more wait in the kernel's queue until one closes.
    /// Defaults to the open-file limit (raised to its hard limit at start) less a reserve for
    /// the database pool, the metrics listener and files.
    #[arg(
        long,
        env = "SAASKIT_MAX_CONNECTIONS",
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub max_connections: Option<u64>,

    /// `off` turns every rate limit off (load tests, benchmarks).
    #[arg(
        long,
        env = "SAASKIT_RATE_LIMIT",
        value_enum,
        default_value = "on",
        global = true
    )]
    pub rate_limit: Switch,

    /// Failed logins from one client address, whatever the account.
    #[arg(
        long,
        env = "SAASKIT_RATE_LIMIT_LOGIN_IP",
        default_value = "30/1m",
        global = true
    )]
    pub rate_limit_login_ip: Rule,

    /// Failed logins to one account from one client address.
    #[arg(
        long,
        env = "SAASKIT_RATE_LIMIT_LOGIN_ACCOUNT",
        default_value = "5/15m",
        global = true
    )]
    pub rate_limit_login_account: Rule,

    /// Failed logins to one account from addresses it has never logged in from: slows a
    /// distributed attack, while the owner's own addresses stay open to them.
    #[arg(
        long,
        env = "SAASKIT_RATE_LIMIT_LOGIN_ACCOUNT_ALL",
        default_value = "20/1h",
        global = true
    )]
    pub rate_limit_login_account_all: Rule,

    /// Signups from one client address.
    #[arg(
        long,
        env = "SAASKIT_RATE_LIMIT_SIGNUP_IP",
        default_value = "50/1h",
        global = true
    )]
    pub rate_limit_signup_ip: Rule,

    /// Password reset requests from one client address.
    #[arg(
        long,
        env = "SAASKIT_RATE_LIMIT_RESET_IP",
        default_value = "20/1h",
        global = true
    )]
    pub rate_limit_reset_ip: Rule,

    /// Password reset requests for one email address.
    #[arg(
        long,
        env = "SAASKIT_RATE_LIMIT_RESET_ACCOUNT",
        default_value = "5/1h",
        global = true
    )]
    pub rate_limit_reset_account: Rule,

    /// Verification mails a person may ask to be sent again.
    #[arg(
        long,
        env = "SAASKIT_RATE_LIMIT_VERIFY_ACCOUNT",
        default_value = "5/1h",
        global = true
    )]
    pub rate_limit_verify_account: Rule,

    /// Failed uses of mailed keys (reset confirmations, email verifications, invitation
    /// look-ups and acceptances, `/saas/signup/prefill` and `/saas/signup` with an
    /// `activation_key`) from one client address.
    #[arg(
        long,
        env = "SAASKIT_RATE_LIMIT_KEYS_IP",
        default_value = "30/10m",
        global = true
    )]
    pub rate_limit_keys_ip: Rule,

    /// Proxies whose `X-Forwarded-For` names the client (comma-separated addresses or
    /// networks, e.g. `10.0.0.0/8,::1`). Empty: the peer address is the client.
    #[arg(
        long,
        env = "SAASKIT_TRUSTED_PROXIES",
        default_value = "",
        global = true
    )]
    pub trusted_proxies: TrustedProxies,

    /// Web origins allowed to call the API from a browser (CORS), comma-separated and exact
    /// (`https://app.example.com`). Empty: no cross-origin access.
    #[arg(
        long,
        env = "SAASKIT_CORS_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_origins: Vec<String>,

    /// The key that seals secrets the database must keep readable (mail waiting in the
    /// outbox): 32 random bytes in base64 (`saaskit secret-key generate`). Unset: a key file is
    /// used (`SAASKIT_SECRET_KEY_FILE`). Every replica must have the same key.
    #[arg(
        long,
        env = "SAASKIT_SECRET_KEY",
        global = true,
        hide_env_values = true
    )]
    pub secret_key: Option<crate::seal::SecretKey>,

    /// Older keys still accepted for reading sealed values, comma-separated, while
    /// `saaskit secret-key reseal` moves everything onto `SAASKIT_SECRET_KEY`.
    #[arg(
        long,
        env = "SAASKIT_SECRET_KEY_OLD",
        value_delimiter = ',',
        global = true,
        hide_env_values = true
    )]
    pub secret_key_old: Vec<crate::seal::SecretKey>,

    /// The key file used when `SAASKIT_SECRET_KEY` is unset, created with a new key (mode
    /// 0600) on first run. Default: `<database file>.key` beside a SQLite database,
    /// `./saaskit.key` for PostgreSQL.
    #[arg(long, env = "SAASKIT_SECRET_KEY_FILE", global = true)]
    pub secret_key_file: Option<PathBuf>,

    /// When outgoing webhooks are retried after a failed attempt, e.g. `5s,5m,30m,2h`: one
    /// delay per retry (s, m, h or d); after the last, the delivery is kept as failed. The
    /// default is the Standard Webhooks schedule.
    #[arg(
        long,
        env = "SAASKIT_WEBHOOK_RETRY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,10h",
        value_parser = parse_schedule,
        global = true
    )]
    pub webhook_retry_schedule: RetrySchedule,

    /// Lets webhook endpoints be plain http:// and point at private, loopback or link-local
    /// addresses (tests, on-premises installations). Off: https only, public addresses only,
    /// checked at registration and again at every connection.
    #[arg(
        long,
        env = "SAASKIT_WEBHOOK_ALLOW_PRIVATE",
        default_value_t = false,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub webhook_allow_private: bool,

    /// Seconds a webhook worker holds the deliveries it claims: a replica that dies mid-send
    /// leaves them to the others this long. Each attempt may take at most half of it (and at
    /// most 10 s), so that it ends within its lease.
    #[arg(
        long,
        env = "SAASKIT_WEBHOOK_LEASE_SECS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(2..=3600),
        global = true
    )]
    pub webhook_lease_secs: u64,

    /// Seconds a mail worker holds the message it claims: a replica that dies mid-send leaves
    /// it to the others this long. A send that takes half of it is abandoned (and retried).
    #[arg(
        long,
        env = "SAASKIT_MAIL_LEASE_SECS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(10..=3600),
        global = true
    )]
    pub mail_lease_secs: u64,

    /// Stripe's secret API key (`sk_live_…`, `sk_test_…`). Unset: payments are off, and credits
    /// arrive only as operators grant them.
    #[arg(
        long,
        env = "SAASKIT_STRIPE_SECRET_KEY",
        global = true,
        hide_env_values = true
    )]
    pub stripe_secret_key: Option<String>,

    /// The signing secret of the Stripe webhook endpoint (`whsec_…`) that posts to
    /// `/webhooks/stripe`; several, comma-separated, while one replaces another. Unset: Stripe's
    /// events are refused.
    #[arg(
        long,
        env = "SAASKIT_STRIPE_WEBHOOK_SECRET",
        value_delimiter = ',',
        global = true,
        hide_env_values = true
    )]
    pub stripe_webhook_secret: Vec<String>,

    /// Where Stripe's API is; tests point it at a local simulator.
    #[arg(
        long,
        env = "SAASKIT_STRIPE_API_BASE",
        default_value = "https://api.stripe.com",
        global = true
    )]
    pub stripe_api_base: String,

    /// Stripe's publishable key (`pk_…`), given to Stripe.js on the card form.
    #[arg(long, env = "SAASKIT_STRIPE_PUBLISHABLE_KEY", global = true)]
    pub stripe_publishable_key: Option<String>,

    /// Where the card form loads Stripe.js from (Stripe requires its own copy).
    #[arg(
        long,
        env = "SAASKIT_STRIPE_JS_URL",
        default_value = "https://js.stripe.com/v3/",
        global = true
    )]
    pub stripe_js_url: String,

    /// Identity providers people may sign in with, by name (`google,github`), each set by
    /// `SAASKIT_OIDC_<NAME>_ISSUER`, `_CLIENT_ID`, `_CLIENT_SECRET` and `_KIND` (`oidc` or
    /// `github`): see the README. Read and checked at start.
    #[arg(
        long,
        env = "SAASKIT_OIDC_PROVIDERS",
        value_delimiter = ',',
        global = true
    )]
    pub oidc_providers: Vec<String>,

    /// Identity providers given directly (tests, a program embedding saaskit), besides those
    /// named by `SAASKIT_OIDC_PROVIDERS`.
    #[arg(skip)]
    pub identity_providers: Vec<crate::oidc::ProviderSettings>,

    /// Seconds a request may take before it is answered 503 `timeout`.
    #[arg(
        long,
        env = "SAASKIT_REQUEST_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Checks what clap cannot: URLs that must parse, values that must make sense together.
    pub fn validate(&self) -> anyhow::Result<()> {
        let public = self.public_url.trim_end_matches('/');
        if !(public.starts_with("http://") || public.starts_with("https://"))
            || public.len() <= "https://".len()
        {
            anyhow::bail!(
                "SAASKIT_PUBLIC_URL must be an http:// or https:// URL (got {:?})",
                self.public_url
            );
        }
        if let Some(smtp) = &self.smtp_url
            && !(smtp.starts_with("smtp://") || smtp.starts_with("smtps://"))
        {
            anyhow::bail!("SAASKIT_SMTP_URL must start with smtp:// or smtps://");
        }
        if self.metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            anyhow::bail!("SAASKIT_METRICS_TOKEN must be at least 16 characters");
        }
        for origin in self.cors_origins.iter().filter(|o| !o.trim().is_empty()) {
            let o = origin.trim();
            let scheme_ok = o.starts_with("https://") || o.starts_with("http://");
            let host = o.split_once("://").map_or("", |(_, rest)| rest);
            if !scheme_ok || host.is_empty() || host.contains('/') || o.contains('*') {
                anyhow::bail!(
                    "SAASKIT_CORS_ORIGINS takes exact origins like https://app.example.com (got {o:?})"
                );
            }
            axum::http::HeaderValue::from_str(o).map_err(|_| {
                anyhow::anyhow!("SAASKIT_CORS_ORIGINS: {o:?} is not a valid origin")
            })?;
        }
        if self.request_timeout_secs == 0 {
            anyhow::bail!("SAASKIT_REQUEST_TIMEOUT must be at least 1 second");
        }
        if self.header_read_timeout_secs == 0 || self.keep_alive_timeout_secs == 0 {
            anyhow::bail!(
                "SAASKIT_HEADER_READ_TIMEOUT and SAASKIT_KEEP_ALIVE_TIMEOUT must be at least 1 second"
            );
        }
        if self.max_connections == Some(0) {
            anyhow::bail!("SAASKIT_MAX_CONNECTIONS must be at least 1");
        }
        if self.default_plan.trim().is_empty() {
            anyhow::bail!("SAASKIT_DEFAULT_PLAN may not be empty");
        }
        if self.totp_issuer.trim().is_empty() || self.totp_issuer.contains(':') {
            anyhow::bail!(
                "SAASKIT_TOTP_ISSUER must be a name without `:` (authenticator apps split on it)"
            );
        }
        if self.backup_every.is_some() {
            if self.backup_dir.is_none() {
                anyhow::bail!("SAASKIT_BACKUP_EVERY needs SAASKIT_BACKUP_DIR: where to put them");
            }
            if crate::db::sqlite_file(&self.database_url).is_none() {
                anyhow::bail!("SAASKIT_BACKUP_EVERY: {}", crate::backup::POSTGRES);
            }
        }
        Ok(())
    }

    /// The public URL without a trailing slash, ready to append paths to.
    pub fn public_base(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }

    /// Defaults for tests and embedding: like the command line with no flags and no environment.
    pub fn defaults() -> Config {
        Config {
            database_url: "sqlite://saaskit.db".into(),
            database_max_connections: 16,
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            public_url: "http://localhost:8000".into(),
            mail_dir: PathBuf::from("./mail"),
            smtp_url: None,
            mail_from: "saaskit <no-reply@saaskit.localhost>".into(),
            totp_issuer: "saaskit".into(),
            default_plan: "free-trial".into(),
            grace_period_days: 3,
            renew_every: 60,
            session_lifetime_hours: 24 * 30,
            session_idle_hours: 24 * 7,
            invitation_ttl_days: 7,
            email_verification_ttl_hours: 48,
            require_verified_email: false,
            auth_cache_ttl_ms: 1000,
            key_rotation_overlap_secs: 0,
            metrics_token: None,
            metrics_bind: None,
            backup_dir: None,
            backup_every: None,
            backup_keep: 24,
            hash_concurrency: None,
            log_format: LogFormat::Text,
            request_log: crate::telemetry::RequestLog::All,
            shutdown_timeout_secs: 30,
            header_read_timeout_secs: 30,
            keep_alive_timeout_secs: 75,
            max_connections: None,
            rate_limit: Switch::On,
            rate_limit_login_ip: Rule::per(30, 60),
            rate_limit_login_account: Rule::per(5, 15 * 60),
            rate_limit_login_account_all: Rule::per(20, 3600),
            rate_limit_signup_ip: Rule::per(50, 3600),
            rate_limit_reset_ip: Rule::per(20, 3600),
            rate_limit_reset_account: Rule::per(5, 3600),
            rate_limit_verify_account: Rule::per(5, 3600),
            rate_limit_keys_ip: Rule::per(30, 600),
            trusted_proxies: TrustedProxies::default(),
            cors_origins: Vec::new(),
            request_timeout_secs: 30,
            webhook_retry_schedule: RetrySchedule::standard(),
            webhook_allow_private: false,
            webhook_lease_secs: 120,
            mail_lease_secs: 120,
            secret_key: None,
            secret_key_old: Vec::new(),
            secret_key_file: None,
            stripe_secret_key: None,
            stripe_webhook_secret: Vec::new(),
            stripe_api_base: "https://api.stripe.com".into(),
            stripe_publishable_key: None,
            stripe_js_url: "https://js.stripe.com/v3/".into(),
            oidc_providers: Vec::new(),
            identity_providers: Vec::new(),
        }
    }
}

/// The delays between a webhook delivery's attempts: `delays[i]` after attempt `i + 1` fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    pub delays: Vec<chrono::Duration>,
}

impl RetrySchedule {
    /// The Standard Webhooks specification's suggestion: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    pub fn standard() -> RetrySchedule {
        parse_schedule("5s,5m,30m,2h,5h,10h,10h").expect("a valid literal")
    }

    /// How long to wait after the `attempts`-th failed attempt; `None`: give up.
    pub fn after(&self, attempts: i64) -> Option<chrono::Duration> {
        usize::try_from(attempts)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.delays.get(i).copied())
    }
}

/// `SAASKIT_WEBHOOK_RETRY_SCHEDULE`: comma-separated delays such as `5s,5m,30m` (up to 20, each
/// from 1 s to 7 days); empty for no retries.
fn parse_schedule(s: &str) -> Result<RetrySchedule, String> {
    let bad = || {
        format!(
            "SAASKIT_WEBHOOK_RETRY_SCHEDULE: {s:?} is not a list of delays like 5s,5m,30m \
             (s, m, h or d; each 1s to 7d; at most 20)"
        )
    };
    let mut delays = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let secs = crate::ratelimit::period_secs(part)
            .filter(|secs| (1..=7 * 86_400).contains(secs))
            .ok_or_else(bad)?;
        delays.push(chrono::Duration::seconds(secs));
    }
    if delays.len() > 20 {
        return Err(bad());
    }
    Ok(RetrySchedule { delays })
}

/// `SAASKIT_BACKUP_EVERY`: a period such as `1h`, in seconds (a minute to a year).
fn parse_every(s: &str) -> Result<u64, String> {
    crate::ratelimit::period_secs(s)
        .filter(|secs| (60..=366 * 86_400).contains(secs))
        .and_then(|secs| u64::try_from(secs).ok())
        .ok_or_else(|| {
            format!("SAASKIT_BACKUP_EVERY: {s:?} is not a period from 1m to 366d, like 1h or 30m")
        })
}
