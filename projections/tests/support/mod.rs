//! Shared by the projection tests: the shared test ledger (`ledger_tests::ledger`: a real
//! Postgres event store, a handler on a manual clock, projectors on demand, polling with a
//! deadline), and the comparison of every read model with the fold of the aggregates.
#![allow(dead_code)]

use ledger_application::history::{history, replay, HistoryFilter};
use ledger_application::EventStore;
use ledger_domain::{ReservationStatus, Sku, SkuEvent, SkuState};
use ledger_postgres::Database;
use ledger_projections::schema_name::SchemaName;
use ledger_projections::ProjectorOptions;
use ledger_projections::{AlertCloseReason, AlertStatus, MovementFilter};
pub use ledger_tests::ledger::*;
use std::collections::BTreeMap;

/// Standbys in tests ask for the lock often, so takeovers are quick.
pub const TEST_LOCK_RETRY_INTERVAL_MS: u64 = 100;

/// The shared test ledger, with the projection tests' own checks beside it.
pub struct Ledger(TestLedger);

impl std::ops::Deref for Ledger {
    type Target = TestLedger;

    fn deref(&self) -> &TestLedger {
        &self.0
    }
}

impl Ledger {
    pub async fn new() -> Self {
        Self(TestLedger::new().await)
    }

    pub fn spawn_default(&self) -> RunningProjectors {
        self.spawn(test_options())
    }

