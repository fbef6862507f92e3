//! Business-rule rejections. Each says what was asked, what the state allowed, and carries the
//! numbers a client needs to act (for example the available quantity on insufficient stock).

use super::reservation::ReservationStatus;
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
        }
    }
}
