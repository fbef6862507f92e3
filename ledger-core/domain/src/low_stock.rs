//! The low-stock rule, written once for everything that follows it: the alerts read model and
//! the integration events published to brokers must open and close the same alerts at the same
//! events, so neither keeps a rule of its own.
//!
//! An alert concerns a SKU's totals (every location together). It opens when available falls
//! below the reorder point and none is open; it closes when available is at or above the reorder
//! point and one is open: `reorder_point_lowered` when a reorder point change did it,
//! `recovered` otherwise. Staying below, or staying at or above, changes nothing.

use crate::event::SkuEvent;
use crate::history::Balances;

/// Why an alert closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowStockCloseReason {
    /// Available returned to the reorder point (stock arrived, holds ended).
    Recovered,
    /// The reorder point was lowered to (or below) what is available.
    ReorderPointLowered,
}

impl LowStockCloseReason {
    /// The reason as stored and published.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Recovered => "recovered",
            Self::ReorderPointLowered => "reorder_point_lowered",
        }
    }
}

/// What one event did to a SKU's low-stock alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowStockChange {
    Opened,
    Closed(LowStockCloseReason),
}

/// What `event` does to the SKU's alert, given whether one is open and the SKU-wide balances
/// right before and right after the event.
pub fn low_stock_change(
    alert_open: bool,
    before: &Balances,
    after: &Balances,
    event: &SkuEvent,
) -> Option<LowStockChange> {
    let below = after.available() < after.reorder_point;
    match (below, alert_open) {
        (true, false) => Some(LowStockChange::Opened),
        (false, true) => {
            let lowered = matches!(event, SkuEvent::ReorderPointSet(_))
                && after.reorder_point < before.reorder_point;
            Some(LowStockChange::Closed(if lowered {
                LowStockCloseReason::ReorderPointLowered
            } else {
                LowStockCloseReason::Recovered
            }))
        }
        (true, true) | (false, false) => None,
    }
}
