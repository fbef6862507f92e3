//! The inventory domain: validated values, commands, events, the SKU aggregate and its
//! rejections. Pure code: no I/O, no clock, no logging; the command handler supplies time.

pub mod command;
pub mod error;
pub mod event;
pub mod state;
pub mod values;

pub use command::*;
pub use error::DomainError;
pub use event::*;
pub use state::{Reservation, ReservationStatus, SkuState, SkuSummary};
pub use values::*;
