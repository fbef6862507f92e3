//! One module per scenario, each with its plan, its result and the table it prints. They share
//! [`Target`], what they drive.
//!
//! - [`uncontended`] (a), [`hot_sku`] (b), [`sellout`] (c): closed-loop keyed reserves.
//! - [`locations`] (a3), (b3): (a) and (b) with three locations per SKU.
//! - [`lag`] (d): read-model lag under a steady open-loop load.
//! - [`expiry`] (e): holds that fall due together, ended by the expiry worker under load.
//! - [`degradation`] (f): a fresh API's throughput over rounds, against the same after a
//!   restart; it starts API processes of its own.
//! - [`cold_load`] (g) and [`rebuild`] (h): the library used in the bench's process on the
//!   API's database, over histories written by [`crate::history`].
//! - [`floor`] (i): PostgreSQL's own single-row commit rate through pgbench.
//! - [`audit`] (j): verify and export speed over a large log, and the hash chain's share of an
//!   append.
//! - [`publisher`] (k): the integration-event publisher's backlog rate and live lag against
//!   the real RabbitMQ and NATS; it starts API processes of its own.

pub mod audit;
pub mod cold_load;
pub mod degradation;
pub mod expiry;
pub mod floor;
pub mod hot_sku;
pub mod lag;
pub mod locations;
pub mod publisher;
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

/// Warm up with the requests `requests("w")` makes, then time those `requests(id_prefix)`
/// makes for `length`: a closed-loop scenario on `target`. Each prefix keeps the reservation ids
/// of the warm-up and of the timed run apart.
pub async fn warm_up_and_drive(
    target: &Target,
    name: String,
    length: crate::closed_loop::Length,
    id_prefix: &'static str,
    requests: impl Fn(&'static str) -> crate::closed_loop::RequestFor,
) -> Result<crate::closed_loop::ScenarioResult, String> {
    eprintln!("{name}...");
    crate::closed_loop::warm_up(
        &name,
        &target.endpoint,
        target.connections,
        target.warmup,
        requests("w"),
    )
    .await?;
    crate::closed_loop::drive(
        crate::closed_loop::ClosedLoop {
            name,
            endpoint: target.endpoint.clone(),
            connections: target.connections,
            length,
            request: requests(id_prefix),
        },
        target.processes,
    )
    .await
}

/// The bench's own connection to the API's database, or why there is none; the scenarios that
/// need it are skipped or fail with this reason.
pub type DatabaseAccess = Result<LedgerDatabase, String>;
