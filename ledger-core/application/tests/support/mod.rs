//! The reference model and the test support every property of the decision loop shares: a
//! controllable clock, commands in plain terms with their generators, a model that keeps the
//! written rules as plain bookkeeping (idempotency keys included), and the checks that compare
//! a loaded SKU with it.
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use ledger_application::command::{Clock, CommandContext, VersionedEvent};
use ledger_application::handler::CommandHandler;
use ledger_application::store::memory::MemoryStore;
use ledger_application::store::EventStore;
use ledger_domain::{
    AdjustStock, AdjustmentDelta, ConfirmReservation, DomainError, ExpireReservation, OrderId,
    Quantity, Reason, ReleaseReservation, ReorderPoint, ReorderPointSet, ReplenishStock,
    ReservationConfirmed, ReservationExpired, ReservationId, ReservationReleased,
    ReservationStatus, ReserveStock, SetReorderPoint, Sku, SkuCommand, SkuEvent, SkuState,
    StockAdjusted, StockReplenished, StockReserved, TtlSeconds, ON_HAND_MAX,
};
use proptest::prelude::*;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex};

/// Reservation ids the sequences draw from. Six ids across up to sixty commands means many
/// releases, confirms and expiries hit a reservation that exists and many reserves reuse an id,
/// while fresh ids remain for reserves late in a sequence.
pub const RESERVATION_IDS: [&str; 6] = ["res-0", "res-1", "res-2", "res-3", "res-4", "res-5"];

/// Order ids the sequences draw from; a reserve may also carry none.
pub const ORDER_IDS: [&str; 2] = ["order-a", "order-b"];

/// TTLs the sequences draw from; a reserve may also carry none. Clock steps of up to 45 s make
/// both expire within a few steps, so expiry is sometimes too early and sometimes on time.
pub const TTL_CHOICES_SECONDS: [u64; 2] = [30, 60];

/// Share of reserves that carry a TTL. Most do, as checkout holds do, so that the expiry worker's
/// command meets reservations it can expire.
pub const TTL_SHARE: f64 = 0.75;

/// Longest clock step between two commands.
pub const CLOCK_STEP_SECONDS_MAX: u64 = 45;

/// Longest random sequence. Long enough to exhaust stock, end reservations and retry them; short
/// enough that 128 cases in a debug build finish in a few seconds.
pub const STEPS_MAX: usize = 60;

/// Cases of the main property. Enough to meet every rejection many times per run (a run of
/// 5,000 cases found nothing more), while the whole file stays well under 20 s in a debug build.
pub const MODEL_PROPERTY_CASES: u32 = 128;

/// Cases of the queued-batches, snapshot and two-writer properties, which cost more per case.
pub const BATCH_PROPERTY_CASES: u32 = 64;

/// Idempotency keys a queue draws from, so that retries within one batch are common.
pub const QUEUE_KEYS: [&str; 4] = ["key-0", "key-1", "key-2", "key-3"];

/// The largest stream a test reads in one call, the store's own page limit.
pub const READ_EVENTS_MAX: u64 = 4096;

pub const RELEASE_REASON: &str = "cart abandoned";
pub const ADJUSTMENT_REASON: &str = "cycle count";

// ---------------------------------------------------------------------------------------------
// Test support: clock, runtime, SKU
// ---------------------------------------------------------------------------------------------

/// A clock that moves only when the test says so, so that expiry is decided at known moments
/// without any test waiting for real time to pass.
pub struct TestClock {
    pub now: Mutex<DateTime<Utc>>,
}

impl TestClock {
    pub fn starting_at(now: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            now: Mutex::new(now),
        })
    }

    pub fn advance(&self, seconds: u64) {
        let mut now = self.now.lock().expect("test clock lock poisoned");
        *now += Duration::seconds(seconds as i64);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("test clock lock poisoned")
    }
}

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 17, 9, 30, 0).unwrap()
}

pub fn sku() -> Sku {
    Sku::parse("SHOE-42").unwrap()
}

/// A runtime per proptest case: proptest's body is synchronous, and a fresh single-threaded
/// runtime keeps cases independent of one another.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

pub fn handler_with_clock(
    clock: Arc<TestClock>,
) -> (CommandHandler<MemoryStore>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    (CommandHandler::with_clock(store.clone(), clock), store)
}

pub fn fail(context: impl Display, error: impl Display) -> TestCaseError {
    TestCaseError::fail(format!("{context}: {error}"))
}

