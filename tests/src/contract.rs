//! The event store contract: what every adapter must do, written once against the port.
//!
//! Each case is a function taking a fresh, empty store. [`event_store_contract!`] turns the
//! whole list into one test per case for one adapter:
//!
//! ```text
//! ledger_tests::event_store_contract!(memory, || async { (MemoryStore::new(), ()) });
//! ```

use futures::StreamExt;
use ledger_application::chain::{seal, ChainWalk};
use ledger_application::store::{
    AnswerKey, Appended, EventStore, ExpectedVersion, NewAnswer, StoreError, ANSWER_POSITION_PATH,
};
use ledger_domain::envelope::{Metadata, NewEvent, Position, RecordedEvent};
use ledger_domain::EventHash;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

/// How long a subscription case waits for an event before failing. Generous, because the
/// machine may be busy with parallel tests; a passing run never waits this long.
const SUBSCRIPTION_DEADLINE_MS: u64 = 10_000;

/// Pause between two looks while polling for a condition with a deadline.
const POLL_INTERVAL_MS: u64 = 10;

/// Runs every contract case against one adapter. `$make` is an expression producing a future of
/// `(store, guard)`: the guard (a test database, say) is kept alive until the case ends.
#[macro_export]
macro_rules! event_store_contract {
    ($adapter:ident, $make:expr) => {
        $crate::event_store_contract!(@cases $adapter, $make,
            appending_to_a_new_stream_starts_at_version_zero,
            appending_with_the_exact_version_continues_the_stream,
            appending_with_a_stale_version_is_refused_with_the_actual_version,
            appending_with_no_stream_to_an_existing_stream_is_refused,
            appending_with_any_version_always_succeeds,
            appending_with_stream_exists_requires_the_stream,
            an_append_of_nothing_or_of_repeated_ids_is_invalid,
            a_retried_append_reports_the_original_result_and_stores_nothing,
            a_retried_append_after_later_appends_still_reports_the_original_result,
            event_ids_reused_for_a_different_append_are_refused,
            concurrent_appends_at_the_same_version_let_exactly_one_win,
            reading_a_missing_stream_gives_nothing,
            events_read_back_exactly_as_appended,
            sealed_events_keep_their_time_and_hash_and_their_chain_verifies,
            reading_a_stream_pages_forwards_from_a_version,
            the_log_lists_every_event_once_in_position_order,
            reading_the_log_after_a_position_pages_through_it,
            the_head_position_is_the_last_event_of_the_log,
            the_backlog_past_a_position_is_counted_up_to_a_bound,
            a_subscription_catches_up_then_receives_new_events,
            a_subscription_from_a_position_starts_after_it,
            answers_are_kept_with_their_events_and_carry_the_position,
            answers_of_commands_without_events_are_kept_too,
            an_append_whose_key_has_an_answer_writes_nothing_and_returns_it,
            kept_answers_are_forgotten_after_their_retention,
        );
    };
    (@cases $adapter:ident, $make:expr, $($case:ident),+ $(,)?) => {
        mod $adapter {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = ($make)().await;
                    $crate::contract::$case(&store).await;
                }
            )+
        }
    };
}

pub fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data: serde_json::json!({ "n": n, "text": format!("payload {n}") }),
        metadata: Metadata {
            correlation_id: Some(format!("corr-{n}")),
            causation_id: None,
            principal: Some("contract-suite".into()),
            idempotency_key: None,
            idempotency_scope: None,
            traceparent: None,
        },
        recorded_at: ledger_domain::chain::to_microseconds(chrono::Utc::now()),
        hash: ledger_domain::EventHash::GENESIS,
    }
}

pub fn events(count: u64) -> Vec<NewEvent> {
    (0..count).map(|n| event("Tested", n)).collect()
}

fn stream_name(label: &str) -> String {
    format!("contract-{label}-{}", Uuid::new_v4().simple())
}

async fn version_of<S: EventStore>(store: &S, stream: &str) -> Option<u64> {
    let mut version = None;
    loop {
        let from = version.map_or(0, |v: u64| v + 1);
        let page = store.read_stream(stream, from, 1000).await.unwrap();
        match page.last() {
            Some(last) => version = Some(last.version),
            None => return version,
        }
    }
}

