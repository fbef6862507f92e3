//! Stock levels: one row per SKU with its balances, reorder point and version. A batch loads the
//! rows of the SKUs it touches, folds the events with the aggregate's own `apply` (so the read
//! model cannot drift from the domain's arithmetic), and writes the rows back in one statement.

use crate::convert::{stored_sku, to_i64, to_u64};
use crate::error::ProjectionError;
use crate::projection::{distinct_skus, Projection, SkuRecord};
use crate::read_models::{page_limit, ReadModels};
use crate::schema_name::SchemaName;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use ledger_domain::Sku;
use ledger_domain::SkuState;
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_postgres::Row;

pub const NAME: &str = "stock_levels";

const DDL: &str = "
CREATE TABLE {schema}.stock_levels (
    sku              text        PRIMARY KEY,
    on_hand          bigint      NOT NULL CHECK (on_hand >= 0),
    reserved         bigint      NOT NULL CHECK (reserved >= 0),
    available        bigint      GENERATED ALWAYS AS (on_hand - reserved) STORED,
    reorder_point    bigint      NOT NULL CHECK (reorder_point >= 0),
    version          bigint      NOT NULL CHECK (version >= 0),
    last_movement_at timestamptz,
    updated_at       timestamptz NOT NULL
);

-- Serves 'SKUs below their reorder point' in SKU order without scanning healthy SKUs.
CREATE INDEX stock_levels_below_reorder_point
    ON {schema}.stock_levels (sku) WHERE on_hand - reserved < reorder_point;
";

pub struct StockLevels;

/// A SKU's row while a batch folds into it.
struct Level {
    state: SkuState,
    last_movement_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

#[async_trait]
impl Projection for StockLevels {
    fn name(&self) -> &'static str {
        NAME
    }

    fn ddl_template(&self) -> &'static str {
        DDL
    }

    fn tables(&self) -> &'static [&'static str] {
        &["stock_levels"]
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        schema: &SchemaName,
        records: &[SkuRecord],
    ) -> Result<(), ProjectionError> {
        let skus: Vec<&str> = distinct_skus(records);
        let load = format!(
            "SELECT sku, on_hand, reserved, reorder_point, version, last_movement_at, updated_at \
             FROM {schema}.stock_levels WHERE sku = ANY($1)"
        );
        let statement = transaction.prepare_cached(&load).await?;
        let mut levels: BTreeMap<String, Level> = BTreeMap::new();
        for row in transaction.query(&statement, &[&skus]).await? {
            let sku: String = row.get("sku");
            let mut state = SkuState::new(stored_sku(&sku)?);
            state.on_hand = to_u64("on hand", row.get("on_hand"))?;
            state.reserved = to_u64("reserved", row.get("reserved"))?;
            state.reorder_point = to_u64("reorder point", row.get("reorder_point"))?;
            state.version = Some(to_u64("version", row.get("version"))?);
            levels.insert(
                sku,
                Level {
                    state,
                    last_movement_at: row.get("last_movement_at"),
                    updated_at: row.get("updated_at"),
                },
            );
        }
        for record in records {
            let level = levels
                .entry(record.sku.as_str().to_owned())
                .or_insert_with(|| Level {
                    state: SkuState::new(record.sku.clone()),
                    last_movement_at: None,
                    updated_at: record.recorded.recorded_at,
                });
            level.state.apply_to_totals(&record.event);
            // The stream's version is the authority; the fold only counts what it saw.
            level.state.version = Some(record.recorded.version);
            level.state.reservations.clear();
            if record.event.movement().is_some() {
                level.last_movement_at = Some(record.recorded.recorded_at);
            }
            level.updated_at = record.recorded.recorded_at;
        }
        write(transaction, schema, &levels).await
    }
}

