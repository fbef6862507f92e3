//! `ledger-replay`: parse the arguments, run the command, exit with its documented code.

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = replay_tool::cli::Arguments::parse();
    let code = replay_tool::run(arguments).await;
    ExitCode::from(code.as_u8())
}
