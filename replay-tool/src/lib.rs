//! The auditors' and operators' CLI of the inventory ledger (`ledger-replay`).
//!
//! # Layout
//! - [`cli`]: the arguments, the `--help` text with examples and the exit codes.
//! - [`backends`]: opens the event store and the read model database exactly as the API chooses
//!   them (`DATABASE_URL`, `EVENTSTORE_URL`, or the embedded data folder), so the tool always
//!   looks at the same ledger as the API next to it.
//! - [`history`], [`verify`], [`rebuild`], [`status`]: one module per command; each turns its
//!   arguments into calls of the ledger and projections libraries and prints the result.
//! - [`schemas`]: the event contract under `schemas/`, embedded and compiled for `verify`.
//! - [`output`]: CSV quoting and table cells shared by the commands.
//! - [`error`]: the tool's error type and its mapping onto exit codes.

pub mod backends;
pub mod cli;
pub mod error;
pub mod history;
pub mod output;
pub mod rebuild;
pub mod schemas;
pub mod status;
pub mod verify;

use cli::{Arguments, Command};
use error::{ExitCodeName, ToolError};

/// Run one command and return its exit code; errors are printed to stderr here, once.
pub async fn run(arguments: Arguments) -> ExitCodeName {
    match run_command(arguments).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ledger-replay: {error}");
            error.exit_code()
        }
    }
}

async fn run_command(arguments: Arguments) -> Result<ExitCodeName, ToolError> {
    let needs_read_models = !matches!(arguments.command, Command::History(_));
    let backends = backends::Backends::open(&arguments.backend, needs_read_models).await?;
    let result = match arguments.command {
        Command::History(options) => history::run(&backends, options).await,
        Command::Verify(options) => verify::run(&backends, options).await,
        Command::Rebuild(options) => rebuild::run(&backends, options).await,
        Command::Status(options) => status::run(&backends, options).await,
    };
    backends.close().await;
    result
}
