//! Logs (JSON lines on stdout) and metrics (Prometheus text); the metric names are in
//! [`names`].

mod names;

pub use names::*;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber once per process. `level` is a `LOG_LEVEL` value
/// (`info`, `debug`, …) or any `tracing` filter directive.
pub fn init_logging(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (tests, demo) keeps the first subscriber: the error is expected.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stdout)
        .try_init();
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// An event's delivery takes milliseconds, or hours when the platform was down (the retry
/// schedule spans about 33 hours by default).
const EVENT_LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 7200.0, 18000.0,
    43200.0, 86400.0, 172800.0,
];

/// The process-wide Prometheus recorder. The `metrics` facade has one global recorder, so
/// every app built in this process (tests build many) reports to it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("static, non-empty buckets")
                // A full name wins over the suffix above.
                .set_buckets_for_metric(
                    Matcher::Full(names::EVENT_DELIVERY_LATENCY.into()),
                    EVENT_LATENCY_BUCKETS,
                )
                .expect("static, non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then this
            // handle renders our metrics only if they were registered here, which is fine.
            if metrics::set_global_recorder(recorder).is_ok() {
                names::describe();
            }
            handle
        })
        .clone()
}

/// Histograms need periodic upkeep to stay bounded in memory.
pub async fn run_metrics_upkeep(
    handle: PrometheusHandle,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}
