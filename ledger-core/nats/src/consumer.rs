//! The consumer of the order flow's events from a NATS JetStream stream.
//!
//! A durable pull consumer on the order flow's stream (which must exist: the order flow owns
//! it), created if missing, with explicit acknowledgements and at most `prefetch` messages
//! unacknowledged at once; those are handled concurrently, so a message whose handling waits
//! (a retry) never holds up the messages behind it. The server remembers the consumer's
//! position, so a restarted ledger goes on where it stopped.
//!
//! Dead letters are published to a subject of their own, kept by a stream of their own (created
//! over that one subject when missing, so that dead letters are never consumed as orders): the
//! original payload and headers, plus headers with the reason. The dead letter's `Nats-Msg-Id`
//! is the original's stream and sequence, so a dead letter published twice (a crash between
//! publishing it and acknowledging the original) is stored once.

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use futures::TryStreamExt;
use ledger_integration::inbound::{
    consume_until_shutdown, Disposition, InboundHandler, Poison, SessionEnd,
};
use ledger_integration::{redact_url, BrokerError};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};

/// The consumer's name in metrics and logs.
pub const CONSUMER: &str = "nats";

/// The durable consumer's name unless configured otherwise.
pub const DEFAULT_CONSUMER_NAME: &str = "inventory-ledger";

/// The dead letters' subject unless configured otherwise.
pub const DEFAULT_DEAD_LETTER_SUBJECT: &str = "inventory-ledger.dead-letter.orders";

/// The stream that keeps dead letters unless configured otherwise.
pub const DEFAULT_DEAD_LETTER_STREAM: &str = "INVENTORY_LEDGER_DEAD_LETTERS";

/// Messages unacknowledged at once unless configured otherwise: the consumer's
/// `max_ack_pending` and the size of each pull.
pub const PREFETCH_DEFAULT: u16 = 32;

/// How long the server waits for an acknowledgement before delivering a message again. Longer
/// than the ledger's retries of one message take (a few seconds), so a message is redelivered
/// only when the ledger that had it stopped.
pub const ACK_WAIT_MS: u64 = 60_000;

/// Longest wait for a connection, a lookup, or the acknowledgement of a dead letter.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// Header of a dead letter: why the ledger did not apply the message, in words.
pub const HEADER_REASON: &str = "Ledger-Dead-Letter-Reason";
/// Header of a dead letter: the reason's kind (`invalid_json`, `unknown_type`, ...).
pub const HEADER_KIND: &str = "Ledger-Dead-Letter-Kind";
/// Header of a dead letter: the subject the message was published to.
pub const HEADER_SUBJECT: &str = "Ledger-Original-Subject";
/// Header of a dead letter: the stream and sequence the message had (`ORDERS:42`).
pub const HEADER_SEQUENCE: &str = "Ledger-Original-Sequence";

/// Where to consume from and where dead letters go.
#[derive(Clone)]
pub struct NatsConsumerOptions {
    /// `nats://user:password@host:4222` (or `tls://`); secret, never shown whole.
    pub url: String,
    /// The order flow's stream.
    pub stream: String,
    /// Only the subjects matching this filter (e.g. `orders.>`); `None`: all of the stream's.
    pub filter_subject: Option<String>,
    /// The durable consumer's name: its position is kept by the server under it.
    pub consumer: String,
    pub dead_letter_subject: String,
    pub dead_letter_stream: String,
    pub prefetch: u16,
    /// A PEM file of the CA(s) the server's certificate must chain to; given, TLS is required.
    pub ca_file: Option<PathBuf>,
}

impl NatsConsumerOptions {
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: stream.into(),
            filter_subject: None,
            consumer: DEFAULT_CONSUMER_NAME.to_owned(),
            dead_letter_subject: DEFAULT_DEAD_LETTER_SUBJECT.to_owned(),
            dead_letter_stream: DEFAULT_DEAD_LETTER_STREAM.to_owned(),
            prefetch: PREFETCH_DEFAULT,
            ca_file: None,
        }
    }
}

