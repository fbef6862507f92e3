//! Configuration: every setting is a flag and an environment variable; nothing is required.
//! With no configuration the API runs the embedded default (a private PostgreSQL cluster under
//! the data folder, the Postgres event store, projectors in-process).

use clap::{CommandFactory, Parser, Subcommand};
use ledger_startup::{BackendArguments, LogArguments, ProjectorArguments};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Every environment variable the API reads: clap's own list, the log filter, and the trace
/// export's standard variables.
pub fn environment_variables() -> Vec<String> {
    let mut names = ledger_startup::environment_variables(&Config::command());
    names.push(ledger_startup::LOG_FILTER_VARIABLE.to_owned());
    names.extend(
        ledger_startup::TRACE_VARIABLES
            .iter()
            .map(|name| (*name).to_owned()),
    );
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

    #[command(flatten)]
    pub publishers: ledger_projections::PublisherArguments,

    #[command(flatten)]
    pub order_events: crate::order_events::OrderEventArguments,

    /// How often the expiry worker looks for reservations whose time-to-live has passed.
    #[arg(long, env = "LEDGER_EXPIRY_INTERVAL_MS", default_value_t = 1_000)]
    pub expiry_interval_ms: u64,

    /// Serve without tokens on an address other than loopback. Without it the API refuses to
    /// start open anywhere but on 127.0.0.1 / ::1.
    #[arg(long, env = "LEDGER_ALLOW_OPEN")]
    pub allow_open: bool,

    /// More host names the API answers to (the `Host` header), comma-separated. On a loopback
    /// address it answers to localhost, 127.0.0.1 and [::1] only (against DNS rebinding); on
    /// another address, to any name unless this is given.
    #[arg(long, env = "LEDGER_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_host: Vec<String>,

    /// Requests per second each principal may send (each client address, for requests without
    /// a valid token and in open mode); 0 turns the rate limit off.
    #[arg(long, env = "LEDGER_RATE_LIMIT_PER_SECOND", default_value_t = 5_000)]
    pub rate_limit_per_second: u32,

    /// Requests a principal may send at once above its rate (the bucket's size); by default
    /// one second's worth.
    #[arg(long, env = "LEDGER_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,

    /// Most `/v1` requests in flight at once; more are answered 503 at once.
    #[arg(long, env = "LEDGER_IN_FLIGHT_MAX", default_value_t = 1_024)]
    pub in_flight_max: usize,

    /// A `/v1` request that takes longer is answered 503.
    #[arg(long, env = "LEDGER_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// A request's head (line and headers) must arrive within this long; idle keep-alive
    /// connections are closed after it too.
    #[arg(long, env = "LEDGER_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// Most open connections; past it a new connection gets a 503 and is closed.
    #[arg(long, env = "LEDGER_CONNECTIONS_MAX", default_value_t = 8_192)]
    pub connections_max: usize,

    /// How long a shutdown waits for requests in flight (a second Ctrl-C exits at once).
    #[arg(long, env = "LEDGER_SHUTDOWN_DEADLINE_MS", default_value_t = 20_000)]
    pub shutdown_deadline_ms: u64,

    /// PostgreSQL statement timeout of the pools that serve requests; an answer that does not
    /// arrive within it (plus a second) fails on the client side too.
    #[arg(long, env = "LEDGER_STATEMENT_TIMEOUT_MS", default_value_t = ledger_postgres::STATEMENT_TIMEOUT_MS_DEFAULT)]
    pub statement_timeout_ms: u64,

    /// Most SKUs kept loaded in memory (one writer each); the least recently used idle ones
    /// are dropped past it.
    #[arg(long, env = "LEDGER_WRITERS_MAX", default_value_t = ledger_application::writer::WRITERS_MAX_DEFAULT)]
    pub writers_max: usize,

    /// How long keyed commands' answers are kept for retries, in hours; older ones are purged
    /// (a retry after that is still recognised by its events, but a refusal is decided again).
    #[arg(long, env = "LEDGER_ANSWER_RETENTION_HOURS", default_value_t = 24)]
    pub answer_retention_hours: u64,

    #[command(flatten)]
    pub log: LogArguments,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the SHA-256 of a token, for LEDGER_TOKENS or the tokens file. Without TOKEN (or
    /// with `-`) the token is read from the first line of standard input, which keeps it out
    /// of the shell history and the process list.
    HashToken { token: Option<String> },
}
