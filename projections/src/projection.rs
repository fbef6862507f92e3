//! What every projection is to the runtime: a name, a DDL template, and a function that applies
//! a batch of decoded events inside the caller's transaction. The runtime (live runner and
//! rebuild alike) owns the transaction and the checkpoint; a projection only writes its tables.

use crate::error::{show_position, ProjectionError};
use crate::schema::SchemaName;
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use ledger_core::domain::{Sku, SkuEvent};
use ledger_core::{Position, RecordedEvent};

/// One event of a SKU stream, decoded once per batch and shared by the projection's steps.
#[derive(Debug, Clone)]
pub struct SkuRecord {
    pub sku: Sku,
    pub event: SkuEvent,
    pub recorded: RecordedEvent,
}

#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The projection's name: lower-case, `[a-z_]`, used in schema names, metrics and the CLI.
    fn name(&self) -> &'static str;

    /// The projection's tables with `{schema}` where the schema name goes.
    fn ddl_template(&self) -> &'static str;

    /// The tables a rebuild compares between the live and the shadow schema.
    fn tables(&self) -> &'static [&'static str];

    /// Apply `records` (in log order) to the tables in `schema`, inside `transaction`.
    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        schema: &SchemaName,
        records: &[SkuRecord],
    ) -> Result<(), ProjectionError>;

    /// Indexes a rebuild leaves out of the shadow schema while it loads and builds once caught
    /// up, before the swap: one sorted pass over the loaded table costs a fraction of keeping
    /// the index up to date row by row. Only indexes no apply relies on may be deferred (not an
    /// `ON CONFLICT` target, not one the per-batch lookups need, not one that enforces a rule
    /// the projection counts on while it applies); a deferred unique index still checks its rule,
    /// once, when it is built, and a violation stops the rebuild before the swap.
    fn deferred_indexes(&self) -> &'static [DeferredIndex] {
        &[]
    }

    /// Apply `records` (in log order) as a rebuild does: to a shadow schema that nothing else
    /// reads or writes, in pages far larger than a live batch. The tables must end exactly as
    /// [`Projection::apply`] would leave them, whatever the page boundaries (the rebuild tests
    /// compare a rebuilt schema with the live one row for row). The default is `apply` itself,
    /// which already writes each table with one multi-row statement per batch; a projection
    /// overrides it only where a bulk load is much faster than that.
    async fn apply_bulk(
        &self,
        transaction: &Transaction<'_>,
        schema: &SchemaName,
        records: &[SkuRecord],
    ) -> Result<(), ProjectionError> {
        self.apply(transaction, schema, records).await
    }
}

/// An index of a projection's DDL that a rebuild builds after loading (see
/// [`Projection::deferred_indexes`]). Both statements have `{schema}` where the schema name goes,
/// and `create` must build exactly what the DDL does (same name, columns, uniqueness, and a
/// constraint where the DDL declares one), since the rebuilt schema becomes the live one; the
/// rebuild tests compare the catalogs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredIndex {
    /// The index's name in the schema (for a constraint, the name of its index).
    pub name: &'static str,
    /// Removes the index from a shadow schema freshly created from the DDL.
    pub drop: &'static str,
    /// Builds it again.
    pub create: &'static str,
}

/// Every projection, in the order the runtime starts them.
pub fn all() -> [&'static dyn Projection; 4] {
    [
        &crate::stock_levels::StockLevels,
        &crate::reservations::Reservations,
        &crate::stock_movements::StockMovements,
        &crate::low_stock_alerts::LowStockAlerts,
    ]
}

/// The names of every projection, for flags and messages.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name()).collect()
}

/// The projection called `name`.
pub fn by_name(name: &str) -> Result<&'static dyn Projection, ProjectionError> {
    all()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ProjectionError::UnknownProjection {
            name: name.to_owned(),
            known: names().join(", "),
        })
}

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

/// A stored bigint from an unsigned count or position, refusing values PostgreSQL cannot hold.
pub(crate) fn to_i64(what: &'static str, value: u64) -> Result<i64, ProjectionError> {
    i64::try_from(value).map_err(|_| ProjectionError::OutOfRange {
        what,
        value: value.to_string(),
    })
}

/// An unsigned count or position from a stored bigint, refusing negative values.
pub(crate) fn to_u64(what: &'static str, value: i64) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| ProjectionError::OutOfRange {
        what,
        value: value.to_string(),
    })
}

/// A SKU read back from a read model table.
pub(crate) fn stored_sku(value: &str) -> Result<Sku, ProjectionError> {
    Sku::parse(value).map_err(|e| ProjectionError::OutOfRange {
        what: "stored SKU",
        value: e.to_string(),
    })
}

pub(crate) fn position_from(commit: i64, prepare: i64) -> Result<Position, ProjectionError> {
    Ok(Position {
        commit: to_u64("position commit", commit)?,
        prepare: to_u64("position prepare", prepare)?,
    })
}

pub(crate) fn position_to(position: Position) -> Result<(i64, i64), ProjectionError> {
    Ok((
        to_i64("position commit", position.commit)?,
        to_i64("position prepare", position.prepare)?,
    ))
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
    crate::checkpoint::advance(
        &**transaction,
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
    crate::checkpoint::advance(
        &**transaction,
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
    let found = crate::checkpoint::lock(&**transaction, schema, projection.name()).await?;
    if found != expected {
        return Err(ProjectionError::StaleCheckpoint {
            projection: projection.name().to_owned(),
            expected: show_position(expected),
            found: show_position(found),
        });
    }
    Ok(())
}
