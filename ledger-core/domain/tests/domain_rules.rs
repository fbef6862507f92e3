//! The business rules of one SKU, each as a given / when / then test against the aggregate:
//! given some recorded events, when a command is decided at a fixed moment, then it produces
//! these events (and the folded state looks like this) or is rejected with this error.
//!
//! The aggregate is pure, so these tests need no store, no clock and no runtime. The validated
//! values that commands are built from get a few tests at the end, for what the unit tests in
//! `values.rs` leave out (mostly which field an error names).

use chrono::{DateTime, Duration, TimeZone, Utc};
use ledger_domain::{
    AdjustStock, AdjustmentDelta, Allocation, ConfirmReservation, DomainError, ExpireReservation,
    LocationId, OrderId, Quantity, Reason, Reference, ReleaseReservation, ReorderPoint,
    ReorderPointSet, ReplenishStock, ReservationConfirmed, ReservationExpired, ReservationId,
    ReservationReleased, ReservationStatus, ReserveStock, SetReorderPoint, Sku, SkuCommand,
    SkuEvent, SkuState, StockAdjusted, StockReplenished, StockReserved, TtlSeconds,
    ValidationError, DEFAULT_LOCATION, IDENTIFIER_LENGTH_MAX, ON_HAND_MAX, QUANTITY_MAX,
    REASON_LENGTH_MAX, REFERENCE_LENGTH_MAX, RESERVATION_TTL_SECONDS_MAX,
};

// ---------------------------------------------------------------------------------------------
// Givens, commands and expectations
// ---------------------------------------------------------------------------------------------

/// The moment every decision is taken at. Fixed, so that expiry times in the expectations are
/// exact values rather than ranges.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 17, 9, 30, 0).unwrap()
}

fn sku() -> Sku {
    Sku::parse("SHOE-42").unwrap()
}

/// A SKU folded from `events`. The given history must itself be one that `decide` could have
/// produced, or a test would check a rule against an impossible state.
fn given(events: &[SkuEvent]) -> SkuState {
    let mut state = SkuState::new(sku());
    fold(&mut state, events);
    state
}

/// Fold `events`, checking that each raises the version by exactly one and that the state still
/// satisfies the invariants afterwards.
fn fold(state: &mut SkuState, events: &[SkuEvent]) {
    for event in events {
        let before = state.version;
        state.apply(event);
        assert_eq!(
            state.version,
            Some(before.map_or(0, |v| v + 1)),
            "folding {event:?} did not raise the version by one"
        );
    }
    if let Err(broken) = state.check_invariants() {
        panic!("the state breaks an invariant: {broken}\n{state:#?}");
    }
}

/// Decide `command` now, expect it to be accepted, and fold what it produced into `state`.
fn when_accepted(state: &mut SkuState, command: &SkuCommand) -> Vec<SkuEvent> {
    let events = state
        .decide(command, now())
        .unwrap_or_else(|error| panic!("{} was rejected: {error}", command.name()));
    fold(state, &events);
    events
}

/// Decide `command` now and expect a rejection. `decide` borrows the state immutably, so a
/// rejection cannot have changed it.
fn when_rejected(state: &SkuState, command: &SkuCommand) -> DomainError {
    match state.decide(command, now()) {
        Ok(events) => panic!("{} was accepted with {events:?}", command.name()),
        Err(error) => error,
    }
}

fn replenish(quantity: u64) -> SkuCommand {
    SkuCommand::Replenish(ReplenishStock {
        quantity: Quantity::new(quantity).unwrap(),
        reference: None,
        location: LocationId::default_location(),
    })
}

fn reserve(reservation_id: &str, quantity: u64) -> SkuCommand {
    reserve_request(reservation_id, None, quantity, None)
}

fn reserve_request(
    reservation_id: &str,
    order_id: Option<&str>,
    quantity: u64,
    ttl_seconds: Option<i64>,
) -> SkuCommand {
    SkuCommand::Reserve(ReserveStock {
        reservation_id: ReservationId::parse(reservation_id).unwrap(),
        order_id: order_id.map(|o| OrderId::parse(o).unwrap()),
        quantity: Quantity::new(quantity).unwrap(),
        ttl_seconds: ttl_seconds.map(|t| TtlSeconds::new(t).unwrap()),
        allocation: Allocation::default(),
    })
}

fn release(reservation_id: &str) -> SkuCommand {
    SkuCommand::Release(ReleaseReservation {
        reservation_id: ReservationId::parse(reservation_id).unwrap(),
        reason: Some(Reason::parse("cart abandoned").unwrap()),
    })
}

fn expire(reservation_id: &str) -> SkuCommand {
    SkuCommand::Expire(ExpireReservation {
        reservation_id: ReservationId::parse(reservation_id).unwrap(),
    })
}

