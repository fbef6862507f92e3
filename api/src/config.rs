//! Configuration: every setting is a flag and an environment variable; nothing is required.
//! With no configuration the API runs the embedded default (a private PostgreSQL cluster under
//! the data folder, the Postgres event store, projectors in-process).

use clap::{CommandFactory, Parser, Subcommand};
use ledger_startup::{BackendArguments, LogArguments, ProjectorArguments};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Every environment variable the API reads: clap's own list, and the log filter.
pub fn environment_variables() -> Vec<String> {
    let mut names = ledger_startup::environment_variables(&Config::command());
    names.push(ledger_startup::LOG_FILTER_VARIABLE.to_owned());
    names
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ledger-api",
    version,
    about = "Inventory ledger HTTP API",
    long_about = "Inventory ledger HTTP API.\n\nWith no configuration it runs the embedded default: a \
                  private PostgreSQL cluster under --data-dir (created on first start, reused \
                  after), the Postgres event store, and the projectors in-process.",
    after_help = "Examples:\n  ledger-api                            # embedded default on 127.0.0.1:8080\n  \
                  DATABASE_URL=postgres://ledger@db/ledger ledger-api --listen 0.0.0.0:8080\n  \
                  ledger-api hash-token 's3cret'        # prints the hash to put in LEDGER_TOKENS"
)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub backends: BackendArguments,

    /// Bearer tokens as comma-separated ROLE:SHA256HEX[:NAME] entries (roles: client, operator,
    /// auditor, admin). Without any token the API runs open, and says so loudly.
    #[arg(long, env = "LEDGER_TOKENS", hide_env_values = true)]
    pub tokens: Option<String>,

    /// A file of tokens, one ROLE:SHA256HEX[:NAME] entry per line, `#` starts a comment.
    #[arg(long, env = "LEDGER_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Connections in the PostgreSQL pool.
    #[arg(long, env = "LEDGER_POOL_SIZE", default_value_t = ledger_postgres::POOL_SIZE_DEFAULT)]
    pub pool_size: usize,

    #[command(flatten)]
    pub projectors: ProjectorArguments,

    /// How often the expiry worker looks for reservations whose time-to-live has passed.
    #[arg(long, env = "LEDGER_EXPIRY_INTERVAL_MS", default_value_t = 1_000)]
    pub expiry_interval_ms: u64,

    #[command(flatten)]
    pub log: LogArguments,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the SHA-256 of a token, for LEDGER_TOKENS or the tokens file.
    HashToken { token: String },
}
