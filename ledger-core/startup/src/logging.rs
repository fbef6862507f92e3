//! Logs: one subscriber for every binary, human-readable text or one JSON object per line,
//! filtered by `RUST_LOG` (default `info`). A service whose output is its log (the projector)
//! writes to standard output; one that prints something else there (the API's banner) writes
//! its log to standard error.

/// The filter when `RUST_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info";

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
/// process) keep the first.
pub fn init_logging(format: LogFormat, output: LogOutput) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let writer = move || -> Box<dyn std::io::Write> {
        match output {
            LogOutput::Stdout => Box::new(std::io::stdout()),
            LogOutput::Stderr => Box::new(std::io::stderr()),
        }
    };
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
}
