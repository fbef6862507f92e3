//! The bench's flags. Every scenario has a default that finishes in minutes on a small machine;
//! the expensive ones (those that first write a large history) can be shrunk or skipped.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    about = "Benchmark the inventory ledger: the API in its own process over HTTP, read-model \
             lag, reservation expiry, degradation after a restart, cold load, rebuild speed, and \
             PostgreSQL's own single-row commit rate as the floor; ends with a targets table",
    after_help = "Examples:\n  \
        cargo build --release -p ledger-bench -p ledger-api\n  \
        target/release/ledger-bench\n  \
        target/release/ledger-bench --seconds 5 --skus 1000 --skip-expensive --skip degradation\n  \
        target/release/ledger-bench --url http://127.0.0.1:8080 --database-url postgres://ledger@db/ledger \
        --api-pid 1234 --postgres-pid 1200"
)]
pub struct Arguments {
    /// The API binary to start in its own process; by default the `ledger-api` beside this
    /// bench's own executable (build both with `cargo build --release -p ledger-bench -p
    /// ledger-api`).
    #[arg(long)]
    pub api_binary: Option<PathBuf>,
    /// More arguments for every API process the bench starts (repeatable), e.g.
    /// `--api-argument=--expiry-interval-ms=200`.
    #[arg(long = "api-argument", allow_hyphen_values = true)]
    pub api_arguments: Vec<String>,
    /// The API's database pool size; by default the connection count plus eight, so every
    /// load connection can hold a database connection while the workers keep theirs.
    #[arg(long)]
    pub pool_size: Option<usize>,

    /// Drive this running API instead of starting one (http:// only).
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: the PostgreSQL that API uses (connection URL). The read-model lag, expiry,
    /// rebuild, cold-load and floor scenarios need it; without it they are skipped.
    #[arg(long)]
    pub database_url: Option<String>,
    /// With --url: the API's process id, so its CPU time can be measured.
    #[arg(long)]
    pub api_pid: Option<u32>,
    /// With --url: the PostgreSQL postmaster's process id (the first line of its
    /// postmaster.pid), so the CPU time of it and every backend it forked can be measured.
    #[arg(long)]
    pub postgres_pid: Option<u32>,

    /// Concurrent keep-alive connections of the closed-loop scenarios (each sends its next
    /// request when the last one is answered); also pgbench's client count for the floor.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// How long each closed-loop reserve scenario is timed, in seconds.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Send this many requests per timed closed-loop scenario instead of timing it.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Requests sent before the clock starts, for this many seconds, against the same SKUs.
    #[arg(long, default_value_t = 3)]
    pub warmup_seconds: u64,
    /// Distinct SKUs of the uncontended scenario (and of (a3) and the read-model lag scenario).
    #[arg(long, default_value_t = 10_000)]
    pub skus: u64,
    /// Sell-out: the hot SKU's stock; twice as many reserves are sent.
    #[arg(long, default_value_t = 10_000)]
    pub sellout_stock: u64,

    /// Read-model lag: how long to send reserves at the steady rate.
    #[arg(long, default_value_t = 10)]
    pub lag_seconds: u64,
    /// Read-model lag: the steady rate in requests per second; by default half the measured
    /// uncontended throughput.
    #[arg(long)]
    pub lag_rate: Option<f64>,
    /// Read-model lag: how often the projection's checkpoint is read, in milliseconds (the
    /// resolution of the lag figures).
    #[arg(long, default_value_t = 2)]
    pub lag_poll_interval_ms: u64,

    /// Expiry: holds created with a time-to-live, all due at about the same moment.
    #[arg(long, default_value_t = 50_000)]
    pub expiry_holds: u64,
    /// Expiry: SKUs the holds are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub expiry_skus: u64,
    /// Expiry: how long after the last hold's due time the bench waits for every hold to end
    /// before it gives up, in seconds.
    #[arg(long, default_value_t = 180)]
    pub expiry_timeout_seconds: u64,

    /// Degradation: how long each of the four rounds is timed, in seconds.
    #[arg(long, default_value_t = 15)]
    pub degradation_seconds: u64,

    /// Rebuild: events written to the store before rebuilding every projection.
    #[arg(long, default_value_t = 1_000_000)]
    pub rebuild_events: u64,
    /// Rebuild: SKUs (streams) those events are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub rebuild_skus: u64,

    /// Cold load: events in the one SKU's stream.
    #[arg(long, default_value_t = 100_000)]
    pub cold_load_events: u64,
    /// Cold load: how many times the SKU is loaded from a fresh handler.
    #[arg(long, default_value_t = 5)]
    pub cold_load_repetitions: u32,

    /// Audit: events the log holds when verify and export are timed (the rebuild's count;
    /// the rest is written first).
    #[arg(long, default_value_t = 1_000_000)]
    pub audit_events: u64,
    /// Audit: SKUs (streams) the events it writes are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub audit_skus: u64,

    /// Floor: how long pgbench runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub floor_seconds: u64,

    /// Publisher: the RabbitMQ the publisher scenario publishes to and consumes from (on an
    /// exchange of the run's own, deleted at the end).
    #[arg(
        long,
        env = "RABBITMQ_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub rabbitmq_url: String,
    /// Publisher: the NATS server with JetStream (on a stream and subjects of the run's own,
    /// deleted at the end).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Skip these scenarios (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<Optional>,
    /// Skip the scenarios that first write a large history (rebuild, cold load, audit).
    #[arg(long)]
    pub skip_expensive: bool,

    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results.json")]
    pub json: PathBuf,
}

/// The scenarios beyond the three closed-loop reserve ones, which always run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Optional {
    /// (a) and (b) again with three locations per SKU, beside the single-location figures.
    Locations,
    /// Read-model lag under a steady open-loop load.
    Lag,
    /// Holds that fall due together, ended by the expiry worker under load.
    Expiry,
    /// Throughput of a fresh API over three rounds, then after a restart.
    Degradation,
    /// Rebuild speed of every projection over a large store.
    Rebuild,
    /// Cold load time of one SKU with a long stream.
    ColdLoad,
    /// PostgreSQL's single-row insert-and-commit rate (pgbench).
    Floor,
    /// Verify and export speed over a large log, and the hash chain's share of an append.
    Audit,
    /// The integration-event publisher against the real RabbitMQ and NATS: backlog rate and
    /// live lag.
    Publisher,
}

impl Optional {
    fn is_expensive(self) -> bool {
        matches!(self, Self::Rebuild | Self::ColdLoad | Self::Audit)
    }
}

/// How long a closed-loop scenario runs, as the flags say.
#[derive(Debug, Clone, Copy)]
pub enum Measure {
    For(Duration),
    Requests(u64),
}

impl Arguments {
    pub fn runs(&self, scenario: Optional) -> bool {
        let skipped =
            self.skip.contains(&scenario) || (self.skip_expensive && scenario.is_expensive());
        !skipped
    }

    /// The length of the timed closed-loop scenarios: a request count when one is given.
    pub fn measure(&self) -> Measure {
        match self.requests {
            Some(requests) => Measure::Requests(requests),
            None => Measure::For(Duration::from_secs(self.seconds)),
        }
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup_seconds)
    }

    pub fn api_pool_size(&self) -> usize {
        self.pool_size
            .unwrap_or(self.connections + API_POOL_HEADROOM)
    }
}

/// Database connections the API's pool has beyond one per load connection, so the expiry
/// worker and snapshot writes find one free while every load connection holds one.
const API_POOL_HEADROOM: usize = 8;
