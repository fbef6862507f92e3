//! The Postgres store when its connection fails at the worst moments, against a real server
//! behind a TCP proxy that misbehaves on cue:
//! - the connection is lost after the `COMMIT` was sent: the store looks the events up on
//!   another connection and answers "written" (not an error a client would retry unkeyed);
//! - the `COMMIT` never arrives: the store answers "not written", and the stream is untouched;
//! - the link stalls: an append fails within the statement timeout plus the slack, and the
//!   store works again once the link is back;
//! - committers panic: they are restarted, later appends succeed, and the write path's health
//!   says what happened;
//! - appends commit durably even on a server whose default is `synchronous_commit = off`.

use ledger_application::store::{EventStore, ExpectedVersion, StoreError};
use ledger_postgres::{Database, PostgresStore, StoreSettings, DEADLINE_SLACK_MS};
use ledger_tests::contract::events;
use ledger_tests::postgres::TestDatabase;
use ledger_tests::proxy::TcpProxy;
use std::time::{Duration, Instant};

const STATEMENT_TIMEOUT_MS: u64 = 1_000;

async fn store_through(proxy: &TcpProxy, database: &TestDatabase) -> PostgresStore {
    let pool = Database::from_config(database.config_through(proxy), 4).expect("a pool");
    PostgresStore::open_with(
        pool,
        StoreSettings {
            statement_timeout: Duration::from_millis(STATEMENT_TIMEOUT_MS),
            read_pool_size: 4,
        },
    )
    .await
    .expect("the store opens through the proxy")
}

fn stream(label: &str) -> String {
    format!("fault-{label}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_looked_up_and_reported_written() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.upstream()).await;
    let store = store_through(&proxy, &database).await;
    let stream = stream("lost-answer");
    store
        .append(&stream, ExpectedVersion::NoStream, events(1))
        .await
        .expect("a first append");

    proxy.cut_after_next_commit();
    let result = store
        .append(&stream, ExpectedVersion::Exact(0), events(2))
        .await
        .expect("the commit landed, so the append is reported written");
    assert!(!proxy.commit_fault_pending(), "the fault fired");
    assert_eq!(result.version, 2);
    assert!(!result.deduplicated);
    let stored = store.read_stream(&stream, 0, 10).await.unwrap();
    assert_eq!(stored.len(), 3, "written once, not twice");
}

#[tokio::test]
async fn a_commit_that_never_arrives_is_reported_not_written() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.upstream()).await;
    let store = store_through(&proxy, &database).await;
    let stream = stream("dropped-commit");
    store
        .append(&stream, ExpectedVersion::NoStream, events(1))
        .await
        .expect("a first append");

    proxy.drop_next_commit();
    let result = store
        .append(&stream, ExpectedVersion::Exact(0), events(2))
        .await;
    assert!(!proxy.commit_fault_pending(), "the fault fired");
    match result {
        Err(StoreError::Unavailable { message, .. }) => {
            assert!(message.contains("did not land"), "{message}")
        }
        other => panic!("expected 'not written', got {other:?}"),
    }
    assert_eq!(store.read_stream(&stream, 0, 10).await.unwrap().len(), 1);
    // And the same append again simply works.
    store
        .append(&stream, ExpectedVersion::Exact(0), events(2))
        .await
        .expect("a retry of an append that did not land");
}

#[tokio::test]
async fn a_stalled_link_fails_appends_within_the_deadline_and_recovers() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.upstream()).await;
    let store = store_through(&proxy, &database).await;
    let stream = stream("stalled");
    store
        .append(&stream, ExpectedVersion::NoStream, events(1))
        .await
        .expect("a first append");

    proxy.stall(true);
    let started = Instant::now();
    let result = store.append(&stream, ExpectedVersion::Any, events(1)).await;
    let waited = started.elapsed();
    assert!(
        result.is_err(),
        "an append over a stalled link fails: {result:?}"
    );
    let bound = Duration::from_millis(STATEMENT_TIMEOUT_MS + DEADLINE_SLACK_MS + 1_500);
    assert!(
        waited < bound,
        "failed after {waited:?}, not within {bound:?}"
    );
    let started = Instant::now();
    let read = store.read_stream(&stream, 0, 10).await;
    assert!(read.is_err(), "a read over a stalled link fails too");
    assert!(started.elapsed() < bound);

    proxy.stall(false);
    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.append(&stream, ExpectedVersion::Any, events(1)).await {
            Ok(_) => break,
            Err(error) => {
                assert!(Instant::now() < deadline, "no recovery: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn panicking_committers_are_restarted_and_health_tells() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::open(database.database(4))
        .await
        .expect("the store opens");
    assert_eq!(store.write_path_health(), Ok(()));
    let stream = stream("panics");
    store.inject_committer_panics_for_tests(3);
    for _ in 0..3 {
        let result = store.append(&stream, ExpectedVersion::Any, events(1)).await;
        // The committer died before writing: the look-up finds nothing and says so.
        assert!(
            matches!(result, Err(StoreError::Unavailable { .. })),
            "{result:?}"
        );
    }
    let health = store.write_path_health();
    assert!(
        health.as_ref().is_err_and(|e| e.contains("panicked")),
        "{health:?}"
    );
    for _ in 0..(ledger_postgres::store::GROUP_COMMITTERS * 3) {
        store
            .append(&stream, ExpectedVersion::Any, events(1))
            .await
            .expect("appends work again after the restarts");
    }
    assert_eq!(
        store.read_stream(&stream, 0, 100).await.unwrap().len(),
        ledger_postgres::store::GROUP_COMMITTERS * 3
    );
}

#[tokio::test]
async fn appends_commit_durably_whatever_the_server_default() {
    let database = TestDatabase::create().await;
    let admin = database.database(1);
    admin
        .client()
        .await
        .unwrap()
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = off",
            database.name
        ))
        .await
        .unwrap();
    let store = PostgresStore::open(database.database(4))
        .await
        .expect("the store opens");
    assert_eq!(
        store.committer_setting("synchronous_commit").await.unwrap(),
        "on"
    );
    let plain = database.database(1);
    let row = plain
        .client()
        .await
        .unwrap()
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "off",
        "the database default is off"
    );
}
