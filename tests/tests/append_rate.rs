//! A measurement of the Postgres store's append path on its own (no HTTP, no decisions): many
//! concurrent single-event appends, each to a stream of its own, as uncontended reserves make
//! them. Run on demand to compare two versions of the store's statements, e.g.
//! `cargo test -p ledger-tests --test append_rate -- --ignored --nocapture`; it prints appends
//! per second of a few timed rounds.

use ledger_application::store::{EventStore, ExpectedVersion};
use ledger_domain::envelope::{Metadata, NewEvent};
use ledger_tests::postgres::postgres_store;
use std::sync::Arc;
use std::time::Instant;

/// Concurrent appenders, as many as the bench's load connections.
const APPENDERS: usize = 32;
/// Appends per appender per round.
const APPENDS_PER_APPENDER: usize = 250;
/// Rounds timed after one untimed warm-up round.
const ROUNDS: usize = 5;

fn event() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "StockReserved".to_owned(),
        schema_version: 2,
        data: serde_json::json!({ "reservation_id": "r-1", "quantity": 1, "location": "default" }),
        metadata: Metadata::default(),
        recorded_at: ledger_domain::chain::to_microseconds(chrono::Utc::now()),
        hash: ledger_domain::EventHash::GENESIS,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check; run on demand"]
async fn measure_append_throughput() {
    let (store, _database) = postgres_store().await;
    let store = Arc::new(store);
    let mut rates = Vec::new();
    for round in 0..=ROUNDS {
        let started = Instant::now();
        let tasks: Vec<_> = (0..APPENDERS)
            .map(|appender| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0..APPENDS_PER_APPENDER {
                        let stream = format!("sku-RATE-{round}-{appender}-{n}");
                        store
                            .append(&stream, ExpectedVersion::NoStream, vec![event()])
                            .await
                            .expect("append");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let rate = (APPENDERS * APPENDS_PER_APPENDER) as f64 / started.elapsed().as_secs_f64();
        if round > 0 {
            rates.push(rate);
        }
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "appends/s over {ROUNDS} rounds of {} single-event appends by {APPENDERS} appenders: \
         median {:.0}, min {:.0}, max {:.0}",
        APPENDERS * APPENDS_PER_APPENDER,
        rates[ROUNDS / 2],
        rates[0],
        rates[ROUNDS - 1]
    );
}
