//! The order flow's events the ledger consumes: the inbound contract, how a message body is
//! read (or refused as poison), and the port between a broker's consumer and what the ledger
//! does with a message.
//!
//! Every message is a CloudEvents 1.0 event in structured JSON mode, one type per fact and
//! version (`order.cancelled.v1`), each described by a JSON Schema under
//! `schemas/integration/inbound/`. The schemas are compiled into the reader, so what the files
//! say is what is enforced. A message is either read into an [`OrderEvent`] or refused with a
//! [`Poison`] that names why; a refused message is dead-lettered at once, since reading it again
//! cannot change the answer.

use crate::BrokerError;
use async_trait::async_trait;
use jsonschema::Validator;
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// What the ledger does to an order's holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderAction {
    /// End every open hold of the order; its units become available again.
    Release,
    /// Confirm every open hold of the order; its units leave on hand.
    Confirm,
}

/// Every order event type the ledger consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrderEventType {
    Cancelled,
    PaymentFailed,
    PaymentSucceeded,
    Completed,
}

/// Every type, in the order the README lists them.
pub const ORDER_EVENT_TYPES: &[OrderEventType] = &[
    OrderEventType::Cancelled,
    OrderEventType::PaymentFailed,
    OrderEventType::PaymentSucceeded,
    OrderEventType::Completed,
];

impl OrderEventType {
    /// The CloudEvents `type`: `order.<fact>.v<version>`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cancelled => "order.cancelled.v1",
            Self::PaymentFailed => "order.payment_failed.v1",
            Self::PaymentSucceeded => "order.payment_succeeded.v1",
            Self::Completed => "order.completed.v1",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        ORDER_EVENT_TYPES.iter().copied().find(|t| t.name() == name)
    }

    pub const fn action(self) -> OrderAction {
        match self {
            Self::Cancelled | Self::PaymentFailed => OrderAction::Release,
            Self::PaymentSucceeded | Self::Completed => OrderAction::Confirm,
        }
    }

    /// The type's JSON Schema, as committed under `schemas/integration/inbound/`.
    pub const fn schema(self) -> &'static str {
        match self {
            Self::Cancelled => {
                include_str!("../../../schemas/integration/inbound/order.cancelled.v1.schema.json")
            }
            Self::PaymentFailed => include_str!(
                "../../../schemas/integration/inbound/order.payment_failed.v1.schema.json"
            ),
            Self::PaymentSucceeded => include_str!(
                "../../../schemas/integration/inbound/order.payment_succeeded.v1.schema.json"
            ),
            Self::Completed => {
                include_str!("../../../schemas/integration/inbound/order.completed.v1.schema.json")
            }
        }
    }
}

/// One order event, read and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvent {
    /// With `source`, the key a message is applied once by.
    pub id: String,
    pub source: String,
    pub event_type: OrderEventType,
    pub order_id: String,
    /// The release reason the sender gave, if any.
    pub reason: Option<String>,
}

/// Why a message is dead-lettered: a bounded set, so it can label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoisonKind {
    /// The body is not JSON (or not a JSON object).
    InvalidJson,
    /// The `type` is not one the ledger consumes.
    UnknownType,
    /// The message does not match its type's schema.
    SchemaViolation,
    /// No reservation of the ledger names the order, after every attempt.
    UnknownOrder,
    /// The message is valid but the ledger cannot do what it asks (a confirm of an order whose
    /// holds were all released or expired, a rule the ledger refuses).
    Rejected,
    /// The ledger failed for a reason that might pass (its store unreachable), every attempt.
    AttemptsExhausted,
}

impl PoisonKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::UnknownType => "unknown_type",
            Self::SchemaViolation => "schema_violation",
            Self::UnknownOrder => "unknown_order",
            Self::Rejected => "rejected",
            Self::AttemptsExhausted => "attempts_exhausted",
        }
    }
}

/// A message the ledger will not apply, and why (the reason travels with the dead letter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub kind: PoisonKind,
    pub reason: String,
}

