//! Business-rule rejections. Each says what was asked, what the state allowed, and carries the
//! numbers a client needs to act (for example the available quantity on insufficient stock).

use super::reservation::ReservationStatus;
use super::transfer::TransferStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "rejection", rename_all = "snake_case")]
pub enum DomainError {
    #[error(
        "insufficient stock: {requested} requested, {available} available{}",
        at(location)
    )]
    InsufficientStock {
        requested: u64,
        /// Available at the location asked for; for a choice of locations, the most any one
        /// of them has (a reserve is held at one location).
        available: u64,
        /// The location asked for; `None` when the request let the ledger choose.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
    },

    #[error("reservation {reservation_id} does not exist for this SKU")]
    ReservationNotFound { reservation_id: String },

    #[error("reservation {reservation_id} is already {status}")]
    ReservationClosed {
        reservation_id: String,
        status: ReservationStatus,
    },

    #[error(
        "reservation {reservation_id} already exists with a different request \
         (quantity {existing_quantity}, order {existing_order_id:?}, ttl {existing_ttl_seconds:?}s)"
    )]
    ReservationIdConflict {
        reservation_id: String,
        existing_quantity: u64,
        existing_order_id: Option<String>,
        existing_ttl_seconds: Option<u64>,
    },

    #[error(
        "reservation {reservation_id} is held by another principal; only its holder (or an \
         operator) may release or confirm it"
    )]
    ReservationHeldByAnother { reservation_id: String },

    #[error("reservation {reservation_id} has no time-to-live and cannot expire")]
    ReservationHasNoExpiry { reservation_id: String },

    #[error("reservation {reservation_id} expires at {expires_at}, which has not passed yet")]
    ReservationNotYetExpired {
        reservation_id: String,
        expires_at: DateTime<Utc>,
    },

    #[error(
        "adjustment of {delta} would leave on hand at {on_hand_after}, below the {reserved} units \
         reserved{}; release or confirm reservations first",
        at(location)
    )]
    AdjustmentBelowReserved {
        delta: i64,
        on_hand_after: i64,
        reserved: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
    },

    #[error("on hand would reach {on_hand_after}, above the limit of {limit}")]
    OnHandLimitExceeded { on_hand_after: u64, limit: u64 },

    #[error("a transfer moves units between two locations; {location} is both ends")]
    TransferWithinOneLocation { location: String },

    #[error("transfer {transfer_id} does not exist for this SKU")]
    TransferNotFound { transfer_id: String },

    #[error("transfer {transfer_id} is already {status}")]
    TransferClosed {
        transfer_id: String,
        status: TransferStatus,
    },

    #[error(
        "transfer {transfer_id} already exists with a different request ({existing_quantity} \
         units from {existing_from_location} to {existing_to_location})"
    )]
    TransferIdConflict {
        transfer_id: String,
        existing_from_location: String,
        existing_to_location: String,
        existing_quantity: u64,
    },

    #[error("transfer {transfer_id} dispatched {dispatched} units; {received} cannot be received")]
    ReceiptExceedsDispatch {
        transfer_id: String,
        dispatched: u64,
        received: u64,
    },

    #[error(
        "transfer {transfer_id} dispatched {dispatched} units and {received} arrived; a receipt \
         short of the dispatch needs a discrepancy reason"
    )]
    DiscrepancyReasonRequired {
        transfer_id: String,
        dispatched: u64,
        received: u64,
    },

    #[error("the SKU is discontinued: it takes no replenishment and no new reservations")]
    SkuDiscontinued,

    #[error("the SKU is already in the catalogue with a different entry; update it instead")]
    SkuAlreadyRegistered,

    #[error("the SKU is not in the catalogue; register it first")]
    SkuNotRegistered,
}

fn at(location: &Option<String>) -> String {
    location
        .as_ref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default()
}

impl DomainError {
    /// A stable identifier for this kind of rejection, for HTTP problem types and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InsufficientStock { .. } => "insufficient-stock",
            Self::ReservationNotFound { .. } => "reservation-not-found",
            Self::ReservationClosed { .. } => "reservation-closed",
            Self::ReservationIdConflict { .. } => "reservation-id-conflict",
            Self::ReservationHeldByAnother { .. } => "reservation-held-by-another",
            Self::ReservationHasNoExpiry { .. } => "reservation-has-no-expiry",
            Self::ReservationNotYetExpired { .. } => "reservation-not-yet-expired",
            Self::AdjustmentBelowReserved { .. } => "adjustment-below-reserved",
            Self::OnHandLimitExceeded { .. } => "on-hand-limit-exceeded",
            Self::TransferWithinOneLocation { .. } => "transfer-within-one-location",
            Self::TransferNotFound { .. } => "transfer-not-found",
            Self::TransferClosed { .. } => "transfer-closed",
            Self::TransferIdConflict { .. } => "transfer-id-conflict",
            Self::ReceiptExceedsDispatch { .. } => "receipt-exceeds-dispatch",
            Self::DiscrepancyReasonRequired { .. } => "discrepancy-reason-required",
            Self::SkuDiscontinued => "sku-discontinued",
            Self::SkuAlreadyRegistered => "sku-already-registered",
            Self::SkuNotRegistered => "sku-not-registered",
        }
    }
}
