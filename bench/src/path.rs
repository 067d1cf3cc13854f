//! The cost of the request path: saaskit's `/healthz` and `/api/v1/me` against a bare axum
//! server answering the same `/healthz` body, built into this harness and run as its own process
//! in the same run. The three are measured in turn, then again in reverse (steady drift on a
//! shared machine falls on all three alike), by a lean client: one hyper HTTP/1.1 connection per
//! worker, no pool, no redirects, nothing parsed but the status, so that the load generator,
//! which shares the machine's cores with the server, takes as little of them as it can.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::http::{Outcome, Server, Tenant, percentiles};

/// `saaskit-bench bare --bind ADDR`: the reference, an axum 0.8 server with its defaults
/// answering `GET /healthz` with the JSON saaskit's own `/healthz` answers.
pub async fn serve_bare(bind: SocketAddr) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct Health {
        status: &'static str,
    }
    let app = axum::Router::new().route(
        "/healthz",
        axum::routing::get(|| async { axum::Json(Health { status: "ok" }) }),
    );
    let listener = tokio::net::TcpListener::bind(bind).await?;
    if std::env::var_os("SAASKIT_BENCH_BARE_ON_SAASKIT_SERVER").is_some() {
        // The same router behind saaskit's connection handling (its timeouts and cap): what
        // that layer costs by itself.
        let limits = saaskit::server::Limits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(1),
        };
        saaskit::server::serve(listener, app, limits, std::future::pending()).await;
        return Ok(());
    }
    axum::serve(listener, app).await?;
    Ok(())
}