impl Poison {
    pub fn new(kind: PoisonKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Poison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.reason)
    }
}

/// Schema errors quoted in a dead letter's reason; the first few say what is wrong, and a
/// reason stays short enough for a header.
const SCHEMA_ERRORS_SHOWN_MAX: usize = 3;

/// Reads message bodies against the compiled schemas; built once per process.
pub struct OrderEventReader {
    validators: Vec<(OrderEventType, Validator)>,
}

impl fmt::Debug for OrderEventReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderEventReader").finish_non_exhaustive()
    }
}

impl Default for OrderEventReader {
    fn default() -> Self {
        Self::new()
    }
}

impl OrderEventReader {
    pub fn new() -> Self {
        let validators = ORDER_EVENT_TYPES
            .iter()
            .map(|&event_type| {
                let document: Value = serde_json::from_str(event_type.schema())
                    .expect("the committed inbound schemas are JSON");
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .should_validate_formats(true)
                    .should_ignore_unknown_formats(false)
                    .build(&document)
                    .expect("the committed inbound schemas compile");
                (event_type, validator)
            })
            .collect();
        Self { validators }
    }

    /// The message in `body`, or why it is poison.
    pub fn read(&self, body: &[u8]) -> Result<OrderEvent, Poison> {
        let message: Value = serde_json::from_slice(body)
            .map_err(|e| Poison::new(PoisonKind::InvalidJson, format!("not JSON: {e}")))?;
        if !message.is_object() {
            return Err(Poison::new(
                PoisonKind::InvalidJson,
                "not a JSON object (a CloudEvent in structured mode is one)",
            ));
        }
        let Some(name) = message.get("type").and_then(Value::as_str) else {
            return Err(Poison::new(
                PoisonKind::SchemaViolation,
                "no `type` string: not a CloudEvent",
            ));
        };
        let Some(event_type) = OrderEventType::from_name(name) else {
            let known: Vec<&str> = ORDER_EVENT_TYPES.iter().map(|t| t.name()).collect();
            return Err(Poison::new(
                PoisonKind::UnknownType,
                format!(
                    "type {name:?} is not consumed (known: {})",
                    known.join(", ")
                ),
            ));
        };
        let validator = &self
            .validators
            .iter()
            .find(|(t, _)| *t == event_type)
            .expect("every type has a validator")
            .1;
        let errors: Vec<String> = validator
            .iter_errors(&message)
            .take(SCHEMA_ERRORS_SHOWN_MAX)
            .map(|e| format!("{e} at {:?}", e.instance_path().to_string()))
            .collect();
        if !errors.is_empty() {
            return Err(Poison::new(
                PoisonKind::SchemaViolation,
                format!("does not match {name}: {}", errors.join("; ")),
            ));
        }
        let text = |value: &Value| value.as_str().map(str::to_owned);
        Ok(OrderEvent {
            id: text(&message["id"]).expect("the schema requires a string id"),
            source: text(&message["source"]).expect("the schema requires a string source"),
            event_type,
            order_id: text(&message["data"]["order_id"])
                .expect("the schema requires a string order id"),
            reason: text(&message["data"]["reason"]),
        })
    }
}

/// What becomes of one delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Applied now: acknowledge it.
    Applied,
    /// Applied before (the same source and id): acknowledge it, nothing changed.
    Duplicate,
    /// Will not be applied: publish it to the dead-letter destination with the reason, then
    /// acknowledge it.
    DeadLetter(Poison),
    /// Not decided (the process is stopping): give it back to the broker for a later delivery.
    Return,
}