// ---------------------------------------------------------------------------------------------
// Commands in plain terms, shared by the model and the generators
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainReserve {
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub quantity: u64,
    pub ttl_seconds: Option<u64>,
}

/// A command as plain values. The model reads these directly, so that it shares no code with
/// the domain beyond the shapes of the expected events and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlainCommand {
    Replenish { quantity: u64 },
    Reserve(PlainReserve),
    Release { reservation_id: String },
    Expire { reservation_id: String },
    Confirm { reservation_id: String },
    Adjust { delta: i64 },
    SetReorderPoint { reorder_point: u64 },
}

impl PlainCommand {
    pub fn to_sku_command(&self) -> SkuCommand {
        let id = |value: &str| ReservationId::parse(value).unwrap();
        match self {
            Self::Replenish { quantity } => SkuCommand::Replenish(ReplenishStock {
                quantity: Quantity::new(*quantity).unwrap(),
                reference: None,
                location: ledger_domain::LocationId::default_location(),
            }),
            Self::Reserve(request) => SkuCommand::Reserve(ReserveStock {
                reservation_id: id(&request.reservation_id),
                order_id: request
                    .order_id
                    .as_deref()
                    .map(|o| OrderId::parse(o).unwrap()),
                quantity: Quantity::new(request.quantity).unwrap(),
                ttl_seconds: request
                    .ttl_seconds
                    .map(|t| TtlSeconds::new(t as i64).unwrap()),
                allocation: ledger_domain::Allocation::default(),
            }),
            Self::Release { reservation_id } => SkuCommand::Release(ReleaseReservation {
                reservation_id: id(reservation_id),
                reason: Some(Reason::parse(RELEASE_REASON).unwrap()),
            }),
            Self::Expire { reservation_id } => SkuCommand::Expire(ExpireReservation {
                reservation_id: id(reservation_id),
            }),
            Self::Confirm { reservation_id } => SkuCommand::Confirm(ConfirmReservation {
                reservation_id: id(reservation_id),
            }),
            Self::Adjust { delta } => SkuCommand::Adjust(AdjustStock {
                delta: AdjustmentDelta::new(*delta).unwrap(),
                reason: Reason::parse(ADJUSTMENT_REASON).unwrap(),
                reference: None,
                location: ledger_domain::LocationId::default_location(),
            }),
            Self::SetReorderPoint { reorder_point } => {
                SkuCommand::SetReorderPoint(SetReorderPoint {
                    reorder_point: ReorderPoint::new(*reorder_point as i64).unwrap(),
                    location: ledger_domain::LocationId::default_location(),
                })
            }
        }
    }
}

/// One step of a random scenario: a command, or something around commands that a real client
/// or the passage of time brings.
#[derive(Debug, Clone)]
pub enum Step {
    Command(PlainCommand),
    /// Send exactly the request an existing reservation was made with (a client retrying its
    /// reserve under a new idempotency key), so identical duplicates are common rather than a
    /// rare coincidence of random quantity, order and TTL.
    ReserveAgain {
        reservation_id: String,
    },
    AdvanceClock {
        seconds: u64,
    },
    /// Send the previous command again with its idempotency key, as a client does after a
    /// timeout.
    RetryPrevious,
}

pub fn reservation_id() -> impl Strategy<Value = String> {
    proptest::sample::select(RESERVATION_IDS.to_vec()).prop_map(str::to_owned)
}

pub fn reserve_request() -> impl Strategy<Value = PlainReserve> {
    (
        reservation_id(),
        proptest::option::of(proptest::sample::select(ORDER_IDS.to_vec())),
        1u64..=3,
        proptest::option::weighted(
            TTL_SHARE,
            proptest::sample::select(TTL_CHOICES_SECONDS.to_vec()),
        ),
    )
        .prop_map(
            |(reservation_id, order_id, quantity, ttl_seconds)| PlainReserve {
                reservation_id,
                order_id: order_id.map(str::to_owned),
                quantity,
                ttl_seconds,
            },
        )
}

