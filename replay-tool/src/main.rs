//! `ledger-replay`: parse the arguments, run the command, exit with its documented code.

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = ledger_replay::cli::Arguments::parse();
    let code = ledger_replay::run(arguments).await;
    ExitCode::from(code.as_u8())
}
