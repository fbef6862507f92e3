//! Tamper evidence through the real binary against a real PostgreSQL: events are edited,
//! deleted, swapped and inserted by SQL, as someone with database access could, and
//! `ledger-replay verify` names each stream's first broken link (SKU, version, the hash
//! recomputed and the hash found); a chain forged by recomputing every hash after the edit
//! passes `verify` but not `verify --anchor` with an anchor taken before.

use ledger_application::chain::link_recorded;
use ledger_application::store::READ_EVENTS_MAX;
use ledger_application::EventStore;
use ledger_domain::{EventHash, RecordedEvent};
use ledger_projections::ProjectorOptions;
use ledger_tests::ledger::*;
use serde_json::Value;
use std::process::Output;

const EXIT_OK: i32 = 0;
const EXIT_FAILED: i32 = 1;

/// A ledger with the same short history in each of `skus` and read models caught up with it,
/// on which `verify` passes.
async fn ledger_with_history(skus: &[&str]) -> TestLedger {
    let ledger = TestLedger::new().await;
    for sku in skus {
        ledger.run(sku, replenish(100)).await; // version 0
        ledger.run(sku, reserve("r-1", 3, None)).await; // 1
        ledger.run(sku, reserve("r-2", 4, None)).await; // 2
        ledger.run(sku, confirm("r-1")).await; // 3
        ledger.run(sku, release("r-2")).await; // 4
        ledger.run(sku, replenish(10)).await; // 5
        ledger.run(sku, adjust(-2)).await; // 6
    }
    catch_up(&ledger).await;
    let (output, report) = verify(&ledger, &[]).await;
    assert_exit(&output, EXIT_OK);
    assert_eq!(report["differences_total"], 0, "{report}");
    ledger
}

async fn catch_up(ledger: &TestLedger) {
    let projectors = ledger.spawn(ProjectorOptions::default());
    ledger.wait_caught_up().await;
    projectors.stop().await;
}

