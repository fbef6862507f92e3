//! The checkpoint row each projection schema holds (see `schema::CHECKPOINT_DDL`): where in the
//! store-wide log the schema's tables are, how many events it applied, and its last error.

use crate::convert::{position_from, position_to, to_i64, to_u64};
use crate::error::{show_position, ProjectionError};
use crate::schema_name::SchemaName;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use ledger_domain::Position;
use tokio_postgres::GenericClient;

/// Longest error message kept in the checkpoint row; the full error goes to the logs.
pub const LAST_ERROR_BYTES_MAX: usize = 2_000;

/// What the checkpoint row of a projection schema says.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub position: Option<Position>,
    pub events_applied: u64,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

fn checkpoint_position(row: &tokio_postgres::Row) -> Result<Option<Position>, ProjectionError> {
    let commit: Option<i64> = row.get("position_commit");
    let prepare: Option<i64> = row.get("position_prepare");
    match (commit, prepare) {
        (Some(commit), Some(prepare)) => Ok(Some(position_from(commit, prepare)?)),
        _ => Ok(None),
    }
}

/// Read the checkpoint of `projection` in `schema`.
pub async fn load<C: GenericClient>(
    client: &C,
    schema: &SchemaName,
    projection: &str,
) -> Result<Checkpoint, ProjectionError> {
    let sql = format!(
        "SELECT position_commit, position_prepare, events_applied, updated_at, last_error, \
         last_error_at FROM {schema}.checkpoint WHERE projection = $1"
    );
    let row = client.query_one(&sql, &[&projection]).await?;
    Ok(Checkpoint {
        position: checkpoint_position(&row)?,
        events_applied: to_u64("events applied", row.get("events_applied"))?,
        updated_at: row.get("updated_at"),
        last_error: row.get("last_error"),
        last_error_at: row.get("last_error_at"),
    })
}

/// Lock the checkpoint row for the rest of the transaction and return its position. Writers
/// of the schema (the runner's batches, a rebuild's swap) queue here, one at a time.
///
/// This and [`advance`] run with every batch, so their statements are prepared once per
/// connection.
pub(crate) async fn lock(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    projection: &str,
) -> Result<Option<Position>, ProjectionError> {
    let sql = format!(
        "SELECT position_commit, position_prepare FROM {schema}.checkpoint \
         WHERE projection = $1 FOR UPDATE"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    let row = transaction.query_one(&statement, &[&projection]).await?;
    checkpoint_position(&row)
}

/// Move the checkpoint from `expected` to `to`, only if it still holds `expected`.
pub(crate) async fn advance(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    projection: &str,
    expected: Option<Position>,
    to: Position,
    events: u64,
) -> Result<(), ProjectionError> {
    assert!(
        expected.is_none_or(|e| e < to),
        "a checkpoint only moves forwards ({} to {to})",
        show_position(expected)
    );
    let sql = format!(
        "UPDATE {schema}.checkpoint \
         SET position_commit = $2, position_prepare = $3, \
             events_applied = events_applied + $4, updated_at = now() \
         WHERE projection = $1 \
           AND position_commit IS NOT DISTINCT FROM $5 \
           AND position_prepare IS NOT DISTINCT FROM $6"
    );
    let (commit, prepare) = position_to(to)?;
    let (expected_commit, expected_prepare) = match expected {
        Some(p) => {
            let (c, p) = position_to(p)?;
            (Some(c), Some(p))
        }
        None => (None, None),
    };
    let events = to_i64("events in a batch", events)?;
    let statement = transaction.prepare_cached(&sql).await?;
    let updated = transaction
        .execute(
            &statement,
            &[
                &projection,
                &commit,
                &prepare,
                &events,
                &expected_commit,
                &expected_prepare,
            ],
        )
        .await?;
    if updated != 1 {
        return Err(ProjectionError::StaleCheckpoint {
            projection: projection.to_owned(),
            expected: show_position(expected),
            found: "a different position".to_owned(),
        });
    }
    Ok(())
}

/// Record a runner's last error beside its checkpoint, for status pages and operators.
pub(crate) async fn record_error<C: GenericClient>(
    client: &C,
    schema: &SchemaName,
    projection: &str,
    error: &str,
) -> Result<(), ProjectionError> {
    let mut message = error.to_owned();
    if message.len() > LAST_ERROR_BYTES_MAX {
        let mut cut = LAST_ERROR_BYTES_MAX;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let sql = format!(
        "UPDATE {schema}.checkpoint SET last_error = $2, last_error_at = now() \
         WHERE projection = $1"
    );
    client.execute(&sql, &[&projection, &message]).await?;
    Ok(())
}
