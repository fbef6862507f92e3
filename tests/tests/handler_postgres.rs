//! The command handler against real PostgreSQL: many writers racing for the same SKU.

use ledger_application::command::{CommandContext, CommandError};
use ledger_application::handler::CommandHandler;
use ledger_application::store::EventStore;
use ledger_domain::{
    DomainError, Quantity, ReplenishStock, ReservationId, ReserveStock, Sku, SkuCommand,
};
use ledger_tests::postgres::postgres_store;
use std::sync::Arc;

fn reserve(id: &str, quantity: u64) -> SkuCommand {
    SkuCommand::Reserve(ReserveStock {
        reservation_id: ReservationId::parse(id).unwrap(),
        order_id: None,
        quantity: Quantity::new(quantity).unwrap(),
        ttl_seconds: None,
        allocation: ledger_domain::Allocation::default(),
    })
}

fn replenish(quantity: u64) -> SkuCommand {
    SkuCommand::Replenish(ReplenishStock {
        quantity: Quantity::new(quantity).unwrap(),
        reference: None,
        location: ledger_domain::LocationId::default_location(),
    })
}

/// Run `tasks` concurrent reserves of `each` units against a SKU holding `stock`, each task
/// retrying as a client would while the handler reports contention. Returns how many succeeded.
async fn race_for_stock(stock: u64, tasks: u64, each: u64) -> (u64, u64) {
    let (store, _database) = postgres_store().await;
    let handler = CommandHandler::new(Arc::new(store));
    let sku = Sku::parse("RACE-1").unwrap();
    let context = CommandContext::default();
    handler
        .execute(&sku, &replenish(stock), &context)
        .await
        .unwrap();

    let attempts = (0..tasks).map(|n| {
        let handler = handler.clone();
        let sku = sku.clone();
        tokio::spawn(async move {
            let command = reserve(&format!("res-{n}"), each);
            loop {
                match handler
                    .execute(&sku, &command, &CommandContext::default())
                    .await
                {
                    Err(CommandError::ContentionRetriesExhausted { .. }) => continue,
                    other => return other,
                }
            }
        })
    });
    let results = futures::future::join_all(attempts).await;
    let mut reserved = 0;
    let mut refused = 0;
    for result in results {
        match result.expect("task panicked") {
            Ok(outcome) => {
                assert!(!outcome.deduplicated);
                reserved += 1;
            }
            Err(CommandError::Rejected(DomainError::InsufficientStock {
                requested,
                available,
                ..
            })) => {
                assert_eq!(requested, each);
                assert!(available < each, "refused while {available} were available");
                refused += 1;
            }
            Err(other) => panic!("unexpected outcome: {other}"),
        }
    }
    let state = handler.load(&sku).await.unwrap().state;
    assert_eq!(
        state.reserved,
        reserved * each,
        "the stream disagrees with the answers"
    );
    assert_eq!(state.on_hand, stock);
    assert_eq!(
        handler
            .store()
            .read_stream(&sku.stream(), 0, 1000)
            .await
            .unwrap()
            .len() as u64,
        1 + reserved,
        "one replenishment plus one event per successful reserve"
    );
    (reserved, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_reserving_the_last_units_reserve_exactly_the_stock() {
    let (reserved, refused) = race_for_stock(10, 48, 1).await;
    assert_eq!((reserved, refused), (10, 38));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reserves_larger_than_one_unit_never_oversell() {
    // 10 units, 3 per reserve: three succeed and one unit stays available.
    let (reserved, refused) = race_for_stock(10, 24, 3).await;
    assert_eq!((reserved, refused), (3, 21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_command_sent_twice_at_once_with_one_idempotency_key_is_applied_once() {
    let (store, _database) = postgres_store().await;
    let handler = CommandHandler::new(Arc::new(store));
    let sku = Sku::parse("TWICE-1").unwrap();
    let context = CommandContext {
        idempotency_key: Some("delivery-7781".into()),
        ..CommandContext::default()
    };
    let command = replenish(5);
    let (first, second) = tokio::join!(
        handler.execute(&sku, &command, &context),
        handler.execute(&sku, &command, &context)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        [first.deduplicated, second.deduplicated]
            .iter()
            .filter(|d| **d)
            .count(),
        1,
        "exactly one of the two is the recognised retry"
    );
    assert_eq!(first.events, second.events, "both report the same event");
    let state = handler.load(&sku).await.unwrap().state;
    assert_eq!(state.on_hand, 5);
    assert_eq!(state.version, Some(0));
}
