//! Export and import through the real binary: a ledger on a real PostgreSQL is exported to
//! NDJSON and imported into a fresh PostgreSQL database and into the EventStoreDB protocol
//! double; both hold the same histories (ids, versions, types, data, metadata, times, hashes)
//! and give the same anchor. A file with an edited event, or with a chain forged to hide the
//! edit, is refused before anything is written, and so is a store that already holds events.

use ledger_application::anchor::take_anchor;
use ledger_application::chain::link_recorded;
use ledger_application::store::READ_EVENTS_MAX;
use ledger_application::EventStore;
use ledger_domain::{EventHash, RecordedEvent};
use ledger_kurrent::{KurrentOptions, KurrentStore};
use ledger_kurrent_double::EventStoreDouble;
use ledger_postgres::PostgresStore;
use ledger_tests::ledger::*;
use ledger_tests::postgres::TestDatabase;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

const EXIT_OK: i32 = 0;
const EXIT_FAILED: i32 = 1;

/// The SKUs of the exported ledger: several streams, so that the log interleaves them.
const SKUS: [&str; 3] = ["EXP-1", "EXP-2", "EXP-3"];

/// Where the binary finds its events.
enum Target<'a> {
    Postgres(&'a str),
    EventStore(&'a str),
}

async fn run_binary(target: Target<'_>, arguments: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ledger-replay"));
    command.args(arguments).env_remove("LEDGER_DATA_DIR");
    match target {
        Target::Postgres(url) => {
            command
                .env("DATABASE_URL", url)
                .env_remove("EVENTSTORE_URL");
        }
        Target::EventStore(url) => {
            command
                .env("EVENTSTORE_URL", url)
                .env_remove("DATABASE_URL");
        }
    }
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .unwrap()
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status; stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A folder of the test's own for its files.
fn folder() -> PathBuf {
    let folder = std::env::temp_dir().join(format!("export-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// A ledger whose SKUs went through every kind of movement, commands interleaved across SKUs.
async fn ledger_with_history() -> TestLedger {
    let ledger = TestLedger::new().await;
    for round in 0..3u64 {
        for sku in SKUS {
            ledger.run(sku, replenish(50 + round)).await;
            ledger
                .run(sku, reserve(&format!("r-{round}"), 3, None))
                .await;
            ledger.run(sku, set_reorder_point(10 + round as i64)).await;
            if round % 2 == 0 {
                ledger.run(sku, confirm(&format!("r-{round}"))).await;
            } else {
                ledger
                    .run(
                        sku,
                        release_because(&format!("r-{round}"), "cart \"abandoned\", café"),
                    )
                    .await;
            }
            ledger
                .run(sku, adjust_because(-1, "cycle count, shelf 4"))
                .await;
        }
    }
    ledger
}

async fn stream_of<S: EventStore + ?Sized>(store: &S, sku: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(&sku_of(sku).stream(), 0, READ_EVENTS_MAX)
        .await
        .unwrap()
}

/// Everything of an event but its position, which is the store's own.
fn without_position(mut event: RecordedEvent) -> RecordedEvent {
    event.position = ledger_domain::Position::UNKNOWN;
    event
}

/// The two stores hold the same streams, event for event, and give the same anchor.
async fn assert_same_ledger<A: EventStore + ?Sized, B: EventStore + ?Sized>(a: &A, b: &B) {
    for sku in SKUS {
        let left: Vec<_> = stream_of(a, sku)
            .await
            .into_iter()
            .map(without_position)
            .collect();
        let right: Vec<_> = stream_of(b, sku)
            .await
            .into_iter()
            .map(without_position)
            .collect();
        assert_eq!(left.len(), 15, "{sku}");
        assert_eq!(left, right, "{sku}");
        assert!(right.iter().all(|event| event.hash.is_some()), "{sku}");
    }
    let now = chrono::Utc::now();
    let (left, right) = (
        take_anchor(a, now).await.unwrap(),
        take_anchor(b, now).await.unwrap(),
    );
    assert_eq!(
        (left.merkle_root, left.streams, left.events),
        (right.merkle_root, right.streams, right.events)
    );
}

fn export_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect()
}

fn write_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(path, text).unwrap();
}

async fn fresh_postgres() -> (TestDatabase, PostgresStore) {
    let database = TestDatabase::create().await;
    let store = PostgresStore::open(database.database(2))
        .await
        .expect("open the event store");
    (database, store)
}

async fn kurrent_store(double: &EventStoreDouble) -> KurrentStore {
    KurrentStore::connect(&double.url(), KurrentOptions::default())
        .await
        .expect("the adapter connects to the double")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_imports_into_postgres_and_eventstoredb_with_the_same_hashes_and_anchor() {
    let ledger = ledger_with_history().await;
    let source = ledger.test_database.url();
    let files = folder();
    let (export, anchor) = (files.join("ledger.ndjson"), files.join("anchor.json"));
    let output = run_binary(
        Target::Postgres(&source),
        &["anchor", "--output", anchor.to_str().unwrap()],
    )
    .await;
    assert_exit(&output, EXIT_OK);
    let output = run_binary(
        Target::Postgres(&source),
        &["export", "--all", "--output", export.to_str().unwrap()],
    )
    .await;
    assert_exit(&output, EXIT_OK);
    assert!(!files.join("ledger.partial").exists());

    // One line per event, in log order, with its position and hash.
    let lines = export_lines(&export);
    assert_eq!(lines.len(), 45);
    let first = &lines[0];
    assert_eq!(first["stream"], "sku-EXP-1");
    assert_eq!(first["version"], 0);
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);
    assert!(first["position"]["commit"].is_u64());
    // The recorded time as the hash covers it: six fraction digits, UTC.
    let recorded_at = first["recorded_at"].as_str().unwrap();
    assert_eq!(
        (recorded_at.len(), &recorded_at[19..20]),
        (27, "."),
        "{recorded_at}"
    );
    assert!(recorded_at.ends_with('Z'), "{recorded_at}");

    // Into a fresh PostgreSQL database.
    let (_target_database, target) = fresh_postgres().await;
    let output = run_binary(
        Target::Postgres(&_target_database.url()),
        &[
            "import",
            export.to_str().unwrap(),
            "--anchor",
            anchor.to_str().unwrap(),
        ],
    )
    .await;
    assert_exit(&output, EXIT_OK);
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["file"]["events"], 45);
    assert_eq!(summary["file"]["streams"], 3);
    assert_same_ledger(ledger.store.as_ref(), &target).await;

    // Into EventStoreDB (the protocol double), and out of it again: the same lines but for
    // the positions (and for the order of different streams' events, which an import may
    // change within a window; each stream's order is kept).
    let double = EventStoreDouble::start().expect("the double starts");
    let output = run_binary(
        Target::EventStore(&double.url()),
        &[
            "import",
            export.to_str().unwrap(),
            "--anchor",
            anchor.to_str().unwrap(),
        ],
    )
    .await;
    assert_exit(&output, EXIT_OK);
    let kurrent = kurrent_store(&double).await;
    assert_same_ledger(ledger.store.as_ref(), &kurrent).await;
    let again = files.join("again.ndjson");
    let output = run_binary(
        Target::EventStore(&double.url()),
        &["export", "--output", again.to_str().unwrap()],
    )
    .await;
    assert_exit(&output, EXIT_OK);
    let strip = |lines: Vec<Value>| -> Vec<Value> {
        let mut lines: Vec<Value> = lines
            .into_iter()
            .map(|mut line| {
                line.as_object_mut().unwrap().remove("position");
                line
            })
            .collect();
        lines.sort_by_key(|line| {
            (
                line["stream"].as_str().unwrap().to_owned(),
                line["version"].as_u64().unwrap(),
            )
        });
        lines
    };
    assert_eq!(strip(export_lines(&again)), strip(lines));

    // One SKU's stream alone.
    let output = run_binary(Target::Postgres(&source), &["export", "--sku", "EXP-2"]).await;
    assert_exit(&output, EXIT_OK);
    let text = String::from_utf8(output.stdout).unwrap();
    let streams: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["stream"].clone())
        .collect();
    assert_eq!(streams.len(), 15);
    assert!(streams.iter().all(|stream| stream == "sku-EXP-2"));
    std::fs::remove_dir_all(&files).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_export_or_a_store_with_events_is_refused_before_anything_is_written() {
    let ledger = ledger_with_history().await;
    let source = ledger.test_database.url();
    let files = folder();
    let (export, anchor) = (files.join("ledger.ndjson"), files.join("anchor.json"));
    for arguments in [
        vec!["anchor", "--output", anchor.to_str().unwrap()],
        vec!["export", "--output", export.to_str().unwrap()],
    ] {
        assert_exit(
            &run_binary(Target::Postgres(&source), &arguments).await,
            EXIT_OK,
        );
    }
    let lines = export_lines(&export);
    let (target_database, target) = fresh_postgres().await;
    let target_url = target_database.url();
    let import = |file: PathBuf, with_anchor: bool| {
        let target_url = target_url.clone();
        let anchor = anchor.clone();
        async move {
            let mut arguments = vec!["import".to_owned(), file.display().to_string()];
            if with_anchor {
                arguments.extend(["--anchor".to_owned(), anchor.display().to_string()]);
            }
            let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
            run_binary(Target::Postgres(&target_url), &arguments).await
        }
    };

    // An edited payload: refused, naming the stream and the version of the broken link.
    let edited_at = lines
        .iter()
        .position(|line| line["stream"] == "sku-EXP-2" && line["version"] == 5)
        .unwrap();
    let mut edited = lines.clone();
    edited[edited_at]["data"]["quantity"] = Value::from(999);
    let edited_file = files.join("edited.ndjson");
    write_lines(&edited_file, &edited);
    let output = import(edited_file, false).await;
    assert_exit(&output, EXIT_FAILED);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sku-EXP-2"), "{stderr}");
    assert!(stderr.contains("version 5 does not chain"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(target.head_position().await.unwrap(), None);

    // The same edit with every later hash of the stream recomputed: the chains verify, but
    // not against the anchor kept before the edit.
    let mut previous = EventHash::GENESIS;
    let mut forged = edited;
    for line in forged
        .iter_mut()
        .filter(|line| line["stream"] == "sku-EXP-2")
    {
        let event: RecordedEvent =
            serde_json::from_value::<ledger_replay::export::ExportedEvent>(line.clone())
                .unwrap()
                .into();
        let hash = link_recorded(&previous, &event);
        line["hash"] = Value::from(hash.to_hex());
        previous = hash;
    }
    let forged_file = files.join("forged.ndjson");
    write_lines(&forged_file, &forged);
    let output = import(forged_file.clone(), true).await;
    assert_exit(&output, EXIT_FAILED);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("do not match the anchor"), "{stderr}");
    assert_eq!(target.head_position().await.unwrap(), None);

    // A stream that does not start at its first event (an export from a position).
    let partial_file = files.join("partial.ndjson");
    write_lines(&partial_file, &lines[3..]);
    let output = import(partial_file, false).await;
    assert_exit(&output, EXIT_FAILED);
    assert!(String::from_utf8_lossy(&output.stderr).contains("starts at version"));

    // The untouched file into a store that holds events: refused, the store unchanged.
    let head = ledger.store.head_position().await.unwrap();
    let output = run_binary(
        Target::Postgres(&source),
        &["import", export.to_str().unwrap()],
    )
    .await;
    assert_exit(&output, EXIT_FAILED);
    assert!(String::from_utf8_lossy(&output.stderr).contains("not empty"));
    assert_eq!(ledger.store.head_position().await.unwrap(), head);

    // And the untouched file into the empty store: accepted.
    let output = import(export.clone(), true).await;
    assert_exit(&output, EXIT_OK);
    assert_same_ledger(ledger.store.as_ref(), &target).await;
    std::fs::remove_dir_all(&files).unwrap();
}
