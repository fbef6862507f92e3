//! What every request handler shares.

use crate::auth::Authenticator;
use ledger_application::store::EventStore;
use ledger_application::writer::SkuWriters;
use ledger_postgres::Database;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::{Arc, OnceLock};

pub struct AppState {
    /// One in-memory writer per SKU in use: every command goes through it.
    pub writers: SkuWriters<dyn EventStore>,
    pub store: Arc<dyn EventStore>,
    pub database: Database,
    pub auth: Authenticator,
    pub metrics: PrometheusHandle,
    pub read_models: ledger_projections::ReadModels,
    /// The OpenAPI description, rendered once the router (which generates it) is built.
    pub openapi: OnceLock<String>,
}

pub type SharedState = Arc<AppState>;
