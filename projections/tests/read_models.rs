//! The read models against real PostgreSQL: random histories compared with the fold of the
//! aggregates, the low-stock alert rules one by one, the query functions' filters, and a live
//! schema's upgrade steps.

mod support;

use chrono::Duration as ChronoDuration;
use ledger_domain::{ReservationStatus, SkuCommand};
use ledger_projections::{AlertCloseReason, AlertStatus, MovementFilter, NotificationKind};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::*;

/// Random histories per run: each case creates a database and runs every projector, so a few
/// cases of up to [`COMMANDS_MAX`] commands keep the test to well under a minute on two cores.
const CASES: u32 = 12;
const COMMANDS_MAX: usize = 60;
const SKUS: &[&str] = &["A-1", "B-2", "C-3"];
const RESERVATION_IDS: usize = 6;

#[derive(Debug, Clone)]
enum Step {
    Run(usize, SkuCommand),
    Advance(i64),
}

fn step() -> impl Strategy<Value = Step> {
    let sku = 0..SKUS.len();
    let id = (0..RESERVATION_IDS).prop_map(|n| format!("res-{n}"));
    prop_oneof![
        3 => (sku.clone(), 1..20u64).prop_map(|(s, q)| Step::Run(s, replenish(q))),
        4 => (sku.clone(), id.clone(), 1..8u64, proptest::option::of(1..120i64))
            .prop_map(|(s, id, q, ttl)| Step::Run(s, reserve(&id, q, ttl))),
        2 => (sku.clone(), id.clone()).prop_map(|(s, id)| Step::Run(s, release(&id))),
        2 => (sku.clone(), id.clone()).prop_map(|(s, id)| Step::Run(s, confirm(&id))),
        1 => (sku.clone(), id).prop_map(|(s, id)| Step::Run(s, expire(&id))),
        2 => (sku.clone(), (-6..6i64).prop_filter("non-zero", |d| *d != 0))
            .prop_map(|(s, d)| Step::Run(s, adjust(d))),
        2 => (sku, 0..15i64).prop_map(|(s, r)| Step::Run(s, set_reorder_point(r))),
        1 => (1..90i64).prop_map(Step::Advance),
    ]
}

async fn check_history(steps: Vec<Step>, batch_events_max: u64) {
    let ledger = Ledger::new().await;
    // Half of the history lands before the projectors start (catch-up), half while they run.
    let (before, after) = steps.split_at(steps.len() / 2);
    for step in before {
        apply(&ledger, step).await;
    }
    let running = ledger.spawn(ledger_projections::ProjectorOptions {
        batch_events_max,
        ..test_options()
    });
    for step in after {
        apply(&ledger, step).await;
    }
    ledger.wait_caught_up().await;
    ledger.assert_read_models_match_fold().await;
    running.stop().await;
}

async fn apply(ledger: &Ledger, step: &Step) {
    match step {
        Step::Run(sku, command) => ledger.run(SKUS[*sku], command.clone()).await,
        Step::Advance(seconds) => ledger.clock.advance(*seconds),
    }
}