fn confirm(reservation_id: &str) -> SkuCommand {
    SkuCommand::Confirm(ConfirmReservation {
        reservation_id: ReservationId::parse(reservation_id).unwrap(),
    })
}

fn adjust(delta: i64) -> SkuCommand {
    SkuCommand::Adjust(AdjustStock {
        delta: AdjustmentDelta::new(delta).unwrap(),
        reason: Reason::parse("cycle count").unwrap(),
        reference: Some(Reference::parse("COUNT-7").unwrap()),
        location: LocationId::default_location(),
    })
}

fn set_reorder_point(reorder_point: i64) -> SkuCommand {
    SkuCommand::SetReorderPoint(SetReorderPoint {
        reorder_point: ReorderPoint::new(reorder_point).unwrap(),
        location: LocationId::default_location(),
    })
}

fn replenished(quantity: u64) -> SkuEvent {
    SkuEvent::Replenished(StockReplenished {
        quantity,
        reference: None,
        location: DEFAULT_LOCATION.to_owned(),
    })
}

fn reserved(reservation_id: &str, quantity: u64) -> SkuEvent {
    SkuEvent::Reserved(StockReserved {
        reservation_id: reservation_id.to_owned(),
        order_id: None,
        quantity,
        ttl_seconds: None,
        expires_at: None,
        location: DEFAULT_LOCATION.to_owned(),
    })
}

fn reserved_with_ttl(
    reservation_id: &str,
    order_id: Option<&str>,
    quantity: u64,
    ttl_seconds: u64,
    expires_at: DateTime<Utc>,
) -> SkuEvent {
    SkuEvent::Reserved(StockReserved {
        reservation_id: reservation_id.to_owned(),
        order_id: order_id.map(str::to_owned),
        quantity,
        ttl_seconds: Some(ttl_seconds),
        expires_at: Some(expires_at),
        location: DEFAULT_LOCATION.to_owned(),
    })
}

fn released(reservation_id: &str, quantity: u64) -> SkuEvent {
    SkuEvent::Released(ReservationReleased {
        reservation_id: reservation_id.to_owned(),
        order_id: None,
        quantity,
        reason: None,
        location: DEFAULT_LOCATION.to_owned(),
    })
}

fn expired(reservation_id: &str, quantity: u64, expires_at: DateTime<Utc>) -> SkuEvent {
    SkuEvent::Expired(ReservationExpired {
        reservation_id: reservation_id.to_owned(),
        order_id: None,
        quantity,
        expires_at,
        location: DEFAULT_LOCATION.to_owned(),
    })
}

fn confirmed(reservation_id: &str, quantity: u64) -> SkuEvent {
    SkuEvent::Confirmed(ReservationConfirmed {
        reservation_id: reservation_id.to_owned(),
        order_id: None,
        quantity,
        location: DEFAULT_LOCATION.to_owned(),
    })
}

/// A history in which reservation `reservation_id` (4 units, a 60 s TTL that has long passed)
/// ended with `status`. The TTL has passed so that an expire could only be refused because the
/// reservation ended, never because of its expiry time.
fn ended_reservation(reservation_id: &str, status: ReservationStatus) -> Vec<SkuEvent> {
    let expires_at = now() - Duration::seconds(120);
    let ending = match status {
        ReservationStatus::Released => released(reservation_id, 4),
        ReservationStatus::Expired => expired(reservation_id, 4, expires_at),
        ReservationStatus::Confirmed => confirmed(reservation_id, 4),
        ReservationStatus::Open => panic!("an open reservation has not ended"),
    };
    vec![
        replenished(10),
        reserved_with_ttl(reservation_id, None, 4, 60, expires_at),
        ending,
    ]
}

const ENDED_STATUSES: [ReservationStatus; 3] = [
    ReservationStatus::Released,
    ReservationStatus::Expired,
    ReservationStatus::Confirmed,
];

// ---------------------------------------------------------------------------------------------
// A new SKU and versions
// ---------------------------------------------------------------------------------------------

#[test]
fn a_new_sku_has_no_version_and_nothing_in_stock() {
    let state = SkuState::new(sku());

    assert_eq!(state.version, None);
    assert_eq!(
        (state.on_hand, state.reserved, state.available()),
        (0, 0, 0)
    );
    assert_eq!(state.reorder_point, 0);
    assert!(state.reservations.is_empty());
    assert_eq!(state.check_invariants(), Ok(()));
}

#[test]
fn each_applied_event_raises_the_version_by_one_from_zero() {
    let mut state = SkuState::new(sku());

    state.apply(&replenished(5));
    assert_eq!(state.version, Some(0));
    state.apply(&reserved("r-1", 2));
    assert_eq!(state.version, Some(1));
    state.apply(&SkuEvent::ReorderPointSet(ReorderPointSet {
        reorder_point: 3,
        previous_reorder_point: 0,
        location: DEFAULT_LOCATION.to_owned(),
    }));

    // An event that moves no stock is still a revision of the stream.
    assert_eq!(state.version, Some(2));
}

