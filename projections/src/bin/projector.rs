//! The `projector` binary: parse the configuration, set up logging, run the projectors.

use clap::Parser;
use projections::cli::{init_telemetry, run, Arguments};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = Arguments::parse();
    init_telemetry(arguments.log_format);
    match run(arguments).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "projector failed");
            eprintln!("projector: {error}");
            ExitCode::FAILURE
        }
    }
}
