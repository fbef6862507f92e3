//! A log that survives a restore, on real PostgreSQL clusters and the real `ledger-replay`.
//!
//! A live store is dumped with `pg_dump` and restored with `pg_restore` into a fresh private
//! cluster whose transaction counter lies below the stored transaction ids (the test checks
//! that first: by the old visibility rule the restored log would read as empty). The store,
//! projectors and a subscription then continue on the restored database: old and new events
//! form one log in increasing positions, projectors and the subscription miss nothing, history
//! crosses the restore, and `verify` finds the read models equal to the fold of the log. Then
//! the API starts on the restored database and a reserve over HTTP lands in its read models.
//!
//! Also: a database that moves under a running store (its writers notice at their next append)
//! and a log written before epochs existed (it keeps every position).

use clap::Parser;
use futures::StreamExt;
use ledger_application::store::READ_EVENTS_MAX;
use ledger_application::EventStore;
use ledger_domain::{Position, RecordedEvent};
use ledger_postgres::cluster::{ClusterOptions, PrivateCluster};
use ledger_postgres::store::MIGRATIONS;
use ledger_postgres::PostgresStore;
use ledger_projections::ProjectorOptions;
use ledger_tests::ledger::*;
use ledger_tests::postgres::{TestDatabase, TEST_POOL_SIZE};
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const EXIT_OK: i32 = 0;

/// Connections each private cluster of this test accepts.
const CLUSTER_CONNECTIONS_MAX: u32 = 80;

/// Transactions the first cluster runs before the ledger writes, so that its ids lie well
/// above those of a fresh cluster even after a restore has used some.
const TRANSACTIONS_BEFORE_THE_LOG: i32 = 5_000;

/// The ledger's database in both clusters, as an operator would name it.
const DATABASE: &str = "ledger";

const SKUS: [&str; 3] = ["RESTORE-1", "RESTORE-2", "RESTORE-3"];

async fn private_cluster(role: &str) -> PrivateCluster {
    let folder = std::env::temp_dir().join(format!(
        "ledger-restore-{role}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let cluster = PrivateCluster::start(&ClusterOptions {
        folder,
        durable: false,
        max_connections: CLUSTER_CONNECTIONS_MAX,
    })
    .await
    .unwrap_or_else(|e| panic!("cannot start the {role} cluster: {e}"));
    cluster
        .remove_when_process_exits()
        .unwrap_or_else(|e| panic!("cannot arrange the {role} cluster's removal: {e}"));
    cluster
}

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the cluster");
    tokio::spawn(connection);
    client
}