// ---------------------------------------------------------------------------------------------
// Replenishing
// ---------------------------------------------------------------------------------------------

#[test]
fn replenishing_raises_on_hand_and_available() {
    let mut state = given(&[replenished(5), reserved("r-1", 2)]);

    let events = when_accepted(&mut state, &replenish(7));

    assert_eq!(events, vec![replenished(7)]);
    assert_eq!(state.on_hand, 12);
    assert_eq!(state.reserved, 2);
    assert_eq!(state.available(), 10);
}

#[test]
fn replenishing_records_its_reference() {
    let mut state = given(&[]);
    let command = SkuCommand::Replenish(ReplenishStock {
        quantity: Quantity::new(3).unwrap(),
        reference: Some(Reference::parse("PO-2024-118").unwrap()),
        location: LocationId::default_location(),
    });

    let events = when_accepted(&mut state, &command);

    assert_eq!(
        events,
        vec![SkuEvent::Replenished(StockReplenished {
            quantity: 3,
            reference: Some("PO-2024-118".to_owned()),
            location: DEFAULT_LOCATION.to_owned(),
        })]
    );
}

#[test]
fn replenishing_past_the_on_hand_limit_is_rejected() {
    // The given event is larger than one command may carry; events are facts, and a stock this
    // high can be reached by many replenishments.
    let state = given(&[replenished(ON_HAND_MAX - 5)]);

    let error = when_rejected(&state, &replenish(6));

    assert_eq!(
        error,
        DomainError::OnHandLimitExceeded {
            on_hand_after: ON_HAND_MAX + 1,
            limit: ON_HAND_MAX,
        }
    );
    assert_eq!(error.code(), "on-hand-limit-exceeded");
}

#[test]
fn replenishing_up_to_the_on_hand_limit_exactly_is_allowed() {
    let mut state = given(&[replenished(ON_HAND_MAX - 5)]);

    when_accepted(&mut state, &replenish(5));

    assert_eq!(state.on_hand, ON_HAND_MAX);
}

// ---------------------------------------------------------------------------------------------
// Reserving
// ---------------------------------------------------------------------------------------------

#[test]
fn reserving_holds_units_and_lowers_available() {
    let mut state = given(&[replenished(10)]);

    let events = when_accepted(
        &mut state,
        &reserve_request("r-1", Some("order-9"), 4, None),
    );

    assert_eq!(
        events,
        vec![SkuEvent::Reserved(StockReserved {
            reservation_id: "r-1".to_owned(),
            order_id: Some("order-9".to_owned()),
            quantity: 4,
            ttl_seconds: None,
            expires_at: None,
            location: DEFAULT_LOCATION.to_owned(),
        })]
    );
    assert_eq!(state.on_hand, 10, "a reservation does not move units");
    assert_eq!(state.reserved, 4);
    assert_eq!(state.available(), 6);
    let reservation = &state.reservations["r-1"];
    assert_eq!(reservation.status, ReservationStatus::Open);
    assert_eq!(reservation.quantity, 4);
    assert_eq!(reservation.order_id.as_deref(), Some("order-9"));
}

#[test]
fn reserving_more_than_available_is_rejected_with_the_available_quantity() {
    let state = given(&[replenished(10), reserved("r-1", 4)]);

    let error = when_rejected(&state, &reserve("r-2", 7));

    assert_eq!(
        error,
        DomainError::InsufficientStock {
            requested: 7,
            available: 6,
            location: Some(DEFAULT_LOCATION.to_owned()),
        }
    );
    assert_eq!(error.code(), "insufficient-stock");
}

#[test]
fn reserving_from_a_sku_without_stock_is_rejected() {
    let state = given(&[]);

    let error = when_rejected(&state, &reserve("r-1", 1));

    assert_eq!(
        error,
        DomainError::InsufficientStock {
            requested: 1,
            available: 0,
            location: Some(DEFAULT_LOCATION.to_owned()),
        }
    );
}

#[test]
fn reserving_exactly_the_available_quantity_succeeds() {
    let mut state = given(&[replenished(10), reserved("r-1", 4)]);

    when_accepted(&mut state, &reserve("r-2", 6));

    assert_eq!(state.available(), 0);
    assert_eq!(state.reserved, 10);
}

