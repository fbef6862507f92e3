//! Inventory ledger core: the SKU domain, the event store port with its adapters, and the
//! command handler.
//!
//! # Layout
//! - [`domain`]: values, commands, events and the SKU aggregate. Pure (no I/O, no clock, no
//!   logging) so every rule is tested without a database and replay is deterministic.
//! - [`envelope`]: what travels with every stored event (ids, positions, metadata).
//! - [`store`]: the `EventStore` port and its adapters (in-memory, Postgres). Split from the
//!   domain so the domain never depends on storage.
//! - [`handler`]: load → decide → append with the expected version, with bounded retries.
//! - [`writer`]: one in-memory writer per SKU that batches queued commands into one append.
//! - [`snapshot`]: cached SKU states so that long streams load in milliseconds.
//! - [`history`]: a SKU's history and as-of state replayed from the event store, shared by
//!   the API and the replay CLI so both tell auditors the same story.
//! - [`pg`]: PostgreSQL plumbing shared with the read models and the embedded default
//!   (pooling with explicit timeouts, migrations, the private cluster).

pub mod domain;
pub mod envelope;
pub mod handler;
pub mod history;
pub mod pg;
pub mod snapshot;
pub mod store;
pub mod writer;

pub use envelope::{Metadata, NewEvent, Position, RecordedEvent};
pub use handler::{CommandContext, CommandError, CommandHandler, CommandOutcome};
pub use store::{AppendResult, EventStore, ExpectedVersion, StoreError};
