//! Goal: prove that a reader following the Postgres store's log sees every event exactly once,
//! in a stable order, even though appends commit out of sequence order.
//!
//! Many appenders hold their transactions open for random times before committing, so sequence
//! numbers commit out of order. A follower (the store's subscription) and a checkpointing reader
//! that restarts from its checkpoint run meanwhile. As a control, a naive reader that follows
//! `sequence > last seen` runs too: it must miss events in this very run, which shows that the
//! test provokes the hazard it claims our ordering avoids.

use futures::StreamExt;
use ledger_application::store::{EventStore, ExpectedVersion};
use ledger_domain::envelope::Position;
use ledger_tests::contract::event;
use ledger_tests::postgres::{postgres_store, TEST_POOL_SIZE};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Concurrent appenders: more than the machine's cores, fewer than the pool's connections.
const APPENDERS: u64 = 16;
const APPENDS_PER_APPENDER: u64 = 25;
/// Longest random delay between an append and its commit.
const COMMIT_DELAY_MAX_MS: u64 = 30;
const DEADLINE_MS: u64 = 120_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_sees_every_event_once_in_a_stable_order_despite_late_commits() {
    assert!(APPENDERS as usize + 4 <= TEST_POOL_SIZE);
    let (store, database) = postgres_store().await;
    let store = store
        .with_commit_delay_for_tests(Duration::from_millis(COMMIT_DELAY_MAX_MS))
        .expect("the store's pools build");
    let total = APPENDERS * APPENDS_PER_APPENDER;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(DEADLINE_MS);

    let (done_sender, done) = watch::channel(false);
    let naive = tokio::spawn(naive_sequence_reader(database.config.clone(), done.clone()));
    let checkpointing = tokio::spawn(checkpointing_reader(store.clone(), total, deadline));
    let follower = {
        let mut subscription = store.subscribe_all(None);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while (seen.len() as u64) < total {
                let next = tokio::time::timeout_at(deadline, subscription.next())
                    .await
                    .expect("the follower did not see every event before the deadline");
                seen.push(next.expect("subscriptions never end").expect("read failed"));
            }
            seen
        })
    };

    let appenders: Vec<_> = (0..APPENDERS)
        .map(|appender| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..APPENDS_PER_APPENDER {
                    // Half the appends go to a stream shared by all appenders, so they also
                    // queue on that stream's lock; the rest to the appender's own stream.
                    let stream = if n % 2 == 0 {
                        "order-shared".to_owned()
                    } else {
                        format!("order-{appender}")
                    };
                    store
                        .append(&stream, ExpectedVersion::Any, vec![event("Ordered", n)])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.await.expect("appender panicked");
    }

    let followed = follower.await.expect("follower panicked");
    let checkpointed = checkpointing.await.expect("checkpointing reader panicked");
    done_sender.send(true).expect("naive reader is listening");
    let naive_seen = naive.await.expect("naive reader panicked");

    let ids: Vec<Uuid> = followed.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len() as u64, total);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len() as u64,
        total,
        "an event was delivered twice"
    );
    assert!(
        followed.windows(2).all(|w| w[0].position < w[1].position),
        "positions must strictly increase along the log"
    );
    // Stable: reading the settled log from the start gives the same order the follower saw.
    let mut settled = Vec::new();
    let mut after = None;
    loop {
        let page = store.read_all(after, 100).await.expect("read_all");
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        settled.extend(page.into_iter().map(|e| e.event_id));
    }
    assert_eq!(settled, ids, "the log's order changed after the fact");
    assert_eq!(
        checkpointed, ids,
        "the restarting reader saw a different log"
    );
    // Per stream, the log lists versions in order: the shared stream, written by every
    // appender at once, is the demanding case.
    let mut streams: Vec<&str> = followed.iter().map(|e| e.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    for stream in streams {
        let versions: Vec<u64> = followed
            .iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.version)
            .collect();
        assert_eq!(
            versions,
            (0..versions.len() as u64).collect::<Vec<_>>(),
            "the log lists {stream}'s versions out of order"
        );
    }

    let missed = total - naive_seen;
    assert!(
        missed > 0,
        "the control reader following raw sequence numbers missed nothing, so this run did not \
         provoke out-of-order commits; the test proves nothing until it does"
    );
    println!("a naive sequence-order reader missed {missed} of {total} events; ours missed none");
}

/// Reads pages from its checkpoint and, every few pages, starts over from the checkpoint as a
/// restarted projector would.
async fn checkpointing_reader<S: EventStore>(
    store: S,
    total: u64,
    deadline: tokio::time::Instant,
) -> Vec<Uuid> {
    let mut seen = Vec::new();
    let mut checkpoint: Option<Position> = None;
    let mut pages = 0u64;
    while (seen.len() as u64) < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpointing reader timed out"
        );
        let page = store.read_all(checkpoint, 7).await.expect("read_all");
        if page.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        pages += 1;
        if pages % 5 == 0 {
            // A restart: forget the page just read, resume from the stored checkpoint.
            continue;
        }
        checkpoint = Some(page.last().expect("non-empty").position);
        seen.extend(page.into_iter().map(|e| e.event_id));
    }
    seen
}

/// The control: follows `sequence > last seen` as a naive projector would, until told to stop.
/// Returns how many distinct events it saw.
async fn naive_sequence_reader(
    config: tokio_postgres::Config,
    mut done: watch::Receiver<bool>,
) -> u64 {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let client = Arc::new(client);
    let mut last = 0i64;
    let mut seen = 0u64;
    loop {
        let rows = client
            .query(
                "SELECT sequence FROM event_store.events WHERE sequence > $1 ORDER BY sequence",
                &[&last],
            )
            .await
            .expect("naive read");
        seen += rows.len() as u64;
        if let Some(row) = rows.last() {
            last = row.get(0);
        }
        if *done.borrow_and_update() {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
