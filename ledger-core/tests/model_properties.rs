//! The command handler and the SKU aggregate against a plain reference model.
//!
//! Random command sequences run through the real handler on the in-memory store, and after each
//! command the handler's answer and the stored state must match what a few lines of independent
//! bookkeeping expect from the written rules. The sequences draw from a small pool of
//! reservation ids, order ids, quantities and TTLs, so that duplicates, conflicts, releases of
//! ended reservations and expiries (the clock advances between commands) happen often rather
//! than by luck. At the end the stored stream is replayed from scratch and must rebuild the same
//! state. A second property checks that deciding a queue at once (`decide_sequence`) means the
//! same as executing it command by command, and plain tests pin down idempotency keys and
//! expected versions.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ledger_core::domain::{
    AdjustStock, AdjustmentDelta, ConfirmReservation, DomainError, ExpireReservation, OrderId,
    Quantity, Reason, ReleaseReservation, ReorderPoint, ReorderPointSet, ReplenishStock,
    ReservationConfirmed, ReservationExpired, ReservationId, ReservationReleased,
    ReservationStatus, ReserveStock, SetReorderPoint, Sku, SkuCommand, SkuEvent, SkuState,
    StockAdjusted, StockReplenished, StockReserved, TtlSeconds, ON_HAND_MAX,
};
use ledger_core::handler::{
    Clock, CommandContext, CommandError, CommandHandler, CommandOutcome, VersionedEvent,
};
use ledger_core::store::memory::MemoryStore;
use ledger_core::store::EventStore;
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex};

/// Reservation ids the sequences draw from. Six ids across up to sixty commands means many
/// releases, confirms and expiries hit a reservation that exists and many reserves reuse an id,
/// while fresh ids remain for reserves late in a sequence.
const RESERVATION_IDS: [&str; 6] = ["res-0", "res-1", "res-2", "res-3", "res-4", "res-5"];

/// Order ids the sequences draw from; a reserve may also carry none.
const ORDER_IDS: [&str; 2] = ["order-a", "order-b"];

/// TTLs the sequences draw from; a reserve may also carry none. Clock steps of up to 45 s make
/// both expire within a few steps, so expiry is sometimes too early and sometimes on time.
const TTL_CHOICES_SECONDS: [u64; 2] = [30, 60];

/// Share of reserves that carry a TTL. Most do, as checkout holds do, so that the expiry worker's
/// command meets reservations it can expire.
const TTL_SHARE: f64 = 0.75;

/// Longest clock step between two commands.
const CLOCK_STEP_SECONDS_MAX: u64 = 45;

/// Longest random sequence. Long enough to exhaust stock, end reservations and retry them; short
/// enough that 128 cases in a debug build finish in a few seconds.
const STEPS_MAX: usize = 60;

/// Cases of the main property. Enough to meet every rejection many times per run (a run of
/// 5,000 cases found nothing more), while the whole file stays well under 20 s in a debug build.
const MODEL_PROPERTY_CASES: u32 = 128;

/// Cases of the `decide_sequence` property, which is cheaper and narrower than the main one.
const SEQUENCE_PROPERTY_CASES: u32 = 64;

/// The largest stream a test reads in one call, the store's own page limit.
const READ_EVENTS_MAX: u64 = 4096;

const RELEASE_REASON: &str = "cart abandoned";
const ADJUSTMENT_REASON: &str = "cycle count";

// ---------------------------------------------------------------------------------------------
// Test support: clock, runtime, SKU
// ---------------------------------------------------------------------------------------------

/// A clock that moves only when the test says so, so that expiry is decided at known moments
/// without any test waiting for real time to pass.
struct TestClock {
    now: Mutex<DateTime<Utc>>,
}

impl TestClock {
    fn starting_at(now: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            now: Mutex::new(now),
        })
    }

    fn advance(&self, seconds: u64) {
        let mut now = self.now.lock().expect("test clock lock poisoned");
        *now += Duration::seconds(seconds as i64);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("test clock lock poisoned")
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 17, 9, 30, 0).unwrap()
}

fn sku() -> Sku {
    Sku::parse("SHOE-42").unwrap()
}

/// A runtime per proptest case: proptest's body is synchronous, and a fresh single-threaded
/// runtime keeps cases independent of one another.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

