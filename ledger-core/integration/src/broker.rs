//! The broker port. A publisher hands an adapter the messages of one batch, in log order; the
//! adapter returns `Ok` only when the broker has taken responsibility for every one of them
//! (RabbitMQ's publisher confirm, JetStream's acknowledgement), and the publisher moves its
//! checkpoint only then. Any error means "some, all or none may have been published": the
//! publisher publishes the whole batch again, with the same ids.

use async_trait::async_trait;
use uuid::Uuid;

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The integration event's id: the AMQP `message_id`, the NATS `Nats-Msg-Id` header.
    pub id: Uuid,
    /// The CloudEvents type, also an AMQP `type` property / a `Ce-Type` header.
    pub event_type: &'static str,
    /// The routing key / subject (see [`crate::contract::topic`]).
    pub topic: String,
    /// The whole CloudEvent as JSON.
    pub body: Vec<u8>,
}

/// A failed publish. Every failure is handled the same way by the publisher (back off, publish
/// the batch again from the checkpoint), so one type with the broker's words is enough; the
/// message names the broker and the address so that an operator knows which one is down.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{broker} at {address}: {message}")]
pub struct BrokerError {
    pub broker: &'static str,
    /// The broker's address without credentials.
    pub address: String,
    pub message: String,
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// `rabbitmq` or `nats`: in metrics, logs and the publisher's name.
    fn kind(&self) -> &'static str;

    /// Publish `messages` in order and wait until the broker confirmed all of them. Connects
    /// (or reconnects) as needed; never waits longer than the adapter's publish deadline.
    async fn publish(&self, messages: &[OutgoingMessage]) -> Result<(), BrokerError>;
}

/// A broker's URL as operators may see it: the credentials (`user:password@`) left out, so the
/// address can go to logs, errors and status pages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<url without a scheme>".to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn credentials_never_reach_the_shown_address() {
        assert_eq!(
            redact_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("nats://a:b@c:4222"), "nats://c:4222");
        assert_eq!(redact_url("nats://host:4222"), "nats://host:4222");
        assert_eq!(redact_url("host:4222"), "<url without a scheme>");
    }
}
