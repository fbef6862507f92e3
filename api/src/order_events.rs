//! The order flow's events, consumed from RabbitMQ and NATS JetStream inside the API process:
//! order cancelled / payment failed release the order's holds, payment succeeded / order
//! completed confirm them (see `schemas/integration/inbound/`).
//!
//! The brokers' consumers (`ledger_rabbitmq::consumer`, `ledger_nats::consumer`) deliver each
//! message to [`OrderEventHandler`], which decides it:
//! - **Poison at once**: a body that is not JSON, a type the ledger does not consume, a message
//!   that breaks its type's schema. Reading it again cannot change the answer, so it is
//!   dead-lettered on first sight. So is a message the ledger refuses (a confirm of an order
//!   whose holds were all released or expired).
//! - **Retried, bounded**: an order no reservation names (the reservations read model may not
//!   have caught up yet) and a ledger that cannot act now (its store unreachable) are tried
//!   [`ATTEMPTS_MAX`] times in all, waiting [`RETRY_BACKOFF_MIN_MS`] and then twice as long
//!   each time, and then dead-lettered with the last reason. The retries happen inside the
//!   message's own task: messages are handled concurrently up to the prefetch, so one waiting
//!   message never holds up those behind it.
//! - **Once per message**: a message is applied once per (`source`, `id`). The processed-message
//!   table is checked first and written after the effect; the effect itself is keyed per hold
//!   (see [`crate::order_actions`]), so a message applied again after a crash between the two
//!   (or delivered twice at once) changes nothing either. Ids are kept for
//!   [`PROCESSED_RETENTION_HOURS`].

use crate::order_actions::{OrderActionError, OrderActions, OrderCause, OrderOutcome};
use async_trait::async_trait;
use ledger_domain::{OrderId, Reason};
use ledger_integration::inbound::{
    Disposition, InboundHandler, OrderAction, OrderEvent, OrderEventReader, Poison, PoisonKind,
};
use ledger_integration::BrokerError;
use ledger_nats::consumer::NatsConsumerOptions;
use ledger_postgres::migrate::Migration;
use ledger_postgres::{Database, DatabaseError};
use ledger_projections::PublisherArguments;
use ledger_rabbitmq::consumer::RabbitMqConsumerOptions;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Attempts at a message whose failure may pass (an order not seen yet, a store unreachable)
/// before it is dead-lettered. With [`RETRY_BACKOFF_MIN_MS`] doubling, the last attempt comes
/// about 4 s after the first: far longer than the read models usually trail the log, and short
/// enough that a message's delivery stays well within the brokers' acknowledgement windows.
pub const ATTEMPTS_MAX: u32 = 5;

/// The wait before the second attempt; each later wait doubles.
pub const RETRY_BACKOFF_MIN_MS: u64 = 250;

/// How long a processed message's id is kept. Brokers deliver a message again within minutes
/// (an unacknowledged delivery, a reconnect), not weeks; a repeat after this is still harmless:
/// the holds it names are closed by then, and a closed hold is left as it is.
pub const PROCESSED_RETENTION_HOURS: u64 = 7 * 24;

/// How often ids past their retention are deleted.
pub const PROCESSED_PURGE_INTERVAL_MS: u64 = 60 * 60 * 1_000;

/// Counter: messages decided, by consumer, type (`unreadable` when it could not be read) and
/// outcome (`applied`, `duplicate`, `dead_lettered`, `returned`).
pub const METRIC_MESSAGES: &str = "ledger_order_events_total";
/// Counter: dead letters the broker took, by consumer and reason kind.
pub const METRIC_DEAD_LETTERED: &str = "ledger_order_events_dead_lettered_total";
/// Counter: attempts after the first, by consumer.
pub const METRIC_RETRIES: &str = "ledger_order_events_retries_total";
/// Counter: sessions with the broker lost or not opened, by consumer.
pub const METRIC_BROKER_ERRORS: &str = "ledger_order_events_broker_errors_total";

/// Every reason kind, so that each dead-letter series exists (at zero) from the start.
const POISON_KINDS: &[PoisonKind] = &[
    PoisonKind::InvalidJson,
    PoisonKind::UnknownType,
    PoisonKind::SchemaViolation,
    PoisonKind::UnknownOrder,
    PoisonKind::Rejected,
    PoisonKind::AttemptsExhausted,
];

/// The processed-message table, a component of its own in the migrations' ledger.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "processed_order_events",
    sql: include_str!("../migrations/order_events/0001_processed_messages.sql"),
}];

