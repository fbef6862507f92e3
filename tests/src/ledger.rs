//! A ledger for end-to-end tests on a fresh PostgreSQL database: the Postgres event store, a
//! command handler on a clock the test moves, the read models migrated, projectors started on
//! demand and waited for by polling with a deadline; and commands built from plain values.

use crate::postgres::{TestDatabase, TEST_POOL_SIZE};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use ledger_application::command::{Clock, CommandContext, CommandError};
use ledger_application::handler::CommandHandler;
use ledger_application::EventStore;
use ledger_domain::{
    AdjustStock, AdjustmentDelta, ConfirmReservation, ExpireReservation, OrderId, Position,
    Quantity, Reason, ReleaseReservation, ReorderPoint, ReplenishStock, ReservationId,
    ReserveStock, SetReorderPoint, Sku, SkuCommand, TtlSeconds,
};
use ledger_postgres::{Database, PostgresStore};
use ledger_projections::schema_name::SchemaName;
use ledger_projections::{ProjectorOptions, ProjectorSet, ReadModels};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a test waits for projectors (or any polled condition) before failing.
pub const CATCH_UP_DEADLINE_MS: u64 = 60_000;

/// Pause between polls while waiting for a condition.
pub const POLL_INTERVAL_MS: u64 = 20;

/// The principal recorded on the commands a test ledger runs.
pub const TEST_PRINCIPAL: &str = "tester";

/// A clock that stands still until the test moves it.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn starting_at(now: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(now)))
    }

    pub fn advance(&self, seconds: i64) {
        let mut now = self.0.lock().unwrap();
        *now += ChronoDuration::seconds(seconds);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

pub struct TestLedger {
    pub store: Arc<PostgresStore>,
    pub database: Database,
    pub handler: CommandHandler<PostgresStore>,
    pub clock: Arc<ManualClock>,
    pub read_models: ReadModels,
    pub test_database: TestDatabase,
}

impl TestLedger {
    /// A ledger on a fresh database, its clock at the start of 2030.
    pub async fn new() -> Self {
        Self::on(TestDatabase::create().await).await
    }

    /// A ledger on `test_database` as it is (fresh, or holding a restored ledger), its clock at
    /// the start of 2030.
    pub async fn on(test_database: TestDatabase) -> Self {
        let database = test_database.database(TEST_POOL_SIZE);
        let store = Arc::new(
            PostgresStore::open(database.clone())
                .await
                .expect("open the event store"),
        );
        ledger_projections::migrate(&database)
            .await
            .expect("migrate the read models");
        let clock = ManualClock::starting_at(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
        let handler = CommandHandler::with_clock(store.clone(), clock.clone());
        Self {
            store,
            read_models: ReadModels::new(database.clone()),
            database,
            handler,
            clock,
            test_database,
        }
    }

    /// Run a command; business rejections are part of random histories and are ignored.
    pub async fn run(&self, sku: &str, command: SkuCommand) {
        let context = CommandContext {
            principal: Some(TEST_PRINCIPAL.into()),
            correlation_id: Some(format!("corr-{}", uuid::Uuid::new_v4().simple())),
            ..CommandContext::default()
        };
        match self.handler.execute(&sku_of(sku), &command, &context).await {
            Ok(_) | Err(CommandError::Rejected(_)) => {}
            Err(other) => panic!("command failed: {other}"),
        }
    }

    /// The handler's "now".
    pub fn handler_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Start projectors with `options`; stop them with [`RunningProjectors::stop`].
    pub fn spawn(&self, options: ProjectorOptions) -> RunningProjectors {
        let (stop, shutdown) = watch::channel(false);
        let set = ProjectorSet::spawn(
            self.store.clone() as Arc<dyn EventStore>,
            self.database.clone(),
            options,
            shutdown,
        );
        RunningProjectors { set, stop }
    }

    /// The position of the newest committed event, read from the table itself: the store's
    /// head only shows events below the oldest running transaction, and a projector's own
    /// batch transaction can hold that back for a moment.
    pub async fn last_committed_position(&self) -> Option<Position> {
        let client = self.database.pool().get().await.unwrap();
        client
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
            })
    }

    /// Wait until every projection's checkpoint has reached the newest committed event.
    pub async fn wait_caught_up(&self) {
        self.wait_caught_up_within(CATCH_UP_DEADLINE_MS).await;
    }

    pub async fn wait_caught_up_within(&self, deadline_ms: u64) {
        let target = self.last_committed_position().await;
        let database = self.database.clone();
        wait_until_within(
            "projections catch up with the newest event",
            deadline_ms,
            || {
                let database = database.clone();
                async move {
                    let client = database.pool().get().await.unwrap();
                    for projection in ledger_projections::all() {
                        let checkpoint = ledger_projections::checkpoint::load(
                            &**client,
                            &SchemaName::live(projection.name()),
                            projection.name(),
                        )
                        .await
                        .unwrap();
                        if checkpoint.position < target {
                            return false;
                        }
                    }
                    true
                }
            },
        )
        .await;
    }
}

