//! Publishers of integration events: each follows the store-wide log as a projector does (the
//! log is the outbox; no second copy of events is kept), maps every event to its integration
//! events (`ledger_integration`), publishes them to one broker in log order, and moves its
//! checkpoint only after the broker confirmed them.
//!
//! A publisher is a [`Projection`] to the runtime, so it gets the runtime's rules for free: one
//! runner per publisher across processes (the same advisory lock as projectors), bounded
//! batches, backoff after a failure and a restart from the committed checkpoint, its checkpoint,
//! lag and last error in the projections' status and metrics. Its "read model" is what the
//! mapping needs to remember between events: each SKU's balances (SKU-wide and per location)
//! and whether its low-stock alert is open, committed in the same transaction as the checkpoint.
//!
//! Within one batch: load the SKUs' folds, map the events, publish every message and wait for
//! every confirmation, then write the folds; the runtime then moves the checkpoint and commits.
//! A failure or a crash anywhere before the commit leaves checkpoint and folds where they were,
//! so the next attempt maps the same events from the same folds to the same messages with the
//! same ids: at least once, never lost, duplicates recognisable by id.

use crate::batch::apply_page;
use crate::checkpoint;
use crate::convert::{stored_sku, to_i64, to_u64};
use crate::error::ProjectionError;
use crate::lock::LockConnection;
use crate::projection::{distinct_skus, Projection, SkuRecord};
use crate::schema;
use crate::schema_name::SchemaName;
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use ledger_application::store::READ_EVENTS_MAX;
use ledger_application::EventStore;
use ledger_domain::Balances;
use ledger_domain::Position;
use ledger_integration::BrokerError;
use ledger_integration::{map_event, Broker, IntegrationEventType, OutgoingMessage, SkuFold};
use ledger_nats::{NatsBroker, NatsOptions};
use ledger_postgres::Database;
use ledger_rabbitmq::{RabbitMqBroker, RabbitMqOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The publisher to RabbitMQ.
pub const NAME_RABBITMQ: &str = "publish_rabbitmq";
/// The publisher to NATS JetStream.
pub const NAME_NATS: &str = "publish_nats";
/// Every publisher, for status pages.
pub const NAMES: &[&str] = &[NAME_RABBITMQ, NAME_NATS];

/// Counter: integration messages the broker confirmed, per publisher (a republished batch
/// counts again).
pub const METRIC_MESSAGES_PUBLISHED: &str = "ledger_integration_messages_published_total";
/// Histogram: seconds from a batch's first publish to its last confirmation, per publisher.
pub const METRIC_PUBLISH_DURATION_SECONDS: &str = "ledger_integration_publish_duration_seconds";

const DDL: &str = "
CREATE TABLE {schema}.sku_folds (
    sku           text    PRIMARY KEY,
    on_hand       bigint  NOT NULL CHECK (on_hand >= 0),
    reserved      bigint  NOT NULL CHECK (reserved >= 0),
    reorder_point bigint  NOT NULL CHECK (reorder_point >= 0),
    alert_open    boolean NOT NULL,
    version       bigint  NOT NULL CHECK (version >= 0)
);

CREATE TABLE {schema}.location_balances (
    sku           text   NOT NULL,
    location      text   NOT NULL,
    on_hand       bigint NOT NULL CHECK (on_hand >= 0),
    reserved      bigint NOT NULL CHECK (reserved >= 0),
    reorder_point bigint NOT NULL CHECK (reorder_point >= 0),
    PRIMARY KEY (sku, location)
);
";

/// One publisher: a name, a broker, and the `source` its events carry.
#[derive(Clone)]
pub struct Publisher {
    name: &'static str,
    broker: Arc<dyn Broker>,
    source: String,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("name", &self.name)
            .field("broker", &self.broker.kind())
            .field("source", &self.source)
            .finish()
    }
}

impl Publisher {
    /// A publisher called `name` (one of [`NAMES`]) to `broker`.
    pub fn new(name: &'static str, broker: Arc<dyn Broker>, source: impl Into<String>) -> Self {
        assert!(
            NAMES.contains(&name),
            "publisher names are fixed: {NAMES:?}"
        );
        Self {
            name,
            broker,
            source: source.into(),
        }
    }

    pub fn rabbitmq(options: RabbitMqOptions, source: impl Into<String>) -> Self {
        Self::new(
            NAME_RABBITMQ,
            Arc::new(RabbitMqBroker::new(options)),
            source,
        )
    }

