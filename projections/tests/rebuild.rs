//! Rebuilding read models into the shadow schema and swapping them in, against real PostgreSQL.

mod support;

use ledger_projections::rebuild::{shadow_checkpoint, RebuildOptions};
use ledger_projections::schema_name::SchemaName;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use support::*;

/// Small pages so a short history spans several of them.
const PAGE_EVENTS: u64 = 10;

async fn schema_oid(ledger: &Ledger, schema: &SchemaName) -> Option<u32> {
    let client = ledger.database.pool().get().await.unwrap();
    client
        .query_opt(
            "SELECT oid FROM pg_namespace WHERE nspname = $1",
            &[&schema.as_str()],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

async fn projected_history(rounds: u64) -> Ledger {
    let ledger = Ledger::new().await;
    mixed_history(&ledger, rounds).await;
    let running = ledger.spawn_default();
    ledger.wait_caught_up().await;
    running.stop().await;
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_every_projection_equals_the_live_read_models() {
    let ledger = projected_history(5).await;
    let live = dump_all(&ledger.database).await;
    for projection in ledger_projections::names() {
        let summary = ledger_projections::rebuild(
            ledger.store.as_ref(),
            &ledger.database,
            projection,
            RebuildOptions {
                page_events_max: PAGE_EVENTS,
                ..RebuildOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(summary.swapped && !summary.interrupted);
        assert!(summary.resumed_from.is_none());
        for table in &summary.tables {
            assert_eq!(
                table.live_rows, table.rebuilt_rows,
                "{projection}.{}",
                table.table
            );
        }
        assert!(schema_oid(&ledger, &SchemaName::shadow(projection))
            .await
            .is_none());
        assert!(schema_oid(&ledger, &SchemaName::retired(projection))
            .await
            .is_none());
    }
    assert_eq!(dump_all(&ledger.database).await, live);
    ledger.assert_read_models_match_fold().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_whose_pages_span_several_reads_equals_the_live_read_models() {
    // Goal: the bulk path gives the live runner's tables whatever the page boundaries: pages
    // filled by several reads that end mid-page, a SKU's events (and a reservation's or an
    // alert's opening and closing) split across pages, and the whole log in one page.
    let ledger = projected_history(6).await;
    let live = dump_all(&ledger.database).await;
    for (page_events_max, read_events_max) in [(11, 3), (4_000, 7)] {
        for projection in ledger_projections::names() {
            let summary = ledger_projections::rebuild(
                ledger.store.as_ref(),
                &ledger.database,
                projection,
                RebuildOptions {
                    page_events_max,
                    read_events_max,
                    ..RebuildOptions::default()
                },
            )
            .await
            .unwrap();
            assert!(summary.swapped, "{projection}");
            assert_eq!(
                dump_all(&ledger.database).await,
                live,
                "{projection} rebuilt in pages of {page_events_max}, reads of {read_events_max}"
            );
        }
    }
    ledger.assert_read_models_match_fold().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rebuild_resumes_from_its_shadow_checkpoint() {
    let ledger = projected_history(5).await;
    let live = dump_all(&ledger.database).await;
    let pages = Arc::new(AtomicU64::new(0));
    let counter = pages.clone();
    let interrupted = ledger_projections::rebuild(
        ledger.store.as_ref(),
        &ledger.database,
        "stock_movements",
        RebuildOptions {
            page_events_max: PAGE_EVENTS,
            progress: Some(Arc::new(move |_| {
                if counter.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })),
            ..RebuildOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(interrupted.interrupted && !interrupted.swapped);
    assert_eq!(interrupted.events_applied, 2 * PAGE_EVENTS);
    let stopped_at = shadow_checkpoint(&ledger.database, "stock_movements")
        .await
        .unwrap()
        .expect("the shadow schema is left for the next run");
    assert_eq!(stopped_at.map(Into::into), interrupted.checkpoint);

    let resumed = ledger_projections::rebuild(
        ledger.store.as_ref(),
        &ledger.database,
        "stock_movements",
        RebuildOptions {
            page_events_max: PAGE_EVENTS,
            ..RebuildOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(resumed.resumed_from, interrupted.checkpoint);
    assert!(resumed.swapped);
    let total = live["rm_stock_movements.movements"].len() as u64;
    assert_eq!(
        resumed.events_applied,
        total - interrupted.events_applied,
        "the resumed run applied only the rest"
    );
    assert_eq!(dump_all(&ledger.database).await, live);
}

/// The indexes and constraints of `schema`, with its name taken out, for comparing schemas.
async fn catalog(ledger: &Ledger, schema: &SchemaName) -> Vec<String> {
    let client = ledger.database.pool().get().await.unwrap();
    let rows = client
        .query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 \
             UNION ALL \
             SELECT c.conrelid::regclass::text || ' ' || c.conname || ' ' \
                    || pg_get_constraintdef(c.oid) \
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
             WHERE n.nspname = $1 \
             ORDER BY 1",
            &[&schema.as_str()],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.get::<_, String>(0).replace(schema.as_str(), "{schema}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_schema_has_every_index_and_constraint_of_its_ddl() {
    // Goal: indexes a rebuild defers while it loads are all back, as the DDL declares them,
    // in the schema it swaps in, also when the load was interrupted and resumed.
    let ledger = projected_history(2).await;
    let mut client = ledger.database.pool().get().await.unwrap();
    let interrupted = ledger_projections::rebuild(
        ledger.store.as_ref(),
        &ledger.database,
        "stock_movements",
        RebuildOptions {
            page_events_max: PAGE_EVENTS,
            progress: Some(Arc::new(|_| ControlFlow::Break(()))),
            ..RebuildOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(interrupted.interrupted);
    let shadow = catalog(&ledger, &SchemaName::shadow("stock_movements")).await;
    assert!(
        !shadow
            .iter()
            .any(|d| d.contains("movements_by_sku_and_time")),
        "the shadow loads without its deferred indexes: {shadow:#?}"
    );
    for projection in ledger_projections::all() {
        let summary = ledger_projections::rebuild(
            ledger.store.as_ref(),
            &ledger.database,
            projection.name(),
            RebuildOptions::default(),
        )
        .await
        .unwrap();
        assert!(summary.swapped);
        let reference = SchemaName::parse(&format!("reference_{}", projection.name())).unwrap();
        ledger_projections::schema::create_schema(&mut client, projection, &reference)
            .await
            .unwrap();
        let rebuilt = catalog(&ledger, &SchemaName::live(projection.name())).await;
        assert_eq!(
            rebuilt,
            catalog(&ledger, &reference).await,
            "{}",
            projection.name()
        );
        for index in projection.deferred_indexes() {
            assert!(
                rebuilt.iter().any(|d| d.contains(index.name)),
                "{} is missing from {rebuilt:#?}",
                index.name
            );
        }
    }
    ledger.assert_read_models_match_fold().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_rebuilds_the_shadow_but_swaps_nothing() {
    let ledger = projected_history(3).await;
    let live_schema = SchemaName::live("reservations");
    let live_oid = schema_oid(&ledger, &live_schema).await;
    let live = dump_all(&ledger.database).await;
    let summary = ledger_projections::rebuild(
        ledger.store.as_ref(),
        &ledger.database,
        "reservations",
        RebuildOptions {
            dry_run: true,
            ..RebuildOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(summary.dry_run && !summary.swapped);
    assert_eq!(summary.tables[0].live_rows, summary.tables[0].rebuilt_rows);
    assert_eq!(
        schema_oid(&ledger, &live_schema).await,
        live_oid,
        "live schema untouched"
    );
    assert!(schema_oid(&ledger, &SchemaName::shadow("reservations"))
        .await
        .is_some());
    assert_eq!(dump_all(&ledger.database).await, live);
    assert_eq!(
        dump(
            &ledger.database,
            &SchemaName::shadow("reservations"),
            "reservations"
        )
        .await,
        live["rm_reservations.reservations"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_swaps_in_under_a_running_projector_which_then_carries_on() {
    // Goal: the live runner pauses for the swap, notices the new checkpoint, and keeps
    // applying new events to the rebuilt schema without applying anything twice.
    let ledger = Ledger::new().await;
    mixed_history(&ledger, 3).await;
    let running = ledger.spawn_default();
    ledger.wait_caught_up().await;
    let before = schema_oid(&ledger, &SchemaName::live("stock_movements")).await;
    let summary = ledger_projections::rebuild(
        ledger.store.as_ref(),
        &ledger.database,
        "stock_movements",
        RebuildOptions::default(),
    )
    .await
    .unwrap();
    assert!(summary.swapped);
    assert_ne!(
        schema_oid(&ledger, &SchemaName::live("stock_movements")).await,
        before
    );
    mixed_history(&ledger, 2).await;
    ledger.wait_caught_up().await;
    ledger.assert_read_models_match_fold().await;
    running.stop().await;
}
