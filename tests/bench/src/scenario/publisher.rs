//! Scenario (k), publisher: how fast the integration-event publisher empties a backlog into a
//! real broker, and how late a message reaches a consumer while the uncontended load (a) runs.
//!
//! It starts API processes of its own on one data folder, so the other scenarios never carry
//! a publisher's cost:
//! 1. No publisher: three sets of SKUs are replenished (one for this phase, one for each
//!    broker's live phase, since a reserve repeated with the same key appends nothing) and (a)
//!    runs for the timed length. This is the same-run reference for the reserve rate, and its
//!    events are the backlog.
//! 2. For each broker (RabbitMQ, then NATS JetStream): the API is started again on the same
//!    folder with that broker's publisher only. A consumer in the bench's process was bound
//!    before the start. The publisher begins at the start of the log, so its first minutes are
//!    the backlog: the drain rate is the events published from the moment the API listens until
//!    the last message of the backlog arrives, over that time, with the API's and PostgreSQL's
//!    CPU per event over the same window.
//! 3. Still on that process, (a) runs again with the publisher live. Each message's lag is the
//!    time from the event's own `time` (stamped when the command was decided, before its
//!    commit) until the consumer had it in hand; every message of the phase counts, warm-up
//!    included. After the load stops, the time until the publisher's checkpoint reached the
//!    log's head says how far behind it ended.
//!
//! The consumers: a RabbitMQ exclusive queue bound with `#` to an exchange of the run's own
//! (deleted at the end), auto-acknowledged; a core NATS subscription on the run's own subject
//! prefix (the stream, of the run's own name, is deleted at the end). Both brokers are the real
//! ones at `--rabbitmq-url` and `--nats-url`.

use super::uncontended::{self, Skus};
use super::Target;
use crate::api_process::{ApiOptions, ApiProcess, DataFolder};
use crate::closed_loop::{Length, ScenarioResult};
use crate::cpu::CpuUsage;
use crate::database::LedgerDatabase;
use crate::stats::{max_ms, percentile_ms};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ledger_domain::Position;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How long the publisher may take to reach the log's head, after the API starts (backlog) or
/// after the load stops (live).
const CATCH_UP_TIMEOUT_SECONDS: u64 = 120;

/// How often the publisher's checkpoint is compared with the log's head.
const CHECKPOINT_POLL_INTERVAL_MS: u64 = 10;

/// How long the consumer may take, once the checkpoint is at the head, to have every message
/// (a broker confirms a message to the publisher before it delivers it to consumers).
const DELIVERY_TIMEOUT_SECONDS: u64 = 60;

/// How often the consumer's distinct messages are counted while waiting for the last ones.
const DELIVERY_POLL_INTERVAL_MS: u64 = 50;

/// Messages a NATS subscription may hold before the client drops them: the whole backlog of a
/// default run, so a busy bench never loses a sample.
const NATS_SUBSCRIPTION_CAPACITY: usize = 1 << 20;

pub struct PublisherPlan {
    pub run: String,
    pub skus: u64,
    pub length: Length,
    pub connections: usize,
    pub warmup: Duration,
    pub rabbitmq_url: String,
    pub nats_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublisherResult {
    /// (a) on this scenario's API with no publisher: the reference for the reserve rate.
    pub without_publisher: ScenarioResult,
    pub brokers: Vec<BrokerResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokerResult {
    pub broker: &'static str,
    pub backlog: Drain,
    pub live: Live,
}

/// The publisher emptying the log it found at start.
#[derive(Debug, Clone, Serialize)]
pub struct Drain {
    /// Events in the log when the API started.
    pub events_in_log: u64,
    /// Messages that arrived after the API listened (those published before are left out of
    /// the rate), distinct by id.
    pub messages_timed: u64,
    pub seconds: f64,
    pub per_second: f64,
    /// CPU over the same window, per timed message.
    pub cpu: CpuUsage,
    /// Distinct messages the consumer received in all, against the events in the log.
    pub messages_received: u64,
}

/// The publisher following the live load (a).
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    /// The reserves as the client saw them, publisher running.
    pub requests: ScenarioResult,
    /// Events appended during the phase (warm-up included), and distinct messages received
    /// for them.
    pub events_appended: u64,
    pub messages_received: u64,
    /// Messages received over the phase's length (from the first send to the last answer).
    pub per_second: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    /// From the last answer until the publisher's checkpoint was at the log's head.
    pub behind_at_end_ms: f64,
    /// From the last answer until the consumer had every message of the phase (or gave up).
    pub delivered_at_end_ms: f64,
    /// The lag p99 of the messages that arrived in each second of the phase (warm-up first).
    pub lag_p99_ms_by_second: Vec<f64>,
}

/// One message as the consumer had it.
struct Arrival {
    at: SystemTime,
    id: String,
    time: DateTime<Utc>,
}

impl Arrival {
    /// From the event's `time` until the consumer had it.
    fn lag(&self) -> Duration {
        let stamped: SystemTime = self.time.into();
        self.at.duration_since(stamped).unwrap_or(Duration::ZERO)
    }
}

/// What the consumer needs of a CloudEvent.
#[derive(Deserialize)]
struct Envelope {
    id: String,
    time: DateTime<Utc>,
}

/// The messages a consumer task has received so far.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<Arrival>>>);

impl Inbox {
    fn receive(&self, body: &[u8]) {
        let at = SystemTime::now();
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(body) {
            self.0.lock().expect("inbox lock").push(Arrival {
                at,
                id: envelope.id,
                time: envelope.time,
            });
        }
    }

