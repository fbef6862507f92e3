//! Events: immutable facts in the past tense. Each has a type name and a schema version; the
//! JSON payload of every (type, version) pair is described by a schema under `schemas/`.
//!
//! Payloads use plain types rather than the validated command values on purpose: a fact
//! recorded under yesterday's rules must still load if a rule is tightened tomorrow. Unknown
//! fields are refused, though: a changed payload gets a new schema version, so an unknown field
//! means a misspelling or a foreign writer, and silently dropping it would lose data.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockReplenished {
    pub quantity: u64,
    pub reference: Option<String>,
    /// Where the units are (events of schema version 1 happened at the default location).
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockReserved {
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub quantity: u64,
    pub ttl_seconds: Option<u64>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Where the units are (events of schema version 1 happened at the default location).
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationReleased {
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub quantity: u64,
    pub reason: Option<String>,
    /// Where the units are (events of schema version 1 happened at the default location).
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationExpired {
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub quantity: u64,
    pub expires_at: DateTime<Utc>,
    /// Where the units are (events of schema version 1 happened at the default location).
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationConfirmed {
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub quantity: u64,
    /// Where the units are (events of schema version 1 happened at the default location).
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockAdjusted {
    pub delta: i64,
    pub reason: String,
    pub reference: Option<String>,
    /// Where the units are (events of schema version 1 happened at the default location).
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReorderPointSet {
    pub reorder_point: u64,
    pub previous_reorder_point: u64,
    /// Where the units are (events of schema version 1 happened at the default location).
    pub location: String,
}

/// Units left `from_location`'s on hand and are in transit to `to_location`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferDispatched {
    pub transfer_id: String,
    pub from_location: String,
    pub to_location: String,
    pub quantity: u64,
    pub reference: Option<String>,
}

/// An in-transit transfer arrived: `quantity_received` of the `quantity_dispatched` units join
/// `to_location`'s on hand; a shortfall leaves the books with the discrepancy reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferReceived {
    pub transfer_id: String,
    pub from_location: String,
    pub to_location: String,
    pub quantity_dispatched: u64,
    pub quantity_received: u64,
    pub discrepancy_reason: Option<String>,
}

/// An in-transit transfer was called off: its units are back in `from_location`'s on hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferCancelled {
    pub transfer_id: String,
    pub from_location: String,
    pub to_location: String,
    pub quantity: u64,
    pub reason: Option<String>,
}

/// The SKU entered the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuRegistered {
    pub name: String,
    pub unit: String,
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// The SKU's catalogue entry changed; the event carries the whole entry after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuUpdated {
    pub name: String,
    pub unit: String,
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// The SKU is no longer sold or restocked: replenishment and new reservations are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuDiscontinued {
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkuEvent {
    Replenished(StockReplenished),
    Reserved(StockReserved),
    Released(ReservationReleased),
    Expired(ReservationExpired),
    Confirmed(ReservationConfirmed),
    Adjusted(StockAdjusted),
    ReorderPointSet(ReorderPointSet),
    TransferDispatched(TransferDispatched),
    TransferReceived(TransferReceived),
    TransferCancelled(TransferCancelled),
    Registered(SkuRegistered),
    Updated(SkuUpdated),
    Discontinued(SkuDiscontinued),
}

/// What an event says beside its effect on the balances, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventDetails<'a> {
    pub reservation_id: Option<&'a str>,
    pub order_id: Option<&'a str>,
    /// Why stock was adjusted or a reservation released.
    pub reason: Option<&'a str>,
    /// The outside document a replenishment or adjustment refers to.
    pub reference: Option<&'a str>,
    /// Where the movement happened (for a transfer: where the units left, or for a receipt
    /// where they arrived).
    pub location: Option<&'a str>,
    pub transfer_id: Option<&'a str>,
    /// The other location of a transfer.
    pub counterpart_location: Option<&'a str>,
}

/// The (type name, schema version) of every event the code emits, for schema checks and docs.
pub const EVENT_TYPES: &[(&str, u32)] = &[
    ("StockReplenished", 2),
    ("StockReserved", 2),
    ("ReservationReleased", 2),
    ("ReservationExpired", 2),
    ("ReservationConfirmed", 2),
    ("StockAdjusted", 2),
    ("ReorderPointSet", 2),
    ("TransferDispatched", 1),
    ("TransferReceived", 1),
    ("TransferCancelled", 1),
    ("SkuRegistered", 1),
    ("SkuUpdated", 1),
    ("SkuDiscontinued", 1),
];

/// The (type name, schema version) of every older payload the code still reads, each upcast
/// to the current version by [`SkuEvent::decode`].
pub const EVENT_TYPES_UPCAST: &[(&str, u32)] = &[
    ("StockReplenished", 1),
    ("StockReserved", 1),
    ("ReservationReleased", 1),
    ("ReservationExpired", 1),
    ("ReservationConfirmed", 1),
    ("StockAdjusted", 1),
    ("ReorderPointSet", 1),
];

/// A stored payload this code cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type:?} (schema version {schema_version})")]
    UnknownType {
        event_type: String,
        schema_version: u32,
    },
    #[error("event {event_type} v{schema_version} does not match its schema: {source}")]
    Payload {
        event_type: String,
        schema_version: u32,
        source: serde_json::Error,
    },
}

