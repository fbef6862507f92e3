//! Projector runtime and the Postgres read models of the inventory ledger, with low-stock
//! alerts.
//!
//! # Layout
//! - The registry of projections is here at the root ([`all`], [`by_name`]); the trait every
//!   projection implements is [`projection`], alone, so that the projections and the registry
//!   never import each other.
//! - [`stock_levels`], [`reservations`], [`stock_movements`], [`low_stock_alerts`] and
//!   [`locations`] (stock per location, transfers): one
//!   module per read model, each holding the projection that writes its tables, its row types
//!   and the queries that read them, so a read model can change (and be rebuilt) without
//!   touching the others.
//! - [`read_models`]: the one handle the API and the CLI read through; [`status`]: every
//!   projection's checkpoint, lag and lock holder; [`verification`]: what `verify` compares.
//! - [`schema_name`], [`schema`]: one PostgreSQL schema per projection, DDL templated by schema
//!   name, so the same tables can be built in a shadow schema and swapped in; [`checkpoint`]: the
//!   row in each schema that says how far it is; [`convert`]: stored numbers and positions.
//! - [`batch`]: one page of the log applied with its checkpoint; [`runtime`]: the runners
//!   (lock, subscription, batches, backoff, metrics, fault injection), with [`lock`] holding
//!   the one-runner-per-projection rule; [`rebuild`]: rebuild into the shadow and swap, live.
//! - [`webhook`]: optional delivery of low-stock notifications.
//! - [`publisher`]: publishers of integration events to RabbitMQ and NATS JetStream, run by
//!   the same runtime as projections (a publisher is a projection whose apply publishes).
//! - [`cli`]: the `ledger-projector` binary's settings and start-up; [`metrics_listener`]: its
//!   own `/metrics` endpoint.
//!
//! The read models and the outbox are described for their users in `READ_MODELS.md`.

pub mod batch;
pub mod checkpoint;
pub mod cli;
pub mod convert;
pub mod error;
pub mod locations;
pub mod lock;
pub mod low_stock_alerts;
pub mod metrics_listener;
pub mod projection;
pub mod publisher;
pub mod read_models;
pub mod rebuild;
pub mod reservations;
pub mod runtime;
pub mod schema;
pub mod schema_name;
pub mod status;
pub mod stock_levels;
pub mod stock_movements;
pub mod verification;
pub mod webhook;

pub use convert::LogPosition;
pub use error::ProjectionError;
pub use locations::{LocationAlertRow, LocationStockFilter, LocationStockRow, TransferRowView};
pub use low_stock_alerts::{
    AlertCloseReason, AlertStatus, LowStockAlert, Notification, NotificationKind,
};
pub use projection::Projection;
pub use publisher::{Publisher, PublisherArguments};
pub use read_models::{ReadModels, PAGE_SIZE_MAX};
pub use rebuild::{rebuild, RebuildOptions, RebuildProgress, RebuildSummary};
pub use reservations::ReservationRow;
pub use runtime::{FaultPlan, ProjectorActivity, ProjectorOptions, ProjectorSet, BATCH_EVENTS_MAX};
pub use status::ProjectionStatus;
pub use stock_levels::StockLevel;
pub use stock_movements::{Movement, MovementFilter};
pub use webhook::{WebhookOptions, WebhookSecret};

use ledger_postgres::Database;

/// Every projection, in the order the runtime starts them.
pub fn all() -> [&'static dyn Projection; 5] {
    [
        &stock_levels::StockLevels,
        &reservations::Reservations,
        &stock_movements::StockMovements,
        &low_stock_alerts::LowStockAlerts,
        &locations::Locations,
    ]
}

/// The names of every projection, for flags and messages.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name()).collect()
}

/// The projection called `name`.
pub fn by_name(name: &str) -> Result<&'static dyn Projection, ProjectionError> {
    all()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ProjectionError::UnknownProjection {
            name: name.to_owned(),
            known: names().join(", "),
        })
}

/// Create (or bring up to date) the live schema of every projection and the webhook's tables.
/// Idempotent and safe to run from several processes at once: migrations serialise on an
/// advisory lock and each script runs once.
pub async fn migrate(database: &Database) -> Result<(), ProjectionError> {
    let mut client = database.pool().get().await?;
    for projection in all() {
        schema::migrate_live(&mut client, projection).await?;
    }
    webhook::migrate_delivery(&mut client).await?;
    Ok(())
}
