//! The ledger's public integration events: what other services (checkout, shipping, purchasing)
//! learn of stock movements through a broker. A contract of its own, separate from the internal
//! event payloads, so that the ledger can change how it stores facts without breaking anyone who
//! listens: CloudEvents 1.0 in JSON, one type per fact and version
//! (`inventory.stock.reserved.v1`), each described by a JSON Schema under
//! `schemas/integration/`.
//!
//! # Layout
//! - [`contract`]: the envelope (CloudEvents attributes), the type names and versions, and the
//!   topic a message is published under; what a consumer relies on, in one place.
//! - [`mapping`]: from a stored event to its integration events, with the balances after it (the
//!   SKU's and the location's) and the low-stock alerts it opened or closed, by the domain's
//!   own fold and rule; pure, so that a replay from the same state maps to the same messages
//!   with the same ids.
//! - [`broker`]: the port every broker adapter implements (RabbitMQ, NATS JetStream): publish
//!   in order and return only once the broker has confirmed every message.
//! - [`inbound`]: the other direction: the order flow's events the ledger consumes (order
//!   cancelled, paid, ...), read against their schemas or refused as poison with a reason, and
//!   the port a broker's consumer hands each message to.

pub mod broker;
pub mod contract;
pub mod inbound;
pub mod mapping;

pub use broker::{redact_url, Broker, BrokerError, OutgoingMessage};
pub use contract::{
    IntegrationEvent, IntegrationEventType, DEFAULT_SOURCE, INTEGRATION_EVENT_TYPES,
};
pub use mapping::{map_event, BalancesAfter, SkuFold};