fn handler_with_clock(clock: Arc<TestClock>) -> (CommandHandler<MemoryStore>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    (CommandHandler::with_clock(store.clone(), clock), store)
}

fn fail(context: impl Display, error: impl Display) -> TestCaseError {
    TestCaseError::fail(format!("{context}: {error}"))
}

// ---------------------------------------------------------------------------------------------
// Commands in plain terms, shared by the model and the generators
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct PlainReserve {
    reservation_id: String,
    order_id: Option<String>,
    quantity: u64,
    ttl_seconds: Option<u64>,
}

/// A command as plain values. The model reads these directly, so that it shares no code with
/// the domain beyond the shapes of the expected events and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PlainCommand {
    Replenish { quantity: u64 },
    Reserve(PlainReserve),
    Release { reservation_id: String },
    Expire { reservation_id: String },
    Confirm { reservation_id: String },
    Adjust { delta: i64 },
    SetReorderPoint { reorder_point: u64 },
}

impl PlainCommand {
    fn to_sku_command(&self) -> SkuCommand {
        let id = |value: &str| ReservationId::parse(value).unwrap();
        match self {
            Self::Replenish { quantity } => SkuCommand::Replenish(ReplenishStock {
                quantity: Quantity::new(*quantity).unwrap(),
                reference: None,
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
            }),
            Self::SetReorderPoint { reorder_point } => {
                SkuCommand::SetReorderPoint(SetReorderPoint {
                    reorder_point: ReorderPoint::new(*reorder_point as i64).unwrap(),
                })
            }
        }
    }
}

