//! The process-wide Prometheus recorder, the same for every binary that serves `/metrics` (the
//! API on its own router, the projector on a listener of its own), so that a metric has one
//! name, one kind and one set of buckets whichever process records it.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Latency buckets in seconds for every metric whose name ends in `_seconds`: fine-grained
/// below 10 ms, where reserves are expected to land, coarse above, where only trouble lives.
/// Other histograms (counts such as a commit's appends) are exported as summaries.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// The media type of [`PrometheusHandle::render`]'s output.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The process-wide recorder's handle, installing the recorder on first use. The `metrics`
/// facade has one global recorder, so every server in a process (tests start several) shares
/// it.
pub fn prometheus_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder was installed first; then this handle renders
            // nothing, which the metrics tests would catch.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}