impl fmt::Debug for NatsConsumerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConsumerOptions")
            .field("url", &redact_url(&self.url))
            .field("stream", &self.stream)
            .field("filter_subject", &self.filter_subject)
            .field("consumer", &self.consumer)
            .field("dead_letter_subject", &self.dead_letter_subject)
            .field("dead_letter_stream", &self.dead_letter_stream)
            .field("prefetch", &self.prefetch)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Consume until `shutdown` turns true. The client is kept for the consumer's life once
/// connected (it reconnects by itself); a failed session only looks up the stream and the
/// consumer again, after a backoff.
pub async fn consume(
    options: NatsConsumerOptions,
    handler: Arc<dyn InboundHandler>,
    shutdown: watch::Receiver<bool>,
) {
    assert!(options.prefetch > 0, "a prefetch of 0 means unbounded");
    let address = redact_url(&options.url);
    let client: Mutex<Option<Connected>> = Mutex::new(None);
    consume_until_shutdown(CONSUMER, &*handler, shutdown, || {
        attempt(&options, &address, &*handler, &client)
    })
    .await;
}

/// The client, and how many times it lost its connection so far.
struct Connected {
    client: async_nats::Client,
    /// Bumped by the client's event callback on every disconnection. The client reconnects by
    /// itself, but a pull request in flight is lost with the old connection and the pull stream
    /// does not notice; a session ends on a disconnection, so that the next one pulls anew.
    disconnections: watch::Receiver<u64>,
}

/// One session: connect unless connected, then [`session`].
async fn attempt(
    options: &NatsConsumerOptions,
    address: &str,
    handler: &dyn InboundHandler,
    client: &Mutex<Option<Connected>>,
) -> SessionEnd {
    let end = |message: String, consumed: bool| SessionEnd {
        error: BrokerError {
            broker: CONSUMER,
            address: address.to_owned(),
            message,
        },
        consumed,
    };
    let (context, mut disconnections) = {
        let mut client = client.lock().await;
        if client.is_none() {
            match connect(options).await {
                Ok(connected) => *client = Some(connected),
                Err(message) => return end(message, false),
            }
        }
        let connected = client.as_ref().expect("connected just above");
        let context = jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .build(connected.client.clone());
        (context, connected.disconnections.clone())
    };
    disconnections.borrow_and_update();
    tokio::select! {
        (message, consumed) = session(options, address, handler, &context) => end(message, consumed),
        _ = disconnections.changed() => end("the connection to the server was lost".to_owned(), true),
    }
}

async fn connect(options: &NatsConsumerOptions) -> Result<Connected, String> {
    let (disconnected, disconnections) = watch::channel(0_u64);
    let mut connect = async_nats::ConnectOptions::new()
        .name("inventory-ledger order events")
        .event_callback(move |event| {
            if matches!(event, async_nats::Event::Disconnected) {
                disconnected.send_modify(|count| *count += 1);
            }
            std::future::ready(())
        })
        .connection_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS));
    if let Some(ca_file) = &options.ca_file {
        connect = connect
            .add_root_certificates(ca_file.clone())
            .require_tls(true);
    }
    let client = connect
        .connect(options.url.as_str())
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    Ok(Connected {
        client,
        disconnections,
    })
}

/// Look up the streams and the consumer, then consume until something fails; what failed, and
/// whether consuming had begun.
async fn session(
    options: &NatsConsumerOptions,
    address: &str,
    handler: &dyn InboundHandler,
    context: &jetstream::Context,
) -> (String, bool) {
    let consumer = match open(options, context).await {
        Ok(consumer) => consumer,
        Err(message) => return (message, false),
    };
    let messages = match consumer
        .stream()
        .max_messages_per_batch(usize::from(options.prefetch))
        .messages()
        .await
    {
        Ok(messages) => messages,
        Err(e) => {
            return (
                format!("cannot pull from {:?}: {e}", options.consumer),
                false,
            )
        }
    };
    tracing::info!(%address, stream = %options.stream, consumer = %options.consumer, dead_letter = %options.dead_letter_subject, "consuming order events from NATS JetStream");
    let result = messages
        .map_err(|e| format!("pull failed: {e}"))
        .try_for_each_concurrent(usize::from(options.prefetch), |message| {
            deliver(options, handler, context, message)
        })
        .await;
    let message = match result {
        Ok(()) => "the server ended the pull".to_owned(),
        Err(message) => message,
    };
    (message, true)
}