    pub async fn skus(&self) -> Vec<Sku> {
        let client = self.database.pool().get().await.unwrap();
        client
            .query(
                "SELECT DISTINCT stream FROM event_store.events ORDER BY stream",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .filter_map(|row| Sku::from_stream(row.get(0)))
            .collect()
    }

    pub async fn fold(&self, sku: &Sku) -> SkuState {
        self.handler.load(sku).await.unwrap().state
    }

    /// Compare every read model with the fold of the aggregates and the replayed history.
    pub async fn assert_read_models_match_fold(&self) {
        let mut expected_notifications = 0;
        for sku in self.skus().await {
            let state = self.fold(&sku).await;
            self.assert_stock_level(&state).await;
            self.assert_reservations(&state).await;
            self.assert_movements(&sku).await;
            self.assert_locations(&state).await;
            self.assert_location_alerts(&sku).await;
            expected_notifications += self.assert_alerts(&sku).await;
        }
        let notifications = self
            .read_models
            .notifications_after(0, ledger_projections::PAGE_SIZE_MAX)
            .await
            .unwrap();
        assert_eq!(notifications.len(), expected_notifications);
        for (index, notification) in notifications.iter().enumerate() {
            assert_eq!(
                notification.notification_id,
                index as i64 + 1,
                "notification ids are dense and start at 1"
            );
        }
    }

    async fn assert_stock_level(&self, state: &SkuState) {
        let level = self
            .read_models
            .stock_level(&state.sku)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no stock level for {}", state.sku));
        assert_eq!(
            (
                level.on_hand,
                level.reserved,
                level.available,
                level.reorder_point,
                Some(level.version),
                level.below_reorder_point
            ),
            (
                state.on_hand,
                state.reserved,
                state.available(),
                state.reorder_point,
                state.version,
                state.is_below_reorder_point()
            ),
            "stock level of {}",
            state.sku
        );
    }

    async fn assert_locations(&self, state: &SkuState) {
        for (location, stock) in &state.locations {
            let location = ledger_domain::LocationId::parse(location).unwrap();
            let rows = self
                .read_models
                .location_stock(
                    &location,
                    &ledger_projections::LocationStockFilter {
                        limit: ledger_projections::PAGE_SIZE_MAX,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let row = rows
                .iter()
                .find(|r| r.sku == state.sku)
                .unwrap_or_else(|| panic!("no row of {} at {location}", state.sku));
            assert_eq!(
                (row.on_hand, row.reserved, row.reorder_point, row.in_transit),
                (
                    stock.on_hand,
                    stock.reserved,
                    stock.reorder_point,
                    stock.in_transit
                ),
                "{} at {location}",
                state.sku
            );
        }
        let in_transit: Vec<String> = self
            .read_models
            .transfers_in_transit(None, ledger_projections::PAGE_SIZE_MAX)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.sku == state.sku)
            .map(|t| t.transfer_id)
            .collect();
        let folded: Vec<String> = state
            .transfers_in_transit()
            .map(|t| t.transfer_id.clone())
            .collect();
        assert_eq!(in_transit, folded, "transfers in transit of {}", state.sku);
    }

    /// Compare the SKU's alerts at every location with a plain replay of the rule per location.
    async fn assert_location_alerts(&self, sku: &Sku) {
        let expected = expected_location_alerts(self.store.as_ref(), sku).await;
        for (location, expected) in expected {
            let location = ledger_domain::LocationId::parse(&location).unwrap();
            let mut projected = Vec::new();
            let mut after = None;
            loop {
                let page = self
                    .read_models
                    .location_alerts(
                        &location,
                        true,
                        after.as_ref().map(|(s, v)| (s, Some(*v))),
                        2,
                    )
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                after = Some((last.sku.clone(), last.opened_version));
                projected.extend(page.into_iter().filter(|a| &a.sku == sku));
            }
            let projected: Vec<ExpectedAlert> = projected
                .iter()
                .map(|a| ExpectedAlert {
                    opened_version: a.opened_version,
                    available_at_open: a.available_at_open,
                    reorder_point_at_open: a.reorder_point_at_open,
                    closed_version: a.closed_version,
                    close_reason: a.close_reason,
                })
                .collect();
            assert_eq!(projected, expected, "alerts of {sku} at {location}");
            let open = self
                .read_models
                .location_alerts(&location, false, None, ledger_projections::PAGE_SIZE_MAX)
                .await
                .unwrap()
                .into_iter()
                .filter(|a| &a.sku == sku)
                .count();
            let still_open = expected
                .iter()
                .filter(|a| a.closed_version.is_none())
                .count();
            assert_eq!(open, still_open, "open alerts of {sku} at {location}");
        }
    }

    async fn assert_reservations(&self, state: &SkuState) {
        let rows = self
            .read_models
            .reservations(&state.sku, None, ledger_projections::PAGE_SIZE_MAX)
            .await
            .unwrap();
        let projected: BTreeMap<String, (u64, ReservationStatus, Option<String>, Option<_>)> = rows
            .iter()
            .map(|r| {
                (
                    r.reservation_id.clone(),
                    (r.quantity, r.status, r.order_id.clone(), r.expires_at),
                )
            })
            .collect();
        let folded: BTreeMap<String, (u64, ReservationStatus, Option<String>, Option<_>)> = state
            .reservations
            .values()
            .map(|r| {
                (
                    r.reservation_id.clone(),
                    (r.quantity, r.status, r.order_id.clone(), r.expires_at),
                )
            })
            .collect();
        assert_eq!(projected, folded, "reservations of {}", state.sku);
        for status in [ReservationStatus::Open, ReservationStatus::Confirmed] {
            let filtered = self
                .read_models
                .reservations(&state.sku, Some(status), ledger_projections::PAGE_SIZE_MAX)
                .await
                .unwrap();
            assert_eq!(
                filtered.len(),
                folded.values().filter(|r| r.1 == status).count()
            );
        }
    }

    async fn assert_movements(&self, sku: &Sku) {
        let expected = history(
            self.store.as_ref(),
            sku,
            &HistoryFilter {
                limit: ledger_application::history::HISTORY_PAGE_ENTRIES_MAX,
                ..HistoryFilter::default()
            },
            None,
        )
        .await
        .unwrap()
        .entries;
        let movements = self
            .read_models
            .movements(
                sku,
                MovementFilter {
                    limit: ledger_projections::PAGE_SIZE_MAX,
                    ..MovementFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(movements.len(), expected.len(), "movements of {sku}");
        for (movement, entry) in movements.iter().zip(&expected) {
            assert_eq!(
                (
                    movement.version,
                    ledger_domain::Position::from(movement.position),
                    movement.event_id,
                    movement.movement.as_deref(),
                    movement.on_hand_change,
                    movement.reserved_change,
                    movement.on_hand_after,
                    movement.reserved_after,
                    movement.available_after,
                    movement.reorder_point_after,
                ),
                (
                    entry.version,
                    entry.position,
                    entry.event_id,
                    entry.movement,
                    entry.on_hand_change,
                    entry.reserved_change,
                    entry.on_hand_after,
                    entry.reserved_after,
                    entry.available_after,
                    entry.reorder_point_after,
                ),
                "movement of {sku}"
            );
            assert_eq!(
                (
                    &movement.reservation_id,
                    &movement.order_id,
                    &movement.reason,
                    &movement.reference,
                    &movement.actor,
                    &movement.correlation_id,
                    movement.recorded_at
                ),
                (
                    &entry.reservation_id,
                    &entry.order_id,
                    &entry.reason,
                    &entry.reference,
                    &entry.principal,
                    &entry.correlation_id,
                    entry.recorded_at
                )
            );
        }
    }

    /// Compare the SKU's alerts with a plain replay of the rule; returns the notifications the
    /// SKU should have produced.
    async fn assert_alerts(&self, sku: &Sku) -> usize {
        let expected = expected_alerts(self.store.as_ref(), sku).await;
        let mut alerts = self
            .read_models
            .alert_history(sku, ledger_projections::PAGE_SIZE_MAX)
            .await
            .unwrap();
        alerts.reverse();
        let projected: Vec<ExpectedAlert> = alerts
            .iter()
            .map(|a| ExpectedAlert {
                opened_version: a.opened_version,
                available_at_open: a.available_at_open,
                reorder_point_at_open: a.reorder_point_at_open,
                closed_version: a.closed_version,
                close_reason: a.close_reason,
            })
            .collect();
        assert_eq!(projected, expected, "alert history of {sku}");
        let open: Vec<_> = alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Open)
            .collect();
        let state = self.fold(sku).await;
        assert_eq!(open.len(), usize::from(state.is_below_reorder_point()));
        expected.len()
            + expected
                .iter()
                .filter(|a| a.closed_version.is_some())
                .count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedAlert {
    pub opened_version: u64,
    pub available_at_open: u64,
    pub reorder_point_at_open: u64,
    pub closed_version: Option<u64>,
    pub close_reason: Option<AlertCloseReason>,
}

/// The alert rule per location, replayed plainly from the SKU's stream with the history's own
/// per-location fold: an alert is a run of events after which the location's available was below
/// its reorder point.
pub async fn expected_location_alerts(
    store: &dyn EventStore,
    sku: &Sku,
) -> BTreeMap<String, Vec<ExpectedAlert>> {
    let mut balances: BTreeMap<String, ledger_domain::Balances> = BTreeMap::new();
    let mut alerts: BTreeMap<String, Vec<ExpectedAlert>> = BTreeMap::new();
    replay(store, sku, |recorded, event, _, _| {
        for location in event.locations_moved() {
            let at = balances.entry(location.to_owned()).or_default();
            let before = *at;
            at.apply_at(event, Some(location));
            let after = *at;
            follow_rule(
                alerts.entry(location.to_owned()).or_default(),
                recorded.version,
                event,
                (&before, &after),
            );
        }
        true
    })
    .await
    .unwrap();
    alerts
}

/// The alert rule, replayed plainly from the SKU's stream: the reference model.
pub async fn expected_alerts(store: &dyn EventStore, sku: &Sku) -> Vec<ExpectedAlert> {
    let mut alerts: Vec<ExpectedAlert> = Vec::new();
    replay(store, sku, |recorded, event, before, after| {
        follow_rule(
            &mut alerts,
            recorded.version,
            event,
            (
                &ledger_domain::Balances {
                    on_hand: before.on_hand,
                    reserved: before.reserved,
                    reorder_point: before.reorder_point,
                    in_transit: 0,
                },
                &ledger_domain::Balances::of(after),
            ),
        );
        true
    })
    .await
    .unwrap();
    alerts
}

/// One step of the reference rule: after the event at `version` took the balances from `before`
/// to `after`, open an alert when below and none is open, close the open one when not below.
fn follow_rule(
    alerts: &mut Vec<ExpectedAlert>,
    version: u64,
    event: &SkuEvent,
    (before, after): (&ledger_domain::Balances, &ledger_domain::Balances),
) {
    let open = alerts.last().is_some_and(|a| a.closed_version.is_none());
    let below = after.available() < after.reorder_point;
    if below && !open {
        alerts.push(ExpectedAlert {
            opened_version: version,
            available_at_open: after.available(),
            reorder_point_at_open: after.reorder_point,
            closed_version: None,
            close_reason: None,
        });
    } else if !below && open {
        let last = alerts.last_mut().unwrap();
        last.closed_version = Some(version);
        last.close_reason = Some(
            if matches!(event, SkuEvent::ReorderPointSet(_))
                && after.reorder_point < before.reorder_point
            {
                AlertCloseReason::ReorderPointLowered
            } else {
                AlertCloseReason::Recovered
            },
        );
    }
}

pub fn test_options() -> ProjectorOptions {
    ProjectorOptions {
        lock_retry_interval_ms: TEST_LOCK_RETRY_INTERVAL_MS,
        ..ProjectorOptions::default()
    }
}

/// A fixed mixed history over a few SKUs: stock arriving, reservations ending every way,
/// adjustments and reorder points that open and close alerts.
pub async fn mixed_history(ledger: &Ledger, rounds: u64) {
    for round in 0..rounds {
        for (index, sku) in ["ALPHA", "BETA", "GAMMA"].iter().enumerate() {
            let id = format!("r{round}");
            ledger.run(sku, set_reorder_point(5 + index as i64)).await;
            ledger.run(sku, replenish(4 + round % 5)).await;
            ledger.run(sku, reserve(&id, 1 + round % 3, Some(60))).await;
            match round % 3 {
                0 => ledger.run(sku, release(&id)).await,
                1 => ledger.run(sku, confirm(&id)).await,
                _ => {
                    ledger.clock.advance(61);
                    ledger.run(sku, expire(&id)).await;
                }
            }
            ledger.run(sku, adjust(-1)).await;
            // Stock at a second location, and a transfer from it (received whole, short, or
            // cancelled), so the per-location read model and its transfers are exercised.
            // The store's own reorder point moves so its alerts open (the dispatch below takes
            // it under) and close (the receipt or cancellation, or the point lowered).
            let transfer = format!("t{round}");
            ledger
                .run(
                    sku,
                    set_reorder_point_at("store-12", 2 - (round % 2) as i64),
                )
                .await;
            ledger.run(sku, replenish_at("store-12", 3)).await;
            ledger
                .run(sku, dispatch(&transfer, "store-12", "wh-1", 2))
                .await;
            match round % 3 {
                0 => ledger.run(sku, receive(&transfer, None)).await,
                1 => ledger.run(sku, receive(&transfer, Some(1))).await,
                _ => ledger.run(sku, cancel_transfer(&transfer)).await,
            }
        }
    }
}

/// Every row of a table, as JSON text in a stable order, for comparing two schemas.
pub async fn dump(database: &Database, schema: &SchemaName, table: &str) -> Vec<String> {
    let client = database.pool().get().await.unwrap();
    client
        .query(
            &format!("SELECT row_to_json(t)::text AS row FROM {schema}.{table} t ORDER BY 1"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Every table of every live projection, dumped.
pub async fn dump_all(database: &Database) -> BTreeMap<String, Vec<String>> {
    let mut dumps = BTreeMap::new();
    for projection in ledger_projections::all() {
        let schema = SchemaName::live(projection.name());
        for table in projection.tables() {
            dumps.insert(
                format!("{schema}.{table}"),
                dump(database, &schema, table).await,
            );
        }
    }
    dumps
}
