//! HTTP benchmarks: the release server as users run it (its own process, default settings),
//! seeded through its API and its CLI, driven by this harness's own client with a fixed number
//! of connections for a fixed time. Reports requests per second, latency percentiles, errors,
//! the server's peak memory, and each endpoint's throughput as a share of `/healthz` measured
//! in the same run (the figure to track: absolute numbers drift on a shared machine).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::Scratch;

pub struct Options {
    pub postgres: Option<String>,
    pub connections: usize,
    pub duration: Duration,
    pub businesses: usize,
    pub targets: Vec<String>,
    /// `webhooks`: the endpoint counts to measure, each in its own round.
    pub webhook_endpoints: Vec<usize>,
    /// `webhooks`: events queued while the server is down, then drained.
    pub webhook_backlog: usize,
}

/// `flood` runs `login` and `me` at once, half the connections each: `/me`'s latency while
/// logins saturate the hashing threads.
/// `reset-timing` is not a load: it alternates password reset requests for registered and
/// unknown addresses on one connection and compares their medians (the answer must not tell
/// which is which).
/// `dashboard` is the `/dashboard` page for an owner's browser session (its session and CSRF
/// cookies);
/// `record-steady` is `record` measured once the table holds a million recordings (written
/// through the API first, unmeasured; `SAASKIT_BENCH_STEADY_ROWS` changes the number), with its
/// latency histogram.
/// `dashboard-weight` is not a load: it adds up the page's bytes and its assets'.
/// `backup-stall` (SQLite) grows the database to `SAASKIT_BENCH_BACKUP_MB` (default 1024) MB,
/// then runs `saaskit backup` while metered writes go on, and reports how long writes waited.
/// `request-path` measures `/healthz` and `/me` against a bare axum server in the same run
/// (see `path.rs`).
/// `webhooks` measures deliveries per second to a receiver in this process, and
/// `webhook-overhead` the metered write with and without an endpoint per business (see
/// `webhooks.rs`).
pub const TARGETS: &[&str] = &[
    "healthz",
    "me",
    "login",
    "record",
    "record-steady",
    "flood",
    "reset-timing",
    "dashboard",
    "dashboard-weight",
    "backup-stall",
    "request-path",
    "webhooks",
    "webhook-overhead",
];

