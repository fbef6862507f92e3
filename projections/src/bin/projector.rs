//! `ledger-projector`: parse the settings, set up logging, run the projectors.

use clap::Parser;
use ledger_projections::cli::{run, Arguments};
use std::process::ExitCode;

/// The allocator of this binary: see the workspace manifest for why not the system one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `service.name` of this binary's spans unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE_NAME: &str = "ledger-projector";

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let traces = ledger_startup::init_logging(
        arguments.log.log_format,
        ledger_startup::LogOutput::Stdout,
        SERVICE_NAME,
    );
    let code = match run(arguments).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "projector failed");
            eprintln!("ledger-projector: {error}");
            ExitCode::FAILURE
        }
    };
    if let Some(traces) = traces {
        // Blocks this thread until the queued spans are sent: the projectors have stopped.
        tokio::task::block_in_place(|| traces.shutdown());
    }
    code
}
