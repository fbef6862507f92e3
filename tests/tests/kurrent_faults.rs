//! Faults the EventStoreDB/KurrentDB adapter must ride out, provoked with the protocol double:
//! a server that is down when the client first connects, a server restart under a live
//! subscription, and an append whose answer never comes in time.
//!
//! Every case runs twice: against a plain current node, and against the double in its
//! real-server mode: a secure 20.x-generation cluster node (credentials required, stream reads
//! without positions) that the adapter reaches through a follower, so that every connection
//! starts with a "not leader" answer.

use futures::StreamExt;
use ledger_application::store::{EventStore, EventStream, ExpectedVersion, StoreError};
use ledger_domain::envelope::{Metadata, NewEvent, RecordedEvent};
use ledger_kurrent::{KurrentOptions, KurrentStore};
use ledger_kurrent_double::{AppendStall, EventStoreDouble, ServerGeneration, User};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// Bounds every wait for a recovery; a passing run takes a few seconds at most.
const RECOVERY_DEADLINE_MS: u64 = 20_000;

/// Pause between two looks while polling for a recovery.
const POLL_INTERVAL_MS: u64 = 50;

/// A short connect timeout, to prove the server is down without waiting long.
const DOWN_CONNECT_TIMEOUT_MS: u64 = 300;

/// The deadline the timeout test gives each call, and the stall that outlasts it.
const SHORT_DEADLINE_MS: u64 = 500;
const STALL_MS: u64 = 3_000;

/// Which server the double plays.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// A current, insecure single node.
    Current,
    /// A secure 20.x-generation node reached through a follower.
    RealServer,
}

/// The user the real-server mode requires.
const USER: &str = "ledger";
const PASSWORD: &str = "fault-secret";

/// The server of one case: the node faults are applied to (the leader), and in the real-server
/// mode the follower the connection string names.
struct Server {
    leader: EventStoreDouble,
    follower: Option<EventStoreDouble>,
}

impl Server {
    fn new(mode: Mode, serving: bool) -> Self {
        let mut leader = EventStoreDouble::start_later().unwrap();
        if serving {
            leader.serve().unwrap();
        }
        let follower = match mode {
            Mode::Current => None,
            Mode::RealServer => {
                leader.answer_as(ServerGeneration::NoStreamReadPositions);
                leader.require_credentials(vec![User {
                    name: USER.to_owned(),
                    password: PASSWORD.to_owned(),
                    reads_all: true,
                }]);
                let mut follower = leader.start_replica().unwrap();
                if !serving {
                    follower.stop();
                }
                Some(follower)
            }
        };
        Self { leader, follower }
    }

    /// Start serving: the whole cluster, as after an outage of every node.
    fn serve(&mut self) -> std::io::Result<()> {
        self.leader.serve()?;
        match &mut self.follower {
            Some(follower) => follower.serve(),
            None => Ok(()),
        }
    }

    fn url(&self) -> String {
        match &self.follower {
            None => self.leader.url(),
            Some(follower) => format!("esdb://{USER}:{PASSWORD}@{}?tls=false", follower.address()),
        }
    }
}

impl std::ops::Deref for Server {
    type Target = EventStoreDouble;

    fn deref(&self) -> &EventStoreDouble {
        &self.leader
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut EventStoreDouble {
        &mut self.leader
    }
}

fn options() -> KurrentOptions {
    KurrentOptions {
        connect_timeout_ms: RECOVERY_DEADLINE_MS,
        ..KurrentOptions::default()
    }
}

fn sku_stream() -> String {
    format!("sku-FAULT-{}", Uuid::new_v4().simple())
}

fn movement(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "StockReplenished".to_owned(),
        schema_version: 1,
        data: serde_json::json!({ "quantity": n }),
        metadata: Metadata {
            principal: Some("fault-test".into()),
            ..Metadata::default()
        },
        recorded_at: ledger_domain::chain::to_microseconds(chrono::Utc::now()),
        hash: ledger_domain::EventHash::GENESIS,
    }
}

/// Append one event at `expected`, polling until the store takes it: after a restart the first
/// calls may still meet the old, broken connection.
async fn append_when_possible(
    store: &KurrentStore,
    stream: &str,
    expected: ExpectedVersion,
    n: u64,
) {
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_DEADLINE_MS);
    let event = movement(n);
    loop {
        match store.append(stream, expected, vec![event.clone()]).await {
            Ok(_) => return,
            Err(StoreError::Unavailable { .. } | StoreError::Timeout { .. }) => {
                assert!(Instant::now() < deadline, "the store never recovered");
                tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
            }
            Err(other) => panic!("unexpected append failure: {other}"),
        }
    }
}

/// The next event the subscription delivers, skipping the errors it reports while the server
/// is away.
async fn next_event(subscription: &mut EventStream) -> RecordedEvent {
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_DEADLINE_MS);
    loop {
        let item = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .expect("the subscription delivered nothing before the deadline")
            .expect("a subscription never ends");
        if let Ok(event) = item {
            return event;
        }
    }
}

async fn a_store_connects_once_a_server_that_was_down_comes_up(mode: Mode) {
    let mut double = Server::new(mode, false);
    // The client is started while nothing listens; its first connection attempt fails.
    let url = double.url();
    let waiting = tokio::spawn(async move { KurrentStore::connect(&url, options()).await });
    let down = KurrentStore::connect(
        &double.url(),
        KurrentOptions {
            connect_timeout_ms: DOWN_CONNECT_TIMEOUT_MS,
            ..options()
        },
    )
    .await;
    assert!(
        matches!(down, Err(StoreError::Unavailable { .. })),
        "nothing listens yet, so connecting gives up: {:?}",
        down.err()
    );
    double.serve().unwrap();
    let store = waiting
        .await
        .unwrap()
        .expect("the store connects once the server is up");
    let stream = sku_stream();
    let result = store
        .append(&stream, ExpectedVersion::NoStream, vec![movement(1)])
        .await
        .unwrap();
    assert_eq!(result.version, 0);
    assert_eq!(store.read_stream(&stream, 0, 10).await.unwrap().len(), 1);
}

