//! Reservations as the aggregate keeps them: a hold's terms and where it stands. Apart from the
//! aggregate so that rejections ([`crate::error`]) can name a reservation's status without the
//! state and its errors importing each other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    Open,
    Released,
    Expired,
    Confirmed,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Confirmed => "confirmed",
        }
    }
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub quantity: u64,
    pub ttl_seconds: Option<u64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub status: ReservationStatus,
    /// Where the units are held.
    #[serde(default = "default_location")]
    pub location: String,
}

fn default_location() -> String {
    crate::values::DEFAULT_LOCATION.to_owned()
}
