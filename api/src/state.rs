//! What every request handler shares.

use crate::auth::Authenticator;
use crate::protection::{Protected, Protection};
use ledger_application::store::EventStore;
use ledger_application::writer::SkuWriters;
use ledger_postgres::Database;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::{Arc, OnceLock};

pub struct AppState {
    /// One in-memory writer per SKU in use: every command goes through it.
    pub writers: SkuWriters<dyn EventStore>,
    pub store: Arc<dyn EventStore>,
    /// A pool of its own for readiness checks, so a busy API still answers them truthfully.
    pub database: Database,
    pub auth: Authenticator,
    pub metrics: PrometheusHandle,
    pub read_models: ledger_projections::ReadModels,
    /// The OpenAPI description, rendered once the router (which generates it) is built.
    pub openapi: OnceLock<String>,
    pub protection: Arc<Protection>,
    /// Where recently served history pages ended, so paging on resumes instead of replaying.
    pub history_cursors: ledger_application::history::HistoryCursors,
    /// The order reserves' records: where they are, and the test hook.
    pub orders: OrderRecords,
}

/// What the order commands (the `orders` module) keep beside the writers.
pub struct OrderRecords {
    /// A pool of its own (with the requests' statement timeout), so that order records never
    /// wait behind read-model queries; the runners' locks are on connections outside it.
    pub database: Database,
    /// After how many reserved lines an order reserve aborts the process, as a crash would: a
    /// test hook, set only by debug builds from the environment, `None` otherwise.
    pub crash_after_lines: Option<usize>,
}

pub type SharedState = Arc<AppState>;

impl Protected for AppState {
    fn protection(&self) -> &Protection {
        &self.protection
    }

    fn authenticator(&self) -> &Authenticator {
        &self.auth
    }
}
