//! Transfers as the aggregate keeps them: units of a SKU moving from one of its locations to
//! another. Dispatched units have left the source's on hand and are in transit until they are
//! received at the destination (all, or fewer with a discrepancy reason) or the transfer is
//! cancelled (they return to the source).

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    InTransit,
    Received,
    Cancelled,
}

impl TransferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InTransit => "in_transit",
            Self::Received => "received",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TransferStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub transfer_id: String,
    pub from_location: String,
    pub to_location: String,
    pub quantity: u64,
    pub reference: Option<String>,
    pub status: TransferStatus,
    /// Units that arrived, once received.
    pub quantity_received: Option<u64>,
}

/// A SKU's catalogue entry: what the product is, beside how much of it there is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    pub name: String,
    pub unit: String,
    pub attributes: std::collections::BTreeMap<String, String>,
}
