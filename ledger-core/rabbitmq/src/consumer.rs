//! The consumer of the order flow's events from a RabbitMQ queue.
//!
//! The queue is durable and declared if missing (the order flow publishes to it or binds it to
//! its exchange). Deliveries are acknowledged by hand, one by one, only once decided; at most
//! `prefetch` are unacknowledged at once, and those are handled concurrently, so a message
//! whose handling waits (a retry) never holds up the messages behind it.
//!
//! Dead letters go to a durable fanout exchange of their own, with a durable queue of the same
//! name bound to it (`<queue>.dead-letter` unless named otherwise): the original body and
//! properties unchanged, plus headers with the reason. The dead letter is published with a
//! publisher confirm and the original acknowledged only after it, so a crash in between
//! dead-letters the message twice rather than never.

use crate::open_connection;
use futures::TryStreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use ledger_integration::inbound::{
    consume_until_shutdown, Disposition, InboundHandler, Poison, SessionEnd,
};
use ledger_integration::{redact_url, BrokerError};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The consumer's name in metrics and logs.
pub const CONSUMER: &str = "rabbitmq";

/// What a queue's dead-letter exchange and queue are called unless named otherwise.
pub const DEAD_LETTER_SUFFIX: &str = ".dead-letter";

/// Deliveries unacknowledged at once unless configured otherwise: enough to keep the ledger
/// busy while some messages wait on a retry, small enough that a crash leaves few to redeliver.
pub const PREFETCH_DEFAULT: u16 = 32;

/// Longest wait for the broker to confirm a dead letter. Without a confirmation the original
/// is not acknowledged: the session is dropped and the message delivered again.
pub const DEAD_LETTER_TIMEOUT_MS: u64 = 10_000;

/// Longest wait for a connection and the declarations: a broker that accepts the connection
/// but does not answer is treated as down, and the consumer connects again after its backoff.
pub const OPEN_TIMEOUT_MS: u64 = 10_000;

/// Header of a dead letter: why the ledger did not apply the message, in words.
pub const HEADER_REASON: &str = "x-ledger-dead-letter-reason";
/// Header of a dead letter: the reason's kind (`invalid_json`, `unknown_type`, ...).
pub const HEADER_KIND: &str = "x-ledger-dead-letter-kind";
/// Header of a dead letter: the queue the message was consumed from.
pub const HEADER_QUEUE: &str = "x-ledger-original-queue";
/// Header of a dead letter: the exchange the message was first published to.
pub const HEADER_EXCHANGE: &str = "x-ledger-original-exchange";
/// Header of a dead letter: the routing key the message was first published with.
pub const HEADER_ROUTING_KEY: &str = "x-ledger-original-routing-key";

/// AMQP delivery mode 2: kept on disk in durable queues.
const PERSISTENT: u8 = 2;

/// Where to consume from and where dead letters go.
#[derive(Clone)]
pub struct RabbitMqConsumerOptions {
    /// `amqp://user:password@host:5672/vhost` (or `amqps://`); secret, never shown whole.
    pub url: String,
    pub queue: String,
    /// The fanout exchange dead letters are published to, and the queue bound to it.
    pub dead_letter: String,
    pub prefetch: u16,
    /// A PEM file of the CA(s) an `amqps://` server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
}

impl RabbitMqConsumerOptions {
    pub fn new(url: impl Into<String>, queue: impl Into<String>) -> Self {
        let queue = queue.into();
        Self {
            url: url.into(),
            dead_letter: format!("{queue}{DEAD_LETTER_SUFFIX}"),
            queue,
            prefetch: PREFETCH_DEFAULT,
            ca_file: None,
        }
    }
}

impl fmt::Debug for RabbitMqConsumerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqConsumerOptions")
            .field("url", &redact_url(&self.url))
            .field("queue", &self.queue)
            .field("dead_letter", &self.dead_letter)
            .field("prefetch", &self.prefetch)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Consume until `shutdown` turns true, reconnecting with backoff whenever the broker goes away.
pub async fn consume(
    options: RabbitMqConsumerOptions,
    handler: Arc<dyn InboundHandler>,
    shutdown: watch::Receiver<bool>,
) {
    assert!(options.prefetch > 0, "a prefetch of 0 means unbounded");
    let address = redact_url(&options.url);
    consume_until_shutdown(CONSUMER, &*handler, shutdown, || {
        session(&options, &address, &*handler)
    })
    .await;
}

