//! From a stored event to the integration events it publishes.
//!
//! The mapping folds the SKU's balances — SKU-wide and at the event's location — with the
//! domain's own fold ([`Balances::apply`], the one the history and the read models use), and asks
//! the domain's low-stock rule ([`low_stock_change`]) whether the event opened or closed the SKU's
//! alert. It is pure: given the same fold and event it returns the same messages, ids included,
//! which is what lets a publisher that crashed publish a batch again without inventing new facts.

use crate::contract::{IntegrationEvent, IntegrationEventType, DATA_CONTENT_TYPE, SPEC_VERSION};
use ledger_domain::{low_stock_change, Balances, LowStockChange, RecordedEvent, Sku, SkuEvent};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Namespace of the ids of alert events (UUID v5 of the causing event's id and the alert's
/// type). Fixed forever: a changed namespace would give a republished alert a new id, and
/// consumers would take it for a second alert.
const ALERT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_2d61_6c65_7274_2d69_6473);

/// What a publisher remembers of one SKU between events: the totals, whether a low-stock alert
/// is open, and the balances at the locations it needs for the events at hand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkuFold {
    pub totals: Balances,
    pub alert_open: bool,
    /// The balances per location; a location missing here starts at zero, so the caller loads
    /// every location the events it maps will name.
    pub locations: BTreeMap<String, Balances>,
    /// The version of the last event folded, `None` before the first.
    pub version: Option<u64>,
}

/// Balances after an event, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BalancesAfter {
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub reorder_point: u64,
}

/// A location's balances after a transfer, as published: with the units on their way to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LocationBalancesAfter {
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub reorder_point: u64,
    pub in_transit: u64,
}

impl From<&Balances> for LocationBalancesAfter {
    fn from(balances: &Balances) -> Self {
        Self {
            on_hand: balances.on_hand,
            reserved: balances.reserved,
            available: balances.available(),
            reorder_point: balances.reorder_point,
            in_transit: balances.in_transit,
        }
    }
}

impl From<&Balances> for BalancesAfter {
    fn from(balances: &Balances) -> Self {
        Self {
            on_hand: balances.on_hand,
            reserved: balances.reserved,
            available: balances.available(),
            reorder_point: balances.reorder_point,
        }
    }
}

/// Fold `event` (stored as `recorded`, in `sku`'s stream) into `fold` and return its
/// integration events: the movement itself, then the low-stock alert it opened or closed, if
/// any, in that order.
pub fn map_event(
    source: &str,
    sku: &Sku,
    recorded: &RecordedEvent,
    event: &SkuEvent,
    fold: &mut SkuFold,
) -> Vec<IntegrationEvent> {
    let before = fold.totals;
    fold.totals.apply(event);
    for at in event.locations_moved() {
        let balances = fold.locations.entry(at.to_owned()).or_default();
        balances.apply_at(event, Some(at));
    }
    let location = event.location();
    let location_after = location
        .and_then(|at| fold.locations.get(at))
        .map(BalancesAfter::from);
    fold.version = Some(recorded.version);
    let change = low_stock_change(fold.alert_open, &before, &fold.totals, event);
    match change {
        Some(LowStockChange::Opened) => fold.alert_open = true,
        Some(LowStockChange::Closed(_)) => fold.alert_open = false,
        None => {}
    }
    let totals_after = BalancesAfter::from(&fold.totals);
    let envelope = |id: Uuid, event_type: IntegrationEventType, data: Value| IntegrationEvent {
        specversion: SPEC_VERSION.to_owned(),
        id,
        source: source.to_owned(),
        event_type: event_type.name().to_owned(),
        subject: sku.as_str().to_owned(),
        time: recorded.recorded_at,
        datacontenttype: DATA_CONTENT_TYPE.to_owned(),
        data,
        traceparent: recorded.metadata.traceparent.clone(),
    };
    let mut events = Vec::new();
    if let Some((event_type, mut data)) = movement_data(event) {
        let common = json!({
            "sku": sku.as_str(),
            "location": location,
            "version": recorded.version,
            "balances_after": totals_after,
            "location_balances_after": location_after,
            "correlation_id": recorded.metadata.correlation_id,
        });
        merge(&mut data, common);
        events.push(envelope(recorded.event_id, event_type, data));
    } else if let Some((event_type, mut data, (from, to))) = transfer_data(event) {
        // Each location the transfer moved, with the units on their way to it.
        let at = |location: &str| {
            fold.locations
                .get(location)
                .map(LocationBalancesAfter::from)
        };
        let mut common = json!({
            "sku": sku.as_str(),
            "version": recorded.version,
            "balances_after": totals_after,
            "in_transit_after": fold.totals.in_transit,
            "correlation_id": recorded.metadata.correlation_id,
        });
        let moved = event.locations_moved();
        for (field, location) in [
            ("from_location_balances_after", from),
            ("to_location_balances_after", to),
        ] {
            if moved.contains(&location) {
                merge(&mut common, json!({ field: at(location) }));
            }
        }
        merge(&mut data, common);
        events.push(envelope(recorded.event_id, event_type, data));
    } else if let Some((event_type, mut data)) = catalogue_data(event) {
        merge(
            &mut data,
            json!({
                "sku": sku.as_str(),
                "version": recorded.version,
                "correlation_id": recorded.metadata.correlation_id,
            }),
        );
        events.push(envelope(recorded.event_id, event_type, data));
    }
    if let Some(change) = change {
        let (alert_type, close_reason) = match change {
            LowStockChange::Opened => (IntegrationEventType::LowStockAlertOpened, None),
            LowStockChange::Closed(reason) => {
                (IntegrationEventType::LowStockAlertClosed, Some(reason))
            }
        };
        let mut data = json!({
            "sku": sku.as_str(),
            "location": location,
            "version": recorded.version,
            "caused_by_event_id": recorded.event_id,
            "available": totals_after.available,
            "reorder_point": totals_after.reorder_point,
        });
        if let Some(reason) = close_reason {
            merge(&mut data, json!({ "close_reason": reason.as_str() }));
        }
        events.push(envelope(
            alert_event_id(recorded.event_id, alert_type),
            alert_type,
            data,
        ));
    }
    events
}