/// Commands weighted so stock is both plentiful and scarce over a run: replenishments add about
/// as many units as reserves take, and adjustments go both ways.
pub fn plain_command() -> impl Strategy<Value = PlainCommand> {
    prop_oneof![
        3 => (1u64..=8).prop_map(|quantity| PlainCommand::Replenish { quantity }),
        5 => reserve_request().prop_map(PlainCommand::Reserve),
        2 => reservation_id().prop_map(|reservation_id| PlainCommand::Release { reservation_id }),
        4 => reservation_id().prop_map(|reservation_id| PlainCommand::Expire { reservation_id }),
        2 => reservation_id().prop_map(|reservation_id| PlainCommand::Confirm { reservation_id }),
        2 => prop_oneof![-6i64..=-1, 1i64..=6].prop_map(|delta| PlainCommand::Adjust { delta }),
        1 => (0u64..=8).prop_map(|reorder_point| PlainCommand::SetReorderPoint { reorder_point,}),
    ]
}

/// A command with, three times in ten, an idempotency key from a small pool.
pub fn keyed_command() -> impl Strategy<Value = (PlainCommand, Option<String>)> {
    (
        plain_command(),
        proptest::option::weighted(0.3, proptest::sample::select(QUEUE_KEYS.to_vec())),
    )
        .prop_map(|(command, key)| (command, key.map(str::to_owned)))
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        17 => plain_command().prop_map(Step::Command),
        2 => reservation_id().prop_map(|reservation_id| Step::ReserveAgain { reservation_id }),
        5 => (1u64..=CLOCK_STEP_SECONDS_MAX).prop_map(|seconds| Step::AdvanceClock { seconds }),
        2 => Just(Step::RetryPrevious),
    ]
}

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ModelReservation {
    pub order_id: Option<String>,
    pub quantity: u64,
    pub ttl_seconds: Option<u64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub status: ReservationStatus,
}

/// The rules as written in the design, kept as plain bookkeeping. It predicts the one event an
/// accepted command appends, so the stored history can be compared event by event too.
#[derive(Debug, Default)]
pub struct Model {
    pub on_hand: u64,
    pub reserved: u64,
    pub reorder_point: u64,
    pub reservations: HashMap<String, ModelReservation>,
    pub events: Vec<SkuEvent>,
    /// Idempotency keys of commands that appended, with what they appended: a later command
    /// with the same key gets exactly that back, whatever it asks.
    pub keys: HashMap<String, Vec<VersionedEvent>>,
}

/// What the model expects a command's answer to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Carried out: these events (none when nothing was written), and whether the command was
    /// recognised as already done.
    Done {
        events: Vec<VersionedEvent>,
        deduplicated: bool,
    },
    Rejected(DomainError),
}

/// The balances a SKU summary reports, in plain numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balances {
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub reorder_point: u64,
    pub open_reservations: u64,
    pub version: Option<u64>,
}

impl Balances {
    pub fn of(summary: &ledger_domain::SkuSummary) -> Self {
        Self {
            on_hand: summary.on_hand,
            reserved: summary.reserved,
            available: summary.available,
            reorder_point: summary.reorder_point,
            open_reservations: summary.open_reservations,
            version: summary.version,
        }
    }
}

/// What the model expects an accepted command to do.
#[derive(Debug)]
pub enum Expected {
    /// Append this one event.
    Appends(SkuEvent),
    /// Append nothing: an identical reserve of an existing reservation id.
    Unchanged,
}

impl Model {
    /// The stream version the model's history implies: events minus one, none when empty.
    pub fn version(&self) -> Option<u64> {
        (self.events.len() as u64).checked_sub(1)
    }

