//! Serving HTTP/1.1 on a listener: the accept loop and its cap on open connections, each
//! connection's header-read and keep-alive timeouts, and the drain at shutdown.
//!
//! hyper's own `header_read_timeout` is left off. Its timer starts whenever hyper begins to
//! wait for a request head, which on a kept-alive connection includes the idle wait for the
//! next request (hyper's `proto/h1/conn.rs`: `State::idle` re-arms it "so we can close the
//! connection if another header isn't received in a timely manner"), so one number would have
//! to be both timeouts: short enough to stop a client trickling a header, long enough to outlast
//! a load balancer's pool. A watchdog per connection keeps the two apart, as nginx does with
//! `client_header_timeout` and `keepalive_timeout`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::config::Config;

/// Connections the metrics listener (`SAASKIT_METRICS_BIND`) keeps open at once: a scraper
/// needs one.
pub const METRICS_MAX_CONNECTIONS: usize = 16;

/// At most one "connection limit reached" warning this often, however long the server stays full.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(5);

/// How a listener's connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub max_connections: usize,
    /// How long requests in flight get to finish once shutdown has begun.
    pub drain_timeout: Duration,
}

impl Limits {
    /// The main listener's limits; the cap, when not configured, is [`default_max_connections`].
    pub fn from_config(config: &Config) -> Limits {
        let max_connections = config
            .max_connections
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .unwrap_or_else(|| default_max_connections(config.database_max_connections));
        Limits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            keep_alive_timeout: Duration::from_secs(config.keep_alive_timeout_secs),
            max_connections,
            drain_timeout: Duration::from_secs(config.shutdown_timeout_secs),
        }
    }
}

/// The open-file limit less what the rest of the process needs: a SQLite connection of the
/// pool holds up to three descriptors (the database, its WAL, its shared memory), a PostgreSQL
/// one a socket; then the metrics listener's connections, and a margin for the listeners, the
/// runtime, mail files and SMTP. A client past the cap waits in the kernel's queue; a server
/// out of descriptors can no longer open its database or answer `/healthz`.
pub fn default_max_connections(database_max_connections: u32) -> usize {
    let reserve = 3 * u64::from(database_max_connections) + METRICS_MAX_CONNECTIONS as u64 + 128;
    let cap = open_file_limit().saturating_sub(reserve).max(64);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

#[cfg(unix)]
fn open_file_limit() -> u64 {
    rlimit::Resource::NOFILE.get_soft().unwrap_or(1024)
}

#[cfg(not(unix))]
fn open_file_limit() -> u64 {
    1024
}

/// Raises the soft limit on open files to the hard limit, as Go's runtime does at start: the
/// usual soft limit of 1024 dates from select(2), which tokio does not use, and would cap the
/// server at a thousand connections. Returns the limit now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    #[cfg(unix)]
    return rlimit::increase_nofile_limit(u64::MAX);
    #[cfg(not(unix))]
    Ok(open_file_limit())
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting and lets the
/// requests in flight finish, for up to `limits.drain_timeout`. Each request carries the peer's
/// address as `ConnectInfo<SocketAddr>`. HTTP/1.1 only, with keep-alive and pipelining.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let address = listener.local_addr().ok();
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let graceful = GracefulShutdown::new();
    let mut warned_full: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // A slot first, then the connection: while every slot is taken nothing is accepted, and
        // the kernel's backlog holds the newcomers until a connection closes.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                    tracing::warn!(
                        address = ?address,
                        max_connections = limits.max_connections,
                        "connection limit reached; new connections wait until one closes (SAASKIT_MAX_CONNECTIONS)"
                    );
                    warned_full = Some(Instant::now());
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            graceful.watcher(),
            slot,
        ));
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            address = ?address,
            timeout_secs = limits.drain_timeout.as_secs(),
            "requests still in flight at the shutdown timeout; closing"
        );
    }
}

