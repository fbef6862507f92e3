//! Two writers of one SKU, as two processes would have: the expected version keeps them honest.

mod support;

use ledger_application::command::{CommandContext, CommandError};
use ledger_application::handler::CommandHandler;
use ledger_application::store::memory::MemoryStore;
use ledger_domain::DomainError;
use std::sync::Arc;
use support::*;

// ---------------------------------------------------------------------------------------------
// Two writers of one SKU (two processes): the expected version keeps them honest
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_of_one_sku_never_oversell_and_see_each_others_events() {
    use ledger_application::writer::SkuWriters;
    const STOCK: u64 = 200;
    const RESERVES: usize = 1_000;
    let store = Arc::new(MemoryStore::new());
    let first = SkuWriters::new(CommandHandler::new(store.clone()));
    let second = SkuWriters::new(CommandHandler::new(store.clone()));

    // The first writer caches the SKU while it has no stock; the second replenishes. A reserve
    // through the first must not be refused on its stale cache.
    first
        .execute(&sku(), replenish(1), CommandContext::default())
        .await
        .unwrap();
    first
        .execute(&sku(), reserve("warm-up", 1), CommandContext::default())
        .await
        .unwrap();
    second
        .execute(&sku(), replenish(STOCK), CommandContext::default())
        .await
        .unwrap();
    assert_eq!(first.current(&sku()).await.unwrap().available, STOCK);

    let mut tasks = Vec::new();
    for index in 0..RESERVES {
        let writers = if index % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            // A client retries a "too much contention" answer, as it would a 503.
            loop {
                let answer = writers
                    .execute(
                        &sku(),
                        reserve(&format!("hold-{index}"), 1),
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
            Ok(outcome) => {
                assert!(!outcome.deduplicated);
                reserved += 1;
            }
            Err(CommandError::Rejected(DomainError::InsufficientStock { .. })) => {}
            Err(other) => panic!("unexpected answer: {other}"),
        }
    }
    assert_eq!(reserved, STOCK);
    let replayed = CommandHandler::new(store.clone())
        .replay(&sku())
        .await
        .unwrap();
    assert_eq!(replayed.state.reserved, STOCK + 1);
    assert_eq!(replayed.state.available(), 0);
    replayed.state.check_invariants().unwrap();
    assert_eq!(
        first.current(&sku()).await.unwrap(),
        replayed.state.summary()
    );
    assert_eq!(
        second.current(&sku()).await.unwrap(),
        replayed.state.summary()
    );
}