struct Bare {
    child: Child,
    address: SocketAddr,
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_bare() -> anyhow::Result<Bare> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new(std::env::current_exe().context("this harness's own path")?)
        .args(["bare", "--bind", &address.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the bare axum server")?;
    let bare = Bare { child, address };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        if Instant::now() > deadline {
            bail!("the bare axum server did not listen within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(bare)
}

/// One endpoint as the lean client asks for it.
struct Target {
    name: &'static str,
    /// The serving process, whose CPU time each request costs.
    pid: u32,
    address: SocketAddr,
    path: &'static str,
    /// `Authorization` per worker (a tenant's token), or none.
    tokens: Option<Arc<Vec<String>>>,
}

/// The CPU time (user and system, all its threads) process `pid` has used, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = procfs::process::Process::new(i32::try_from(pid)?)?.stat()?;
    Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// Drives `target` with `connections` workers, one kept-alive connection each, for `duration`;
/// with the serving process's CPU time per answered request, in microseconds: what a request
/// costs the server whatever share of the cores it was given.
async fn drive(
    target: &Target,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(Outcome, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(connections);
    for worker in 0..connections {
        let stream = tokio::net::TcpStream::connect(target.address).await?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let authorization = target
            .tokens
            .as_ref()
            .and_then(|t| t.get(worker % t.len().max(1)))
            .map(|token| format!("Bearer {token}"));
        let (path, host, stop) = (target.path, target.address.to_string(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(200_000);
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut request = hyper::Request::get(path).header("host", &host);
                if let Some(authorization) = &authorization {
                    request = request.header("authorization", authorization);
                }
                let Ok(request) = request.body(Empty::new()) else {
                    errors += 1;
                    break;
                };
                let sent = Instant::now();
                // HTTP/1: the connection takes the next request once it has finished the last.
                if sender.ready().await.is_err() {
                    errors += 1;
                    break;
                }
                let ok = match sender.send_request(request).await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        response.into_body().collect().await.is_ok() && ok
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let cpu_before = cpu_seconds(target.pid)?;
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let (mut all, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (latencies, failed) = worker.await?;
        all.extend(latencies);
        errors += failed;
    }
    let cpu = cpu_seconds(target.pid)? - cpu_before;
    let answered = all.len().max(1) as f64;
    let elapsed = started.elapsed().as_secs_f64();
    Ok((
        percentiles(target.name, all, errors, elapsed),
        cpu * 1e6 / answered,
    ))
}

/// Runs bare, `/healthz` and `/me` in rounds (every other one reversed), and prints each and
/// the median shares of the bare server (each round's against that round's bare figure).
pub async fn run(
    server: &Server,
    tenants: &[Tenant],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let bare = start_bare().await?;
    let saaskit: SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .context("the server's address")?;
    let tokens = Arc::new(tenants.iter().map(|t| t.token.clone()).collect::<Vec<_>>());
    let targets = [
        Target {
            name: "bare axum /healthz",
            pid: bare.child.id(),
            address: bare.address,
            path: "/healthz",
            tokens: None,
        },
        Target {
            name: "saaskit /healthz",
            pid: server.pid(),
            address: saaskit,
            path: "/healthz",
            tokens: None,
        },
        Target {
            name: "saaskit /api/v1/me",
            pid: server.pid(),
            address: saaskit,
            path: "/api/v1/me",
            tokens: Some(tokens),
        },
    ];
    // A short warm-up of each (connections, caches, the auth cache), not counted.
    for target in &targets {
        drive(target, connections, Duration::from_secs(1)).await?;
    }
    // Rounds of the three, every other one in reverse order, each round's shares taken against
    // that round's bare figure; the median share is the result. On a shared 2-core machine the
    // capacity left to us drifted by up to a third within minutes: many short alternating rounds see
    // the same drift on all three, and the median ignores a round that a burst elsewhere spoilt.
    let rounds: usize = std::env::var("SAASKIT_BENCH_PATH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r >= 1)
        .unwrap_or(6);
    println!(
        "request path, {connections} connections, {} s per target, {rounds} rounds:",
        duration.as_secs()
    );
    println!("| round | target | req/s | p50 ms | p99 ms | max ms | errors | server CPU µs/req |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut rps = vec![[0.0f64; 3]; rounds];
    let mut cpu = vec![[0.0f64; 3]; rounds];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for i in order {
            let target = &targets[i];
            let (o, cpu_per_request) = drive(target, connections, duration).await?;
            rps[round][i] = o.rps;
            // Inverted, so that a share is "ours / bare" as for throughput.
            cpu[round][i] = 1.0 / cpu_per_request.max(f64::MIN_POSITIVE);
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.1} |",
                round + 1,
                o.target,
                o.rps,
                o.p50_ms,
                o.p99_ms,
                o.max_ms,
                o.errors,
                cpu_per_request
            );
        }
    }
    if rps.iter().any(|r| r[0] <= 0.0) {
        bail!("the bare server answered nothing");
    }
    let shares = |figures: &[[f64; 3]], i: usize| {
        let mut shares: Vec<f64> = figures.iter().map(|r| r[i] / r[0]).collect();
        shares.sort_by(f64::total_cmp);
        let median = if shares.len() % 2 == 1 {
            shares[shares.len() / 2]
        } else {
            (shares[shares.len() / 2 - 1] + shares[shares.len() / 2]) / 2.0
        };
        (median, shares[0], shares[shares.len() - 1])
    };
    let (healthz, me) = (shares(&rps, 1), shares(&rps, 2));
    println!(
        "median share of the bare server over {rounds} rounds: /healthz {:.2} ({:.2}–{:.2}; target 0.75), /me {:.2} ({:.2}–{:.2}; target 0.55)",
        healthz.0, healthz.1, healthz.2, me.0, me.1, me.2
    );
    // The same by the server's CPU time per request (bare's over ours), which the machine's
    // drift moves far less than throughput: the cost of our layers, whatever the client took.
    let (healthz, me) = (shares(&cpu, 1), shares(&cpu, 2));
    println!(
        "median CPU-cost share (bare µs/req over ours): /healthz {:.2} ({:.2}–{:.2}), /me {:.2} ({:.2}–{:.2})",
        healthz.0, healthz.1, healthz.2, me.0, me.1, me.2
    );
    drop(bare);
    Ok(())
}
