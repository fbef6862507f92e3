//! The hash chain on a real PostgreSQL: what the writer seals at append is what a replay
//! recomputes, through single commands, batches of the per-SKU writer and loads from snapshots;
//! and the migration that introduced the chain computes it once for the events stored before.

use async_trait::async_trait;
use futures::future::join_all;
use ledger_application::chain::{link_recorded, ChainWalk};
use ledger_application::command::CommandContext;
use ledger_application::handler::CommandHandler;
use ledger_application::store::{
    AnswerKey, AppendResult, Appended, EventStore, EventStream, ExpectedVersion, NewAnswer,
    StoreError, StoredAnswer, READ_EVENTS_MAX,
};
use ledger_application::writer::SkuWriters;
use ledger_domain::envelope::{NewEvent, Position, RecordedEvent};
use ledger_domain::{EventHash, SkuCommand};
use ledger_postgres::store::MIGRATIONS;
use ledger_postgres::{PostgresSnapshots, PostgresStore};
use ledger_tests::ledger::{
    adjust, confirm, release, replenish, reserve, set_reorder_point, sku_of,
};
use ledger_tests::postgres::{TestDatabase, TEST_POOL_SIZE};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A store that remembers the hash of every event it wrote, as the writer sealed it: what the
/// chain says at append time, to compare with what a replay recomputes.
struct Recording<S> {
    inner: S,
    sealed: Mutex<HashMap<uuid::Uuid, EventHash>>,
}

impl<S> Recording<S> {
    fn remember(&self, events: &[NewEvent], written: Option<&AppendResult>) {
        if written.is_some_and(|result| !result.deduplicated) {
            let mut sealed = self.sealed.lock().unwrap();
            for event in events {
                sealed.insert(event.event_id, event.hash);
            }
        }
    }
}

#[async_trait]
impl<S: EventStore> EventStore for Recording<S> {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let result = self.inner.append(stream, expected, events.clone()).await;
        self.remember(&events, result.as_ref().ok());
        result
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner
            .read_stream(stream, from_version, max_count)
            .await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max_count).await
    }

    async fn append_answered(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        answers: Vec<NewAnswer>,
    ) -> Result<Appended, StoreError> {
        let result = self
            .inner
            .append_answered(stream, expected, events.clone(), answers)
            .await;
        if let Ok(Appended::Written(written)) = &result {
            self.remember(&events, written.as_ref());
        }
        result
    }

    async fn kept_answers(&self, keys: &[AnswerKey]) -> Result<Vec<StoredAnswer>, StoreError> {
        self.inner.kept_answers(keys).await
    }

    async fn forget_answers(
        &self,
        kept_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        self.inner.forget_answers(kept_before).await
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        self.inner.head_position().await
    }

    fn subscribe_all(&self, after: Option<Position>) -> EventStream {
        self.inner.subscribe_all(after)
    }
}

