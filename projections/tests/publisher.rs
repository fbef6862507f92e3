//! Integration events out, end to end over the real brokers: events appended through the
//! application are published by the publisher runner (the projector runtime following the
//! store-wide log), consumed from a queue bound to the RabbitMQ exchange or read from the
//! JetStream stream, and checked: every event exactly once by id (after the consumer drops
//! repeats by id), in per-SKU order, with the low-stock alerts the same fold opened and closed.
//! Then the failures: a publisher crash between the broker's confirmation and the checkpoint's
//! commit (the next run republishes with the same ids), and a broker cut off mid-run (the
//! publisher backs off, reports the error, and resumes from its checkpoint).
//!
//! The brokers are real servers: RabbitMQ at `RABBITMQ_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`) and NATS with JetStream at `NATS_URL` (default
//! `nats://127.0.0.1:4222`). A test whose broker cannot be reached fails, naming it. Every test
//! uses exchange, queue, stream and subject names of its own.

mod support;

use async_nats::jetstream;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use ledger_integration::IntegrationEvent;
use ledger_nats::NatsOptions;
use ledger_projections::publisher::{Publisher, NAME_NATS, NAME_RABBITMQ};
use ledger_projections::schema_name::SchemaName;
use ledger_projections::{FaultPlan, ProjectorOptions};
use ledger_rabbitmq::RabbitMqOptions;
use ledger_tests::proxy::{TcpProxy, Upstream};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;
use support::*;
use uuid::Uuid;

const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Short enough that a cut-off broker is noticed quickly in a test, long enough for a loaded
/// build machine to confirm a batch.
const TEST_PUBLISH_TIMEOUT_MS: u64 = 3_000;

/// Small batches, so a run has many batches and a crash can fall between them.
const TEST_BATCH_EVENTS_MAX: u64 = 5;

fn rabbitmq_url() -> String {
    std::env::var("RABBITMQ_URL").unwrap_or_else(|_| DEFAULT_RABBITMQ_URL.to_owned())
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned())
}

/// `host:port` of a broker URL.
fn socket_address(url: &str, default_port: u16) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("cannot resolve {with_port}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("{with_port} resolves to nothing"))
}

/// Fail at once, naming the service, when a broker is not there: a test that cannot reach its
/// broker must not pass.
async fn require(service: &str, variable: &str, url: &str, default_port: u16) -> SocketAddr {
    let address = socket_address(url, default_port);
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await
    {
        Ok(Ok(_)) => address,
        Ok(Err(error)) => panic!(
            "{service} is not reachable at {address} ({error}). These tests need a real \
             {service}: start it, or set {variable} to where one runs."
        ),
        Err(_) => panic!(
            "{service} did not answer at {address} within 5 s. These tests need a real \
             {service}: start it, or set {variable} to where one runs."
        ),
    }
}

/// The same URL with its host and port replaced by `address` (to go through a proxy).
fn via(url: &str, address: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let credentials = authority
        .rsplit_once('@')
        .map_or(String::new(), |(c, _)| format!("{c}@"));
    format!("{scheme}://{credentials}{address}{path}")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", Uuid::new_v4().simple())
}

/// A history over three SKUs (one with a dot in its name) that opens and closes low-stock
/// alerts: per SKU, the reorder point set on an empty shelf opens one, a replenishment closes
/// it, a large hold opens one and its release closes it.
const SKUS: [&str; 3] = ["PUB-A", "PUB-B", "PUB.C"];
const ALERTS_PER_SKU: usize = 4;

async fn append_history(ledger: &Ledger) {
    for sku in SKUS {
        ledger.run(sku, set_reorder_point(5)).await;
        ledger.run(sku, replenish(10)).await;
        ledger
            .run(sku, reserve(&format!("{sku}-r1"), 7, None))
            .await;
        ledger.run(sku, release(&format!("{sku}-r1"))).await;
        ledger
            .run(sku, reserve(&format!("{sku}-r2"), 2, Some(900)))
            .await;
        ledger.run(sku, confirm(&format!("{sku}-r2"))).await;
        ledger.run(sku, adjust(-1)).await;
    }
    for _ in 0..6 {
        ledger.run("PUB-A", replenish(1)).await;
    }
}