/// Where the order flow's events come from; none by default (the embedded default consumes
/// nothing).
#[derive(Clone, clap::Args)]
pub struct OrderEventArguments {
    /// Consume order events from this RabbitMQ queue (durable; declared if missing); off when
    /// unset. Connects to LEDGER_ORDERS_RABBITMQ_URL, else LEDGER_RABBITMQ_URL.
    #[arg(long, env = "LEDGER_ORDERS_RABBITMQ_QUEUE")]
    pub orders_rabbitmq_queue: Option<String>,
    /// The RabbitMQ holding the orders queue, when not the one integration events go to
    /// (amqp://USER:PASSWORD@HOST:5672/VHOST, or amqps://; LEDGER_RABBITMQ_CA_FILE applies).
    #[arg(long, env = "LEDGER_ORDERS_RABBITMQ_URL", hide_env_values = true)]
    pub orders_rabbitmq_url: Option<String>,
    /// The fanout exchange dead letters go to, and the durable queue bound to it (both declared
    /// if missing); by default `<queue>.dead-letter`.
    #[arg(long, env = "LEDGER_ORDERS_RABBITMQ_DEAD_LETTER")]
    pub orders_rabbitmq_dead_letter: Option<String>,
    /// Consume order events from this NATS JetStream stream (the order flow creates it); off
    /// when unset. Connects to LEDGER_ORDERS_NATS_URL, else LEDGER_NATS_URL.
    #[arg(long, env = "LEDGER_ORDERS_NATS_STREAM")]
    pub orders_nats_stream: Option<String>,
    /// The NATS server of the orders stream, when not the one integration events go to
    /// (nats://USER:PASSWORD@HOST:4222, or tls://; LEDGER_NATS_CA_FILE applies).
    #[arg(long, env = "LEDGER_ORDERS_NATS_URL", hide_env_values = true)]
    pub orders_nats_url: Option<String>,
    /// Only the stream's subjects matching this filter (e.g. `orders.>`); all of them when unset.
    #[arg(long, env = "LEDGER_ORDERS_NATS_SUBJECT")]
    pub orders_nats_subject: Option<String>,
    /// The durable pull consumer's name (created if missing): the server keeps its position.
    #[arg(long, env = "LEDGER_ORDERS_NATS_CONSUMER", default_value = ledger_nats::consumer::DEFAULT_CONSUMER_NAME)]
    pub orders_nats_consumer: String,
    /// The subject dead letters are published to (outside the orders stream's subjects).
    #[arg(long, env = "LEDGER_ORDERS_NATS_DEAD_LETTER_SUBJECT", default_value = ledger_nats::consumer::DEFAULT_DEAD_LETTER_SUBJECT)]
    pub orders_nats_dead_letter_subject: String,
    /// The stream that keeps dead letters (created over the dead-letter subject if missing).
    #[arg(long, env = "LEDGER_ORDERS_NATS_DEAD_LETTER_STREAM", default_value = ledger_nats::consumer::DEFAULT_DEAD_LETTER_STREAM)]
    pub orders_nats_dead_letter_stream: String,
    /// Messages each consumer holds unacknowledged, and handles concurrently, at most.
    #[arg(long, env = "LEDGER_ORDERS_PREFETCH", default_value_t = ledger_rabbitmq::consumer::PREFETCH_DEFAULT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub orders_prefetch: u16,
}

impl fmt::Debug for OrderEventArguments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |url: &Option<String>| url.as_deref().map(ledger_integration::redact_url);
        f.debug_struct("OrderEventArguments")
            .field("orders_rabbitmq_queue", &self.orders_rabbitmq_queue)
            .field("orders_rabbitmq_url", &shown(&self.orders_rabbitmq_url))
            .field(
                "orders_rabbitmq_dead_letter",
                &self.orders_rabbitmq_dead_letter,
            )
            .field("orders_nats_stream", &self.orders_nats_stream)
            .field("orders_nats_url", &shown(&self.orders_nats_url))
            .field("orders_nats_subject", &self.orders_nats_subject)
            .field("orders_nats_consumer", &self.orders_nats_consumer)
            .field(
                "orders_nats_dead_letter_subject",
                &self.orders_nats_dead_letter_subject,
            )
            .field(
                "orders_nats_dead_letter_stream",
                &self.orders_nats_dead_letter_stream,
            )
            .field("orders_prefetch", &self.orders_prefetch)
            .finish()
    }
}

/// The consumers the configuration asks for.
#[derive(Debug, Default)]
pub struct Consumers {
    pub rabbitmq: Option<RabbitMqConsumerOptions>,
    pub nats: Option<NatsConsumerOptions>,
}

