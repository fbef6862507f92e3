//! The inventory ledger's domain: what a SKU is, what may be asked of it, what it records.
//!
//! Pure by construction: this crate depends on serde, serde_json (event payloads are JSON
//! values, the format of the event contract under `schemas/`), chrono, thiserror and uuid
//! only, so no I/O, clock, task or log can reach a decision; the caller passes `now`. The
//! architecture test (`tests/tests/architecture.rs`) keeps it that way.
//!
//! # Layout
//! - [`values`]: validated values (SKU, quantities, identifiers, texts); a value that exists is
//!   valid, so the rules below never check shapes.
//! - [`command`]: the orders a SKU can be given.
//! - [`event`]: the facts it records, each with a type name and a schema version, and how a
//!   stored payload is decoded.
//! - [`reservation`]: a hold's terms and status, apart so that rejections can name a status.
//! - [`transfer`]: a transfer's terms and status, and a SKU's catalogue entry, likewise.
//! - [`state`]: the SKU aggregate: `decide` (pure, may reject) and `apply` (folds, never fails).
//! - [`error`]: the rejections, each carrying what a caller needs to act.
//! - [`envelope`]: what travels with a stored event (ids, positions, metadata).
//! - [`history`]: what one stored event did, as auditors read it: shared by the replayed
//!   history and the movement ledger.
//! - [`chain`]: the hash chain's canonical form of an event (the bytes its hash covers); the
//!   hash's value type travels in the envelope, the digest itself is the application layer's.
//! - [`low_stock`]: when a low-stock alert opens and closes, for the alerts read model and the
//!   published integration events alike.

pub mod chain;
pub mod command;
pub mod envelope;
pub mod error;
pub mod event;
pub mod history;
pub mod low_stock;
pub mod reservation;
pub mod state;
pub mod transfer;
pub mod values;

pub use chain::CanonicalEvent;
pub use command::*;
pub use envelope::{
    event_id_for, scoped_key, EventHash, Metadata, NewEvent, Position, RecordedEvent,
};
pub use error::DomainError;
pub use event::*;
pub use history::{BalanceChange, Balances, HistoryEntry};
pub use low_stock::{low_stock_change, LowStockChange, LowStockCloseReason};
pub use reservation::{Reservation, ReservationStatus};
pub use state::{LocationStock, SkuState, SkuSummary};
pub use transfer::{CatalogueEntry, Transfer, TransferStatus};
pub use values::*;