    pub fn nats(options: NatsOptions, source: impl Into<String>) -> Self {
        Self::new(NAME_NATS, Arc::new(NatsBroker::new(options)), source)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

#[async_trait]
impl Projection for Publisher {
    fn name(&self) -> &'static str {
        self.name
    }

    fn ddl_template(&self) -> &'static str {
        DDL
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sku_folds", "location_balances"]
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        schema: &SchemaName,
        records: &[SkuRecord],
    ) -> Result<(), ProjectionError> {
        let mut folds = load_folds(transaction, schema, records).await?;
        let mut messages = Vec::with_capacity(records.len() * 2);
        for record in records {
            let fold = folds.entry(record.sku.as_str().to_owned()).or_default();
            assert_eq!(
                fold.version.map_or(0, |v| v + 1),
                record.recorded.version,
                "a publisher folds each SKU's events in stream order, without gaps ({})",
                record.sku
            );
            for event in map_event(
                &self.source,
                &record.sku,
                &record.recorded,
                &record.event,
                fold,
            ) {
                let event_type = IntegrationEventType::from_name(&event.event_type)
                    .expect("the mapping produces known types")
                    .name();
                messages.push(OutgoingMessage {
                    id: event.id,
                    event_type,
                    topic: event.topic(),
                    body: serde_json::to_vec(&event).expect("integration events serialise"),
                });
            }
        }
        let started = Instant::now();
        self.broker.publish(&messages).await?;
        metrics::counter!(METRIC_MESSAGES_PUBLISHED, "publisher" => self.name)
            .increment(messages.len() as u64);
        metrics::histogram!(METRIC_PUBLISH_DURATION_SECONDS, "publisher" => self.name)
            .record(started.elapsed().as_secs_f64());
        write_folds(transaction, schema, &folds).await
    }
}

