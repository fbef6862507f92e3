//! The history fold: what one stored event did to its SKU, in the terms auditors read (the
//! movement, the change, the balances after it, who caused it and why). Computed here once for
//! every reader: the replayed history (API and CLI) and the movement ledger read model.

use crate::envelope::{Position, RecordedEvent};
use crate::event::SkuEvent;
use crate::state::{SkuState, SkuSummary};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The balances of a SKU, folded from its events alone. Every movement event carries its own
/// quantity, so the balances after an event need only the balances before it, never the
/// reservations: a history page can resume the fold from a known point instead of replaying
/// the stream from its first event. [`SkuState::apply`] moves its balances the same way (a
/// property test holds the two together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    pub on_hand: u64,
    pub reserved: u64,
    pub reorder_point: u64,
    /// Units dispatched by transfers and not yet received or cancelled: for the SKU's totals
    /// all of them, for one location those on their way to it.
    #[serde(default)]
    pub in_transit: u64,
}

impl Balances {
    pub fn of(state: &SkuState) -> Self {
        Self {
            on_hand: state.on_hand,
            reserved: state.reserved,
            reorder_point: state.reorder_point,
            in_transit: state.in_transit,
        }
    }

    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }

    /// The SKU's total balances after `event`.
    pub fn apply(&mut self, event: &SkuEvent) {
        self.apply_at(event, None);
    }

    /// The balances after `event`: the SKU's totals (`location` `None`), or one location's
    /// (an event elsewhere leaves them alone; a transfer moves the source's on hand and the
    /// destination's units in transit).
    pub fn apply_at(&mut self, event: &SkuEvent, location: Option<&str>) {
        let here = |at: &str| location.is_none_or(|location| location == at);
        let add = |value: u64, by: u64| value.saturating_add(by);
        let sub = |value: u64, by: u64| value.saturating_sub(by);
        match event {
            SkuEvent::TransferDispatched(e) => {
                if here(&e.from_location) {
                    self.on_hand = sub(self.on_hand, e.quantity);
                }
                if here(&e.to_location) {
                    self.in_transit = add(self.in_transit, e.quantity);
                }
                return;
            }
            SkuEvent::TransferReceived(e) => {
                if here(&e.to_location) {
                    self.in_transit = sub(self.in_transit, e.quantity_dispatched);
                    self.on_hand = add(self.on_hand, e.quantity_received);
                }
                return;
            }
            SkuEvent::TransferCancelled(e) => {
                if here(&e.to_location) {
                    self.in_transit = sub(self.in_transit, e.quantity);
                }
                if here(&e.from_location) {
                    self.on_hand = add(self.on_hand, e.quantity);
                }
                return;
            }
            _ => {}
        }
        if !event.location().is_some_and(here) {
            return;
        }
        match event {
            SkuEvent::Replenished(e) => self.on_hand = add(self.on_hand, e.quantity),
            SkuEvent::Reserved(e) => self.reserved = add(self.reserved, e.quantity),
            SkuEvent::Released(e) => self.reserved = sub(self.reserved, e.quantity),
            SkuEvent::Expired(e) => self.reserved = sub(self.reserved, e.quantity),
            SkuEvent::Confirmed(e) => {
                self.reserved = sub(self.reserved, e.quantity);
                self.on_hand = sub(self.on_hand, e.quantity);
            }
            SkuEvent::Adjusted(e) => {
                self.on_hand = if e.delta >= 0 {
                    add(self.on_hand, e.delta.unsigned_abs())
                } else {
                    sub(self.on_hand, e.delta.unsigned_abs())
                }
            }
            // The total reorder point is the sum of the locations' points.
            SkuEvent::ReorderPointSet(e) => {
                self.reorder_point = add(
                    sub(self.reorder_point, e.previous_reorder_point),
                    e.reorder_point,
                )
            }
            SkuEvent::TransferDispatched(_)
            | SkuEvent::TransferReceived(_)
            | SkuEvent::TransferCancelled(_)
            | SkuEvent::Registered(_)
            | SkuEvent::Updated(_)
            | SkuEvent::Discontinued(_) => {}
        }
    }
}

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
    /// Units in transit after the event (the SKU's, or on their way to the location of a page
    /// filtered to one).
    pub in_transit_after: u64,
    pub reservation_id: Option<String>,
    pub order_id: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    /// Where the movement happened (a dispatch: where the units left; a receipt: where they
    /// arrived; a catalogue change: nowhere in particular).
    pub location: Option<String>,
    pub transfer_id: Option<String>,
    /// A transfer's other location.
    pub counterpart_location: Option<String>,
    /// The acting principal from the event's metadata (the movement ledger calls its column
    /// `actor`; both hold the same value).
    pub principal: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub data: serde_json::Value,
    /// The event's link in its stream's hash chain, as stored (64 hexadecimal digits; `null`
    /// for an event stored without one).
    pub hash: Option<crate::envelope::EventHash>,
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
        let before = Balances {
            on_hand: before.on_hand,
            reserved: before.reserved,
            reorder_point: before.reorder_point,
            in_transit: before.in_transit,
        };
        Self::between(recorded, event, before, Balances::of(after))
    }

    /// The entry for `recorded` (decoded as `event`), given the balances before and after it.
    pub fn between(
        recorded: &RecordedEvent,
        event: &SkuEvent,
        before: Balances,
        after: Balances,
    ) -> Self {
        let change = BalanceChange {
            on_hand_change: signed(after.on_hand) - signed(before.on_hand),
            reserved_change: signed(after.reserved) - signed(before.reserved),
            on_hand_after: after.on_hand,
            reserved_after: after.reserved,
            available_after: after.available(),
            reorder_point_after: after.reorder_point,
        };
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
            in_transit_after: after.in_transit,
            reservation_id: owned(details.reservation_id),
            order_id: owned(details.order_id),
            reason: owned(details.reason),
            reference: owned(details.reference),
            location: owned(details.location),
            transfer_id: owned(details.transfer_id),
            counterpart_location: owned(details.counterpart_location),
            principal: recorded.metadata.principal.clone(),
            correlation_id: recorded.metadata.correlation_id.clone(),
            causation_id: recorded.metadata.causation_id.clone(),
            data: recorded.data.clone(),
            hash: recorded.hash,
        }
    }
}
