//! The SKU aggregate: state folded from events (`apply`, total, never fails) and the pure
//! decision function (`decide`, may reject) that turns a command into new events.

use super::command::SkuCommand;
use super::error::DomainError;
use super::event::{
    ReorderPointSet, ReservationConfirmed, ReservationExpired, ReservationReleased, SkuEvent,
    StockAdjusted, StockReplenished, StockReserved,
};
use super::reservation::{Reservation, ReservationStatus};
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
        }
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
            }
            SkuEvent::Reserved(e) => {
                self.reserved = self.reserved.saturating_add(e.quantity);
                let replaced = self.reservations.insert(
                    e.reservation_id.clone(),
                    Reservation {
                        reservation_id: e.reservation_id.clone(),
                        order_id: e.order_id.clone(),
                        quantity: e.quantity,
                        ttl_seconds: e.ttl_seconds,
                        expires_at: e.expires_at,
                        status: ReservationStatus::Open,
                    },
                );
                if replaced.is_none_or(|r| r.status != ReservationStatus::Open) {
                    self.open_reservation_count += 1;
                }
            }
            SkuEvent::Released(e) => {
                self.close(&e.reservation_id, e.quantity, ReservationStatus::Released)
            }
            SkuEvent::Expired(e) => {
                self.close(&e.reservation_id, e.quantity, ReservationStatus::Expired)
            }
            SkuEvent::Confirmed(e) => {
                self.close(&e.reservation_id, e.quantity, ReservationStatus::Confirmed);
                self.on_hand = self.on_hand.saturating_sub(e.quantity);
            }
            SkuEvent::Adjusted(e) => {
                self.on_hand = if e.delta >= 0 {
                    self.on_hand.saturating_add(e.delta as u64)
                } else {
                    self.on_hand.saturating_sub(e.delta.unsigned_abs())
                };
            }
            SkuEvent::ReorderPointSet(e) => self.reorder_point = e.reorder_point,
        }
        self.version = Some(self.version.map_or(0, |v| v + 1));
    }

    fn close(&mut self, reservation_id: &str, quantity: u64, status: ReservationStatus) {
        self.reserved = self.reserved.saturating_sub(quantity);
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
                })])
            }
            SkuCommand::Reserve(c) => {
                let order_id = c.order_id.as_ref().map(|o| o.as_str().to_owned());
                let ttl_seconds = c.ttl_seconds.map(|t| t.get());
                if let Some(existing) = self.reservations.get(c.reservation_id.as_str()) {
                    let identical = existing.quantity == c.quantity.get()
                        && existing.order_id == order_id
                        && existing.ttl_seconds == ttl_seconds;
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
                let requested = c.quantity.get();
                if requested > self.available() {
                    return Err(DomainError::InsufficientStock {
                        requested,
                        available: self.available(),
                    });
                }
                let expires_at = ttl_seconds.map(|ttl| now + Duration::seconds(ttl as i64));
                Ok(vec![SkuEvent::Reserved(StockReserved {
                    reservation_id: c.reservation_id.as_str().to_owned(),
                    order_id,
                    quantity: requested,
                    ttl_seconds,
                    expires_at,
                })])
            }
            SkuCommand::Release(c) => {
                let reservation = self.open_reservation(c.reservation_id.as_str())?;
                Ok(vec![SkuEvent::Released(ReservationReleased {
                    reservation_id: reservation.reservation_id.clone(),
                    order_id: reservation.order_id.clone(),
                    quantity: reservation.quantity,
                    reason: c.reason.as_ref().map(|r| r.as_str().to_owned()),
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
                })])
            }
            SkuCommand::Confirm(c) => {
                let reservation = self.open_reservation(c.reservation_id.as_str())?;
                Ok(vec![SkuEvent::Confirmed(ReservationConfirmed {
                    reservation_id: reservation.reservation_id.clone(),
                    order_id: reservation.order_id.clone(),
                    quantity: reservation.quantity,
                })])
            }
            SkuCommand::Adjust(c) => {
                let delta = c.delta.get();
                let on_hand_after = self.on_hand as i64 + delta;
                if on_hand_after < self.reserved as i64 {
                    return Err(DomainError::AdjustmentBelowReserved {
                        delta,
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
                Ok(vec![SkuEvent::Adjusted(StockAdjusted {
                    delta,
                    reason: c.reason.as_str().to_owned(),
                    reference: c.reference.as_ref().map(|r| r.as_str().to_owned()),
                })])
            }
            SkuCommand::SetReorderPoint(c) => {
                Ok(vec![SkuEvent::ReorderPointSet(ReorderPointSet {
                    reorder_point: c.reorder_point.get(),
                    previous_reorder_point: self.reorder_point,
                })])
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