/// Projectors a test started.
pub struct RunningProjectors {
    pub set: ProjectorSet,
    pub stop: watch::Sender<bool>,
}

impl RunningProjectors {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_millis(CATCH_UP_DEADLINE_MS), self.set.join())
            .await
            .expect("projectors stop within the deadline");
    }
}

/// Poll `condition` until it holds, failing the test after [`CATCH_UP_DEADLINE_MS`].
pub async fn wait_until<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until_within(what, CATCH_UP_DEADLINE_MS, condition).await;
}

/// Poll `condition` until it holds, failing the test after `deadline_ms`.
pub async fn wait_until_within<F, Fut>(what: &str, deadline_ms: u64, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(deadline_ms);
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {deadline_ms} ms waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

pub fn sku_of(sku: &str) -> Sku {
    Sku::parse(sku).unwrap()
}

pub fn replenish(quantity: u64) -> SkuCommand {
    SkuCommand::Replenish(ReplenishStock {
        quantity: Quantity::new(quantity).unwrap(),
        reference: None,
        location: ledger_domain::LocationId::default_location(),
    })
}

/// A reserve for order `order-<id>`, with a time-to-live when given.
pub fn reserve(id: &str, quantity: u64, ttl_seconds: Option<i64>) -> SkuCommand {
    SkuCommand::Reserve(ReserveStock {
        reservation_id: ReservationId::parse(id).unwrap(),
        order_id: Some(OrderId::parse(&format!("order-{id}")).unwrap()),
        quantity: Quantity::new(quantity).unwrap(),
        ttl_seconds: ttl_seconds.map(|t| TtlSeconds::new(t).unwrap()),
        allocation: ledger_domain::Allocation::default(),
    })
}

pub fn release(id: &str) -> SkuCommand {
    release_because(id, "cart abandoned")
}

pub fn release_because(id: &str, reason: &str) -> SkuCommand {
    SkuCommand::Release(ReleaseReservation {
        reservation_id: ReservationId::parse(id).unwrap(),
        reason: Some(Reason::parse(reason).unwrap()),
    })
}

pub fn confirm(id: &str) -> SkuCommand {
    SkuCommand::Confirm(ConfirmReservation {
        reservation_id: ReservationId::parse(id).unwrap(),
    })
}

pub fn expire(id: &str) -> SkuCommand {
    SkuCommand::Expire(ExpireReservation {
        reservation_id: ReservationId::parse(id).unwrap(),
    })
}

pub fn adjust(delta: i64) -> SkuCommand {
    adjust_because(delta, "cycle count")
}

pub fn adjust_because(delta: i64, reason: &str) -> SkuCommand {
    SkuCommand::Adjust(AdjustStock {
        delta: AdjustmentDelta::new(delta).unwrap(),
        reason: Reason::parse(reason).unwrap(),
        reference: None,
        location: ledger_domain::LocationId::default_location(),
    })
}

pub fn set_reorder_point(reorder_point: i64) -> SkuCommand {
    SkuCommand::SetReorderPoint(SetReorderPoint {
        reorder_point: ReorderPoint::new(reorder_point).unwrap(),
        location: ledger_domain::LocationId::default_location(),
    })
}

pub fn set_reorder_point_at(location: &str, reorder_point: i64) -> SkuCommand {
    SkuCommand::SetReorderPoint(SetReorderPoint {
        reorder_point: ReorderPoint::new(reorder_point).unwrap(),
        location: ledger_domain::LocationId::parse(location).unwrap(),
    })
}

pub fn replenish_at(location: &str, quantity: u64) -> SkuCommand {
    SkuCommand::Replenish(ReplenishStock {
        quantity: Quantity::new(quantity).unwrap(),
        reference: None,
        location: ledger_domain::LocationId::parse(location).unwrap(),
    })
}

pub fn dispatch(id: &str, from: &str, to: &str, quantity: u64) -> SkuCommand {
    SkuCommand::DispatchTransfer(ledger_domain::DispatchTransfer {
        transfer_id: ledger_domain::TransferId::parse(id).unwrap(),
        from_location: ledger_domain::LocationId::parse(from).unwrap(),
        to_location: ledger_domain::LocationId::parse(to).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        reference: None,
    })
}

/// Receive a transfer: everything dispatched, or `received` units with a discrepancy reason.
pub fn receive(id: &str, received: Option<u64>) -> SkuCommand {
    SkuCommand::ReceiveTransfer(ledger_domain::ReceiveTransfer {
        transfer_id: ledger_domain::TransferId::parse(id).unwrap(),
        quantity_received: received,
        discrepancy_reason: received.map(|_| Reason::parse("damaged in transit").unwrap()),
    })
}

pub fn cancel_transfer(id: &str) -> SkuCommand {
    SkuCommand::CancelTransfer(ledger_domain::CancelTransfer {
        transfer_id: ledger_domain::TransferId::parse(id).unwrap(),
        reason: Some(Reason::parse("not needed").unwrap()),
    })
}
