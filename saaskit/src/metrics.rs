//! Prometheus metrics, kept per application (so tests and embedded instances do not mix) with
//! no global state: request counts and latency by route template and status, errors by code,
//! renewals, mail failures, backups, the standard process metrics, and, computed at scrape
//! time, the database pool and the outbox. Held in prometheus-client's types and registry and
//! written out by its encoder of the Prometheus text format (version 0.0.4).
//!
//! `/metrics` is never public: it answers on the main listener only with
//! `Authorization: Bearer $SAASKIT_METRICS_TOKEN`, or without authentication on the separate
//! address `SAASKIT_METRICS_BIND` (for a scraper on a private network).

mod process;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::Method;
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The statuses whose counters a route keeps at hand; any other is looked up in the family.
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: &'static str,
}

/// A request-latency histogram counted with atomics only. prometheus-client's `Histogram`
/// takes a mutex on every observation, and this one is on every request: concurrent requests
/// to one route would queue on it.
#[derive(Clone, Debug, Default)]
struct Latency(Arc<LatencyCounts>);

#[derive(Debug, Default)]
struct LatencyCounts {
    /// Counts per bucket (not cumulative), then +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Latency {
    fn observe(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.0.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: [(f64, u64); BUCKETS.len() + 1] = std::array::from_fn(|i| {
            let bound = BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            (bound, self.0.buckets[i].load(Ordering::Relaxed))
        });
        // The count from the same loads as the buckets, so the two always agree.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The families every route's counters belong to.
struct Families {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Latency>,
}

/// One route and method's handles into the families, taken on its first request: later ones
/// touch atomics only.
struct MethodStats {
    labels: RouteLabels,
    /// Each made on the first request answered with that status.
    statuses: [OnceLock<Counter>; STATUSES.len()],
    latency: Latency,
}

impl MethodStats {
    fn new(families: &Families, method: &'static str, route: &str) -> MethodStats {
        let labels = RouteLabels {
            method,
            route: route.to_owned(),
        };
        MethodStats {
            latency: families.durations.get_or_create_owned(&labels),
            labels,
            statuses: Default::default(),
        }
    }

    fn observe(&self, families: &Families, status: u16, latency: Duration) {
        let counter = |status| {
            families.requests.get_or_create_owned(&RequestLabels {
                method: self.labels.method,
                route: self.labels.route.clone(),
                status,
            })
        };
        match STATUSES.iter().position(|&s| s == status) {
            Some(i) => self.statuses[i].get_or_init(|| counter(status)).inc(),
            None => counter(status).inc(),
        };
        self.latency.observe(latency);
    }
}

/// A route template's handles, one set per method, made on the method's first request.
#[derive(Default)]
struct RouteStats {
    methods: [OnceLock<Box<MethodStats>>; METHODS.len()],
}

impl RouteStats {
    fn observe(
        &self,
        families: &Families,
        route: &str,
        method: &Method,
        status: u16,
        latency: Duration,
    ) {
        let slot = method_slot(method);
        self.methods[slot]
            .get_or_init(|| Box::new(MethodStats::new(families, METHODS[slot], route)))
            .observe(families, status, latency);
    }
}

/// The route of a request that matched none.
pub const UNMATCHED: &str = "<unmatched>";

/// The application's metrics.
pub struct Metrics {
    registry: Registry,
    families: Families,
    /// The route templates the router serves, registered once as it is built: a request to one
    /// of them takes no lock once its route, method and status have been seen.
    registered: OnceLock<HashMap<Box<str>, RouteStats>>,
    /// Any other template (a product's pages), behind a lock.
    unregistered: Mutex<BTreeMap<Box<str>, Box<RouteStats>>>,
    /// Problems by code: taken on answers that are problems only.
    errors: Family<ErrorLabels, Counter>,
    quota_refusals: Counter,
    logins_failed: Counter,
    pub renewals: Counter,
    pub mail_retries: Counter,
    pub mail_failures: Counter,
    pub backups_taken: Counter,
    pub backup_failures: Counter,
    pub webhooks_delivered: Counter,
    pub webhook_retries: Counter,
    pub webhooks_failed: Counter,
    /// How long webhook attempts took, answered or not.
    webhook_latency: Latency,
    /// The last scheduled backup this process took: when it finished (Unix seconds; 0 for
    /// none yet), its size and how long it took.
    pub backup_last_success: Gauge,
    pub backup_last_bytes: Gauge<u64, AtomicU64>,
    pub backup_last_duration: Gauge<f64, AtomicU64>,
    /// Set from [`Gauges`] at each scrape.
    pool_in_use: Gauge,
    pool_size: Gauge,
    outbox_backlog: Gauge,
    outbox_failed: Gauge,
    webhooks_queued: Gauge,
}

/// What is read from the database at scrape time.
pub struct Gauges {
    pub pool_in_use: u32,
    pub pool_size: u32,
    pub outbox_backlog: i64,
    pub outbox_failed: i64,
    pub webhooks_queued: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain handles behind: still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Metrics {
    fn default() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            families: Families {
                requests: Family::default(),
                durations: Family::default(),
            },
            registered: OnceLock::new(),
            unregistered: Mutex::default(),
            errors: Family::default(),
            quota_refusals: Counter::default(),
            logins_failed: Counter::default(),
            renewals: Counter::default(),
            mail_retries: Counter::default(),
            mail_failures: Counter::default(),
            backups_taken: Counter::default(),
            backup_failures: Counter::default(),
            webhooks_delivered: Counter::default(),
            webhook_retries: Counter::default(),
            webhooks_failed: Counter::default(),
            webhook_latency: Latency::default(),
            backup_last_success: Gauge::default(),
            backup_last_bytes: Gauge::default(),
            backup_last_duration: Gauge::default(),
            pool_in_use: Gauge::default(),
            pool_size: Gauge::default(),
            outbox_backlog: Gauge::default(),
            outbox_failed: Gauge::default(),
            webhooks_queued: Gauge::default(),
        };
        m.registered()
    }
}

impl Metrics {
    /// Puts every metric in the registry, in the order the exposition lists them. The
    /// registry appends a full stop to each help text; counters get `_total` when encoded.
    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "saaskit_http_requests",
            "Requests answered, by route template and status",
            self.families.requests.clone(),
        );
        r.register(
            "saaskit_http_request_duration_seconds",
            "Time to answer, by route template",
            self.families.durations.clone(),
        );
        r.register(
            "saaskit_errors",
            "Problem documents answered, by code",
            self.errors.clone(),
        );
        let counters = [
            (
                "saaskit_quota_refusals",
                "Metered requests refused over a plan limit",
                &self.quota_refusals,
            ),
            (
                "saaskit_logins_failed",
                "Logins refused for a wrong email or password",
                &self.logins_failed,
            ),
            (
                "saaskit_renewals",
                "Subscription cycles renewed by this process's sweeps",
                &self.renewals,
            ),
            (
                "saaskit_mail_retries",
                "Mail sends that failed and were scheduled again",
                &self.mail_retries,
            ),
            (
                "saaskit_mail_failures",
                "Mail given up on after every retry",
                &self.mail_failures,
            ),
            (
                "saaskit_backups",
                "Scheduled backups this process took",
                &self.backups_taken,
            ),
            (
                "saaskit_backup_failures",
                "Scheduled backups that failed (each is retried)",
                &self.backup_failures,
            ),
            (
                "saaskit_webhooks_delivered",
                "Webhook deliveries answered with a 2xx by this process",
                &self.webhooks_delivered,
            ),
            (
                "saaskit_webhook_retries",
                "Webhook attempts that failed and were scheduled again",
                &self.webhook_retries,
            ),
            (
                "saaskit_webhooks_failed",
                "Webhook deliveries given up on after every retry",
                &self.webhooks_failed,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "saaskit_backup_last_success_timestamp_seconds",
            "When this process's last scheduled backup finished (0: none yet)",
            self.backup_last_success.clone(),
        );
        r.register(
            "saaskit_backup_last_size_bytes",
            "The size of this process's last scheduled backup",
            self.backup_last_bytes.clone(),
        );
        r.register(
            "saaskit_backup_last_duration_seconds",
            "How long this process's last scheduled backup took",
            self.backup_last_duration.clone(),
        );
        let gauges = [
            (
                "saaskit_db_pool_connections_in_use",
                "Database connections checked out now",
                &self.pool_in_use,
            ),
            (
                "saaskit_db_pool_connections",
                "Database connections open now",
                &self.pool_size,
            ),
            (
                "saaskit_outbox_backlog",
                "Mail waiting to be sent (all replicas)",
                &self.outbox_backlog,
            ),
            (
                "saaskit_outbox_failed",
                "Mail kept after failing every retry (all replicas)",
                &self.outbox_failed,
            ),
            (
                "saaskit_webhooks_queued",
                "Webhook deliveries waiting to be sent (all replicas)",
                &self.webhooks_queued,
            ),
        ];
        for (name, help, gauge) in gauges {
            r.register(name, help, gauge.clone());
        }
        r.register(
            "saaskit_webhook_attempt_duration_seconds",
            "Time a webhook attempt took, answered or not",
            self.webhook_latency.clone(),
        );
        r.register_collector(Box::new(process::ProcessCollector::default()));
        self
    }

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
            stats.observe(&self.families, route, method, status, latency);
            return;
        }
        lock(&self.unregistered)
            .entry(Box::from(route))
            .or_default()
            .observe(&self.families, route, method, status, latency);
    }

    /// Records how long a webhook attempt took.
    pub fn webhook_attempt(&self, took: Duration) {
        self.webhook_latency.observe(took);
    }

    /// Counts a problem answered with `code` (`quota_exceeded`, `invalid_credentials`, …).
    pub fn error(&self, code: &'static str) {
        self.errors.get_or_create(&ErrorLabels { code }).inc();
        match code {
            "quota_exceeded" => self.quota_refusals.inc(),
            "invalid_credentials" => self.logins_failed.inc(),
            _ => 0,
        };
    }

    /// The Prometheus text exposition of everything ([`CONTENT_TYPE`]).
    pub fn render(&self, gauges: &Gauges) -> String {
        // Two scrapes at once may each see the other's readings: both are of now.
        self.pool_in_use.set(i64::from(gauges.pool_in_use));
        self.pool_size.set(i64::from(gauges.pool_size));
        self.outbox_backlog.set(gauges.outbox_backlog);
        self.outbox_failed.set(gauges.outbox_failed);
        self.webhooks_queued.set(gauges.webhooks_queued);
        let mut out = String::with_capacity(8192);
        if let Err(err) = prometheus_text::encode(&mut out, &self.registry) {
            // Writing to a String fails only if a metric's encoding does: serve what was written.
            tracing::error!(error = %err, "encoding the metrics failed part way");
        }
        out
    }
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
            webhooks_queued: 0,
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

    #[test]
    fn every_metric_keeps_its_name_type_and_labels() {
        let m = Metrics::default();
        m.register_routes(["/api/v1/me"]);
        m.observe(&Method::GET, "/api/v1/me", 200, Duration::from_millis(2));
        // A status kept at hand for no route, a route registered by no router, a method of
        // no slot of its own, and a template that needs escaping.
        m.observe(&Method::GET, "/api/v1/me", 418, Duration::from_millis(2));
        m.observe(&Method::POST, "/pages/{id}", 303, Duration::from_millis(2));
        let propfind = Method::from_bytes(b"PROPFIND").expect("a method");
        m.observe(&propfind, "/api/v1/me", 405, Duration::from_millis(2));
        m.observe(&Method::GET, "/odd\"route", 404, Duration::from_millis(2));
        m.error("invalid_credentials");
        m.error("not_found");
        m.renewals.inc_by(3);
        m.backup_last_duration.set(1.5);
        let text = m.render(&Gauges {
            pool_in_use: 1,
            pool_size: 4,
            outbox_backlog: 0,
            webhooks_queued: 0,
            outbox_failed: 7,
        });
        for expected in [
            "# HELP saaskit_http_requests_total Requests answered, by route template and status.\n",
            "# TYPE saaskit_http_requests_total counter\n",
            "# TYPE saaskit_http_request_duration_seconds histogram\n",
            "# TYPE saaskit_errors_total counter\n",
            "# TYPE saaskit_outbox_failed gauge\n",
            "saaskit_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"418\"} 1\n",
            "saaskit_http_requests_total{method=\"POST\",route=\"/pages/{id}\",status=\"303\"} 1\n",
            "saaskit_http_requests_total{method=\"OTHER\",route=\"/api/v1/me\",status=\"405\"} 1\n",
            "saaskit_http_requests_total{method=\"GET\",route=\"/odd\\\"route\",status=\"404\"} 1\n",
            "saaskit_http_request_duration_seconds_count{method=\"POST\",route=\"/pages/{id}\"} 1\n",
            "saaskit_errors_total{code=\"not_found\"} 1\n",
            "saaskit_logins_failed_total 1\n",
            "saaskit_quota_refusals_total 0\n",
            "saaskit_renewals_total 3\n",
            "saaskit_backup_last_duration_seconds 1.5\n",
            "saaskit_backup_last_success_timestamp_seconds 0\n",
            "saaskit_db_pool_connections_in_use 1\n",
            "saaskit_db_pool_connections 4\n",
            "saaskit_outbox_failed 7\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        // Only what was seen: no series for a method or status that never happened.
        assert!(!text.contains("method=\"PUT\""), "{text}");
        assert!(!text.contains("status=\"500\""), "{text}");
    }
}
