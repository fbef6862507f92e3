//! Conversions between the ledger's unsigned numbers and PostgreSQL's signed `bigint`, and the
//! log position as read models store and show it. Stored values outside the unsigned range are
//! refused, never wrapped.

use crate::error::ProjectionError;
use ledger_domain::{Position, Sku};
use serde::Serialize;
use tokio_postgres::Row;

/// A place in the store-wide log, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LogPosition {
    pub commit: u64,
    pub prepare: u64,
}

impl From<Position> for LogPosition {
    fn from(position: Position) -> Self {
        Self {
            commit: position.commit,
            prepare: position.prepare,
        }
    }
}

impl From<LogPosition> for Position {
    fn from(position: LogPosition) -> Self {
        Self {
            commit: position.commit,
            prepare: position.prepare,
        }
    }
}

pub fn log_position(
    row: &Row,
    commit: &str,
    prepare: &str,
) -> Result<LogPosition, ProjectionError> {
    Ok(position_from(row.get(commit), row.get(prepare))?.into())
}

pub fn optional_u64(
    what: &'static str,
    value: Option<i64>,
) -> Result<Option<u64>, ProjectionError> {
    value.map(|v| to_u64(what, v)).transpose()
}

/// A stored bigint from an unsigned count or position, refusing values PostgreSQL cannot hold.
pub fn to_i64(what: &'static str, value: u64) -> Result<i64, ProjectionError> {
    i64::try_from(value).map_err(|_| ProjectionError::OutOfRange {
        what,
        value: value.to_string(),
    })
}

/// An unsigned count or position from a stored bigint, refusing negative values.
pub fn to_u64(what: &'static str, value: i64) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| ProjectionError::OutOfRange {
        what,
        value: value.to_string(),
    })
}

/// A SKU read back from a read model table.
pub fn stored_sku(value: &str) -> Result<Sku, ProjectionError> {
    Sku::parse(value).map_err(|e| ProjectionError::OutOfRange {
        what: "stored SKU",
        value: e.to_string(),
    })
}

pub fn position_from(commit: i64, prepare: i64) -> Result<Position, ProjectionError> {
    Ok(Position {
        commit: to_u64("position commit", commit)?,
        prepare: to_u64("position prepare", prepare)?,
    })
}

pub fn position_to(position: Position) -> Result<(i64, i64), ProjectionError> {
    Ok((
        to_i64("position commit", position.commit)?,
        to_i64("position prepare", position.prepare)?,
    ))
}