#[test]
fn random_histories_project_to_the_fold_of_the_aggregates() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 16,
        ..Config::default()
    });
    runner
        .run(
            &(proptest::collection::vec(step(), 1..COMMANDS_MAX), 1..12u64),
            |(steps, batch_events_max)| {
                runtime.block_on(check_history(steps, batch_events_max));
                Ok(())
            },
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_opens_when_available_falls_below_the_reorder_point_and_stays_single() {
    let ledger = Ledger::new().await;
    let running = ledger.spawn_default();
    let sku = sku_of("LOW-1");
    // Given 10 on hand and a reorder point of 5.
    ledger.run("LOW-1", replenish(10)).await;
    ledger.run("LOW-1", set_reorder_point(5)).await;
    // When available falls to 4, then further to 2.
    ledger.run("LOW-1", reserve("r1", 6, None)).await;
    ledger.run("LOW-1", reserve("r2", 2, None)).await;
    ledger.wait_caught_up().await;
    // Then exactly one alert is open, recording the level that opened it.
    let open = ledger.read_models.open_alerts(10, None).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].sku, sku);
    assert_eq!(
        (open[0].available_at_open, open[0].reorder_point_at_open),
        (4, 5)
    );
    assert_eq!(open[0].opened_version, 2);
    let notifications = ledger.read_models.notifications_after(0, 10).await.unwrap();
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0].kind, NotificationKind::AlertOpened);
    ledger.assert_read_models_match_fold().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_closes_when_available_recovers_and_a_new_one_opens_on_the_next_fall() {
    let ledger = Ledger::new().await;
    let running = ledger.spawn_default();
    let sku = sku_of("REC-1");
    ledger.run("REC-1", set_reorder_point(5)).await;
    ledger.run("REC-1", replenish(3)).await; // opens (available 0 < 5 already at version 0)
    ledger.run("REC-1", replenish(2)).await; // available 5: recovered
    ledger.run("REC-1", adjust(-1)).await; // 4 < 5: opens again
    ledger.wait_caught_up().await;
    let history = ledger.read_models.alert_history(&sku, 10).await.unwrap();
    assert_eq!(history.len(), 2, "{history:#?}");
    let (newest, oldest) = (&history[0], &history[1]);
    assert_eq!(oldest.status, AlertStatus::Closed);
    assert_eq!(oldest.close_reason, Some(AlertCloseReason::Recovered));
    assert_eq!(oldest.closed_version, Some(2));
    assert_eq!(oldest.available_at_close, Some(5));
    assert_eq!(newest.status, AlertStatus::Open);
    assert_eq!(newest.available_at_open, 4);
    let kinds: Vec<_> = ledger
        .read_models
        .notifications_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|n| (n.notification_id, n.kind, n.alert_id))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (1, NotificationKind::AlertOpened, oldest.alert_id),
            (2, NotificationKind::AlertClosed, oldest.alert_id),
            (3, NotificationKind::AlertOpened, newest.alert_id),
        ]
    );
    ledger.assert_read_models_match_fold().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_point_changes_open_and_close_alerts() {
    let ledger = Ledger::new().await;
    let running = ledger.spawn_default();
    let sku = sku_of("RP-1");
    ledger.run("RP-1", replenish(10)).await;
    ledger.run("RP-1", set_reorder_point(10)).await; // 10 is not below 10: no alert
    ledger.run("RP-1", set_reorder_point(11)).await; // raised above available: opens
    ledger.run("RP-1", set_reorder_point(12)).await; // still below: no second alert
    ledger.run("RP-1", set_reorder_point(3)).await; // lowered: closes
    ledger.wait_caught_up().await;
    let history = ledger.read_models.alert_history(&sku, 10).await.unwrap();
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0].opened_version, 2);
    assert_eq!(history[0].reorder_point_at_open, 11);
    assert_eq!(
        history[0].close_reason,
        Some(AlertCloseReason::ReorderPointLowered)
    );
    assert!(ledger
        .read_models
        .open_alerts(10, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ledger
            .read_models
            .notifications_after(0, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    ledger.assert_read_models_match_fold().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_from_scratch_produces_the_same_alert_history_and_outbox() {
    let ledger = Ledger::new().await;
    mixed_history(&ledger, 6).await;
    let running = ledger.spawn(ledger_projections::ProjectorOptions {
        batch_events_max: 7,
        ..test_options()
    });
    ledger.wait_caught_up().await;
    running.stop().await;
    let alerts_schema = ledger_projections::schema_name::SchemaName::live("low_stock_alerts");
    let alerts = dump(&ledger.database, &alerts_schema, "alerts").await;
    let outbox = dump(&ledger.database, &alerts_schema, "notifications").await;
    assert!(!alerts.is_empty(), "the history opens alerts");

    // Replay from scratch: a rebuild in one page size, a different batching from the live run.
    let summary = ledger_projections::rebuild(
        ledger.store.as_ref(),
        &ledger.database,
        "low_stock_alerts",
        ledger_projections::RebuildOptions::default(),
    )
    .await
    .unwrap();
    assert!(summary.swapped);
    assert_eq!(
        dump(&ledger.database, &alerts_schema, "alerts").await,
        alerts
    );
    assert_eq!(
        dump(&ledger.database, &alerts_schema, "notifications").await,
        outbox
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filter_page_and_bound_their_results() {
    let ledger = Ledger::new().await;
    let running = ledger.spawn_default();
    for sku in ["Q-1", "Q-2", "Q-3"] {
        ledger.run(sku, set_reorder_point(5)).await;
        ledger.run(sku, replenish(3)).await;
    }
    ledger.run("Q-1", reserve("short", 1, Some(30))).await;
    ledger.run("Q-1", reserve("long", 1, Some(3_000))).await;
    ledger.run("Q-1", reserve("forever", 1, None)).await;
    ledger.run("Q-1", release("forever")).await;
    ledger.wait_caught_up().await;
    let q1 = sku_of("Q-1");

    // Below the reorder point, paged by SKU.
    let first = ledger
        .read_models
        .stock_levels_below_reorder_point(2, None)
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>(),
        ["Q-1", "Q-2"]
    );
    let rest = ledger
        .read_models
        .stock_levels_below_reorder_point(2, Some(&first[1].sku))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].sku.as_str(), "Q-3");
    let alerts = ledger
        .read_models
        .open_alerts(10, Some(&sku_of("Q-1")))
        .await
        .unwrap();
    assert_eq!(alerts.len(), 2);

    // Due reservations: only the open one whose time is up.
    let due = ledger
        .read_models
        .due_reservations(ledger.handler_now() + ChronoDuration::seconds(31), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].1.as_str(), "short");
    assert!(ledger
        .read_models
        .due_reservations(ledger.handler_now(), 10)
        .await
        .unwrap()
        .is_empty());

    // Reservations by status.
    let open = ledger
        .read_models
        .reservations(&q1, Some(ReservationStatus::Open), 10)
        .await
        .unwrap();
    assert_eq!(open.len(), 2);
    let released = ledger
        .read_models
        .reservations(&q1, Some(ReservationStatus::Released), 10)
        .await
        .unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].close_reason.as_deref(), Some("cart abandoned"));

    // Movements paged by version and filtered by time.
    let page = ledger
        .read_models
        .movements(
            &q1,
            MovementFilter {
                after_version: Some(1),
                limit: 2,
                ..MovementFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|m| m.version).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let all = ledger
        .read_models
        .movements(
            &q1,
            MovementFilter {
                limit: 100,
                ..MovementFilter::default()
            },
        )
        .await
        .unwrap();
    let cut = all[3].recorded_at;
    let before_cut = ledger
        .read_models
        .movements(
            &q1,
            MovementFilter {
                to: Some(cut),
                limit: 100,
                ..MovementFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(before_cut.iter().all(|m| m.recorded_at < cut));
    let from_cut = ledger
        .read_models
        .movements(
            &q1,
            MovementFilter {
                from: Some(cut),
                limit: 100,
                ..MovementFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(before_cut.len() + from_cut.len(), all.len());
    assert_eq!(all[0].actor.as_deref(), Some("tester"));

    // Limits are clamped to the page size bound, never unbounded.
    let clamped = ledger
        .read_models
        .notifications_after(0, u64::MAX)
        .await
        .unwrap();
    assert!(clamped.len() as u64 <= ledger_projections::PAGE_SIZE_MAX);
    assert!(ledger
        .read_models
        .stock_level(&sku_of("NOPE"))
        .await
        .unwrap()
        .is_none());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_from_before_its_later_step_is_migrated_and_folded_again_from_the_start() {
    let ledger = Ledger::new().await;
    mixed_history(&ledger, 4).await;
    let running = ledger.spawn_default();
    ledger.wait_caught_up().await;
    running.stop().await;
    let schema = ledger_projections::schema_name::SchemaName::live("locations");
    let alerts = dump(&ledger.database, &schema, "location_alerts").await;
    assert!(!alerts.is_empty(), "the history opens alerts at locations");
    let stock = dump(&ledger.database, &schema, "location_stock").await;

    // As a deployment from before the per-location alerts left it: migrated to version 1 only,
    // no alerts table, rows and checkpoint of its own.
    let client = ledger.database.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "DROP TABLE {schema}.location_alerts;
             DELETE FROM public.ledger_migrations
              WHERE component = 'read_model.locations' AND version > 1;"
        ))
        .await
        .unwrap();
    drop(client);

    // The next start migrates it (as every process does before its runners start), which empties
    // it and rewinds its checkpoint, and its runner folds the whole log again.
    ledger_projections::migrate(&ledger.database).await.unwrap();
    let client = ledger.database.pool().get().await.unwrap();
    let rewound = ledger_projections::checkpoint::load(&**client, &schema, "locations")
        .await
        .unwrap();
    assert_eq!(rewound.position, None);
    assert!(dump(&ledger.database, &schema, "location_stock")
        .await
        .is_empty());
    drop(client);
    let running = ledger.spawn_default();
    ledger.wait_caught_up().await;
    running.stop().await;
    assert_eq!(
        dump(&ledger.database, &schema, "location_alerts").await,
        alerts
    );
    assert_eq!(
        dump(&ledger.database, &schema, "location_stock").await,
        stock
    );
    ledger.assert_read_models_match_fold().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_schema_from_before_the_order_index_gets_it_from_the_upgrade_step() {
    // Goal: a reservations schema created by the first DDL (without the index by order, and
    // with only migration 1 recorded) is brought up to date by the projection's upgrade step,
    // exactly once, as an existing deployment is when it runs this release.
    let ledger = Ledger::new().await;
    let client = ledger.database.client().await.unwrap();
    client
        .batch_execute(
            "DROP INDEX rm_reservations.reservations_by_order; \
             DELETE FROM public.ledger_migrations \
             WHERE component = 'read_model.reservations' AND version > 1",
        )
        .await
        .unwrap();
    let live = ledger_projections::schema_name::SchemaName::live("reservations");
    let before = ledger_projections::schema::index_names(&**client, &live)
        .await
        .unwrap();
    assert!(!before.contains(&"reservations_by_order".to_owned()));

    ledger_projections::migrate(&ledger.database).await.unwrap();
    let after = ledger_projections::schema::index_names(&**client, &live)
        .await
        .unwrap();
    assert!(
        after.contains(&"reservations_by_order".to_owned()),
        "{after:?}"
    );
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM public.ledger_migrations \
             WHERE component = 'read_model.reservations' ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, [1, 2]);
}