    /// Carry out `command` with idempotency key `key` at `now`: a remembered key gets its
    /// original events back and nothing changes; otherwise the command is decided by the rules
    /// and, when it appends, its key is remembered.
    pub fn execute_keyed(
        &mut self,
        command: &PlainCommand,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Answer {
        if let Some(events) = key.and_then(|key| self.keys.get(key)) {
            return Answer::Done {
                events: events.clone(),
                deduplicated: true,
            };
        }
        let version = self.version().map_or(0, |v| v + 1);
        match self.execute(command, now) {
            Ok(Expected::Appends(event)) => {
                let events = vec![VersionedEvent { version, event }];
                if let Some(key) = key {
                    self.keys.insert(key.to_owned(), events.clone());
                }
                Answer::Done {
                    events,
                    deduplicated: false,
                }
            }
            Ok(Expected::Unchanged) => Answer::Done {
                events: Vec::new(),
                deduplicated: true,
            },
            Err(rejected) => Answer::Rejected(rejected),
        }
    }

    /// The model's balances now, as a SKU summary reports them.
    pub fn balances(&self) -> Balances {
        Balances {
            on_hand: self.on_hand,
            reserved: self.reserved,
            available: self.on_hand - self.reserved,
            reorder_point: self.reorder_point,
            open_reservations: self
                .reservations
                .values()
                .filter(|r| r.status == ReservationStatus::Open)
                .count() as u64,
            version: self.version(),
        }
    }

    /// The request an existing reservation was made with, or a small default for an unused id.
    pub fn request_again(&self, reservation_id: &str) -> PlainCommand {
        let request = match self.reservations.get(reservation_id) {
            Some(existing) => PlainReserve {
                reservation_id: reservation_id.to_owned(),
                order_id: existing.order_id.clone(),
                quantity: existing.quantity,
                ttl_seconds: existing.ttl_seconds,
            },
            None => PlainReserve {
                reservation_id: reservation_id.to_owned(),
                order_id: None,
                quantity: 1,
                ttl_seconds: None,
            },
        };
        PlainCommand::Reserve(request)
    }

    /// Decide `command` at `now` by the written rules and, when accepted, record its effect.
    pub fn execute(
        &mut self,
        command: &PlainCommand,
        now: DateTime<Utc>,
    ) -> Result<Expected, DomainError> {
        let expected = self.decide(command, now)?;
        if let Expected::Appends(event) = &expected {
            self.events.push(event.clone());
        }
        Ok(expected)
    }

    pub fn decide(
        &mut self,
        command: &PlainCommand,
        now: DateTime<Utc>,
    ) -> Result<Expected, DomainError> {
        match command {
            PlainCommand::Replenish { quantity } => {
                let on_hand_after = self.on_hand + quantity;
                if on_hand_after > ON_HAND_MAX {
                    return Err(DomainError::OnHandLimitExceeded {
                        on_hand_after,
                        limit: ON_HAND_MAX,
                    });
                }
                self.on_hand = on_hand_after;
                Ok(Expected::Appends(SkuEvent::Replenished(StockReplenished {
                    quantity: *quantity,
                    reference: None,
                    location: ledger_domain::DEFAULT_LOCATION.to_owned(),
                })))
            }
            PlainCommand::Reserve(request) => {
                if let Some(existing) = self.reservations.get(&request.reservation_id) {
                    let same = existing.quantity == request.quantity
                        && existing.order_id == request.order_id
                        && existing.ttl_seconds == request.ttl_seconds;
                    return if same {
                        Ok(Expected::Unchanged)
                    } else {
                        Err(DomainError::ReservationIdConflict {
                            reservation_id: request.reservation_id.clone(),
                            existing_quantity: existing.quantity,
                            existing_order_id: existing.order_id.clone(),
                            existing_ttl_seconds: existing.ttl_seconds,
                        })
                    };
                }
                let available = self.on_hand - self.reserved;
                if request.quantity > available {
                    return Err(DomainError::InsufficientStock {
                        requested: request.quantity,
                        available,
                        location: Some(ledger_domain::DEFAULT_LOCATION.to_owned()),
                    });
                }
                let expires_at = request
                    .ttl_seconds
                    .map(|ttl| now + Duration::seconds(ttl as i64));
                self.reserved += request.quantity;
                self.reservations.insert(
                    request.reservation_id.clone(),
                    ModelReservation {
                        order_id: request.order_id.clone(),
                        quantity: request.quantity,
                        ttl_seconds: request.ttl_seconds,
                        expires_at,
                        status: ReservationStatus::Open,
                    },
                );
                Ok(Expected::Appends(SkuEvent::Reserved(StockReserved {
                    reservation_id: request.reservation_id.clone(),
                    order_id: request.order_id.clone(),
                    quantity: request.quantity,
                    ttl_seconds: request.ttl_seconds,
                    expires_at,
                    location: ledger_domain::DEFAULT_LOCATION.to_owned(),
                })))
            }
            PlainCommand::Release { reservation_id } => {
                let (order_id, quantity) = self.end(reservation_id, ReservationStatus::Released)?;
                Ok(Expected::Appends(SkuEvent::Released(ReservationReleased {
                    reservation_id: reservation_id.clone(),
                    order_id,
                    quantity,
                    reason: Some(RELEASE_REASON.to_owned()),
                    location: ledger_domain::DEFAULT_LOCATION.to_owned(),
                })))
            }
            PlainCommand::Expire { reservation_id } => {
                let reservation = self.open(reservation_id)?;
                let expires_at = match reservation.expires_at {
                    None => {
                        return Err(DomainError::ReservationHasNoExpiry {
                            reservation_id: reservation_id.clone(),
                        })
                    }
                    Some(expires_at) if now < expires_at => {
                        return Err(DomainError::ReservationNotYetExpired {
                            reservation_id: reservation_id.clone(),
                            expires_at,
                        })
                    }
                    Some(expires_at) => expires_at,
                };
                let (order_id, quantity) = self.end(reservation_id, ReservationStatus::Expired)?;
                Ok(Expected::Appends(SkuEvent::Expired(ReservationExpired {
                    reservation_id: reservation_id.clone(),
                    order_id,
                    quantity,
                    expires_at,
                    location: ledger_domain::DEFAULT_LOCATION.to_owned(),
                })))
            }
            PlainCommand::Confirm { reservation_id } => {
                let (order_id, quantity) =
                    self.end(reservation_id, ReservationStatus::Confirmed)?;
                self.on_hand -= quantity;
                Ok(Expected::Appends(SkuEvent::Confirmed(
                    ReservationConfirmed {
                        reservation_id: reservation_id.clone(),
                        order_id,
                        quantity,
                        location: ledger_domain::DEFAULT_LOCATION.to_owned(),
                    },
                )))
            }
            PlainCommand::Adjust { delta } => {
                let on_hand_after = self.on_hand as i64 + delta;
                if on_hand_after < self.reserved as i64 {
                    return Err(DomainError::AdjustmentBelowReserved {
                        delta: *delta,
                        on_hand_after,
                        reserved: self.reserved,
                        location: Some(ledger_domain::DEFAULT_LOCATION.to_owned()),
                    });
                }
                if on_hand_after as u64 > ON_HAND_MAX {
                    return Err(DomainError::OnHandLimitExceeded {
                        on_hand_after: on_hand_after as u64,
                        limit: ON_HAND_MAX,
                    });
                }
                self.on_hand = on_hand_after as u64;
                Ok(Expected::Appends(SkuEvent::Adjusted(StockAdjusted {
                    delta: *delta,
                    reason: ADJUSTMENT_REASON.to_owned(),
                    reference: None,
                    location: ledger_domain::DEFAULT_LOCATION.to_owned(),
                })))
            }
            PlainCommand::SetReorderPoint { reorder_point } => {
                let previous_reorder_point = self.reorder_point;
                self.reorder_point = *reorder_point;
                Ok(Expected::Appends(SkuEvent::ReorderPointSet(
                    ReorderPointSet {
                        reorder_point: *reorder_point,
                        previous_reorder_point,
                        location: ledger_domain::DEFAULT_LOCATION.to_owned(),
                    },
                )))
            }
        }
    }

    /// The open reservation `reservation_id`, or the rejection for an unknown or ended one.
    pub fn open(&self, reservation_id: &str) -> Result<&ModelReservation, DomainError> {
        match self.reservations.get(reservation_id) {
            None => Err(DomainError::ReservationNotFound {
                reservation_id: reservation_id.to_owned(),
            }),
            Some(reservation) if reservation.status != ReservationStatus::Open => {
                Err(DomainError::ReservationClosed {
                    reservation_id: reservation_id.to_owned(),
                    status: reservation.status,
                })
            }
            Some(reservation) => Ok(reservation),
        }
    }

    /// End an open reservation with `status`, giving its units back from reserved. Returns its
    /// order id and quantity for the event.
    pub fn end(
        &mut self,
        reservation_id: &str,
        status: ReservationStatus,
    ) -> Result<(Option<String>, u64), DomainError> {
        self.open(reservation_id)?;
        let reservation = self
            .reservations
            .get_mut(reservation_id)
            .expect("checked open above");
        reservation.status = status;
        self.reserved -= reservation.quantity;
        Ok((reservation.order_id.clone(), reservation.quantity))
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// The state the handler loads now must be the model's, and must satisfy the invariants.
pub async fn assert_agrees_with_model(
    handler: &CommandHandler<MemoryStore>,
    model: &Model,
    context: &str,
) -> Result<SkuState, TestCaseError> {
    let state = handler
        .load(&sku())
        .await
        .map_err(|e| fail(context, e))?
        .state;

    // Checked before `available()` is called, since that subtraction would underflow otherwise.
    prop_assert!(
        state.reserved <= state.on_hand,
        "{}: available is negative: on hand {}, reserved {}",
        context,
        state.on_hand,
        state.reserved
    );
    prop_assert_eq!(state.on_hand, model.on_hand, "{}: on hand", context);
    prop_assert_eq!(state.reserved, model.reserved, "{}: reserved", context);
    prop_assert_eq!(
        state.available(),
        model.on_hand - model.reserved,
        "{}: available",
        context
    );
    prop_assert_eq!(
        state.reorder_point,
        model.reorder_point,
        "{}: reorder point",
        context
    );
    prop_assert_eq!(state.version, model.version(), "{}: version", context);

    let open: u64 = state.open_reservations().map(|r| r.quantity).sum();
    prop_assert_eq!(
        open,
        state.reserved,
        "{}: reserved is not the sum of open reservations",
        context
    );
    if let Err(broken) = state.check_invariants() {
        return Err(fail(context, broken));
    }

    prop_assert_eq!(
        state.reservations.len(),
        model.reservations.len(),
        "{}: reservation count",
        context
    );
    for (reservation_id, expected) in &model.reservations {
        let Some(actual) = state.reservations.get(reservation_id) else {
            return Err(fail(
                context,
                format!("reservation {reservation_id} is missing"),
            ));
        };
        let actual_fields = (
            &actual.order_id,
            actual.quantity,
            actual.ttl_seconds,
            actual.expires_at,
            actual.status,
        );
        let expected_fields = (
            &expected.order_id,
            expected.quantity,
            expected.ttl_seconds,
            expected.expires_at,
            expected.status,
        );
        prop_assert_eq!(
            actual_fields,
            expected_fields,
            "{}: reservation {}",
            context,
            reservation_id
        );
    }
    Ok(state)
}

/// Replay the stored stream into a fresh state: it must equal what the handler loads, with
/// versions 0..n and exactly the events the model predicted.
pub async fn assert_replay_rebuilds_the_state(
    handler: &CommandHandler<MemoryStore>,
    store: &MemoryStore,
    model: &Model,
) -> Result<(), TestCaseError> {
    let sku = sku();
    let recorded = store
        .read_stream(&sku.stream(), 0, READ_EVENTS_MAX)
        .await
        .map_err(|e| fail("reading the stream", e))?;

    let versions: Vec<u64> = recorded.iter().map(|r| r.version).collect();
    let expected_versions: Vec<u64> = (0..recorded.len() as u64).collect();
    prop_assert_eq!(versions, expected_versions, "versions have gaps");

    let mut replayed = SkuState::new(sku.clone());
    let mut events = Vec::with_capacity(recorded.len());
    for r in &recorded {
        let event = SkuEvent::decode(&r.event_type, r.schema_version, &r.data)
            .map_err(|e| fail(format!("decoding version {}", r.version), e))?;
        replayed.apply(&event);
        events.push(event);
    }
    prop_assert_eq!(
        &events,
        &model.events,
        "stored events differ from the model's"
    );

    let loaded = handler
        .load(&sku)
        .await
        .map_err(|e| fail("loading", e))?
        .state;
    prop_assert_eq!(replayed, loaded, "replay differs from the handler's state");
    Ok(())
}

pub fn replenish(quantity: u64) -> SkuCommand {
    PlainCommand::Replenish { quantity }.to_sku_command()
}

pub fn reserve(reservation_id: &str, quantity: u64) -> SkuCommand {
    PlainCommand::Reserve(PlainReserve {
        reservation_id: reservation_id.to_owned(),
        order_id: None,
        quantity,
        ttl_seconds: None,
    })
    .to_sku_command()
}

pub fn release(reservation_id: &str) -> SkuCommand {
    PlainCommand::Release {
        reservation_id: reservation_id.to_owned(),
    }
    .to_sku_command()
}

pub fn keyed(idempotency_key: &str) -> CommandContext {
    CommandContext {
        idempotency_key: Some(idempotency_key.to_owned()),
        ..CommandContext::default()
    }
}

pub fn at_version(expected_version: Option<u64>) -> CommandContext {
    CommandContext {
        expected_version: Some(expected_version),
        ..CommandContext::default()
    }
}

pub async fn stream_length(store: &MemoryStore) -> usize {
    store
        .read_stream(&sku().stream(), 0, READ_EVENTS_MAX)
        .await
        .unwrap()
        .len()
}
