//! The order flow's events, consumed by the real `ledger-api` binary on a real PostgreSQL from a
//! real RabbitMQ (`RABBITMQ_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`) and a real
//! NATS JetStream (`NATS_URL`, default `nats://127.0.0.1:4222`), each test on queues, streams
//! and subjects of its own. The same scenario runs over both brokers: an order's holds on two
//! SKUs are released by `order.cancelled`, another order's are confirmed by
//! `order.payment_succeeded`, the same message again changes nothing, and four kinds of poison
//! (invalid JSON, unknown type, schema violation, unknown order) land in the dead-letter
//! destination with their reason and original body while the valid messages around them are
//! applied. The tests fail, naming the broker, when one is not reachable.

mod support;

use async_trait::async_trait;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use ledger_tests::postgres::TestDatabase;
use ledger_tests::proxy::{TcpProxy, Upstream};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::process::ApiProcess;

const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Longest a test waits for the consumers to decide every message (the unknown order is retried
/// for about four seconds first).
const DECIDED_DEADLINE_MS: u64 = 60_000;

const POLL_INTERVAL_MS: u64 = 50;

/// The test's side of a broker: publish to what the ledger consumes, read the dead letters.
#[async_trait]
trait OrderBroker {
    /// `api` flags that make the ledger consume from this broker.
    fn flags(&self) -> Vec<String>;
    async fn publish(&self, body: &[u8]);
    /// Every dead letter so far: (reason kind, reason, original body).
    async fn dead_letters(&self) -> Vec<(String, String, Vec<u8>)>;
    /// The consumer's label in `/metrics`.
    fn consumer(&self) -> &'static str;
}

struct Api {
    process: ApiProcess,
    http: reqwest::Client,
}

impl Api {
    async fn start(database: &TestDatabase, flags: &[String]) -> Self {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Self {
            process: ApiProcess::start("order-events", &database.url(), &flags).await,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(self.process.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.http.get(self.process.url(path)).send().await.unwrap();
        assert!(response.status().is_success(), "{path}");
        response.json().await.unwrap()
    }

    async fn metrics(&self) -> String {
        let response = self.http.get(self.process.url("/metrics")).send().await;
        response.unwrap().text().await.unwrap()
    }

    async fn reserve(&self, sku: &str, reservation: &str, order: &str, quantity: u64) {
        self.post(
            &format!("/v1/skus/{sku}/reservations"),
            json!({"reservation_id": reservation, "order_id": order, "quantity": quantity}),
        )
        .await;
    }

    /// The status of every reservation of `sku`, by id.
    async fn statuses(&self, sku: &str) -> BTreeMap<String, String> {
        let rows = self.get(&format!("/v1/skus/{sku}/reservations")).await;
        rows.as_array()
            .expect("a list of reservations")
            .iter()
            .map(|r| {
                (
                    r["reservation_id"].as_str().unwrap().to_owned(),
                    r["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The event types of `sku`'s history, oldest first.
    async fn history(&self, sku: &str) -> Vec<String> {
        let body = self
            .get(&format!("/v1/skus/{sku}/history?limit=1000"))
            .await;
        body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The value of the counter `name` with every label in `labels`, 0 when absent.
fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(label, value)| line.contains(&format!("{label}=\"{value}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn poll_until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_millis(DECIDED_DEADLINE_MS);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {DECIDED_DEADLINE_MS} ms"
        );
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

fn order_event(id: &str, event_type: &str, order: &str) -> Vec<u8> {
    json!({
        "specversion": "1.0", "id": id, "source": "urn:checkout-test", "type": event_type,
        "time": "2026-03-14T10:05:00Z", "datacontenttype": "application/json",
        "data": {"order_id": order, "reason": null}
    })
    .to_string()
    .into_bytes()
}

async fn order_events_release_confirm_once_and_dead_letter_poison(broker: &dyn OrderBroker) {
    let database = TestDatabase::create().await;
    let api = Api::start(&database, &broker.flags()).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (cancelled, paid) = (format!("ord-c-{run}"), format!("ord-p-{run}"));
    for sku in ["OE-1", "OE-2"] {
        api.post(
            &format!("/v1/skus/{sku}/replenishments"),
            json!({"quantity": 10}),
        )
        .await;
    }
    api.reserve("OE-1", "c-1", &cancelled, 2).await;
    api.reserve("OE-2", "c-2", &cancelled, 3).await;
    api.reserve("OE-1", "p-1", &paid, 1).await;
    api.reserve("OE-2", "p-2", &paid, 4).await;
    // The read model lists the holds before the messages arrive, as it would in production
    // (an order is reserved long before it is paid); the unknown order is the one to retry.
    poll_until("the read model lists the holds", async || {
        let listed = api.statuses("OE-1").await.len() + api.statuses("OE-2").await.len();
        (listed == 4).then_some(())
    })
    .await;

    let invalid_json = b"{\"specversion\": \"1.0\", \"id\": ".to_vec();
    let unknown_type = order_event(&format!("u-{run}"), "order.teleported.v1", &cancelled);
    let schema_violation = json!({
        "specversion": "1.0", "id": format!("s-{run}"), "source": "urn:checkout-test",
        "type": "order.cancelled.v1", "data": {"order_id": 42}
    })
    .to_string()
    .into_bytes();
    let unknown_order = order_event(
        &format!("o-{run}"),
        "order.cancelled.v1",
        &format!("ord-never-{run}"),
    );
    let cancel = order_event(&format!("c-{run}"), "order.cancelled.v1", &cancelled);
    let pay = order_event(&format!("p-{run}"), "order.payment_succeeded.v1", &paid);
    // Poison first: the valid messages behind it must not wait for it.
    for body in [
        &invalid_json,
        &unknown_type,
        &schema_violation,
        &unknown_order,
        &cancel,
        &pay,
    ] {
        broker.publish(body).await;
    }

    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::from([
        ("invalid_json".to_owned(), invalid_json),
        ("unknown_type".to_owned(), unknown_type),
        ("schema_violation".to_owned(), schema_violation),
        ("unknown_order".to_owned(), unknown_order),
    ]);
    let letters = poll_until("four dead letters", async || {
        let letters = broker.dead_letters().await;
        (letters.len() >= expected.len()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 4, "{letters:?}");
    for (kind, reason, body) in letters {
        let original = expected
            .remove(&kind)
            .unwrap_or_else(|| panic!("an unexpected dead letter {kind}: {reason}"));
        assert_eq!(
            body, original,
            "the dead letter {kind} carries the original"
        );
        assert!(!reason.is_empty(), "{kind} says why");
        if kind == "unknown_order" {
            assert!(reason.contains("ord-never-"), "{reason}");
            assert!(reason.contains("attempts"), "{reason}");
        }
        if kind == "unknown_type" {
            assert!(reason.contains("order.teleported.v1"), "{reason}");
        }
    }

    // The valid messages were applied: the cancelled order's holds released on both SKUs,
    // the paid order's confirmed on both.
    poll_until("the holds released and confirmed", async || {
        let statuses = [api.statuses("OE-1").await, api.statuses("OE-2").await];
        let wanted = [
            [("c-1", "released"), ("p-1", "confirmed")],
            [("c-2", "released"), ("p-2", "confirmed")],
        ];
        wanted
            .iter()
            .zip(&statuses)
            .all(|(wanted, statuses)| {
                wanted
                    .iter()
                    .all(|(id, status)| statuses.get(*id).map(String::as_str) == Some(status))
            })
            .then_some(())
    })
    .await;
    let one = api.get("/v1/skus/OE-1").await;
    assert_eq!(
        (one["on_hand"].as_u64(), one["reserved"].as_u64()),
        (Some(9), Some(0))
    );
    let two = api.get("/v1/skus/OE-2").await;
    assert_eq!(
        (two["on_hand"].as_u64(), two["reserved"].as_u64()),
        (Some(6), Some(0))
    );
    let history_before = [api.history("OE-1").await, api.history("OE-2").await];
    for history in &history_before {
        let released = history
            .iter()
            .filter(|t| *t == "ReservationReleased")
            .count();
        assert_eq!(released, 1, "{history:?}");
    }

    // The same cancellation again, and a payment failure of the same order: recognised, and
    // nothing changes.
    broker.publish(&cancel).await;
    let failed = order_event(&format!("f-{run}"), "order.payment_failed.v1", &cancelled);
    broker.publish(&failed).await;
    let consumer = broker.consumer();
    poll_until("the repeat recognised", async || {
        let metrics = api.metrics().await;
        let duplicate = counter(
            &metrics,
            "ledger_order_events_total",
            &[("consumer", consumer), ("outcome", "duplicate")],
        );
        let applied = counter(
            &metrics,
            "ledger_order_events_total",
            &[
                ("consumer", consumer),
                ("type", "order.payment_failed.v1"),
                ("outcome", "applied"),
            ],
        );
        (duplicate >= 1.0 && applied >= 1.0).then_some(())
    })
    .await;
    let history_after = [api.history("OE-1").await, api.history("OE-2").await];
    assert_eq!(history_after, history_before, "a repeat changes nothing");

    let metrics = api.metrics().await;
    for kind in [
        "invalid_json",
        "unknown_type",
        "schema_violation",
        "unknown_order",
    ] {
        assert_eq!(
            counter(
                &metrics,
                "ledger_order_events_dead_lettered_total",
                &[("consumer", consumer), ("reason", kind)]
            ),
            1.0,
            "{kind} counted in /metrics"
        );
    }
    drop(api);
    drop(database);
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ
// ---------------------------------------------------------------------------------------------

struct RabbitMq {
    url: String,
    channel: Channel,
    /// Kept open for the test's life.
    _connection: Connection,
    queue: String,
}

impl RabbitMq {
    async fn new() -> Self {
        let url = std::env::var("RABBITMQ_URL").unwrap_or_else(|_| DEFAULT_RABBITMQ_URL.to_owned());
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let connection = Connection::connect(&url, properties)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "RabbitMQ is not reachable at RABBITMQ_URL ({error}). This test needs a \
                     real RabbitMQ: start it, or set RABBITMQ_URL to where one runs."
                )
            });
        let channel = connection.create_channel().await.unwrap();
        let queue = format!("ledger-test-orders-{}", uuid::Uuid::new_v4().simple());
        // Declared before the ledger starts, as the order flow would: nothing published is lost.
        channel
            .queue_declare(
                &queue,
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        Self {
            url,
            channel,
            _connection: connection,
            queue,
        }
    }

    fn dead_letter(&self) -> String {
        format!("{}.dead-letter", self.queue)
    }

    async fn delete(&self) {
        for queue in [self.queue.clone(), self.dead_letter()] {
            self.channel
                .queue_delete(&queue, QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        self.channel
            .exchange_delete(&self.dead_letter(), Default::default())
            .await
            .unwrap();
    }
}

#[async_trait]
impl OrderBroker for RabbitMq {
    fn flags(&self) -> Vec<String> {
        vec![
            "--orders-rabbitmq-url".to_owned(),
            self.url.clone(),
            "--orders-rabbitmq-queue".to_owned(),
            self.queue.clone(),
        ]
    }

    async fn publish(&self, body: &[u8]) {
        self.channel
            .basic_publish(
                "",
                &self.queue,
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
    }

    async fn dead_letters(&self) -> Vec<(String, String, Vec<u8>)> {
        // Taken without acknowledgement and returned when the channel's next get runs dry:
        // read them all, then put every one back.
        let mut letters = Vec::new();
        let mut tags = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(&self.dead_letter(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            let headers = message
                .delivery
                .properties
                .headers()
                .clone()
                .unwrap_or_default();
            let text = |name: &str| match headers.inner().get(name) {
                Some(AMQPValue::LongString(value)) => value.to_string(),
                other => panic!("dead letter header {name}: {other:?}"),
            };
            letters.push((
                text("x-ledger-dead-letter-kind"),
                text("x-ledger-dead-letter-reason"),
                message.delivery.data.clone(),
            ));
            tags.push(message.delivery.acker);
        }
        for acker in tags {
            acker
                .nack(lapin::options::BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        letters
    }

    fn consumer(&self) -> &'static str {
        "rabbitmq"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_order_events_release_and_confirm_holds_once_and_dead_letter_poison() {
    let broker = RabbitMq::new().await;
    order_events_release_confirm_once_and_dead_letter_poison(&broker).await;
    broker.delete().await;
}

/// The same URL with its host and port replaced by `address` (to go through a proxy).
fn via(url: &str, address: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (credentials, host) = authority
        .rsplit_once('@')
        .map_or((String::new(), authority), |(c, host)| {
            (format!("{c}@"), host)
        });
    assert!(host.contains(':'), "the broker URL names its port: {url}");
    format!("{scheme}://{credentials}{address}{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_consumer_cut_off_reconnects_and_applies_what_was_published_meanwhile() {
    let broker = RabbitMq::new().await;
    let authority = broker.url.split_once("://").unwrap().1;
    let authority = authority.split('/').next().unwrap();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let upstream = tokio::net::lookup_host(host_port)
        .await
        .unwrap()
        .next()
        .expect("the broker's address resolves");
    let proxy = TcpProxy::start(Upstream::Tcp(upstream)).await;
    let database = TestDatabase::create().await;
    let flags = [
        "--orders-rabbitmq-url".to_owned(),
        via(&broker.url, proxy.address()),
        "--orders-rabbitmq-queue".to_owned(),
        broker.queue.clone(),
    ];
    let api = Api::start(&database, &flags).await;
    api.post("/v1/skus/RC-1/replenishments", json!({"quantity": 5}))
        .await;
    api.reserve("RC-1", "before", "ord-before", 1).await;
    api.reserve("RC-1", "during", "ord-during", 1).await;
    let released = |id: &'static str| {
        let api = &api;
        async move || {
            (api.statuses("RC-1").await.get(id).map(String::as_str) == Some("released"))
                .then_some(())
        }
    };
    poll_until("the read model lists the holds", async || {
        (api.statuses("RC-1").await.len() == 2).then_some(())
    })
    .await;
    broker
        .publish(&order_event("m-before", "order.cancelled.v1", "ord-before"))
        .await;
    poll_until("the consumer applies a message", released("before")).await;

    // The broker goes away for the ledger (open connections die, new ones hang) while the
    // order flow goes on publishing.
    proxy.stall(true);
    proxy.cut();
    broker
        .publish(&order_event("m-during", "order.cancelled.v1", "ord-during"))
        .await;
    poll_until("the consumer reports the lost broker", async || {
        let metrics = api.metrics().await;
        let errors = counter(
            &metrics,
            "ledger_order_events_broker_errors_total",
            &[("consumer", "rabbitmq")],
        );
        (errors >= 1.0).then_some(())
    })
    .await;
    assert_ne!(
        api.statuses("RC-1").await.get("during").map(String::as_str),
        Some("released"),
        "nothing reaches the ledger while the broker is away"
    );

    // The broker comes back: the consumer reconnects and applies what was published meanwhile.
    proxy.stall(false);
    poll_until("the consumer reconnects and applies it", released("during")).await;
    assert!(
        proxy.connections_accepted() >= 2,
        "the consumer connected again"
    );
    drop(api);
    drop(database);
    broker.delete().await;
}

// ---------------------------------------------------------------------------------------------
// NATS JetStream
// ---------------------------------------------------------------------------------------------

struct Nats {
    url: String,
    context: async_nats::jetstream::Context,
    stream: String,
    subject: String,
    dead_letter_stream: String,
    dead_letter_subject: String,
}

impl Nats {
    async fn new() -> Self {
        let url = std::env::var("NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned());
        let client = async_nats::connect(&url).await.unwrap_or_else(|error| {
            panic!(
                "NATS is not reachable at NATS_URL ({error}). This test needs a real NATS \
                 server with JetStream: start it, or set NATS_URL to where one runs."
            )
        });
        let context = async_nats::jetstream::new(client);
        let run = uuid::Uuid::new_v4().simple().to_string();
        let nats = Self {
            url,
            context,
            stream: format!("LEDGER_TEST_ORDERS_{run}"),
            subject: format!("ledger-test-orders-{run}"),
            dead_letter_stream: format!("LEDGER_TEST_DEAD_{run}"),
            dead_letter_subject: format!("ledger-test-dead-{run}"),
        };
        // The order flow's stream, as the order flow would create it.
        nats.context
            .create_stream(async_nats::jetstream::stream::Config {
                name: nats.stream.clone(),
                subjects: vec![format!("{}.>", nats.subject)],
                ..Default::default()
            })
            .await
            .unwrap();
        nats
    }

    async fn delete(&self) {
        for stream in [&self.stream, &self.dead_letter_stream] {
            self.context.delete_stream(stream).await.unwrap();
        }
    }
}

#[async_trait]
impl OrderBroker for Nats {
    fn flags(&self) -> Vec<String> {
        [
            ("--orders-nats-url", self.url.clone()),
            ("--orders-nats-stream", self.stream.clone()),
            ("--orders-nats-subject", format!("{}.>", self.subject)),
            ("--orders-nats-consumer", format!("ledger-{}", self.stream)),
            (
                "--orders-nats-dead-letter-subject",
                self.dead_letter_subject.clone(),
            ),
            (
                "--orders-nats-dead-letter-stream",
                self.dead_letter_stream.clone(),
            ),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }

    async fn publish(&self, body: &[u8]) {
        self.context
            .publish(format!("{}.events", self.subject), body.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn dead_letters(&self) -> Vec<(String, String, Vec<u8>)> {
        let Ok(mut stream) = self.context.get_stream(&self.dead_letter_stream).await else {
            return Vec::new(); // not created yet
        };
        let stored = stream.info().await.unwrap().state.messages;
        let mut letters = Vec::new();
        for sequence in 1..=stored {
            let message = stream.get_raw_message(sequence).await.unwrap();
            let header = |name: &str| {
                message
                    .headers
                    .get(name)
                    .unwrap_or_else(|| panic!("dead letter header {name}"))
                    .to_string()
            };
            letters.push((
                header("Ledger-Dead-Letter-Kind"),
                header("Ledger-Dead-Letter-Reason"),
                message.payload.to_vec(),
            ));
        }
        letters
    }

    fn consumer(&self) -> &'static str {
        "nats"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_order_events_release_and_confirm_holds_once_and_dead_letter_poison() {
    let broker = Nats::new().await;
    order_events_release_confirm_once_and_dead_letter_poison(&broker).await;
    broker.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_consumer_cut_off_resumes_and_applies_what_was_published_meanwhile() {
    let broker = Nats::new().await;
    let host_port = broker.url.split_once("://").unwrap().1;
    let upstream = tokio::net::lookup_host(host_port)
        .await
        .unwrap()
        .next()
        .expect("the server's address resolves");
    let proxy = TcpProxy::start(Upstream::Tcp(upstream)).await;
    let mut flags = broker.flags();
    let at = flags
        .iter()
        .position(|flag| flag == "--orders-nats-url")
        .unwrap();
    flags[at + 1] = via(&broker.url, proxy.address());
    let database = TestDatabase::create().await;
    let api = Api::start(&database, &flags).await;
    api.post("/v1/skus/RC-2/replenishments", json!({"quantity": 5}))
        .await;
    api.reserve("RC-2", "before", "ord-before", 1).await;
    api.reserve("RC-2", "during", "ord-during", 1).await;
    let released = |id: &'static str| {
        let api = &api;
        async move || {
            (api.statuses("RC-2").await.get(id).map(String::as_str) == Some("released"))
                .then_some(())
        }
    };
    poll_until("the read model lists the holds", async || {
        (api.statuses("RC-2").await.len() == 2).then_some(())
    })
    .await;
    broker
        .publish(&order_event("m-before", "order.cancelled.v1", "ord-before"))
        .await;
    poll_until("the consumer applies a message", released("before")).await;

    // The server goes away for the ledger while the order flow goes on publishing; it comes
    // back, and the consumer (its client reconnecting, its pull renewed) applies what came.
    proxy.stall(true);
    proxy.cut();
    broker
        .publish(&order_event("m-during", "order.cancelled.v1", "ord-during"))
        .await;
    proxy.stall(false);
    poll_until("the consumer resumes and applies it", released("during")).await;
    assert!(
        proxy.connections_accepted() >= 2,
        "the consumer connected again"
    );
    drop(api);
    drop(database);
    broker.delete().await;
}
