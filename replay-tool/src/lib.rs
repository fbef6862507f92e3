//! The auditors' and operators' CLI of the inventory ledger (`ledger-replay`).
//!
//! # Layout
//! - [`cli`]: the arguments, the `--help` text with examples and the exit codes.
//! - [`history`], [`verify`], [`anchor`], [`proof`], [`export`], [`import`], [`rebuild`],
//!   [`status`], [`republish`]: one module per command; each turns its arguments into calls of
//!   the ledger and projections libraries and prints the result.
//! - [`progress`]: the progress line of the long commands (export, import).
//! - [`schemas`]: the event contract under `schemas/`, embedded and compiled for `verify`.
//! - [`output`]: CSV quoting and table cells shared by the commands.
//! - [`error`]: the tool's error type and its mapping onto exit codes.

pub mod anchor;
pub mod cli;
pub mod error;
pub mod export;
pub mod history;
pub mod import;
pub mod output;
pub mod progress;
pub mod proof;
pub mod rebuild;
pub mod republish;
pub mod schemas;
pub mod status;
pub mod verify;

use cli::{Arguments, Command};
use error::{ExitCodeName, ToolError};
use ledger_startup::{Backends, BackendsOptions, EmbeddedMode};

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

/// Connections of the tool's pool: one command runs at a time, with the event store's reads,
/// a read model snapshot and the rebuild's transaction beside each other.
pub const TOOL_POOL_SIZE: usize = 4;

/// How long the tool waits for EventStoreDB before calling it unreachable. An operator at a
/// terminal wants a clear error soon rather than the API's patient minute.
pub const EVENTSTORE_CONNECT_TIMEOUT_MS: u64 = 10_000;

async fn run_command(arguments: Arguments) -> Result<ExitCodeName, ToolError> {
    // Checking a proof against an anchor needs two files and no store.
    if let Command::VerifyProof(options) = arguments.command {
        return proof::run(options);
    }
    // The backends are opened exactly as the API opens them (`ledger_startup`), so the tool
    // always looks at the same ledger as the API beside it; an embedded cluster it had to
    // start is stopped again, one the API runs is left alone.
    let options = BackendsOptions {
        pool_size: TOOL_POOL_SIZE,
        embedded: EmbeddedMode::Existing,
        needs_database: !matches!(
            arguments.command,
            Command::History(_) | Command::Anchor(_) | Command::Export(_) | Command::Import(_)
        ),
        statement_timeout_ms: None,
        eventstore_connect_timeout_ms: Some(EVENTSTORE_CONNECT_TIMEOUT_MS),
    };
    let backends = Backends::open(&arguments.backend, &options).await?;
    let result = match arguments.command {
        Command::History(options) => history::run(&backends, options).await,
        Command::Verify(options) => verify::run(&backends, options).await,
        Command::Anchor(options) => anchor::run(&backends, options).await,
        Command::VerifyProof(_) => unreachable!("checked before the backends are opened"),
        Command::Export(options) => export::run(&backends, options).await,
        Command::Import(options) => import::run(&backends, options).await,
        Command::Rebuild(options) => rebuild::run(&backends, options).await,
        Command::Status(options) => status::run(&backends, options).await,
        Command::Republish(options) => republish::run(&backends, options).await,
    };
    backends.close().await;
    result
}
