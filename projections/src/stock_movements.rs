//! The movement ledger: one row per event of every SKU, with the change it made and the
//! balances right after it. A batch reads each touched SKU's last row for the balances before,
//! folds with the aggregate's own `apply`, and inserts every row in one statement (a rebuild's
//! far larger pages load the same rows with one binary COPY instead). The primary
//! key is the event's position and (sku, version) is unique, so an event applied twice would
//! fail the batch rather than count twice.

use crate::convert::{log_position, LogPosition};
use crate::convert::{position_to, stored_sku, to_i64, to_u64};
use crate::error::ProjectionError;
use crate::projection::{distinct_skus, DeferredIndex, Projection, SkuRecord};
use crate::read_models::{page_limit, ReadModels};
use crate::schema_name::SchemaName;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use ledger_domain::Sku;
use ledger_domain::{BalanceChange, SkuState};
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

pub const NAME: &str = "stock_movements";

const DDL: &str = "
CREATE TABLE {schema}.movements (
    position_commit     bigint      NOT NULL,
    position_prepare    bigint      NOT NULL,
    sku                 text        NOT NULL,
    version             bigint      NOT NULL CHECK (version >= 0),
    event_id            uuid        NOT NULL UNIQUE,
    event_type          text        NOT NULL,
    movement            text,
    on_hand_change      bigint      NOT NULL,
    reserved_change     bigint      NOT NULL,
    on_hand_after       bigint      NOT NULL CHECK (on_hand_after >= 0),
    reserved_after      bigint      NOT NULL CHECK (reserved_after >= 0),
    available_after     bigint      NOT NULL CHECK (available_after >= 0),
    reorder_point_after bigint      NOT NULL CHECK (reorder_point_after >= 0),
    reservation_id      text,
    order_id            text,
    reason              text,
    reference           text,
    actor               text,
    correlation_id      text,
    causation_id        text,
    recorded_at         timestamptz NOT NULL,
    PRIMARY KEY (position_commit, position_prepare),
    UNIQUE (sku, version)
);

-- A SKU's movements in a time range (auditors, reports).
CREATE INDEX movements_by_sku_and_time ON {schema}.movements (sku, recorded_at);
";

pub struct StockMovements;