/// What a broker's consumer hands each delivered message to. The consumer owns delivery
/// (acknowledgements, dead letters, reconnecting); the handler owns meaning (reading, applying,
/// retrying what may pass, counting).
#[async_trait]
pub trait InboundHandler: Send + Sync + 'static {
    /// Decide what becomes of `body`, delivered by `consumer` (`rabbitmq` or `nats`). Returns
    /// only when decided; retries of transient failures happen inside, bounded.
    async fn handle(&self, consumer: &'static str, body: &[u8]) -> Disposition;

    /// The broker took the dead letter for `poison` (it is counted then, not when decided, so a
    /// dead letter the broker lost is not counted).
    fn dead_lettered(&self, consumer: &'static str, poison: &Poison);

    /// The consumer lost or could not open its broker session and will reconnect.
    fn broker_error(&self, consumer: &'static str, error: &BrokerError);
}

/// The first wait before reconnecting to a broker that went away: short, since a broker
/// restart or a dropped connection is usually over quickly.
pub const RECONNECT_BACKOFF_MIN_MS: u64 = 100;

/// The longest wait between reconnection attempts: the wait doubles up to this, so a broker
/// that is down for long is asked every few seconds, not flooded, and comes back into use
/// within this much of its return.
pub const RECONNECT_BACKOFF_MAX_MS: u64 = 5_000;

/// How a consumer's session with its broker ended.
#[derive(Debug)]
pub struct SessionEnd {
    pub error: BrokerError,
    /// The session got as far as consuming: the next attempt starts from the shortest wait.
    pub consumed: bool,
}

/// Run a consumer until `shutdown` turns true: open a session with `session` (connect, declare,
/// consume until something fails), and after it ends report the error to `handler`, wait with
/// backoff and open the next. A stop drops the session where it is: a message not yet
/// acknowledged is delivered again later, and applying it again changes nothing.
pub async fn consume_until_shutdown<F, S>(
    consumer: &'static str,
    handler: &dyn InboundHandler,
    mut shutdown: watch::Receiver<bool>,
    mut session: F,
) where
    F: FnMut() -> S,
    S: Future<Output = SessionEnd>,
{
    let mut backoff = Duration::from_millis(RECONNECT_BACKOFF_MIN_MS);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let end = tokio::select! {
            end = session() => end,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        if end.consumed {
            backoff = Duration::from_millis(RECONNECT_BACKOFF_MIN_MS);
        }
        handler.broker_error(consumer, &end.error);
        tracing::warn!(
            consumer,
            error = %end.error,
            retry_in_ms = backoff.as_millis() as u64,
            "order event consumer lost its broker; reconnecting"
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_millis(RECONNECT_BACKOFF_MAX_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_cancellation_is_read_with_its_order_and_reason() {
        let body = br#"{"specversion":"1.0","id":"m-1","source":"urn:checkout",
            "type":"order.cancelled.v1","data":{"order_id":"ord-1","reason":"changed mind","x":1},
            "traceparent":"00-abc"}"#;
        let event = OrderEventReader::new().read(body).expect("valid");
        assert_eq!(event.event_type, OrderEventType::Cancelled);
        assert_eq!(event.order_id, "ord-1");
        assert_eq!(event.reason.as_deref(), Some("changed mind"));
        assert_eq!(event.event_type.action(), OrderAction::Release);
    }

    #[test]
    fn poison_is_named_by_kind() {
        let reader = OrderEventReader::new();
        let kind = |body: &[u8]| reader.read(body).unwrap_err().kind;
        assert_eq!(kind(b"{not json"), PoisonKind::InvalidJson);
        assert_eq!(kind(b"[1,2]"), PoisonKind::InvalidJson);
        assert_eq!(
            kind(
                br#"{"specversion":"1.0","id":"1","source":"s","type":"order.lost.v1","data":{}}"#
            ),
            PoisonKind::UnknownType
        );
        assert_eq!(
            kind(br#"{"specversion":"1.0","id":"1","source":"s","type":"order.completed.v1","data":{"order_id":7}}"#),
            PoisonKind::SchemaViolation
        );
        assert_eq!(
            kind(br#"{"specversion":"1.0","id":"1","source":"s","type":"order.completed.v1","time":"yesterday","data":{"order_id":"o"}}"#),
            PoisonKind::SchemaViolation
        );
        assert_eq!(kind(br#"{"id":"1"}"#), PoisonKind::SchemaViolation);
    }
}
