//! Mail end to end over real SMTP, across an outage and a restart.

use chrono::Duration;
use reqwest::StatusCode;
use saaskit::db::Db;
use serde_json::json;

use crate::db_test;
use crate::helpers::*;
use crate::smtp_sink::{SmtpSink, key_in};

/// Signs up `email` and delivers the verification mail through the default transport (files),
/// so the SMTP sink sees only what the test sends after.
async fn signed_up(app: &TestApp, email: &str) {
    app.signup(email).await;
    assert_eq!(app.deliver_mail().await.sent, 1);
}

async fn smtp_app(app: TestApp, sink: &SmtpSink) -> TestApp {
    let (test_db, clock) = (app.test_db.clone(), app.clock.clone());
    drop(app);
    let url = sink.url();
    TestApp::spawn_configured(test_db, clock, move |c| c.smtp_url = Some(url)).await
}

/// The reset mails in the outbox: attempts, sent, last error.
async fn outbox_state(db: &Db) -> Vec<(i64, bool, Option<String>)> {
    let sql = "SELECT attempts, sent_at IS NOT NULL, last_error FROM outbox \
               WHERE subject = 'Reset your password' ORDER BY created_at";
    match db {
        Db::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await,
    }
    .expect("read the outbox")
}

db_test! {
    async fn reset_mail_goes_out_over_smtp(app) {
        let sink = SmtpSink::start().await;
        signed_up(&app, "ada@example.com").await;
        let app = smtp_app(app, &sink).await;
        let (status, _) = app.post("/api/v1/password/reset", None, json!({"email": "ada@example.com"})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let done = app.deliver_mail().await;
        assert_eq!(done.sent, 1);
        let got = sink.messages();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].to, vec!["ada@example.com".to_owned()]);
        assert!(got[0].from.contains("no-reply@saaskit.localhost"));
        let data = &got[0].data;
        assert!(data.contains("Subject: Reset your password"), "{data}");
        assert!(data.contains("Message-ID: <"), "{data}");
        assert!(data.contains("Content-Type: text/html"), "{data}");
        let key = key_in(&got[0].data);
        assert!(data.contains(&format!("http://localhost:8000/reset-password?key={key}")));
        let (status, _) = app.post("/api/v1/password/reset/confirm", None, json!({"key": key, "password": "a brand new passphrase"})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(outbox_state(&app.db).await, vec![(1, true, None)]);
    }
}

db_test! {
    async fn mail_survives_an_smtp_outage(app) {
        let sink = SmtpSink::start().await;
        signed_up(&app, "ada@example.com").await;
        let app = smtp_app(app, &sink).await;
        sink.set_up(false);
        app.post("/api/v1/password/reset", None, json!({"email": "ada@example.com"})).await;
        let done = app.deliver_mail().await;
        assert_eq!((done.sent, done.retrying), (0, 1));
        let state = outbox_state(&app.db).await;
        assert_eq!(state.len(), 1);
        assert_eq!((state[0].0, state[0].1), (1, false));
        assert!(state[0].2.as_deref().is_some_and(|e| !e.is_empty()), "the error is kept: {state:?}");

        // Not due yet: nothing is attempted before the backoff.
        sink.set_up(true);
        assert_eq!(app.deliver_mail().await.sent, 0);
        assert!(sink.messages().is_empty());
        app.clock.advance(Duration::seconds(30));
        assert_eq!(app.deliver_mail().await.sent, 1);
        assert_eq!(sink.messages().len(), 1);
        assert_eq!(app.deliver_mail().await.sent, 0, "sent once, never twice");
        assert_eq!(sink.messages().len(), 1);
    }
}

db_test! {
    async fn mail_queued_before_a_restart_is_sent_after_it(app) {
        let sink = SmtpSink::start().await;
        signed_up(&app, "ada@example.com").await;
        let app = smtp_app(app, &sink).await;
        app.post("/api/v1/password/reset", None, json!({"email": "ada@example.com"})).await;
        // The server stops before its worker ran (a graceful stop first finishes the reset
        // request it has answered: the mail is queued).
        app.app.background_idle().await;
        let (test_db, clock) = (app.test_db.clone(), app.clock.clone());
        drop(app);
        let url = sink.url();
        let again = TestApp::spawn_configured(test_db, clock, move |c| c.smtp_url = Some(url)).await;
        assert_eq!(again.deliver_mail().await.sent, 1);
        assert_eq!(sink.messages().len(), 1);
        assert_eq!(sink.messages()[0].to, vec!["ada@example.com".to_owned()]);
    }
}

const KEY_HASHES: &str = "SELECT hash FROM one_time_keys ORDER BY created_at, id";

