//! The inventory ledger's PostgreSQL adapter: the embedded default and single-database
//! deployments keep their events here, and every deployment keeps its snapshots, read models
//! and idempotency keys in PostgreSQL.
//!
//! # Layout
//! - [`database`]: connection settings with explicit timeouts, the pool, and the error type.
//! - [`migrate`]: versioned migrations per component, applied once under an advisory lock.
//! - [`store`]: the event store adapter (group commit, log order by transaction id).
//! - [`epochs`]: log positions that survive a restore into another cluster (an epoch's offset
//!   added to transaction ids, begun when the store finds its database moved).
//! - [`snapshots`]: the snapshot store adapter, and [`snapshot_codec`], its binary form.
//! - [`answers`]: answers of keyed commands kept beside an event store that cannot keep them in
//!   its own transaction (EventStoreDB).
//! - [`statistics`]: keeps the planner's statistics of the ledger's tables fresh as they grow,
//!   so plans made while tables were empty do not live on.
//! - [`cluster`]: the private cluster the embedded default creates and starts under a folder.
//! - [`tls`]: TLS to the server as `sslmode` says, with libpq's meaning of each mode, which
//!   tokio-postgres alone does not give.

pub mod answers;
pub mod cluster;
pub mod database;
pub mod epochs;
pub mod migrate;
pub mod snapshot_codec;
pub mod snapshots;
pub mod statistics;
pub mod store;
pub mod tls;

pub use answers::PostgresAnswers;
pub use database::{
    Database, DatabaseError, DeadlineExceeded, DedicatedConnection, CONNECT_TIMEOUT_MS,
    DEADLINE_SLACK_MS, POOL_SIZE_DEFAULT, POOL_WAIT_TIMEOUT_MS, STATEMENT_TIMEOUT_MS_DEFAULT,
};
pub use snapshots::PostgresSnapshots;
pub use store::{PostgresStore, StoreSettings};
pub use tls::{TlsMode, TlsSettings};