#[test]
fn a_reservation_with_a_ttl_records_expires_at_now_plus_the_ttl() {
    let mut state = given(&[replenished(10)]);

    let events = when_accepted(
        &mut state,
        &reserve_request("r-1", Some("order-9"), 2, Some(900)),
    );

    let expires_at = now() + Duration::seconds(900);
    assert_eq!(
        events,
        vec![reserved_with_ttl(
            "r-1",
            Some("order-9"),
            2,
            900,
            expires_at
        )]
    );
    assert_eq!(state.reservations["r-1"].expires_at, Some(expires_at));
    assert_eq!(state.reservations["r-1"].ttl_seconds, Some(900));
}

#[test]
fn a_reservation_without_a_ttl_has_no_expiry() {
    let mut state = given(&[replenished(10)]);

    when_accepted(&mut state, &reserve("r-1", 2));

    assert_eq!(state.reservations["r-1"].ttl_seconds, None);
    assert_eq!(state.reservations["r-1"].expires_at, None);
}

#[test]
fn reserving_again_with_an_existing_id_and_an_identical_request_produces_no_events() {
    let expires_at = now() - Duration::seconds(30);
    let state = given(&[
        replenished(10),
        reserved_with_ttl("r-1", Some("order-9"), 4, 60, expires_at),
    ]);

    // The retry arrives later than the original, so its own expiry would differ; the request is
    // still the same, and the original reservation stands.
    let events = state
        .decide(&reserve_request("r-1", Some("order-9"), 4, Some(60)), now())
        .unwrap();

    assert_eq!(events, Vec::<SkuEvent>::new());
}

#[test]
fn an_identical_retry_is_recognised_even_when_stock_no_longer_allows_it() {
    // A retry of a reserve that took the last units must not be refused for lack of stock: it
    // asks for nothing new.
    let state = given(&[replenished(4), reserved("r-1", 4)]);
    assert_eq!(state.available(), 0);

    let events = state.decide(&reserve("r-1", 4), now()).unwrap();

    assert!(events.is_empty());
}

#[test]
fn reserving_again_with_an_existing_id_and_a_different_quantity_is_rejected() {
    let state = given(&[
        replenished(10),
        reserved_with_ttl("r-1", Some("order-9"), 4, 60, now()),
    ]);

    let error = when_rejected(
        &state,
        &reserve_request("r-1", Some("order-9"), 5, Some(60)),
    );

    assert_eq!(
        error,
        DomainError::ReservationIdConflict {
            reservation_id: "r-1".to_owned(),
            existing_quantity: 4,
            existing_order_id: Some("order-9".to_owned()),
            existing_ttl_seconds: Some(60),
        }
    );
    assert_eq!(error.code(), "reservation-id-conflict");
}

#[test]
fn reserving_again_with_an_existing_id_and_a_different_order_id_is_rejected() {
    let state = given(&[
        replenished(10),
        reserved_with_ttl("r-1", Some("order-9"), 4, 60, now()),
    ]);

    for other_order in [Some("order-10"), None] {
        let error = when_rejected(&state, &reserve_request("r-1", other_order, 4, Some(60)));

        assert!(
            matches!(error, DomainError::ReservationIdConflict { .. }),
            "order {other_order:?}: {error:?}"
        );
    }
}

#[test]
fn reserving_again_with_an_existing_id_and_a_different_ttl_is_rejected() {
    let state = given(&[
        replenished(10),
        reserved_with_ttl("r-1", Some("order-9"), 4, 60, now()),
    ]);

    for other_ttl in [Some(61), None] {
        let error = when_rejected(
            &state,
            &reserve_request("r-1", Some("order-9"), 4, other_ttl),
        );

        assert!(
            matches!(error, DomainError::ReservationIdConflict { .. }),
            "ttl {other_ttl:?}: {error:?}"
        );
    }
}

#[test]
fn an_ended_reservations_id_cannot_be_reused_for_a_different_request() {
    for status in ENDED_STATUSES {
        let state = given(&ended_reservation("r-1", status));

        let error = when_rejected(&state, &reserve("r-1", 2));

        assert_eq!(
            error,
            DomainError::ReservationIdConflict {
                reservation_id: "r-1".to_owned(),
                existing_quantity: 4,
                existing_order_id: None,
                existing_ttl_seconds: Some(60),
            },
            "after the reservation was {status}"
        );
    }
}

#[test]
fn an_identical_retry_of_an_ended_reservation_produces_no_events() {
    // Reservation ids are unique forever, so a client retrying its reserve after the reservation
    // ended is told it was done rather than given a second hold.
    for status in ENDED_STATUSES {
        let state = given(&ended_reservation("r-1", status));

        let events = state
            .decide(&reserve_request("r-1", None, 4, Some(60)), now())
            .unwrap();

        assert!(events.is_empty(), "after the reservation was {status}");
        assert_eq!(state.reservations["r-1"].status, status);
    }
}

// ---------------------------------------------------------------------------------------------
// Releasing
// ---------------------------------------------------------------------------------------------