db_test! {
    async fn sent_mail_keeps_no_secret_in_the_database(app) {
        app.signup("ada@example.com").await;
        app.post("/api/v1/password/reset", None, json!({"email": "ada@example.com"})).await;
        let key = key_in(&app.only_mail_to("ada@example.com", RESET_SUBJECT).await);
        let verification = app.verification_key("ada@example.com").await;
        let sql = "SELECT subject || body_text || body_html FROM outbox";
        let stored: Vec<String> = match &app.db {
            Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Db::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        }
        .expect("read the outbox");
        assert_eq!(stored.len(), 2);
        assert!(stored.iter().all(|s| !s.contains(&key) && !s.contains(&verification)), "{stored:?}");
        let hashes: Vec<Vec<u8>> = match &app.db {
            Db::Sqlite(p) => sqlx::query_scalar(KEY_HASHES).fetch_all(p).await,
            Db::Postgres(p) => sqlx::query_scalar(KEY_HASHES).fetch_all(p).await,
        }
        .expect("read keys");
        assert_eq!(hashes, vec![saaskit::secret::digest(&verification), saaskit::secret::digest(&key)]);
    }
}

db_test! {
    async fn non_ascii_mail_goes_out_as_8bit_over_smtp(app) {
        let sink = SmtpSink::start().await;
        let (status, _) = app
            .post(
                "/api/v1/signup",
                None,
                json!({"business": {"name": "Café"}, "email": "zoe@example.com", "first_name": "Zoë", "last_name": "SS", "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(app.deliver_mail().await.sent, 1, "the verification mail, to a file");
        let app = smtp_app(app, &sink).await;
        app.post("/api/v1/password/reset", None, json!({"email": "zoe@example.com"})).await;
        assert_eq!(app.deliver_mail().await.sent, 1);
        let data = &sink.messages()[0].data;
        assert!(data.contains("Content-Transfer-Encoding: 8bit"), "{data}");
        assert!(data.contains("Hello “Zoë”,"), "{data}");
        let key = key_in(data);
        assert!(data.contains(&format!("/reset-password?key={key}")));
    }
}

db_test! {
    async fn a_send_to_a_server_that_never_answers_is_abandoned_at_half_the_lease(app) {
        // A server that accepts the connection and never greets: the SMTP client bounds only
        // its connect, so without a limit of its own the worker would wait forever while the
        // lease ran out and another replica sent the message too.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        signed_up(&app, "ada@example.com").await;
        let (test_db, clock) = (app.test_db.clone(), app.clock.clone());
        drop(app);
        let app = TestApp::spawn_configured(test_db, clock, move |c| {
            c.smtp_url = Some(format!("smtp://127.0.0.1:{port}?tls=none"));
            c.mail_lease_secs = 10;
        })
        .await;
        let (status, _) = app.post("/api/v1/password/reset", None, json!({"email": "ada@example.com"})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let started = std::time::Instant::now();
        let done = app.deliver_mail().await;
        let took = started.elapsed();
        assert_eq!((done.sent, done.retrying), (0, 1), "{done:?}");
        assert!(took >= std::time::Duration::from_secs(5) && took < std::time::Duration::from_secs(9), "{took:?}");
        let state = outbox_state(&app.db).await;
        assert_eq!(state.len(), 1);
        assert_eq!((state[0].0, state[0].1), (1, false));
        let error = state[0].2.as_deref().unwrap_or_default();
        assert!(error.contains("half the mail lease"), "{error}");
    }
}

db_test! {
    async fn a_late_failure_leaves_a_message_another_worker_has_claimed_since_alone(app) {
        use saaskit::store::outbox;
        app.signup("ada@example.com").await; // queues the verification mail
        let claim = |at: saaskit::db::Timestamp| {
            let db = app.db.clone();
            async move {
                let mut tx = db.begin().await.expect("begin");
                let claimed = outbox::claim_due(tx.conn(), at, at.plus(Duration::seconds(120)), 10)
                    .await
                    .expect("claim");
                tx.commit().await.expect("commit");
                claimed
            }
        };
        let now = app.clock_now();
        // Worker A claims it and stalls; its lease runs out and worker B claims it.
        let a = claim(now).await;
        assert_eq!(a.iter().map(|m| m.attempts).collect::<Vec<_>>(), [1]);
        let later = now.plus(Duration::seconds(121));
        let b = claim(later).await;
        assert_eq!(b.iter().map(|m| m.attempts).collect::<Vec<_>>(), [2]);
        let id = b[0].id;
        // A's late failure changes nothing: B keeps its lease, nothing is given up on.
        let mut tx = app.db.begin().await.expect("begin");
        assert!(!outbox::schedule_retry(tx.conn(), id, 1, later, "A's late failure").await.expect("retry"));
        assert!(!outbox::mark_failed(tx.conn(), id, 1, later, "A's late failure").await.expect("fail"));
        tx.commit().await.expect("commit");
        assert!(claim(later.plus(Duration::seconds(1))).await.is_empty(), "still leased to B");
        // B's own outcome is recorded.
        let mut tx = app.db.begin().await.expect("begin");
        assert!(outbox::schedule_retry(tx.conn(), id, 2, later.plus(Duration::seconds(30)), "B failed").await.expect("retry"));
        tx.commit().await.expect("commit");
        assert_eq!(claim(later.plus(Duration::seconds(30))).await.len(), 1, "due again after B's retry delay");
    }
}
