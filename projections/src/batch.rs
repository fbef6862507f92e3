//! One page of the store-wide log applied to one projection: decode the page's SKU events once,
//! apply them, and move the checkpoint, all in the caller's transaction. The live runner and
//! the rebuild both go through here, so the checkpoint rules are written once.

use crate::checkpoint;
use crate::error::{show_position, ProjectionError};
use crate::projection::{Projection, SkuRecord};
use crate::schema_name::SchemaName;
use deadpool_postgres::Transaction;
use ledger_domain::{Position, RecordedEvent, Sku, SkuEvent};

/// Decode the SKU events of a page. Events of other streams are not ours and are passed over
/// (the checkpoint still moves past them); a SKU event this code cannot read stops the
/// projection, because skipping a fact would leave the read model silently wrong.
pub fn decode_page(events: &[RecordedEvent]) -> Result<Vec<SkuRecord>, ProjectionError> {
    let mut records = Vec::with_capacity(events.len());
    for recorded in events {
        if let Some((sku, event)) = decode_event(recorded)? {
            records.push(SkuRecord {
                sku,
                event,
                recorded: recorded.clone(),
            });
        }
    }
    Ok(records)
}

/// [`decode_page`] for a page the caller no longer needs: the events move into the records
/// instead of being copied, which matters at a rebuild's page sizes.
pub fn decode_owned_page(events: Vec<RecordedEvent>) -> Result<Vec<SkuRecord>, ProjectionError> {
    let mut records = Vec::with_capacity(events.len());
    for recorded in events {
        if let Some((sku, event)) = decode_event(&recorded)? {
            records.push(SkuRecord {
                sku,
                event,
                recorded,
            });
        }
    }
    Ok(records)
}

/// The SKU and event of `recorded`, or `None` when it belongs to another kind of stream.
fn decode_event(recorded: &RecordedEvent) -> Result<Option<(Sku, SkuEvent)>, ProjectionError> {
    let Some(sku) = Sku::from_stream(&recorded.stream) else {
        return Ok(None);
    };
    let event = SkuEvent::decode(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
    .map_err(|e| ProjectionError::Undecodable {
        position: recorded.position,
        stream: recorded.stream.clone(),
        message: e.to_string(),
    })?;
    Ok(Some((sku, event)))
}

/// Apply `events` to `projection` in `schema` and move the schema's checkpoint from `expected`
/// to the last event's position, all inside `transaction`. The checkpoint row is locked first
/// and must still hold `expected`, and the update is conditional on it as well, so a runner
/// that lost its lock (or raced a rebuild's swap) fails here instead of applying twice or
/// moving the checkpoint backwards. Returns the new checkpoint.
pub(crate) async fn apply_page(
    transaction: &Transaction<'_>,
    projection: &dyn Projection,
    schema: &SchemaName,
    expected: Option<Position>,
    events: &[RecordedEvent],
) -> Result<Option<Position>, ProjectionError> {
    let Some(last) = events.last() else {
        return Ok(expected);
    };
    check_checkpoint(transaction, projection, schema, expected).await?;
    let records = decode_page(events)?;
    if !records.is_empty() {
        projection.apply(transaction, schema, &records).await?;
    }
    checkpoint::advance(
        transaction,
        schema,
        projection.name(),
        expected,
        last.position,
        events.len() as u64,
    )
    .await?;
    Ok(Some(last.position))
}

/// [`apply_page`] for a rebuild: the same checkpoint rules (they also keep two rebuilds of one
/// projection from filling the same shadow schema at once), with the projection's bulk apply
/// and a page the rebuild hands over.
pub(crate) async fn apply_bulk_page(
    transaction: &Transaction<'_>,
    projection: &dyn Projection,
    schema: &SchemaName,
    expected: Option<Position>,
    events: Vec<RecordedEvent>,
) -> Result<Option<Position>, ProjectionError> {
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(expected);
    };
    let count = events.len() as u64;
    check_checkpoint(transaction, projection, schema, expected).await?;
    let records = decode_owned_page(events)?;
    if !records.is_empty() {
        projection.apply_bulk(transaction, schema, &records).await?;
    }
    checkpoint::advance(
        transaction,
        schema,
        projection.name(),
        expected,
        last,
        count,
    )
    .await?;
    Ok(Some(last))
}

/// Lock the checkpoint row of `schema` and make sure it still holds `expected`.
async fn check_checkpoint(
    transaction: &Transaction<'_>,
    projection: &dyn Projection,
    schema: &SchemaName,
    expected: Option<Position>,
) -> Result<(), ProjectionError> {
    let found = checkpoint::lock(transaction, schema, projection.name()).await?;
    if found != expected {
        return Err(ProjectionError::StaleCheckpoint {
            projection: projection.name().to_owned(),
            expected: show_position(expected),
            found: show_position(found),
        });
    }
    Ok(())
}
