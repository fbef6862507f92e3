//! The RabbitMQ adapter of the integration broker port.
//!
//! # Layout
//! - this module: [`RabbitMqBroker`], the publishing side. It keeps one connection with one
//!   confirm-mode channel, declares the durable topic exchange it publishes to, and publishes
//!   each batch pipelined (every message sent, then every confirmation awaited), which keeps
//!   log order on the one channel while paying one round trip per batch rather than per
//!   message.
//! - [`consumer`]: the other direction, the order flow's events consumed from a durable queue
//!   (manual acknowledgements, bounded prefetch), with a dead-letter exchange and queue for
//!   what the ledger will not apply.
//!
//! Published messages are persistent (delivery mode 2), carry the integration event id as
//! `message_id` and its type as `type`, and are routed by `<type>.<SKU>`. The exchange does not
//! keep messages itself: a consumer binds a durable queue to it (e.g. `inventory.#`) before the
//! events it must not miss are published. Any failure drops the connection; the next publish
//! connects again, and the publisher publishes the whole batch again with the same ids.

pub mod consumer;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use ledger_integration::{redact_url, Broker, BrokerError, OutgoingMessage};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Mutex;

/// The exchange a deployment publishes to unless it names another.
pub const DEFAULT_EXCHANGE: &str = "inventory.events";

/// Longest wait for a connection, the exchange's declaration and a batch's confirmations
/// together. A broker that has not confirmed by then is treated as down: the batch is published
/// again after the publisher's backoff, with the same ids.
pub const PUBLISH_TIMEOUT_MS: u64 = 10_000;

/// The content type of a CloudEvent in structured mode.
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// AMQP delivery mode 2: the broker writes the message to disk in durable queues.
const PERSISTENT: u8 = 2;

/// How to reach RabbitMQ and where to publish.
#[derive(Clone)]
pub struct RabbitMqOptions {
    /// `amqp://user:password@host:5672/vhost` (or `amqps://`); secret, never shown whole.
    pub url: String,
    pub exchange: String,
    pub publish_timeout_ms: u64,
    /// A PEM file of the CA(s) an `amqps://` server's certificate must chain to (a private
    /// CA); without it, the public web roots.
    pub ca_file: Option<PathBuf>,
}

impl RabbitMqOptions {
    pub fn new(url: impl Into<String>, exchange: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            exchange: exchange.into(),
            publish_timeout_ms: PUBLISH_TIMEOUT_MS,
            ca_file: None,
        }
    }
}

impl fmt::Debug for RabbitMqOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqOptions")
            .field("url", &redact_url(&self.url))
            .field("exchange", &self.exchange)
            .field("publish_timeout_ms", &self.publish_timeout_ms)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

struct Session {
    /// Kept so that dropping the session closes the connection.
    connection: Connection,
    channel: Channel,
}

pub struct RabbitMqBroker {
    options: RabbitMqOptions,
    address: String,
    /// The open session, if any. A tokio mutex because it is held across the publish's awaits:
    /// batches of one publisher never interleave on the channel, which keeps them in order.
    session: Mutex<Option<Session>>,
}

impl RabbitMqBroker {
    /// A broker that connects on its first publish.
    pub fn new(options: RabbitMqOptions) -> Self {
        Self {
            address: redact_url(&options.url),
            options,
            session: Mutex::new(None),
        }
    }

    fn error(&self, message: impl fmt::Display) -> BrokerError {
        BrokerError {
            broker: "rabbitmq",
            address: self.address.clone(),
            message: message.to_string(),
        }
    }

    async fn connect(&self) -> Result<Session, BrokerError> {
        let connection = open_connection(
            &self.options.url,
            self.options.ca_file.as_deref(),
            "inventory-ledger publisher",
        )
        .await
        .map_err(|e| self.error(e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| self.error(format!("cannot open a channel: {e}")))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.error(format!("cannot turn on publisher confirms: {e}")))?;
        channel
            .exchange_declare(
                &self.options.exchange,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                self.error(format!(
                    "cannot declare the durable topic exchange {:?}: {e}",
                    self.options.exchange
                ))
            })?;
        tracing::info!(address = %self.address, exchange = %self.options.exchange, "connected to RabbitMQ");
        Ok(Session {
            connection,
            channel,
        })
    }

    async fn publish_on(
        &self,
        session: &mut Option<Session>,
        messages: &[OutgoingMessage],
    ) -> Result<(), BrokerError> {
        let usable = session
            .as_ref()
            .is_some_and(|s| s.connection.status().connected() && s.channel.status().connected());
        if !usable {
            *session = Some(self.connect().await?);
        }
        let channel = &session.as_ref().expect("connected just above").channel;
        let mut confirms = Vec::with_capacity(messages.len());
        for message in messages {
            let properties = BasicProperties::default()
                .with_message_id(message.id.to_string().into())
                .with_type(message.event_type.into())
                .with_content_type(CLOUDEVENTS_JSON.into())
                .with_delivery_mode(PERSISTENT);
            let confirm = channel
                .basic_publish(
                    &self.options.exchange,
                    &message.topic,
                    BasicPublishOptions::default(),
                    &message.body,
                    properties,
                )
                .await
                .map_err(|e| self.error(format!("publish failed: {e}")))?;
            confirms.push(confirm);
        }
        for (confirm, message) in confirms.into_iter().zip(messages) {
            let confirmation = confirm
                .await
                .map_err(|e| self.error(format!("no confirmation: {e}")))?;
            if !confirmation.is_ack() {
                return Err(self.error(format!(
                    "the broker refused message {} ({confirmation:?})",
                    message.id
                )));
            }
        }
        Ok(())
    }
}

/// A connection to `url` on the running tokio runtime, over TLS for `amqps://` (trusting
/// `ca_file`'s CAs when given, else the public web roots), named `name` in the broker's
/// management view. The error says what failed, without the URL's credentials.
pub(crate) async fn open_connection(
    url: &str,
    ca_file: Option<&std::path::Path>,
    name: &str,
) -> Result<Connection, String> {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
        .with_connection_name(name.into());
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: match ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?,
            ),
            None => None,
        },
    };
    Connection::connect_with_config(url, properties, tls)
        .await
        .map_err(|e| format!("cannot connect: {e}"))
}

#[async_trait]
impl Broker for RabbitMqBroker {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    async fn publish(&self, messages: &[OutgoingMessage]) -> Result<(), BrokerError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut session = self.session.lock().await;
        let deadline = Duration::from_millis(self.options.publish_timeout_ms);
        let result =
            match tokio::time::timeout(deadline, self.publish_on(&mut session, messages)).await {
                Ok(result) => result,
                Err(_) => Err(self.error(format!(
                    "no confirmation within {} ms",
                    self.options.publish_timeout_ms
                ))),
            };
        if result.is_err() {
            // Whatever state the channel is in, start the next attempt on a fresh connection.
            if let Some(old) = session.take() {
                let _ = tokio::time::timeout(
                    Duration::from_millis(1_000),
                    old.connection.close(0, "publish failed"),
                )
                .await;
            }
        }
        result
    }
}
