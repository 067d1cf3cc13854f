//! Prometheus metrics, kept per application (so tests and embedded instances do not mix) with
//! no global state: request counts and latency by route template and status, errors by code,
//! renewals, mail failures, and, computed at scrape time, the database pool and the outbox.
//!
//! `/metrics` is never public: it answers on the main listener only with
//! `Authorization: Bearer $SAASKIT_METRICS_TOKEN`, or without authentication on the separate
//! address `SAASKIT_METRICS_BIND` (for a scraper on a private network).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct RouteStats {
    /// Requests by status code.
    by_status: BTreeMap<u16, u64>,
    /// Cumulative counts per bucket, then +Inf.
    buckets: [u64; BUCKETS.len() + 1],
    sum_secs: f64,
}

/// The application's counters.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    pub renewals: AtomicU64,
    pub mail_retries: AtomicU64,
    pub mail_failures: AtomicU64,
    /// The last scheduled backup this process took: when it finished (Unix seconds; 0 for
    /// none yet), its size and how long it took.
    pub backup_last_success: AtomicU64,
    pub backup_last_bytes: AtomicU64,
    pub backup_last_millis: AtomicU64,
    pub backup_failures: AtomicU64,
    pub backups_taken: AtomicU64,
}

/// What is read from the database at scrape time.
pub struct Gauges {
    pub pool_in_use: u32,
    pub pool_size: u32,
    pub outbox_backlog: i64,
    pub outbox_failed: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain counters behind: still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Records one answered request. `route` is the matched template (`/api/v1/keys/{id}`),
    /// never the raw path.
    pub fn observe(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let secs = latency.as_secs_f64();
        let mut routes = lock(&self.routes);
        let stats = routes
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        *stats.by_status.entry(status).or_default() += 1;
        let slot = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        stats.buckets[slot] += 1;
        stats.sum_secs += secs;
    }

    /// Counts a problem answered with `code` (`quota_exceeded`, `invalid_credentials`, …).
    pub fn error(&self, code: &'static str) {
        *lock(&self.errors).entry(code).or_default() += 1;
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.render_into(&mut out, gauges);
        out
    }