impl OrderEventArguments {
    /// The consumers to run, with the publishers' broker URLs and CA files as fallbacks; an
    /// error names a consumer configured without a broker to reach.
    pub fn consumers(&self, brokers: &PublisherArguments) -> Result<Consumers, String> {
        let mut consumers = Consumers::default();
        if let Some(queue) = &self.orders_rabbitmq_queue {
            let url = self
                .orders_rabbitmq_url
                .as_ref()
                .or(brokers.rabbitmq_url.as_ref())
                .ok_or("LEDGER_ORDERS_RABBITMQ_QUEUE is set but neither LEDGER_ORDERS_RABBITMQ_URL nor LEDGER_RABBITMQ_URL says where RabbitMQ is")?;
            let mut options = RabbitMqConsumerOptions::new(url, queue);
            if let Some(dead_letter) = &self.orders_rabbitmq_dead_letter {
                options.dead_letter = dead_letter.clone();
            }
            options.prefetch = self.orders_prefetch;
            options.ca_file = brokers.rabbitmq_ca_file.clone();
            consumers.rabbitmq = Some(options);
        }
        if let Some(stream) = &self.orders_nats_stream {
            let url = self
                .orders_nats_url
                .as_ref()
                .or(brokers.nats_url.as_ref())
                .ok_or("LEDGER_ORDERS_NATS_STREAM is set but neither LEDGER_ORDERS_NATS_URL nor LEDGER_NATS_URL says where NATS is")?;
            let mut options = NatsConsumerOptions::new(url, stream);
            options.filter_subject = self.orders_nats_subject.clone();
            options.consumer = self.orders_nats_consumer.clone();
            options.dead_letter_subject = self.orders_nats_dead_letter_subject.clone();
            options.dead_letter_stream = self.orders_nats_dead_letter_stream.clone();
            options.prefetch = self.orders_prefetch;
            options.ca_file = brokers.nats_ca_file.clone();
            consumers.nats = Some(options);
        }
        Ok(consumers)
    }
}

impl Consumers {
    pub fn is_empty(&self) -> bool {
        self.rabbitmq.is_none() && self.nats.is_none()
    }