impl SkuEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Replenished(_) => "StockReplenished",
            Self::Reserved(_) => "StockReserved",
            Self::Released(_) => "ReservationReleased",
            Self::Expired(_) => "ReservationExpired",
            Self::Confirmed(_) => "ReservationConfirmed",
            Self::Adjusted(_) => "StockAdjusted",
            Self::ReorderPointSet(_) => "ReorderPointSet",
            Self::TransferDispatched(_) => "TransferDispatched",
            Self::TransferReceived(_) => "TransferReceived",
            Self::TransferCancelled(_) => "TransferCancelled",
            Self::Registered(_) => "SkuRegistered",
            Self::Updated(_) => "SkuUpdated",
            Self::Discontinued(_) => "SkuDiscontinued",
        }
    }

    /// The schema version this code writes. A changed payload gets a new version; the old
    /// version's payload struct stays in [`v1`] (and so on) with an upcast to the current one,
    /// applied in [`SkuEvent::decode`], so stored streams load unchanged and are never
    /// rewritten.
    pub fn schema_version(&self) -> u32 {
        match self {
            Self::Replenished(_)
            | Self::Reserved(_)
            | Self::Released(_)
            | Self::Expired(_)
            | Self::Confirmed(_)
            | Self::Adjusted(_)
            | Self::ReorderPointSet(_) => 2,
            Self::TransferDispatched(_)
            | Self::TransferReceived(_)
            | Self::TransferCancelled(_)
            | Self::Registered(_)
            | Self::Updated(_)
            | Self::Discontinued(_) => 1,
        }
    }

    /// The movement kind from the glossary (replenished, reserved, ...), or `None` for an event
    /// that moves no stock.
    pub fn movement(&self) -> Option<&'static str> {
        match self {
            Self::Replenished(_) => Some("replenished"),
            Self::Reserved(_) => Some("reserved"),
            Self::Released(_) => Some("released"),
            Self::Expired(_) => Some("expired"),
            Self::Confirmed(_) => Some("confirmed"),
            Self::Adjusted(_) => Some("adjusted"),
            Self::TransferDispatched(_) => Some("transfer_dispatched"),
            Self::TransferReceived(_) => Some("transfer_received"),
            Self::TransferCancelled(_) => Some("transfer_cancelled"),
            Self::ReorderPointSet(_)
            | Self::Registered(_)
            | Self::Updated(_)
            | Self::Discontinued(_) => None,
        }
    }

    /// The reservation, order, reason and reference the event carries: what the history and the
    /// movement ledger show beside the balances, described once for both.
    pub fn details(&self) -> EventDetails<'_> {
        let (reservation_id, order_id, reason, reference) = match self {
            Self::Replenished(e) => (None, None, None, e.reference.as_deref()),
            Self::Reserved(e) => (Some(&*e.reservation_id), e.order_id.as_deref(), None, None),
            Self::Released(e) => (
                Some(&*e.reservation_id),
                e.order_id.as_deref(),
                e.reason.as_deref(),
                None,
            ),
            Self::Expired(e) => (Some(&*e.reservation_id), e.order_id.as_deref(), None, None),
            Self::Confirmed(e) => (Some(&*e.reservation_id), e.order_id.as_deref(), None, None),
            Self::Adjusted(e) => (None, None, Some(&*e.reason), e.reference.as_deref()),
            Self::TransferDispatched(e) => (None, None, None, e.reference.as_deref()),
            Self::TransferReceived(e) => (None, None, e.discrepancy_reason.as_deref(), None),
            Self::TransferCancelled(e) => (None, None, e.reason.as_deref(), None),
            Self::Discontinued(e) => (None, None, e.reason.as_deref(), None),
            Self::ReorderPointSet(_) | Self::Registered(_) | Self::Updated(_) => {
                (None, None, None, None)
            }
        };
        let (transfer_id, counterpart_location) = match self {
            Self::TransferDispatched(e) => (Some(&*e.transfer_id), Some(&*e.to_location)),
            Self::TransferReceived(e) => (Some(&*e.transfer_id), Some(&*e.from_location)),
            Self::TransferCancelled(e) => (Some(&*e.transfer_id), Some(&*e.to_location)),
            _ => (None, None),
        };
        EventDetails {
            reservation_id,
            order_id,
            reason,
            reference,
            location: self.location(),
            transfer_id,
            counterpart_location,
        }
    }

    /// The location the event happened at: for a dispatch or a cancelled transfer the source,
    /// for a receipt the destination; `None` for a catalogue event (it concerns the SKU
    /// everywhere).
    pub fn location(&self) -> Option<&str> {
        Some(match self {
            Self::Replenished(e) => &e.location,
            Self::Reserved(e) => &e.location,
            Self::Released(e) => &e.location,
            Self::Expired(e) => &e.location,
            Self::Confirmed(e) => &e.location,
            Self::Adjusted(e) => &e.location,
            Self::ReorderPointSet(e) => &e.location,
            Self::TransferDispatched(e) => &e.from_location,
            Self::TransferReceived(e) => &e.to_location,
            Self::TransferCancelled(e) => &e.from_location,
            Self::Registered(_) | Self::Updated(_) | Self::Discontinued(_) => return None,
        })
    }

    /// The locations whose balances the event changes: a transfer's source and destination
    /// (a receipt's destination only), a movement's location, none for a catalogue event.
    pub fn locations_moved(&self) -> Vec<&str> {
        match self {
            Self::TransferDispatched(e) => vec![&e.from_location, &e.to_location],
            Self::TransferReceived(e) => vec![&e.to_location],
            Self::TransferCancelled(e) => vec![&e.from_location, &e.to_location],
            other => other.location().into_iter().collect(),
        }
    }

    /// Whether the event concerns `location`: it happened there, or it is a transfer from or
    /// to there, or it is a catalogue event (which concerns every location).
    pub fn concerns(&self, location: &str) -> bool {
        match self {
            Self::TransferDispatched(TransferDispatched {
                from_location,
                to_location,
                ..
            })
            | Self::TransferReceived(TransferReceived {
                from_location,
                to_location,
                ..
            })
            | Self::TransferCancelled(TransferCancelled {
                from_location,
                to_location,
                ..
            }) => from_location == location || to_location == location,
            other => other.location().is_none_or(|at| at == location),
        }
    }

    pub fn encode(&self) -> serde_json::Value {
        let value = match self {
            Self::Replenished(e) => serde_json::to_value(e),
            Self::Reserved(e) => serde_json::to_value(e),
            Self::Released(e) => serde_json::to_value(e),
            Self::Expired(e) => serde_json::to_value(e),
            Self::Confirmed(e) => serde_json::to_value(e),
            Self::Adjusted(e) => serde_json::to_value(e),
            Self::ReorderPointSet(e) => serde_json::to_value(e),
            Self::TransferDispatched(e) => serde_json::to_value(e),
            Self::TransferReceived(e) => serde_json::to_value(e),
            Self::TransferCancelled(e) => serde_json::to_value(e),
            Self::Registered(e) => serde_json::to_value(e),
            Self::Updated(e) => serde_json::to_value(e),
            Self::Discontinued(e) => serde_json::to_value(e),
        };
        value.expect("event payloads are plain structs that always serialise")
    }

    pub fn decode(
        event_type: &str,
        schema_version: u32,
        data: &serde_json::Value,
    ) -> Result<Self, DecodeError> {
        fn payload<T: serde::de::DeserializeOwned>(
            event_type: &str,
            schema_version: u32,
            data: &serde_json::Value,
        ) -> Result<T, DecodeError> {
            T::deserialize(data).map_err(|source| DecodeError::Payload {
                event_type: event_type.to_owned(),
                schema_version,
                source,
            })
        }
        let (t, v) = (event_type, schema_version);
        Ok(match (t, v) {
            ("StockReplenished", 2) => Self::Replenished(payload(t, v, data)?),
            ("StockReserved", 2) => Self::Reserved(payload(t, v, data)?),
            ("ReservationReleased", 2) => Self::Released(payload(t, v, data)?),
            ("ReservationExpired", 2) => Self::Expired(payload(t, v, data)?),
            ("ReservationConfirmed", 2) => Self::Confirmed(payload(t, v, data)?),
            ("StockAdjusted", 2) => Self::Adjusted(payload(t, v, data)?),
            ("ReorderPointSet", 2) => Self::ReorderPointSet(payload(t, v, data)?),
            ("TransferDispatched", 1) => Self::TransferDispatched(payload(t, v, data)?),
            ("TransferReceived", 1) => Self::TransferReceived(payload(t, v, data)?),
            ("TransferCancelled", 1) => Self::TransferCancelled(payload(t, v, data)?),
            ("SkuRegistered", 1) => Self::Registered(payload(t, v, data)?),
            ("SkuUpdated", 1) => Self::Updated(payload(t, v, data)?),
            ("SkuDiscontinued", 1) => Self::Discontinued(payload(t, v, data)?),
            ("StockReplenished", 1) => {
                Self::Replenished(payload::<v1::StockReplenished>(t, v, data)?.upcast())
            }
            ("StockReserved", 1) => {
                Self::Reserved(payload::<v1::StockReserved>(t, v, data)?.upcast())
            }
            ("ReservationReleased", 1) => {
                Self::Released(payload::<v1::ReservationReleased>(t, v, data)?.upcast())
            }
            ("ReservationExpired", 1) => {
                Self::Expired(payload::<v1::ReservationExpired>(t, v, data)?.upcast())
            }
            ("ReservationConfirmed", 1) => {
                Self::Confirmed(payload::<v1::ReservationConfirmed>(t, v, data)?.upcast())
            }
            ("StockAdjusted", 1) => {
                Self::Adjusted(payload::<v1::StockAdjusted>(t, v, data)?.upcast())
            }
            ("ReorderPointSet", 1) => {
                Self::ReorderPointSet(payload::<v1::ReorderPointSet>(t, v, data)?.upcast())
            }
            _ => {
                return Err(DecodeError::UnknownType {
                    event_type: event_type.to_owned(),
                    schema_version,
                })
            }
        })
    }
}

