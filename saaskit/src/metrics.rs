//! Prometheus metrics, kept per application (so tests and embedded instances do not mix) with
//! no global state: request counts and latency by route template and status, errors by code,
//! renewals, mail failures, and, computed at scrape time, the database pool and the outbox.
//!
//! `/metrics` is never public: it answers on the main listener only with
//! `Authorization: Bearer $SAASKIT_METRICS_TOKEN`, or without authentication on the separate
//! address `SAASKIT_METRICS_BIND` (for a scraper on a private network).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::http::Method;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The statuses counted without a lock; any other goes to [`MethodStats::other_statuses`].
const STATUSES: [u16; 31] = [
    200, 201, 202, 204, 301, 302, 303, 304, 307, 308, 400, 401, 402, 403, 404, 405, 406, 408, 409,
    410, 412, 413, 415, 422, 428, 429, 500, 501, 502, 503, 504,
];

/// The methods a route is counted under, in this order; any other counts as `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER",
];

fn method_slot(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// One route and method's counters: atomics, so that requests never wait for each other.
#[derive(Default)]
struct MethodStats {
    statuses: [AtomicU64; STATUSES.len()],
    other_statuses: Mutex<BTreeMap<u16, u64>>,
    /// Counts per bucket (not cumulative), then +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl MethodStats {
    fn observe(&self, status: u16, latency: Duration) {
        match STATUSES.iter().position(|&s| s == status) {
            Some(i) => {
                self.statuses[i].fetch_add(1, Ordering::Relaxed);
            }
            None => *lock(&self.other_statuses).entry(status).or_default() += 1,
        }
        let secs = latency.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Requests by status, in status order.
    fn by_status(&self) -> BTreeMap<u16, u64> {
        let mut out = lock(&self.other_statuses).clone();
        for (i, status) in STATUSES.iter().enumerate() {
            let n = self.statuses[i].load(Ordering::Relaxed);
            if n > 0 {
                out.insert(*status, n);
            }
        }
        out
    }
}

/// A route template's counters, one set per method, made on the method's first request.
#[derive(Default)]
struct RouteStats {
    methods: [OnceLock<Box<MethodStats>>; METHODS.len()],
}

impl RouteStats {
    fn observe(&self, method: &Method, status: u16, latency: Duration) {
        self.methods[method_slot(method)]
            .get_or_init(Box::default)
            .observe(status, latency);
    }
}

/// The route of a request that matched none.
pub const UNMATCHED: &str = "<unmatched>";

/// The application's counters.
#[derive(Default)]
pub struct Metrics {
    /// The route templates the router serves, registered once as it is built: a request to one
    /// of them touches atomics only.
    registered: OnceLock<HashMap<Box<str>, RouteStats>>,
    /// Any other template (a product's pages), behind a lock.
    unregistered: Mutex<BTreeMap<Box<str>, Box<RouteStats>>>,
    /// Problems by code: taken on answers that are problems only.
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

/// One route and method's counters, as read at scrape time.
struct Row {
    route: String,
    method: &'static str,
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len() + 1],
    sum_nanos: u64,
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
    /// Registers the route templates the router serves (once; later calls change nothing).
    pub fn register_routes<'a>(&self, routes: impl IntoIterator<Item = &'a str>) {
        let _ = self.registered.get_or_init(|| {
            routes
                .into_iter()
                .chain([UNMATCHED])
                .map(|r| (Box::from(r), RouteStats::default()))
                .collect()
        });
    }

    /// Records one answered request. `route` is the matched template (`/api/v1/keys/{id}`),
    /// never the raw path.
    pub fn observe(&self, method: &Method, route: &str, status: u16, latency: Duration) {
        if let Some(stats) = self.registered.get().and_then(|r| r.get(route)) {
            stats.observe(method, status, latency);
            return;
        }
        lock(&self.unregistered)
            .entry(Box::from(route))
            .or_default()
            .observe(method, status, latency);
    }

    /// Counts a problem answered with `code` (`quota_exceeded`, `invalid_credentials`, …).
    pub fn error(&self, code: &'static str) {
        *lock(&self.errors).entry(code).or_default() += 1;
    }

    /// Every route's counters, in template then method order, read at scrape time.
    fn snapshot(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut add = |route: &str, stats: &RouteStats| {
            for (i, method) in METHODS.iter().enumerate() {
                if let Some(m) = stats.methods[i].get() {
                    let buckets = std::array::from_fn(|b| m.buckets[b].load(Ordering::Relaxed));
                    rows.push(Row {
                        route: route.to_owned(),
                        method,
                        by_status: m.by_status(),
                        buckets,
                        sum_nanos: m.sum_nanos.load(Ordering::Relaxed),
                    });
                }
            }
        };
        if let Some(registered) = self.registered.get() {
            for (route, stats) in registered {
                add(route, stats);
            }
        }
        for (route, stats) in lock(&self.unregistered).iter() {
            add(route, stats);
        }
        rows.sort_by(|a, b| (&a.route, a.method).cmp(&(&b.route, b.method)));
        rows
    }

    /// Problems answered, by code.
    fn errors(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.errors).clone()
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
        let routes = self.snapshot();
        for Row {
            route,
            method,
            by_status,
            ..
        } in &routes
        {
            for (status, n) in by_status {
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
        for Row {
            route,
            method,
            buckets,
            sum_nanos,
            ..
        } in &routes
        {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += buckets[i];
                writeln!(
                    out,
                    "saaskit_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                )?;
            }
            cumulative += buckets[BUCKETS.len()];
            writeln!(
                out,
                "saaskit_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            )?;
            writeln!(
                out,
                "saaskit_http_request_duration_seconds_sum{{{labels}}} {}",
                *sum_nanos as f64 / 1e9
            )?;
            writeln!(
                out,
                "saaskit_http_request_duration_seconds_count{{{labels}}} {cumulative}"
            )?;
        }

        let errors = self.errors();
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
        m.observe(&Method::GET, "/api/v1/me", 200, Duration::from_micros(800));
        m.observe(&Method::GET, "/api/v1/me", 200, Duration::from_millis(30));
        m.observe(&Method::GET, "/api/v1/me", 401, Duration::from_secs(10));
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