    /// Create the processed-message table if needed and start every consumer; each stops when
    /// `shutdown` turns true.
    pub async fn spawn(
        self,
        database: Database,
        actions: Arc<dyn OrderActions>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<()>>, DatabaseError> {
        let mut client = database.client().await?;
        ledger_postgres::migrate::migrate(&mut client, "order_events", MIGRATIONS).await?;
        drop(client);
        let mut tasks = vec![tokio::spawn(purge_processed(
            database.clone(),
            shutdown.clone(),
        ))];
        let handler: Arc<dyn InboundHandler> = Arc::new(OrderEventHandler {
            reader: OrderEventReader::new(),
            actions,
            database,
            shutdown: shutdown.clone(),
        });
        if let Some(options) = self.rabbitmq {
            count_from_zero(ledger_rabbitmq::consumer::CONSUMER);
            tasks.push(tokio::spawn(ledger_rabbitmq::consumer::consume(
                options,
                handler.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(options) = self.nats {
            count_from_zero(ledger_nats::consumer::CONSUMER);
            tasks.push(tokio::spawn(ledger_nats::consumer::consume(
                options,
                handler.clone(),
                shutdown.clone(),
            )));
        }
        Ok(tasks)
    }
}

/// Delete processed-message ids older than [`PROCESSED_RETENTION_HOURS`], now and every
/// [`PROCESSED_PURGE_INTERVAL_MS`], until shutdown; several API instances may run it at once.
async fn purge_processed(database: Database, mut shutdown: watch::Receiver<bool>) {
    let retention_hours = i32::try_from(PROCESSED_RETENTION_HOURS).expect("hours fit in i32");
    loop {
        let purged = async {
            let client = database.client().await?;
            client
                .execute(
                    "DELETE FROM order_events.processed_messages \
                     WHERE processed_at < now() - make_interval(hours => $1)",
                    &[&retention_hours],
                )
                .await
                .map_err(DatabaseError::query("purge processed order events"))
        };
        match purged.await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "forgot processed order events past retention"),
            Err(error) => {
                tracing::warn!(%error, "could not purge processed order events; retrying later")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(PROCESSED_PURGE_INTERVAL_MS)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Make a consumer's error and dead-letter series exist before the first one happens, so an
/// alert on them has a series to watch.
fn count_from_zero(consumer: &'static str) {
    metrics::counter!(METRIC_BROKER_ERRORS, "consumer" => consumer).increment(0);
    metrics::counter!(METRIC_RETRIES, "consumer" => consumer).increment(0);
    for kind in POISON_KINDS {
        metrics::counter!(METRIC_DEAD_LETTERED, "consumer" => consumer, "reason" => kind.as_str())
            .increment(0);
    }
}

/// Decides every delivered order event (see the module's documentation).
pub struct OrderEventHandler {
    reader: OrderEventReader,
    actions: Arc<dyn OrderActions>,
    /// The processed-message table's database.
    database: Database,
    /// A stop ends a message's retries early: it goes back to the broker undecided.
    shutdown: watch::Receiver<bool>,
}

/// One attempt's failure that may pass, and what to dead-letter it as when none is left.
struct Transient(Poison);

#[async_trait]
impl InboundHandler for OrderEventHandler {
    async fn handle(&self, consumer: &'static str, body: &[u8]) -> Disposition {
        let (event_type, disposition) = match self.reader.read(body) {
            Ok(event) => (event.event_type.name(), self.decide(consumer, &event).await),
            Err(poison) => ("unreadable", Disposition::DeadLetter(poison)),
        };
        let outcome = match &disposition {
            Disposition::Applied => "applied",
            Disposition::Duplicate => "duplicate",
            Disposition::DeadLetter(poison) => {
                tracing::warn!(consumer, %poison, "dead-lettering an order event");
                "dead_lettered"
            }
            Disposition::Return => "returned",
        };
        metrics::counter!(METRIC_MESSAGES, "consumer" => consumer, "type" => event_type, "outcome" => outcome)
            .increment(1);
        disposition
    }

    fn dead_lettered(&self, consumer: &'static str, poison: &Poison) {
        metrics::counter!(METRIC_DEAD_LETTERED, "consumer" => consumer, "reason" => poison.kind.as_str())
            .increment(1);
    }

    fn broker_error(&self, consumer: &'static str, _error: &BrokerError) {
        metrics::counter!(METRIC_BROKER_ERRORS, "consumer" => consumer).increment(1);
    }
}

impl OrderEventHandler {
    /// Apply a readable event: attempts with backoff while its failure may pass.
    async fn decide(&self, consumer: &'static str, event: &OrderEvent) -> Disposition {
        let order_id = match OrderId::parse(&event.order_id) {
            Ok(order_id) => order_id,
            Err(e) => return schema_violation(event, format!("data.order_id: {e}")),
        };
        let reason = match event.reason.as_deref().map(Reason::parse) {
            None => Reason::parse(event.event_type.name()).expect("a type name is a reason"),
            Some(Ok(reason)) => reason,
            Some(Err(e)) => return schema_violation(event, format!("data.reason: {e}")),
        };
        let mut backoff = Duration::from_millis(RETRY_BACKOFF_MIN_MS);
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(consumer, event, &order_id, &reason).await {
                Ok(disposition) => return disposition,
                Err(Transient(failure)) => failure,
            };
            if attempt == ATTEMPTS_MAX {
                return Disposition::DeadLetter(Poison::new(
                    failure.kind,
                    format!("{} (after {ATTEMPTS_MAX} attempts)", failure.reason),
                ));
            }
            tracing::debug!(consumer, id = %event.id, attempt, %failure, "order event not applied yet; retrying");
            metrics::counter!(METRIC_RETRIES, "consumer" => consumer).increment(1);
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Disposition::Return,
            }
            backoff *= 2;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        consumer: &'static str,
        event: &OrderEvent,
        order_id: &OrderId,
        reason: &Reason,
    ) -> Result<Disposition, Transient> {
        let unavailable = |e: DatabaseError| {
            Transient(Poison::new(
                PoisonKind::AttemptsExhausted,
                format!("the processed-message table: {e}"),
            ))
        };
        if self.processed(event).await.map_err(unavailable)? {
            return Ok(Disposition::Duplicate);
        }
        let cause = OrderCause {
            correlation_id: format!("order-event:{}:{}", event.source, event.id),
            causation_id: event.id.clone(),
        };
        let outcome = match event.event_type.action() {
            OrderAction::Release => {
                self.actions
                    .release_order(order_id, reason.clone(), &cause)
                    .await
            }
            OrderAction::Confirm => self.actions.confirm_order(order_id, &cause).await,
        };
        match outcome {
            Ok(OrderOutcome::Done { changed, unchanged }) => {
                self.record(consumer, event, changed, unchanged)
                    .await
                    .map_err(unavailable)?;
                Ok(Disposition::Applied)
            }
            Ok(OrderOutcome::UnknownOrder) => Err(Transient(Poison::new(
                PoisonKind::UnknownOrder,
                format!("no reservation of the ledger names order {order_id}"),
            ))),
            Ok(OrderOutcome::NotConfirmable { reason }) => Ok(Disposition::DeadLetter(
                Poison::new(PoisonKind::Rejected, reason),
            )),
            Err(OrderActionError::Unavailable(message)) => Err(Transient(Poison::new(
                PoisonKind::AttemptsExhausted,
                message,
            ))),
            Err(OrderActionError::Refused(message)) => Ok(Disposition::DeadLetter(Poison::new(
                PoisonKind::Rejected,
                message,
            ))),
        }
    }

    async fn processed(&self, event: &OrderEvent) -> Result<bool, DatabaseError> {
        let client = self.database.client().await?;
        let row = client
            .query_opt(
                "SELECT 1 FROM order_events.processed_messages WHERE source = $1 AND id = $2",
                &[&event.source, &event.id],
            )
            .await
            .map_err(DatabaseError::query("look up a processed order event"))?;
        Ok(row.is_some())
    }

    async fn record(
        &self,
        consumer: &'static str,
        event: &OrderEvent,
        changed: u64,
        unchanged: u64,
    ) -> Result<(), DatabaseError> {
        let count = |n: u64| i64::try_from(n).expect("an order's holds fit in i64");
        let client = self.database.client().await?;
        client
            .execute(
                "INSERT INTO order_events.processed_messages \
                     (source, id, type, order_id, consumer, holds_changed, holds_unchanged) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, id) DO NOTHING",
                &[
                    &event.source,
                    &event.id,
                    &event.event_type.name(),
                    &event.order_id,
                    &consumer,
                    &count(changed),
                    &count(unchanged),
                ],
            )
            .await
            .map_err(DatabaseError::query("record a processed order event"))?;
        Ok(())
    }
}

fn schema_violation(event: &OrderEvent, reason: String) -> Disposition {
    Disposition::DeadLetter(Poison::new(
        PoisonKind::SchemaViolation,
        format!("does not match {}: {reason}", event.event_type.name()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Both {
        #[command(flatten)]
        publishers: PublisherArguments,
        #[command(flatten)]
        order_events: OrderEventArguments,
    }

    fn consumers(arguments: &[&str]) -> Result<Consumers, String> {
        let both = Both::try_parse_from(std::iter::once("api").chain(arguments.iter().copied()))
            .expect("the arguments parse");
        both.order_events.consumers(&both.publishers)
    }

    #[test]
    fn nothing_configured_consumes_nothing() {
        assert!(consumers(&[]).unwrap().is_empty());
        // A publisher's broker alone turns no consumer on.
        assert!(consumers(&[
            "--rabbitmq-url",
            "amqp://h:5672/%2f",
            "--nats-url",
            "nats://h:4222"
        ])
        .unwrap()
        .is_empty());
    }

    #[test]
    fn a_queue_or_stream_turns_its_consumer_on_on_the_publishers_broker_unless_given_its_own() {
        let both = consumers(&[
            "--rabbitmq-url",
            "amqp://publish:5672/%2f",
            "--rabbitmq-ca-file",
            "/ca.pem",
            "--orders-rabbitmq-queue",
            "orders",
            "--orders-nats-url",
            "nats://orders:4222",
            "--orders-nats-stream",
            "ORDERS",
            "--orders-prefetch",
            "8",
        ])
        .unwrap();
        let rabbitmq = both.rabbitmq.expect("on");
        assert_eq!(rabbitmq.url, "amqp://publish:5672/%2f");
        assert_eq!(rabbitmq.dead_letter, "orders.dead-letter");
        assert_eq!(
            rabbitmq.ca_file.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert_eq!(rabbitmq.prefetch, 8);
        let nats = both.nats.expect("on");
        assert_eq!(nats.url, "nats://orders:4222");
        assert_eq!(nats.consumer, ledger_nats::consumer::DEFAULT_CONSUMER_NAME);
        assert_eq!(nats.filter_subject, None);
        assert_eq!(nats.prefetch, 8);
    }

    #[test]
    fn a_consumer_without_a_broker_to_reach_is_refused_naming_the_settings() {
        let error = consumers(&["--orders-rabbitmq-queue", "orders"]).unwrap_err();
        assert!(error.contains("LEDGER_ORDERS_RABBITMQ_URL"), "{error}");
        let error = consumers(&["--orders-nats-stream", "ORDERS"]).unwrap_err();
        assert!(error.contains("LEDGER_NATS_URL"), "{error}");
        assert!(Both::try_parse_from(["api", "--orders-prefetch", "0"]).is_err());
    }
}
