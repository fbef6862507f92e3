//! The EventStoreDB/KurrentDB adapter against the protocol double behaving as real servers do
//! where it matters: `$all` positions as a real log gives them, older servers' stream reads
//! without positions, secured servers, leader changes in a cluster, and the server's limits.

use futures::StreamExt;
use ledger_application::store::{EventStore, ExpectedVersion, StoreError};
use ledger_domain::envelope::Position;
use ledger_domain::envelope::{Metadata, NewEvent};
use ledger_kurrent::{KurrentOptions, KurrentStore};
use ledger_kurrent_double::{AppendStall, EventStoreDouble, ServerGeneration};
use std::time::Duration;
use uuid::Uuid;

/// A double starts in milliseconds; this only bounds a broken run.
const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// The deadline the lost-answer cases give each call, and the stall that outlasts it.
const SHORT_DEADLINE_MS: u64 = 500;
const STALL_MS: u64 = 2_000;

/// How long a case waits for a subscription to deliver before failing.
const DELIVERY_DEADLINE_MS: u64 = 10_000;

fn options() -> KurrentOptions {
    KurrentOptions {
        connect_timeout_ms: CONNECT_TIMEOUT_MS,
        ..KurrentOptions::default()
    }
}

fn sku_stream() -> String {
    format!("sku-MODE-{}", Uuid::new_v4().simple())
}

fn movement(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "StockReplenished".to_owned(),
        schema_version: 1,
        data: serde_json::json!({ "quantity": n }),
        metadata: Metadata {
            principal: Some("mode-test".into()),
            ..Metadata::default()
        },
    }
}

fn movements(count: u64) -> Vec<NewEvent> {
    (0..count).map(movement).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_one_append_has_its_own_log_position_with_commit_equal_to_prepare() {
    let double = EventStoreDouble::start().unwrap();
    let store = KurrentStore::connect(&double.url(), options())
        .await
        .unwrap();
    let stream = sku_stream();
    let first = store
        .append(&stream, ExpectedVersion::NoStream, movements(3))
        .await
        .unwrap();
    let second = store
        .append(&stream, ExpectedVersion::Exact(2), movements(2))
        .await
        .unwrap();
    let log = store.read_all(None, 100).await.unwrap();
    let positions: Vec<_> = log.iter().map(|e| e.position).collect();
    assert_eq!(positions.len(), 5);
    assert!(
        positions.iter().all(|p| p.commit == p.prepare),
        "a real log gives commit = prepare per event: {positions:?}"
    );
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(first.position, positions[2]);
    assert_eq!(second.position, positions[4]);
    // Positions are only compared, never computed with: reading after an event in the middle
    // of one append gives exactly the rest of it, and so does a subscription.
    let rest = store.read_all(Some(positions[0]), 100).await.unwrap();
    assert_eq!(rest.len(), 4);
    assert_eq!(rest[0].position, positions[1]);
    let mut subscription = store.subscribe_all(Some(positions[1]));
    for expected in &positions[2..] {
        let event = tokio::time::timeout(
            Duration::from_millis(DELIVERY_DEADLINE_MS),
            subscription.next(),
        )
        .await
        .expect("the subscription delivers")
        .expect("a subscription never ends")
        .unwrap();
        assert_eq!(&event.position, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_server_without_stream_read_positions_a_retry_still_reports_the_real_position() {
    let double = EventStoreDouble::start().unwrap();
    double.answer_as(ServerGeneration::NoStreamReadPositions);
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
    // Other streams' events around it, one of them with a name this stream's is a prefix of.
    store
        .append(
            &format!("{stream}-other"),
            ExpectedVersion::NoStream,
            movements(2),
        )
        .await
        .unwrap();
    let original = store
        .append(&stream, ExpectedVersion::NoStream, movements(2))
        .await
        .unwrap();
    store
        .append(
            &format!("{stream}-other"),
            ExpectedVersion::Exact(1),
            movements(2),
        )
        .await
        .unwrap();
    let read = store.read_stream(&stream, 0, 10).await.unwrap();
    assert!(
        read.iter().all(|e| e.position == Position::UNKNOWN),
        "the server said no position, and the adapter must not invent one"
    );
    let log = store.read_all(None, 100).await.unwrap();
    let in_log = log.iter().find(|e| e.event_id == read[1].event_id).unwrap();
    assert_eq!(in_log.position, original.position);

    // An append whose answer is lost, retried after a later append: recognised in the stream
    // (which carries no positions) and answered with the position from the log.
    let batch = movements(3);
    double.stall_appends(AppendStall::AfterWrite(Duration::from_millis(STALL_MS)));
    let lost = store
        .append(&stream, ExpectedVersion::Exact(1), batch.clone())
        .await;
    assert!(matches!(lost, Err(StoreError::Timeout { .. })), "{lost:?}");
    double.clear_append_stall();
    store
        .append(&stream, ExpectedVersion::Exact(4), movements(1))
        .await
        .unwrap();
    let retried = store
        .append(&stream, ExpectedVersion::Exact(1), batch.clone())
        .await
        .unwrap();
    assert!(retried.deduplicated);
    assert_eq!(retried.version, 4);
    let last_of_batch = store
        .read_all(None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_id == batch[2].event_id)
        .unwrap();
    assert_eq!(retried.position, last_of_batch.position);
    assert!(retried.position.is_known());
}
