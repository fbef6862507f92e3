//! The projector runtime against real PostgreSQL: crash safety with injected faults, one active
//! runner per projection, and convergence under a steady load.

mod support;

use ledger_projections::{FaultPlan, ProjectorOptions};
use std::time::Duration;
use support::*;

/// Events per batch in the crash tests: small, so the history spans many batches.
const SMALL_BATCH_EVENTS: u64 = 5;

async fn movement_positions_are_unique(ledger: &Ledger) {
    let client = ledger.database.pool().get().await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT (position_commit, position_prepare)), \
                    (SELECT count(*) FROM event_store.events) \
             FROM rm_stock_movements.movements",
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct, events): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(rows, distinct, "a movement row appears twice");
    assert_eq!(rows, events, "one movement row per event");
}

async fn events_applied(ledger: &Ledger) -> Vec<(String, i64)> {
    let client = ledger.database.pool().get().await.unwrap();
    let mut applied = Vec::new();
    for projection in ledger_projections::all() {
        let row = client
            .query_one(
                &format!(
                    "SELECT events_applied FROM rm_{0}.checkpoint",
                    projection.name()
                ),
                &[],
            )
            .await
            .unwrap();
        applied.push((projection.name().to_owned(), row.get(0)));
    }
    applied
}

async fn crash_then_restart(faults: FaultPlan, committed_batches_at_crash: u64) {
    let ledger = Ledger::new().await;
    mixed_history(&ledger, 4).await;
    let total: i64 = ledger
        .database
        .pool()
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM event_store.events", &[])
        .await
        .unwrap()
        .get(0);
    assert!(total as u64 > SMALL_BATCH_EVENTS * (committed_batches_at_crash + 2));

    // Every runner crashes at the planned point; the set then ends on its own.
    let crashing = ledger.spawn(ProjectorOptions {
        batch_events_max: SMALL_BATCH_EVENTS,
        faults,
        ..test_options()
    });
    tokio::time::timeout(Duration::from_millis(CATCH_UP_DEADLINE_MS), async {
        while !crashing.set.activity().iter().all(|a| a.finished) {
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
    })
    .await
    .expect("every runner crashes at its planned batch");
    for activity in crashing.set.activity() {
        assert!(activity.last_error.unwrap().contains("injected fault"));
    }
    crashing.stop().await;
    // Only the batches committed before the crash are visible.
    for (projection, applied) in events_applied(&ledger).await {
        assert_eq!(
            applied as u64,
            SMALL_BATCH_EVENTS * committed_batches_at_crash,
            "{projection} kept exactly the committed batches"
        );
    }

    // Restart: the runners resume from their checkpoints and finish the history.
    let restarted = ledger.spawn(ProjectorOptions {
        batch_events_max: SMALL_BATCH_EVENTS,
        ..test_options()
    });
    ledger.wait_caught_up().await;
    restarted.stop().await;
    ledger.assert_read_models_match_fold().await;
    movement_positions_are_unique(&ledger).await;
    for (projection, applied) in events_applied(&ledger).await {
        assert_eq!(
            applied, total,
            "{projection} applied every event exactly once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_writes_and_before_the_commit_loses_and_repeats_nothing() {
    crash_then_restart(
        FaultPlan {
            crash_before_commit_at_batch: Some(3),
            ..FaultPlan::default()
        },
        2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_batches_loses_and_repeats_nothing() {
    crash_then_restart(
        FaultPlan {
            crash_after_commit_at_batch: Some(3),
            ..FaultPlan::default()
        },
        3,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_of_two_runners_applies_and_the_other_takes_over_when_it_stops() {
    let ledger = Ledger::new().await;
    let options = || ProjectorOptions {
        projections: vec!["stock_levels"],
        batch_events_max: SMALL_BATCH_EVENTS,
        ..test_options()
    };
    let first = ledger.spawn(options());
    wait_until("the first runner leads", || async {
        first.set.activity()[0].leading
    })
    .await;
    let second = ledger.spawn(options());
    mixed_history(&ledger, 2).await;
    wait_until("the first runner applied the history", || async {
        first.set.activity()[0].events_applied > 0
    })
    .await;
    let status = ledger
        .read_models
        .status(ledger.store.as_ref())
        .await
        .unwrap();
    let stock_levels = status.iter().find(|s| s.name == "stock_levels").unwrap();
    assert!(stock_levels.running);
    assert!(stock_levels
        .held_by
        .as_deref()
        .unwrap()
        .contains("projector stock_levels"));
    let second_activity = &second.set.activity()[0];
    assert!(!second_activity.leading, "the standby must not lead");
    assert_eq!(
        second_activity.events_applied, 0,
        "the standby applied events"
    );

    // Stop the leader: the standby takes over and applies what comes next.
    first.stop().await;
    wait_until("the standby takes over", || async {
        second.set.activity()[0].leading
    })
    .await;
    mixed_history(&ledger, 1).await;
    wait_until("the new leader applies new events", || async {
        second.set.activity()[0].events_applied > 0
    })
    .await;
    let target = ledger.last_committed_position().await;
    wait_until("stock levels catch up", || async {
        let client = ledger.database.pool().get().await.unwrap();
        ledger_projections::checkpoint::load(
            &**client,
            &ledger_projections::schema_name::SchemaName::live("stock_levels"),
            "stock_levels",
        )
        .await
        .unwrap()
        .position
            >= target
    })
    .await;
    for sku in ledger.skus().await {
        let state = ledger.fold(&sku).await;
        let level = ledger.read_models.stock_level(&sku).await.unwrap().unwrap();
        assert_eq!(
            (level.on_hand, level.reserved, Some(level.version)),
            (state.on_hand, state.reserved, state.version)
        );
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_steady_append_load_the_read_models_converge() {
    // Goal: projectors keep up with appends arriving while they run, and the status reports
    // the lag closing to zero once the load stops.
    let ledger = std::sync::Arc::new(Ledger::new().await);
    let running = ledger.spawn_default();
    let load = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            for round in 0..40u64 {
                let sku = ["L-1", "L-2", "L-3", "L-4"][round as usize % 4];
                ledger.run(sku, replenish(1 + round % 7)).await;
                ledger
                    .run(sku, reserve(&format!("l{round}"), 1, None))
                    .await;
                if round % 5 == 0 {
                    ledger.run(sku, set_reorder_point(10)).await;
                }
            }
        })
    };
    // While the load runs the checkpoints keep moving.
    let mut seen_checkpoints = std::collections::BTreeSet::new();
    while !load.is_finished() {
        let status = ledger
            .read_models
            .status(ledger.store.as_ref())
            .await
            .unwrap();
        seen_checkpoints.insert(status[0].checkpoint);
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
    load.await.unwrap();
    assert!(
        seen_checkpoints.len() > 1,
        "checkpoints advanced under load"
    );
    ledger.wait_caught_up().await;
    let store = ledger.store.clone();
    wait_until("the status reports no lag", || {
        let ledger = ledger.clone();
        let store = store.clone();
        async move {
            let status = ledger.read_models.status(store.as_ref()).await.unwrap();
            status
                .iter()
                .all(|s| s.lag_events == 0 && s.lag_seconds == 0.0 && s.running)
        }
    })
    .await;
    ledger.assert_read_models_match_fold().await;
    running.stop().await;
}
