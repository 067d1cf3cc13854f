//! The standard process metrics of Prometheus client libraries (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, …), read from `/proc` at scrape time.
//! Elsewhere than on Linux there is no `/proc` and they are left out.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug, Default)]
pub(super) struct ProcessCollector {
    /// Whether a failure to read `/proc` was logged: once is news, every scrape would be noise.
    warned: AtomicBool,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for reading in read() {
            match reading {
                Ok(Reading::Counter(name, help, value)) => ConstCounter::new(value)
                    .encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?,
                Ok(Reading::Gauge(name, help, value)) => ConstGauge::new(value)
                    .encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?,
                Ok(Reading::Seconds(name, help, value)) => ConstGauge::new(value)
                    .encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?,
                Err(err) if !self.warned.swap(true, Ordering::Relaxed) => {
                    tracing::warn!(error = %err, "a process metric could not be read; it is left out");
                }
                Err(err) => tracing::debug!(error = %err, "a process metric could not be read"),
            }
        }
        Ok(())
    }
}

enum Reading {
    /// Name (without `_total`, which the encoder adds), help, value.
    Counter(&'static str, &'static str, f64),
    Gauge(&'static str, &'static str, u64),
    /// A gauge of seconds, fractional.
    Seconds(&'static str, &'static str, f64),
}

#[cfg(target_os = "linux")]
fn read() -> Vec<Result<Reading, String>> {
    use procfs::process::{LimitValue, Process};

    let me = match Process::myself() {
        Ok(me) => me,
        Err(err) => return vec![Err(format!("opening /proc/self: {err}"))],
    };
    let mut readings = Vec::with_capacity(7);
    match me.stat() {
        Ok(stat) => {
            // Clock ticks and pages, as the kernel counts them.
            let ticks = procfs::ticks_per_second() as f64;
            readings.push(Ok(Reading::Counter(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                (stat.utime + stat.stime) as f64 / ticks,
            )));
            readings.push(Ok(Reading::Gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stat.rss.saturating_mul(procfs::page_size()),
            )));
            readings.push(Ok(Reading::Gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.vsize,
            )));
            readings.push(Ok(Reading::Gauge(
                "process_threads",
                "Number of OS threads in the process.",
                u64::try_from(stat.num_threads).unwrap_or(0),
            )));
            // The kernel gives the start in ticks since boot.
            readings.push(
                procfs::boot_time_secs()
                    .map(|boot| {
                        Reading::Seconds(
                            "process_start_time_seconds",
                            "Start time of the process since unix epoch in seconds.",
                            boot as f64 + stat.starttime as f64 / ticks,
                        )
                    })
                    .map_err(|err| format!("reading the boot time from /proc/stat: {err}")),
            );
        }
        Err(err) => readings.push(Err(format!("reading /proc/self/stat: {err}"))),
    }
    readings.push(
        me.fd_count()
            .map(|n| {
                Reading::Gauge(
                    "process_open_fds",
                    "Number of open file descriptors.",
                    u64::try_from(n).unwrap_or(u64::MAX),
                )
            })
            .map_err(|err| format!("counting /proc/self/fd: {err}")),
    );
    match me.limits() {
        Ok(limits) => {
            // An unlimited soft limit has no number to give (Linux never has one for files).
            if let LimitValue::Value(max) = limits.max_open_files.soft_limit {
                readings.push(Ok(Reading::Gauge(
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    max,
                )));
            }
        }
        Err(err) => readings.push(Err(format!("reading /proc/self/limits: {err}"))),
    }
    readings
}

#[cfg(not(target_os = "linux"))]
fn read() -> Vec<Result<Reading, String>> {
    Vec::new()
}