    fn render_into(&self, out: &mut String, g: &Gauges) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP saaskit_http_requests_total Requests answered, by route template and status."
        )?;
        writeln!(out, "# TYPE saaskit_http_requests_total counter")?;
        let routes = lock(&self.routes);
        for ((method, route), stats) in routes.iter() {
            for (status, n) in &stats.by_status {
                writeln!(
                    out,
                    "saaskit_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                )?;
            }
        }
        writeln!(
            out,
            "# HELP saaskit_http_request_duration_seconds Time to answer, by route template."
        )?;
        writeln!(
            out,
            "# TYPE saaskit_http_request_duration_seconds histogram"
        )?;
        for ((method, route), stats) in routes.iter() {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += stats.buckets[i];
                writeln!(
                    out,
                    "saaskit_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                )?;
            }
            cumulative += stats.buckets[BUCKETS.len()];
            writeln!(
                out,
                "saaskit_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            )?;
            writeln!(
                out,
                "saaskit_http_request_duration_seconds_sum{{{labels}}} {}",
                stats.sum_secs
            )?;
            writeln!(
                out,
                "saaskit_http_request_duration_seconds_count{{{labels}}} {cumulative}"
            )?;
        }
        drop(routes);

        let errors = lock(&self.errors);
        writeln!(
            out,
            "# HELP saaskit_errors_total Problem documents answered, by code."
        )?;
        writeln!(out, "# TYPE saaskit_errors_total counter")?;
        for (code, n) in errors.iter() {
            writeln!(out, "saaskit_errors_total{{code=\"{code}\"}} {n}")?;
        }
        let quota = errors.get("quota_exceeded").copied().unwrap_or(0);
        let logins = errors.get("invalid_credentials").copied().unwrap_or(0);
        drop(errors);
        counter(
            out,
            "saaskit_quota_refusals_total",
            "Metered requests refused over a plan limit.",
            quota,
        )?;
        counter(
            out,
            "saaskit_logins_failed_total",
            "Logins refused for a wrong email or password.",
            logins,
        )?;
        counter(
            out,
            "saaskit_renewals_total",
            "Subscription cycles renewed by this process's sweeps.",
            self.renewals.load(Ordering::Relaxed),
        )?;
        counter(
            out,
            "saaskit_mail_retries_total",
            "Mail sends that failed and were scheduled again.",
            self.mail_retries.load(Ordering::Relaxed),
        )?;
        counter(
            out,
            "saaskit_mail_failures_total",
            "Mail given up on after every retry.",
            self.mail_failures.load(Ordering::Relaxed),
        )?;
        counter(
            out,
            "saaskit_backups_total",
            "Scheduled backups this process took.",
            self.backups_taken.load(Ordering::Relaxed),
        )?;
        counter(
            out,
            "saaskit_backup_failures_total",
            "Scheduled backups that failed (each is retried).",
            self.backup_failures.load(Ordering::Relaxed),
        )?;
        let as_i64 = |a: &AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        gauge(
            out,
            "saaskit_backup_last_success_timestamp_seconds",
            "When this process's last scheduled backup finished (0: none yet).",
            as_i64(&self.backup_last_success),
        )?;
        gauge(
            out,
            "saaskit_backup_last_size_bytes",
            "The size of this process's last scheduled backup.",
            as_i64(&self.backup_last_bytes),
        )?;
        writeln!(
            out,
            "# HELP saaskit_backup_last_duration_seconds How long this process's last scheduled backup took."
        )?;
        writeln!(out, "# TYPE saaskit_backup_last_duration_seconds gauge")?;
        writeln!(
            out,
            "saaskit_backup_last_duration_seconds {}",
            self.backup_last_millis.load(Ordering::Relaxed) as f64 / 1000.0
        )?;
        gauge(
            out,
            "saaskit_db_pool_connections_in_use",
            "Database connections checked out now.",
            i64::from(g.pool_in_use),
        )?;
        gauge(
            out,
            "saaskit_db_pool_connections",
            "Database connections open now.",
            i64::from(g.pool_size),
        )?;
        gauge(
            out,
            "saaskit_outbox_backlog",
            "Mail waiting to be sent (all replicas).",
            g.outbox_backlog,
        )?;
        gauge(
            out,
            "saaskit_outbox_failed",
            "Mail kept after failing every retry (all replicas).",
            g.outbox_failed,
        )?;
        Ok(())
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} counter")?;
    writeln!(out, "{name} {value}")
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} gauge")?;
    writeln!(out, "{name} {value}")
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counts_add_up() {
        let m = Metrics::default();
        m.observe("GET", "/api/v1/me", 200, Duration::from_micros(800));
        m.observe("GET", "/api/v1/me", 200, Duration::from_millis(30));
        m.observe("GET", "/api/v1/me", 401, Duration::from_secs(10));
        m.error("quota_exceeded");
        let text = m.render(&Gauges {
            pool_in_use: 1,
            pool_size: 4,
            outbox_backlog: 2,
            outbox_failed: 0,
        });
        let labels = "method=\"GET\",route=\"/api/v1/me\"";
        assert!(text.contains(&format!(
            "saaskit_http_requests_total{{{labels},status=\"200\"}} 2"
        )));
        assert!(text.contains(&format!(
            "saaskit_http_requests_total{{{labels},status=\"401\"}} 1"
        )));
        assert!(text.contains(&format!(
            "saaskit_http_request_duration_seconds_bucket{{{labels},le=\"0.001\"}} 1"
        )));
        assert!(text.contains(&format!(
            "saaskit_http_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 2"
        )));
        assert!(text.contains(&format!(
            "saaskit_http_request_duration_seconds_bucket{{{labels},le=\"5\"}} 2"
        )));
        assert!(text.contains(&format!(
            "saaskit_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3"
        )));
        assert!(text.contains(&format!(
            "saaskit_http_request_duration_seconds_count{{{labels}}} 3"
        )));
        assert!(text.contains("saaskit_quota_refusals_total 1"));
        assert!(text.contains("saaskit_outbox_backlog 2"));
    }
}
