//! Commands: orders given to one SKU. Each is built from validated values, so `decide` only
//! checks business rules against the state, never the shape of the input.

use super::values::{
    AdjustmentDelta, OrderId, Quantity, Reason, Reference, ReorderPoint, ReservationId, TtlSeconds,
};

/// Units arrived (a delivery, a return to stock): on hand rises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplenishStock {
    pub quantity: Quantity,
    pub reference: Option<Reference>,
}

/// Hold units for an order. The reservation id makes the command idempotent: the same request
/// again changes nothing, a different request with the same id is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveStock {
    pub reservation_id: ReservationId,
    pub order_id: Option<OrderId>,
    pub quantity: Quantity,
    pub ttl_seconds: Option<TtlSeconds>,
}

/// End an open reservation and give its units back to available (cart abandoned, order cancelled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseReservation {
    pub reservation_id: ReservationId,
    pub reason: Option<Reason>,
}

/// End an open reservation whose time-to-live has passed; issued by the expiry worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireReservation {
    pub reservation_id: ReservationId,
}

/// The reserved units leave the building (shipped): on hand and reserved both drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmReservation {
    pub reservation_id: ReservationId,
}

/// A signed cycle-count correction, with the reason an auditor will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustStock {
    pub delta: AdjustmentDelta,
    pub reason: Reason,
    pub reference: Option<Reference>,
}

/// Set the threshold below which available stock opens a low-stock alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetReorderPoint {
    pub reorder_point: ReorderPoint,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkuCommand {
    Replenish(ReplenishStock),
    Reserve(ReserveStock),
    Release(ReleaseReservation),
    Expire(ExpireReservation),
    Confirm(ConfirmReservation),
    Adjust(AdjustStock),
    SetReorderPoint(SetReorderPoint),
}

impl SkuCommand {
    /// A stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Replenish(_) => "replenish",
            Self::Reserve(_) => "reserve",
            Self::Release(_) => "release",
            Self::Expire(_) => "expire",
            Self::Confirm(_) => "confirm",
            Self::Adjust(_) => "adjust",
            Self::SetReorderPoint(_) => "set_reorder_point",
        }
    }
}
