//! Liveness and readiness.

use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::json;

use crate::db_test;
use crate::helpers::*;

db_test!(
    async fn readiness_reports_each_dependency(app) {
        // The test server runs no background jobs: not ready, and it says why.
        let (status, body) = app.get("/readyz", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            json!({"status": "not_ready", "checks": {"database": "ok", "migrations": "ok", "mail_worker": "not running"}})
        );
        app.app.mail_worker_running.store(true, Ordering::Relaxed);
        let (status, body) = app.get("/readyz", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ready");
        // Liveness does not depend on any of it.
        let (status, body) = app.get("/healthz", None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    }
);

db_test!(
    async fn metrics_are_served_only_with_their_token(app) {
        // Without a configured token the endpoint does not exist.
        let (status, body) = app.get("/metrics", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

        let token = "metrics-token-0123456789";
        let app = TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), |c| {
            c.metrics_token = Some(token.to_owned());
        })
        .await;
        let owner = app.signup_token("metrics@example.com").await;
        let (status, _) = app.get("/api/v1/me", Some(&owner)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app
            .post(
                "/api/v1/login",
                None,
                json!({"email": "metrics@example.com", "password": "wrong password"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A user's session is not the metrics token.
        let (status, _) = app.get("/metrics", Some(&owner)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // The signup's verification mail goes out, leaving the outbox empty.
        assert_eq!(app.deliver_mail().await.sent, 1);

        let res = app
            .client
            .get(app.url("/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .expect("scrape");
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with("text/plain; version=0.0.4")
        );
        let text = res.text().await.expect("body");
        for expected in [
            "saaskit_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"200\"} 1",
            "saaskit_http_requests_total{method=\"POST\",route=\"/api/v1/signup\",status=\"201\"} 1",
            "saaskit_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/me\"} 1",
            "saaskit_logins_failed_total 1",
            "saaskit_errors_total{code=\"invalid_credentials\"} 1",
            "saaskit_outbox_backlog 0",
            "saaskit_db_pool_connections ",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        // Route templates only: no token, key or id from a path ever becomes a label.
        assert!(!text.contains(&owner));
    }
);

db_test!(
    #[cfg(target_os = "linux")]
    async fn metrics_include_the_process_read_from_proc(app) {
        let token = "metrics-token-0123456789";
        let app = TestApp::spawn_configured(app.test_db.clone(), app.clock.clone(), |c| {
            c.metrics_token = Some(token.to_owned());
        })
        .await;
        // Some CPU time to show: a password hashed.
        app.signup_token("process@example.com").await;
        let scrape = || async {
            let res = app
                .client
                .get(app.url("/metrics"))
                .bearer_auth(token)
                .send()
                .await
                .expect("scrape");
            assert_eq!(res.status(), StatusCode::OK);
            let text = res.text().await.expect("body");
            let value = |name: &str| -> f64 {
                let line = text
                    .lines()
                    .find(|l| l.split_once(' ').is_some_and(|(n, _)| n == name))
                    .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
                line.rsplit(' ').next().and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{line:?} has no number"))
            };
            let names = [
                "process_cpu_seconds_total", "process_resident_memory_bytes",
                "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                "process_threads", "process_start_time_seconds",
            ];
            for name in names {
                let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
                assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} is a {kind}:\n{text}");
            }
            names.map(value)
        };
        let [cpu, rss, vsz, open, max, threads, started] = scrape().await;
        // This test process: started within the last few minutes, by the wall clock (the
        // test clock is the app's, not the kernel's).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        assert!(started <= now + 1.0 && started > now - 600.0, "started at {started}, now {now}");
        assert!(cpu > 0.0 && cpu < 600.0, "{cpu} s of CPU");
        assert!(rss > 1_000_000.0 && rss <= vsz, "resident {rss} of virtual {vsz}");
        // The listener, the client's connection and the database at least.
        assert!(open >= 3.0 && open <= max, "{open} open of at most {max}");
        assert!(threads >= 2.0, "{threads} threads (the runtime has two workers)");

        // The CPU counter only grows, and file descriptors opened show at the next scrape.
        // The other tests run in this same process and open and close their own (a test
        // server's pools and sockets: tens at most), so the files opened here are many more
        // than that noise, and the slack is wide.
        let files: Vec<_> = (0..400).map(|_| std::fs::File::open("/proc/self/stat").expect("open")).collect();
        let [cpu_after, .., open_after, _, _, started_after] = scrape().await;
        assert!(cpu_after >= cpu, "{cpu_after} after {cpu}");
        assert!(open_after >= open + 300.0, "{open_after} open with 400 more than {open}");
        assert_eq!(started_after, started);
        drop(files);
    }
);

db_test!(
    async fn a_request_that_outlasts_the_timeout_is_abandoned_with_503_and_counted(app) {
        use tower::ServiceExt;
        // A product route that never finishes, served with a one-second limit.
        let mut config = app.app.config.clone();
        config.request_timeout_secs = 1;
        config.metrics_token = Some("metrics-token-0123456789".to_owned());
        let slow = saaskit::product::Products::new()
            .with(saaskit::product::Product::new("slow").routes([utoipa_axum::routes!(never)]));
        let slow_app = saaskit::app::App::with_db(
            config,
            app.db.clone(),
            std::sync::Arc::new(app.clock.clone()),
            std::sync::Arc::new(slow),
        )
        .expect("valid configuration");
        let router = saaskit::http::router(slow_app);
        let request = |uri: &str| {
            axum::http::Request::builder()
                .uri(uri)
                .header("authorization", "Bearer metrics-token-0123456789")
                .body(axum::body::Body::empty())
                .expect("request")
        };
        let response = router
            .clone()
            .oneshot(request("/api/v1/never"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON problem");
        assert_eq!(body["code"], "timeout", "{body}");

        let metrics = router.oneshot(request("/metrics")).await.expect("infallible");
        let text = http_body_util::BodyExt::collect(metrics.into_body())
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&text);
        let expected = "saaskit_http_requests_total{method=\"GET\",route=\"/api/v1/never\",status=\"503\"} 1";
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
);

/// A product route that never finishes.
#[utoipa::path(get, path = "/never", responses((status = 200, description = "Never.")))]
async fn never() -> &'static str {
    std::future::pending().await
}
