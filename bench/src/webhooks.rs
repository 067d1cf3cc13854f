//! Outgoing webhooks under load: how many deliveries per second the worker of one release server
//! sends to a receiver running in this process, and what a business's endpoint costs the
//! metered write that emits nothing to it.
//!
//! - `webhooks`: for each endpoint count N (`--webhook-endpoints`, default 1 and 8, each endpoint
//!   on a business of its own, subscribed to `application.created`), two phases. *Live*: the
//!   N owners create applications over HTTP for `--duration`, and the deliveries are counted
//!   until the receiver has one per created application. *Drain*: the server is stopped,
//!   `--webhook-backlog` events are emitted into its database with saaskit's own
//!   `webhooks::emit_many` (what a change calls in its transaction), and the server is started
//!   again; deliveries per second is the backlog over the time from the first delivery received
//!   to the last, the worker's capacity with nothing else going on.
//! - `webhook-overhead`: the metered write (`record`) in alternating rounds without and with an
//!   endpoint on every writing business, subscribed to `member.joined` (which the write never
//!   emits), and the median ratio of the two, by throughput and by the server's CPU time per
//!   write. `SAASKIT_BENCH_WEBHOOK_ROUNDS` (default 6) sets the rounds;
//!   `SAASKIT_BENCH_WEBHOOK_CONTROL=1` leaves both sides without endpoints, to see how far two
//!   identical sides drift apart on the machine.
//!
//! The receiver answers 204 and checks every signature (HMAC-SHA256 over
//! `<webhook-id>.<webhook-timestamp>.<body>` with the endpoint's secret, as Standard Webhooks
//! specifies), and counts duplicates by `webhook-id`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac as _;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Scratch;
use crate::http::{Options, Server, Tenant, drive};