/// The whole log once it holds every event of `stream` up to `version`. The log may lag a
/// successful append briefly (the Postgres store shows an event once every older transaction
/// has ended), so this polls with a deadline instead of assuming read-your-writes.
async fn log_including<S: EventStore>(store: &S, stream: &str, version: u64) -> Vec<RecordedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SUBSCRIPTION_DEADLINE_MS);
    loop {
        let log = read_whole_log(store).await;
        if log
            .iter()
            .any(|e| e.stream == stream && e.version == version)
        {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log never showed {stream} at version {version}"
        );
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

async fn read_whole_log<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.read_all(after, 1000).await.unwrap();
        let Some(last) = page.last() else {
            return all;
        };
        after = Some(last.position);
        all.extend(page);
    }
}

fn assert_wrong_version(
    result: Result<ledger_application::AppendResult, StoreError>,
    actual_expected: Option<u64>,
) {
    match result {
        Err(StoreError::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, actual_expected),
        other => panic!("expected a wrong-expected-version error, got {other:?}"),
    }
}

pub async fn appending_to_a_new_stream_starts_at_version_zero<S: EventStore>(store: &S) {
    let stream = stream_name("new");
    let result = store
        .append(&stream, ExpectedVersion::NoStream, events(3))
        .await
        .unwrap();
    assert_eq!(result.version, 2);
    assert!(!result.deduplicated);
    let read = store.read_stream(&stream, 0, 100).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.version).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    // A stream read gives each event the log position the append reported, or says it cannot
    // tell (EventStoreDB 20.x servers); the store-wide log always gives the real one.
    assert!(result.position.is_known());
    assert!(
        read[2].position == result.position || read[2].position == Position::UNKNOWN,
        "{:?} is neither the append's position nor unknown",
        read[2].position
    );
    // The log shows an event once every older transaction has ended (PostgreSQL), so wait.
    let log = log_including(store, &stream, 2).await;
    let last = log
        .iter()
        .find(|e| e.event_id == read[2].event_id)
        .expect("the log holds the event");
    assert_eq!(last.position, result.position);
}

