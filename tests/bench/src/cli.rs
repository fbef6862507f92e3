//! The bench's flags. Every scenario has a default that finishes in minutes on a small machine;
//! the expensive ones (those that first write a large history) can be shrunk or skipped.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    about = "Benchmark the inventory ledger: the API over HTTP, read-model lag, rebuild speed, \
             cold load, and PostgreSQL's own single-row commit rate as the floor",
    after_help = "Examples:\n  \
        cargo run --release -p ledger-bench -- --connections 16 --requests 2000 --skus 1000\n  \
        cargo run --release -p ledger-bench -- --requests 500 --rebuild-events 100000 --cold-load-events 20000\n  \
        cargo run --release -p ledger-bench -- --skip-expensive"
)]
pub struct Arguments {
    /// Drive this running API instead of starting one in-process on the embedded default.
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: the PostgreSQL that API uses (connection URL). The read-model lag, rebuild,
    /// cold-load and floor scenarios need it; without it they are skipped.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Concurrent connections (each sends its next request when the last one is answered);
    /// also pgbench's client count for the floor.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Reserve requests per closed-loop scenario.
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,
    /// Distinct SKUs of the uncontended scenario (and of the read-model lag scenario).
    #[arg(long, default_value_t = 10_000)]
    pub skus: u64,

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

    /// Floor: how long pgbench runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub floor_seconds: u64,

    /// Skip these scenarios (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<Optional>,
    /// Skip the scenarios that first write a large history (rebuild and cold load).
    #[arg(long)]
    pub skip_expensive: bool,

    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results.json")]
    pub json: PathBuf,
}

/// The scenarios beyond the three closed-loop HTTP ones, which always run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Optional {
    /// Read-model lag under a steady open-loop load.
    Lag,
    /// Rebuild speed of every projection over a large store.
    Rebuild,
    /// Cold load time of one SKU with a long stream.
    ColdLoad,
    /// PostgreSQL's single-row insert-and-commit rate (pgbench).
    Floor,
}

impl Optional {
    fn is_expensive(self) -> bool {
        matches!(self, Self::Rebuild | Self::ColdLoad)
    }
}

impl Arguments {
    pub fn runs(&self, scenario: Optional) -> bool {
        let skipped =
            self.skip.contains(&scenario) || (self.skip_expensive && scenario.is_expensive());
        !skipped
    }
}
