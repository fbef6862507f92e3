//! The integration event envelope and its types.
//!
//! Every message is a CloudEvents 1.0 event in structured JSON mode: the attributes and the
//! `data` object in one JSON document. `id` is the ledger event's id (for a low-stock alert, an
//! id derived from the event that opened or closed it), so a message published twice — after a
//! publisher crash or a lost confirmation — carries the same id both times and a consumer drops
//! the second by id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The CloudEvents version every message follows.
pub const SPEC_VERSION: &str = "1.0";

/// The `source` attribute when a deployment sets none: a URN naming the ledger. A deployment
/// with several ledgers (regions, tenants) gives each its own, so that `(source, id)` stays
/// unique across them as CloudEvents asks.
pub const DEFAULT_SOURCE: &str = "urn:inventory-ledger";

/// The content type of every message's `data` (and of the whole message).
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// Every integration event type the ledger publishes: name, version and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IntegrationEventType {
    StockReplenished,
    StockReserved,
    ReservationReleased,
    ReservationExpired,
    ReservationConfirmed,
    StockAdjusted,
    ReorderPointSet,
    LowStockAlertOpened,
    LowStockAlertClosed,
    TransferDispatched,
    TransferReceived,
    TransferCancelled,
    SkuRegistered,
    SkuUpdated,
    SkuDiscontinued,
}

/// Every type, in the order the README lists them.
pub const INTEGRATION_EVENT_TYPES: &[IntegrationEventType] = &[
    IntegrationEventType::StockReplenished,
    IntegrationEventType::StockReserved,
    IntegrationEventType::ReservationReleased,
    IntegrationEventType::ReservationExpired,
    IntegrationEventType::ReservationConfirmed,
    IntegrationEventType::StockAdjusted,
    IntegrationEventType::ReorderPointSet,
    IntegrationEventType::LowStockAlertOpened,
    IntegrationEventType::LowStockAlertClosed,
    IntegrationEventType::TransferDispatched,
    IntegrationEventType::TransferReceived,
    IntegrationEventType::TransferCancelled,
    IntegrationEventType::SkuRegistered,
    IntegrationEventType::SkuUpdated,
    IntegrationEventType::SkuDiscontinued,
];

impl IntegrationEventType {
    /// The CloudEvents `type`: `inventory.<subject>.<fact>.v<version>`, always four dot-separated
    /// words, so that a topic pattern can select by any of them. A changed `data` shape gets a
    /// new version and both are described under `schemas/integration/`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::StockReplenished => "inventory.stock.replenished.v1",
            Self::StockReserved => "inventory.stock.reserved.v1",
            Self::ReservationReleased => "inventory.reservation.released.v1",
            Self::ReservationExpired => "inventory.reservation.expired.v1",
            Self::ReservationConfirmed => "inventory.reservation.confirmed.v1",
            Self::StockAdjusted => "inventory.stock.adjusted.v1",
            Self::ReorderPointSet => "inventory.reorder_point.set.v1",
            Self::LowStockAlertOpened => "inventory.low_stock_alert.opened.v1",
            Self::LowStockAlertClosed => "inventory.low_stock_alert.closed.v1",
            Self::TransferDispatched => "inventory.transfer.dispatched.v1",
            Self::TransferReceived => "inventory.transfer.received.v1",
            Self::TransferCancelled => "inventory.transfer.cancelled.v1",
            Self::SkuRegistered => "inventory.sku.registered.v1",
            Self::SkuUpdated => "inventory.sku.updated.v1",
            Self::SkuDiscontinued => "inventory.sku.discontinued.v1",
        }
    }

    /// The type called `name`, if the ledger publishes one.
    pub fn from_name(name: &str) -> Option<Self> {
        INTEGRATION_EVENT_TYPES
            .iter()
            .copied()
            .find(|t| t.name() == name)
    }
}

/// One integration event as it travels: the CloudEvents attributes and `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationEvent {
    pub specversion: String,
    /// The ledger event's id (a derived id for alerts): the key consumers deduplicate by.
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The SKU.
    pub subject: String,
    /// When the ledger recorded the event.
    pub time: DateTime<Utc>,
    pub datacontenttype: String,
    pub data: serde_json::Value,
    /// The CloudEvents distributed-tracing extension: the W3C trace context of the request
    /// that caused the event, as kept in its metadata, so a consumer's work joins that trace.
    /// Absent when the request carried none (and for events written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl IntegrationEvent {
    /// The topic the event is published under: its type, a dot, and its SKU with each `.`
    /// written `%2E` (a SKU may hold dots, and topic words are split at dots). Both the
    /// RabbitMQ routing key and the NATS subject, e.g. `inventory.stock.reserved.v1.WIDGET-1`,
    /// so `inventory.stock.reserved.v1.*` selects one type for every SKU and `inventory.*.*.*.WIDGET-1`
    /// every type for one SKU.
    pub fn topic(&self) -> String {
        topic(&self.event_type, &self.subject)
    }
}

/// See [`IntegrationEvent::topic`].
pub fn topic(event_type: &str, sku: &str) -> String {
    format!("{event_type}.{}", sku.replace('.', "%2E"))
}