async fn open(
    options: &NatsConsumerOptions,
    context: &jetstream::Context,
) -> Result<jetstream::consumer::Consumer<pull::Config>, String> {
    context
        .get_or_create_stream(stream::Config {
            name: options.dead_letter_stream.clone(),
            subjects: vec![options.dead_letter_subject.clone()],
            storage: stream::StorageType::File,
            ..stream::Config::default()
        })
        .await
        .map_err(|e| {
            format!(
                "cannot find or create the dead-letter stream {:?}: {e}",
                options.dead_letter_stream
            )
        })?;
    let orders = context.get_stream(&options.stream).await.map_err(|e| {
        format!(
            "cannot find the stream {:?} (the order flow creates it): {e}",
            options.stream
        )
    })?;
    orders
        .get_or_create_consumer(
            &options.consumer,
            pull::Config {
                durable_name: Some(options.consumer.clone()),
                filter_subject: options.filter_subject.clone().unwrap_or_default(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_millis(ACK_WAIT_MS),
                max_ack_pending: i64::from(options.prefetch),
                ..pull::Config::default()
            },
        )
        .await
        .map_err(|e| {
            format!(
                "cannot find or create the durable consumer {:?}: {e}",
                options.consumer
            )
        })
}

/// Hand one message to the handler and settle it as decided. An error ends the session.
async fn deliver(
    options: &NatsConsumerOptions,
    handler: &dyn InboundHandler,
    context: &jetstream::Context,
    message: jetstream::Message,
) -> Result<(), String> {
    match handler.handle(CONSUMER, &message.payload).await {
        Disposition::Applied | Disposition::Duplicate => {}
        Disposition::DeadLetter(poison) => {
            dead_letter(options, context, &message, &poison).await?;
            handler.dead_lettered(CONSUMER, &poison);
        }
        Disposition::Return => {
            return message
                .ack_with(jetstream::AckKind::Nak(None))
                .await
                .map_err(|e| format!("cannot return a message: {e}"));
        }
    }
    message
        .ack()
        .await
        .map_err(|e| format!("cannot acknowledge a message: {e}"))
}

/// Publish `message` to the dead-letter subject with the reason, and wait for the server.
async fn dead_letter(
    options: &NatsConsumerOptions,
    context: &jetstream::Context,
    message: &jetstream::Message,
    poison: &Poison,
) -> Result<(), String> {
    let info = message
        .info()
        .map_err(|e| format!("a message without delivery information: {e}"))?;
    let original = format!("{}:{}", info.stream, info.stream_sequence);
    let mut headers = message.headers.clone().unwrap_or_default();
    // Header values are one line.
    let one_line = |text: &str| text.replace(['\r', '\n'], " ");
    headers.insert(HEADER_REASON, one_line(&poison.reason));
    headers.insert(HEADER_KIND, poison.kind.as_str());
    headers.insert(HEADER_SUBJECT, message.subject.as_str());
    headers.insert(HEADER_SEQUENCE, original.as_str());
    headers.insert(NATS_MESSAGE_ID, format!("dead-letter:{original}"));
    context
        .publish_with_headers(
            options.dead_letter_subject.clone(),
            headers,
            message.payload.clone(),
        )
        .await
        .map_err(|e| format!("cannot publish a dead letter: {e}"))?
        .await
        .map_err(|e| format!("no acknowledgement of a dead letter: {e}"))?;
    Ok(())
}
