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