/// Run `tool` (pg_dump, pg_restore) of the server's version against `cluster`'s socket as the
/// superuser, failing the test with its output when it fails. The tool is looked for beside
/// the real `initdb` (the folder found may hold links to a few server binaries only).
async fn run_tool(cluster: &PrivateCluster, tool: &str, arguments: &[&str]) {
    let binaries = PrivateCluster::find_binaries().expect("the server binaries");
    let program = std::fs::canonicalize(binaries.join("initdb"))
        .ok()
        .and_then(|initdb| Some(initdb.parent()?.join(tool)))
        .filter(|program| program.is_file())
        .unwrap_or_else(|| binaries.join(tool));
    let mut command = std::process::Command::new(program);
    command
        .arg("--host")
        .arg(cluster.socket_dir())
        .args(["--port", "5432", "--username", "postgres"])
        .args(arguments);
    let output = tokio::task::spawn_blocking(move || command.output().expect("the tool runs"))
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{tool} {arguments:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn replay(ledger: &TestLedger, arguments: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ledger-replay"));
    command
        .args(arguments)
        .env_remove("EVENTSTORE_URL")
        .env_remove("LEDGER_DATA_DIR")
        .env("DATABASE_URL", ledger.test_database.url());
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .unwrap()
}

fn json_of(output: &Output) -> Value {
    assert_eq!(
        output.status.code(),
        Some(EXIT_OK),
        "exit status; stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

/// `verify --all` passes: every chain holds and every read model equals the fold of the log.
async fn assert_verified(ledger: &TestLedger) {
    let report = json_of(&replay(ledger, &["verify", "--all", "--format", "json"]).await);
    assert_eq!(report["differences_total"], 0, "{report:#}");
}

/// The whole log as readers see it once they show every event committed so far (a reader shows
/// an event once every older transaction has ended, and projectors' transactions, or other
/// tests' on a shared cluster, hold that back for moments), checked to be in strictly
/// increasing positions.
async fn whole_log(store: &PostgresStore) -> Vec<RecordedEvent> {
    let newest = store
        .database()
        .pool()
        .get()
        .await
        .unwrap()
        .query_opt(
            "SELECT transaction_id, sequence FROM event_store.events \
             ORDER BY transaction_id DESC, sequence DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .map(|row| Position {
            commit: row.get::<_, i64>(0) as u64,
            prepare: row.get::<_, i64>(1) as u64,
        });
    wait_until("readers show every committed event", || async {
        store.head_position().await.unwrap() >= newest
    })
    .await;
    let mut events: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = events.last().map(|e| e.position);
        let page = store.read_all(after, READ_EVENTS_MAX).await.unwrap();
        if page.is_empty() {
            break;
        }
        events.extend(page);
    }
    assert!(
        events.windows(2).all(|w| w[0].position < w[1].position),
        "the log's positions increase"
    );
    events
}

async fn write_history(ledger: &TestLedger, round: u64) {
    for sku in SKUS {
        ledger.run(sku, replenish(100 + round)).await;
        ledger
            .run(sku, reserve(&format!("r-{round}-a"), 3, None))
            .await;
        ledger
            .run(sku, reserve(&format!("r-{round}-b"), 4, None))
            .await;
        ledger.run(sku, confirm(&format!("r-{round}-a"))).await;
        ledger.run(sku, release(&format!("r-{round}-b"))).await;
        ledger.run(sku, adjust(-2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dumped_store_restored_into_a_fresh_cluster_continues_with_nothing_skipped() {
    let scratch = std::env::temp_dir().join(format!(
        "ledger-restore-dump-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&scratch).unwrap();
    let dump = scratch.join("ledger.dump");
    let anchor = scratch.join("anchor.json");

    // The first cluster: its transaction counter well ahead, then a ledger with projectors.
    let first = private_cluster("first").await;
    {
        let admin = connect(&first.connection_config("postgres")).await;
        admin
            .batch_execute(
                "CREATE PROCEDURE use_transaction_ids(n integer) LANGUAGE plpgsql AS $$ \
                 BEGIN FOR i IN 1 .. n LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$",
            )
            .await
            .unwrap();
        // A statement of its own at the top level, so that the procedure may commit.
        admin
            .batch_execute(&format!(
                "CALL use_transaction_ids({TRANSACTIONS_BEFORE_THE_LOG})"
            ))
            .await
            .unwrap();
    }
    let before = {
        let ledger = TestLedger::on(TestDatabase::create_on(&first, DATABASE).await).await;
        let projectors = ledger.spawn(ProjectorOptions::default());
        write_history(&ledger, 1).await;
        ledger.wait_caught_up().await;
        json_of(&replay(&ledger, &["anchor", "--output", path(&anchor)]).await);
        // Dumped live: the store open and its projectors running.
        run_tool(
            &first,
            "pg_dump",
            &["--format=custom", "--file", path(&dump), DATABASE],
        )
        .await;
        projectors.stop().await;
        whole_log(&ledger.store).await
    };
    assert_eq!(before.len(), SKUS.len() * 6);
    let last_before = before.last().unwrap().position;

    // A fresh cluster, the dump restored into it.
    let second = private_cluster("second").await;
    let restored = TestDatabase::create_on(&second, DATABASE).await;
    run_tool(
        &second,
        "pg_restore",
        &["--exit-on-error", "--dbname", DATABASE, path(&dump)],
    )
    .await;

    // The hazard is real: the fresh cluster's counter lies below the stored ids, so by the
    // rule readers followed before epochs (transaction id below the oldest running one) the
    // restored log would read as empty, and new events would sort before the old ones.
    {
        let client = connect(&restored.config).await;
        let row = client
            .query_one(
                "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, \
                        (SELECT min(transaction_id) FROM event_store.events), \
                        (SELECT count(*) FROM event_store.events \
                          WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint)",
                &[],
            )
            .await
            .unwrap();
        let (next_id, lowest_stored, visible_by_the_old_rule): (i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2));
        assert!(
            next_id < lowest_stored,
            "the fresh cluster's next transaction id {next_id} lies below every stored id \
             (lowest {lowest_stored})"
        );
        assert_eq!(visible_by_the_old_rule, 0);
    }

    // The store opens on the restored database: it begins epoch 1 and shows the whole log.
    let ledger = TestLedger::on(restored).await;
    {
        let client = ledger.database.pool().get().await.unwrap();
        let rows = client
            .query(
                "SELECT epoch, position_offset, after_commit FROM event_store.epochs ORDER BY epoch",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            rows.len(),
            2,
            "epoch 0 from the first cluster, epoch 1 begun at open"
        );
        assert_eq!(rows[1].get::<_, i32>(0), 1);
        assert!(rows[1].get::<_, i64>(1) > 0);
        assert_eq!(
            rows[1].get::<_, Option<i64>>(2),
            Some(last_before.commit as i64)
        );
    }
    assert_eq!(whole_log(&ledger.store).await, before);
    assert_eq!(
        ledger.store.head_position().await.unwrap(),
        Some(last_before)
    );

    // A follower resumes from where it was, projectors from their restored checkpoints.
    let mut subscription = ledger.store.subscribe_all(Some(last_before));
    let projectors = ledger.spawn(ProjectorOptions::default());
    write_history(&ledger, 2).await;
    ledger.run("RESTORE-4", replenish(10)).await;
    let after = whole_log(&ledger.store).await;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the old log is unchanged"
    );
    let new = &after[before.len()..];
    assert_eq!(new.len(), SKUS.len() * 6 + 1);
    assert!(new[0].position > last_before);

    let mut followed = Vec::new();
    while followed.len() < new.len() {
        let event = tokio::time::timeout(
            Duration::from_millis(CATCH_UP_DEADLINE_MS),
            subscription.next(),
        )
        .await
        .expect("the follower sees the new events")
        .expect("subscriptions never end")
        .expect("read");
        followed.push(event);
    }
    assert_eq!(followed, new, "the follower saw every new event, in order");

    ledger.wait_caught_up().await;
    projectors.stop().await;

    // History crosses the restore: every version once, positions increasing.
    let history = json_of(&replay(&ledger, &["history", "RESTORE-1", "--format", "json"]).await);
    let entries = history["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 12);
    for (version, entry) in entries.iter().enumerate() {
        assert_eq!(entry["version"], version as u64);
    }
    let positions: Vec<Position> = entries
        .iter()
        .map(|entry| serde_json::from_value(entry["position"].clone()).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(history["state"]["on_hand"], 101 - 3 - 2 + 102 - 3 - 2);

    assert_verified(&ledger).await;
    // The anchor an auditor took on the first cluster still holds on the second.
    let report = json_of(
        &replay(
            &ledger,
            &[
                "verify",
                "--all",
                "--anchor",
                path(&anchor),
                "--format",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(report["differences_total"], 0, "{report:#}");

    // The API started on the restored database (its projectors in-process, real HTTP): a
    // reserve lands after every restored event and its read models show it.
    let config = ledger_api::config::Config::try_parse_from([
        "api",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &ledger.test_database.url(),
    ])
    .unwrap();
    let running = ledger_api::startup::start(config)
        .await
        .expect("the API starts on the restored database");
    let base = format!("http://{}", running.address);
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{base}/v1/skus/RESTORE-1/reservations"))
        .json(&serde_json::json!({"reservation_id": "after-restore", "quantity": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 201);
    let expected_on_hand = 101 - 3 - 2 + 102 - 3 - 2;
    let deadline = std::time::Instant::now() + Duration::from_millis(CATCH_UP_DEADLINE_MS);
    loop {
        let level: Value = client
            .get(format!("{base}/v1/skus/RESTORE-1"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if level["version"] == 12 {
            assert_eq!(level["on_hand"], expected_on_hand, "{level:#}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API's read model never showed the reserve: {level:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let history: Value = client
        .get(format!("{base}/v1/skus/RESTORE-1/history?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = history["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 13, "twelve before, the reserve after");
    assert_eq!(entries[12]["event_type"], "StockReserved");
    running.stop().await;
    assert_verified(&ledger).await;
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A database moved to another cluster under a running store (which then knows nothing of it):
/// simulated by what the move changes for the store — the current epoch began at an id the
/// cluster has not reached, and the counter plus the offset lies below the stored positions.
/// Readers show nothing new meanwhile; the next append notices, begins an epoch and lands
/// after every stored event, and projectors and `verify` continue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_moved_under_a_running_store_begins_an_epoch_at_the_next_append() {
    let ledger = TestLedger::new().await;
    let projectors = ledger.spawn(ProjectorOptions::default());
    write_history(&ledger, 1).await;
    ledger.wait_caught_up().await;
    let before = whole_log(&ledger.store).await;
    let last_before = before.last().unwrap().position;
    {
        let client = ledger.database.pool().get().await.unwrap();
        client
            .batch_execute(
                "UPDATE event_store.epochs SET started_xid = started_xid + 1000000000, \
                 position_offset = position_offset - 1000000000",
            )
            .await
            .unwrap();
    }
    assert_eq!(ledger.store.head_position().await.unwrap(), None);

    ledger.run("RESTORE-1", replenish(5)).await;
    let after = whole_log(&ledger.store).await;
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(after.len(), before.len() + 1);
    assert!(after[before.len()].position > last_before);
    let epochs: i64 = ledger
        .database
        .pool()
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM event_store.epochs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(epochs, 2);

    ledger.wait_caught_up().await;
    projectors.stop().await;
    assert_verified(&ledger).await;
}

/// A log written before epochs existed keeps every position (epoch 0 has offset 0), and new
/// events follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_before_epochs_keeps_its_positions() {
    let database = TestDatabase::create().await;
    let pool = database.database(TEST_POOL_SIZE);
    let before_epochs = &MIGRATIONS[..5];
    assert_eq!(before_epochs.last().unwrap().name, "hash_chain_required");
    let stored: Vec<(i64, i64)> = {
        let mut client = pool.client().await.unwrap();
        ledger_postgres::migrate::migrate(&mut client, "event_store", before_epochs)
            .await
            .unwrap();
        // Three transactions, as the store wrote them then: the transaction id by default.
        for (stream, version) in [("sku-OLD-1", 0i64), ("sku-OLD-2", 0), ("sku-OLD-1", 1)] {
            client
                .execute(
                    "INSERT INTO event_store.events (sequence, event_id, stream, version, \
                     event_type, schema_version, data, metadata, recorded_at, hash) \
                     VALUES (1, $1, $2, $3, 'StockReplenished', 1, '{\"quantity\": 1}', '{}', \
                     now(), decode(repeat('ab', 32), 'hex'))",
                    &[&uuid::Uuid::new_v4(), &stream, &version],
                )
                .await
                .unwrap();
        }
        client
            .query(
                "SELECT transaction_id, sequence FROM event_store.events \
                 ORDER BY transaction_id, sequence",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    };
    let store = PostgresStore::open(pool).await.unwrap();
    let positions: Vec<(i64, i64)> = whole_log(&store)
        .await
        .iter()
        .map(|e| (e.position.commit as i64, e.position.prepare as i64))
        .collect();
    assert_eq!(positions, stored);
    let appended = store
        .append(
            "sku-OLD-3",
            ledger_application::store::ExpectedVersion::NoStream,
            vec![ledger_tests::contract::event("Tested", 1)],
        )
        .await
        .unwrap();
    assert!(appended.position.commit as i64 > stored.last().unwrap().0);
    assert_eq!(whole_log(&store).await.len(), stored.len() + 1);
}

fn path(file: &Path) -> &str {
    file.to_str().expect("a UTF-8 path")
}