async fn write(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    levels: &BTreeMap<String, Level>,
) -> Result<(), ProjectionError> {
    let mut skus = Vec::with_capacity(levels.len());
    let mut on_hand = Vec::with_capacity(levels.len());
    let mut reserved = Vec::with_capacity(levels.len());
    let mut reorder_point = Vec::with_capacity(levels.len());
    let mut version = Vec::with_capacity(levels.len());
    let mut last_movement_at = Vec::with_capacity(levels.len());
    let mut updated_at = Vec::with_capacity(levels.len());
    for (sku, level) in levels {
        skus.push(sku.as_str());
        on_hand.push(to_i64("on hand", level.state.on_hand)?);
        reserved.push(to_i64("reserved", level.state.reserved)?);
        reorder_point.push(to_i64("reorder point", level.state.reorder_point)?);
        version.push(to_i64("version", level.state.version.unwrap_or(0))?);
        last_movement_at.push(level.last_movement_at);
        updated_at.push(level.updated_at);
    }
    let upsert = format!(
        "INSERT INTO {schema}.stock_levels \
             (sku, on_hand, reserved, reorder_point, version, last_movement_at, updated_at) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], \
                              $5::bigint[], $6::timestamptz[], $7::timestamptz[]) \
         ON CONFLICT (sku) DO UPDATE SET \
             on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved, \
             reorder_point = EXCLUDED.reorder_point, version = EXCLUDED.version, \
             last_movement_at = EXCLUDED.last_movement_at, updated_at = EXCLUDED.updated_at"
    );
    let statement = transaction.prepare_cached(&upsert).await?;
    transaction
        .execute(
            &statement,
            &[
                &skus,
                &on_hand,
                &reserved,
                &reorder_point,
                &version,
                &last_movement_at,
                &updated_at,
            ],
        )
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rows and queries
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockLevel {
    pub sku: Sku,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub reorder_point: u64,
    pub below_reorder_point: bool,
    /// The SKU's stream version this row reflects.
    pub version: u64,
    /// When the last event that moved stock was recorded (reorder point changes do not count).
    pub last_movement_at: Option<DateTime<Utc>>,
    /// When the last event of the SKU was recorded.
    pub updated_at: DateTime<Utc>,
}

impl ReadModels {
    pub async fn stock_level(&self, sku: &Sku) -> Result<Option<StockLevel>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!("{} WHERE sku = $1", stock_level_select(&schema));
        self.query(&sql, &[&sku.as_str()])
            .await?
            .first()
            .map(stock_level)
            .transpose()
    }

    /// SKUs whose available stock is below their reorder point, in SKU order after `after_sku`.
    pub async fn stock_levels_below_reorder_point(
        &self,
        limit: u64,
        after_sku: Option<&Sku>,
    ) -> Result<Vec<StockLevel>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!(
            "{} WHERE on_hand - reserved < reorder_point AND ($1::text IS NULL OR sku > $1) \
             ORDER BY sku LIMIT $2",
            stock_level_select(&schema)
        );
        let after = after_sku.map(Sku::as_str);
        self.query(&sql, &[&after, &page_limit(limit)])
            .await?
            .iter()
            .map(stock_level)
            .collect()
    }
}

impl ReadModels {
    /// SKUs whose code starts with `prefix` (every SKU without one), in SKU order after
    /// `after_sku`. The primary key's scan starts at the prefix and ends with a full page (a
    /// page with fewer matches reads on through the SKUs after them); `starts_with` decides
    /// membership, so `_` and `.` in a prefix are plain characters, not patterns.
    pub async fn stock_levels_by_prefix(
        &self,
        prefix: Option<&Sku>,
        limit: u64,
        after_sku: Option<&Sku>,
    ) -> Result<Vec<StockLevel>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!(
            "{} WHERE ($1::text IS NULL OR (sku >= $1 AND starts_with(sku, $1))) \
             AND ($2::text IS NULL OR sku > $2) ORDER BY sku LIMIT $3",
            stock_level_select(&schema)
        );
        let prefix = prefix.map(Sku::as_str);
        let after = after_sku.map(Sku::as_str);
        self.query(&sql, &[&prefix, &after, &page_limit(limit)])
            .await?
            .iter()
            .map(stock_level)
            .collect()
    }
}

fn stock_level_select(schema: &SchemaName) -> String {
    format!(
        "SELECT sku, on_hand, reserved, available, reorder_point, version, last_movement_at, \
         updated_at FROM {schema}.stock_levels"
    )
}

fn stock_level(row: &Row) -> Result<StockLevel, ProjectionError> {
    let available = to_u64("available", row.get("available"))?;
    let reorder_point = to_u64("reorder point", row.get("reorder_point"))?;
    Ok(StockLevel {
        sku: stored_sku(row.get("sku"))?,
        on_hand: to_u64("on hand", row.get("on_hand"))?,
        reserved: to_u64("reserved", row.get("reserved"))?,
        available,
        reorder_point,
        below_reorder_point: available < reorder_point,
        version: to_u64("version", row.get("version"))?,
        last_movement_at: row.get("last_movement_at"),
        updated_at: row.get("updated_at"),
    })
}
