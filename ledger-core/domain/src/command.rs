//! Commands: orders given to one SKU. Each is built from validated values, so `decide` only
//! checks business rules against the state, never the shape of the input.

use super::values::{
    AdjustmentDelta, Attributes, LocationId, OrderId, ProductName, Quantity, Reason, Reference,
    ReorderPoint, ReservationId, TransferId, TtlSeconds, Unit,
};

/// Units arrived (a delivery, a return to stock): on hand rises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplenishStock {
    pub quantity: Quantity,
    pub reference: Option<Reference>,
    pub location: LocationId,
}

/// Hold units for an order. The reservation id makes the command idempotent: the same request
/// again changes nothing, a different request with the same id is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveStock {
    pub reservation_id: ReservationId,
    pub order_id: Option<OrderId>,
    pub quantity: Quantity,
    pub ttl_seconds: Option<TtlSeconds>,
    /// Where the units may be held; the whole quantity is held at one location.
    pub allocation: Allocation,
}

/// Where a reserve may hold its units. The answer (the `StockReserved` event) names the
/// location chosen. A request is all or nothing: the whole quantity is held at one location,
/// or the reserve is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// At this location only (a sale in store 12 is served from store 12).
    At(LocationId),
    /// At the first of these locations (at most [`crate::ALLOCATION_LOCATIONS_MAX`], no
    /// repeats) that has the whole quantity available.
    Preference(Vec<LocationId>),
    /// At the location with the most units available (the first by name among equals).
    MostAvailable,
}

impl Default for Allocation {
    fn default() -> Self {
        Self::At(LocationId::default_location())
    }
}

impl Allocation {
    /// A preference list: 1 to [`crate::ALLOCATION_LOCATIONS_MAX`] locations, no repeats.
    pub fn preference(locations: Vec<LocationId>) -> Result<Self, crate::ValidationError> {
        let field = "allocation.locations";
        if locations.is_empty() {
            return Err(crate::ValidationError::new(
                field,
                "must name at least one location",
            ));
        }
        if locations.len() > crate::ALLOCATION_LOCATIONS_MAX {
            return Err(crate::ValidationError::new(
                field,
                format!(
                    "names {} locations; at most {} are allowed",
                    locations.len(),
                    crate::ALLOCATION_LOCATIONS_MAX
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(repeated) = locations.iter().find(|l| !seen.insert(l.as_str())) {
            return Err(crate::ValidationError::new(
                field,
                format!("names {repeated} twice"),
            ));
        }
        Ok(Self::Preference(locations))
    }

    /// Whether a hold at `location` is one this allocation could have chosen: a retried
    /// reserve is recognised as the same request when it is.
    pub fn admits(&self, location: &str) -> bool {
        match self {
            Self::At(at) => at.as_str() == location,
            Self::Preference(list) => list.iter().any(|l| l.as_str() == location),
            Self::MostAvailable => true,
        }
    }
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
    pub location: LocationId,
}

/// Set the threshold below which available stock opens a low-stock alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetReorderPoint {
    pub reorder_point: ReorderPoint,
    pub location: LocationId,
}

/// Send units from one location to another: they leave the source's on hand now and are in
/// transit until received or cancelled. The transfer id makes the command idempotent. Two
/// different locations are needed; `decide` refuses a transfer from a location to itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchTransfer {
    pub transfer_id: TransferId,
    pub from_location: LocationId,
    pub to_location: LocationId,
    pub quantity: Quantity,
    pub reference: Option<Reference>,
}

/// Units of an in-transit transfer arrived at the destination. `quantity_received` defaults to
/// everything dispatched; fewer (down to none) needs a discrepancy reason, and the shortfall
/// leaves the books with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveTransfer {
    pub transfer_id: TransferId,
    pub quantity_received: Option<u64>,
    pub discrepancy_reason: Option<Reason>,
}

/// Call off an in-transit transfer: its units return to the source's on hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTransfer {
    pub transfer_id: TransferId,
    pub reason: Option<Reason>,
}

/// Put a SKU in the catalogue: its name, unit and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterSku {
    pub name: ProductName,
    pub unit: Unit,
    pub attributes: Attributes,
}

/// Change a registered SKU's catalogue entry; fields left out keep their value, and attributes
/// given replace the whole set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSku {
    pub name: Option<ProductName>,
    pub unit: Option<Unit>,
    pub attributes: Option<Attributes>,
}

/// Stop selling and restocking a SKU: it refuses replenishment and new reservations from now
/// on; open reservations, transfers, adjustments and its history are untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscontinueSku {
    pub reason: Option<Reason>,
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
    DispatchTransfer(DispatchTransfer),
    ReceiveTransfer(ReceiveTransfer),
    CancelTransfer(CancelTransfer),
    Register(RegisterSku),
    Update(UpdateSku),
    Discontinue(DiscontinueSku),
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
            Self::DispatchTransfer(_) => "dispatch_transfer",
            Self::ReceiveTransfer(_) => "receive_transfer",
            Self::CancelTransfer(_) => "cancel_transfer",
            Self::Register(_) => "register",
            Self::Update(_) => "update",
            Self::Discontinue(_) => "discontinue",
        }
    }
}