    fn len(&self) -> usize {
        self.0.lock().expect("inbox lock").len()
    }

    /// Distinct ids among the arrivals from index `from` on, and the latest arrival time.
    fn distinct_since(&self, from: usize) -> (u64, Option<SystemTime>) {
        let arrivals = self.0.lock().expect("inbox lock");
        let slice = &arrivals[from.min(arrivals.len())..];
        let ids: HashSet<&str> = slice.iter().map(|a| a.id.as_str()).collect();
        (ids.len() as u64, slice.iter().map(|a| a.at).max())
    }

    /// The lag p99 of the arrivals from index `from` on, second by second from `start`.
    fn lag_p99_by_second(&self, from: usize, start: SystemTime) -> Vec<f64> {
        let arrivals = self.0.lock().expect("inbox lock");
        let mut seconds: Vec<Vec<Duration>> = Vec::new();
        for arrival in &arrivals[from.min(arrivals.len())..] {
            let second = arrival.at.duration_since(start).map_or(0, |d| d.as_secs()) as usize;
            if seconds.len() <= second {
                seconds.resize_with(second + 1, Vec::new);
            }
            seconds[second].push(arrival.lag());
        }
        seconds
            .into_iter()
            .map(|mut lags| {
                lags.sort_unstable();
                percentile_ms(&lags, 0.99)
            })
            .collect()
    }

    /// Lags of the arrivals from index `from` on, and their distinct count.
    fn lags_since(&self, from: usize) -> (Vec<Duration>, u64) {
        let arrivals = self.0.lock().expect("inbox lock");
        let slice = &arrivals[from.min(arrivals.len())..];
        let ids: HashSet<&str> = slice.iter().map(|a| a.id.as_str()).collect();
        let mut lags: Vec<Duration> = slice.iter().map(Arrival::lag).collect();
        lags.sort_unstable();
        (lags, ids.len() as u64)
    }
}

/// A broker as the scenario uses it: the API's arguments for its publisher, and a consumer.
enum Broker {
    RabbitMq {
        url: String,
        exchange: String,
    },
    Nats {
        url: String,
        stream: String,
        subject_prefix: String,
    },
}

/// A running consumer; dropping it stops the task, [`Consumer::remove`] also deletes what the
/// run declared on the broker.
struct Consumer {
    inbox: Inbox,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Broker {
    fn name(&self) -> &'static str {
        match self {
            Self::RabbitMq { .. } => "RabbitMQ",
            Self::Nats { .. } => "NATS JetStream",
        }
    }

    /// The letter of its SKUs' prefix.
    fn letter(&self) -> char {
        match self {
            Self::RabbitMq { .. } => 'r',
            Self::Nats { .. } => 'n',
        }
    }

    /// The projection name of its publisher (its checkpoint).
    fn publisher(&self) -> &'static str {
        match self {
            Self::RabbitMq { .. } => ledger_projections::publisher::NAME_RABBITMQ,
            Self::Nats { .. } => ledger_projections::publisher::NAME_NATS,
        }
    }

