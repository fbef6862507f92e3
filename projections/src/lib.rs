//! Projector runtime and the Postgres read models of the inventory ledger, with low-stock
//! alerts.
//!
//! # Layout
//! - [`projection`]: what a projection is to the runtime (name, DDL template, batch apply) and
//!   the registry of all four; [`stock_levels`], [`reservations`], [`stock_movements`] and
//!   [`low_stock_alerts`] are the projections themselves, one module each, so a projection can
//!   change (and be rebuilt) without touching the others.
//! - [`schema`]: one PostgreSQL schema per projection, DDL templated by schema name, so the
//!   same tables can be built in a shadow schema and swapped in; [`checkpoint`]: the row in
//!   each schema that says how far it is.
//! - [`runtime`]: the runners (lock, subscription, batches, backoff, metrics, fault injection),
//!   with [`lock`] holding the one-runner-per-projection rule.
//! - [`queries`]: the read side the API serves, and projection status.
//! - [`rebuild`]: rebuild a projection into its shadow schema and swap it in, live.
//! - [`webhook`]: optional delivery of low-stock notifications.
//! - [`cli`]: the `projector` binary's configuration and startup.
//!
//! The four read models and the outbox are described for their users in `READ_MODELS.md`.

pub mod checkpoint;
pub mod cli;
pub mod error;
pub mod lock;
pub mod low_stock_alerts;
pub mod projection;
pub mod queries;
pub mod rebuild;
pub mod reservations;
pub mod runtime;
pub mod schema;
pub mod stock_levels;
pub mod stock_movements;
pub mod webhook;

pub use cli::ENVIRONMENT_VARIABLES;
pub use error::ProjectionError;
pub use queries::{
    AlertCloseReason, AlertStatus, LogPosition, LowStockAlert, Movement, MovementFilter,
    Notification, NotificationKind, ProjectionStatus, ReadModels, ReservationRow, StockLevel,
    PAGE_SIZE_MAX,
};
pub use rebuild::{rebuild, RebuildOptions, RebuildProgress, RebuildSummary};
pub use runtime::{FaultPlan, ProjectorActivity, ProjectorOptions, ProjectorSet, BATCH_EVENTS_MAX};
pub use webhook::WebhookOptions;

use ledger_core::pg::Database;

/// Create (or bring up to date) the live schema of every projection and the webhook's tables.
/// Idempotent and safe to run from several processes at once: migrations serialise on an
/// advisory lock and each script runs once.
pub async fn migrate(database: &Database) -> Result<(), ProjectionError> {
    let mut client = database.pool().get().await?;
    for projection in projection::all() {
        schema::migrate_live(&mut client, projection).await?;
    }
    webhook::migrate_delivery(&mut client).await?;
    Ok(())
}