async fn calls_fail_while_the_server_is_down_and_succeed_once_it_is_back(mode: Mode) {
    let mut double = Server::new(mode, true);
    let store = KurrentStore::connect(&double.url(), options())
        .await
        .unwrap();
    let stream = sku_stream();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![movement(0)])
        .await
        .unwrap();
    double.stop();
    let refused = store.read_stream(&stream, 0, 10).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable { .. })),
        "{refused:?}"
    );
    double.serve().unwrap();
    append_when_possible(&store, &stream, ExpectedVersion::Exact(0), 1).await;
    let versions: Vec<u64> = store
        .read_stream(&stream, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [0, 1]);
    if let Some(follower) = &double.follower {
        assert!(
            follower.not_leader_answers() > 0,
            "the calls went through the follower's \"not leader\""
        );
    }
}

async fn a_subscription_survives_a_server_restart_without_losing_or_repeating_events(mode: Mode) {
    let mut double = Server::new(mode, true);
    let store = KurrentStore::connect(&double.url(), options())
        .await
        .unwrap();
    let stream = sku_stream();
    for n in 0..5_u64 {
        let expected = n
            .checked_sub(1)
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        append_when_possible(&store, &stream, expected, n).await;
    }
    let mut subscription = store.subscribe_all(None);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut subscription).await.version);
    }
    // Down mid-catch-up: two stored events not delivered yet, and more written after the
    // restart.
    double.restart().unwrap();
    for n in 5..10 {
        append_when_possible(&store, &stream, ExpectedVersion::Exact(n - 1), n).await;
    }
    for _ in 3..10 {
        seen.push(next_event(&mut subscription).await.version);
    }
    assert_eq!(
        seen,
        (0..10).collect::<Vec<u64>>(),
        "every event once, in order"
    );
    // Once more, while live: a restart, then one event; the next delivery must be exactly it.
    double.restart().unwrap();
    append_when_possible(&store, &stream, ExpectedVersion::Exact(9), 10).await;
    assert_eq!(next_event(&mut subscription).await.version, 10);
    assert_eq!(double.stream_event_ids(&stream).len(), 11);
}

async fn an_append_whose_answer_is_late_times_out_and_its_retry_is_not_duplicated(mode: Mode) {
    let double = Server::new(mode, true);
    let store = KurrentStore::connect(
        &double.url(),
        KurrentOptions {
            operation_deadline_ms: SHORT_DEADLINE_MS,
            ..options()
        },
    )
    .await
    .unwrap();
    let stream = sku_stream();
    let batch = vec![movement(1), movement(2)];
    // The server stores the events but answers too late, as when an answer is lost.
    double.stall_appends(AppendStall::AfterWrite(Duration::from_millis(STALL_MS)));
    let started = Instant::now();
    let result = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await;
    let waited = started.elapsed();
    assert!(
        matches!(
            result,
            Err(StoreError::Timeout {
                timeout_ms: SHORT_DEADLINE_MS
            })
        ),
        "{result:?}"
    );
    assert!(
        waited < Duration::from_millis(STALL_MS),
        "the deadline was not respected: waited {waited:?}"
    );
    double.clear_append_stall();
    // The caller retries with what it sent the first time.
    let retried = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert!(retried.deduplicated);
    assert_eq!(retried.version, 1);
    let stored = double.stream_event_ids(&stream);
    assert_eq!(stored, batch.iter().map(|e| e.event_id).collect::<Vec<_>>());
}

async fn an_append_that_times_out_before_it_is_written_is_written_once_by_its_retry(mode: Mode) {
    let double = Server::new(mode, true);
    let store = KurrentStore::connect(
        &double.url(),
        KurrentOptions {
            operation_deadline_ms: SHORT_DEADLINE_MS,
            ..options()
        },
    )
    .await
    .unwrap();
    let stream = sku_stream();
    let batch = vec![movement(1)];
    double.stall_appends(AppendStall::BeforeWrite(Duration::from_millis(STALL_MS)));
    let result = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await;
    assert!(
        matches!(result, Err(StoreError::Timeout { .. })),
        "{result:?}"
    );
    double.clear_append_stall();
    let retried = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(retried.version, 0);
    assert_eq!(double.stream_event_ids(&stream), [batch[0].event_id]);
}

macro_rules! fault_cases {
    ($mode:ident, $($case:ident),+ $(,)?) => {
        #[allow(non_snake_case)]
        mod $mode {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Mode::$mode).await;
                }
            )+
        }
    };
}

fault_cases!(
    Current,
    a_store_connects_once_a_server_that_was_down_comes_up,
    calls_fail_while_the_server_is_down_and_succeed_once_it_is_back,
    a_subscription_survives_a_server_restart_without_losing_or_repeating_events,
    an_append_whose_answer_is_late_times_out_and_its_retry_is_not_duplicated,
    an_append_that_times_out_before_it_is_written_is_written_once_by_its_retry,
);
fault_cases!(
    RealServer,
    a_store_connects_once_a_server_that_was_down_comes_up,
    calls_fail_while_the_server_is_down_and_succeed_once_it_is_back,
    a_subscription_survives_a_server_restart_without_losing_or_repeating_events,
    an_append_whose_answer_is_late_times_out_and_its_retry_is_not_duplicated,
    an_append_that_times_out_before_it_is_written_is_written_once_by_its_retry,
);
