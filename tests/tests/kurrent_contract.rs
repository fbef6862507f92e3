//! The event store contract over the EventStoreDB/KurrentDB adapter, through the real
//! `kurrentdb` client, against the in-memory protocol double: one fresh double per case, once
//! answering as a current server, once as a 20.x server (stream reads without positions), once
//! secured (credentials required, `$all` for permitted users only), and once in the real-server
//! mode: all of that at once, reached through a follower that answers "not leader".

use ledger_kurrent::{KurrentOptions, KurrentStore};
use ledger_kurrent_double::{EventStoreDouble, ServerGeneration, User};

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

async fn store_over_a_secure_double() -> (KurrentStore, EventStoreDouble) {
    let double = EventStoreDouble::start().expect("the double starts");
    double.require_credentials(vec![User {
        name: "ledger".to_owned(),
        password: "contract-secret".to_owned(),
        reads_all: true,
    }]);
    let url = format!(
        "esdb://ledger:contract-secret@{}?tls=false",
        double.address()
    );
    (connect(&url).await, double)
}

async fn store_over_a_real_server_mode_cluster(
) -> (KurrentStore, (EventStoreDouble, EventStoreDouble)) {
    let leader = EventStoreDouble::start().expect("the double starts");
    leader.answer_as(ServerGeneration::NoStreamReadPositions);
    leader.require_credentials(vec![User {
        name: "ledger".to_owned(),
        password: "contract-secret".to_owned(),
        reads_all: true,
    }]);
    let follower = leader.start_replica().expect("the follower starts");
    let url = format!(
        "esdb://ledger:contract-secret@{}?tls=false",
        follower.address()
    );
    (connect(&url).await, (leader, follower))
}

async fn store_over(generation: ServerGeneration) -> (KurrentStore, EventStoreDouble) {
    let double = EventStoreDouble::start().expect("the double starts");
    double.answer_as(generation);
    (connect(&double.url()).await, double)
}

async fn connect(url: &str) -> KurrentStore {
    let options = KurrentOptions {
        stream_prefix: CONTRACT_STREAM_PREFIX.to_owned(),
        connect_timeout_ms: CONNECT_TIMEOUT_MS,
        ..KurrentOptions::default()
    };
    KurrentStore::connect(url, options)
        .await
        .expect("the adapter connects to the double")
}

ledger_tests::event_store_contract!(kurrent_double, store_over_a_double);
ledger_tests::event_store_contract!(kurrent_double_20, store_over_an_old_double);
ledger_tests::event_store_contract!(kurrent_double_secure, store_over_a_secure_double);
ledger_tests::event_store_contract!(
    kurrent_double_real_server_mode,
    store_over_a_real_server_mode_cluster
);