#[async_trait]
impl Projection for StockMovements {
    fn name(&self) -> &'static str {
        NAME
    }

    fn ddl_template(&self) -> &'static str {
        DDL
    }

    fn tables(&self) -> &'static [&'static str] {
        &["movements"]
    }

    /// Kept row by row, these two indexes cost a rebuild more than the rows themselves (a
    /// random event id per row, and a second index per SKU); neither serves the batches, whose
    /// lookups use (sku, version) and whose replays the position key refuses.
    fn deferred_indexes(&self) -> &'static [DeferredIndex] {
        &[
            DeferredIndex {
                name: "movements_event_id_key",
                drop: "ALTER TABLE {schema}.movements DROP CONSTRAINT movements_event_id_key",
                create: "ALTER TABLE {schema}.movements \
                         ADD CONSTRAINT movements_event_id_key UNIQUE (event_id)",
            },
            DeferredIndex {
                name: "movements_by_sku_and_time",
                drop: "DROP INDEX {schema}.movements_by_sku_and_time",
                create: "CREATE INDEX movements_by_sku_and_time \
                         ON {schema}.movements (sku, recorded_at)",
            },
        ]
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        schema: &SchemaName,
        records: &[SkuRecord],
    ) -> Result<(), ProjectionError> {
        let rows = fold(transaction, schema, records).await?;
        let sql = format!(
            "INSERT INTO {schema}.movements ({COLUMNS}) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], \
                                  $5::uuid[], $6::text[], $7::text[], $8::bigint[], \
                                  $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], \
                                  $13::bigint[], $14::text[], $15::text[], $16::text[], \
                                  $17::text[], $18::text[], $19::text[], $20::text[], \
                                  $21::timestamptz[])"
        );
        let statement = transaction.prepare_cached(&sql).await?;
        let r = &rows;
        transaction
            .execute(
                &statement,
                &[
                    &r.position_commit,
                    &r.position_prepare,
                    &r.sku,
                    &r.version,
                    &r.event_id,
                    &r.event_type,
                    &r.movement,
                    &r.on_hand_change,
                    &r.reserved_change,
                    &r.on_hand_after,
                    &r.reserved_after,
                    &r.available_after,
                    &r.reorder_point_after,
                    &r.reservation_id,
                    &r.order_id,
                    &r.reason,
                    &r.reference,
                    &r.actor,
                    &r.correlation_id,
                    &r.causation_id,
                    &r.recorded_at,
                ],
            )
            .await?;
        Ok(())
    }

    /// The same rows as `apply`, loaded with one binary COPY: a rebuild writes one row per
    /// event, and COPY skips the per-row work of an INSERT (building the unnest arrays on both
    /// sides, planning, projecting), which is most of a rebuild's time for this table.
    async fn apply_bulk(
        &self,
        transaction: &Transaction<'_>,
        schema: &SchemaName,
        records: &[SkuRecord],
    ) -> Result<(), ProjectionError> {
        let rows = fold(transaction, schema, records).await?;
        let sink = transaction
            .copy_in(&format!(
                "COPY {schema}.movements ({COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &COLUMN_TYPES);
        let mut writer = std::pin::pin!(writer);
        let r = &rows;
        for i in 0..r.position_commit.len() {
            writer
                .as_mut()
                .write(&[
                    &r.position_commit[i],
                    &r.position_prepare[i],
                    &r.sku[i],
                    &r.version[i],
                    &r.event_id[i],
                    &r.event_type[i],
                    &r.movement[i],
                    &r.on_hand_change[i],
                    &r.reserved_change[i],
                    &r.on_hand_after[i],
                    &r.reserved_after[i],
                    &r.available_after[i],
                    &r.reorder_point_after[i],
                    &r.reservation_id[i],
                    &r.order_id[i],
                    &r.reason[i],
                    &r.reference[i],
                    &r.actor[i],
                    &r.correlation_id[i],
                    &r.causation_id[i],
                    &r.recorded_at[i],
                ])
                .await?;
        }
        let copied = writer.finish().await?;
        assert_eq!(
            copied,
            r.position_commit.len() as u64,
            "COPY wrote one row per movement"
        );
        Ok(())
    }
}

/// The columns `apply` and `apply_bulk` write, in the order of their values.
const COLUMNS: &str = "position_commit, position_prepare, sku, version, event_id, event_type, \
                       movement, on_hand_change, reserved_change, on_hand_after, \
                       reserved_after, available_after, reorder_point_after, reservation_id, \
                       order_id, reason, reference, actor, correlation_id, causation_id, \
                       recorded_at";

/// The types of [`COLUMNS`], for the binary COPY.
const COLUMN_TYPES: [Type; 21] = [
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
];

/// The rows of `records`: each touched SKU's balances before the batch come from its last
/// stored row, and the aggregate's own `apply` folds the batch's events onto them.
async fn fold<'a>(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    records: &'a [SkuRecord],
) -> Result<MovementColumns<'a>, ProjectionError> {
    let skus = distinct_skus(records);
    let load = format!(
        "SELECT s.sku, m.on_hand_after, m.reserved_after, m.reorder_point_after \
         FROM unnest($1::text[]) AS s(sku) \
         CROSS JOIN LATERAL ( \
             SELECT on_hand_after, reserved_after, reorder_point_after \
             FROM {schema}.movements WHERE sku = s.sku ORDER BY version DESC LIMIT 1 \
         ) AS m"
    );
    let statement = transaction.prepare_cached(&load).await?;
    let mut states: BTreeMap<String, SkuState> = BTreeMap::new();
    for row in transaction.query(&statement, &[&skus]).await? {
        let sku: String = row.get("sku");
        let mut state = SkuState::new(stored_sku(&sku)?);
        state.on_hand = to_u64("on hand", row.get("on_hand_after"))?;
        state.reserved = to_u64("reserved", row.get("reserved_after"))?;
        state.reorder_point = to_u64("reorder point", row.get("reorder_point_after"))?;
        states.insert(sku, state);
    }
    let mut rows = MovementColumns::with_capacity(records.len());
    for record in records {
        let state = states
            .entry(record.sku.as_str().to_owned())
            .or_insert_with(|| SkuState::new(record.sku.clone()));
        let before = (state.on_hand, state.reserved);
        state.apply_to_totals(&record.event);
        state.reservations.clear();
        rows.push(record, before, state)?;
    }
    Ok(rows)
}