    fn api_arguments(&self) -> Vec<String> {
        match self {
            Self::RabbitMq { url, exchange } => vec![
                format!("--rabbitmq-url={url}"),
                format!("--rabbitmq-exchange={exchange}"),
            ],
            Self::Nats {
                url,
                stream,
                subject_prefix,
            } => vec![
                format!("--nats-url={url}"),
                format!("--nats-stream={stream}"),
                format!("--nats-subject-prefix={subject_prefix}"),
            ],
        }
    }

    /// Start consuming everything the publisher will send.
    async fn consume(&self) -> Result<Consumer, String> {
        let inbox = Inbox::default();
        let task = match self {
            Self::RabbitMq { url, exchange } => {
                let (connection, mut deliveries) = rabbitmq_queue(url, exchange).await?;
                let inbox = inbox.clone();
                tokio::spawn(async move {
                    while let Some(Ok(delivery)) = deliveries.next().await {
                        inbox.receive(&delivery.data);
                    }
                    drop(connection);
                })
            }
            Self::Nats {
                url,
                subject_prefix,
                ..
            } => {
                let client = nats_client(url).await?;
                let mut subscriber = client
                    .subscribe(format!("{subject_prefix}.>"))
                    .await
                    .map_err(|e| format!("subscribing on NATS: {e}"))?;
                let inbox = inbox.clone();
                tokio::spawn(async move {
                    while let Some(message) = subscriber.next().await {
                        inbox.receive(&message.payload);
                    }
                    drop(client);
                })
            }
        };
        Ok(Consumer { inbox, task })
    }

    /// Delete the exchange or stream the run used.
    async fn remove(&self) -> Result<(), String> {
        match self {
            Self::RabbitMq { url, exchange } => {
                let connection = rabbitmq_connection(url).await?;
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|e| e.to_string())?;
                channel
                    .exchange_delete(exchange, lapin::options::ExchangeDeleteOptions::default())
                    .await
                    .map_err(|e| format!("deleting the exchange {exchange}: {e}"))?;
                Ok(())
            }
            Self::Nats { url, stream, .. } => {
                let context = async_nats::jetstream::new(nats_client(url).await?);
                context
                    .delete_stream(stream)
                    .await
                    .map_err(|e| format!("deleting the stream {stream}: {e}"))?;
                Ok(())
            }
        }
    }
}

async fn rabbitmq_connection(url: &str) -> Result<lapin::Connection, String> {
    let properties = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    lapin::Connection::connect(url, properties)
        .await
        .map_err(|e| format!("RabbitMQ is not reachable at {url} ({e}): pass --rabbitmq-url"))
}