/// The ids of every event in the log.
async fn logged_event_ids(ledger: &Ledger) -> BTreeSet<Uuid> {
    let client = ledger.database.pool().get().await.unwrap();
    client
        .query("SELECT event_id FROM event_store.events", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn options(publisher: Publisher) -> ProjectorOptions {
    ProjectorOptions {
        projections: Vec::new(),
        publishers: vec![publisher],
        batch_events_max: TEST_BATCH_EVENTS_MAX,
        lock_retry_interval_ms: TEST_LOCK_RETRY_INTERVAL_MS,
        ..ProjectorOptions::default()
    }
}

async fn publisher_checkpoint(ledger: &Ledger, name: &str) -> Option<ledger_domain::Position> {
    let client = ledger.database.pool().get().await.unwrap();
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{}.checkpoint", SchemaName::live(name))],
        )
        .await
        .unwrap()
        .get(0);
    if !exists {
        return None;
    }
    ledger_projections::checkpoint::load(&**client, &SchemaName::live(name), name)
        .await
        .unwrap()
        .position
}

/// Wait until the publisher's checkpoint has reached the newest event: every message is then
/// confirmed by the broker, so it is in the bound queue or the stream.
async fn wait_published(ledger: &Ledger, name: &str) {
    let target = ledger.last_committed_position().await;
    assert!(target.is_some(), "the test appended events");
    wait_until(
        "the publisher's checkpoint reaches the newest event",
        || async { publisher_checkpoint(ledger, name).await >= target },
    )
    .await;
}

/// What a consumer saw, checked: after dropping repeats by id, every logged event exactly once,
/// each SKU's movements in stream order without gaps, and the expected alerts. Returns how many
/// repeats were dropped.
fn assert_exactly_once_in_order(
    received: &[IntegrationEvent],
    logged: &BTreeSet<Uuid>,
    alerts_expected: usize,
) -> usize {
    let mut seen = BTreeSet::new();
    let mut unique = Vec::new();
    for event in received {
        if seen.insert(event.id) {
            unique.push(event);
        }
    }
    let (alerts, movements): (Vec<&IntegrationEvent>, Vec<&IntegrationEvent>) = unique
        .iter()
        .partition(|e| e.event_type.starts_with("inventory.low_stock_alert."));
    let movement_ids: BTreeSet<Uuid> = movements.iter().map(|e| e.id).collect();
    assert_eq!(
        &movement_ids, logged,
        "every logged event is published, and nothing else"
    );
    assert_eq!(movements.len(), logged.len());
    assert_eq!(
        alerts.len(),
        alerts_expected,
        "the alerts the fold opened and closed"
    );
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for movement in &movements {
        assert_eq!(movement.data["sku"], movement.subject.as_str());
        versions
            .entry(movement.subject.as_str())
            .or_default()
            .push(movement.data["version"].as_u64().unwrap());
    }
    for (sku, versions) in versions {
        let expected: Vec<u64> = (0..versions.len() as u64).collect();
        assert_eq!(versions, expected, "{sku}'s events arrive in stream order");
    }
    // An alert comes right after the event that caused it.
    for (index, event) in unique.iter().enumerate() {
        if event.event_type.starts_with("inventory.low_stock_alert.") {
            let cause = unique[index - 1];
            assert_eq!(event.data["caused_by_event_id"], cause.id.to_string());
        }
    }
    received.len() - unique.len()
}

/// A queue bound to a test's own exchange, read the way a consumer would.
struct RabbitQueue {
    /// Kept open: the exclusive queue lives as long as this connection.
    _connection: Connection,
    channel: lapin::Channel,
    exchange: String,
    queue: String,
}

impl RabbitQueue {
    async fn bind(url: &str, exchange: &str) -> Self {
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let connection = Connection::connect(url, properties)
            .await
            .expect("the test connects to RabbitMQ");
        let channel = connection.create_channel().await.unwrap();
        channel
            .exchange_declare(
                exchange,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let queue = channel
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .name()
            .to_string();
        channel
            .queue_bind(
                &queue,
                exchange,
                "inventory.#",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Self {
            _connection: connection,
            channel,
            exchange: exchange.to_owned(),
            queue,
        }
    }

    /// Every message in the queue now, in queue order; checks each is persistent and carries
    /// its event's id as `message_id`.
    async fn drain(&self) -> Vec<IntegrationEvent> {
        let mut events = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(&self.queue, BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let event: IntegrationEvent =
                serde_json::from_slice(&message.delivery.data).expect("a CloudEvent in JSON");
            let properties = &message.delivery.properties;
            assert_eq!(
                properties.message_id().as_ref().map(|id| id.to_string()),
                Some(event.id.to_string()),
                "message_id is the event id"
            );
            assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
            assert_eq!(
                message.delivery.routing_key.as_str(),
                event.topic(),
                "routed by type and SKU"
            );
            events.push(event);
        }
        events
    }

    async fn delete_exchange(&self) {
        self.channel
            .exchange_delete(&self.exchange, ExchangeDeleteOptions::default())
            .await
            .unwrap();
    }
}

fn rabbitmq_publisher(url: &str, exchange: &str) -> Publisher {
    let mut options = RabbitMqOptions::new(url, exchange);
    options.publish_timeout_ms = TEST_PUBLISH_TIMEOUT_MS;
    Publisher::rabbitmq(options, "urn:inventory-ledger:test")
}

fn nats_options(url: &str) -> NatsOptions {
    let mut options = NatsOptions::new(url, unique("LEDGER_TEST_"));
    options.subject_prefix = unique("ledgertest");
    options.publish_timeout_ms = TEST_PUBLISH_TIMEOUT_MS;
    options
}

async fn jetstream_context(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url)
        .await
        .expect("the test connects to NATS");
    jetstream::new(client)
}

/// Every message in the stream, in stream order, with its `Nats-Msg-Id` checked.
async fn read_stream(context: &jetstream::Context, options: &NatsOptions) -> Vec<IntegrationEvent> {
    let mut stream = context.get_stream(&options.stream).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut events = Vec::new();
    if state.messages == 0 {
        return events;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let event: IntegrationEvent =
            serde_json::from_slice(&message.payload).expect("a CloudEvent in JSON");
        assert_eq!(
            message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned()),
            Some(event.id.to_string()),
            "Nats-Msg-Id is the event id (headers: {:?})",
            message.headers
        );
        assert_eq!(message.subject.as_str(), options.subject(&event.topic()));
        events.push(event);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_receives_every_event_once_by_id_in_per_sku_order_with_its_alerts() {
    let url = rabbitmq_url();
    require("RabbitMQ", "RABBITMQ_URL", &url, 5672).await;
    let ledger = Ledger::new().await;
    let exchange = unique("ledger-test-");
    let queue = RabbitQueue::bind(&url, &exchange).await;
    append_history(&ledger).await;
    let running = ledger.spawn(options(rabbitmq_publisher(&url, &exchange)));
    wait_published(&ledger, NAME_RABBITMQ).await;
    running.stop().await;
    let received = queue.drain().await;
    let repeats = assert_exactly_once_in_order(
        &received,
        &logged_event_ids(&ledger).await,
        ALERTS_PER_SKU * SKUS.len(),
    );
    assert_eq!(repeats, 0, "a run without failures publishes nothing twice");
    queue.delete_exchange().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stream_holds_every_event_once_by_id_in_per_sku_order_with_its_alerts() {
    let url = nats_url();
    require("NATS", "NATS_URL", &url, 4222).await;
    let ledger = Ledger::new().await;
    let options_nats = nats_options(&url);
    append_history(&ledger).await;
    let running = ledger.spawn(options(Publisher::nats(
        options_nats.clone(),
        "urn:inventory-ledger:test",
    )));
    wait_published(&ledger, NAME_NATS).await;
    running.stop().await;
    let context = jetstream_context(&url).await;
    let received = read_stream(&context, &options_nats).await;
    let repeats = assert_exactly_once_in_order(
        &received,
        &logged_event_ids(&ledger).await,
        ALERTS_PER_SKU * SKUS.len(),
    );
    assert_eq!(repeats, 0);
    context.delete_stream(&options_nats.stream).await.unwrap();
}

/// The first run publishes its first batch, the broker confirms, and the runner dies before its
/// checkpoint commits.
fn crash_after_first_publish(publisher: Publisher) -> ProjectorOptions {
    ProjectorOptions {
        faults: FaultPlan {
            crash_before_commit_at_batch: Some(1),
            ..FaultPlan::default()
        },
        ..options(publisher)
    }
}

async fn wait_crashed(running: &RunningProjectors) {
    wait_until("the publisher crashes as planned", || async {
        running.set.activity().iter().all(|a| a.finished)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_publish_and_checkpoint_republishes_the_same_ids_to_rabbitmq_and_the_consumer_drops_them(
) {
    let url = rabbitmq_url();
    require("RabbitMQ", "RABBITMQ_URL", &url, 5672).await;
    let ledger = Ledger::new().await;
    let exchange = unique("ledger-test-");
    let queue = RabbitQueue::bind(&url, &exchange).await;
    append_history(&ledger).await;

    let crashing = ledger.spawn(crash_after_first_publish(rabbitmq_publisher(
        &url, &exchange,
    )));
    wait_crashed(&crashing).await;
    crashing.stop().await;
    assert_eq!(
        publisher_checkpoint(&ledger, NAME_RABBITMQ).await,
        None,
        "the crashed batch's checkpoint never committed"
    );
    let first_run = queue.drain().await;
    assert!(
        !first_run.is_empty(),
        "the first batch reached the broker before the crash"
    );

    let running = ledger.spawn(options(rabbitmq_publisher(&url, &exchange)));
    wait_published(&ledger, NAME_RABBITMQ).await;
    running.stop().await;
    let second_run = queue.drain().await;
    let republished: Vec<Uuid> = second_run
        .iter()
        .take(first_run.len())
        .map(|e| e.id)
        .collect();
    assert_eq!(
        republished,
        first_run.iter().map(|e| e.id).collect::<Vec<_>>(),
        "the next run publishes the crashed batch again, with the same ids, first"
    );
    let received: Vec<IntegrationEvent> = first_run.into_iter().chain(second_run).collect();
    let repeats = assert_exactly_once_in_order(
        &received,
        &logged_event_ids(&ledger).await,
        ALERTS_PER_SKU * SKUS.len(),
    );
    assert_eq!(
        repeats,
        republished.len(),
        "only the crashed batch arrives twice"
    );
    queue.delete_exchange().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_publish_and_checkpoint_republishes_to_nats_and_the_server_drops_the_duplicates(
) {
    let url = nats_url();
    require("NATS", "NATS_URL", &url, 4222).await;
    let ledger = Ledger::new().await;
    let options_nats = nats_options(&url);
    append_history(&ledger).await;
    let context = jetstream_context(&url).await;

    let crashing = ledger.spawn(crash_after_first_publish(Publisher::nats(
        options_nats.clone(),
        "urn:inventory-ledger:test",
    )));
    wait_crashed(&crashing).await;
    crashing.stop().await;
    assert_eq!(publisher_checkpoint(&ledger, NAME_NATS).await, None);
    let first_run = read_stream(&context, &options_nats).await;
    assert!(
        !first_run.is_empty(),
        "the first batch reached the stream before the crash"
    );

    let running = ledger.spawn(options(Publisher::nats(
        options_nats.clone(),
        "urn:inventory-ledger:test",
    )));
    wait_published(&ledger, NAME_NATS).await;
    running.stop().await;
    let stored = read_stream(&context, &options_nats).await;
    let repeats = assert_exactly_once_in_order(
        &stored,
        &logged_event_ids(&ledger).await,
        ALERTS_PER_SKU * SKUS.len(),
    );
    assert_eq!(
        repeats, 0,
        "the server recognised the republished batch by Nats-Msg-Id and stored it once"
    );
    assert_eq!(
        stored[..first_run.len()]
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        first_run.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    // The same message once more, as a republish would send it: acknowledged as a duplicate
    // and not stored.
    let first = &first_run[0];
    let ack = context
        .send_publish(
            options_nats.subject(&first.topic()),
            jetstream::message::PublishMessage::build()
                .payload(serde_json::to_vec(first).unwrap().into())
                .message_id(first.id.to_string()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        ack.duplicate,
        "the server drops a repeated id within its window"
    );
    assert_eq!(
        read_stream(&context, &options_nats).await.len(),
        stored.len()
    );
    context.delete_stream(&options_nats.stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_cut_off_mid_run_makes_the_publisher_back_off_report_it_and_resume_from_its_checkpoint(
) {
    let url = rabbitmq_url();
    let broker = require("RabbitMQ", "RABBITMQ_URL", &url, 5672).await;
    let proxy = TcpProxy::start(Upstream::Tcp(broker)).await;
    let ledger = Ledger::new().await;
    let exchange = unique("ledger-test-");
    let queue = RabbitQueue::bind(&url, &exchange).await;
    append_history(&ledger).await;
    let running = ledger.spawn(options(rabbitmq_publisher(
        &via(&url, proxy.address()),
        &exchange,
    )));
    wait_published(&ledger, NAME_RABBITMQ).await;

    // The broker goes away: open connections die, new ones hang.
    proxy.stall(true);
    proxy.cut();
    for sku in SKUS {
        ledger.run(sku, replenish(3)).await;
    }
    wait_until("the publisher reports the broker as down", || async {
        let status = ledger.read_models.status(&*ledger.store).await.unwrap();
        status
            .iter()
            .find(|s| s.name == NAME_RABBITMQ)
            .and_then(|s| s.last_error.clone())
            .is_some_and(|error| error.contains("rabbitmq"))
    })
    .await;
    let status = ledger.read_models.status(&*ledger.store).await.unwrap();
    let publisher = status.iter().find(|s| s.name == NAME_RABBITMQ).unwrap();
    assert!(
        publisher.lag_events >= 3,
        "the unpublished events show as lag: {publisher:?}"
    );
    assert!(
        publisher.running,
        "the publisher holds its lock while it waits"
    );

    // The broker comes back: the publisher resumes from its checkpoint.
    proxy.stall(false);
    wait_published(&ledger, NAME_RABBITMQ).await;
    running.stop().await;
    let received = queue.drain().await;
    assert_exactly_once_in_order(
        &received,
        &logged_event_ids(&ledger).await,
        ALERTS_PER_SKU * SKUS.len(),
    );
    assert!(
        proxy.connections_accepted() >= 2,
        "the publisher connected again"
    );
    queue.delete_exchange().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cut_off_mid_run_makes_the_publisher_back_off_and_resume_without_storing_anything_twice(
) {
    let url = nats_url();
    let broker = require("NATS", "NATS_URL", &url, 4222).await;
    let proxy = TcpProxy::start(Upstream::Tcp(broker)).await;
    let ledger = Ledger::new().await;
    let options_nats = nats_options(&url);
    let mut proxied = options_nats.clone();
    proxied.url = via(&url, proxy.address());
    append_history(&ledger).await;
    let running = ledger.spawn(options(Publisher::nats(
        proxied,
        "urn:inventory-ledger:test",
    )));
    wait_published(&ledger, NAME_NATS).await;

    proxy.stall(true);
    proxy.cut();
    for sku in SKUS {
        ledger.run(sku, replenish(3)).await;
    }
    wait_until("the publisher reports the broker as down", || async {
        let status = ledger.read_models.status(&*ledger.store).await.unwrap();
        status
            .iter()
            .find(|s| s.name == NAME_NATS)
            .and_then(|s| s.last_error.clone())
            .is_some_and(|error| error.contains("nats"))
    })
    .await;

    proxy.stall(false);
    wait_published(&ledger, NAME_NATS).await;
    running.stop().await;
    let context = jetstream_context(&url).await;
    let stored = read_stream(&context, &options_nats).await;
    let repeats = assert_exactly_once_in_order(
        &stored,
        &logged_event_ids(&ledger).await,
        ALERTS_PER_SKU * SKUS.len(),
    );
    assert_eq!(
        repeats, 0,
        "retried publishes were recognised by Nats-Msg-Id"
    );
    context.delete_stream(&options_nats.stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_a_position_publishes_again_from_there_the_same_messages_ids_and_balances_included(
) {
    let url = rabbitmq_url();
    require("RabbitMQ", "RABBITMQ_URL", &url, 5672).await;
    let ledger = Ledger::new().await;
    let exchange = unique("ledger-test-");
    let queue = RabbitQueue::bind(&url, &exchange).await;
    append_history(&ledger).await;
    let running = ledger.spawn(options(rabbitmq_publisher(&url, &exchange)));
    wait_published(&ledger, NAME_RABBITMQ).await;

    // Not while a runner holds the publisher.
    let refused = ledger_projections::publisher::restart_from(
        &*ledger.store,
        &ledger.database,
        NAME_RABBITMQ,
        None,
    )
    .await;
    assert!(
        matches!(&refused, Err(error) if error.to_string().contains("is running")),
        "{refused:?}"
    );
    running.stop().await;
    let first = queue.drain().await;

    // The tenth event of the log, and everything after it, once more.
    let (commit, prepare, tenth): (i64, i64, Uuid) = {
        let client = ledger.database.pool().get().await.unwrap();
        let row = client
            .query_one(
                "SELECT transaction_id, sequence, event_id FROM event_store.events \
                 ORDER BY transaction_id, sequence OFFSET 9 LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let from = ledger_domain::Position {
        commit: commit as u64,
        prepare: prepare as u64,
    };
    let summary = ledger_projections::publisher::restart_from(
        &*ledger.store,
        &ledger.database,
        NAME_RABBITMQ,
        Some(from),
    )
    .await
    .unwrap();
    assert_eq!(
        summary.events_folded, 9,
        "the events before it are folded, not published"
    );
    assert!(summary.checkpoint < Some(from));

    let running = ledger.spawn(options(rabbitmq_publisher(&url, &exchange)));
    wait_published(&ledger, NAME_RABBITMQ).await;
    running.stop().await;
    let again = queue.drain().await;
    let start = first
        .iter()
        .position(|event| event.id == tenth)
        .expect("the tenth event was published the first time");
    assert_eq!(
        again,
        first[start..].to_vec(),
        "the same messages from there on: ids, balances after and alerts included"
    );
    queue.delete_exchange().await;
}

/// SKUs and replenishments per SKU of the throughput measurement (10,000 events).
const MEASURED_SKUS: usize = 100;
const MEASURED_EVENTS_PER_SKU: usize = 100;

/// Measures how fast each publisher publishes a backlog: events/s from its start until its
/// checkpoint reaches the newest event, batches of the runtime's default size (500). Run on
/// demand, in a release build:
/// `cargo test --release -p ledger-projections --test publisher -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; run on demand"]
async fn measure_publisher_throughput() {
    let rabbitmq = rabbitmq_url();
    let nats = nats_url();
    require("RabbitMQ", "RABBITMQ_URL", &rabbitmq, 5672).await;
    require("NATS", "NATS_URL", &nats, 4222).await;
    let ledger = Ledger::new().await;
    let appending = std::time::Instant::now();
    let ledger_ref = &ledger;
    futures::future::join_all((0..MEASURED_SKUS).map(|sku| async move {
        let sku = format!("MEASURE-{sku}");
        for _ in 0..MEASURED_EVENTS_PER_SKU {
            ledger_ref.run(&sku, replenish(1)).await;
        }
    }))
    .await;
    let events = (MEASURED_SKUS * MEASURED_EVENTS_PER_SKU) as f64;
    println!(
        "appended {events} events in {:.1} s",
        appending.elapsed().as_secs_f64()
    );
    let exchange = unique("ledger-measure-");
    let queue = RabbitQueue::bind(&rabbitmq, &exchange).await;
    let nats_options = nats_options(&nats);
    for (name, publisher) in [
        (NAME_RABBITMQ, rabbitmq_publisher(&rabbitmq, &exchange)),
        (
            NAME_NATS,
            Publisher::nats(nats_options.clone(), "urn:inventory-ledger:measure"),
        ),
    ] {
        let started = std::time::Instant::now();
        let running = ledger.spawn(ProjectorOptions {
            projections: Vec::new(),
            publishers: vec![publisher],
            ..ProjectorOptions::default()
        });
        wait_published(&ledger, name).await;
        let seconds = started.elapsed().as_secs_f64();
        running.stop().await;
        println!(
            "{name}: {events} events in {seconds:.2} s = {:.0} events/s",
            events / seconds
        );
    }
    queue.delete_exchange().await;
    jetstream_context(&nats)
        .await
        .delete_stream(&nats_options.stream)
        .await
        .unwrap();
}