const PASSWORD: &str = "correct horse battery";

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    binary: PathBuf,
    database_url: String,
    /// Settings beyond the defaults, kept for a restart.
    env: Vec<(String, String)>,
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server as an operator would (SIGTERM, then waiting for it to drain), and
    /// starts it again on the same database, on a new port.
    pub(crate) async fn restart_after(
        &mut self,
        while_down: impl AsyncFnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while_down().await?;
        let (child, base) = spawn(&self.binary, &self.database_url, &self.env)?;
        self.child = child;
        self.base = base;
        wait_until_serving(&self.base).await
    }

    /// Runs one of the server binary's CLI commands against the same database.
    fn cli(&self, args: &[&str]) -> anyhow::Result<()> {
        let status = Command::new(&self.binary)
            .args(args)
            .env("SAASKIT_DATABASE_URL", &self.database_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running the saaskit CLI")?;
        if !status.success() {
            bail!("saaskit {args:?} failed");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM, so it drains like in production; then make sure it is gone.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release server, built from this tree; or, for comparing builds, the binary named by
/// `SAASKIT_BENCH_SERVER_BIN` as it is.
fn build_server() -> anyhow::Result<PathBuf> {
    if let Some(binary) = std::env::var_os("SAASKIT_BENCH_SERVER_BIN") {
        return Ok(PathBuf::from(binary));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--bin", "saaskit"])
        .current_dir(&root)
        .status()
        .context("building the release server")?;
    if !status.success() {
        bail!("cargo build --release --bin saaskit failed");
    }
    Ok(root.join("target/release/saaskit"))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Starts the release server on `scratch` with `env` set beyond the defaults.
async fn start_server(scratch: &Scratch, env: &[(&str, &str)]) -> anyhow::Result<Server> {
    let binary = build_server()?;
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let (child, base) = spawn(&binary, &scratch.url, &env)?;
    let server = Server {
        child,
        base,
        binary,
        database_url: scratch.url.clone(),
        env,
    };
    wait_until_serving(&server.base).await?;
    Ok(server)
}

/// `saaskit serve` on a free port: the child and its base URL.
fn spawn(
    binary: &std::path::Path,
    database_url: &str,
    env: &[(String, String)],
) -> anyhow::Result<(Child, String)> {
    let port = free_port()?;
    let mail_dir = std::env::temp_dir().join(format!("saaskit-bench-mail-{port}"));
    let child = Command::new(binary)
        .arg("serve")
        .env("SAASKIT_DATABASE_URL", database_url)
        .env("SAASKIT_BIND", format!("127.0.0.1:{port}"))
        .env("SAASKIT_MAIL_DIR", &mail_dir)
        // A load test: rate limits would refuse the seeding and the login flood.
        .env("SAASKIT_RATE_LIMIT", "off")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the server")?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

async fn wait_until_serving(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(format!("{base}/healthz")).send().await
            && res.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server did not answer /healthz within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What each simulated client uses: a business's owner session, API key and application.
pub(crate) struct Tenant {
    email: String,
    pub(crate) token: String,
    pub(crate) business: String,
    sdk_key: String,
    application: String,
}

async fn seed(server: &Server, n: usize) -> anyhow::Result<Vec<Tenant>> {
    let client = reqwest::Client::new();
    let mut tenants = Vec::with_capacity(n);
    for i in 0..n {
        let email = format!("bench{i}@example.com");
        let signup: Value = client
            .post(format!("{}/api/v1/signup", server.base))
            .json(&json!({
                "email": email, "password": PASSWORD, "first_name": "Bench",
                "last_name": "User", "business": {"name": format!("Bench {i}")}
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = signup["token"].as_str().context("signup token")?.to_owned();
        let business = signup["business"]["id"]
            .as_str()
            .context("business id")?
            .to_owned();
        // Load tests run on the hidden unlimited plan: the limits are not what is measured.
        server.cli(&["business", "set-plan", &business, "unlimited"])?;
        let key: Value = client
            .post(format!("{}/api/v1/api-keys", server.base))
            .bearer_auth(&token)
            .json(&json!({"name": "bench"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let application: Value = client
            .post(format!("{}/api/v1/applications", server.base))
            .bearer_auth(&token)
            .json(&json!({"name": "bench"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        tenants.push(Tenant {
            email,
            token,
            business,
            sdk_key: key["key"].as_str().context("key")?.to_owned(),
            application: application["id"].as_str().context("app id")?.to_owned(),
        });
    }
    Ok(tenants)
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) struct Outcome {
    pub(crate) target: String,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    peak_rss_mib: f64,
    /// How many requests took less than each bound (ms) and more than the last: the latency
    /// histogram printed for the `record-steady` target.
    histogram: Vec<u64>,
    p90_ms: f64,
    p999_ms: f64,
}

/// The upper bounds (ms) of [`Outcome::histogram`]'s buckets; one more bucket holds the rest.
const HISTOGRAM_MS: [u32; 9] = [1, 2, 5, 10, 25, 50, 100, 250, 500];

/// An outcome from every request's latency (microseconds), unsorted.
pub(crate) fn percentiles(
    target: &str,
    mut all: Vec<u32>,
    errors: u64,
    elapsed_secs: f64,
) -> Outcome {
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all[idx]) / 1000.0
    };
    Outcome {
        target: target.to_owned(),
        requests: all.len() as u64,
        errors,
        rps: all.len() as f64 / elapsed_secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: all.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
        peak_rss_mib: 0.0,
        p90_ms: pct(0.90),
        p999_ms: pct(0.999),
        histogram: {
            let mut buckets = vec![0u64; HISTOGRAM_MS.len() + 1];
            for &micros in &all {
                let i = HISTOGRAM_MS
                    .iter()
                    .position(|&ms| micros < ms * 1000)
                    .unwrap_or(HISTOGRAM_MS.len());
                buckets[i] += 1;
            }
            buckets
        },
    }
}

pub(crate) async fn drive(
    server: &Server,
    tenants: &Arc<Vec<Tenant>>,
    target: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .http1_only()
        // A page that redirects to the login page is a failure here, not a second request.
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let pid = server.pid();
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid, "VmRSS:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for worker in 0..connections {
        let (client, stop, errors, tenants) = (
            client.clone(),
            stop.clone(),
            errors.clone(),
            tenants.clone(),
        );
        let base = server.base.clone();
        let target = target.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(100_000);
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let t = &tenants[i % tenants.len()];
                i += connections;
                let req = match target.as_str() {
                    "healthz" => client.get(format!("{base}/healthz")),
                    "me" => client
                        .get(format!("{base}/api/v1/me"))
                        .bearer_auth(&t.token),
                    // Both cookies, as a browser that has been here before sends them.
                    "dashboard" => client.get(format!("{base}/dashboard")).header(
                        "cookie",
                        format!("saaskit_session={}; saaskit_csrf=seed-{}", t.token, t.email),
                    ),
                    "login" => client
                        .post(format!("{base}/api/v1/login"))
                        .json(&json!({"email": t.email, "password": PASSWORD})),
                    _ => client
                        .post(format!("{base}/api/v1/recordings"))
                        .bearer_auth(&t.sdk_key)
                        .json(&json!({"application_id": t.application, "events": 12})),
                };
                let sent = Instant::now();
                let ok = match req.send().await {
                    Ok(res) => {
                        let ok = res.status().is_success();
                        let _ = res.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u32> = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = sampler.await;
    let mut outcome = percentiles(target, all, errors.load(Ordering::Relaxed), elapsed);
    outcome.peak_rss_mib = peak.load(Ordering::Relaxed) as f64 / 1024.0;
    Ok(outcome)
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    for t in &opts.targets {
        if !TARGETS.contains(&t.as_str()) {
            bail!("unknown target {t:?}; known: {}", TARGETS.join(", "));
        }
    }
    let scratch = Scratch::new(opts.postgres.as_deref()).await?;
    let result = run_on(&scratch, &opts).await;
    scratch.drop_now().await;
    result
}

async fn run_on(scratch: &Scratch, opts: &Options) -> anyhow::Result<()> {
    // Webhooks go to a receiver in this process, on 127.0.0.1; a failed attempt is retried
    // within seconds rather than the standard schedule's minutes.
    let env: &[(&str, &str)] = if opts.targets.iter().any(|t| t.starts_with("webhook")) {
        &[
            ("SAASKIT_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("SAASKIT_WEBHOOK_RETRY_SCHEDULE", "1s,1s,1s"),
        ]
    } else {
        &[]
    };
    let mut server = start_server(scratch, env).await?;
    let seeding = Instant::now();
    let tenants = Arc::new(seed(&server, opts.businesses).await?);
    eprintln!(
        "seeded {} businesses in {:.1} s; {} connections, {} s per target",
        tenants.len(),
        seeding.elapsed().as_secs_f64(),
        opts.connections,
        opts.duration.as_secs()
    );
    let mut outcomes = Vec::new();
    for target in &opts.targets {
        if target == "reset-timing" {
            reset_timing(&server, &tenants, 300).await?;
            continue;
        }
        if target == "dashboard-weight" {
            dashboard_weight(&server, &tenants[0]).await?;
            continue;
        }
        if target == "request-path" {
            crate::path::run(&server, &tenants, opts.connections, opts.duration).await?;
            continue;
        }
        if target == "webhooks" {
            crate::webhooks::deliveries(&mut server, scratch, &tenants, opts).await?;
            continue;
        }
        if target == "webhook-overhead" {
            crate::webhooks::overhead(&server, &tenants, opts.connections, opts.duration).await?;
            continue;
        }
        if target == "backup-stall" {
            match &scratch.sqlite_path {
                Some(path) => backup_stall(&server, &tenants, path, opts.connections).await?,
                None => println!("backup-stall: SQLite only (PostgreSQL has its own tools)"),
            }
            continue;
        }
        if target == "flood" {
            let half = (opts.connections / 2).max(1);
            let (login, me) = tokio::join!(
                drive(&server, &tenants, "login", half, opts.duration),
                drive(&server, &tenants, "me", half, opts.duration),
            );
            let (mut login, mut me) = (login?, me?);
            login.target = "flood: login".to_owned();
            me.target = "flood: me".to_owned();
            outcomes.push(login);
            outcomes.push(me);
            continue;
        }
        if target == "record-steady" {
            outcomes.push(record_steady(&server, &tenants, opts).await?);
            continue;
        }
        let outcome = drive(&server, &tenants, target, opts.connections, opts.duration).await?;
        outcomes.push(outcome);
    }
    let peak_total = rss_kib(server.pid(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let healthz = outcomes
        .iter()
        .find(|o| o.target == "healthz")
        .map(|o| o.rps);
    println!(
        "database: {}",
        if opts.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "| target | req/s | vs /healthz | p50 ms | p99 ms | max ms | errors | requests | peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        let ratio = healthz.map_or("-".to_owned(), |h| format!("{:.0}%", 100.0 * o.rps / h));
        println!(
            "| {} | {:.0} | {} | {:.2} | {:.2} | {:.1} | {} | {} | {:.1} |",
            o.target,
            o.rps,
            ratio,
            o.p50_ms,
            o.p99_ms,
            o.max_ms,
            o.errors,
            o.requests,
            o.peak_rss_mib
        );
    }
    println!("server peak memory (VmHWM) over the whole run: {peak_total:.1} MiB");
    for o in outcomes
        .iter()
        .filter(|o| o.target.starts_with("record, after"))
    {
        println!(
            "{}: p90 {:.2} ms, p99.9 {:.2} ms",
            o.target, o.p90_ms, o.p999_ms
        );
        println!("| latency | requests | share |");
        println!("|---|---:|---:|");
        let mut lower = 0;
        for (i, n) in o.histogram.iter().enumerate() {
            let bucket = match HISTOGRAM_MS.get(i) {
                Some(upper) => format!("{lower}–{upper} ms"),
                None => format!("≥ {lower} ms"),
            };
            lower = HISTOGRAM_MS.get(i).copied().unwrap_or(lower);
            let share = 100.0 * *n as f64 / o.requests.max(1) as f64;
            println!("| {bucket} | {n} | {share:.3}% |");
        }
    }
    Ok(())
}

/// `record-steady`: metered writes, unmeasured, until the table holds
/// `SAASKIT_BENCH_STEADY_ROWS` recordings (default 1,000,000), then the measured run, with
/// the latency histogram.
async fn record_steady(
    server: &Server,
    tenants: &Arc<Vec<Tenant>>,
    opts: &Options,
) -> anyhow::Result<Outcome> {
    let rows: u64 = std::env::var("SAASKIT_BENCH_STEADY_ROWS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("SAASKIT_BENCH_STEADY_ROWS is a number of rows")?
        .unwrap_or(1_000_000);
    let started = Instant::now();
    let mut written = 0;
    while written < rows {
        let round = drive(
            server,
            tenants,
            "record",
            opts.connections,
            Duration::from_secs(10),
        )
        .await?;
        written += round.requests - round.errors;
        println!(
            "record-steady: {written} recordings written in {:.0} s (this round: {:.0}/s, p99 {:.1} ms)",
            started.elapsed().as_secs_f64(),
            round.rps,
            round.p99_ms
        );
    }
    let mut outcome = drive(server, tenants, "record", opts.connections, opts.duration).await?;
    outcome.target = format!("record, after {written} rows");
    Ok(outcome)
}

/// The bytes a browser fetches for `/dashboard`: the page and every asset it links
/// (`/assets/…`), as sent (no compression is negotiated) and as gzip would send them.
async fn dashboard_weight(server: &Server, tenant: &Tenant) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{}/dashboard", server.base))
        .header("cookie", format!("saaskit_session={}", tenant.token))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut total = page.len();
    println!("| resource | bytes |");
    println!("|---|---:|");
    println!("| /dashboard (HTML) | {} |", page.len());
    let mut rest = page.as_str();
    while let Some(at) = rest.find("\"/assets/") {
        let path: String = rest[at + 1..].chars().take_while(|c| *c != '"').collect();
        rest = &rest[at + 1 + path.len()..];
        let bytes = client
            .get(format!("{}{path}", server.base))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        println!("| {path} | {} |", bytes.len());
        total += bytes.len();
    }
    println!("| total | {total} ({:.1} KB) |", total as f64 / 1000.0);
    Ok(())
}

/// Times `pairs` password reset requests for a registered address and as many for unknown
/// ones, interleaved (the order inside each pair alternates, so drift and the previous
/// request's background work fall on both alike), one at a time, and prints both medians.
async fn reset_timing(server: &Server, tenants: &[Tenant], pairs: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/password/reset", server.base);
    let (mut known, mut unknown) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
    for i in 0..pairs {
        let registered = &tenants[i % tenants.len()].email;
        let stranger = format!("nobody{i}@example.com");
        let order = if i % 2 == 0 {
            [(registered.as_str(), true), (stranger.as_str(), false)]
        } else {
            [(stranger.as_str(), false), (registered.as_str(), true)]
        };
        for (email, is_known) in order {
            let started = Instant::now();
            let res = client
                .post(&url)
                .json(&json!({"email": email}))
                .send()
                .await?;
            let status = res.status();
            res.bytes().await?;
            let took = started.elapsed().as_secs_f64() * 1000.0;
            if status.as_u16() != 202 {
                bail!("reset request answered {status}");
            }
            if is_known {
                known.push(took)
            } else {
                unknown.push(took)
            }
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
        (at(0.5), at(0.9))
    };
    let (k50, k90) = stats(&mut known);
    let (u50, u90) = stats(&mut unknown);
    println!("reset timing, {pairs} interleaved pairs, one connection:");
    println!("| address | median ms | p90 ms |");
    println!("|---|---:|---:|");
    println!("| registered | {k50:.3} | {k90:.3} |");
    println!("| unknown | {u50:.3} | {u90:.3} |");
    println!(
        "median difference: {:.3} ms ({:+.1}%)",
        k50 - u50,
        100.0 * (k50 - u50) / u50
    );
    Ok(())
}

/// Writes stall while a backup runs? Grows the database, then keeps `connections` metered
/// writes going while `saaskit backup` runs, and compares write latency before and during it.
async fn backup_stall(
    server: &Server,
    tenants: &Arc<Vec<Tenant>>,
    path: &std::path::Path,
    connections: usize,
) -> anyhow::Result<()> {
    let mb: i64 = std::env::var("SAASKIT_BENCH_BACKUP_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let filling = Instant::now();
    {
        // Bulk rows beside saaskit's tables: what a backup copies is pages, whatever they hold.
        let url = format!("sqlite://{}", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await?;
        sqlx::query("CREATE TABLE bench_filler (id INTEGER PRIMARY KEY, payload BLOB)")
            .execute(&pool)
            .await?;
        // 4,000-byte rows, 25,000 (about 100 MB) per transaction.
        let rows = mb * 1024 * 1024 / 4000;
        let mut done = 0;
        while done < rows {
            let n = (rows - done).min(25_000);
            sqlx::query(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) \
                 INSERT INTO bench_filler (payload) SELECT randomblob(4000) FROM c",
            )
            .bind(n)
            .execute(&pool)
            .await?;
            done += n;
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&pool)
            .await?;
        pool.close().await;
    }
    let size = std::fs::metadata(path)?.len();
    eprintln!(
        "backup-stall: database grown to {:.0} MB in {:.1} s",
        size as f64 / 1e6,
        filling.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::builder().http1_only().build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut writers = Vec::new();
    for c in 0..connections {
        let (client, tenants, stop) = (client.clone(), tenants.clone(), stop.clone());
        let base = server.base.clone();
        writers.push(tokio::spawn(async move {
            // (when it was sent, since the start; how long it took), both in microseconds
            let mut seen: Vec<(u64, u64)> = Vec::new();
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let t = &tenants[i % tenants.len()];
                i += connections;
                let sent = Instant::now();
                let ok = client
                    .post(format!("{base}/api/v1/recordings"))
                    .bearer_auth(&t.sdk_key)
                    .json(&json!({"application_id": t.application, "events": 12}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    let at = sent.duration_since(started).as_micros() as u64;
                    seen.push((at, sent.elapsed().as_micros() as u64));
                }
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let target = path.with_extension("backup.db");
    let from = started.elapsed().as_micros() as u64;
    let backup = {
        let binary = server.binary.clone();
        let url = server.database_url.clone();
        let target = target.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(binary)
                .args(["backup", target.to_str().unwrap_or_default()])
                .env("SAASKIT_DATABASE_URL", url)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        })
        .await??
    };
    let to = started.elapsed().as_micros() as u64;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for w in writers {
        seen.extend(w.await?);
    }
    if !backup.success() {
        bail!("saaskit backup failed");
    }
    let backup_bytes = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&target);
    let _ = std::fs::remove_file(target.with_extension("db.sha256"));
    let summary = |during: bool| {
        let mut l: Vec<u64> = seen
            .iter()
            .filter(|(at, took)| (*at + *took >= from && *at <= to) == during)
            .map(|(_, took)| *took)
            .collect();
        l.sort_unstable();
        let pick = |q: f64| {
            l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
                .map_or(0.0, |v| *v as f64 / 1000.0)
        };
        (
            l.len(),
            pick(0.5),
            pick(0.99),
            l.last().map_or(0.0, |v| *v as f64 / 1000.0),
        )
    };
    let (n_out, p50_out, p99_out, max_out) = summary(false);
    let (n_in, p50_in, p99_in, max_in) = summary(true);
    println!(
        "backup of a {:.0} MB database: {:.1} s, {:.0} MB written; {connections} writers",
        size as f64 / 1e6,
        (to - from) as f64 / 1e6,
        backup_bytes as f64 / 1e6
    );
    println!("| metered writes | count | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    println!("| outside the backup | {n_out} | {p50_out:.2} | {p99_out:.2} | {max_out:.1} |");
    println!("| during the backup | {n_in} | {p50_in:.2} | {p99_in:.2} | {max_in:.1} |");
    Ok(())
}