struct MovementColumns<'a> {
    position_commit: Vec<i64>,
    position_prepare: Vec<i64>,
    sku: Vec<&'a str>,
    version: Vec<i64>,
    event_id: Vec<uuid::Uuid>,
    event_type: Vec<&'a str>,
    movement: Vec<Option<&'static str>>,
    on_hand_change: Vec<i64>,
    reserved_change: Vec<i64>,
    on_hand_after: Vec<i64>,
    reserved_after: Vec<i64>,
    available_after: Vec<i64>,
    reorder_point_after: Vec<i64>,
    reservation_id: Vec<Option<&'a str>>,
    order_id: Vec<Option<&'a str>>,
    reason: Vec<Option<&'a str>>,
    reference: Vec<Option<&'a str>>,
    actor: Vec<Option<&'a str>>,
    correlation_id: Vec<Option<&'a str>>,
    causation_id: Vec<Option<&'a str>>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl<'a> MovementColumns<'a> {
    fn with_capacity(rows: usize) -> Self {
        Self {
            position_commit: Vec::with_capacity(rows),
            position_prepare: Vec::with_capacity(rows),
            sku: Vec::with_capacity(rows),
            version: Vec::with_capacity(rows),
            event_id: Vec::with_capacity(rows),
            event_type: Vec::with_capacity(rows),
            movement: Vec::with_capacity(rows),
            on_hand_change: Vec::with_capacity(rows),
            reserved_change: Vec::with_capacity(rows),
            on_hand_after: Vec::with_capacity(rows),
            reserved_after: Vec::with_capacity(rows),
            available_after: Vec::with_capacity(rows),
            reorder_point_after: Vec::with_capacity(rows),
            reservation_id: Vec::with_capacity(rows),
            order_id: Vec::with_capacity(rows),
            reason: Vec::with_capacity(rows),
            reference: Vec::with_capacity(rows),
            actor: Vec::with_capacity(rows),
            correlation_id: Vec::with_capacity(rows),
            causation_id: Vec::with_capacity(rows),
            recorded_at: Vec::with_capacity(rows),
        }
    }

    fn push(
        &mut self,
        record: &'a SkuRecord,
        (on_hand_before, reserved_before): (u64, u64),
        after: &SkuState,
    ) -> Result<(), ProjectionError> {
        let recorded = &record.recorded;
        let (commit, prepare) = position_to(recorded.position)?;
        let change = BalanceChange::between((on_hand_before, reserved_before), after);
        let details = record.event.details();
        self.position_commit.push(commit);
        self.position_prepare.push(prepare);
        self.sku.push(record.sku.as_str());
        self.version.push(to_i64("version", recorded.version)?);
        self.event_id.push(recorded.event_id);
        self.event_type.push(&recorded.event_type);
        self.movement.push(record.event.movement());
        self.on_hand_change.push(change.on_hand_change);
        self.reserved_change.push(change.reserved_change);
        self.on_hand_after
            .push(to_i64("on hand", change.on_hand_after)?);
        self.reserved_after
            .push(to_i64("reserved", change.reserved_after)?);
        self.available_after
            .push(to_i64("available", change.available_after)?);
        self.reorder_point_after
            .push(to_i64("reorder point", change.reorder_point_after)?);
        self.reservation_id.push(details.reservation_id);
        self.order_id.push(details.order_id);
        self.reason.push(details.reason);
        self.reference.push(details.reference);
        self.actor.push(recorded.metadata.principal.as_deref());
        self.correlation_id
            .push(recorded.metadata.correlation_id.as_deref());
        self.causation_id
            .push(recorded.metadata.causation_id.as_deref());
        self.recorded_at.push(recorded.recorded_at);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Rows and queries
// ---------------------------------------------------------------------------------------------

/// One row of the movement ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Movement {
    pub position: LogPosition,
    pub sku: Sku,
    pub version: u64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    /// replenished, reserved, released, expired, confirmed, adjusted; `None` for an event that
    /// moves no stock (a reorder point change).
    pub movement: Option<String>,
    pub on_hand_change: i64,
    pub reserved_change: i64,
    pub on_hand_after: u64,
    pub reserved_after: u64,
    pub available_after: u64,
    pub reorder_point_after: u64,
    pub reservation_id: Option<String>,
    pub order_id: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    /// The principal that caused the event.
    pub actor: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// Which movements of a SKU to return, in version order.
#[derive(Debug, Clone, Default)]
pub struct MovementFilter {
    /// Only movements recorded at or after this moment.
    pub from: Option<DateTime<Utc>>,
    /// Only movements recorded before this moment.
    pub to: Option<DateTime<Utc>>,
    /// Only movements after this version (paging).
    pub after_version: Option<u64>,
    /// Most rows to return, 1 to [`PAGE_SIZE_MAX`].
    pub limit: u64,
}

impl ReadModels {
    /// A SKU's movements in version order, filtered by recorded time and paged by version.
    pub async fn movements(
        &self,
        sku: &Sku,
        filter: MovementFilter,
    ) -> Result<Vec<Movement>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!(
            "SELECT * FROM {schema}.movements WHERE sku = $1 \
             AND ($2::timestamptz IS NULL OR recorded_at >= $2) \
             AND ($3::timestamptz IS NULL OR recorded_at < $3) \
             AND ($4::bigint IS NULL OR version > $4) \
             ORDER BY version LIMIT $5"
        );
        let after_version = filter
            .after_version
            .map(|v| to_i64("version", v))
            .transpose()?;
        self.query(
            &sql,
            &[
                &sku.as_str(),
                &filter.from,
                &filter.to,
                &after_version,
                &page_limit(filter.limit),
            ],
        )
        .await?
        .iter()
        .map(movement)
        .collect()
    }
}

fn movement(row: &Row) -> Result<Movement, ProjectionError> {
    Ok(Movement {
        position: log_position(row, "position_commit", "position_prepare")?,
        sku: stored_sku(row.get("sku"))?,
        version: to_u64("version", row.get("version"))?,
        event_id: row.get("event_id"),
        event_type: row.get("event_type"),
        movement: row.get("movement"),
        on_hand_change: row.get("on_hand_change"),
        reserved_change: row.get("reserved_change"),
        on_hand_after: to_u64("on hand", row.get("on_hand_after"))?,
        reserved_after: to_u64("reserved", row.get("reserved_after"))?,
        available_after: to_u64("available", row.get("available_after"))?,
        reorder_point_after: to_u64("reorder point", row.get("reorder_point_after"))?,
        reservation_id: row.get("reservation_id"),
        order_id: row.get("order_id"),
        reason: row.get("reason"),
        reference: row.get("reference"),
        actor: row.get("actor"),
        correlation_id: row.get("correlation_id"),
        causation_id: row.get("causation_id"),
        recorded_at: row.get("recorded_at"),
    })
}