/// A failed accept is the peer's doing (it left before we took it: nothing to do) or ours, most
/// often EMFILE: pause rather than spin, so that descriptors can free up.
async fn accept_failed(err: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection, holding its `slot`, until the client closes it, a timeout closes it
/// (dropping the connection closes the socket), or shutdown drains it.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    limits: Limits,
    watcher: Watcher,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Mutex::new(Activity::opened(Instant::now())));
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let handling = Handling::begin(requests.clone());
        let response = router.clone().oneshot(req);
        async move {
            let response = response.await;
            drop(handling);
            response
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // Off, and no timer given: the watchdog below keeps both timeouts (see the module's comment).
    http.header_read_timeout(None);
    let connection = watcher.watch(http.serve_connection(io, service));
    tokio::pin!(connection);
    loop {
        let now = Instant::now();
        let deadline = lock(&activity).deadline(&limits);
        // While a request is handled there is no deadline (SAASKIT_REQUEST_TIMEOUT bounds the
        // request); look again a timeout later.
        let wake =
            deadline.unwrap_or(now + limits.header_read_timeout.min(limits.keep_alive_timeout));
        tokio::select! {
            served = &mut connection => {
                if let Err(err) = served {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                if lock(&activity).deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("closing a connection that sent no request in time");
                    return;
                }
            }
        }
    }
}

/// What the watchdog knows of a connection.
#[derive(Debug)]
struct Activity {
    /// Requests being handled: one at most on HTTP/1.1 (pipelined ones wait in hyper's buffer).
    handling: u32,
    /// When the request head now awaited began: the connection's opening for the first, the
    /// first byte received after the previous request for the others; `None` while none is.
    head_started: Option<Instant>,
    /// The last byte read or written.
    last_io: Instant,
}

impl Activity {
    fn opened(now: Instant) -> Activity {
        Activity {
            handling: 0,
            head_started: Some(now),
            last_io: now,
        }
    }

    /// When the connection is to be closed if nothing changes; `None` while a request is handled.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.handling > 0 {
            return None;
        }
        Some(match self.head_started {
            Some(started) => started + limits.header_read_timeout,
            None => self.last_io + limits.keep_alive_timeout,
        })
    }

    fn received(&mut self, now: Instant) {
        self.last_io = now;
        // Bytes read while a request is handled are its body (or, pipelined, the next request,
        // which the keep-alive timeout then bounds).
        if self.handling == 0 && self.head_started.is_none() {
            self.head_started = Some(now);
        }
    }

    fn sent(&mut self, now: Instant) {
        self.last_io = now;
    }
}

fn lock(activity: &Mutex<Activity>) -> MutexGuard<'_, Activity> {
    activity.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request being handled, from its head's arrival to its response (its body is then written,
/// which counts as activity); dropped also when the handler is.
struct Handling(Arc<Mutex<Activity>>);

impl Handling {
    fn begin(activity: Arc<Mutex<Activity>>) -> Handling {
        {
            let mut state = lock(&activity);
            state.handling += 1;
            state.head_started = None;
        }
        Handling(activity)
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.handling = state.handling.saturating_sub(1);
        state.last_io = Instant::now();
    }
}

/// The connection's socket, noting each byte that passes for the watchdog.
struct Watched {
    stream: TcpStream,
    activity: Arc<Mutex<Activity>>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            lock(&self.activity).received(Instant::now());
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            lock(&self.activity).sent(Instant::now());
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            lock(&self.activity).sent(Instant::now());
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(75),
            max_connections: 10,
            drain_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_to_send_its_first_request() {
        let opened = Instant::now();
        let mut activity = Activity::opened(opened);
        assert_eq!(
            activity.deadline(&limits()),
            Some(opened + Duration::from_secs(30))
        );
        // Half a request line does not buy more time.
        activity.received(opened + Duration::from_secs(10));
        assert_eq!(
            activity.deadline(&limits()),
            Some(opened + Duration::from_secs(30))
        );
    }

    #[test]
    fn a_kept_alive_connection_idles_for_the_keep_alive_timeout_then_has_the_header_timeout() {
        let activity = Arc::new(Mutex::new(Activity::opened(Instant::now())));
        let handling = Handling::begin(activity.clone());
        assert_eq!(
            lock(&activity).deadline(&limits()),
            None,
            "no deadline while handled"
        );
        drop(handling);
        let answered = lock(&activity).last_io;
        assert_eq!(
            lock(&activity).deadline(&limits()),
            Some(answered + Duration::from_secs(75))
        );
        let next = answered + Duration::from_secs(60);
        lock(&activity).received(next);
        assert_eq!(
            lock(&activity).deadline(&limits()),
            Some(next + Duration::from_secs(30))
        );
    }

    #[test]
    fn the_default_cap_leaves_room_for_the_database_and_files() {
        let limit = open_file_limit();
        let cap = default_max_connections(16) as u64;
        assert!(cap >= 64);
        if limit > 1024 {
            assert!(cap < limit, "{cap} of {limit}");
            assert!(limit - cap >= 3 * 16 + METRICS_MAX_CONNECTIONS as u64);
        }
    }
}
