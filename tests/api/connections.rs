//! Connections, on real sockets: idle ones cannot starve the server, a client has a bounded
//! time to send each request head, a kept-alive connection is closed after its idle timeout,
//! and past the connection cap newcomers wait for a free slot instead of being served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::db_test;
use crate::helpers::*;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";
const HALF_A_REQUEST_LINE: &[u8] = b"GET /api/v1/pla";

async fn with(app: &TestApp, configure: impl FnOnce(&mut saaskit::config::Config)) -> TestApp {
    TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), configure).await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// `count` connections, every other one having sent half a request line, the rest nothing.
async fn idle_connections(app: &TestApp, count: usize) -> Vec<(TcpStream, Instant)> {
    let mut open = Vec::with_capacity(count);
    for i in 0..count {
        let opened = Instant::now();
        let mut stream = connect(app).await;
        if i % 2 == 1 {
            stream.write_all(HALF_A_REQUEST_LINE).await.expect("write");
        }
        open.push((stream, opened));
    }
    open
}

/// Waits for the server to close `stream` (EOF or reset) and returns how long it was open; an
/// error if it sent anything or was still open after `limit`.
async fn closed_by_server(
    mut stream: TcpStream,
    opened: Instant,
    limit: Duration,
) -> Result<Duration, String> {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(opened.elapsed()),
        Ok(Ok(n)) => Err(format!(
            "the server sent {:?}",
            String::from_utf8_lossy(&buf[..n])
        )),
        Err(_) => Err(format!("still open after {limit:?}")),
    }
}

/// Reads one response to a `GET /healthz` (its body has a Content-Length) from `stream`.
async fn read_healthz_answer(stream: &mut TcpStream, pending: &mut Vec<u8>) -> String {
    loop {
        let text = String::from_utf8_lossy(pending).into_owned();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().expect("a length"))
                })
                .expect("a Content-Length");
            if rest.len() >= length {
                let used = head.len() + 4 + length;
                pending.drain(..used);
                return head.to_owned();
            }
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "the connection closed before the answer");
        pending.extend_from_slice(&buf[..n]);
    }
}

db_test!(
    async fn thousands_of_idle_connections_do_not_keep_healthz_from_answering(app) {
        let idle = idle_connections(&app, 2_500).await;
        let client = reqwest::Client::new();
        let started = Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(1), client.get(app.url("/healthz")).send())
            .await
            .expect("/healthz answered within a second")
            .expect("send");
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(idle);
    }
);

db_test!(
    async fn connections_that_send_no_whole_request_head_are_closed_after_the_header_read_timeout(app) {
        let app = with(&app, |c| c.header_read_timeout_secs = 1).await;
        let mut closing = JoinSet::new();
        for (stream, opened) in idle_connections(&app, 2_000).await {
            closing.spawn(closed_by_server(stream, opened, Duration::from_secs(6)));
        }
        // A header sent a byte at a time gets no more time than one not sent at all.
        let opened = Instant::now();
        let (mut reader, mut writer) = connect(&app).await.into_split();
        let trickle = tokio::spawn(async move {
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if writer.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(6), reader.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the trickling connection was closed: {read:?}");
        let trickled = opened.elapsed();
        assert!(trickled >= Duration::from_millis(900) && trickled < Duration::from_secs(4), "{trickled:?}");
        trickle.abort();

        let mut closed = 0;
        while let Some(result) = closing.join_next().await {
            let open_for = result.expect("task").expect("closed by the server");
            assert!(open_for >= Duration::from_millis(900), "closed before the timeout: {open_for:?}");
            closed += 1;
        }
        assert_eq!(closed, 2_000);
        // The server itself is fine.
        let (status, _) = app.get("/healthz", None).await;
        assert_eq!(status, reqwest::StatusCode::OK);
    }
);

db_test!(
    async fn a_kept_alive_connection_is_closed_after_the_keep_alive_timeout_not_the_header_one(app) {
        let app = with(&app, |c| {
            c.header_read_timeout_secs = 1;
            c.keep_alive_timeout_secs = 3;
        })
        .await;
        let mut stream = connect(&app).await;
        let mut pending = Vec::new();
        // Two pipelined requests, answered in order on the one connection.
        stream.write_all(&[HEALTHZ, HEALTHZ].concat()).await.expect("write");
        for _ in 0..2 {
            let head = read_healthz_answer(&mut stream, &mut pending).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
        // Idle past the header-read timeout, within the keep-alive one: still open.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stream.write_all(HEALTHZ).await.expect("write");
        let head = read_healthz_answer(&mut stream, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let answered = Instant::now();
        let open_for = closed_by_server(stream, answered, Duration::from_secs(8))
            .await
            .expect("closed by the server");
        assert!(
            open_for >= Duration::from_millis(2_900) && open_for < Duration::from_secs(6),
            "closed {open_for:?} after the last answer"
        );
    }
);

db_test!(
    async fn past_the_connection_cap_newcomers_wait_until_a_connection_closes(app) {
        let app = with(&app, |c| c.max_connections = Some(50)).await;
        let mut holders = Vec::new();
        for _ in 0..50 {
            holders.push(connect(&app).await);
        }
        // The kernel completes the handshake, but the server does not take the connection.
        let mut waiting = connect(&app).await;
        waiting
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let early = tokio::time::timeout(Duration::from_millis(500), waiting.read_to_end(&mut answer)).await;
        assert!(early.is_err(), "answered past the cap: {:?}", String::from_utf8_lossy(&answer));
        // Ten close: the newcomer is served.
        holders.truncate(40);
        tokio::time::timeout(Duration::from_secs(5), waiting.read_to_end(&mut answer))
            .await
            .expect("served once a slot freed")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(holders);
    }
);