/// The folds of the SKUs `records` touch, each with the locations the records name.
async fn load_folds(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    records: &[SkuRecord],
) -> Result<BTreeMap<String, SkuFold>, ProjectionError> {
    let skus = distinct_skus(records);
    let sql = format!(
        "SELECT sku, on_hand, reserved, reorder_point, alert_open, version \
         FROM {schema}.sku_folds WHERE sku = ANY($1)"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    let mut folds = BTreeMap::new();
    for row in transaction.query(&statement, &[&skus]).await? {
        let sku: String = row.get("sku");
        stored_sku(&sku)?;
        folds.insert(
            sku,
            SkuFold {
                totals: balances(&row)?,
                alert_open: row.get("alert_open"),
                locations: BTreeMap::new(),
                version: Some(to_u64("version", row.get("version"))?),
            },
        );
    }
    let pairs: BTreeSet<(&str, &str)> = records
        .iter()
        .flat_map(|r| {
            r.event
                .locations_moved()
                .into_iter()
                .map(|location| (r.sku.as_str(), location))
        })
        .collect();
    let (pair_skus, pair_locations): (Vec<&str>, Vec<&str>) = pairs.into_iter().unzip();
    let sql = format!(
        "SELECT b.sku, b.location, b.on_hand, b.reserved, b.reorder_point \
         FROM {schema}.location_balances b \
         JOIN unnest($1::text[], $2::text[]) AS p(sku, location) \
           ON b.sku = p.sku AND b.location = p.location"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    for row in transaction
        .query(&statement, &[&pair_skus, &pair_locations])
        .await?
    {
        let sku: String = row.get("sku");
        let fold = folds
            .get_mut(&sku)
            .ok_or_else(|| ProjectionError::OutOfRange {
                what: "location balances of a SKU without a fold",
                value: sku.clone(),
            })?;
        fold.locations.insert(row.get("location"), balances(&row)?);
    }
    Ok(folds)
}

fn balances(row: &tokio_postgres::Row) -> Result<Balances, ProjectionError> {
    Ok(Balances {
        on_hand: to_u64("on hand", row.get("on_hand"))?,
        reserved: to_u64("reserved", row.get("reserved"))?,
        reorder_point: to_u64("reorder point", row.get("reorder_point"))?,
        // Not published, so not kept: a fold of one batch starts it at zero.
        in_transit: 0,
    })
}

async fn write_folds(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    folds: &BTreeMap<String, SkuFold>,
) -> Result<(), ProjectionError> {
    let mut skus = Vec::new();
    let (mut on_hand, mut reserved, mut reorder_point) = (Vec::new(), Vec::new(), Vec::new());
    let mut alert_open = Vec::new();
    let mut version = Vec::new();
    let mut location_skus = Vec::new();
    let mut locations = Vec::new();
    let (mut location_on_hand, mut location_reserved, mut location_reorder_point) =
        (Vec::new(), Vec::new(), Vec::new());
    for (sku, fold) in folds {
        let Some(fold_version) = fold.version else {
            continue;
        };
        skus.push(sku.as_str());
        on_hand.push(to_i64("on hand", fold.totals.on_hand)?);
        reserved.push(to_i64("reserved", fold.totals.reserved)?);
        reorder_point.push(to_i64("reorder point", fold.totals.reorder_point)?);
        alert_open.push(fold.alert_open);
        version.push(to_i64("version", fold_version)?);
        for (location, at) in &fold.locations {
            location_skus.push(sku.as_str());
            locations.push(location.as_str());
            location_on_hand.push(to_i64("on hand", at.on_hand)?);
            location_reserved.push(to_i64("reserved", at.reserved)?);
            location_reorder_point.push(to_i64("reorder point", at.reorder_point)?);
        }
    }
    let sql = format!(
        "INSERT INTO {schema}.sku_folds (sku, on_hand, reserved, reorder_point, alert_open, version) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], \
                              $5::boolean[], $6::bigint[]) \
         ON CONFLICT (sku) DO UPDATE SET on_hand = excluded.on_hand, \
             reserved = excluded.reserved, reorder_point = excluded.reorder_point, \
             alert_open = excluded.alert_open, version = excluded.version"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    transaction
        .execute(
            &statement,
            &[
                &skus,
                &on_hand,
                &reserved,
                &reorder_point,
                &alert_open,
                &version,
            ],
        )
        .await?;
    let sql = format!(
        "INSERT INTO {schema}.location_balances (sku, location, on_hand, reserved, reorder_point) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) \
         ON CONFLICT (sku, location) DO UPDATE SET on_hand = excluded.on_hand, \
             reserved = excluded.reserved, reorder_point = excluded.reorder_point"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    transaction
        .execute(
            &statement,
            &[
                &location_skus,
                &locations,
                &location_on_hand,
                &location_reserved,
                &location_reorder_point,
            ],
        )
        .await?;
    Ok(())
}

/// Which brokers to publish to, from flags or the environment; none by default (the embedded
/// default publishes nowhere).
#[derive(Clone, clap::Args)]
pub struct PublisherArguments {
    /// Publish integration events to RabbitMQ at this URL (amqp://USER:PASSWORD@HOST:5672/VHOST,
    /// or amqps://); off when unset.
    #[arg(long, env = "LEDGER_RABBITMQ_URL", hide_env_values = true)]
    pub rabbitmq_url: Option<String>,
    /// A PEM file of the CA that RabbitMQ's certificate must chain to (amqps:// with a private
    /// CA); without it, the public web roots.
    #[arg(long, env = "LEDGER_RABBITMQ_CA_FILE")]
    pub rabbitmq_ca_file: Option<PathBuf>,
    /// The durable topic exchange to publish to (declared if missing).
    #[arg(long, env = "LEDGER_RABBITMQ_EXCHANGE", default_value = ledger_rabbitmq::DEFAULT_EXCHANGE)]
    pub rabbitmq_exchange: String,
    /// Publish integration events to NATS JetStream at this URL (nats://USER:PASSWORD@HOST:4222,
    /// or tls://); off when unset.
    #[arg(long, env = "LEDGER_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// A PEM file of the CA that the NATS server's certificate must chain to; given, the
    /// connection must be TLS.
    #[arg(long, env = "LEDGER_NATS_CA_FILE")]
    pub nats_ca_file: Option<PathBuf>,
    /// The JetStream stream to publish to (created over `inventory.>` if missing).
    #[arg(long, env = "LEDGER_NATS_STREAM", default_value = ledger_nats::DEFAULT_STREAM)]
    pub nats_stream: String,
    /// The first word(s) of every subject published to NATS: the default `inventory` makes the
    /// subjects the integration topics themselves; another prefix (`eu.inventory`) is put in
    /// front of them, so several ledgers can share one NATS server with streams that do not
    /// overlap.
    #[arg(long, env = "LEDGER_NATS_SUBJECT_PREFIX", default_value = ledger_nats::DEFAULT_SUBJECT_PREFIX, value_parser = subject_prefix)]
    pub nats_subject_prefix: String,
    /// The CloudEvents `source` of every integration event: a URI naming this ledger.
    #[arg(long, env = "LEDGER_INTEGRATION_SOURCE", default_value = ledger_integration::DEFAULT_SOURCE)]
    pub integration_source: String,
}

impl fmt::Debug for PublisherArguments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |url: &Option<String>| url.as_deref().map(ledger_integration::redact_url);
        f.debug_struct("PublisherArguments")
            .field("rabbitmq_url", &shown(&self.rabbitmq_url))
            .field("rabbitmq_ca_file", &self.rabbitmq_ca_file)
            .field("rabbitmq_exchange", &self.rabbitmq_exchange)
            .field("nats_url", &shown(&self.nats_url))
            .field("nats_ca_file", &self.nats_ca_file)
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .field("integration_source", &self.integration_source)
            .finish()
    }
}

impl PublisherArguments {
    /// One publisher per configured broker.
    pub fn publishers(&self) -> Vec<Publisher> {
        let mut publishers = Vec::new();
        if let Some(url) = &self.rabbitmq_url {
            let mut options = RabbitMqOptions::new(url, &self.rabbitmq_exchange);
            options.ca_file = self.rabbitmq_ca_file.clone();
            publishers.push(Publisher::rabbitmq(options, &self.integration_source));
        }
        if let Some(url) = &self.nats_url {
            let mut options = NatsOptions::new(url, &self.nats_stream);
            options.ca_file = self.nats_ca_file.clone();
            options.subject_prefix = self.nats_subject_prefix.clone();
            publishers.push(Publisher::nats(options, &self.integration_source));
        }
        publishers
    }
}

/// A subject prefix: one or more dot-separated words of letters, digits, `-` and `_` (no
/// wildcards, no empty word), so `<prefix>.>` is a valid set of subjects for the stream.
fn subject_prefix(value: &str) -> Result<String, String> {
    let word_ok = |word: &str| {
        !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if value.split('.').all(word_ok) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a subject prefix: dot-separated words of letters, digits, - and _"
        ))
    }
}

