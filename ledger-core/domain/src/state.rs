//! The SKU aggregate: state folded from events (`apply`, total, never fails) and the pure
//! decision function (`decide`, may reject) that turns a command into new events.

use super::command::{Allocation, SkuCommand};
use super::error::DomainError;
use super::event::{
    ReorderPointSet, ReservationConfirmed, ReservationExpired, ReservationReleased,
    SkuDiscontinued, SkuEvent, SkuRegistered, SkuUpdated, StockAdjusted, StockReplenished,
    StockReserved, TransferCancelled, TransferDispatched, TransferReceived,
};
use super::reservation::{Reservation, ReservationStatus};
use super::transfer::{CatalogueEntry, Transfer, TransferStatus};
use super::values::{Sku, ON_HAND_MAX};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One SKU's state, as folded from its stream.
///
/// Ended reservations are kept, not dropped: a retried reserve must be recognised after its
/// reservation ended, and releasing an ended reservation must say "already released" rather
/// than "unknown". The cost is memory proportional to the SKU's reservation count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuState {
    pub sku: Sku,
    pub on_hand: u64,
    pub reserved: u64,
    pub reorder_point: u64,
    /// The stream's version: the number of events folded minus one; `None` before the first.
    pub version: Option<u64>,
    pub reservations: BTreeMap<String, Reservation>,
    /// How many of `reservations` are open, kept by `apply` so that answering a command does
    /// not walk a hot SKU's whole reservation history.
    #[serde(default)]
    pub open_reservation_count: u64,
    /// The balances at each location that ever held or was given stock; `on_hand`,
    /// `reserved` and `reorder_point` above are their sums.
    #[serde(default)]
    pub locations: BTreeMap<String, LocationStock>,
    /// Units dispatched by transfers and not yet received or cancelled (not in `on_hand`).
    #[serde(default)]
    pub in_transit: u64,
    /// Every transfer the SKU ever had, kept for the same reason as ended reservations.
    #[serde(default)]
    pub transfers: BTreeMap<String, Transfer>,
    /// The catalogue entry, once registered.
    #[serde(default)]
    pub catalogue: Option<CatalogueEntry>,
    /// Whether the SKU was discontinued.
    #[serde(default)]
    pub discontinued: bool,
}

/// One location's balances of a SKU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationStock {
    pub on_hand: u64,
    pub reserved: u64,
    pub reorder_point: u64,
    /// Units on their way here by transfers not yet received or cancelled.
    #[serde(default)]
    pub in_transit: u64,
}

impl LocationStock {
    /// Units free to reserve here.
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }

    pub fn is_below_reorder_point(&self) -> bool {
        self.available() < self.reorder_point
    }
}

/// The balances of a SKU after a command: what a caller is told, without the reservation
/// history (which a hot SKU accumulates by the hundred thousand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuSummary {
    pub sku: Sku,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub reorder_point: u64,
    pub below_reorder_point: bool,
    pub open_reservations: u64,
    pub version: Option<u64>,
    /// The balances per location (a SKU has a handful; a deployment that never names one has
    /// only [`crate::DEFAULT_LOCATION`]).
    pub locations: BTreeMap<String, LocationStock>,
    /// Units in transit between locations.
    pub in_transit: u64,
    pub discontinued: bool,
}

impl SkuState {
    pub fn new(sku: Sku) -> Self {
        Self {
            sku,
            on_hand: 0,
            reserved: 0,
            reorder_point: 0,
            version: None,
            reservations: BTreeMap::new(),
            open_reservation_count: 0,
            locations: BTreeMap::new(),
            in_transit: 0,
            transfers: BTreeMap::new(),
            catalogue: None,
            discontinued: false,
        }
    }

    /// The balances at `location` (all zero where the SKU never was).
    pub fn at(&self, location: &str) -> LocationStock {
        self.locations.get(location).copied().unwrap_or_default()
    }

