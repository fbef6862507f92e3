//! Every scenario's outcome: its result, or why there is none. The report prints them and the
//! targets table judges them.

use crate::closed_loop::ScenarioResult;
use crate::scenario::audit::AuditResult;
use crate::scenario::cold_load::ColdLoadResult;
use crate::scenario::degradation::DegradationResult;
use crate::scenario::expiry::ExpiryResult;
use crate::scenario::floor::FloorResult;
use crate::scenario::lag::LagResult;
use crate::scenario::locations::LocationsResult;
use crate::scenario::publisher::PublisherResult;
use crate::scenario::rebuild::RebuildResult;
use crate::scenario::sellout::SelloutResult;
use serde::Serialize;

/// A scenario's result, or why there is none.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome<T> {
    Ran(T),
    Skipped { reason: String },
    Failed { error: String },
}

impl<T> Default for Outcome<T> {
    fn default() -> Self {
        Self::Skipped {
            reason: "not reached".to_owned(),
        }
    }
}

impl<T> From<Result<T, String>> for Outcome<T> {
    fn from(result: Result<T, String>) -> Self {
        match result {
            Ok(value) => Self::Ran(value),
            Err(error) => Self::Failed { error },
        }
    }
}

impl<T> Outcome<T> {
    pub fn failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }

    pub fn ran(&self) -> Option<&T> {
        match self {
            Self::Ran(result) => Some(result),
            _ => None,
        }
    }

    /// Print the result through `table`, or the section's heading and why there is none.
    pub fn print(&self, heading: &str, table: impl FnOnce(&T)) {
        println!();
        match self {
            Self::Ran(result) => table(result),
            Self::Skipped { reason } => println!("## {heading}: skipped ({reason})"),
            Self::Failed { error } => println!("## {heading}: FAILED: {error}"),
        }
    }
}

/// Every scenario's outcome, in the order they are printed.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub uncontended: Outcome<ScenarioResult>,
    pub hot_sku: Outcome<ScenarioResult>,
    pub locations: Outcome<LocationsResult>,
    pub sellout: Outcome<SelloutResult>,
    pub lag: Outcome<LagResult>,
    pub expiry: Outcome<ExpiryResult>,
    pub degradation: Outcome<DegradationResult>,
    pub cold_load: Outcome<ColdLoadResult>,
    pub rebuild: Outcome<RebuildResult>,
    pub floor: Outcome<FloorResult>,
    pub audit: Outcome<AuditResult>,
    pub publisher: Outcome<PublisherResult>,
}
