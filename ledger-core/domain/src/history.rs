//! The history fold: what one stored event did to its SKU, in the terms auditors read (the
//! movement, the change, the balances after it, who caused it and why). Computed here once for
//! every reader: the replayed history (API and CLI) and the movement ledger read model.

use crate::envelope::{Position, RecordedEvent};
use crate::event::SkuEvent;
use crate::state::{SkuState, SkuSummary};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How one event moved a SKU's balances: the change and the balances right after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BalanceChange {
    pub on_hand_change: i64,
    pub reserved_change: i64,
    pub on_hand_after: u64,
    pub reserved_after: u64,
    pub available_after: u64,
    pub reorder_point_after: u64,
}

impl BalanceChange {
    /// The change from the balances `before` an event (on hand, reserved) to the state after it.
    pub fn between(before: (u64, u64), after: &SkuState) -> Self {
        let (on_hand_before, reserved_before) = before;
        Self {
            on_hand_change: signed(after.on_hand) - signed(on_hand_before),
            reserved_change: signed(after.reserved) - signed(reserved_before),
            on_hand_after: after.on_hand,
            reserved_after: after.reserved,
            available_after: after.available(),
            reorder_point_after: after.reorder_point,
        }
    }
}

/// Balances stay below [`crate::ON_HAND_MAX`], far inside `i64`.
fn signed(value: u64) -> i64 {
    i64::try_from(value).expect("balances stay below the on hand limit")
}

/// One event of a SKU's stream, with its effect and the balances right after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub position: Position,
    pub event_id: uuid::Uuid,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub schema_version: u32,
    /// The movement kind (replenished, reserved, released, expired, confirmed, adjusted), or
    /// `None` for an event that moves no stock (a reorder point change).
    pub movement: Option<&'static str>,
    pub on_hand_change: i64,
    pub reserved_change: i64,
    pub on_hand_after: u64,
    pub reserved_after: u64,
    pub available_after: u64,
    pub reorder_point_after: u64,
    pub reservation_id: Option<String>,
    pub order_id: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    /// The acting principal from the event's metadata (the movement ledger calls its column
    /// `actor`; both hold the same value).
    pub principal: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub data: serde_json::Value,
}

impl HistoryEntry {
    /// The entry for `recorded` (decoded as `event`), given the balances `before` it and the
    /// state `after` folding it.
    pub fn new(
        recorded: &RecordedEvent,
        event: &SkuEvent,
        before: &SkuSummary,
        after: &SkuState,
    ) -> Self {
        let change = BalanceChange::between((before.on_hand, before.reserved), after);
        let details = event.details();
        let owned = |value: Option<&str>| value.map(str::to_owned);
        Self {
            version: recorded.version,
            position: recorded.position,
            event_id: recorded.event_id,
            recorded_at: recorded.recorded_at,
            event_type: recorded.event_type.clone(),
            schema_version: recorded.schema_version,
            movement: event.movement(),
            on_hand_change: change.on_hand_change,
            reserved_change: change.reserved_change,
            on_hand_after: change.on_hand_after,
            reserved_after: change.reserved_after,
            available_after: change.available_after,
            reorder_point_after: change.reorder_point_after,
            reservation_id: owned(details.reservation_id),
            order_id: owned(details.order_id),
            reason: owned(details.reason),
            reference: owned(details.reference),
            principal: recorded.metadata.principal.clone(),
            correlation_id: recorded.metadata.correlation_id.clone(),
            causation_id: recorded.metadata.causation_id.clone(),
            data: recorded.data.clone(),
        }
    }
}
