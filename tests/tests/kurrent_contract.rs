//! The event store contract over the EventStoreDB/KurrentDB adapter, through the real
//! `kurrentdb` client, against the in-memory protocol double: one fresh double per case, once
//! answering as a current server and once as a 20.x server (stream reads without positions).

use ledger_kurrent::{KurrentOptions, KurrentStore};
use ledger_kurrent_double::{EventStoreDouble, ServerGeneration};

/// Stream-name prefix of the contract suite's streams (`contract-<label>-<id>`): the adapter's
/// `$all` filter must let them through and keep everything else out.
const CONTRACT_STREAM_PREFIX: &str = "contract-";

/// A double starts in milliseconds; this only bounds a broken run.
const CONNECT_TIMEOUT_MS: u64 = 10_000;

async fn store_over_a_double() -> (KurrentStore, EventStoreDouble) {
    store_over(ServerGeneration::Current).await
}

async fn store_over_an_old_double() -> (KurrentStore, EventStoreDouble) {
    store_over(ServerGeneration::NoStreamReadPositions).await
}

async fn store_over(generation: ServerGeneration) -> (KurrentStore, EventStoreDouble) {
    let double = EventStoreDouble::start().expect("the double starts");
    double.answer_as(generation);
    let options = KurrentOptions {
        stream_prefix: CONTRACT_STREAM_PREFIX.to_owned(),
        connect_timeout_ms: CONNECT_TIMEOUT_MS,
        ..KurrentOptions::default()
    };
    let store = KurrentStore::connect(&double.url(), options)
        .await
        .expect("the adapter connects to the double");
    (store, double)
}

ledger_tests::event_store_contract!(kurrent_double, store_over_a_double);
ledger_tests::event_store_contract!(kurrent_double_20, store_over_an_old_double);
