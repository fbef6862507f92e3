//! The NATS JetStream adapter of the integration broker port.
//!
//! # Layout
//! - this module: [`NatsBroker`], the publishing side. It keeps one client for its life (the
//!   client reconnects by itself) and its JetStream context, makes sure the stream exists
//!   (created over `<prefix>.>` when missing, with the duplicate window set), and publishes
//!   each batch pipelined: every message sent with its `Nats-Msg-Id` header set to the
//!   integration event id, then every acknowledgement awaited. A message published again
//!   within the stream's duplicate window is acknowledged as a duplicate and stored once, so a
//!   republished batch after a crash adds nothing to the stream.
//! - [`consumer`]: the other direction, the order flow's events consumed through a durable
//!   pull consumer with explicit acknowledgements, and a dead-letter subject (kept by a stream
//!   of its own) for what the ledger will not apply.

pub mod consumer;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage, stream};
use async_trait::async_trait;
use ledger_integration::{redact_url, Broker, BrokerError, OutgoingMessage};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Mutex;

/// The stream a deployment publishes to unless it names another.
pub const DEFAULT_STREAM: &str = "INVENTORY";

/// The first word of every subject, as the integration event types begin (`inventory.`).
pub const DEFAULT_SUBJECT_PREFIX: &str = "inventory";

/// Longest wait for a connection, the stream's lookup and a batch's acknowledgements together.
/// A server that has not acknowledged by then is treated as down: the batch is published again
/// after the publisher's backoff, with the same ids, which the server recognises.
pub const PUBLISH_TIMEOUT_MS: u64 = 10_000;

/// The duplicate window of a stream this adapter creates: how long the server remembers message
/// ids. Two minutes is the server's own default; a publisher that is down longer than this and
/// then republishes its last batch leaves duplicates that consumers drop by id.
pub const DUPLICATE_WINDOW_MS: u64 = 120_000;

/// How to reach NATS and where to publish.
#[derive(Clone)]
pub struct NatsOptions {
    /// `nats://user:password@host:4222` (or `tls://`); secret, never shown whole.
    pub url: String,
    pub stream: String,
    /// The first word(s) of every subject; the stream is created over `<prefix>.>`. The default
    /// `inventory` makes subjects the integration topics themselves
    /// (`inventory.stock.reserved.v1.WIDGET-1`); another prefix is put before them.
    pub subject_prefix: String,
    pub publish_timeout_ms: u64,
    pub duplicate_window_ms: u64,
    /// A PEM file of the CA(s) the server's certificate must chain to (a private CA); given,
    /// the connection must be TLS.
    pub ca_file: Option<PathBuf>,
}

impl NatsOptions {
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: stream.into(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            publish_timeout_ms: PUBLISH_TIMEOUT_MS,
            duplicate_window_ms: DUPLICATE_WINDOW_MS,
            ca_file: None,
        }
    }

    /// The subject `topic` is published under.
    pub fn subject(&self, topic: &str) -> String {
        if self.subject_prefix == DEFAULT_SUBJECT_PREFIX {
            topic.to_owned()
        } else {
            format!("{}.{topic}", self.subject_prefix)
        }
    }

    /// The subjects of the stream.
    pub fn stream_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }
}

impl fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &redact_url(&self.url))
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("publish_timeout_ms", &self.publish_timeout_ms)
            .field("duplicate_window_ms", &self.duplicate_window_ms)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The connection a broker keeps.
struct Session {
    /// Kept for the broker's life once connected: the client reconnects by itself, and a
    /// dropped client whose server is down could go on trying to reconnect in the background.
    context: jetstream::Context,
    /// False until the stream is known to exist, and again after any failure, so that a stream
    /// deleted under the publisher is created again.
    stream_ready: bool,
}

pub struct NatsBroker {
    options: NatsOptions,
    address: String,
    /// The session once connected. A tokio mutex, held across the publish's awaits, so that
    /// batches never interleave.
    session: Mutex<Option<Session>>,
}

impl NatsBroker {
    /// A broker that connects on its first publish.
    pub fn new(options: NatsOptions) -> Self {
        Self {
            address: redact_url(&options.url),
            options,
            session: Mutex::new(None),
        }
    }

    fn error(&self, message: impl fmt::Display) -> BrokerError {
        BrokerError {
            broker: "nats",
            address: self.address.clone(),
            message: message.to_string(),
        }
    }

    async fn connect(&self) -> Result<jetstream::Context, BrokerError> {
        let timeout = Duration::from_millis(self.options.publish_timeout_ms);
        let mut connect = async_nats::ConnectOptions::new()
            .name("inventory-ledger publisher")
            .connection_timeout(timeout);
        if let Some(ca_file) = &self.options.ca_file {
            connect = connect
                .add_root_certificates(ca_file.clone())
                .require_tls(true);
        }
        let client = connect
            .connect(self.options.url.as_str())
            .await
            .map_err(|e| self.error(format!("cannot connect: {e}")))?;
        tracing::info!(address = %self.address, "connected to NATS");
        Ok(jetstream::ContextBuilder::new()
            .timeout(timeout)
            .ack_timeout(timeout)
            .build(client))
    }

    async fn ensure_stream(&self, context: &jetstream::Context) -> Result<(), BrokerError> {
        context
            .get_or_create_stream(stream::Config {
                name: self.options.stream.clone(),
                subjects: vec![self.options.stream_subjects()],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_millis(self.options.duplicate_window_ms),
                ..stream::Config::default()
            })
            .await
            .map_err(|e| {
                self.error(format!(
                    "cannot find or create the stream {:?}: {e}",
                    self.options.stream
                ))
            })?;
        Ok(())
    }

    async fn publish_on(
        &self,
        session: &mut Option<Session>,
        messages: &[OutgoingMessage],
    ) -> Result<(), BrokerError> {
        if session.is_none() {
            *session = Some(Session {
                context: self.connect().await?,
                stream_ready: false,
            });
        }
        let session = session.as_mut().expect("connected just above");
        if !session.stream_ready {
            self.ensure_stream(&session.context).await?;
            session.stream_ready = true;
        }
        let jetstream = &session.context;
        let mut acknowledgements: Vec<PublishAckFuture> = Vec::with_capacity(messages.len());
        for message in messages {
            let publish = PublishMessage::build()
                .payload(message.body.clone().into())
                .message_id(message.id.to_string())
                .header("Ce-Type", message.event_type)
                .header("Content-Type", "application/cloudevents+json");
            let acknowledgement = jetstream
                .send_publish(self.options.subject(&message.topic), publish)
                .await
                .map_err(|e| self.error(format!("publish failed: {e}")))?;
            acknowledgements.push(acknowledgement);
        }
        for (acknowledgement, message) in acknowledgements.into_iter().zip(messages) {
            let ack = acknowledgement
                .await
                .map_err(|e| self.error(format!("no acknowledgement for {}: {e}", message.id)))?;
            if ack.duplicate {
                tracing::debug!(id = %message.id, "the server already had this message");
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn kind(&self) -> &'static str {
        "nats"
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
                    "no acknowledgement within {} ms",
                    self.options.publish_timeout_ms
                ))),
            };
        if result.is_err() {
            // Look the stream up again on the next attempt (it may have been deleted); the
            // client's own reconnection handles a lost connection. Messages the client still
            // holds from this attempt may reach the server once it reconnects: the same ids,
            // which the server drops within its duplicate window and consumers after it.
            if let Some(session) = session.as_mut() {
                session.stream_ready = false;
            }
        }
        result
    }
}
