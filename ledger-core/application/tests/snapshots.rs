//! Snapshots are a cache: loading from one (and the events after it) must equal replaying the
//! whole stream, and a snapshot that does not match the stream is discarded.

mod support;

use ledger_application::command::CommandContext;
use ledger_application::handler::CommandHandler;
use ledger_application::store::memory::MemoryStore;
use ledger_domain::SkuState;
use std::sync::Arc;
use support::*;

use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Property: loading from a snapshot equals replaying the whole stream
// ---------------------------------------------------------------------------------------------

async fn compare_snapshot_loads_with_replay(
    steps: Vec<(PlainCommand, Option<String>, u64)>,
    interval: u64,
) -> Result<(), TestCaseError> {
    use ledger_application::snapshot::{MemorySnapshots, SnapshotStore};
    let clock = TestClock::starting_at(start());
    let snapshots = MemorySnapshots::new();
    let (handler, _store) = handler_with_clock(clock.clone());
    let handler = handler
        .with_snapshots(Arc::new(snapshots.clone()))
        .with_snapshot_interval(interval);
    let mut used_a_snapshot = false;
    for (index, (command, key, seconds)) in steps.iter().enumerate() {
        let context = CommandContext {
            idempotency_key: key.clone(),
            ..CommandContext::default()
        };
        let _ = handler
            .execute(&sku(), &command.to_sku_command(), &context)
            .await;
        clock.advance(*seconds);
        // Let the background snapshot saves run.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let loaded = handler.load(&sku()).await.map_err(|e| fail("load", e))?;
        let replayed = handler
            .replay(&sku())
            .await
            .map_err(|e| fail("replay", e))?;
        prop_assert_eq!(&loaded.state, &replayed.state, "state after step {}", index);
        prop_assert_eq!(
            loaded.remembered_keys(),
            replayed.remembered_keys(),
            "remembered keys after step {}",
            index
        );
        if let Some(snapshot) = snapshots.load(&sku().stream()).await.unwrap() {
            prop_assert!(Some(snapshot.version) <= replayed.state.version);
        }
    }
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    if let Some(snapshot) = snapshots.load(&sku().stream()).await.unwrap() {
        used_a_snapshot = true;
        let loaded = handler.load(&sku()).await.map_err(|e| fail("load", e))?;
        let replayed = handler
            .replay(&sku())
            .await
            .map_err(|e| fail("replay", e))?;
        prop_assert_eq!(
            &loaded.state,
            &replayed.state,
            "state from the last snapshot"
        );
        prop_assert!(Some(snapshot.version) <= replayed.state.version);
    }
    let events = handler
        .replay(&sku())
        .await
        .unwrap()
        .state
        .version
        .map_or(0, |v| v + 1);
    prop_assert_eq!(
        used_a_snapshot,
        events >= interval,
        "a snapshot exists exactly when the stream reached the interval"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: BATCH_PROPERTY_CASES,
        ..ProptestConfig::default()
    })]

    #[test]
    fn loading_from_a_snapshot_equals_replaying_the_whole_stream(
        steps in vec(
            (plain_command(),
             proptest::option::weighted(0.3, proptest::sample::select(QUEUE_KEYS.to_vec()))
                 .prop_map(|k| k.map(str::to_owned)),
             0u64..=40),
            1..=STEPS_MAX),
        interval in 1u64..=8,
    ) {
        runtime().block_on(compare_snapshot_loads_with_replay(steps, interval))?;
    }
}

#[tokio::test]
async fn a_snapshot_that_does_not_match_the_stream_is_discarded_and_the_stream_replayed() {
    use ledger_application::snapshot::{MemorySnapshots, Snapshot, SnapshotStore};
    let snapshots = MemorySnapshots::new();
    let store = Arc::new(MemoryStore::new());
    let handler = CommandHandler::new(store.clone()).with_snapshots(Arc::new(snapshots.clone()));
    for quantity in [5, 7] {
        handler
            .execute(&sku(), &replenish(quantity), &CommandContext::default())
            .await
            .unwrap();
    }
    // A snapshot from another store (same version, another event id) that claims 1,000 units.
    let mut foreign = SkuState::new(sku());
    foreign.on_hand = 1_000;
    foreign.version = Some(1);
    snapshots.put(Snapshot {
        stream: sku().stream(),
        version: 1,
        last_event_id: uuid::Uuid::new_v4(),
        state: foreign,
        recent_keys: Vec::new(),
        holders: Vec::new(),
        head_hash: ledger_domain::EventHash::GENESIS,
        head_recorded_at: chrono::Utc::now(),
    });
    let loaded = handler.load(&sku()).await.unwrap();
    assert_eq!(loaded.state.on_hand, 12);
    assert!(snapshots.load(&sku().stream()).await.unwrap().is_none());
}

/// A snapshot anchored to the right event id but another head hash (the event was rewritten
/// since, or the snapshot forged) is not trusted: the loader replays the stream, and the chain
/// continues from the hash the stream holds.
#[tokio::test]
async fn a_snapshot_whose_head_hash_differs_from_the_stream_is_discarded() {
    use ledger_application::snapshot::{MemorySnapshots, Snapshot, SnapshotStore};
    use ledger_application::EventStore;
    let snapshots = MemorySnapshots::new();
    let store = Arc::new(MemoryStore::new());
    let handler = CommandHandler::new(store.clone()).with_snapshots(Arc::new(snapshots.clone()));
    for quantity in [5, 7] {
        handler
            .execute(&sku(), &replenish(quantity), &CommandContext::default())
            .await
            .unwrap();
    }
    let events = store.read_stream(&sku().stream(), 0, 10).await.unwrap();
    let mut state = SkuState::new(sku());
    state.on_hand = 1_000;
    state.version = Some(1);
    snapshots.put(Snapshot {
        stream: sku().stream(),
        version: 1,
        last_event_id: events[1].event_id,
        state,
        recent_keys: Vec::new(),
        holders: Vec::new(),
        head_hash: ledger_domain::EventHash([7; 32]),
        head_recorded_at: events[1].recorded_at,
    });
    let loaded = handler.load(&sku()).await.unwrap();
    assert_eq!(loaded.state.on_hand, 12);
    assert_eq!(Some(loaded.head_hash()), events[1].hash);
    assert!(snapshots.load(&sku().stream()).await.unwrap().is_none());
}
