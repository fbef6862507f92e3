//! One module per scenario, each with its plan, its result and the table it prints. They share
//! [`Target`], what they drive.
//!
//! - [`uncontended`] (a), [`hot_sku`] (b), [`sellout`] (c): closed-loop keyed reserves.
//! - [`lag`] (d): read-model lag under a steady open-loop load.
//! - [`expiry`] (e): holds that fall due together, ended by the expiry worker under load.
//! - [`degradation`] (f): a fresh API's throughput over rounds, against the same after a
//!   restart; it starts API processes of its own.
//! - [`cold_load`] (g) and [`rebuild`] (h): the library used in the bench's process on the
//!   API's database, over histories written by [`crate::history`].
//! - [`floor`] (i): PostgreSQL's own single-row commit rate through pgbench.
//! - [`audit`] (j): verify and export speed over a large log, and the hash chain's share of an
//!   append.

pub mod audit;
pub mod cold_load;
pub mod degradation;
pub mod expiry;
pub mod floor;
pub mod hot_sku;
pub mod lag;
pub mod rebuild;
pub mod sellout;
pub mod uncontended;

use crate::cpu::Processes;
use crate::database::LedgerDatabase;
use crate::http::Endpoint;
use std::sync::Arc;
use std::time::Duration;

/// What the scenarios drive.
pub struct Target {
    pub endpoint: Arc<Endpoint>,
    /// The API and PostgreSQL processes whose CPU time each window reports.
    pub processes: Processes,
    /// Closed-loop connections (`--connections`).
    pub connections: usize,
    /// Requests sent before each scenario's clock starts.
    pub warmup: Duration,
    /// A short id that keeps this run's SKUs and reservation ids apart from any other's.
    pub run: String,
}

/// The bench's own connection to the API's database, or why there is none; the scenarios that
/// need it are skipped or fail with this reason.
pub type DatabaseAccess = Result<LedgerDatabase, String>;