/// What one step of a random history does.
#[derive(Debug, Clone)]
enum Step {
    /// One command through the handler (a batch of one, decided on a fresh load).
    Single(SkuCommand, Option<&'static str>),
    /// Commands sent to the SKU's writer at once, so that they are decided and sealed as one
    /// batch (or a few).
    Together(Vec<(SkuCommand, Option<&'static str>)>),
}

const RESERVATION_IDS: &[&str] = &["r-1", "r-2", "r-3", "r-4"];
const KEYS: &[&str] = &["k-1", "k-2", "k-3"];

fn command() -> impl Strategy<Value = SkuCommand> {
    let id = proptest::sample::select(RESERVATION_IDS);
    prop_oneof![
        3 => (1u64..=9).prop_map(replenish),
        4 => (id.clone(), 1u64..=4).prop_map(|(id, quantity)| reserve(id, quantity, None)),
        2 => id.clone().prop_map(release),
        2 => id.prop_map(confirm),
        1 => (-3i64..=3).prop_filter("non-zero", |d| *d != 0).prop_map(adjust),
        1 => (0i64..=5).prop_map(set_reorder_point),
    ]
}

fn keyed() -> impl Strategy<Value = (SkuCommand, Option<&'static str>)> {
    (
        command(),
        proptest::option::weighted(0.25, proptest::sample::select(KEYS)),
    )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => keyed().prop_map(|(command, key)| Step::Single(command, key)),
        1 => proptest::collection::vec(keyed(), 2..8).prop_map(Step::Together),
    ]
}

fn context(key: Option<&str>) -> CommandContext {
    CommandContext {
        principal: Some("chain-test".into()),
        idempotency_key: key.map(str::to_owned),
        ..CommandContext::default()
    }
}

type Store = Recording<PostgresStore>;

async fn run_history(
    store: Arc<Store>,
    snapshots: Arc<PostgresSnapshots>,
    steps: Vec<Step>,
) -> Result<(), TestCaseError> {
    let sku = sku_of(&format!("CHAIN-{}", uuid::Uuid::new_v4().simple()));
    let handler = CommandHandler::new(store.clone())
        .with_snapshots(snapshots)
        .with_snapshot_interval(3);
    let writers = SkuWriters::new(handler.clone());
    for step in steps {
        match step {
            Step::Single(command, key) => {
                let _ = handler.execute(&sku, &command, &context(key)).await;
            }
            Step::Together(commands) => {
                join_all(
                    commands
                        .into_iter()
                        .map(|(command, key)| writers.execute(&sku, command, context(key))),
                )
                .await;
            }
        }
    }
    let events = store
        .read_stream(&sku.stream(), 0, READ_EVENTS_MAX)
        .await
        .unwrap();
    let sealed = store.sealed.lock().unwrap().clone();
    let mut walk = ChainWalk::new(&sku.stream());
    for event in &events {
        prop_assert!(walk.step(event).is_ok(), "{:?}", walk.step(event));
        prop_assert_eq!(
            Some(sealed[&event.event_id]),
            event.hash,
            "version {}",
            event.version
        );
    }
    prop_assert_eq!(walk.events_without_hash, 0);
    let replayed = handler.replay(&sku).await.unwrap();
    prop_assert_eq!(replayed.head_hash(), walk.head());
    // A load that starts from a snapshot continues the chain from the snapshot's head.
    let loaded = handler.load(&sku).await.unwrap();
    prop_assert_eq!(loaded.head_hash(), walk.head());
    Ok(())
}

#[test]
fn the_hash_recomputed_after_replay_equals_the_hash_sealed_at_append() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (store, snapshots, _database) = runtime.block_on(async {
        let database = TestDatabase::create().await;
        let store = PostgresStore::open(database.database(TEST_POOL_SIZE))
            .await
            .unwrap();
        let snapshots = PostgresSnapshots::open(database.database(TEST_POOL_SIZE))
            .await
            .unwrap();
        let store = Arc::new(Recording {
            inner: store,
            sealed: Mutex::default(),
        });
        (store, Arc::new(snapshots), database)
    });
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(step(), 1..16);
    runner
        .run(&strategy, |steps| {
            runtime.block_on(run_history(store.clone(), snapshots.clone(), steps))
        })
        .unwrap();
}

/// Events written before the chain existed (as the store wrote them then: no hash) get their
/// hashes from the migration that adds the chain, once, and new appends continue those chains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_computes_the_chain_of_the_events_stored_before_it() {
    let database = TestDatabase::create().await;
    let pool = database.database(TEST_POOL_SIZE);
    {
        let mut client = pool.client().await.unwrap();
        let before_the_chain = &MIGRATIONS[..3];
        assert_eq!(before_the_chain.last().unwrap().version, 3);
        ledger_postgres::migrate::migrate(&mut client, "event_store", before_the_chain)
            .await
            .unwrap();
        // Two streams, written in interleaved transactions as the old store wrote them.
        let written_at = chrono::DateTime::parse_from_rfc3339("2029-12-31T23:59:59.123456Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        for (sequence, (transaction, stream, version)) in [
            (100i64, "sku-OLD-1", 0i64),
            (100, "sku-OLD-2", 0),
            (101, "sku-OLD-1", 1),
            (102, "sku-OLD-1", 2),
            (102, "sku-OLD-2", 1),
        ]
        .into_iter()
        .enumerate()
        {
            client
                .execute(
                    "INSERT INTO event_store.events (transaction_id, sequence, event_id, stream, \
                     version, event_type, schema_version, data, metadata, recorded_at) \
                     VALUES ($1, $2, $3, $4, $5, 'StockReplenished', 1, $6, $7, $8)",
                    &[
                        &transaction,
                        &(sequence as i64 + 1),
                        &uuid::Uuid::new_v4(),
                        &stream,
                        &version,
                        &serde_json::json!({"quantity": version + 1, "reference": "po \"7\""}),
                        &serde_json::json!({"principal": "clerk", "correlation_id": "c"}),
                        &(written_at + chrono::Duration::seconds(version)),
                    ],
                )
                .await
                .unwrap();
            client
                .execute(
                    "INSERT INTO event_store.streams (stream, version) VALUES ($1, $2) \
                     ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
                    &[&stream, &version],
                )
                .await
                .unwrap();
        }
    }
    let store = Arc::new(PostgresStore::open(pool.clone()).await.unwrap());
    let handler = CommandHandler::new(store.clone());
    for (stream, count) in [("sku-OLD-1", 3), ("sku-OLD-2", 2)] {
        let events = store.read_stream(stream, 0, 100).await.unwrap();
        assert_eq!(events.len(), count);
        let mut previous = EventHash::GENESIS;
        for event in &events {
            let hash = event.hash.expect("the migration gave every event a hash");
            assert_eq!(
                hash,
                link_recorded(&previous, event),
                "{stream} {}",
                event.version
            );
            previous = hash;
        }
    }
    // New events chain onto the migrated heads.
    let sku = sku_of("OLD-1");
    handler
        .execute(&sku, &replenish(4), &context(None))
        .await
        .unwrap();
    let events = store.read_stream("sku-OLD-1", 0, 100).await.unwrap();
    let mut walk = ChainWalk::new("sku-OLD-1");
    for event in &events {
        walk.step(event).unwrap_or_else(|broken| panic!("{broken}"));
    }
    assert_eq!(walk.events, 4);
    // Once: opening the store again changes no hash.
    let reopened = PostgresStore::open(pool).await.unwrap();
    assert_eq!(
        reopened.read_stream("sku-OLD-1", 0, 100).await.unwrap(),
        events
    );
}
