//! A log written before stock had locations (every event at schema version 1), committed as
//! `tests/fixtures/log-v1.ndjson` and never regenerated, read by today's code: the state, the
//! history and the read models see every movement at the default location with the balances
//! the old code computed, new events append on top of it, and a rebuild over the mixed log
//! equals the live read models.

mod support;

use ledger_application::history::{history, HistoryFilter};
use ledger_application::store::{EventStore, ExpectedVersion};
use ledger_domain::{LocationStock, Metadata, NewEvent, DEFAULT_LOCATION};
use ledger_projections::rebuild::RebuildOptions;
use ledger_tests::ledger::*;
use serde_json::Value;
use std::collections::BTreeMap;
use support::*;

const FIXTURE: &str = include_str!("../../tests/fixtures/log-v1.ndjson");

/// Store the fixture's events as they were written: same ids, streams, versions, types,
/// schema versions, payloads and metadata.
async fn load_fixture(ledger: &Ledger) -> usize {
    let mut streams: BTreeMap<String, Vec<NewEvent>> = BTreeMap::new();
    for line in FIXTURE.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            record["schema_version"], 1,
            "the fixture is a version 1 log"
        );
        let metadata: Metadata = serde_json::from_value(record["metadata"].clone()).unwrap();
        streams
            .entry(record["stream"].as_str().unwrap().to_owned())
            .or_default()
            .push(NewEvent {
                event_id: record["event_id"].as_str().unwrap().parse().unwrap(),
                event_type: record["event_type"].as_str().unwrap().to_owned(),
                schema_version: 1,
                data: record["data"].clone(),
                metadata,
                recorded_at: chrono::Utc::now(),
                hash: ledger_domain::EventHash::GENESIS,
            });
    }
    let mut count = 0;
    for (stream, mut events) in streams {
        count += events.len();
        ledger_application::chain::seal(
            &stream,
            0,
            ledger_domain::EventHash::GENESIS,
            chrono::Utc::now(),
            &mut events,
        );
        ledger
            .store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_log_replays_into_the_located_model_and_read_models() {
    let ledger = Ledger::new().await;
    assert_eq!(load_fixture(&ledger).await, 22);

    for sku in ["SHOE-42", "HAT-7"] {
        // What the version 1 code computed: 100 in, 5 shipped, 4 counted away, 2 found, 70
        // held, reorder point 20.
        let state = ledger.fold(&sku_of(sku)).await;
        assert_eq!(
            (state.on_hand, state.reserved, state.reorder_point),
            (93, 70, 20)
        );
        assert_eq!(
            state.locations,
            BTreeMap::from([(
                DEFAULT_LOCATION.to_owned(),
                LocationStock {
                    on_hand: 93,
                    reserved: 70,
                    reorder_point: 20,
                    in_transit: 0
                }
            )])
        );
        state.check_invariants().unwrap();
        assert!(state
            .reservations
            .values()
            .all(|r| r.location == DEFAULT_LOCATION));

        let page = history(
            ledger.store.as_ref(),
            &sku_of(sku),
            &HistoryFilter {
                limit: 100,
                ..HistoryFilter::default()
            },
            None,
        )
        .await
        .unwrap();
        assert_eq!(page.entries.len(), 11);
        assert!(page
            .entries
            .iter()
            .all(|e| e.location.as_deref() == Some(DEFAULT_LOCATION) && e.schema_version == 1));
        let last = page.entries.last().unwrap();
        assert_eq!((last.on_hand_after, last.reserved_after), (93, 70));
    }

    // Today's code appends version 2 events on top of the old stream.
    ledger.run("SHOE-42", reserve("r-5", 3, None)).await;
    ledger.run("SHOE-42", release("r-4")).await;
    let state = ledger.fold(&sku_of("SHOE-42")).await;
    assert_eq!((state.on_hand, state.reserved), (93, 3));
    let newest = ledger
        .store
        .read_stream("sku-SHOE-42", 11, 10)
        .await
        .unwrap();
    assert!(newest.iter().all(|e| e.schema_version == 2));

    let running = ledger.spawn_default();
    ledger.wait_caught_up().await;
    running.stop().await;
    ledger.assert_read_models_match_fold().await;

    let live = dump_all(&ledger.database).await;
    for projection in ledger_projections::names() {
        let summary = ledger_projections::rebuild(
            ledger.store.as_ref(),
            &ledger.database,
            projection,
            RebuildOptions::default(),
        )
        .await
        .unwrap();
        assert!(summary.swapped, "{projection}");
    }
    assert_eq!(dump_all(&ledger.database).await, live);
}