/// One connection: declare, consume until something fails.
async fn session(
    options: &RabbitMqConsumerOptions,
    address: &str,
    handler: &dyn InboundHandler,
) -> SessionEnd {
    let error = |message: String| BrokerError {
        broker: CONSUMER,
        address: address.to_owned(),
        message,
    };
    let opened = tokio::time::timeout(Duration::from_millis(OPEN_TIMEOUT_MS), open(options))
        .await
        .unwrap_or_else(|_| Err(format!("no connection within {OPEN_TIMEOUT_MS} ms")));
    let (connection, channel, dead_letters) = match opened {
        Ok(opened) => opened,
        Err(message) => {
            return SessionEnd {
                error: error(message),
                consumed: false,
            }
        }
    };
    let consumer = match channel
        .basic_consume(
            &options.queue,
            "inventory-ledger",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    {
        Ok(consumer) => consumer,
        Err(e) => {
            return SessionEnd {
                error: error(format!("cannot consume from {:?}: {e}", options.queue)),
                consumed: false,
            }
        }
    };
    tracing::info!(%address, queue = %options.queue, dead_letter = %options.dead_letter, "consuming order events from RabbitMQ");
    let result = consumer
        .map_err(|e| format!("delivery failed: {e}"))
        .try_for_each_concurrent(usize::from(options.prefetch), |delivery| {
            deliver(options, handler, &dead_letters, delivery)
        })
        .await;
    let message = match result {
        Ok(()) => "the broker ended the consumer (queue deleted?)".to_owned(),
        Err(message) => message,
    };
    let _ = tokio::time::timeout(
        Duration::from_millis(1_000),
        connection.close(0, "consumer session ended"),
    )
    .await;
    SessionEnd {
        error: error(message),
        consumed: true,
    }
}

/// Connect, and declare the queue, the dead-letter exchange and its queue.
async fn open(
    options: &RabbitMqConsumerOptions,
) -> Result<(lapin::Connection, Channel, Channel), String> {
    let connection = open_connection(
        &options.url,
        options.ca_file.as_deref(),
        "inventory-ledger order events",
    )
    .await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    channel
        .basic_qos(options.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| format!("cannot set the prefetch: {e}"))?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(&options.queue, durable, FieldTable::default())
        .await
        .map_err(|e| format!("cannot declare the durable queue {:?}: {e}", options.queue))?;
    let dead_letters = connection
        .create_channel()
        .await
        .map_err(|e| format!("cannot open the dead letters' channel: {e}"))?;
    dead_letters
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("cannot turn on publisher confirms: {e}"))?;
    dead_letters
        .exchange_declare(
            &options.dead_letter,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot declare the dead-letter exchange: {e}"))?;
    dead_letters
        .queue_declare(&options.dead_letter, durable, FieldTable::default())
        .await
        .map_err(|e| format!("cannot declare the dead-letter queue: {e}"))?;
    dead_letters
        .queue_bind(
            &options.dead_letter,
            &options.dead_letter,
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot bind the dead-letter queue: {e}"))?;
    Ok((connection, channel, dead_letters))
}

/// Hand one delivery to the handler and settle it as decided. An error ends the session.
async fn deliver(
    options: &RabbitMqConsumerOptions,
    handler: &dyn InboundHandler,
    dead_letters: &Channel,
    delivery: Delivery,
) -> Result<(), String> {
    match handler.handle(CONSUMER, &delivery.data).await {
        Disposition::Applied | Disposition::Duplicate => {}
        Disposition::DeadLetter(poison) => {
            dead_letter(options, dead_letters, &delivery, &poison).await?;
            handler.dead_lettered(CONSUMER, &poison);
        }
        Disposition::Return => {
            return delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
                .map(drop)
                .map_err(|e| format!("cannot return a message: {e}"));
        }
    }
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .map(drop)
        .map_err(|e| format!("cannot acknowledge a message: {e}"))
}

/// Publish `delivery` to the dead-letter exchange with the reason, and wait for the confirm.
async fn dead_letter(
    options: &RabbitMqConsumerOptions,
    channel: &Channel,
    delivery: &Delivery,
    poison: &Poison,
) -> Result<(), String> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    let text = |value: &str| AMQPValue::LongString(value.into());
    headers.insert(HEADER_REASON.into(), text(&poison.reason));
    headers.insert(HEADER_KIND.into(), text(poison.kind.as_str()));
    headers.insert(HEADER_QUEUE.into(), text(&options.queue));
    headers.insert(HEADER_EXCHANGE.into(), text(delivery.exchange.as_str()));
    headers.insert(
        HEADER_ROUTING_KEY.into(),
        text(delivery.routing_key.as_str()),
    );
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(PERSISTENT);
    let publish = async {
        let confirmation = channel
            .basic_publish(
                &options.dead_letter,
                delivery.routing_key.as_str(),
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await
            .map_err(|e| format!("cannot publish a dead letter: {e}"))?
            .await
            .map_err(|e| format!("no confirmation of a dead letter: {e}"))?;
        if confirmation.is_ack() {
            Ok(())
        } else {
            Err(format!(
                "the broker refused a dead letter ({confirmation:?})"
            ))
        }
    };
    tokio::time::timeout(Duration::from_millis(DEAD_LETTER_TIMEOUT_MS), publish)
        .await
        .map_err(|_| {
            format!("no confirmation of a dead letter within {DEAD_LETTER_TIMEOUT_MS} ms")
        })?
}