/// The id of the alert event of `alert_type` caused by the event `caused_by`.
pub fn alert_event_id(caused_by: Uuid, alert_type: IntegrationEventType) -> Uuid {
    Uuid::new_v5(
        &ALERT_ID_NAMESPACE,
        format!("{caused_by}\u{1f}{}", alert_type.name()).as_bytes(),
    )
}

/// The type of a movement's integration event (one that happens at one location) and the fields
/// only it carries; `None` for transfers and catalogue changes, which have their own shapes.
fn movement_data(event: &SkuEvent) -> Option<(IntegrationEventType, Value)> {
    use IntegrationEventType as T;
    Some(match event {
        SkuEvent::Replenished(e) => (
            T::StockReplenished,
            json!({ "quantity": e.quantity, "reference": e.reference }),
        ),
        SkuEvent::Reserved(e) => (
            T::StockReserved,
            json!({
                "reservation_id": e.reservation_id,
                "order_id": e.order_id,
                "quantity": e.quantity,
                "ttl_seconds": e.ttl_seconds,
                "expires_at": e.expires_at,
            }),
        ),
        SkuEvent::Released(e) => (
            T::ReservationReleased,
            json!({
                "reservation_id": e.reservation_id,
                "order_id": e.order_id,
                "quantity": e.quantity,
                "reason": e.reason,
            }),
        ),
        SkuEvent::Expired(e) => (
            T::ReservationExpired,
            json!({
                "reservation_id": e.reservation_id,
                "order_id": e.order_id,
                "quantity": e.quantity,
                "expires_at": e.expires_at,
            }),
        ),
        SkuEvent::Confirmed(e) => (
            T::ReservationConfirmed,
            json!({
                "reservation_id": e.reservation_id,
                "order_id": e.order_id,
                "quantity": e.quantity,
            }),
        ),
        SkuEvent::Adjusted(e) => (
            T::StockAdjusted,
            json!({ "delta": e.delta, "reason": e.reason, "reference": e.reference }),
        ),
        SkuEvent::ReorderPointSet(e) => (
            T::ReorderPointSet,
            json!({
                "reorder_point": e.reorder_point,
                "previous_reorder_point": e.previous_reorder_point,
            }),
        ),
        SkuEvent::TransferDispatched(_)
        | SkuEvent::TransferReceived(_)
        | SkuEvent::TransferCancelled(_)
        | SkuEvent::Registered(_)
        | SkuEvent::Updated(_)
        | SkuEvent::Discontinued(_) => return None,
    })
}

/// The type of a transfer's integration event, the fields only it carries, and its source and
/// destination.
fn transfer_data(event: &SkuEvent) -> Option<(IntegrationEventType, Value, (&str, &str))> {
    use IntegrationEventType as T;
    let (event_type, data) = match event {
        SkuEvent::TransferDispatched(e) => (
            T::TransferDispatched,
            json!({
                "transfer_id": e.transfer_id,
                "from_location": e.from_location,
                "to_location": e.to_location,
                "quantity": e.quantity,
                "reference": e.reference,
            }),
        ),
        SkuEvent::TransferReceived(e) => (
            T::TransferReceived,
            json!({
                "transfer_id": e.transfer_id,
                "from_location": e.from_location,
                "to_location": e.to_location,
                "quantity_dispatched": e.quantity_dispatched,
                "quantity_received": e.quantity_received,
                "discrepancy_reason": e.discrepancy_reason,
            }),
        ),
        SkuEvent::TransferCancelled(e) => (
            T::TransferCancelled,
            json!({
                "transfer_id": e.transfer_id,
                "from_location": e.from_location,
                "to_location": e.to_location,
                "quantity": e.quantity,
                "reason": e.reason,
            }),
        ),
        _ => return None,
    };
    let ends = match event {
        SkuEvent::TransferDispatched(e) => (e.from_location.as_str(), e.to_location.as_str()),
        SkuEvent::TransferReceived(e) => (e.from_location.as_str(), e.to_location.as_str()),
        SkuEvent::TransferCancelled(e) => (e.from_location.as_str(), e.to_location.as_str()),
        _ => return None,
    };
    Some((event_type, data, ends))
}

/// The type of a catalogue change's integration event and its fields.
fn catalogue_data(event: &SkuEvent) -> Option<(IntegrationEventType, Value)> {
    use IntegrationEventType as T;
    Some(match event {
        SkuEvent::Registered(e) => (
            T::SkuRegistered,
            json!({ "name": e.name, "unit": e.unit, "attributes": e.attributes }),
        ),
        SkuEvent::Updated(e) => (
            T::SkuUpdated,
            json!({ "name": e.name, "unit": e.unit, "attributes": e.attributes }),
        ),
        SkuEvent::Discontinued(e) => (T::SkuDiscontinued, json!({ "reason": e.reason })),
        _ => return None,
    })
}

/// Add the fields of `extra` (an object) to `target` (an object).
fn merge(target: &mut Value, extra: Value) {
    let (Value::Object(target), Value::Object(extra)) = (target, extra) else {
        unreachable!("integration event data are JSON objects");
    };
    target.extend(extra);
}