/// An exclusive queue bound to everything on `exchange` (declared, durable, as the publisher
/// declares it), consumed without acknowledgements.
async fn rabbitmq_queue(
    url: &str,
    exchange: &str,
) -> Result<(lapin::Connection, lapin::Consumer), String> {
    use lapin::options::{
        BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    let connection = rabbitmq_connection(url).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let failed = |what: &str, e: lapin::Error| format!("RabbitMQ: {what}: {e}");
    channel
        .exchange_declare(
            exchange,
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| failed("declaring the exchange", e))?;
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
        .map_err(|e| failed("declaring the queue", e))?
        .name()
        .to_string();
    channel
        .queue_bind(
            &queue,
            exchange,
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| failed("binding the queue", e))?;
    let consumer = channel
        .basic_consume(
            &queue,
            "ledger-bench",
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| failed("consuming", e))?;
    Ok((connection, consumer))
}

async fn nats_client(url: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .subscription_capacity(NATS_SUBSCRIPTION_CAPACITY)
        .connect(url)
        .await
        .map_err(|e| format!("NATS is not reachable at {url} ({e}): pass --nats-url"))
}

pub async fn run(options: &ApiOptions, plan: PublisherPlan) -> Result<PublisherResult, String> {
    let brokers = [
        Broker::RabbitMq {
            url: plan.rabbitmq_url.clone(),
            exchange: format!("ledger-bench-{}", plan.run),
        },
        Broker::Nats {
            url: plan.nats_url.clone(),
            stream: format!("LEDGER_BENCH_{}", plan.run),
            subject_prefix: format!("ledgerbench{}", plan.run),
        },
    ];
    // Both brokers must answer before anything is written, so a missing one fails at once.
    for broker in &brokers {
        drop(broker.consume().await?);
    }
    let folder = DataFolder::new("publisher")?;
    eprintln!(
        "(k) publisher: an API with no publisher on {}...",
        folder.path().display()
    );
    let api = ApiProcess::start(options, folder.path()).await?;
    let target = target_of(&api, &plan);
    // Every phase reserves on SKUs of its own: a reserve repeated with the same key on the same
    // SKU would be answered from its kept answer and append nothing. The brokers' SKUs are
    // prepared here, so their replenishments are part of the backlog, not of the live phase.
    let skus = Skus::prepare(&target, format!("K{}-", plan.run), plan.skus).await?;
    let mut broker_skus = Vec::new();
    for broker in &brokers {
        let prefix = format!("K{}{}-", plan.run, broker.letter());
        broker_skus.push(Skus::prepare(&target, prefix, plan.skus).await?);
    }
    let without_publisher = uncontended::run(
        &target,
        &skus,
        plan.length.clone(),
        format!("(k) (a) without a publisher, {} SKUs", skus.count()),
    )
    .await?;
    api.stop().await?;

    let mut results = Vec::new();
    for (broker, skus) in brokers.iter().zip(&broker_skus) {
        let result = run_broker(options, &plan, &folder, skus, broker).await;
        let removed = broker.remove().await;
        results.push(result?);
        removed?;
    }
    Ok(PublisherResult {
        without_publisher,
        brokers: results,
    })
}

fn target_of(api: &ApiProcess, plan: &PublisherPlan) -> Target {
    Target {
        endpoint: api.endpoint.clone(),
        processes: api.processes(),
        connections: plan.connections,
        warmup: plan.warmup,
        run: plan.run.clone(),
    }
}

/// Phases 2 and 3 for one broker, on the folder of phase 1.
async fn run_broker(
    options: &ApiOptions,
    plan: &PublisherPlan,
    folder: &DataFolder,
    skus: &Skus,
    broker: &Broker,
) -> Result<BrokerResult, String> {
    let consumer = broker.consume().await?;
    let mut with_publisher = options.clone();
    with_publisher
        .extra_arguments
        .extend(broker.api_arguments());
    eprintln!(
        "(k) publisher: the API again, publishing to {}...",
        broker.name()
    );
    let api = ApiProcess::start(&with_publisher, folder.path()).await?;
    let started = SystemTime::now();
    let processes = api.processes();
    let cpu_before = processes.sample();
    let already = consumer.inbox.len();
    let database =
        LedgerDatabase::embedded(folder.path(), ledger_startup::backends::EMBEDDED_DATABASE)
            .await?;
    let events_in_log = event_count(&database).await?;
    let head = head(&database).await?;
    wait_for_publisher(&database, broker.publisher(), head).await?;
    let messages_received = wait_for_messages(&consumer.inbox, 0, events_in_log).await;
    let (messages_timed, last_arrival) = consumer.inbox.distinct_since(already);
    let seconds = last_arrival
        .and_then(|last| last.duration_since(started).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    // The CPU sample at the end is taken once every message arrived: the publisher is idle.
    let cpu = cpu_before.until(&processes.sample(), messages_timed);
    let backlog = Drain {
        events_in_log,
        messages_timed,
        seconds,
        per_second: rate(messages_timed, seconds),
        cpu,
        messages_received,
    };

    let target = target_of(&api, plan);
    let live_from = consumer.inbox.len();
    let events_before = events_in_log;
    let phase_started = Instant::now();
    let phase_started_wall = SystemTime::now();
    let requests = uncontended::run(
        &target,
        skus,
        plan.length.clone(),
        format!("(k) (a) publishing to {}", broker.name()),
    )
    .await?;
    let phase_seconds = phase_started.elapsed().as_secs_f64();
    let load_stopped = Instant::now();
    let head = self::head(&database).await?;
    wait_for_publisher(&database, broker.publisher(), head).await?;
    let behind_at_end_ms = load_stopped.elapsed().as_secs_f64() * 1e3;
    let events_appended = event_count(&database).await? - events_before;
    wait_for_messages(&consumer.inbox, live_from, events_appended).await;
    let delivered_at_end_ms = load_stopped.elapsed().as_secs_f64() * 1e3;
    let (lags, messages_received) = consumer.inbox.lags_since(live_from);
    drop(database);
    api.stop().await?;
    let live = Live {
        requests,
        events_appended,
        messages_received,
        per_second: rate(messages_received, phase_seconds),
        lag_p50_ms: percentile_ms(&lags, 0.50),
        lag_p99_ms: percentile_ms(&lags, 0.99),
        lag_max_ms: max_ms(&lags),
        behind_at_end_ms,
        delivered_at_end_ms,
        lag_p99_ms_by_second: consumer
            .inbox
            .lag_p99_by_second(live_from, phase_started_wall),
    };
    Ok(BrokerResult {
        broker: broker.name(),
        backlog,
        live,
    })
}

fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

async fn event_count(database: &LedgerDatabase) -> Result<u64, String> {
    let client = database.client().await?;
    let row = client
        .query_one("SELECT count(*) FROM event_store.events", &[])
        .await
        .map_err(|e| format!("counting events: {e}"))?;
    Ok(row.get::<_, i64>(0) as u64)
}

async fn head(database: &LedgerDatabase) -> Result<Position, String> {
    database
        .store
        .head_position()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the log is empty".to_owned())
}

/// Wait until the consumer has `expected` distinct messages from arrival `from` on, or
/// [`DELIVERY_TIMEOUT_SECONDS`] passed; the distinct count either way (the report shows any
/// shortfall).
async fn wait_for_messages(inbox: &Inbox, from: usize, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(DELIVERY_TIMEOUT_SECONDS);
    loop {
        let (received, _) = inbox.distinct_since(from);
        if received >= expected || Instant::now() > deadline {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(DELIVERY_POLL_INTERVAL_MS)).await;
    }
}

/// Wait until the publisher's checkpoint is at `head`.
async fn wait_for_publisher(
    database: &LedgerDatabase,
    publisher: &str,
    head: Position,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(CATCH_UP_TIMEOUT_SECONDS);
    loop {
        // The checkpoint's table exists once the publisher has run its migration.
        if let Ok(Some(position)) = database.checkpoint(publisher).await {
            if position >= head {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the publisher {publisher} did not reach the log's head {head} within \
                 {CATCH_UP_TIMEOUT_SECONDS} s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(CHECKPOINT_POLL_INTERVAL_MS)).await;
    }
}

pub fn print(result: &PublisherResult) {
    println!(
        "## (k) Publisher: integration events to the real brokers, on an API of its own \
         (durable commits; RabbitMQ persistent messages with confirms, JetStream file storage \
         with acknowledgements)"
    );
    let mut rows = vec![&result.without_publisher];
    rows.extend(result.brokers.iter().map(|b| &b.live.requests));
    crate::table::print_request_table(&rows);
    println!();
    println!(
        "| broker | backlog events/s | backlog messages | API µs/event | PostgreSQL µs/event | \
         live reserves/s (/ without) | live messages/s | lag p50 ms | lag p99 ms | lag max ms | \
         checkpoint at head / all delivered, ms after the load |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let reference = result.without_publisher.per_second;
    let us = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.0}"));
    for broker in &result.brokers {
        let (drain, live) = (&broker.backlog, &broker.live);
        println!(
            "| {} | {:.0} | {} of {} | {} | {} | {:.0} ({:.2}) | {:.0} | {:.1} | {:.1} | {:.1} | \
             {:.0} / {:.0} |",
            broker.broker,
            drain.per_second,
            drain.messages_timed,
            drain.events_in_log,
            us(drain.cpu.api_per_request_us),
            us(drain.cpu.postgres_per_request_us),
            live.requests.per_second,
            live.requests.per_second / reference.max(f64::MIN_POSITIVE),
            live.per_second,
            live.lag_p50_ms,
            live.lag_p99_ms,
            live.lag_max_ms,
            live.behind_at_end_ms,
            live.delivered_at_end_ms,
        );
    }
    for broker in &result.brokers {
        let (drain, live) = (&broker.backlog, &broker.live);
        println!(
            "{}: {} distinct messages for the {} events of the log; live {} for {} appended",
            broker.broker,
            drain.messages_received,
            drain.events_in_log,
            live.messages_received,
            live.events_appended,
        );
        let by_second: Vec<String> = live
            .lag_p99_ms_by_second
            .iter()
            .map(|ms| format!("{ms:.0}"))
            .collect();
        println!(
            "{}: lag p99 ms in each second of the live phase (warm-up first): {}",
            broker.broker,
            by_second.join(" ")
        );
    }
}