pub async fn appending_with_the_exact_version_continues_the_stream<S: EventStore>(store: &S) {
    let stream = stream_name("exact");
    store
        .append(&stream, ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    let result = store
        .append(&stream, ExpectedVersion::Exact(1), events(1))
        .await
        .unwrap();
    assert_eq!(result.version, 2);
    assert_eq!(version_of(store, &stream).await, Some(2));
}

pub async fn appending_with_a_stale_version_is_refused_with_the_actual_version<S: EventStore>(
    store: &S,
) {
    let stream = stream_name("stale");
    store
        .append(&stream, ExpectedVersion::NoStream, events(3))
        .await
        .unwrap();
    assert_wrong_version(
        store
            .append(&stream, ExpectedVersion::Exact(0), events(1))
            .await,
        Some(2),
    );
    let missing = stream_name("missing");
    assert_wrong_version(
        store
            .append(&missing, ExpectedVersion::Exact(0), events(1))
            .await,
        None,
    );
    assert_eq!(
        version_of(store, &stream).await,
        Some(2),
        "nothing was appended"
    );
    assert_eq!(
        version_of(store, &missing).await,
        None,
        "nothing was appended"
    );
}

pub async fn appending_with_no_stream_to_an_existing_stream_is_refused<S: EventStore>(store: &S) {
    let stream = stream_name("exists");
    store
        .append(&stream, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    assert_wrong_version(
        store
            .append(&stream, ExpectedVersion::NoStream, events(1))
            .await,
        Some(0),
    );
}

pub async fn appending_with_any_version_always_succeeds<S: EventStore>(store: &S) {
    let stream = stream_name("any");
    let first = store
        .append(&stream, ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let second = store
        .append(&stream, ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert!(second.position > first.position);
}

pub async fn appending_with_stream_exists_requires_the_stream<S: EventStore>(store: &S) {
    let stream = stream_name("must-exist");
    assert_wrong_version(
        store
            .append(&stream, ExpectedVersion::StreamExists, events(1))
            .await,
        None,
    );
    store
        .append(&stream, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    let result = store
        .append(&stream, ExpectedVersion::StreamExists, events(1))
        .await
        .unwrap();
    assert_eq!(result.version, 1);
}

pub async fn an_append_of_nothing_or_of_repeated_ids_is_invalid<S: EventStore>(store: &S) {
    let stream = stream_name("invalid");
    let empty = store
        .append(&stream, ExpectedVersion::Any, Vec::new())
        .await;
    assert!(
        matches!(empty, Err(StoreError::InvalidAppend(_))),
        "{empty:?}"
    );
    let one = event("Tested", 1);
    let twice = store
        .append(&stream, ExpectedVersion::Any, vec![one.clone(), one])
        .await;
    assert!(
        matches!(twice, Err(StoreError::InvalidAppend(_))),
        "{twice:?}"
    );
    assert_eq!(version_of(store, &stream).await, None);
}

pub async fn a_retried_append_reports_the_original_result_and_stores_nothing<S: EventStore>(
    store: &S,
) {
    let stream = stream_name("retry");
    let batch = events(2);
    let original = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    // The retry carries the expected version the first attempt had, as a client that never
    // saw the first answer would; it must not be reported as a conflict.
    let retried = store
        .append(&stream, ExpectedVersion::NoStream, batch)
        .await
        .unwrap();
    assert!(retried.deduplicated);
    assert_eq!(retried.version, original.version);
    assert_eq!(retried.position, original.position);
    assert_eq!(store.read_stream(&stream, 0, 100).await.unwrap().len(), 2);
}

pub async fn a_retried_append_after_later_appends_still_reports_the_original_result<
    S: EventStore,
>(
    store: &S,
) {
    let stream = stream_name("retry-late");
    let batch = events(1);
    let original = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    store
        .append(&stream, ExpectedVersion::Exact(0), events(2))
        .await
        .unwrap();
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
        let retried = store
            .append(&stream, expected, batch.clone())
            .await
            .unwrap();
        assert!(retried.deduplicated);
        assert_eq!((retried.version, retried.position), (0, original.position));
    }
    assert_eq!(version_of(store, &stream).await, Some(2));
}

pub async fn event_ids_reused_for_a_different_append_are_refused<S: EventStore>(store: &S) {
    let stream = stream_name("reuse");
    let batch = events(2);
    store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    // Same first id, but a new second one: not a retry of anything.
    let mixed = vec![batch[0].clone(), event("Tested", 9)];
    let result = store.append(&stream, ExpectedVersion::Any, mixed).await;
    assert!(
        matches!(result, Err(StoreError::IdempotencyMismatch { .. })),
        "{result:?}"
    );
    // The same ids sent to another stream.
    let elsewhere = stream_name("elsewhere");
    let result = store.append(&elsewhere, ExpectedVersion::Any, batch).await;
    assert!(
        matches!(result, Err(StoreError::IdempotencyMismatch { .. })),
        "{result:?}"
    );
    assert_eq!(version_of(store, &stream).await, Some(1));
    assert_eq!(version_of(store, &elsewhere).await, None);
}

pub async fn concurrent_appends_at_the_same_version_let_exactly_one_win<S: EventStore>(store: &S) {
    let stream = stream_name("race");
    store
        .append(&stream, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    let attempts = (0..16).map(|n| {
        let stream = stream.clone();
        async move {
            store
                .append(&stream, ExpectedVersion::Exact(0), vec![event("Raced", n)])
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for result in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(
                result,
                Err(StoreError::WrongExpectedVersion {
                    actual: Some(1),
                    ..
                })
            ),
            "{result:?}"
        );
    }
    assert_eq!(version_of(store, &stream).await, Some(1));
}

pub async fn reading_a_missing_stream_gives_nothing<S: EventStore>(store: &S) {
    let read = store
        .read_stream(&stream_name("nothing"), 0, 10)
        .await
        .unwrap();
    assert!(read.is_empty());
}

pub async fn events_read_back_exactly_as_appended<S: EventStore>(store: &S) {
    let stream = stream_name("round-trip");
    let mut sent = event("RoundTripped", 7);
    sent.schema_version = 3;
    sent.data = serde_json::json!({
        "quantity": 12, "nested": { "list": [1, 2, 3], "none": null }, "text": "ünïcødé ✓"
    });
    sent.metadata = Metadata {
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        principal: Some("operator:ana".into()),
        idempotency_key: Some("key-1".into()),
        idempotency_scope: Some("principal:operator:ana".into()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    };
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    store
        .append(&stream, ExpectedVersion::NoStream, vec![sent.clone()])
        .await
        .unwrap();
    let read = store.read_stream(&stream, 0, 10).await.unwrap();
    let got = &read[0];
    assert_eq!(got.event_id, sent.event_id);
    assert_eq!(got.stream, stream);
    assert_eq!(got.version, 0);
    assert_eq!(got.event_type, "RoundTripped");
    assert_eq!(got.schema_version, 3);
    assert_eq!(got.data, sent.data);
    assert_eq!(got.metadata, sent.metadata);
    let after = chrono::Utc::now() + chrono::Duration::seconds(5);
    assert!(
        got.recorded_at > before && got.recorded_at < after,
        "{}",
        got.recorded_at
    );
}

/// The hash chain is stable across backends: what the writer sealed (recorded time, hash) is
/// what every store gives back, from the stream and from the log, and the hashes recomputed
/// from the events as read (their JSON as the store returns it) equal the ones sealed.
pub async fn sealed_events_keep_their_time_and_hash_and_their_chain_verifies<S: EventStore>(
    store: &S,
) {
    let stream = stream_name("chain");
    let mut first = events(3);
    first[1].data = serde_json::json!({
        "zeta": -4, "alpha": { "list": [1, 2, { "b": null, "a": true }], "empty": {} },
        "text": "quote \" backslash \\ tab \t ünïcødé ✓ \u{1f} 😀", "big": 18446744073709551615u64
    });
    first[2].metadata.idempotency_key = Some("key \"x\"".into());
    first[2].metadata.idempotency_scope = Some("principal:ana".into());
    let recorded_at = ledger_domain::chain::to_microseconds(chrono::Utc::now())
        + chrono::Duration::nanoseconds(999);
    let head = seal(&stream, 0, EventHash::GENESIS, recorded_at, &mut first);
    store
        .append(&stream, ExpectedVersion::NoStream, first.clone())
        .await
        .unwrap();
    let mut second = events(2);
    let later = recorded_at + chrono::Duration::milliseconds(3);
    seal(&stream, 3, head, later, &mut second);
    store
        .append(&stream, ExpectedVersion::Exact(2), second.clone())
        .await
        .unwrap();
    let sent: Vec<NewEvent> = first.into_iter().chain(second).collect();
    assert_eq!(sent[0].recorded_at.timestamp_subsec_nanos() % 1_000, 0);

    let read = store.read_stream(&stream, 0, 10).await.unwrap();
    // The log shows an append once older transactions have ended (PostgreSQL): poll.
    let started = std::time::Instant::now();
    let mut from_log = Vec::new();
    let mut after = None;
    while from_log.len() < sent.len() {
        assert!(
            started.elapsed() < Duration::from_millis(SUBSCRIPTION_DEADLINE_MS),
            "the log shows {} of the stream's {} events",
            from_log.len(),
            sent.len()
        );
        let page = store.read_all(after, 1_000).await.unwrap();
        match page.last() {
            Some(last) => after = Some(last.position),
            None => tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await,
        }
        from_log.extend(page.into_iter().filter(|e| e.stream == stream));
    }
    for got in [&read, &from_log] {
        assert_eq!(got.len(), sent.len());
        let mut walk = ChainWalk::new(&stream);
        for (recorded, sent) in got.iter().zip(&sent) {
            assert_eq!(recorded.event_id, sent.event_id);
            assert_eq!(recorded.recorded_at, sent.recorded_at);
            assert_eq!(recorded.hash, Some(sent.hash));
            walk.step(recorded)
                .unwrap_or_else(|broken| panic!("{broken}"));
        }
    }
}

pub async fn reading_a_stream_pages_forwards_from_a_version<S: EventStore>(store: &S) {
    let stream = stream_name("pages");
    store
        .append(&stream, ExpectedVersion::NoStream, events(10))
        .await
        .unwrap();
    let mut versions = Vec::new();
    let mut from = 0;
    loop {
        let page = store.read_stream(&stream, from, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        from = last.version + 1;
        versions.extend(page.iter().map(|e| e.version));
    }
    assert_eq!(versions, (0..10).collect::<Vec<_>>());
    let tail = store.read_stream(&stream, 7, 100).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.version).collect::<Vec<_>>(),
        [7, 8, 9]
    );
    assert!(store
        .read_stream(&stream, 10, 100)
        .await
        .unwrap()
        .is_empty());
}

pub async fn the_log_lists_every_event_once_in_position_order<S: EventStore>(store: &S) {
    let (a, b) = (stream_name("log-a"), stream_name("log-b"));
    let mut sent = Vec::new();
    for round in 0..3 {
        for stream in [&a, &b] {
            let batch = events(2);
            sent.extend(batch.iter().map(|e| e.event_id));
            store
                .append(stream, ExpectedVersion::Any, batch)
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    let log = log_including(store, &b, 5).await;
    let ours: Vec<&RecordedEvent> = log
        .iter()
        .filter(|e| e.stream == a || e.stream == b)
        .collect();
    assert_eq!(
        ours.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        sent,
        "the log lists events in the order they were appended"
    );
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
    for stream in [&a, &b] {
        let versions: Vec<u64> = ours
            .iter()
            .filter(|e| &e.stream == stream)
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, (0..6).collect::<Vec<_>>());
    }
}

pub async fn reading_the_log_after_a_position_pages_through_it<S: EventStore>(store: &S) {
    let stream = stream_name("log-pages");
    store
        .append(&stream, ExpectedVersion::NoStream, events(7))
        .await
        .unwrap();
    let whole = log_including(store, &stream, 6).await;
    let mut paged = Vec::new();
    let mut after: Option<Position> = None;
    loop {
        let page = store.read_all(after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        paged.extend(page.into_iter().map(|e| e.event_id));
    }
    assert_eq!(paged, whole.iter().map(|e| e.event_id).collect::<Vec<_>>());
    let middle = whole[2].position;
    let rest = store.read_all(Some(middle), 100).await.unwrap();
    assert_eq!(rest.first().map(|e| e.event_id), Some(whole[3].event_id));
}

pub async fn the_head_position_is_the_last_event_of_the_log<S: EventStore>(store: &S) {
    assert_eq!(
        store.head_position().await.unwrap(),
        None,
        "an empty store has no head"
    );
    let stream = stream_name("head");
    let result = store
        .append(&stream, ExpectedVersion::NoStream, events(3))
        .await
        .unwrap();
    log_including(store, &stream, 2).await;
    assert_eq!(store.head_position().await.unwrap(), Some(result.position));
}

pub async fn the_backlog_past_a_position_is_counted_up_to_a_bound<S: EventStore>(store: &S) {
    use ledger_application::store::Backlog;
    let stream = stream_name("backlog");
    store
        .append(&stream, ExpectedVersion::NoStream, events(7))
        .await
        .unwrap();
    let whole = log_including(store, &stream, 6).await;
    let everything = store.backlog(None, 100).await.unwrap();
    assert_eq!(
        everything,
        Backlog {
            events: 7,
            capped: false,
            oldest_recorded_at: Some(whole[0].recorded_at),
        }
    );
    let rest = store.backlog(Some(whole[2].position), 100).await.unwrap();
    assert_eq!(
        rest,
        Backlog {
            events: 4,
            capped: false,
            oldest_recorded_at: Some(whole[3].recorded_at),
        }
    );
    let bounded = store.backlog(None, 5).await.unwrap();
    assert_eq!((bounded.events, bounded.capped), (5, true));
    let exact = store.backlog(None, 7).await.unwrap();
    assert_eq!((exact.events, exact.capped), (7, false));
    let caught_up = store.backlog(Some(whole[6].position), 100).await.unwrap();
    assert_eq!(caught_up, Backlog::default());
}

async fn next_event(subscription: &mut ledger_application::store::EventStream) -> RecordedEvent {
    tokio::time::timeout(
        Duration::from_millis(SUBSCRIPTION_DEADLINE_MS),
        subscription.next(),
    )
    .await
    .expect("the subscription delivered no event before the deadline")
    .expect("a subscription never ends")
    .expect("the subscription failed")
}

pub async fn a_subscription_catches_up_then_receives_new_events<S: EventStore>(store: &S) {
    let stream = stream_name("subscribe");
    store
        .append(&stream, ExpectedVersion::NoStream, events(3))
        .await
        .unwrap();
    let mut subscription = store.subscribe_all(None);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut subscription).await.version);
    }
    assert_eq!(seen, [0, 1, 2]);
    // Live: appended after the subscription caught up.
    store
        .append(&stream, ExpectedVersion::Exact(2), events(2))
        .await
        .unwrap();
    let live: Vec<u64> = vec![
        next_event(&mut subscription).await.version,
        next_event(&mut subscription).await.version,
    ];
    assert_eq!(live, [3, 4]);
    let mut ids = HashSet::new();
    for event in store.read_stream(&stream, 0, 10).await.unwrap() {
        assert!(ids.insert(event.event_id));
    }
}

pub async fn a_subscription_from_a_position_starts_after_it<S: EventStore>(store: &S) {
    let stream = stream_name("subscribe-from");
    let first = store
        .append(&stream, ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    store
        .append(&stream, ExpectedVersion::Exact(1), events(1))
        .await
        .unwrap();
    let mut subscription = store.subscribe_all(Some(first.position));
    let event = next_event(&mut subscription).await;
    assert_eq!((event.stream.as_str(), event.version), (stream.as_str(), 2));
}

fn answer_key(key: &str) -> AnswerKey {
    AnswerKey {
        scope: "principal:contract-suite".into(),
        key: format!("{key}-{}", Uuid::new_v4().simple()),
    }
}

fn new_answer(key: &AnswerKey, positioned: bool) -> NewAnswer {
    NewAnswer {
        key: key.clone(),
        fingerprint: "fingerprint-1".into(),
        answer: serde_json::json!({ "done": { "position": null, "note": "kept" } }),
        positioned,
    }
}

pub async fn answers_are_kept_with_their_events_and_carry_the_position<S: EventStore>(store: &S) {
    let stream = stream_name("answered");
    let key = answer_key("k");
    let appended = store
        .append_answered(
            &stream,
            ExpectedVersion::NoStream,
            events(2),
            vec![new_answer(&key, true)],
        )
        .await
        .unwrap();
    let Appended::Written(Some(result)) = appended else {
        panic!("expected the events written, got {appended:?}");
    };
    assert_eq!(result.version, 1);
    let kept = store
        .kept_answers(std::slice::from_ref(&key))
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].fingerprint, "fingerprint-1");
    let position: Position = serde_json::from_value(
        kept[0].answer[ANSWER_POSITION_PATH[0]][ANSWER_POSITION_PATH[1]].clone(),
    )
    .expect("the kept answer holds the append's position");
    assert_eq!(position, result.position);
    assert_eq!(kept[0].answer["done"]["note"], "kept");
}

pub async fn answers_of_commands_without_events_are_kept_too<S: EventStore>(store: &S) {
    let key = answer_key("refused");
    let appended = store
        .append_answered(
            &stream_name("refusing"),
            ExpectedVersion::Any,
            Vec::new(),
            vec![new_answer(&key, false)],
        )
        .await
        .unwrap();
    assert_eq!(appended, Appended::Written(None));
    let kept = store
        .kept_answers(std::slice::from_ref(&key))
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].answer["done"]["position"].is_null());
    assert_eq!(
        store.kept_answers(&[answer_key("never")]).await.unwrap(),
        Vec::new()
    );
}

pub async fn an_append_whose_key_has_an_answer_writes_nothing_and_returns_it<S: EventStore>(
    store: &S,
) {
    let stream = stream_name("answered-once");
    let key = answer_key("once");
    store
        .append_answered(
            &stream,
            ExpectedVersion::NoStream,
            events(1),
            vec![new_answer(&key, true)],
        )
        .await
        .unwrap();
    let mut second = new_answer(&key, true);
    second.fingerprint = "fingerprint-2".into();
    let again = store
        .append_answered(&stream, ExpectedVersion::Exact(0), events(1), vec![second])
        .await
        .unwrap();
    let Appended::AnsweredBefore(found) = again else {
        panic!("expected the first answer back, got {again:?}");
    };
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].fingerprint, "fingerprint-1");
    let stored = store.read_stream(&stream, 0, 10).await.unwrap();
    assert_eq!(stored.len(), 1, "the second append wrote nothing");
}

pub async fn kept_answers_are_forgotten_after_their_retention<S: EventStore>(store: &S) {
    let key = answer_key("old");
    store
        .append_answered(
            &stream_name("forgetting"),
            ExpectedVersion::Any,
            Vec::new(),
            vec![new_answer(&key, false)],
        )
        .await
        .unwrap();
    let forgotten = store
        .forget_answers(chrono::Utc::now() + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert!(forgotten >= 1, "{forgotten}");
    assert!(store
        .kept_answers(std::slice::from_ref(&key))
        .await
        .unwrap()
        .is_empty());
}