#[test]
fn releasing_returns_units_to_available() {
    let mut state = given(&[
        replenished(10),
        reserved_with_ttl("r-1", Some("order-9"), 4, 60, now()),
        reserved("r-2", 3),
    ]);

    let events = when_accepted(&mut state, &release("r-1"));

    assert_eq!(
        events,
        vec![SkuEvent::Released(ReservationReleased {
            reservation_id: "r-1".to_owned(),
            order_id: Some("order-9".to_owned()),
            quantity: 4,
            reason: Some("cart abandoned".to_owned()),
            location: DEFAULT_LOCATION.to_owned(),
        })]
    );
    assert_eq!(state.on_hand, 10);
    assert_eq!(state.reserved, 3);
    assert_eq!(state.available(), 7);
    assert_eq!(
        state.reservations["r-1"].status,
        ReservationStatus::Released
    );
    assert_eq!(state.reservations["r-2"].status, ReservationStatus::Open);
}

#[test]
fn releasing_an_unknown_reservation_is_rejected() {
    let state = given(&[replenished(10), reserved("r-1", 4)]);

    let error = when_rejected(&state, &release("r-2"));

    assert_eq!(
        error,
        DomainError::ReservationNotFound {
            reservation_id: "r-2".to_owned(),
        }
    );
    assert_eq!(error.code(), "reservation-not-found");
}

#[test]
fn releasing_an_ended_reservation_is_rejected_with_its_status() {
    for status in ENDED_STATUSES {
        let state = given(&ended_reservation("r-1", status));

        let error = when_rejected(&state, &release("r-1"));

        assert_eq!(
            error,
            DomainError::ReservationClosed {
                reservation_id: "r-1".to_owned(),
                status,
            }
        );
        assert_eq!(error.code(), "reservation-closed");
    }
}

// ---------------------------------------------------------------------------------------------
// Confirming
// ---------------------------------------------------------------------------------------------

#[test]
fn confirming_drops_on_hand_and_reserved_together() {
    let mut state = given(&[replenished(10), reserved("r-1", 4), reserved("r-2", 1)]);

    let events = when_accepted(&mut state, &confirm("r-1"));

    assert_eq!(events, vec![confirmed("r-1", 4)]);
    assert_eq!(state.on_hand, 6);
    assert_eq!(state.reserved, 1);
    assert_eq!(
        state.available(),
        5,
        "shipping reserved units leaves available as it was"
    );
    assert_eq!(
        state.reservations["r-1"].status,
        ReservationStatus::Confirmed
    );
}

#[test]
fn confirming_an_unknown_reservation_is_rejected() {
    let state = given(&[replenished(10)]);

    let error = when_rejected(&state, &confirm("r-1"));

    assert_eq!(
        error,
        DomainError::ReservationNotFound {
            reservation_id: "r-1".to_owned(),
        }
    );
}

