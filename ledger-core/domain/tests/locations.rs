//! Stock per location: every movement happens somewhere, a reserve holds its units at one
//! location chosen by its allocation, and no location ever sells more than it has. Old
//! (version 1) events read as happening at the default location.

use chrono::{DateTime, TimeZone, Utc};
use ledger_domain::{
    AdjustStock, AdjustmentDelta, Allocation, CancelTransfer, DispatchTransfer, DomainError,
    LocationId, Quantity, Reason, ReceiveTransfer, ReleaseReservation, ReorderPoint,
    ReplenishStock, ReservationId, ReserveStock, SetReorderPoint, Sku, SkuCommand, SkuEvent,
    SkuState, TransferId, DEFAULT_LOCATION, EVENT_TYPES_UPCAST,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const LOCATIONS: [&str; 3] = ["default", "store-12", "wh-1"];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

fn location(name: &str) -> LocationId {
    LocationId::parse(name).unwrap()
}

fn replenish_at(at: &str, quantity: u64) -> SkuCommand {
    SkuCommand::Replenish(ReplenishStock {
        quantity: Quantity::new(quantity).unwrap(),
        reference: None,
        location: location(at),
    })
}

fn reserve_with(id: &str, quantity: u64, allocation: Allocation) -> SkuCommand {
    SkuCommand::Reserve(ReserveStock {
        reservation_id: ReservationId::parse(id).unwrap(),
        order_id: None,
        quantity: Quantity::new(quantity).unwrap(),
        ttl_seconds: None,
        allocation,
    })
}

fn preference(names: &[&str]) -> Allocation {
    Allocation::preference(names.iter().map(|n| location(n)).collect()).unwrap()
}

fn run(state: &mut SkuState, command: &SkuCommand) -> Result<Vec<SkuEvent>, DomainError> {
    let events = state.decide(command, now())?;
    for event in &events {
        state.apply(event);
    }
    state.check_invariants().unwrap();
    Ok(events)
}

fn held_at(events: &[SkuEvent]) -> &str {
    match &events[0] {
        SkuEvent::Reserved(e) => &e.location,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

fn stocked() -> SkuState {
    let mut state = SkuState::new(Sku::parse("SHOE-42").unwrap());
    run(&mut state, &replenish_at("store-12", 1)).unwrap();
    run(&mut state, &replenish_at("wh-1", 50)).unwrap();
    run(&mut state, &replenish_at("default", 10)).unwrap();
    state
}

#[test]
fn a_reserve_at_a_location_is_served_only_from_that_location() {
    let mut state = stocked();
    let at_store = Allocation::At(location("store-12"));
    let events = run(&mut state, &reserve_with("r-1", 1, at_store.clone())).unwrap();
    assert_eq!(held_at(&events), "store-12");
    assert_eq!(
        run(&mut state, &reserve_with("r-2", 1, at_store)),
        Err(DomainError::InsufficientStock {
            requested: 1,
            available: 0,
            location: Some("store-12".into()),
        }),
        "the warehouse's 50 units do not serve a sale in the store"
    );
    assert_eq!(state.at("store-12").reserved, 1);
    assert_eq!(state.at("wh-1").available(), 50);
    assert_eq!(
        (state.on_hand, state.reserved, state.available()),
        (61, 1, 60)
    );
}

#[test]
fn a_preference_list_holds_at_the_first_location_with_the_whole_quantity() {
    let mut state = stocked();
    let events = run(
        &mut state,
        &reserve_with("r-1", 5, preference(&["store-12", "default", "wh-1"])),
    )
    .unwrap();
    assert_eq!(held_at(&events), "default");
    let refused = run(
        &mut state,
        &reserve_with("r-2", 51, preference(&["store-12", "wh-1"])),
    );
    assert_eq!(
        refused,
        Err(DomainError::InsufficientStock {
            requested: 51,
            available: 50,
            location: None,
        }),
        "all or nothing: the quantity is never split"
    );
    // A retry of the first request is the same request wherever it was held.
    let retried = run(
        &mut state,
        &reserve_with("r-1", 5, preference(&["store-12", "default", "wh-1"])),
    );
    assert_eq!(retried, Ok(Vec::new()));
    // The same id with a list that excludes where it is held is another request.
    assert!(matches!(
        run(&mut state, &reserve_with("r-1", 5, preference(&["wh-1"]))),
        Err(DomainError::ReservationIdConflict { .. })
    ));
}

#[test]
fn most_available_holds_where_the_most_units_are_free() {
    let mut state = stocked();
    let events = run(
        &mut state,
        &reserve_with("r-1", 3, Allocation::MostAvailable),
    )
    .unwrap();
    assert_eq!(held_at(&events), "wh-1");
    let empty = SkuState::new(Sku::parse("NEW-1").unwrap());
    assert_eq!(
        empty.decide(&reserve_with("r-1", 1, Allocation::MostAvailable), now()),
        Err(DomainError::InsufficientStock {
            requested: 1,
            available: 0,
            location: None,
        })
    );
}

#[test]
fn releases_adjustments_and_reorder_points_stay_at_their_location() {
    let mut state = stocked();
    run(
        &mut state,
        &reserve_with("r-1", 40, Allocation::At(location("wh-1"))),
    )
    .unwrap();
    // 10 on hand at the warehouse is not 40: the adjustment is refused there, although the
    // SKU's totals (61 on hand, 40 reserved) would allow it.
    let adjust = |delta: i64, at: &str| {
        SkuCommand::Adjust(AdjustStock {
            delta: AdjustmentDelta::new(delta).unwrap(),
            reason: Reason::parse("cycle count").unwrap(),
            reference: None,
            location: location(at),
        })
    };
    assert_eq!(
        run(&mut state, &adjust(-11, "wh-1")),
        Err(DomainError::AdjustmentBelowReserved {
            delta: -11,
            on_hand_after: 39,
            reserved: 40,
            location: Some("wh-1".into()),
        })
    );
    run(&mut state, &adjust(-10, "wh-1")).unwrap();
    let release = SkuCommand::Release(ReleaseReservation {
        reservation_id: ReservationId::parse("r-1").unwrap(),
        reason: None,
    });
    let events = run(&mut state, &release).unwrap();
    assert_eq!(events[0].location(), Some("wh-1"));
    assert_eq!(state.at("wh-1").available(), 40);

    let point = |value: i64, at: &str| {
        SkuCommand::SetReorderPoint(SetReorderPoint {
            reorder_point: ReorderPoint::new(value).unwrap(),
            location: location(at),
        })
    };
    run(&mut state, &point(5, "store-12")).unwrap();
    run(&mut state, &point(20, "wh-1")).unwrap();
    run(&mut state, &point(8, "wh-1")).unwrap();
    assert_eq!(
        state.reorder_point, 13,
        "the total is the sum of the locations'"
    );
    assert!(
        state.at("store-12").is_below_reorder_point(),
        "1 available, point 5"
    );
    assert!(
        !state.at("wh-1").is_below_reorder_point(),
        "40 available, point 8"
    );
}

fn receive(id: &str, received: Option<u64>, reason: Option<&str>) -> SkuCommand {
    SkuCommand::ReceiveTransfer(ReceiveTransfer {
        transfer_id: TransferId::parse(id).unwrap(),
        quantity_received: received,
        discrepancy_reason: reason.map(|r| Reason::parse(r).unwrap()),
    })
}

#[test]
fn a_transfer_takes_units_off_the_source_and_holds_them_in_transit_until_received() {
    let mut state = stocked();
    run(&mut state, &dispatch("t-1", "wh-1", "store-12", 20)).unwrap();
    assert_eq!(state.at("wh-1").on_hand, 30);
    assert_eq!(state.at("store-12").in_transit, 20);
    assert_eq!((state.on_hand, state.in_transit), (41, 20));
    // In-transit units cannot be sold at either end.
    assert!(run(
        &mut state,
        &reserve_with("r-1", 2, Allocation::At(location("store-12")))
    )
    .is_err());
    // A retried dispatch changes nothing; the same id with other terms is refused.
    assert_eq!(
        run(&mut state, &dispatch("t-1", "wh-1", "store-12", 20)),
        Ok(vec![])
    );
    assert!(matches!(
        run(&mut state, &dispatch("t-1", "wh-1", "store-12", 21)),
        Err(DomainError::TransferIdConflict { .. })
    ));
    // Short without a reason is refused; with one, the shortfall leaves the books.
    assert!(matches!(
        run(&mut state, &receive("t-1", Some(18), None)),
        Err(DomainError::DiscrepancyReasonRequired {
            dispatched: 20,
            received: 18,
            ..
        })
    ));
    assert!(matches!(
        run(&mut state, &receive("t-1", Some(21), Some("extra"))),
        Err(DomainError::ReceiptExceedsDispatch { .. })
    ));
    run(&mut state, &receive("t-1", Some(18), Some("two crushed"))).unwrap();
    assert_eq!(state.at("store-12").on_hand, 19);
    assert_eq!((state.on_hand, state.in_transit), (59, 0));
    assert!(matches!(
        run(&mut state, &receive("t-1", None, None)),
        Err(DomainError::TransferClosed { .. })
    ));
    assert_eq!(
        run(&mut state, &dispatch("t-2", "wh-1", "wh-1", 1)),
        Err(DomainError::TransferWithinOneLocation {
            location: "wh-1".into()
        })
    );
}

#[test]
fn a_cancelled_transfer_returns_its_units_and_reserved_units_cannot_leave() {
    let mut state = stocked();
    run(
        &mut state,
        &reserve_with("r-1", 45, Allocation::At(location("wh-1"))),
    )
    .unwrap();
    assert_eq!(
        run(&mut state, &dispatch("t-1", "wh-1", "default", 6)),
        Err(DomainError::InsufficientStock {
            requested: 6,
            available: 5,
            location: Some("wh-1".into()),
        })
    );
    run(&mut state, &dispatch("t-1", "wh-1", "default", 5)).unwrap();
    let cancel = SkuCommand::CancelTransfer(CancelTransfer {
        transfer_id: TransferId::parse("t-1").unwrap(),
        reason: Some(Reason::parse("truck broke down").unwrap()),
    });
    run(&mut state, &cancel).unwrap();
    assert_eq!(state.at("wh-1").on_hand, 50);
    assert_eq!(state.at("default").in_transit, 0);
    assert!(matches!(
        run(&mut state, &cancel),
        Err(DomainError::TransferClosed { .. })
    ));
}

#[test]
fn a_discontinued_sku_refuses_replenishment_and_new_reservations_but_keeps_the_rest() {
    use ledger_domain::{Attributes, DiscontinueSku, ProductName, RegisterSku, Unit, UpdateSku};
    let mut state = stocked();
    let register = SkuCommand::Register(RegisterSku {
        name: ProductName::parse("Trail shoe 42").unwrap(),
        unit: Unit::parse("pair").unwrap(),
        attributes: Attributes::new([("colour".into(), "blue".into())].into()).unwrap(),
    });
    run(&mut state, &register).unwrap();
    assert_eq!(
        run(&mut state, &register),
        Ok(vec![]),
        "the same entry again"
    );
    let rename = SkuCommand::Update(UpdateSku {
        name: Some(ProductName::parse("Trail shoe, size 42").unwrap()),
        unit: None,
        attributes: None,
    });
    run(&mut state, &rename).unwrap();
    assert_eq!(
        run(&mut state, &register),
        Err(DomainError::SkuAlreadyRegistered)
    );
    let entry = state.catalogue.clone().unwrap();
    assert_eq!(
        (entry.name.as_str(), entry.unit.as_str()),
        ("Trail shoe, size 42", "pair")
    );
    run(
        &mut state,
        &reserve_with("r-1", 1, Allocation::At(location("wh-1"))),
    )
    .unwrap();
    let discontinue = SkuCommand::Discontinue(DiscontinueSku { reason: None });
    run(&mut state, &discontinue).unwrap();
    assert_eq!(run(&mut state, &discontinue), Ok(vec![]));
    assert_eq!(
        run(&mut state, &replenish_at("wh-1", 1)),
        Err(DomainError::SkuDiscontinued)
    );
    assert_eq!(
        run(
            &mut state,
            &reserve_with("r-2", 1, Allocation::At(location("wh-1")))
        ),
        Err(DomainError::SkuDiscontinued)
    );
    // A retry of a reserve made before is still recognised, and open holds still end.
    assert_eq!(
        run(
            &mut state,
            &reserve_with("r-1", 1, Allocation::At(location("wh-1")))
        ),
        Ok(vec![])
    );
    let confirm = SkuCommand::Confirm(ledger_domain::ConfirmReservation {
        reservation_id: ReservationId::parse("r-1").unwrap(),
    });
    run(&mut state, &confirm).unwrap();
    run(&mut state, &dispatch("t-1", "wh-1", "default", 3)).unwrap();
    let mut fresh = SkuState::new(Sku::parse("NEW-1").unwrap());
    assert_eq!(
        run(
            &mut fresh,
            &SkuCommand::Update(UpdateSku {
                name: None,
                unit: None,
                attributes: None
            })
        ),
        Err(DomainError::SkuNotRegistered)
    );
}

#[test]
fn allocation_lists_are_bounded_and_have_no_repeats() {
    assert!(Allocation::preference(Vec::new()).is_err());
    assert!(Allocation::preference(vec![location("a"), location("a")]).is_err());
    let many = (0..=ledger_domain::ALLOCATION_LOCATIONS_MAX)
        .map(|n| location(&format!("l{n}")))
        .collect();
    assert!(Allocation::preference(many).is_err());
    assert!(LocationId::parse("store 12").is_err());
    assert!(LocationId::parse("").is_err());
}

#[test]
fn every_version_1_event_reads_as_happening_at_the_default_location() {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/examples");
    for &(event_type, version) in EVENT_TYPES_UPCAST {
        let text =
            std::fs::read_to_string(format!("{folder}/{event_type}.v{version}.json")).unwrap();
        let old: serde_json::Value = serde_json::from_str(&text).unwrap();
        let event = SkuEvent::decode(event_type, version, &old).unwrap();
        assert_eq!(
            event.location(),
            Some(DEFAULT_LOCATION),
            "{event_type} v{version}"
        );
        assert_eq!(event.schema_version(), 2);
        // Everything else is carried over unchanged.
        let mut upcast = event.encode();
        upcast.as_object_mut().unwrap().remove("location");
        assert_eq!(upcast, old, "{event_type} v{version}");
    }
}

/// A plain bookkeeping of what each location holds, kept from the events alone: (on hand,
/// reserved) per location, the holds, and the transfers (from, to, quantity, still in transit).
#[derive(Default)]
struct Reference {
    locations: BTreeMap<String, (u64, u64)>,
    holds: BTreeMap<String, (String, u64, bool)>,
    transfers: BTreeMap<String, (String, String, u64, bool)>,
}

impl Reference {
    fn available(&self, at: &str) -> u64 {
        self.locations
            .get(at)
            .map_or(0, |(on_hand, reserved)| on_hand - reserved)
    }

    /// Units on their way to `at`.
    fn arriving(&self, at: &str) -> u64 {
        self.transfers
            .values()
            .filter(|(_, to, _, open)| *open && to == at)
            .map(|(_, _, quantity, _)| quantity)
            .sum()
    }

    fn move_on_hand(&mut self, at: &str, change: i64) {
        let (h, r) = *self.locations.entry(at.to_owned()).or_default();
        self.locations
            .insert(at.to_owned(), ((h as i64 + change) as u64, r));
    }

    fn record(&mut self, event: &SkuEvent) {
        let entry = |r: &mut Self, at: &str| *r.locations.entry(at.to_owned()).or_default();
        match event {
            SkuEvent::Replenished(e) => {
                let (h, r) = entry(self, &e.location);
                self.locations
                    .insert(e.location.clone(), (h + e.quantity, r));
            }
            SkuEvent::Reserved(e) => {
                let (h, r) = entry(self, &e.location);
                self.locations
                    .insert(e.location.clone(), (h, r + e.quantity));
                self.holds.insert(
                    e.reservation_id.clone(),
                    (e.location.clone(), e.quantity, true),
                );
            }
            SkuEvent::Released(e) => self.end(&e.reservation_id, e.quantity, &e.location, false),
            SkuEvent::Expired(e) => self.end(&e.reservation_id, e.quantity, &e.location, false),
            SkuEvent::Confirmed(e) => self.end(&e.reservation_id, e.quantity, &e.location, true),
            SkuEvent::Adjusted(e) => {
                let (h, r) = entry(self, &e.location);
                self.locations
                    .insert(e.location.clone(), ((h as i64 + e.delta) as u64, r));
            }
            SkuEvent::TransferDispatched(e) => {
                self.move_on_hand(&e.from_location, -(e.quantity as i64));
                self.locations.entry(e.to_location.clone()).or_default();
                self.transfers.insert(
                    e.transfer_id.clone(),
                    (
                        e.from_location.clone(),
                        e.to_location.clone(),
                        e.quantity,
                        true,
                    ),
                );
            }
            SkuEvent::TransferReceived(e) => {
                let transfer = self.transfers.get_mut(&e.transfer_id).unwrap();
                assert!(transfer.3 && transfer.2 == e.quantity_dispatched);
                assert!(e.quantity_received <= e.quantity_dispatched);
                transfer.3 = false;
                self.move_on_hand(&e.to_location, e.quantity_received as i64);
            }
            SkuEvent::TransferCancelled(e) => {
                let transfer = self.transfers.get_mut(&e.transfer_id).unwrap();
                assert!(transfer.3 && transfer.2 == e.quantity);
                transfer.3 = false;
                self.move_on_hand(&e.from_location, e.quantity as i64);
            }
            SkuEvent::ReorderPointSet(_)
            | SkuEvent::Registered(_)
            | SkuEvent::Updated(_)
            | SkuEvent::Discontinued(_) => {}
        }
    }

    fn end(&mut self, id: &str, quantity: u64, at: &str, shipped: bool) {
        let hold = self.holds.get_mut(id).expect("ends a known hold");
        assert!(hold.2, "ends an open hold");
        assert_eq!(
            (hold.0.as_str(), hold.1),
            (at, quantity),
            "at its own location"
        );
        hold.2 = false;
        let (h, r) = self.locations[at];
        let on_hand = if shipped { h - quantity } else { h };
        self.locations
            .insert(at.to_owned(), (on_hand, r - quantity));
    }
}

fn command_strategy() -> impl Strategy<Value = SkuCommand> {
    let at = proptest::sample::select(LOCATIONS.to_vec());
    let id = (0..8u32).prop_map(|n| format!("r-{n}"));
    let transfer = (0..5u32).prop_map(|n| format!("t-{n}"));
    let allocation = prop_oneof![
        3 => at.clone().prop_map(|a| Allocation::At(location(a))),
        1 => proptest::sample::subsequence(LOCATIONS.to_vec(), 1..=3)
            .prop_shuffle()
            .prop_map(|names| preference(&names)),
        1 => Just(Allocation::MostAvailable),
    ];
    prop_oneof![
        3 => (at.clone(), 1..20u64).prop_map(|(a, q)| replenish_at(a, q)),
        4 => (id.clone(), 1..8u64, allocation).prop_map(|(i, q, a)| reserve_with(&i, q, a)),
        2 => id.clone().prop_map(|i| SkuCommand::Release(ReleaseReservation {
            reservation_id: ReservationId::parse(&i).unwrap(),
            reason: None,
        })),
        2 => id.prop_map(|i| SkuCommand::Confirm(ledger_domain::ConfirmReservation {
            reservation_id: ReservationId::parse(&i).unwrap(),
        })),
        2 => (at.clone(), -10..10i64).prop_filter("non-zero", |(_, d)| *d != 0).prop_map(|(a, d)| {
            SkuCommand::Adjust(AdjustStock {
                delta: AdjustmentDelta::new(d).unwrap(),
                reason: Reason::parse("count").unwrap(),
                reference: None,
                location: location(a),
            })
        }),
        2 => (transfer.clone(), at.clone(), at, 1..15u64)
            .prop_filter("two locations", |(_, from, to, _)| from != to)
            .prop_map(|(t, from, to, q)| dispatch(&t, from, to, q)),
        2 => (transfer.clone(), proptest::option::of(0..16u64), any::<bool>()).prop_map(|(t, received, reason)| {
            SkuCommand::ReceiveTransfer(ReceiveTransfer {
                transfer_id: TransferId::parse(&t).unwrap(),
                quantity_received: received,
                discrepancy_reason: reason.then(|| Reason::parse("damaged").unwrap()),
            })
        }),
        1 => transfer.prop_map(|t| SkuCommand::CancelTransfer(CancelTransfer {
            transfer_id: TransferId::parse(&t).unwrap(),
            reason: None,
        })),
    ]
}

fn dispatch(id: &str, from: &str, to: &str, quantity: u64) -> SkuCommand {
    SkuCommand::DispatchTransfer(DispatchTransfer {
        transfer_id: TransferId::parse(id).unwrap(),
        from_location: location(from),
        to_location: location(to),
        quantity: Quantity::new(quantity).unwrap(),
        reference: None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random commands across locations against plain per-location bookkeeping: the state's
    /// balances per location equal the bookkeeping's after every command, no location ever has
    /// more reserved than on hand, a refused reserve had no allowed location with the whole
    /// quantity, and an accepted one chose as its allocation says.
    #[test]
    fn the_per_location_model_agrees_with_plain_bookkeeping(
        commands in proptest::collection::vec(command_strategy(), 1..80)
    ) {
        let mut state = SkuState::new(Sku::parse("SHOE-42").unwrap());
        let mut reference = Reference::default();
        for command in &commands {
            let decided = state.decide(command, now());
            if let SkuCommand::Reserve(reserve) = command {
                let wanted = reserve.quantity.get();
                let fits = |at: &str| reference.available(at) >= wanted;
                let is_retry = state.reservations.contains_key(reserve.reservation_id.as_str());
                match (&decided, &reserve.allocation) {
                    (Ok(events), _) if events.is_empty() => prop_assert!(is_retry),
                    (Ok(events), Allocation::At(at)) => {
                        prop_assert_eq!(held_at(events), at.as_str());
                        prop_assert!(fits(at.as_str()));
                    }
                    (Ok(events), Allocation::Preference(list)) => {
                        let first = list.iter().map(LocationId::as_str).find(|l| fits(l));
                        prop_assert_eq!(Some(held_at(events)), first);
                    }
                    (Ok(events), Allocation::MostAvailable) => {
                        let most = LOCATIONS.iter().map(|l| reference.available(l)).max().unwrap();
                        prop_assert_eq!(reference.available(held_at(events)), most);
                    }
                    (Err(DomainError::InsufficientStock { .. }), Allocation::At(at)) => {
                        prop_assert!(!fits(at.as_str()));
                    }
                    (Err(DomainError::InsufficientStock { .. }), Allocation::Preference(list)) => {
                        prop_assert!(!list.iter().any(|l| fits(l.as_str())));
                    }
                    (Err(DomainError::InsufficientStock { .. }), Allocation::MostAvailable) => {
                        prop_assert!(!LOCATIONS.iter().any(|l| fits(l)));
                    }
                    (Err(_), _) => prop_assert!(is_retry),
                }
            }
            match (command, &decided) {
                (SkuCommand::DispatchTransfer(c), Err(DomainError::InsufficientStock { .. })) => {
                    prop_assert!(reference.available(c.from_location.as_str()) < c.quantity.get());
                }
                (SkuCommand::DispatchTransfer(c), Ok(events)) if !events.is_empty() => {
                    prop_assert!(reference.available(c.from_location.as_str()) >= c.quantity.get());
                }
                (SkuCommand::ReceiveTransfer(c), result) => {
                    let open = reference.transfers.get(c.transfer_id.as_str()).filter(|t| t.3);
                    match (open, result) {
                        (None, result) => prop_assert!(result.is_err()),
                        (Some(t), Ok(_)) => {
                            let received = c.quantity_received.unwrap_or(t.2);
                            prop_assert!(received <= t.2);
                            prop_assert!(received == t.2 || c.discrepancy_reason.is_some());
                        }
                        (Some(t), Err(_)) => {
                            let received = c.quantity_received.unwrap_or(t.2);
                            prop_assert!(received > t.2 || c.discrepancy_reason.is_none());
                        }
                    }
                }
                _ => {}
            }
            let Ok(events) = decided else { continue };
            for event in &events {
                state.apply(event);
                reference.record(event);
            }
            prop_assert!(state.check_invariants().is_ok(), "{:?}", state.check_invariants());
            for (at, (on_hand, reserved)) in &reference.locations {
                let stock = state.at(at);
                prop_assert_eq!((stock.on_hand, stock.reserved), (*on_hand, *reserved), "at {}", at);
                prop_assert_eq!(stock.in_transit, reference.arriving(at), "in transit to {}", at);
                prop_assert!(stock.reserved <= stock.on_hand);
            }
        }
    }
}
