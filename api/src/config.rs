//! Configuration: every setting is a flag and an environment variable; nothing is required.
//! With no configuration the API runs the embedded default (a private PostgreSQL cluster under
//! the data folder, the Postgres event store, projectors in-process).

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Every environment variable the API reads, for the compose file check and `--help`.
pub const ENVIRONMENT_VARIABLES: &[&str] = &[
    "LEDGER_LISTEN",
    "LEDGER_DATA_DIR",
    "DATABASE_URL",
    "EVENTSTORE_URL",
    "LEDGER_TOKENS",
    "LEDGER_TOKENS_FILE",
    "LEDGER_POOL_SIZE",
    "LEDGER_PROJECTORS",
    "LEDGER_EXPIRY_INTERVAL_MS",
    "LEDGER_LOG_FORMAT",
    "RUST_LOG",
];

#[derive(Debug, Clone, Parser)]
#[command(
    name = "api",
    version,
    about = "Inventory ledger HTTP API",
    long_about = "Inventory ledger HTTP API.\n\nWith no configuration it runs the embedded default: a \
                  private PostgreSQL cluster under --data-dir (created on first start, reused \
                  after), the Postgres event store, and the projectors in-process.",
    after_help = "Examples:\n  api                                   # embedded default on 127.0.0.1:8080\n  \
                  DATABASE_URL=postgres://ledger@db/ledger api --listen 0.0.0.0:8080\n  \
                  api hash-token 's3cret'               # prints the hash to put in LEDGER_TOKENS"
)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Folder of the embedded PostgreSQL cluster, used when DATABASE_URL is not set.
    #[arg(long, env = "LEDGER_DATA_DIR", default_value = ".ledger-data")]
    pub data_dir: PathBuf,

    /// A shared PostgreSQL (event store, read models, idempotency keys) instead of the embedded one.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// EventStoreDB / KurrentDB connection string (e.g. esdb://localhost:2113?tls=false).
    #[arg(long, env = "EVENTSTORE_URL", hide_env_values = true)]
    pub eventstore_url: Option<String>,

    /// Bearer tokens as comma-separated ROLE:SHA256HEX[:NAME] entries (roles: client, operator,
    /// auditor, admin). Without any token the API runs open, and says so loudly.
    #[arg(long, env = "LEDGER_TOKENS", hide_env_values = true)]
    pub tokens: Option<String>,

    /// A file of tokens, one ROLE:SHA256HEX[:NAME] entry per line, `#` starts a comment.
    #[arg(long, env = "LEDGER_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Connections in the PostgreSQL pool.
    #[arg(long, env = "LEDGER_POOL_SIZE", default_value_t = ledger_core::pg::POOL_SIZE_DEFAULT)]
    pub pool_size: usize,

    /// Run the projectors inside this process (false when a separate projector process runs them).
    #[arg(long, env = "LEDGER_PROJECTORS", default_value_t = true, action = ArgAction::Set)]
    pub projectors: bool,

    /// How often the expiry worker looks for reservations whose time-to-live has passed.
    #[arg(long, env = "LEDGER_EXPIRY_INTERVAL_MS", default_value_t = 1_000)]
    pub expiry_interval_ms: u64,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "LEDGER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the SHA-256 of a token, for LEDGER_TOKENS or the tokens file.
    HashToken { token: String },
}