/// One step of a random scenario: a command, or something around commands that a real client
/// or the passage of time brings.
#[derive(Debug, Clone)]
enum Step {
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

fn reservation_id() -> impl Strategy<Value = String> {
    proptest::sample::select(RESERVATION_IDS.to_vec()).prop_map(str::to_owned)
}

fn reserve_request() -> impl Strategy<Value = PlainReserve> {
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
fn plain_command() -> impl Strategy<Value = PlainCommand> {
    prop_oneof![
        3 => (1u64..=8).prop_map(|quantity| PlainCommand::Replenish { quantity }),
        5 => reserve_request().prop_map(PlainCommand::Reserve),
        2 => reservation_id().prop_map(|reservation_id| PlainCommand::Release { reservation_id }),
        4 => reservation_id().prop_map(|reservation_id| PlainCommand::Expire { reservation_id }),
        2 => reservation_id().prop_map(|reservation_id| PlainCommand::Confirm { reservation_id }),
        2 => prop_oneof![-6i64..=-1, 1i64..=6].prop_map(|delta| PlainCommand::Adjust { delta }),
        1 => (0u64..=8).prop_map(|reorder_point| PlainCommand::SetReorderPoint { reorder_point }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
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
struct ModelReservation {
    order_id: Option<String>,
    quantity: u64,
    ttl_seconds: Option<u64>,
    expires_at: Option<DateTime<Utc>>,
    status: ReservationStatus,
}

/// The rules as written in the design, kept as plain bookkeeping. It predicts the one event an
/// accepted command appends, so the stored history can be compared event by event too.
#[derive(Debug, Default)]
struct Model {
    on_hand: u64,
    reserved: u64,
    reorder_point: u64,
    reservations: HashMap<String, ModelReservation>,
    events: Vec<SkuEvent>,
}

/// What the model expects an accepted command to do.
#[derive(Debug)]
enum Expected {
    /// Append this one event.
    Appends(SkuEvent),
    /// Append nothing: an identical reserve of an existing reservation id.
    Unchanged,
}

impl Model {
    /// The stream version the model's history implies: events minus one, none when empty.
    fn version(&self) -> Option<u64> {
        (self.events.len() as u64).checked_sub(1)
    }

    /// The request an existing reservation was made with, or a small default for an unused id.
    fn request_again(&self, reservation_id: &str) -> PlainCommand {
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
    fn execute(
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

    fn decide(
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
                })))
            }
            PlainCommand::Release { reservation_id } => {
                let (order_id, quantity) = self.end(reservation_id, ReservationStatus::Released)?;
                Ok(Expected::Appends(SkuEvent::Released(ReservationReleased {
                    reservation_id: reservation_id.clone(),
                    order_id,
                    quantity,
                    reason: Some(RELEASE_REASON.to_owned()),
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
                })))
            }
            PlainCommand::SetReorderPoint { reorder_point } => {
                let previous_reorder_point = self.reorder_point;
                self.reorder_point = *reorder_point;
                Ok(Expected::Appends(SkuEvent::ReorderPointSet(
                    ReorderPointSet {
                        reorder_point: *reorder_point,
                        previous_reorder_point,
                    },
                )))
            }
        }
    }

    /// The open reservation `reservation_id`, or the rejection for an unknown or ended one.
    fn open(&self, reservation_id: &str) -> Result<&ModelReservation, DomainError> {
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
    fn end(
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
async fn assert_agrees_with_model(
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
async fn assert_replay_rebuilds_the_state(
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

// ---------------------------------------------------------------------------------------------
// Property: the handler agrees with the model
// ---------------------------------------------------------------------------------------------

/// The previous command sent, for `Step::RetryPrevious`.
struct Previous {
    command: PlainCommand,
    idempotency_key: String,
    /// The events the command appended, once it has appended any: a retry must get exactly
    /// these back and append nothing.
    appended: Option<Vec<VersionedEvent>>,
}

async fn run_against_model(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let clock = TestClock::starting_at(start());
    let (handler, store) = handler_with_clock(clock.clone());
    let sku = sku();
    let mut model = Model::default();
    let mut previous: Option<Previous> = None;

    for (index, step) in steps.iter().enumerate() {
        let (command, idempotency_key, appended_before) = match step {
            Step::AdvanceClock { seconds } => {
                clock.advance(*seconds);
                continue;
            }
            Step::Command(command) => (command.clone(), format!("step-{index}"), None),
            Step::ReserveAgain { reservation_id } => (
                model.request_again(reservation_id),
                format!("step-{index}"),
                None,
            ),
            Step::RetryPrevious => match &previous {
                None => continue,
                Some(previous) => (
                    previous.command.clone(),
                    previous.idempotency_key.clone(),
                    previous.appended.clone(),
                ),
            },
        };
        let context = format!("step {index} ({step:?}) at {}", clock.now());
        let command_context = CommandContext {
            idempotency_key: Some(idempotency_key.clone()),
            ..CommandContext::default()
        };
        let result = handler
            .execute(&sku, &command.to_sku_command(), &command_context)
            .await;

        let appended = match appended_before {
            // A retry of a command that appended: the original outcome, and the model must not
            // move, whatever deciding the command again would say now.
            Some(original) => {
                let outcome = result.map_err(|e| fail(&context, e))?;
                prop_assert!(outcome.deduplicated, "{}: retry not deduplicated", context);
                prop_assert_eq!(&outcome.events, &original, "{}: retry events", context);
                Some(original)
            }
            None => {
                let version_before = model.version();
                let expected = model.execute(&command, clock.now());
                check_outcome(&context, version_before, expected, result)?
            }
        };
        previous = Some(Previous {
            command,
            idempotency_key,
            appended,
        });
        assert_agrees_with_model(&handler, &model, &context).await?;
    }

    assert_replay_rebuilds_the_state(&handler, &store, &model).await
}

/// Compare the handler's answer with the model's, and return the events appended if any.
fn check_outcome(
    context: &str,
    version_before: Option<u64>,
    expected: Result<Expected, DomainError>,
    actual: Result<CommandOutcome, CommandError>,
) -> Result<Option<Vec<VersionedEvent>>, TestCaseError> {
    match (expected, actual) {
        (Ok(Expected::Appends(event)), Ok(outcome)) => {
            let version = version_before.map_or(0, |v| v + 1);
            let expected_events = vec![VersionedEvent { version, event }];
            prop_assert!(!outcome.deduplicated, "{}: marked deduplicated", context);
            prop_assert_eq!(&outcome.events, &expected_events, "{}: events", context);
            prop_assert!(outcome.position.is_some(), "{}: no position", context);
            prop_assert_eq!(outcome.state.version, Some(version), "{}", context);
            Ok(Some(outcome.events))
        }
        (Ok(Expected::Unchanged), Ok(outcome)) => {
            prop_assert!(outcome.deduplicated, "{}: not deduplicated", context);
            prop_assert!(
                outcome.events.is_empty(),
                "{}: {:?}",
                context,
                outcome.events
            );
            prop_assert_eq!(outcome.position, None, "{}: position", context);
            Ok(None)
        }
        (Err(expected), Err(CommandError::Rejected(actual))) => {
            prop_assert_eq!(actual, expected, "{}: rejection", context);
            Ok(None)
        }
        (expected, actual) => Err(fail(
            context,
            format!("the model expected {expected:?}, the handler answered {actual:?}"),
        )),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: MODEL_PROPERTY_CASES,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_handler_agrees_with_the_reference_model_after_every_command(
        steps in vec(step(), 1..=STEPS_MAX)
    ) {
        runtime().block_on(run_against_model(steps))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Property: deciding a queue at once means the same as executing it command by command
// ---------------------------------------------------------------------------------------------

/// Decide `commands` with `decide_sequence` and execute them through the handler at the same
/// moment, comparing each answer.
async fn compare_batch_with_handler(
    state: &mut SkuState,
    handler: &CommandHandler<MemoryStore>,
    commands: &[PlainCommand],
    now: DateTime<Utc>,
    batch: &str,
) -> Result<(), TestCaseError> {
    let sku_commands: Vec<SkuCommand> = commands.iter().map(PlainCommand::to_sku_command).collect();
    let decided = state.decide_sequence(&sku_commands, now);
    prop_assert_eq!(decided.len(), sku_commands.len());

    for (index, (command, decision)) in sku_commands.iter().zip(decided).enumerate() {
        let context = format!("{batch} command {index} ({command:?})");
        let executed = handler
            .execute(&sku(), command, &CommandContext::default())
            .await;
        match (decision, executed) {
            (Ok(events), Ok(outcome)) => {
                let executed_events: Vec<SkuEvent> =
                    outcome.events.into_iter().map(|v| v.event).collect();
                prop_assert_eq!(&executed_events, &events, "{}: events", context);
                prop_assert_eq!(
                    outcome.deduplicated,
                    events.is_empty(),
                    "{}: deduplicated",
                    context
                );
            }
            (Err(decided), Err(CommandError::Rejected(executed))) => {
                prop_assert_eq!(executed, decided, "{}: rejection", context);
            }
            (decision, executed) => {
                return Err(fail(
                    context,
                    format!("decide_sequence gave {decision:?}, the handler {executed:?}"),
                ))
            }
        }
    }
    Ok(())
}

async fn compare_sequence_with_handler(
    first: Vec<PlainCommand>,
    pause_seconds: u64,
    second: Vec<PlainCommand>,
) -> Result<(), TestCaseError> {
    let clock = TestClock::starting_at(start());
    let (handler, _store) = handler_with_clock(clock.clone());
    let mut state = SkuState::new(sku());

    compare_batch_with_handler(&mut state, &handler, &first, clock.now(), "first batch").await?;
    // Two batches at two moments, so that reservations made in the first can expire in the
    // second; within one batch every command is decided at the same moment.
    clock.advance(pause_seconds);
    compare_batch_with_handler(&mut state, &handler, &second, clock.now(), "second batch").await?;

    let loaded = handler
        .load(&sku())
        .await
        .map_err(|e| fail("loading", e))?
        .state;
    prop_assert_eq!(&state, &loaded, "final states differ");
    if let Err(broken) = state.check_invariants() {
        return Err(fail("final state", broken));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: SEQUENCE_PROPERTY_CASES,
        ..ProptestConfig::default()
    })]

    #[test]
    fn decide_sequence_agrees_with_executing_the_commands_one_by_one(
        first in vec(plain_command(), 0..=30),
        pause_seconds in 0u64..=90,
        second in vec(plain_command(), 0..=30),
    ) {
        runtime().block_on(compare_sequence_with_handler(first, pause_seconds, second))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys and expected versions
// ---------------------------------------------------------------------------------------------

fn replenish(quantity: u64) -> SkuCommand {
    PlainCommand::Replenish { quantity }.to_sku_command()
}

fn reserve(reservation_id: &str, quantity: u64) -> SkuCommand {
    PlainCommand::Reserve(PlainReserve {
        reservation_id: reservation_id.to_owned(),
        order_id: None,
        quantity,
        ttl_seconds: None,
    })
    .to_sku_command()
}

fn release(reservation_id: &str) -> SkuCommand {
    PlainCommand::Release {
        reservation_id: reservation_id.to_owned(),
    }
    .to_sku_command()
}

fn keyed(idempotency_key: &str) -> CommandContext {
    CommandContext {
        idempotency_key: Some(idempotency_key.to_owned()),
        ..CommandContext::default()
    }
}

fn at_version(expected_version: Option<u64>) -> CommandContext {
    CommandContext {
        expected_version: Some(expected_version),
        ..CommandContext::default()
    }
}

async fn stream_length(store: &MemoryStore) -> usize {
    store
        .read_stream(&sku().stream(), 0, READ_EVENTS_MAX)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_command_retried_with_the_same_idempotency_key_returns_the_original_outcome_and_appends_nothing(
) {
    let (handler, store) = handler_with_clock(TestClock::starting_at(start()));
    let sku = sku();
    let replenished = handler
        .execute(&sku, &replenish(10), &keyed("replenish-1"))
        .await
        .unwrap();
    let reserved = handler
        .execute(&sku, &reserve("r-1", 4), &keyed("reserve-1"))
        .await
        .unwrap();
    // Someone else moves the SKU on before the retries arrive.
    handler
        .execute(&sku, &replenish(5), &CommandContext::default())
        .await
        .unwrap();
    let head_before = store.head_position().await.unwrap();

    let reserve_retried = handler
        .execute(&sku, &reserve("r-1", 4), &keyed("reserve-1"))
        .await
        .unwrap();
    let replenish_retried = handler
        .execute(&sku, &replenish(10), &keyed("replenish-1"))
        .await
        .unwrap();

    assert!(reserve_retried.deduplicated);
    assert_eq!(reserve_retried.events, reserved.events);
    assert_eq!(reserve_retried.position, reserved.position);
    assert!(replenish_retried.deduplicated);
    assert_eq!(replenish_retried.events, replenished.events);
    assert_eq!(replenish_retried.position, replenished.position);
    assert_eq!(store.head_position().await.unwrap(), head_before);
    assert_eq!(stream_length(&store).await, 3);
    // The state reported with a recognised retry is the current one, not the one at the time.
    let current = handler.load(&sku).await.unwrap().state;
    assert_eq!(reserve_retried.state, current.summary());
    assert_eq!((current.on_hand, current.reserved), (15, 4));
}

#[tokio::test]
async fn a_release_retried_after_it_succeeded_returns_the_original_outcome_not_already_released() {
    let (handler, store) = handler_with_clock(TestClock::starting_at(start()));
    let sku = sku();
    let unkeyed = CommandContext::default();
    handler
        .execute(&sku, &replenish(10), &unkeyed)
        .await
        .unwrap();
    handler
        .execute(&sku, &reserve("r-1", 4), &unkeyed)
        .await
        .unwrap();
    let released = handler
        .execute(&sku, &release("r-1"), &keyed("release-1"))
        .await
        .unwrap();

    let retried = handler
        .execute(&sku, &release("r-1"), &keyed("release-1"))
        .await
        .unwrap();

    assert!(retried.deduplicated);
    assert_eq!(retried.events, released.events);
    assert_eq!(retried.events[0].version, 2);
    assert_eq!(retried.position, released.position);
    assert_eq!(stream_length(&store).await, 3);
    // Without the key the same release is decided again, and refused: this is what the key
    // saves a client from after a timeout.
    let error = handler
        .execute(&sku, &release("r-1"), &unkeyed)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CommandError::Rejected(DomainError::ReservationClosed {
                status: ReservationStatus::Released,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(stream_length(&store).await, 3);
}

#[tokio::test]
async fn a_stale_expected_version_is_refused_with_version_mismatch_and_appends_nothing() {
    let (handler, store) = handler_with_clock(TestClock::starting_at(start()));
    let sku = sku();
    handler
        .execute(&sku, &replenish(10), &at_version(None))
        .await
        .unwrap();
    handler
        .execute(&sku, &replenish(5), &at_version(Some(0)))
        .await
        .unwrap();
    let head_before = store.head_position().await.unwrap();

    let stale = handler
        .execute(&sku, &reserve("r-1", 4), &at_version(Some(0)))
        .await
        .unwrap_err();
    let expecting_no_stream = handler
        .execute(&sku, &reserve("r-1", 4), &at_version(None))
        .await
        .unwrap_err();

    assert!(
        matches!(
            stale,
            CommandError::VersionMismatch {
                expected: Some(0),
                actual: Some(1)
            }
        ),
        "{stale:?}"
    );
    assert!(
        matches!(
            expecting_no_stream,
            CommandError::VersionMismatch {
                expected: None,
                actual: Some(1)
            }
        ),
        "{expecting_no_stream:?}"
    );
    assert_eq!(store.head_position().await.unwrap(), head_before);
    assert_eq!(stream_length(&store).await, 2);
    // The current version is accepted, so the refusals above were about staleness alone.
    let current = handler
        .execute(&sku, &reserve("r-1", 4), &at_version(Some(1)))
        .await
        .unwrap();
    assert_eq!(current.state.version, Some(2));
}

#[tokio::test]
async fn a_retry_whose_expected_version_has_since_gone_stale_still_gets_its_original_outcome() {
    // A client that sent If-Match and timed out retries the same request; by then its own
    // command has moved the version on, and it must learn that the command succeeded rather
    // than be told the SKU changed.
    let (handler, store) = handler_with_clock(TestClock::starting_at(start()));
    let sku = sku();
    handler
        .execute(&sku, &replenish(10), &CommandContext::default())
        .await
        .unwrap();
    let context = CommandContext {
        idempotency_key: Some("reserve-1".to_owned()),
        expected_version: Some(Some(0)),
        ..CommandContext::default()
    };
    let reserved = handler
        .execute(&sku, &reserve("r-1", 4), &context)
        .await
        .unwrap();

    let retried = handler
        .execute(&sku, &reserve("r-1", 4), &context)
        .await
        .unwrap();

    assert!(retried.deduplicated);
    assert_eq!(retried.events, reserved.events);
    assert_eq!(stream_length(&store).await, 2);
}

// ---------------------------------------------------------------------------------------------
// Property: the single writer answers a queue as the handler executing it one by one
// ---------------------------------------------------------------------------------------------

/// Cases of the single-writer and snapshot properties.
const WRITER_PROPERTY_CASES: u32 = 64;

/// Idempotency keys a queue draws from, so that retries within one batch are common.
const QUEUE_KEYS: [&str; 4] = ["key-0", "key-1", "key-2", "key-3"];

fn keyed_command() -> impl Strategy<Value = (PlainCommand, Option<String>)> {
    (
        plain_command(),
        proptest::option::weighted(0.3, proptest::sample::select(QUEUE_KEYS.to_vec())),
    )
        .prop_map(|(command, key)| (command, key.map(str::to_owned)))
}

fn summary_of(outcome: &Result<CommandOutcome, CommandError>) -> String {
    match outcome {
        Ok(outcome) => format!(
            "ok events={:?} deduplicated={} state={:?}",
            outcome.events, outcome.deduplicated, outcome.state
        ),
        Err(CommandError::Rejected(rejected)) => format!("rejected {rejected:?}"),
        Err(other) => format!("error {other}"),
    }
}

/// Queue `queues` at a fresh single writer, every command of a queue at once (so they meet in
/// one batch), and run the same commands through a plain handler on another store one by one.
/// Every answer and the final stream must be the same.
async fn compare_writer_with_handler(
    queues: Vec<Vec<(PlainCommand, Option<String>)>>,
) -> Result<(), TestCaseError> {
    use ledger_core::writer::SkuWriters;
    let clock = TestClock::starting_at(start());
    let (handler, store) = handler_with_clock(clock.clone());
    let (reference, reference_store) = handler_with_clock(clock.clone());
    let writers = SkuWriters::new(handler);
    let the_sku = sku();
    for (index, queue) in queues.into_iter().enumerate() {
        let sent = queue.iter().map(|(command, key)| {
            let context = CommandContext {
                idempotency_key: key.clone(),
                ..CommandContext::default()
            };
            writers.execute(&the_sku, command.to_sku_command(), context)
        });
        let answers = futures::future::join_all(sent).await;
        for (position, ((command, key), answer)) in queue.iter().zip(answers).enumerate() {
            let context = CommandContext {
                idempotency_key: key.clone(),
                ..CommandContext::default()
            };
            let expected = reference
                .execute(&sku(), &command.to_sku_command(), &context)
                .await;
            prop_assert_eq!(
                summary_of(&answer),
                summary_of(&expected),
                "queue {} command {} ({:?}, key {:?})",
                index,
                position,
                command,
                key
            );
        }
        clock.advance(20);
    }
    let written = store
        .read_stream(&sku().stream(), 0, READ_EVENTS_MAX)
        .await
        .unwrap();
    let expected = reference_store
        .read_stream(&sku().stream(), 0, READ_EVENTS_MAX)
        .await
        .unwrap();
    let events = |stream: &[ledger_core::RecordedEvent]| {
        stream
            .iter()
            .map(|e| {
                // Event ids are random unless derived from an idempotency key.
                let id = e.metadata.idempotency_key.as_ref().map(|_| e.event_id);
                (e.version, id, e.event_type.clone(), e.data.clone())
            })
            .collect::<Vec<_>>()
    };
    prop_assert_eq!(events(&written), events(&expected), "the streams differ");
    let current = writers
        .current(&sku())
        .await
        .map_err(|e| fail("current", e))?;
    let replayed = reference
        .replay(&sku())
        .await
        .map_err(|e| fail("replay", e))?;
    prop_assert_eq!(current, replayed.state.summary());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: WRITER_PROPERTY_CASES,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_single_writer_answers_a_queue_as_the_handler_executing_it_one_by_one(
        queues in vec(vec(keyed_command(), 1..=25), 1..=4)
    ) {
        runtime().block_on(compare_writer_with_handler(queues))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Property: loading from a snapshot equals replaying the whole stream
// ---------------------------------------------------------------------------------------------

async fn compare_snapshot_loads_with_replay(
    steps: Vec<(PlainCommand, Option<String>, u64)>,
    interval: u64,
) -> Result<(), TestCaseError> {
    use ledger_core::snapshot::{MemorySnapshots, SnapshotStore};
    let clock = TestClock::starting_at(start());
    let snapshots = MemorySnapshots::new();
    let (handler, _store) = handler_with_clock(clock.clone());
    let handler = handler
        .with_snapshots(Arc::new(snapshots.clone()))
        .with_snapshot_interval(interval);
    let mut used_a_snapshot = false;
    for (index, (command, key, seconds)) in steps.iter().enumerate() {
        let context = CommandContext {
            idempotency_key: key.clone(),
            ..CommandContext::default()
        };
        let _ = handler
            .execute(&sku(), &command.to_sku_command(), &context)
            .await;
        clock.advance(*seconds);
        // Let the background snapshot saves run.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let loaded = handler.load(&sku()).await.map_err(|e| fail("load", e))?;
        let replayed = handler
            .replay(&sku())
            .await
            .map_err(|e| fail("replay", e))?;
        prop_assert_eq!(&loaded.state, &replayed.state, "state after step {}", index);
        prop_assert_eq!(
            loaded.remembered_keys(),
            replayed.remembered_keys(),
            "remembered keys after step {}",
            index
        );
        if let Some(snapshot) = snapshots.load(&sku().stream()).await.unwrap() {
            prop_assert!(Some(snapshot.version) <= replayed.state.version);
        }
    }
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    if let Some(snapshot) = snapshots.load(&sku().stream()).await.unwrap() {
        used_a_snapshot = true;
        let loaded = handler.load(&sku()).await.map_err(|e| fail("load", e))?;
        let replayed = handler
            .replay(&sku())
            .await
            .map_err(|e| fail("replay", e))?;
        prop_assert_eq!(
            &loaded.state,
            &replayed.state,
            "state from the last snapshot"
        );
        prop_assert!(Some(snapshot.version) <= replayed.state.version);
    }
    let events = handler
        .replay(&sku())
        .await
        .unwrap()
        .state
        .version
        .map_or(0, |v| v + 1);
    prop_assert_eq!(
        used_a_snapshot,
        events >= interval,
        "a snapshot exists exactly when the stream reached the interval"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: WRITER_PROPERTY_CASES,
        ..ProptestConfig::default()
    })]

    #[test]
    fn loading_from_a_snapshot_equals_replaying_the_whole_stream(
        steps in vec(
            (plain_command(),
             proptest::option::weighted(0.3, proptest::sample::select(QUEUE_KEYS.to_vec()))
                 .prop_map(|k| k.map(str::to_owned)),
             0u64..=40),
            1..=STEPS_MAX),
        interval in 1u64..=8,
    ) {
        runtime().block_on(compare_snapshot_loads_with_replay(steps, interval))?;
    }
}

#[tokio::test]
async fn a_snapshot_that_does_not_match_the_stream_is_discarded_and_the_stream_replayed() {
    use ledger_core::snapshot::{MemorySnapshots, Snapshot, SnapshotStore};
    let snapshots = MemorySnapshots::new();
    let store = Arc::new(MemoryStore::new());
    let handler = CommandHandler::new(store.clone()).with_snapshots(Arc::new(snapshots.clone()));
    for quantity in [5, 7] {
        handler
            .execute(&sku(), &replenish(quantity), &CommandContext::default())
            .await
            .unwrap();
    }
    // A snapshot from another store (same version, another event id) that claims 1,000 units.
    let mut foreign = SkuState::new(sku());
    foreign.on_hand = 1_000;
    foreign.version = Some(1);
    snapshots.put(Snapshot {
        stream: sku().stream(),
        version: 1,
        last_event_id: uuid::Uuid::new_v4(),
        state: foreign,
        recent_keys: Vec::new(),
    });
    let loaded = handler.load(&sku()).await.unwrap();
    assert_eq!(loaded.state.on_hand, 12);
    assert!(snapshots.load(&sku().stream()).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Two writers of one SKU (two processes): the expected version keeps them honest
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_of_one_sku_never_oversell_and_see_each_others_events() {
    use ledger_core::writer::SkuWriters;
    const STOCK: u64 = 200;
    const RESERVES: usize = 1_000;
    let store = Arc::new(MemoryStore::new());
    let first = SkuWriters::new(CommandHandler::new(store.clone()));
    let second = SkuWriters::new(CommandHandler::new(store.clone()));

    // The first writer caches the SKU while it has no stock; the second replenishes. A reserve
    // through the first must not be refused on its stale cache.
    first
        .execute(&sku(), replenish(1), CommandContext::default())
        .await
        .unwrap();
    first
        .execute(&sku(), reserve("warm-up", 1), CommandContext::default())
        .await
        .unwrap();
    second
        .execute(&sku(), replenish(STOCK), CommandContext::default())
        .await
        .unwrap();
    assert_eq!(first.current(&sku()).await.unwrap().available, STOCK);

    let mut tasks = Vec::new();
    for index in 0..RESERVES {
        let writers = if index % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            // A client retries a "too much contention" answer, as it would a 503.
            loop {
                let answer = writers
                    .execute(
                        &sku(),
                        reserve(&format!("hold-{index}"), 1),
                        CommandContext::default(),
                    )
                    .await;
                if !matches!(answer, Err(CommandError::ContentionRetriesExhausted { .. })) {
                    return answer;
                }
            }
        }));
    }
    let mut reserved = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcome) => {
                assert!(!outcome.deduplicated);
                reserved += 1;
            }
            Err(CommandError::Rejected(DomainError::InsufficientStock { .. })) => {}
            Err(other) => panic!("unexpected answer: {other}"),
        }
    }
    assert_eq!(reserved, STOCK);
    let replayed = CommandHandler::new(store.clone())
        .replay(&sku())
        .await
        .unwrap();
    assert_eq!(replayed.state.reserved, STOCK + 1);
    assert_eq!(replayed.state.available(), 0);
    replayed.state.check_invariants().unwrap();
    assert_eq!(
        first.current(&sku()).await.unwrap(),
        replayed.state.summary()
    );
    assert_eq!(
        second.current(&sku()).await.unwrap(),
        replayed.state.summary()
    );
}
