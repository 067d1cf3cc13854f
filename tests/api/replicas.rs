//! Three `saaskit serve` processes on one database (issue #17, item 4): a quota stays exact
//! when its writes arrive through all three; the renewal sweep, run by all three every second,
//! renews each subscription once; and a replica killed with SIGKILL in the middle of a write
//! flood loses no write it acknowledged (the meter equals the stored rows), while the mail it
//! had claimed and was sending is sent by another once its lease has run out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use saaskit::billing::admin::{self, NewPlan};
use saaskit::billing::events::Actor;
use saaskit::clock::ManualClock;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cli::Server;
use crate::helpers::*;
use crate::webhook_replicas::Deployment;

/// An SDK key and an application of `owner`'s business, made through `server`.
async fn sdk(d: &Deployment, server: &Server, owner: &str) -> (String, String) {
    let key = d
        .post(
            server,
            "/api/v1/api-keys",
            Some(owner),
            json!({"name": "sdk"}),
        )
        .await;
    let application = d
        .post(
            server,
            "/api/v1/applications",
            Some(owner),
            json!({"name": "web"}),
        )
        .await;
    (
        key["key"].as_str().expect("a key").to_owned(),
        application["id"].as_str().expect("an id").to_owned(),
    )
}

/// One metered write through `base`: its status and body, or the transport error (a replica
/// that died before answering).
async fn record(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    application: &str,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let res = client
        .post(format!("{base}/api/v1/recordings"))
        .bearer_auth(key)
        .json(&json!({"application_id": application, "duration_ms": 1200}))
        .send()
        .await?;
    let status = res.status();
    Ok((status, res.json().await?))
}

/// What each replica says the business has used of `meter`.
async fn used_per_replica(
    d: &Deployment,
    replicas: &[&Server],
    key: &str,
    meter: &str,
) -> Vec<i64> {
    let mut out = Vec::new();
    for server in replicas {
        let entitlements = d.get(server, "/api/v1/entitlements", key).await;
        out.push(entitlements["meters"][meter]["used"].as_i64().unwrap_or(-1));
    }
    out
}

/// An in-process server on the deployment's database, for what only staff can do (plans,
/// credits) and for reading the tables; its clock is the real one's current time.
async fn staff(d: &Deployment) -> TestApp {
    TestApp::spawn_on(d.test_db.clone(), ManualClock::new(chrono::Utc::now())).await
}