/// What the receiver has seen since its last reset.
#[derive(Default)]
struct Book {
    /// The HMAC key of each endpoint, by its name in the URL (`/hooks/<name>`).
    keys: HashMap<String, Vec<u8>>,
    received: u64,
    bad_signatures: u64,
    ids: HashSet<String>,
    duplicates: u64,
    /// The last `webhook-id` per endpoint, and how often one came before the one before it
    /// (ids are time-ordered: an inversion is a delivery sent out of the order it was queued).
    last_id: HashMap<String, String>,
    inversions: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

struct Receiver {
    address: SocketAddr,
    book: Arc<Mutex<Book>>,
    /// Read without the lock by the waiting loop.
    count: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct ReceiverState {
    book: Arc<Mutex<Book>>,
    count: Arc<AtomicU64>,
}

fn book(m: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Receiver {
    async fn start() -> anyhow::Result<Receiver> {
        let state = ReceiverState {
            book: Arc::new(Mutex::new(Book::default())),
            count: Arc::new(AtomicU64::new(0)),
        };
        let app = axum::Router::new()
            .route("/hooks/{name}", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver {
            address,
            book: state.book,
            count: state.count,
            server,
        })
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/hooks/{name}", self.address)
    }

    fn expect(&self, name: &str, secret: &str) -> anyhow::Result<()> {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .context("the endpoint's secret is not whsec_<base64>")?;
        book(&self.book).keys.insert(name.to_owned(), key);
        Ok(())
    }

    /// Forgets what was received (not the keys).
    fn reset(&self) {
        let mut b = book(&self.book);
        let keys = std::mem::take(&mut b.keys);
        *b = Book {
            keys,
            ..Book::default()
        };
        self.count.store(0, Ordering::SeqCst);
    }

    /// Waits until `n` deliveries have arrived, or `timeout` has passed.
    async fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count.load(Ordering::SeqCst) < n {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let key = book(&state.book).keys.get(&name).cloned();
    let verified = key.is_some_and(|key| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(&body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        signatures.split(' ').any(|s| s == expected)
    });
    let now = Instant::now();
    let mut b = book(&state.book);
    if !verified {
        b.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    }
    b.received += 1;
    b.first.get_or_insert(now);
    b.last = Some(now);
    if !b.ids.insert(id.clone()) {
        b.duplicates += 1;
    }
    if let Some(previous) = b.last_id.insert(name, id.clone())
        && previous > id
    {
        b.inversions += 1;
    }
    state.count.fetch_add(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

/// Registers an endpoint for `tenant`'s business receiving `events` at `url`: its id and secret.
async fn create_endpoint(
    client: &reqwest::Client,
    server: &Server,
    tenant: &Tenant,
    url: &str,
    events: &[&str],
) -> anyhow::Result<(String, String)> {
    let created: Value = client
        .post(format!("{}/api/v1/webhooks", server.base))
        .bearer_auth(&tenant.token)
        .json(&json!({"url": url, "events": events}))
        .send()
        .await?
        .error_for_status()
        .context("creating a webhook endpoint")?
        .json()
        .await?;
    Ok((
        created["id"].as_str().context("endpoint id")?.to_owned(),
        created["secret"]
            .as_str()
            .context("endpoint secret")?
            .to_owned(),
    ))
}

/// What the database says of every delivery: `(status, deliveries, attempts)`.
async fn delivery_statuses(url: &str) -> anyhow::Result<Vec<(String, i64, i64)>> {
    let db = saaskit::db::Db::connect(url, 1).await?;
    let mut single = db.single().await?;
    let rows: Vec<(String, i64, i64)> = saaskit::on_conn!(single.conn(), c => {
        sqlx::query_as(
            "SELECT status, COUNT(*), CAST(COALESCE(SUM(attempts), 0) AS BIGINT) \
             FROM webhook_deliveries GROUP BY status ORDER BY status",
        )
        .fetch_all(&mut *c)
        .await?
    });
    drop(single);
    db.close().await;
    Ok(rows)
}

/// Queues `n` `application.created` events, spread evenly over `businesses`, through
/// saaskit's own emit, a thousand per transaction.
async fn emit_backlog(url: &str, businesses: &[Uuid], n: usize) -> anyhow::Result<()> {
    let db = saaskit::db::Db::connect(url, 1).await?;
    let now = saaskit::db::Timestamp::from_datetime(chrono::Utc::now());
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(1000);
        let events: Vec<saaskit::webhooks::Outgoing> = (done..done + chunk)
            .map(|i| {
                let business = businesses[i % businesses.len()];
                let application = json!({
                    "id": Uuid::now_v7(), "name": format!("backlog {i}"),
                    "created_at": now, "updated_at": now,
                });
                saaskit::webhooks::Outgoing::new(
                    business,
                    "application.created",
                    json!({"business_id": business, "application": application}),
                )
            })
            .collect();
        let mut tx = db.begin().await?;
        let queued = saaskit::webhooks::emit_many(tx.conn(), now, &events).await?;
        tx.commit().await?;
        if queued != chunk {
            bail!("emitting {chunk} events queued {queued} deliveries");
        }
        done += chunk;
    }
    db.close().await;
    Ok(())
}

/// Owners of `group` create applications over `connections` connections for `duration`:
/// how many were created.
async fn flood_applications(
    server: &Server,
    group: &[&Tenant],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(u64, u64)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .http1_only()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (created, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tokens: Arc<Vec<String>> = Arc::new(group.iter().map(|t| t.token.clone()).collect());
    let mut workers = Vec::new();
    for worker in 0..connections {
        let (client, stop, created, errors, tokens) = (
            client.clone(),
            stop.clone(),
            created.clone(),
            errors.clone(),
            tokens.clone(),
        );
        let url = format!("{}/api/v1/applications", server.base);
        workers.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let ok = client
                    .post(&url)
                    .bearer_auth(&tokens[i % tokens.len()])
                    .json(&json!({"name": "hooked"}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    created.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    Ok((
        created.load(Ordering::SeqCst),
        errors.load(Ordering::SeqCst),
    ))
}

/// The figures of one phase, from the receiver's book.
struct Drained {
    received: u64,
    duplicates: u64,
    bad_signatures: u64,
    inversions: u64,
    /// From the first delivery received to the last.
    spread: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn drained(r: &Receiver) -> Drained {
    let b = book(&r.book);
    Drained {
        received: b.received,
        duplicates: b.duplicates,
        bad_signatures: b.bad_signatures,
        inversions: b.inversions,
        spread: match (b.first, b.last) {
            (Some(f), Some(l)) => l - f,
            _ => Duration::ZERO,
        },
        first: b.first,
        last: b.last,
    }
}

/// `webhooks`: deliveries per second, live and draining a backlog, for each endpoint count.
pub async fn deliveries(
    server: &mut Server,
    scratch: &Scratch,
    tenants: &[Tenant],
    opts: &Options,
) -> anyhow::Result<()> {
    let needed: usize = opts.webhook_endpoints.iter().sum();
    if needed > tenants.len() {
        bail!(
            "--webhook-endpoints needs {needed} businesses; --businesses is {}",
            tenants.len()
        );
    }
    let receiver = Receiver::start().await?;
    let client = reqwest::Client::new();
    let database = if scratch.pg.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut rows = Vec::new();
    let mut offset = 0;
    for &n in &opts.webhook_endpoints {
        let group: Vec<&Tenant> = tenants[offset..offset + n].iter().collect();
        offset += n;
        for (i, tenant) in group.iter().enumerate() {
            let name = format!("e{n}-{i}");
            let (_, secret) = create_endpoint(
                &client,
                server,
                tenant,
                &receiver.url(&name),
                &["application.created"],
            )
            .await?;
            receiver.expect(&name, &secret)?;
        }

        // Live: the deliveries follow the changes that emit them.
        receiver.reset();
        let started = Instant::now();
        let (created, errors) =
            flood_applications(server, &group, opts.connections, opts.duration).await?;
        let flood_ended = Instant::now();
        let all = receiver.wait_for(created, Duration::from_secs(120)).await;
        let d = drained(&receiver);
        let until_last = d.last.map_or(Duration::ZERO, |l| l - started);
        rows.push(format!(
            "| {database} | {n} | live | {created} created ({:.0}/s, {errors} errors) | {} | {:.0} | {:.2} | {} | {} | {} |",
            created as f64 / (flood_ended - started).as_secs_f64(),
            d.received,
            d.received as f64 / until_last.as_secs_f64().max(1e-9),
            d.last.map_or(0.0, |l| l.saturating_duration_since(flood_ended).as_secs_f64()),
            d.duplicates,
            d.bad_signatures,
            if all { "all".to_owned() } else { format!("MISSING {}", created - d.received) },
        ));
        eprintln!("{}", rows.last().map_or("", String::as_str));

        // Drain: a backlog queued while no worker runs, sent once the server is back.
        receiver.reset();
        let businesses: Vec<Uuid> = group
            .iter()
            .map(|t| Uuid::from_str(&t.business))
            .collect::<Result<_, _>>()?;
        let backlog = opts.webhook_backlog;
        let url = scratch.url.clone();
        let mut restarted_at = Instant::now();
        server
            .restart_after(async || {
                emit_backlog(&url, &businesses, backlog).await?;
                restarted_at = Instant::now();
                Ok(())
            })
            .await?;
        let all = receiver
            .wait_for(backlog as u64, Duration::from_secs(600))
            .await;
        let d = drained(&receiver);
        let from_start = d.last.map_or(Duration::ZERO, |l| l - restarted_at);
        rows.push(format!(
            "| {database} | {n} | drain | {backlog} queued | {} | **{:.0}** | first after {:.2} s, all after {:.2} s ({:.0}/s) | {} | {} | {}; {} out of order |",
            d.received,
            d.received as f64 / d.spread.as_secs_f64().max(1e-9),
            d.first.map_or(0.0, |f| (f - restarted_at).as_secs_f64()),
            from_start.as_secs_f64(),
            d.received as f64 / from_start.as_secs_f64().max(1e-9),
            d.duplicates,
            d.bad_signatures,
            if all { "all".to_owned() } else { format!("MISSING {}", backlog as u64 - d.received) },
            d.inversions,
        ));
        eprintln!("{}", rows.last().map_or("", String::as_str));
    }
    println!(
        "webhook deliveries, {} connections creating, {} s live:",
        opts.connections,
        opts.duration.as_secs()
    );
    println!(
        "| database | endpoints | phase | events | delivered | deliveries/s | after | duplicates | bad signatures | arrived |"
    );
    println!("|---|---:|---|---|---:|---:|---|---:|---:|---|");
    for row in rows {
        println!("{row}");
    }
    // The worker records outcomes just after the receiver has them: give the last ones a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut statuses = delivery_statuses(&scratch.url).await?;
    while statuses.iter().any(|(s, _, _)| s == "pending") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        statuses = delivery_statuses(&scratch.url).await?;
    }
    println!("deliveries in the database (status, count, attempts):");
    for (status, count, attempts) in statuses {
        println!("  {status}: {count} deliveries, {attempts} attempts");
    }
    Ok(())
}

/// `webhook-overhead`: the metered write without and with one endpoint on each writing
/// business (subscribed to `member.joined`, which the write never emits), in alternating
/// rounds; the median of each round's ratio.
pub async fn overhead(
    server: &Server,
    tenants: &Arc<Vec<Tenant>>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let client = reqwest::Client::new();
    let rounds: usize = std::env::var("SAASKIT_BENCH_WEBHOOK_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r >= 1)
        .unwrap_or(6);
    // A control run: both sides without endpoints, to show how far two identical sides drift
    // apart on this machine.
    let control = std::env::var_os("SAASKIT_BENCH_WEBHOOK_CONTROL").is_some();
    // Warm-up, not counted.
    drive(
        server,
        tenants,
        "record",
        connections,
        Duration::from_secs(1),
    )
    .await?;
    let mut endpoints: Vec<(usize, String)> = Vec::new();
    // Per round: throughput with over without, and the server's CPU time per write without
    // over with (so that, for both, below 1 means the endpoints cost something).
    let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    println!(
        "the metered write without and with an endpoint per business ({} businesses{}), {connections} connections, {} s each, {rounds} rounds:",
        tenants.len(),
        if control {
            "; CONTROL: no endpoints on either side"
        } else {
            ""
        },
        duration.as_secs()
    );
    println!("| round | endpoints | req/s | p50 ms | p99 ms | errors | server CPU µs/write |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let (mut rps, mut cpu) = ([0.0f64; 2], [0.0f64; 2]);
        for with in order {
            if with && !control && endpoints.is_empty() {
                for (i, t) in tenants.iter().enumerate() {
                    let url = receiver.url(&format!("idle-{i}"));
                    let (id, _) =
                        create_endpoint(&client, server, t, &url, &["member.joined"]).await?;
                    endpoints.push((i, id));
                }
            }
            if !with {
                for (i, id) in endpoints.drain(..) {
                    client
                        .delete(format!("{}/api/v1/webhooks/{id}", server.base))
                        .bearer_auth(&tenants[i].token)
                        .send()
                        .await?
                        .error_for_status()
                        .context("deleting a webhook endpoint")?;
                }
            }
            let cpu_before = crate::path::cpu_seconds(server.pid())?;
            let o = drive(server, tenants, "record", connections, duration).await?;
            let per_write = (crate::path::cpu_seconds(server.pid())? - cpu_before) * 1e6
                / o.requests.max(1) as f64;
            rps[usize::from(with)] = o.rps;
            cpu[usize::from(with)] = per_write;
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {:.1} |",
                round + 1,
                if with && !control { tenants.len() } else { 0 },
                o.rps,
                o.p50_ms,
                o.p99_ms,
                o.errors,
                per_write
            );
        }
        ratios.push(rps[1] / rps[0]);
        cpu_ratios.push(cpu[0] / cpu[1]);
    }
    if book(&receiver.book).received > 0 {
        bail!("an endpoint subscribed to member.joined received something");
    }
    let (median, low, high) = median_of(&mut ratios);
    println!(
        "median throughput ratio with/without over {rounds} rounds: {median:.3} ({low:.3}–{high:.3}); target ≥ 0.90"
    );
    let (median, low, high) = median_of(&mut cpu_ratios);
    println!("median server-CPU-per-write ratio without/with: {median:.3} ({low:.3}–{high:.3})");
    Ok(())
}

/// The median of `v`, its least and its greatest.
fn median_of(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}