    fn location_mut(&mut self, location: &str) -> &mut LocationStock {
        if !self.locations.contains_key(location) {
            self.locations
                .insert(location.to_owned(), LocationStock::default());
        }
        self.locations
            .get_mut(location)
            .expect("inserted just above")
    }

    /// The balances as of now, in constant time.
    pub fn summary(&self) -> SkuSummary {
        SkuSummary {
            sku: self.sku.clone(),
            on_hand: self.on_hand,
            reserved: self.reserved,
            available: self.available(),
            reorder_point: self.reorder_point,
            below_reorder_point: self.is_below_reorder_point(),
            open_reservations: self.open_reservation_count,
            version: self.version,
            locations: self.locations.clone(),
            in_transit: self.in_transit,
            discontinued: self.discontinued,
        }
    }

    /// Units free to reserve: on hand minus reserved, never negative.
    pub fn available(&self) -> u64 {
        self.on_hand - self.reserved
    }

    pub fn open_reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations
            .values()
            .filter(|r| r.status == ReservationStatus::Open)
    }

    /// Whether available stock is below the reorder point (a low-stock alert should be open).
    pub fn is_below_reorder_point(&self) -> bool {
        self.available() < self.reorder_point
    }

    /// Fold one event. Total by design: events are facts, and a fact is never refused. The
    /// arithmetic saturates rather than panics, and [`SkuState::check_invariants`] reports a
    /// stream that breaks the rules (which `decide` never produces).
    pub fn apply(&mut self, event: &SkuEvent) {
        match event {
            SkuEvent::Replenished(e) => {
                self.on_hand = self.on_hand.saturating_add(e.quantity);
                let at = self.location_mut(&e.location);
                at.on_hand = at.on_hand.saturating_add(e.quantity);
            }
            SkuEvent::Reserved(e) => {
                self.reserved = self.reserved.saturating_add(e.quantity);
                let at = self.location_mut(&e.location);
                at.reserved = at.reserved.saturating_add(e.quantity);
                let replaced = self.reservations.insert(
                    e.reservation_id.clone(),
                    Reservation {
                        reservation_id: e.reservation_id.clone(),
                        order_id: e.order_id.clone(),
                        quantity: e.quantity,
                        ttl_seconds: e.ttl_seconds,
                        expires_at: e.expires_at,
                        status: ReservationStatus::Open,
                        location: e.location.clone(),
                    },
                );
                if replaced.is_none_or(|r| r.status != ReservationStatus::Open) {
                    self.open_reservation_count += 1;
                }
            }
            SkuEvent::Released(e) => self.close(
                &e.reservation_id,
                e.quantity,
                &e.location,
                ReservationStatus::Released,
            ),
            SkuEvent::Expired(e) => self.close(
                &e.reservation_id,
                e.quantity,
                &e.location,
                ReservationStatus::Expired,
            ),
            SkuEvent::Confirmed(e) => {
                self.close(
                    &e.reservation_id,
                    e.quantity,
                    &e.location,
                    ReservationStatus::Confirmed,
                );
                self.on_hand = self.on_hand.saturating_sub(e.quantity);
                let at = self.location_mut(&e.location);
                at.on_hand = at.on_hand.saturating_sub(e.quantity);
            }
            SkuEvent::Adjusted(e) => {
                let change = |on_hand: u64| {
                    if e.delta >= 0 {
                        on_hand.saturating_add(e.delta.unsigned_abs())
                    } else {
                        on_hand.saturating_sub(e.delta.unsigned_abs())
                    }
                };
                self.on_hand = change(self.on_hand);
                let at = self.location_mut(&e.location);
                at.on_hand = change(at.on_hand);
            }
            SkuEvent::ReorderPointSet(e) => {
                let at = self.location_mut(&e.location);
                let previous = std::mem::replace(&mut at.reorder_point, e.reorder_point);
                self.reorder_point = self
                    .reorder_point
                    .saturating_sub(previous)
                    .saturating_add(e.reorder_point);
            }
            SkuEvent::TransferDispatched(e) => {
                self.on_hand = self.on_hand.saturating_sub(e.quantity);
                let from = self.location_mut(&e.from_location);
                from.on_hand = from.on_hand.saturating_sub(e.quantity);
                self.in_transit = self.in_transit.saturating_add(e.quantity);
                let to = self.location_mut(&e.to_location);
                to.in_transit = to.in_transit.saturating_add(e.quantity);
                self.transfers.insert(
                    e.transfer_id.clone(),
                    Transfer {
                        transfer_id: e.transfer_id.clone(),
                        from_location: e.from_location.clone(),
                        to_location: e.to_location.clone(),
                        quantity: e.quantity,
                        reference: e.reference.clone(),
                        status: TransferStatus::InTransit,
                        quantity_received: None,
                    },
                );
            }
            SkuEvent::TransferReceived(e) => {
                self.in_transit = self.in_transit.saturating_sub(e.quantity_dispatched);
                self.on_hand = self.on_hand.saturating_add(e.quantity_received);
                let to = self.location_mut(&e.to_location);
                to.in_transit = to.in_transit.saturating_sub(e.quantity_dispatched);
                to.on_hand = to.on_hand.saturating_add(e.quantity_received);
                if let Some(transfer) = self.transfers.get_mut(&e.transfer_id) {
                    transfer.status = TransferStatus::Received;
                    transfer.quantity_received = Some(e.quantity_received);
                }
            }
            SkuEvent::TransferCancelled(e) => {
                self.in_transit = self.in_transit.saturating_sub(e.quantity);
                let to = self.location_mut(&e.to_location);
                to.in_transit = to.in_transit.saturating_sub(e.quantity);
                self.on_hand = self.on_hand.saturating_add(e.quantity);
                let from = self.location_mut(&e.from_location);
                from.on_hand = from.on_hand.saturating_add(e.quantity);
                if let Some(transfer) = self.transfers.get_mut(&e.transfer_id) {
                    transfer.status = TransferStatus::Cancelled;
                }
            }
            SkuEvent::Registered(SkuRegistered {
                name,
                unit,
                attributes,
            })
            | SkuEvent::Updated(SkuUpdated {
                name,
                unit,
                attributes,
            }) => {
                self.catalogue = Some(CatalogueEntry {
                    name: name.clone(),
                    unit: unit.clone(),
                    attributes: attributes.clone(),
                });
            }
            SkuEvent::Discontinued(_) => self.discontinued = true,
        }
        self.version = Some(self.version.map_or(0, |v| v + 1));
    }

    /// Fold only the SKU-wide totals and the version, as read models that keep one row of
    /// totals per SKU do: they hold no locations or reservations, and the events carry all the
    /// totals need (the same fold as the history's [`crate::Balances`]).
    pub fn apply_to_totals(&mut self, event: &SkuEvent) {
        let mut balances = crate::Balances::of(self);
        balances.apply(event);
        self.on_hand = balances.on_hand;
        self.reserved = balances.reserved;
        self.reorder_point = balances.reorder_point;
        self.in_transit = balances.in_transit;
        self.version = Some(self.version.map_or(0, |v| v + 1));
    }

    /// The transfers dispatched and neither received nor cancelled.
    pub fn transfers_in_transit(&self) -> impl Iterator<Item = &Transfer> {
        self.transfers
            .values()
            .filter(|t| t.status == TransferStatus::InTransit)
    }

    fn close(
        &mut self,
        reservation_id: &str,
        quantity: u64,
        location: &str,
        status: ReservationStatus,
    ) {
        self.reserved = self.reserved.saturating_sub(quantity);
        let at = self.location_mut(location);
        at.reserved = at.reserved.saturating_sub(quantity);
        if let Some(reservation) = self.reservations.get_mut(reservation_id) {
            if reservation.status == ReservationStatus::Open {
                self.open_reservation_count -= 1;
            }
            reservation.status = status;
        }
    }

    /// The constant-time part of [`SkuState::check_invariants`], cheap enough to run after
    /// every decision of a hot SKU.
    pub fn check_balances(&self) -> Result<(), String> {
        if self.reserved > self.on_hand {
            return Err(format!(
                "reserved {} exceeds on hand {}",
                self.reserved, self.on_hand
            ));
        }
        if self.on_hand > ON_HAND_MAX {
            return Err(format!(
                "on hand {} exceeds the limit {ON_HAND_MAX}",
                self.on_hand
            ));
        }
        Ok(())
    }

    /// The rules every state reachable through `decide` satisfies.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_balances()?;
        let open: u64 = self.open_reservations().map(|r| r.quantity).sum();
        if open != self.reserved {
            return Err(format!(
                "open reservations hold {open} units but reserved is {}",
                self.reserved
            ));
        }
        let mut sums = LocationStock::default();
        for (location, stock) in &self.locations {
            if stock.reserved > stock.on_hand {
                return Err(format!(
                    "reserved {} exceeds on hand {} at {location}",
                    stock.reserved, stock.on_hand
                ));
            }
            let held: u64 = self
                .open_reservations()
                .filter(|r| r.location == *location)
                .map(|r| r.quantity)
                .sum();
            if held != stock.reserved {
                return Err(format!(
                    "open reservations at {location} hold {held} units but reserved there is {}",
                    stock.reserved
                ));
            }
            let arriving: u64 = self
                .transfers_in_transit()
                .filter(|t| t.to_location == *location)
                .map(|t| t.quantity)
                .sum();
            if arriving != stock.in_transit {
                return Err(format!(
                    "transfers in transit to {location} carry {arriving} units but in transit \
                     there is {}",
                    stock.in_transit
                ));
            }
            sums.on_hand += stock.on_hand;
            sums.reserved += stock.reserved;
            sums.reorder_point += stock.reorder_point;
            sums.in_transit += stock.in_transit;
        }
        let totals = LocationStock {
            on_hand: self.on_hand,
            reserved: self.reserved,
            reorder_point: self.reorder_point,
            in_transit: self.in_transit,
        };
        if sums != totals {
            return Err(format!(
                "the locations add up to {sums:?} but the totals are {totals:?}"
            ));
        }
        let open_count = self.open_reservations().count() as u64;
        if open_count != self.open_reservation_count {
            return Err(format!(
                "{open_count} reservations are open but the count says {}",
                self.open_reservation_count
            ));
        }
        Ok(())
    }

    /// Decide what a command means for this SKU now. Pure: no I/O, no clock (the caller passes
    /// `now`), no logging. An empty list means the command was already carried out (a retried
    /// reserve with the same reservation id and the same request).
    pub fn decide(
        &self,
        command: &SkuCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<SkuEvent>, DomainError> {
        match command {
            SkuCommand::Replenish(c) => {
                if self.discontinued {
                    return Err(DomainError::SkuDiscontinued);
                }
                let on_hand_after = self.on_hand + c.quantity.get();
                if on_hand_after > ON_HAND_MAX {
                    return Err(DomainError::OnHandLimitExceeded {
                        on_hand_after,
                        limit: ON_HAND_MAX,
                    });
                }
                Ok(vec![SkuEvent::Replenished(StockReplenished {
                    quantity: c.quantity.get(),
                    reference: c.reference.as_ref().map(|r| r.as_str().to_owned()),
                    location: c.location.as_str().to_owned(),
                })])
            }
            SkuCommand::Reserve(c) => {
                let order_id = c.order_id.as_ref().map(|o| o.as_str().to_owned());
                let ttl_seconds = c.ttl_seconds.map(|t| t.get());
                if let Some(existing) = self.reservations.get(c.reservation_id.as_str()) {
                    let identical = existing.quantity == c.quantity.get()
                        && existing.order_id == order_id
                        && existing.ttl_seconds == ttl_seconds
                        && c.allocation.admits(&existing.location);
                    return if identical {
                        Ok(Vec::new())
                    } else {
                        Err(DomainError::ReservationIdConflict {
                            reservation_id: existing.reservation_id.clone(),
                            existing_quantity: existing.quantity,
                            existing_order_id: existing.order_id.clone(),
                            existing_ttl_seconds: existing.ttl_seconds,
                        })
                    };
                }
                if self.discontinued {
                    return Err(DomainError::SkuDiscontinued);
                }
                let requested = c.quantity.get();
                let location = self.allocate(&c.allocation, requested)?;
                let expires_at = ttl_seconds.map(|ttl| now + Duration::seconds(ttl as i64));
                Ok(vec![SkuEvent::Reserved(StockReserved {
                    reservation_id: c.reservation_id.as_str().to_owned(),
                    order_id,
                    quantity: requested,
                    ttl_seconds,
                    expires_at,
                    location,
                })])
            }
            SkuCommand::Release(c) => {
                let reservation = self.open_reservation(c.reservation_id.as_str())?;
                Ok(vec![SkuEvent::Released(ReservationReleased {
                    reservation_id: reservation.reservation_id.clone(),
                    order_id: reservation.order_id.clone(),
                    quantity: reservation.quantity,
                    reason: c.reason.as_ref().map(|r| r.as_str().to_owned()),
                    location: reservation.location.clone(),
                })])
            }
            SkuCommand::Expire(c) => {
                let reservation = self.open_reservation(c.reservation_id.as_str())?;
                let Some(expires_at) = reservation.expires_at else {
                    return Err(DomainError::ReservationHasNoExpiry {
                        reservation_id: reservation.reservation_id.clone(),
                    });
                };
                if expires_at > now {
                    return Err(DomainError::ReservationNotYetExpired {
                        reservation_id: reservation.reservation_id.clone(),
                        expires_at,
                    });
                }
                Ok(vec![SkuEvent::Expired(ReservationExpired {
                    reservation_id: reservation.reservation_id.clone(),
                    order_id: reservation.order_id.clone(),
                    quantity: reservation.quantity,
                    expires_at,
                    location: reservation.location.clone(),
                })])
            }
            SkuCommand::Confirm(c) => {
                let reservation = self.open_reservation(c.reservation_id.as_str())?;
                Ok(vec![SkuEvent::Confirmed(ReservationConfirmed {
                    reservation_id: reservation.reservation_id.clone(),
                    order_id: reservation.order_id.clone(),
                    quantity: reservation.quantity,
                    location: reservation.location.clone(),
                })])
            }
            SkuCommand::Adjust(c) => {
                let delta = c.delta.get();
                let here = self.at(c.location.as_str());
                let on_hand_after = here.on_hand as i64 + delta;
                if on_hand_after < here.reserved as i64 {
                    return Err(DomainError::AdjustmentBelowReserved {
                        delta,
                        on_hand_after,
                        reserved: here.reserved,
                        location: Some(c.location.as_str().to_owned()),
                    });
                }
                let total_after = self.on_hand as i64 + delta;
                if total_after as u64 > ON_HAND_MAX {
                    return Err(DomainError::OnHandLimitExceeded {
                        on_hand_after: total_after as u64,
                        limit: ON_HAND_MAX,
                    });
                }
                Ok(vec![SkuEvent::Adjusted(StockAdjusted {
                    delta,
                    reason: c.reason.as_str().to_owned(),
                    reference: c.reference.as_ref().map(|r| r.as_str().to_owned()),
                    location: c.location.as_str().to_owned(),
                })])
            }
            SkuCommand::SetReorderPoint(c) => {
                Ok(vec![SkuEvent::ReorderPointSet(ReorderPointSet {
                    reorder_point: c.reorder_point.get(),
                    previous_reorder_point: self.at(c.location.as_str()).reorder_point,
                    location: c.location.as_str().to_owned(),
                })])
            }
            SkuCommand::DispatchTransfer(c) => {
                let reference = c.reference.as_ref().map(|r| r.as_str().to_owned());
                if let Some(existing) = self.transfers.get(c.transfer_id.as_str()) {
                    let identical = existing.from_location == c.from_location.as_str()
                        && existing.to_location == c.to_location.as_str()
                        && existing.quantity == c.quantity.get()
                        && existing.reference == reference;
                    return if identical {
                        Ok(Vec::new())
                    } else {
                        Err(DomainError::TransferIdConflict {
                            transfer_id: existing.transfer_id.clone(),
                            existing_from_location: existing.from_location.clone(),
                            existing_to_location: existing.to_location.clone(),
                            existing_quantity: existing.quantity,
                        })
                    };
                }
                if c.from_location == c.to_location {
                    return Err(DomainError::TransferWithinOneLocation {
                        location: c.from_location.as_str().to_owned(),
                    });
                }
                let requested = c.quantity.get();
                let available = self.at(c.from_location.as_str()).available();
                if requested > available {
                    return Err(DomainError::InsufficientStock {
                        requested,
                        available,
                        location: Some(c.from_location.as_str().to_owned()),
                    });
                }
                Ok(vec![SkuEvent::TransferDispatched(TransferDispatched {
                    transfer_id: c.transfer_id.as_str().to_owned(),
                    from_location: c.from_location.as_str().to_owned(),
                    to_location: c.to_location.as_str().to_owned(),
                    quantity: requested,
                    reference,
                })])
            }
            SkuCommand::ReceiveTransfer(c) => {
                let transfer = self.transfer_in_transit(c.transfer_id.as_str())?;
                let dispatched = transfer.quantity;
                let received = c.quantity_received.unwrap_or(dispatched);
                let shortfall = |received| (transfer.transfer_id.clone(), dispatched, received);
                if received > dispatched {
                    let (transfer_id, dispatched, received) = shortfall(received);
                    return Err(DomainError::ReceiptExceedsDispatch {
                        transfer_id,
                        dispatched,
                        received,
                    });
                }
                if received < dispatched && c.discrepancy_reason.is_none() {
                    let (transfer_id, dispatched, received) = shortfall(received);
                    return Err(DomainError::DiscrepancyReasonRequired {
                        transfer_id,
                        dispatched,
                        received,
                    });
                }
                self.check_on_hand_limit(received)?;
                Ok(vec![SkuEvent::TransferReceived(TransferReceived {
                    transfer_id: transfer.transfer_id.clone(),
                    from_location: transfer.from_location.clone(),
                    to_location: transfer.to_location.clone(),
                    quantity_dispatched: dispatched,
                    quantity_received: received,
                    discrepancy_reason: c
                        .discrepancy_reason
                        .as_ref()
                        .map(|r| r.as_str().to_owned()),
                })])
            }
            SkuCommand::CancelTransfer(c) => {
                let transfer = self.transfer_in_transit(c.transfer_id.as_str())?;
                self.check_on_hand_limit(transfer.quantity)?;
                Ok(vec![SkuEvent::TransferCancelled(TransferCancelled {
                    transfer_id: transfer.transfer_id.clone(),
                    from_location: transfer.from_location.clone(),
                    to_location: transfer.to_location.clone(),
                    quantity: transfer.quantity,
                    reason: c.reason.as_ref().map(|r| r.as_str().to_owned()),
                })])
            }
            SkuCommand::Register(c) => {
                let entry = CatalogueEntry {
                    name: c.name.as_str().to_owned(),
                    unit: c.unit.as_str().to_owned(),
                    attributes: c.attributes.get().clone(),
                };
                match &self.catalogue {
                    Some(existing) if *existing == entry => Ok(Vec::new()),
                    Some(_) => Err(DomainError::SkuAlreadyRegistered),
                    None => Ok(vec![SkuEvent::Registered(SkuRegistered {
                        name: entry.name,
                        unit: entry.unit,
                        attributes: entry.attributes,
                    })]),
                }
            }
            SkuCommand::Update(c) => {
                let Some(existing) = &self.catalogue else {
                    return Err(DomainError::SkuNotRegistered);
                };
                let entry = CatalogueEntry {
                    name: c
                        .name
                        .as_ref()
                        .map_or_else(|| existing.name.clone(), |n| n.as_str().to_owned()),
                    unit: c
                        .unit
                        .as_ref()
                        .map_or_else(|| existing.unit.clone(), |u| u.as_str().to_owned()),
                    attributes: c
                        .attributes
                        .as_ref()
                        .map_or_else(|| existing.attributes.clone(), |a| a.get().clone()),
                };
                if entry == *existing {
                    return Ok(Vec::new());
                }
                Ok(vec![SkuEvent::Updated(SkuUpdated {
                    name: entry.name,
                    unit: entry.unit,
                    attributes: entry.attributes,
                })])
            }
            SkuCommand::Discontinue(c) => {
                if self.discontinued {
                    return Ok(Vec::new());
                }
                Ok(vec![SkuEvent::Discontinued(SkuDiscontinued {
                    reason: c.reason.as_ref().map(|r| r.as_str().to_owned()),
                })])
            }
        }
    }

    /// Refuses units coming back into on hand (a receipt, a cancelled transfer) past the limit.
    fn check_on_hand_limit(&self, arriving: u64) -> Result<(), DomainError> {
        let on_hand_after = self.on_hand + arriving;
        if on_hand_after > ON_HAND_MAX {
            return Err(DomainError::OnHandLimitExceeded {
                on_hand_after,
                limit: ON_HAND_MAX,
            });
        }
        Ok(())
    }

    fn transfer_in_transit(&self, transfer_id: &str) -> Result<&Transfer, DomainError> {
        let transfer =
            self.transfers
                .get(transfer_id)
                .ok_or_else(|| DomainError::TransferNotFound {
                    transfer_id: transfer_id.to_owned(),
                })?;
        if transfer.status != TransferStatus::InTransit {
            return Err(DomainError::TransferClosed {
                transfer_id: transfer_id.to_owned(),
                status: transfer.status,
            });
        }
        Ok(transfer)
    }

    /// The location a reserve of `requested` units holds them at, or why none can.
    fn allocate(&self, allocation: &Allocation, requested: u64) -> Result<String, DomainError> {
        let refused = |available: u64, location: Option<&str>| DomainError::InsufficientStock {
            requested,
            available,
            location: location.map(str::to_owned),
        };
        match allocation {
            Allocation::At(location) => {
                let available = self.at(location.as_str()).available();
                if requested > available {
                    return Err(refused(available, Some(location.as_str())));
                }
                Ok(location.as_str().to_owned())
            }
            Allocation::Preference(locations) => {
                let mut best = 0;
                for location in locations {
                    let available = self.at(location.as_str()).available();
                    if requested <= available {
                        return Ok(location.as_str().to_owned());
                    }
                    best = best.max(available);
                }
                Err(refused(best, None))
            }
            Allocation::MostAvailable => {
                let mut best: Option<(&String, u64)> = None;
                for (location, stock) in &self.locations {
                    if best.is_none_or(|(_, most)| stock.available() > most) {
                        best = Some((location, stock.available()));
                    }
                }
                match best {
                    Some((location, available)) if requested <= available => Ok(location.clone()),
                    other => Err(refused(other.map_or(0, |(_, a)| a), None)),
                }
            }
        }
    }

    fn open_reservation(&self, reservation_id: &str) -> Result<&Reservation, DomainError> {
        let reservation = self.reservations.get(reservation_id).ok_or_else(|| {
            DomainError::ReservationNotFound {
                reservation_id: reservation_id.to_owned(),
            }
        })?;
        if reservation.status != ReservationStatus::Open {
            return Err(DomainError::ReservationClosed {
                reservation_id: reservation_id.to_owned(),
                status: reservation.status,
            });
        }
        Ok(reservation)
    }
}
