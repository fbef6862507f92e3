//! `ledger-projector`: parse the settings, set up logging, run the projectors.

use clap::Parser;
use ledger_projections::cli::{run, Arguments};
use std::process::ExitCode;

/// The allocator of this binary: see the workspace manifest for why not the system one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = Arguments::parse();
    ledger_startup::init_logging(arguments.log.log_format, ledger_startup::LogOutput::Stdout);
    match run(arguments).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "projector failed");
            eprintln!("ledger-projector: {error}");
            ExitCode::FAILURE
        }
    }
}
