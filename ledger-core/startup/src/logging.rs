//! Logs: one subscriber for every binary, human-readable text or one JSON object per line,
//! filtered by `RUST_LOG` (default `info`). A service whose output is its log (the projector)
//! writes to standard output; one that prints something else there (the API's banner) writes
//! its log to standard error. The same subscriber exports spans when asked ([`crate::traces`]).

use crate::traces::TraceExport;

/// The filter when `RUST_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info";

/// The most detailed spans exported: the ledger's own spans (requests, writer batches, group
/// commits, projector batches) are at `info`; `debug` and `trace` spans of libraries would
/// multiply the export for little insight.
const TRACE_LEVEL: tracing_subscriber::filter::LevelFilter =
    tracing_subscriber::filter::LevelFilter::INFO;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    Stderr,
}

/// Install the log subscriber once per process; later calls (tests start many servers in one
/// process) keep the first. When the environment asks for a trace export
/// ([`crate::traces::export_requested`]), spans also go to the OTLP collector, as
/// `default_service_name` unless `OTEL_SERVICE_NAME` names the service: the returned handle
/// flushes them when shut down or dropped, so keep it until the process exits. With no export
/// asked for, the subscriber is exactly the log subscriber and nothing is returned.
#[must_use = "dropping the trace export stops it; keep it until the process exits"]
pub fn init_logging(
    format: LogFormat,
    output: LogOutput,
    default_service_name: &str,
) -> Option<TraceExport> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let writer = move || -> Box<dyn std::io::Write> {
        match output {
            LogOutput::Stdout => Box::new(std::io::stdout()),
            LogOutput::Stderr => Box::new(std::io::stderr()),
        }
    };
    if crate::traces::export_requested() {
        return init_with_traces(format, filter, writer, default_service_name);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    None
}

/// The log layer filtered by `RUST_LOG` as before, beside the OpenTelemetry layer, which takes
/// every span at [`TRACE_LEVEL`] whatever the log filter says (quieting the log must not
/// empty the traces).
fn init_with_traces(
    format: LogFormat,
    filter: tracing_subscriber::EnvFilter,
    writer: impl for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    default_service_name: &str,
) -> Option<TraceExport> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let log = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    };
    let (export, traces) = match crate::traces::exporter(default_service_name) {
        Ok(built) => built,
        Err(error) => {
            eprintln!("warning: {error}; spans are not exported");
            let _ = tracing_subscriber::registry()
                .with(log.with_filter(filter))
                .try_init();
            return None;
        }
    };
    let installed = tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(traces.with_filter(TRACE_LEVEL))
        .try_init();
    // Another subscriber came first: this one's exporter would never see a span.
    let export = installed.ok().map(|()| export);
    // Batches join their callers' traces only when those traces go somewhere.
    ledger_application::spans::join_caller_spans(export.is_some());
    export
}