/// Payloads of schema version 1, written before stock had locations, and their upcasts: each
/// happened at [`DEFAULT_LOCATION`](crate::DEFAULT_LOCATION). One upcast per version step; a
/// version 3 would add a `v2` module upcasting to it, and `v1` would upcast through `v2`.
pub mod v1 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Serialize};

    /// A version 1 payload: the version 2 fields without `location`, and its upcast, which
    /// carries every field over and places the event at the default location.
    macro_rules! located_in_version_2 {
        ($($name:ident { $($field:ident: $type:ty),+ $(,)? })+) => {$(
            #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
            #[serde(deny_unknown_fields)]
            pub struct $name {
                $(pub $field: $type,)+
            }

            impl $name {
                pub fn upcast(self) -> super::$name {
                    super::$name {
                        $($field: self.$field,)+
                        location: crate::DEFAULT_LOCATION.to_owned(),
                    }
                }
            }
        )+};
    }

    located_in_version_2! {
        StockReplenished { quantity: u64, reference: Option<String> }
        StockReserved {
            reservation_id: String,
            order_id: Option<String>,
            quantity: u64,
            ttl_seconds: Option<u64>,
            expires_at: Option<DateTime<Utc>>,
        }
        ReservationReleased {
            reservation_id: String,
            order_id: Option<String>,
            quantity: u64,
            reason: Option<String>,
        }
        ReservationExpired {
            reservation_id: String,
            order_id: Option<String>,
            quantity: u64,
            expires_at: DateTime<Utc>,
        }
        ReservationConfirmed { reservation_id: String, order_id: Option<String>, quantity: u64 }
        StockAdjusted { delta: i64, reason: String, reference: Option<String> }
        ReorderPointSet { reorder_point: u64, previous_reorder_point: u64 }
    }
}