#[test]
fn confirming_an_ended_reservation_is_rejected_with_its_status() {
    for status in ENDED_STATUSES {
        let state = given(&ended_reservation("r-1", status));

        let error = when_rejected(&state, &confirm("r-1"));

        assert_eq!(
            error,
            DomainError::ReservationClosed {
                reservation_id: "r-1".to_owned(),
                status,
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Expiring
// ---------------------------------------------------------------------------------------------

#[test]
fn expiring_at_the_expiry_time_ends_the_reservation_and_records_its_expiry() {
    let mut state = given(&[
        replenished(10),
        reserved_with_ttl("r-1", Some("order-9"), 4, 60, now()),
    ]);

    let events = when_accepted(&mut state, &expire("r-1"));

    assert_eq!(
        events,
        vec![SkuEvent::Expired(ReservationExpired {
            reservation_id: "r-1".to_owned(),
            order_id: Some("order-9".to_owned()),
            quantity: 4,
            expires_at: now(),
            location: DEFAULT_LOCATION.to_owned(),
        })]
    );
    assert_eq!(state.on_hand, 10);
    assert_eq!(state.reserved, 0);
    assert_eq!(state.reservations["r-1"].status, ReservationStatus::Expired);
}

#[test]
fn expiring_after_the_expiry_time_records_the_expiry_time_not_the_moment_of_expiring() {
    let expires_at = now() - Duration::seconds(3600);
    let mut state = given(&[
        replenished(10),
        reserved_with_ttl("r-1", None, 4, 60, expires_at),
    ]);

    let events = when_accepted(&mut state, &expire("r-1"));

    assert_eq!(events, vec![expired("r-1", 4, expires_at)]);
    assert_eq!(state.available(), 10);
}

#[test]
fn expiring_before_the_expiry_time_is_rejected() {
    let expires_at = now() + Duration::seconds(1);
    let state = given(&[
        replenished(10),
        reserved_with_ttl("r-1", None, 4, 60, expires_at),
    ]);

    let error = when_rejected(&state, &expire("r-1"));

    assert_eq!(
        error,
        DomainError::ReservationNotYetExpired {
            reservation_id: "r-1".to_owned(),
            expires_at,
        }
    );
    assert_eq!(error.code(), "reservation-not-yet-expired");
}

#[test]
fn expiring_a_reservation_without_a_ttl_is_rejected() {
    let state = given(&[replenished(10), reserved("r-1", 4)]);

    let error = when_rejected(&state, &expire("r-1"));

    assert_eq!(
        error,
        DomainError::ReservationHasNoExpiry {
            reservation_id: "r-1".to_owned(),
        }
    );
    assert_eq!(error.code(), "reservation-has-no-expiry");
}

#[test]
fn expiring_an_unknown_reservation_is_rejected() {
    let state = given(&[replenished(10)]);

    let error = when_rejected(&state, &expire("r-1"));

    assert_eq!(
        error,
        DomainError::ReservationNotFound {
            reservation_id: "r-1".to_owned(),
        }
    );
}

#[test]
fn expiring_an_ended_reservation_is_rejected_with_its_status() {
    for status in ENDED_STATUSES {
        let state = given(&ended_reservation("r-1", status));

        let error = when_rejected(&state, &expire("r-1"));

        assert_eq!(
            error,
            DomainError::ReservationClosed {
                reservation_id: "r-1".to_owned(),
                status,
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Adjusting
// ---------------------------------------------------------------------------------------------

#[test]
fn adjusting_up_raises_on_hand() {
    let mut state = given(&[replenished(10), reserved("r-1", 4)]);

    let events = when_accepted(&mut state, &adjust(3));

    assert_eq!(
        events,
        vec![SkuEvent::Adjusted(StockAdjusted {
            delta: 3,
            reason: "cycle count".to_owned(),
            reference: Some("COUNT-7".to_owned()),
            location: DEFAULT_LOCATION.to_owned(),
        })]
    );
    assert_eq!(state.on_hand, 13);
    assert_eq!(state.available(), 9);
}

#[test]
fn adjusting_down_lowers_on_hand() {
    let mut state = given(&[replenished(10), reserved("r-1", 4)]);

    when_accepted(&mut state, &adjust(-5));

    assert_eq!(state.on_hand, 5);
    assert_eq!(state.reserved, 4);
    assert_eq!(state.available(), 1);
}

#[test]
fn an_adjustment_that_would_take_on_hand_below_reserved_is_rejected_with_the_numbers() {
    let state = given(&[replenished(10), reserved("r-1", 6)]);

    let error = when_rejected(&state, &adjust(-5));

    assert_eq!(
        error,
        DomainError::AdjustmentBelowReserved {
            delta: -5,
            on_hand_after: 5,
            reserved: 6,
            location: Some(DEFAULT_LOCATION.to_owned()),
        }
    );
    assert_eq!(error.code(), "adjustment-below-reserved");
}

#[test]
fn an_adjustment_below_zero_is_rejected_with_the_negative_balance() {
    let state = given(&[replenished(3)]);

    let error = when_rejected(&state, &adjust(-4));

    assert_eq!(
        error,
        DomainError::AdjustmentBelowReserved {
            delta: -4,
            on_hand_after: -1,
            reserved: 0,
            location: Some(DEFAULT_LOCATION.to_owned()),
        }
    );
}

#[test]
fn an_adjustment_to_exactly_reserved_is_allowed() {
    let mut state = given(&[replenished(10), reserved("r-1", 6)]);

    when_accepted(&mut state, &adjust(-4));

    assert_eq!(state.on_hand, 6);
    assert_eq!(state.available(), 0);
}

#[test]
fn an_adjustment_past_the_on_hand_limit_is_rejected() {
    let state = given(&[replenished(ON_HAND_MAX - 1)]);

    let error = when_rejected(&state, &adjust(2));

    assert_eq!(
        error,
        DomainError::OnHandLimitExceeded {
            on_hand_after: ON_HAND_MAX + 1,
            limit: ON_HAND_MAX,
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Reorder point
// ---------------------------------------------------------------------------------------------

#[test]
fn setting_the_reorder_point_records_the_previous_one() {
    let mut state = given(&[replenished(10)]);

    let first = when_accepted(&mut state, &set_reorder_point(5));
    let second = when_accepted(&mut state, &set_reorder_point(8));

    assert_eq!(
        first,
        vec![SkuEvent::ReorderPointSet(ReorderPointSet {
            reorder_point: 5,
            previous_reorder_point: 0,
            location: DEFAULT_LOCATION.to_owned(),
        })]
    );
    assert_eq!(
        second,
        vec![SkuEvent::ReorderPointSet(ReorderPointSet {
            reorder_point: 8,
            previous_reorder_point: 5,
            location: DEFAULT_LOCATION.to_owned(),
        })]
    );
    assert_eq!(state.reorder_point, 8);
    assert_eq!(state.on_hand, 10, "a reorder point moves no stock");
}

#[test]
fn available_below_the_reorder_point_is_low_stock_and_at_it_is_not() {
    let mut state = given(&[replenished(10), reserved("r-1", 5)]);

    when_accepted(&mut state, &set_reorder_point(6));
    assert!(
        state.is_below_reorder_point(),
        "available 5 < reorder point 6"
    );

    when_accepted(&mut state, &set_reorder_point(5));
    assert!(
        !state.is_below_reorder_point(),
        "available 5 = reorder point 5"
    );
}

#[test]
fn the_reorder_point_is_compared_with_available_not_on_hand() {
    let mut state = given(&[replenished(10)]);
    when_accepted(&mut state, &set_reorder_point(4));
    assert!(!state.is_below_reorder_point());

    when_accepted(&mut state, &reserve("r-1", 7));

    assert_eq!(state.on_hand, 10);
    assert!(
        state.is_below_reorder_point(),
        "available 3 < reorder point 4"
    );
}

#[test]
fn a_reorder_point_of_zero_never_reports_low_stock() {
    let state = given(&[]);

    assert_eq!(state.available(), 0);
    assert!(!state.is_below_reorder_point());
}

// ---------------------------------------------------------------------------------------------
// Validated values: which field an error names, and the edges the unit tests leave out
// ---------------------------------------------------------------------------------------------

fn assert_names_field(result: Result<impl std::fmt::Debug, ValidationError>, field: &str) {
    match result {
        Ok(value) => panic!("{value:?} was accepted; expected an error naming {field}"),
        Err(error) => assert_eq!(error.field, field, "{error}"),
    }
}

#[test]
fn a_zero_quantity_is_rejected_naming_the_quantity_field_and_the_range() {
    let error = Quantity::new(0).unwrap_err();

    assert_eq!(error.field, "quantity");
    assert!(error.message.contains("is 0"), "{error}");
    assert!(error.message.contains(&QUANTITY_MAX.to_string()), "{error}");
    assert_eq!(error.to_string(), format!("quantity: {}", error.message));
}

#[test]
fn a_signed_quantity_beyond_the_limit_is_rejected_like_an_unsigned_one() {
    assert_names_field(Quantity::from_signed(i64::MAX), "quantity");
    assert_names_field(Quantity::from_signed(0), "quantity");
    assert_eq!(Quantity::from_signed(7).unwrap().get(), 7);
}

#[test]
fn a_sku_with_a_space_is_rejected_naming_the_character() {
    let error = Sku::parse("bad sku").unwrap_err();

    assert_eq!(error.field, "sku");
    assert!(error.message.contains("' '"), "{error}");
}

#[test]
fn a_colon_is_allowed_in_reservation_and_order_ids_but_not_in_a_sku() {
    assert_names_field(Sku::parse("shoe:42"), "sku");
    assert_eq!(ReservationId::parse("res:42").unwrap().as_str(), "res:42");
    assert_eq!(OrderId::parse("order:42").unwrap().as_str(), "order:42");
}

#[test]
fn reservation_and_order_ids_name_their_own_fields() {
    assert_names_field(ReservationId::parse(""), "reservation_id");
    assert_names_field(ReservationId::parse("res 1"), "reservation_id");
    assert_names_field(OrderId::parse(""), "order_id");
    assert_names_field(OrderId::parse("order/1"), "order_id");
}

#[test]
fn an_identifier_starting_with_a_separator_is_rejected() {
    let error = ReservationId::parse(":res-1").unwrap_err();

    assert_eq!(error.field, "reservation_id");
    assert!(error.message.contains("must start"), "{error}");
}

#[test]
fn an_identifier_longer_than_the_limit_is_rejected_and_one_at_the_limit_is_not() {
    let at_limit = "r".repeat(IDENTIFIER_LENGTH_MAX);
    let over_limit = "r".repeat(IDENTIFIER_LENGTH_MAX + 1);

    assert!(ReservationId::parse(&at_limit).is_ok());
    assert!(OrderId::parse(&at_limit).is_ok());
    let error = ReservationId::parse(&over_limit).unwrap_err();
    assert_eq!(error.field, "reservation_id");
    assert!(
        error.message.contains(&IDENTIFIER_LENGTH_MAX.to_string()),
        "{error}"
    );
    assert_names_field(OrderId::parse(&over_limit), "order_id");
}

#[test]
fn a_stream_of_another_kind_or_with_an_invalid_sku_has_no_sku() {
    assert_eq!(Sku::from_stream("order-42"), None);
    assert_eq!(Sku::from_stream("sku-"), None);
    assert_eq!(Sku::from_stream("sku-bad sku"), None);
    assert_eq!(
        Sku::from_stream("SKU-42"),
        None,
        "the prefix is case-sensitive"
    );
}

#[test]
fn skus_differing_only_in_case_are_different_skus_with_different_streams() {
    let lower = Sku::parse("ab-1").unwrap();
    let upper = Sku::parse("AB-1").unwrap();

    assert_ne!(lower, upper);
    assert_ne!(lower.stream(), upper.stream());
}

#[test]
fn a_negative_or_oversized_reorder_point_is_rejected_and_zero_is_allowed() {
    assert_names_field(ReorderPoint::new(-1), "reorder_point");
    assert_names_field(ReorderPoint::new(QUANTITY_MAX as i64 + 1), "reorder_point");
    assert_eq!(ReorderPoint::new(0).unwrap().get(), 0);
    assert_eq!(
        ReorderPoint::new(QUANTITY_MAX as i64).unwrap().get(),
        QUANTITY_MAX
    );
}

#[test]
fn a_ttl_of_zero_or_longer_than_thirty_days_is_rejected() {
    assert_names_field(TtlSeconds::new(0), "ttl_seconds");
    assert_names_field(TtlSeconds::new(-60), "ttl_seconds");
    assert_names_field(
        TtlSeconds::new(RESERVATION_TTL_SECONDS_MAX as i64 + 1),
        "ttl_seconds",
    );
    assert_eq!(TtlSeconds::new(1).unwrap().get(), 1);
    assert_eq!(
        TtlSeconds::new(RESERVATION_TTL_SECONDS_MAX as i64)
            .unwrap()
            .get(),
        RESERVATION_TTL_SECONDS_MAX
    );
}

#[test]
fn an_adjustment_beyond_the_limit_either_way_is_rejected_naming_the_delta_field() {
    let limit = QUANTITY_MAX as i64;

    assert_names_field(AdjustmentDelta::new(limit + 1), "delta");
    assert_names_field(AdjustmentDelta::new(-limit - 1), "delta");
    // The most negative i64 has no positive counterpart; the check must not overflow on it.
    assert_names_field(AdjustmentDelta::new(i64::MIN), "delta");
    assert_eq!(AdjustmentDelta::new(limit).unwrap().get(), limit);
    assert_eq!(AdjustmentDelta::new(-limit).unwrap().get(), -limit);
}

#[test]
fn a_reference_is_checked_like_a_reason_under_its_own_field_and_limit() {
    assert_names_field(Reference::parse(""), "reference");
    assert_names_field(Reference::parse("  "), "reference");
    assert_names_field(Reference::parse("PO\t1"), "reference");
    assert_names_field(
        Reference::parse(&"x".repeat(REFERENCE_LENGTH_MAX + 1)),
        "reference",
    );
    assert!(Reference::parse(&"x".repeat(REFERENCE_LENGTH_MAX)).is_ok());
    assert_names_field(Reason::parse(""), "reason");
}

#[test]
fn text_lengths_are_counted_in_characters_not_bytes() {
    // "é" takes two bytes in UTF-8; an auditor's 500-character reason in French must fit.
    assert!(Reason::parse(&"é".repeat(REASON_LENGTH_MAX)).is_ok());
    let error = Reason::parse(&"é".repeat(REASON_LENGTH_MAX + 1)).unwrap_err();
    assert_eq!(error.field, "reason");
    assert!(
        error
            .message
            .contains(&format!("{} characters", REASON_LENGTH_MAX + 1)),
        "{error}"
    );
}

#[test]
fn a_reason_with_a_nul_is_rejected_as_a_control_character() {
    let error = Reason::parse("damaged\0").unwrap_err();

    assert_eq!(error.field, "reason");
    assert!(error.message.contains("control"), "{error}");
}

#[test]
fn invalid_values_are_refused_when_deserialised_with_the_field_in_the_message() {
    let sku = serde_json::from_str::<Sku>("\"bad sku\"").unwrap_err();
    assert!(sku.to_string().contains("sku:"), "{sku}");
    let ttl = serde_json::from_str::<TtlSeconds>("0").unwrap_err();
    assert!(ttl.to_string().contains("ttl_seconds:"), "{ttl}");
    let delta = serde_json::from_str::<AdjustmentDelta>("0").unwrap_err();
    assert!(delta.to_string().contains("delta:"), "{delta}");
    let reorder_point = serde_json::from_str::<ReorderPoint>("-1").unwrap_err();
    assert!(
        reorder_point.to_string().contains("reorder_point:"),
        "{reorder_point}"
    );
}