async fn run_binary(ledger: &TestLedger, arguments: &[&str]) -> Output {
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

/// `verify --all --format json` plus `extra`, and its report.
async fn verify(ledger: &TestLedger, extra: &[&str]) -> (Output, Value) {
    let mut arguments = vec!["verify", "--all", "--format", "json"];
    arguments.extend_from_slice(extra);
    let output = run_binary(ledger, &arguments).await;
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "verify prints a JSON report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, report)
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

/// Run `statement` as someone with database access would, and wait until the log shows what
/// it wrote (the store shows a transaction's rows once every older transaction has ended, and
/// tests of other databases share the cluster's transactions).
async fn sql(ledger: &TestLedger, statement: &str) {
    let client = ledger.database.pool().get().await.unwrap();
    client.batch_execute(statement).await.unwrap();
    let target = ledger.last_committed_position().await;
    wait_until("the log shows the rows written by SQL", || async {
        ledger.store.head_position().await.unwrap() >= target
    })
    .await;
}

/// The events of `sku` as stored now, in version order.
async fn stored(ledger: &TestLedger, sku: &str) -> Vec<RecordedEvent> {
    ledger
        .store
        .read_stream(&sku_of(sku).stream(), 0, READ_EVENTS_MAX)
        .await
        .unwrap()
}

/// The report names exactly one broken link per SKU in `expected` (SKU, version) and none
/// elsewhere; each with the hash recomputed from the event before it and the hash it has.
async fn assert_broken_links(ledger: &TestLedger, report: &Value, expected: &[(&str, u64)]) {
    let links: Vec<&Value> = report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|difference| difference["kind"] == "chain")
        .collect();
    assert_eq!(links.len(), expected.len(), "{report:#}");
    for (sku, version) in expected {
        let link = links
            .iter()
            .find(|link| link["sku"] == *sku)
            .unwrap_or_else(|| panic!("no broken link named for {sku}: {report:#}"));
        assert_eq!(link["version"], *version, "{sku}: {link}");
        let events = stored(ledger, sku).await;
        let at = events.iter().position(|e| e.version == *version).unwrap();
        let previous = at
            .checked_sub(1)
            .map_or(EventHash::GENESIS, |p| events[p].hash.unwrap());
        let expected_hash = link_recorded(&previous, &events[at]);
        assert_eq!(link["expected_hash"], expected_hash.to_hex(), "{sku}");
        assert_eq!(
            link["found_hash"],
            events[at].hash.unwrap().to_hex(),
            "{sku}"
        );
        assert_ne!(link["expected_hash"], link["found_hash"]);
    }
    let skus = report["skus_with_differences"].as_array().unwrap();
    for (sku, _) in expected {
        assert!(skus.iter().any(|s| s == sku), "{report:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edited_payload_is_named_at_its_version() {
    let ledger = ledger_with_history(&["EDIT-1", "CLEAN-1"]).await;
    sql(
        &ledger,
        "UPDATE event_store.events \
         SET data = jsonb_set(data, '{quantity}', to_jsonb((data->>'quantity')::int - 1)) \
         WHERE stream = 'sku-EDIT-1' AND version = 3",
    )
    .await;
    let (output, report) = verify(&ledger, &[]).await;
    assert_exit(&output, EXIT_FAILED);
    assert_broken_links(&ledger, &report, &[("EDIT-1", 3)]).await;
    assert!(!report["skus_with_differences"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "CLEAN-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_event_is_named_at_the_event_after_it() {
    let ledger = ledger_with_history(&["DELETE-1", "CLEAN-1"]).await;
    sql(
        &ledger,
        "DELETE FROM event_store.events WHERE stream = 'sku-DELETE-1' AND version = 3",
    )
    .await;
    let (output, report) = verify(&ledger, &[]).await;
    assert_exit(&output, EXIT_FAILED);
    // Version 4 no longer links to the event before it (now version 2).
    assert_broken_links(&ledger, &report, &[("DELETE-1", 4)]).await;
    let link = report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "chain")
        .unwrap();
    assert!(
        link["detail"].as_str().unwrap().contains("version 2"),
        "{link}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_swapped_versions_are_named_at_the_first_of_them() {
    let ledger = ledger_with_history(&["SWAP-1", "CLEAN-1"]).await;
    sql(
        &ledger,
        "UPDATE event_store.events SET version = version + 1000 \
             WHERE stream = 'sku-SWAP-1' AND version IN (2, 3); \
         UPDATE event_store.events SET version = CASE version WHEN 1002 THEN 3 ELSE 2 END \
             WHERE stream = 'sku-SWAP-1' AND version IN (1002, 1003);",
    )
    .await;
    let (output, report) = verify(&ledger, &[]).await;
    assert_exit(&output, EXIT_FAILED);
    assert_broken_links(&ledger, &report, &[("SWAP-1", 2)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inserted_event_is_named_at_its_version() {
    let ledger = ledger_with_history(&["INSERT-1", "INSERT-2", "CLEAN-1"]).await;
    // At the end, with the hash of the event before it; and in the middle, the versions after
    // it moved up to make room.
    let copy = |stream: &str, version: u64| {
        format!(
            "INSERT INTO event_store.events (sequence, event_id, stream, version, event_type, \
                 schema_version, data, metadata, recorded_at, hash) \
             SELECT 1, gen_random_uuid(), stream, {version}, 'StockReplenished', 2, \
                 '{{\"quantity\": 50, \"reference\": null, \"location\": \"default\"}}', \
                 metadata, recorded_at, hash \
             FROM event_store.events WHERE stream = '{stream}' AND version = 6"
        )
    };
    sql(&ledger, &copy("sku-INSERT-1", 7)).await;
    sql(
        &ledger,
        &format!(
            "UPDATE event_store.events SET version = version + 1000 \
                 WHERE stream = 'sku-INSERT-2' AND version >= 3; \
             UPDATE event_store.events SET version = version - 999 \
                 WHERE stream = 'sku-INSERT-2' AND version >= 1000; \
             {}",
            copy("sku-INSERT-2", 3).replace("version = 6", "version = 7")
        ),
    )
    .await;
    let (output, report) = verify(&ledger, &[]).await;
    assert_exit(&output, EXIT_FAILED);
    assert_broken_links(&ledger, &report, &[("INSERT-1", 7), ("INSERT-2", 3)]).await;
}

/// Someone who edits an event and recomputes every hash after it leaves chains that verify;
/// only an anchor kept from before shows the edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_chain_passes_verify_but_not_verify_against_an_anchor() {
    let ledger = ledger_with_history(&["FORGE-1", "FORGE-2"]).await;
    let folder = std::env::temp_dir().join(format!("anchor-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("anchor.json");
    let output = run_binary(&ledger, &["anchor", "--output", file.to_str().unwrap()]).await;
    assert_exit(&output, EXIT_OK);
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(printed, kept);
    assert_eq!(kept["format"], "ledger-anchor/1");
    assert_eq!(kept["streams"], 2);
    assert_eq!(kept["events"], 14);
    assert_eq!(kept["merkle_root"].as_str().unwrap().len(), 64);
    let anchor = ["--anchor", file.to_str().unwrap()];

    // The log goes on after the anchor: still at one with it.
    ledger.run("FORGE-2", replenish(5)).await;
    ledger.run("FORGE-3", replenish(5)).await;
    catch_up(&ledger).await;
    let (output, report) = verify(&ledger, &anchor).await;
    assert_exit(&output, EXIT_OK);
    assert_eq!(report["anchor"]["merkle_root"], kept["merkle_root"]);

    // The forgery: a replenishment's reference changed (no balance moves, so no read model
    // disagrees), then every hash from there on recomputed and stored again.
    sql(
        &ledger,
        "UPDATE event_store.events SET data = jsonb_set(data, '{reference}', '\"PO-forged\"') \
         WHERE stream = 'sku-FORGE-1' AND version = 0",
    )
    .await;
    let mut previous = EventHash::GENESIS;
    let client = ledger.database.pool().get().await.unwrap();
    for event in stored(&ledger, "FORGE-1").await {
        let hash = link_recorded(&previous, &event);
        client
            .execute(
                "UPDATE event_store.events SET hash = $1 WHERE event_id = $2",
                &[&hash.as_bytes().as_slice(), &event.event_id],
            )
            .await
            .unwrap();
        previous = hash;
    }

    let (output, report) = verify(&ledger, &[]).await;
    assert_exit(&output, EXIT_OK);
    assert_eq!(report["differences_total"], 0, "{report:#}");

    let (output, report) = verify(&ledger, &anchor).await;
    assert_exit(&output, EXIT_FAILED);
    let differences = report["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 1, "{report:#}");
    assert_eq!(differences[0]["kind"], "anchor");
    assert_ne!(report["anchor"]["merkle_root"], kept["merkle_root"]);
    std::fs::remove_dir_all(&folder).unwrap();
}