async fn a_quota_is_exact_across_three_replicas(backend: Backend) {
    let d = Deployment::new(backend).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(d.replica_with(&[]).await);
    }
    let owner = d.owner(&replicas[0], "quota@example.com").await;
    let (key, application) = sdk(&d, &replicas[1], &owner).await;

    // The free trial allows 1,000 recordings a cycle; 1,500 arrive at once, a third through
    // each replica, 48 in flight.
    const WRITES: usize = 1500;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bases: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.base.clone()).collect());
    let workers: Vec<_> = (0..48)
        .map(|_| {
            let (next, bases, client) = (next.clone(), bases.clone(), d.client.clone());
            let (key, application) = (key.clone(), application.clone());
            tokio::spawn(async move {
                let mut statuses = BTreeMap::<u16, usize>::new();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= WRITES {
                        return statuses;
                    }
                    let (status, body) = record(&client, &bases[n % 3], &key, &application)
                        .await
                        .expect("a live replica answers");
                    if status == StatusCode::PAYMENT_REQUIRED {
                        assert_eq!(body["code"], "quota_exceeded", "{body}");
                    }
                    *statuses.entry(status.as_u16()).or_default() += 1;
                }
            })
        })
        .collect();
    let mut statuses = BTreeMap::<u16, usize>::new();
    for worker in workers {
        for (status, n) in worker.await.expect("worker") {
            *statuses.entry(status).or_default() += n;
        }
    }
    assert_eq!(
        statuses,
        BTreeMap::from([(201, 1000), (402, 500)]),
        "exactly the limit is written, whichever replica each write reaches"
    );
    let staff = staff(&d).await;
    assert_eq!(staff.count("recordings").await, 1000);
    let replicas: Vec<&Server> = replicas.iter().collect();
    assert_eq!(
        used_per_replica(&d, &replicas, &key, "recordings").await,
        [1000, 1000, 1000]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_is_exact_across_three_replicas_sqlite() {
    a_quota_is_exact_across_three_replicas(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn a_quota_is_exact_across_three_replicas_postgres() {
    a_quota_is_exact_across_three_replicas(Backend::Postgres).await;
}

/// What each replica counts as renewed by its own sweeps.
async fn renewed_by(d: &Deployment, replicas: &[Server]) -> Vec<u64> {
    let mut all = Vec::new();
    for r in replicas {
        all.push(d.metric(r, "saaskit_renewals_total").await);
    }
    all
}

/// Three processes sweeping every second on one database renew each due subscription once, and
/// never again. Which of them renews what is up to their timers (the first to wake usually
/// takes every one of these 30); the race itself, two sweeps claiming the same pages at once, is
/// forced in-process by `billing::concurrent_sweeps_charge_each_cycle_exactly_once`.
async fn three_replicas_sweeping_every_second_renew_each_subscription_once(backend: Backend) {
    const BUSINESSES: usize = 30;
    let d = Deployment::new(backend).await;
    let staff = staff(&d).await;
    let pro = NewPlan {
        code: "pro".into(),
        name: "Pro".into(),
        description: String::new(),
        price_minor: 1000,
        currency: "usd".into(),
        cycle_days: 30,
        renews: true,
        fallback_code: None,
        limits: BTreeMap::new(),
        is_public: true,
    };
    admin::create_plan(&staff.app, pro, Actor::Admin(None))
        .await
        .expect("pro plan");
    for i in 0..BUSINESSES {
        let (_, business) = staff
            .signup_business(&format!("renew{i}@example.com"))
            .await;
        admin::set_plan(&staff.app, business, "pro", Actor::Admin(None))
            .await
            .expect("set plan");
        admin::grant_credits(&staff.app, business, 3000, None, Actor::Admin(None))
            .await
            .expect("grant");
    }
    let charges = "ledger_entries WHERE kind = 'renewal_charge'";
    let renewals = "events WHERE kind = 'renewed'";
    let (charges_before, renewals_before) =
        (staff.count(charges).await, staff.count(renewals).await);

    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(d.replica_with(&[("SAASKIT_RENEW_EVERY", "1")]).await);
    }
    // Every pro subscription's period ends now, while the three sweep every second.
    let now = chrono::Utc::now();
    let at = |t: chrono::DateTime<chrono::Utc>| match backend {
        Backend::Sqlite => t.timestamp_micros().to_string(),
        Backend::Postgres => format!("'{}'", t.to_rfc3339()),
    };
    let (start, end) = (
        at(now - chrono::Duration::days(30)),
        at(now - chrono::Duration::seconds(1)),
    );
    let due = staff
        .exec(&format!(
            "UPDATE subscriptions SET current_period_start = {start}, current_period_end = {end} \
             WHERE is_current AND plan_id = (SELECT id FROM plans WHERE code = 'pro')"
        ))
        .await;
    assert_eq!(due, BUSINESSES as u64);

    let deadline = Instant::now() + Duration::from_secs(30);
    while staff.count(renewals).await < renewals_before + BUSINESSES as i64 {
        assert!(
            Instant::now() < deadline,
            "not every subscription renewed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Three more sweeps each: nothing more to renew.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = renewed_by(&d, &replicas).await;
    eprintln!("renewals per replica: {counts:?}");
    assert_eq!(
        counts.iter().sum::<u64>(),
        BUSINESSES as u64,
        "per replica: {counts:?}"
    );
    assert_eq!(
        staff.count(charges).await,
        charges_before + BUSINESSES as i64,
        "one charge each"
    );
    assert_eq!(
        staff.count(renewals).await,
        renewals_before + BUSINESSES as i64,
        "one renewal each"
    );
    // Each current period is the one after the period that ended: renewed once, not twice.
    let (from, to) = (
        at(now + chrono::Duration::days(29)),
        at(now + chrono::Duration::days(31)),
    );
    assert_eq!(
        staff
            .count(&format!(
                "subscriptions WHERE is_current AND current_period_start = {end} \
                 AND current_period_end > {from} AND current_period_end < {to}"
            ))
            .await,
        BUSINESSES as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_sweeping_every_second_renew_each_subscription_once_sqlite() {
    three_replicas_sweeping_every_second_renew_each_subscription_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn three_replicas_sweeping_every_second_renew_each_subscription_once_postgres() {
    three_replicas_sweeping_every_second_renew_each_subscription_once(Backend::Postgres).await;
}

/// An SMTP server that accepts connections and never says a word: a send to it hangs until
/// the sender gives up. Says when it first took a connection.
async fn silent_smtp() -> (u16, Arc<std::sync::Mutex<Option<Instant>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let first = Arc::new(std::sync::Mutex::new(None));
    let seen = first.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            if let Ok(mut first) = seen.lock() {
                first.get_or_insert_with(Instant::now);
            }
            held.push(socket);
        }
    });
    (port, first)
}

async fn a_replica_killed_during_a_write_flood_loses_no_acknowledged_write_and_its_mail_is_sent_by_another(
    backend: Backend,
) {
    // The mail lease is 40 s, so a send may take 20 s: the victim is still waiting for the
    // silent server's greeting when it is killed.
    const LEASE: &str = "40";
    let d = Deployment::new(backend).await;
    let (smtp_port, smtp_first_connection) = silent_smtp().await;
    let smtp = format!("smtp://127.0.0.1:{smtp_port}?tls=none");
    let victim = d
        .replica_with(&[
            ("SAASKIT_MAIL_LEASE_SECS", LEASE),
            ("SAASKIT_SMTP_URL", &smtp),
        ])
        .await;
    let owner = d.owner(&victim, "flood@example.com").await;
    let (key, application) = sdk(&d, &victim, &owner).await;
    let staff = staff(&d).await;
    let business: Uuid = d.get(&victim, "/api/v1/me", &owner).await["business"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("business id");
    staff
        .put_on_plan(business, "flood", &[("recordings", 1_000_000)])
        .await;
    // The victim queued the owner's verification mail at signup and claimed it at once: the
    // silent server took its connection. The others start after, so the message is the
    // victim's.
    let waited = Instant::now() + Duration::from_secs(10);
    let claimed_at = loop {
        if let Some(at) = *smtp_first_connection.lock().expect("lock") {
            break at;
        }
        assert!(
            Instant::now() < waited,
            "the victim did not try to send its mail"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mail_dir = d.workdir.join("mail");
    let others = [
        d.replica_with(&[("SAASKIT_MAIL_LEASE_SECS", LEASE)]).await,
        d.replica_with(&[("SAASKIT_MAIL_LEASE_SECS", LEASE)]).await,
    ];

    // The flood: 48 writers, each through one replica in turn, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let bases = Arc::new(vec![
        victim.base.clone(),
        others[0].base.clone(),
        others[1].base.clone(),
    ]);
    let writers: Vec<_> = (0..48usize)
        .map(|w| {
            let (stop, bases, client) = (stop.clone(), bases.clone(), d.client.clone());
            let (key, application) = (key.clone(), application.clone());
            tokio::spawn(async move {
                let (mut acked, mut lost) = (Vec::new(), 0usize);
                let mut n = w;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    match record(&client, &bases[n % 3], &key, &application).await {
                        Ok((StatusCode::CREATED, body)) => {
                            acked.push(body["id"].as_str().expect("an id").to_owned());
                        }
                        Ok((status, body)) => panic!("{status}: {body}"),
                        // Cut off by the victim's death, or refused by it dead.
                        Err(_) => lost += 1,
                    }
                }
                (acked, lost)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    victim.kill();
    let killed_after = claimed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut acked, mut unanswered) = (Vec::new(), 0);
    for writer in writers {
        let (a, l) = writer.await.expect("writer");
        acked.extend(a);
        unanswered += l;
    }
    eprintln!(
        "flood: {} acknowledged, {unanswered} unanswered; the victim killed {killed_after:?} after its claim",
        acked.len()
    );
    assert!(acked.len() > 300, "the flood wrote {} rows", acked.len());
    assert!(
        unanswered > 0,
        "the flood went on through the victim's death"
    );

    // No acknowledged write is lost, and the meter counts exactly the stored rows (a write the
    // victim committed but could not answer is stored and counted alike).
    let stored = staff.count("recordings").await;
    assert!(
        stored >= acked.len() as i64,
        "{stored} stored of {} acknowledged",
        acked.len()
    );
    for chunk in acked.chunks(200) {
        let ids = chunk
            .iter()
            .map(|id| match backend {
                Backend::Sqlite => format!("X'{}'", id.replace('-', "")),
                Backend::Postgres => format!("'{id}'"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            staff
                .count(&format!("recordings WHERE id IN ({ids})"))
                .await,
            chunk.len() as i64,
            "every acknowledged recording is stored"
        );
    }
    let survivors: Vec<&Server> = others.iter().collect();
    assert_eq!(
        used_per_replica(&d, &survivors, &key, "recordings").await,
        [stored, stored]
    );

    // The victim's mail: sent by another once the lease ran out (40 s after the claim).
    assert!(
        killed_after < Duration::from_secs(20),
        "killed {killed_after:?} after its claim: its send (at most 20 s) was over"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let verification = loop {
        let found = std::fs::read_dir(&mail_dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|f| std::fs::read_to_string(f.path()).ok())
            .filter(|m| m.contains("Subject: Confirm your email address"))
            .collect::<Vec<_>>();
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the victim's mail was never sent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Written once (a file per message); the outbox shows two claims, the victim's and the
    // one that sent it.
    assert_eq!(verification.len(), 1, "one file");
    assert!(
        verification[0].contains("flood@example.com"),
        "{}",
        verification[0]
    );
    assert!(
        claimed_at.elapsed() >= Duration::from_secs(38),
        "sent {:?} after the victim claimed it: before its lease ran out",
        claimed_at.elapsed()
    );
    assert_eq!(
        staff
            .count(
                "outbox WHERE to_address = 'flood@example.com' \
                 AND subject = 'Confirm your email address' AND sent_at IS NOT NULL \
                 AND attempts = 2"
            )
            .await,
        1,
        "claimed by the victim, then sent by another"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_a_write_flood_loses_no_acknowledged_write_sqlite() {
    a_replica_killed_during_a_write_flood_loses_no_acknowledged_write_and_its_mail_is_sent_by_another(
        Backend::Sqlite,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(saaskit_postgres_tests),
    ignore = "PostgreSQL: set SAASKIT_TEST_POSTGRES_URL to run it"
)]
async fn a_replica_killed_during_a_write_flood_loses_no_acknowledged_write_postgres() {
    a_replica_killed_during_a_write_flood_loses_no_acknowledged_write_and_its_mail_is_sent_by_another(
        Backend::Postgres,
    )
    .await;
}
