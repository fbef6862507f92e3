//! Traces: spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and W3C `traceparent` values, which carry a
//! trace from a caller into a request and from a request, through its events, into the
//! projector batches that apply them.
//!
//! With neither variable set nothing here runs: no exporter, no OpenTelemetry layer, and every
//! helper below returns at once, so the request and append paths cost what they did before.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The collector's base URL (OTLP over HTTP, conventionally port 4318); `/v1/traces` is
/// appended. Setting it turns the export on.
pub const OTLP_ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The full URL of the traces endpoint, used as it is; also turns the export on.
pub const OTLP_TRACES_ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The `service.name` of the exported spans; each binary has its own default.
pub const SERVICE_NAME_VARIABLE: &str = "OTEL_SERVICE_NAME";

/// The OpenTelemetry variables a binary that exports traces reads (the SDK reads them itself):
/// where to send, as whom, how often and how much.
pub const TRACE_VARIABLES: &[&str] = &[
    OTLP_ENDPOINT_VARIABLE,
    OTLP_TRACES_ENDPOINT_VARIABLE,
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    SERVICE_NAME_VARIABLE,
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
];

/// Length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
pub const TRACEPARENT_LENGTH: usize = 55;

/// Set once, when the exporter is installed; read on hot paths, hence an atomic.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans. Callers skip all trace bookkeeping when it does not.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Whether the environment asks for an export (either endpoint variable set and not empty).
pub fn export_requested() -> bool {
    [OTLP_ENDPOINT_VARIABLE, OTLP_TRACES_ENDPOINT_VARIABLE]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// The installed exporter: flushes the spans still queued and stops when shut down (or
/// dropped), so that a graceful exit loses no span.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// Export what is queued and stop the exporter. Blocks until the last export is answered
    /// or times out (the exporter's own timeout, 10 s by default).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("warning: the trace exporter did not shut down cleanly: {error}");
        }
        EXPORTING.store(false, Ordering::Relaxed);
    }
}

/// Build the OTLP/HTTP exporter and its batch processor from the standard variables, with
/// `default_service_name` when `OTEL_SERVICE_NAME` is not set. The caller layers the returned
/// layer onto its subscriber.
pub(crate) fn exporter<S>(
    default_service_name: &str,
) -> Result<
    (
        TraceExport,
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|error| format!("cannot build the OTLP trace exporter: {error}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os(SERVICE_NAME_VARIABLE).is_none_or(|name| name.is_empty()) {
        resource = resource.with_service_name(default_service_name.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("inventory-ledger");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((TraceExport { provider }, layer))
}

/// The span context a `traceparent` value names, when it is well formed (W3C Trace Context:
/// version `00`, or a later version's first four fields; lower-case hex; trace and parent ids
/// not all zeros).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let head = value.get(..TRACEPARENT_LENGTH)?;
    let bytes = head.as_bytes();
    let version = head.get(0..2)?;
    if version == "ff" || (version == "00" && value.len() != TRACEPARENT_LENGTH) {
        return None;
    }
    if value.len() > TRACEPARENT_LENGTH && value.as_bytes()[TRACEPARENT_LENGTH] != b'-' {
        return None;
    }
    let lower_hex = |part: &str| part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&head[3..35], &head[36..52], &head[53..55]);
    if ![version, trace, parent, flags].into_iter().all(lower_hex) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(parent).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The version-00 form of a well-formed `traceparent`, as recorded in event metadata.
pub fn accepted_traceparent(value: &str) -> Option<String> {
    let context = parse_traceparent(value)?;
    Some(format_traceparent(&context))
}

fn format_traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// Make `span` continue the caller's trace named by `traceparent`. Call before the span is
/// first entered. Does nothing when this process does not export or the value is malformed.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    if !exporting() {
        return;
    }
    if let Some(remote) = parse_traceparent(traceparent) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// The `traceparent` that names `span` (for a caller or an event to point back at it); `None`
/// when this process does not export or the span is not traced.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| format_traceparent(&span_context))
}

/// Messaging-style batch semantics for a span that serves several traced causes: parented to
/// the first `traceparent` (the span joins that trace) and linked to each of the others. Call
/// before the span is first entered. Does nothing when this process does not export; values
/// that are malformed, and repeats of one already taken, are passed over.
pub fn join_traces<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    if exporting() {
        join_traces_always(span, traceparents);
    }
}

fn join_traces_always<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    let mut parent: Option<SpanContext> = None;
    let mut linked: Vec<SpanContext> = Vec::new();
    for context in traceparents.into_iter().filter_map(parse_traceparent) {
        match &parent {
            None => parent = Some(context),
            Some(first) if *first == context => {}
            Some(_) if linked.contains(&context) => {}
            Some(_) => linked.push(context),
        }
    }
    if let Some(first) = parent {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(first));
    }
    for context in linked {
        span.add_link(context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_well_formed_traceparent_is_read_and_written_back_alike() {
        let context = parse_traceparent(SAMPLE).expect("well formed");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(context.is_sampled());
        assert_eq!(accepted_traceparent(SAMPLE).as_deref(), Some(SAMPLE));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_four_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert_eq!(accepted_traceparent(later).as_deref(), Some(SAMPLE));
    }

    /// What a tracer provider ended, kept in memory.
    #[derive(Debug, Clone, Default)]
    struct Collected(std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Collected {
        fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send
        {
            self.0.lock().expect("not poisoned").extend(batch);
            std::future::ready(Ok(()))
        }
    }

    #[test]
    fn a_batch_joins_the_first_trace_and_links_each_other_one_once() {
        use tracing_subscriber::layer::SubscriberExt;
        const SECOND: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        const THIRD: &str = "00-0af7651916cd43dd8448eb211c80319c-1111111111111111-00";
        let collected = Collected::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(collected.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("projector.batch");
            join_traces_always(&span, [SAMPLE, "malformed", SAMPLE, SECOND, THIRD, SECOND]);
            span.in_scope(|| {});
        });
        let spans = collected.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 1);
        let first = parse_traceparent(SAMPLE).unwrap();
        assert_eq!(spans[0].span_context.trace_id(), first.trace_id());
        assert_eq!(spans[0].parent_span_id, first.span_id());
        assert!(spans[0].parent_span_is_remote);
        let linked: Vec<SpanContext> = spans[0]
            .links
            .iter()
            .map(|link| link.span_context.clone())
            .collect();
        assert_eq!(
            linked,
            [
                parse_traceparent(SECOND).unwrap(),
                parse_traceparent(THIRD).unwrap()
            ]
        );
    }

    #[test]
    fn nothing_is_produced_or_joined_while_not_exporting() {
        assert!(!exporting());
        let span = tracing::Span::none();
        assert_eq!(traceparent_of(&span), None);
        join_traces(&span, [SAMPLE]);
        continue_trace(&span, SAMPLE);
    }
}
