//! The inventory ledger's application layer: the ports the adapters implement, and the one
//! decision loop every command goes through.
//!
//! # Layout
//! - [`store`]: the event store port (append with an expected version, read a stream, read and
//!   follow the store-wide log), its limits and errors, and the in-memory adapter.
//! - [`snapshot`]: the snapshot port, and snapshots in memory.
//! - [`chain`]: the hash chain's digest: sealing decided events onto their stream's head, and
//!   walking a stream to find the first link that does not verify.
//! - [`anchor`]: a digest of the whole log at a position (a Merkle root over every stream's
//!   head), for an auditor to keep outside the system and check the log against later.
//! - [`answer`]: answers kept for keyed commands, so a retry gets exactly its first answer.
//! - [`command`]: the vocabulary of carrying out a command (context, outcome, errors) and how
//!   decided events are wrapped for the store.
//! - [`loaded`]: a SKU as loaded, with the idempotency keys its recent events carry.
//! - [`handler`]: loading SKUs (snapshot and tail, or the whole stream) and saving snapshots.
//! - [`decision`]: the one decision loop: decide a batch in order, append it with one expected
//!   version, decide again after a lost race. A single command is its smallest batch.
//! - [`writer`]: one task per SKU in use that batches its queued commands through the loop.
//! - [`history`]: a SKU's history and as-of state replayed from the event store.
//!
//! Adapters (PostgreSQL, EventStoreDB) depend on this crate, never the other way round.

pub mod anchor;
pub mod answer;
pub mod chain;
pub mod command;
pub mod decision;
pub mod handler;
pub mod history;
pub mod loaded;
pub mod snapshot;
pub mod spans;
pub mod store;
pub mod writer;

pub use command::{CommandContext, CommandError, CommandOutcome};
pub use handler::CommandHandler;
pub use store::{AppendResult, EventStore, ExpectedVersion, StoreError};
