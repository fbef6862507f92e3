//! Group commit and the single writer against real PostgreSQL.
//!
//! Concurrent appends must share transactions (several appends answered with the same
//! transaction id) while each keeps its own outcome: a conflict or a retried append in a batch
//! does not disturb the others. Two single writers on one SKU (as two API processes would have)
//! must never oversell.

use ledger_application::command::{CommandContext, CommandError};
use ledger_application::handler::CommandHandler;
use ledger_application::store::{EventStore, ExpectedVersion, StoreError};
use ledger_application::writer::SkuWriters;
use ledger_domain::envelope::{Metadata, NewEvent};
use ledger_domain::{
    DomainError, Quantity, ReplenishStock, ReservationId, ReserveStock, Sku, SkuCommand,
};
use ledger_tests::postgres::postgres_store;
use std::collections::HashSet;
use std::sync::Arc;

fn event(n: usize) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "StockReplenished".to_owned(),
        schema_version: 1,
        data: serde_json::json!({ "quantity": n + 1, "reference": null }),
        metadata: Metadata::default(),
        recorded_at: ledger_domain::chain::to_microseconds(chrono::Utc::now()),
        hash: ledger_domain::EventHash::GENESIS,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_commits_and_keep_their_own_outcomes() {
    const STREAMS: usize = 400;
    let (store, _database) = postgres_store().await;
    let store = Arc::new(store);

    // Each stream gets two appends at once that both expect a new stream: exactly one wins,
    // the other is told the stream's actual version, whether or not they met in one batch.
    let mut tasks = Vec::new();
    for n in 0..STREAMS {
        for attempt in 0..2 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let stream = format!("sku-GC-{n}");
                let result = store
                    .append(&stream, ExpectedVersion::NoStream, vec![event(attempt)])
                    .await;
                (n, result)
            }));
        }
    }
    let mut winners = vec![0; STREAMS];
    let mut transactions = HashSet::new();
    for task in tasks {
        let (n, result) = task.await.unwrap();
        match result {
            Ok(appended) => {
                assert_eq!(appended.version, 0);
                assert!(!appended.deduplicated);
                winners[n] += 1;
                transactions.insert(appended.position.commit);
            }
            Err(StoreError::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, Some(0)),
            Err(other) => panic!("unexpected append failure: {other}"),
        }
    }
    assert!(winners.iter().all(|&w| w == 1), "one winner per stream");
    assert!(
        transactions.len() < STREAMS,
        "{STREAMS} appends committed in {} transactions: no append shared a commit",
        transactions.len()
    );

    // A retried append (same event ids) in the middle of new ones reports its original result.
    let stream = "sku-GC-RETRY";
    let original = vec![event(0), event(1)];
    let first = store
        .append(stream, ExpectedVersion::NoStream, original.clone())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..50 {
        let store = store.clone();
        let original = original.clone();
        tasks.push(tokio::spawn(async move {
            if n == 25 {
                store
                    .append(stream, ExpectedVersion::NoStream, original)
                    .await
            } else {
                store
                    .append(
                        &format!("sku-GC-OTHER-{n}"),
                        ExpectedVersion::Any,
                        vec![event(n)],
                    )
                    .await
            }
        }));
    }
    for (n, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap().unwrap();
        if n == 25 {
            assert!(result.deduplicated);
            assert_eq!(result.version, first.version);
            assert_eq!(result.position, first.position);
        } else {
            assert_eq!(result.version, 0);
        }
    }
    assert_eq!(store.read_stream(stream, 0, 10).await.unwrap().len(), 2);
}

fn reserve(id: &str) -> SkuCommand {
    SkuCommand::Reserve(ReserveStock {
        reservation_id: ReservationId::parse(id).unwrap(),
        order_id: None,
        quantity: Quantity::new(1).unwrap(),
        ttl_seconds: None,
        allocation: ledger_domain::Allocation::default(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_single_writers_on_one_sku_reserve_exactly_the_stock() {
    const STOCK: u64 = 300;
    const RESERVES: usize = 1_500;
    let (store, _database) = postgres_store().await;
    let store = Arc::new(store);
    let first = SkuWriters::new(CommandHandler::new(store.clone()));
    let second = SkuWriters::new(CommandHandler::new(store.clone()));
    let sku = Sku::parse("HOT-1").unwrap();
    first
        .execute(
            &sku,
            SkuCommand::Replenish(ReplenishStock {
                quantity: Quantity::new(STOCK).unwrap(),
                reference: None,
                location: ledger_domain::LocationId::default_location(),
            }),
            CommandContext::default(),
        )
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for n in 0..RESERVES {
        let writers = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let sku = sku.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let answer = writers
                    .execute(
                        &sku,
                        reserve(&format!("hold-{n}")),
                        CommandContext::default(),
                    )
                    .await;
                if !matches!(answer, Err(CommandError::ContentionRetriesExhausted { .. })) {
                    return answer;
                }
            }
        }));
    }
    let mut reserved = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => reserved += 1,
            Err(CommandError::Rejected(DomainError::InsufficientStock { .. })) => {}
            Err(other) => panic!("unexpected answer: {other}"),
        }
    }
    assert_eq!(reserved, STOCK);
    let replayed = CommandHandler::new(store.clone())
        .replay(&sku)
        .await
        .unwrap();
    assert_eq!(replayed.state.reserved, STOCK);
    assert_eq!(replayed.state.version, Some(STOCK));
    replayed.state.check_invariants().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_with_one_answer_key_write_once_and_the_others_get_that_answer() {
    // The same key sent to many SKUs at once (a client reusing a key): whether the appends meet
    // in one group commit (a unique violation, then one by one) or not, exactly one writes its
    // events and answer, and every other is told the answer kept for the key.
    use ledger_application::store::{AnswerKey, Appended, NewAnswer};
    const APPENDS: usize = 24;
    let (store, _database) = postgres_store().await;
    let store = Arc::new(store);
    let key = AnswerKey {
        scope: "principal:racer".into(),
        key: "one-key".into(),
    };
    let mut tasks = Vec::new();
    for n in 0..APPENDS {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let answer = NewAnswer {
                key,
                fingerprint: format!("fingerprint-{n}"),
                answer: serde_json::json!({ "done": { "position": null, "by": n } }),
                positioned: true,
            };
            store
                .append_answered(
                    &format!("sku-KEY-RACE-{n}"),
                    ExpectedVersion::NoStream,
                    vec![event(n)],
                    vec![answer],
                )
                .await
                .unwrap()
        }));
    }
    let mut written = Vec::new();
    let mut told = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Appended::Written(Some(result)) => written.push(result),
            Appended::AnsweredBefore(found) => told.push(found),
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(written.len(), 1, "exactly one append wrote: {written:?}");
    assert_eq!(told.len(), APPENDS - 1);
    let kept = store
        .kept_answers(std::slice::from_ref(&key))
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    for found in told {
        assert_eq!(found, kept, "every other append is told the kept answer");
    }
    let streams_written = (0..APPENDS)
        .map(|n| format!("sku-KEY-RACE-{n}"))
        .collect::<Vec<_>>();
    let mut events = 0;
    for stream in streams_written {
        events += store.read_stream(&stream, 0, 10).await.unwrap().len();
    }
    assert_eq!(events, 1, "only the winner's event is stored");
}