/// A broker that takes every message and sends none: what a restart folds through on its way
/// to the position it publishes again from.
struct Discard;

#[async_trait]
impl Broker for Discard {
    fn kind(&self) -> &'static str {
        "none"
    }

    async fn publish(&self, _messages: &[OutgoingMessage]) -> Result<(), BrokerError> {
        Ok(())
    }
}

/// What [`restart_from`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartSummary {
    /// Events folded again without publishing (those before the restart position).
    pub events_folded: u64,
    /// The checkpoint the next run starts after (`None`: the start of the log).
    pub checkpoint: Option<Position>,
}

/// Make the publisher `name` publish again, on its next run, every event from `from` on (the
/// first event to publish again; `None` for the start of the log): an operator's answer to a
/// consumer that lost messages, or to a new consumer that needs the history.
///
/// The fold the messages carry (balances after, alert state) must be the one at `from`, so the
/// publisher's tables are emptied and the log before `from` is folded again without publishing
/// anything, page by page with the checkpoint, as the runner would. Refused while a runner holds
/// the publisher's lock (stop it first); the lock is held here until the restart is done, so no
/// runner starts in the middle. The messages published again carry the ids and contents they had
/// the first time, and consumers drop the ones they already have.
pub async fn restart_from(
    store: &dyn EventStore,
    database: &Database,
    name: &str,
    from: Option<Position>,
) -> Result<RestartSummary, ProjectionError> {
    let Some(&name) = NAMES.iter().find(|n| **n == name) else {
        return Err(ProjectionError::UnknownProjection {
            name: name.to_owned(),
            known: NAMES.join(", "),
        });
    };
    let publisher = Publisher::new(name, Arc::new(Discard), "urn:restart");
    let lock = LockConnection::connect(database, name).await?;
    if !lock.try_lock().await? {
        return Err(ProjectionError::InvalidArgument(format!(
            "{name} is running (it holds its lock); stop it before restarting it"
        )));
    }
    let live = SchemaName::live(name);
    let mut client = database.pool().get().await?;
    schema::migrate_live(&mut client, &publisher).await?;
    client
        .batch_execute(&format!(
            "BEGIN; \
             TRUNCATE {live}.sku_folds, {live}.location_balances; \
             UPDATE {live}.checkpoint SET position_commit = NULL, position_prepare = NULL, \
                 events_applied = 0, updated_at = now(), last_error = NULL, last_error_at = NULL; \
             COMMIT"
        ))
        .await?;
    let mut summary = RestartSummary {
        events_folded: 0,
        checkpoint: None,
    };
    let Some(from) = from else {
        lock.unlock().await?;
        return Ok(summary);
    };
    loop {
        let page = store.read_all(summary.checkpoint, READ_EVENTS_MAX).await?;
        let before: Vec<_> = page
            .iter()
            .take_while(|event| event.position < from)
            .cloned()
            .collect();
        if before.is_empty() {
            break;
        }
        let transaction = client.transaction().await?;
        let next = apply_page(&transaction, &publisher, &live, summary.checkpoint, &before).await?;
        transaction.commit().await?;
        summary.events_folded += before.len() as u64;
        summary.checkpoint = next;
        if before.len() < page.len() {
            break;
        }
    }
    let stored = checkpoint::load(&**client, &live, name).await?.position;
    assert_eq!(
        stored, summary.checkpoint,
        "the restart committed its checkpoint"
    );
    lock.unlock().await?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::subject_prefix;

    #[test]
    fn a_subject_prefix_is_dot_separated_plain_words() {
        for good in ["inventory", "eu.inventory", "bench-1_a.x"] {
            assert_eq!(subject_prefix(good).as_deref(), Ok(good));
        }
        for bad in ["", "eu..inventory", "inventory.", "inv.*", "inv.>", "a b"] {
            assert!(subject_prefix(bad).is_err(), "{bad:?} was taken");
        }
    }
}
