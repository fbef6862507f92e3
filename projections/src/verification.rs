//! What `ledger-replay verify` compares a fold of the log with: the rows of the stock levels
//! and reservations read models and both checkpoints, read in one snapshot. The SQL lives here,
//! beside the tables, so the auditors' tool never writes queries against this crate's tables.

use crate::checkpoint;
use crate::error::ProjectionError;
use crate::read_models::ReadModels;
use crate::reservations;
use crate::schema_name::SchemaName;
use crate::stock_levels;
use deadpool_postgres::Transaction;
use ledger_domain::{Position, Sku};
use std::collections::HashMap;

/// One SKU's row of the stock levels read model, as verify compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockFigures {
    pub on_hand: u64,
    pub reserved: u64,
    pub reorder_point: u64,
    pub version: u64,
}

/// One row of the reservations read model: its status and quantity.
pub type ReservationFigures = (String, u64);

/// The read models as one snapshot saw them.
#[derive(Debug, Clone, Default)]
pub struct VerificationSnapshot {
    pub stock_checkpoint: Option<Position>,
    /// By SKU.
    pub stock_rows: HashMap<String, StockFigures>,
    pub reservations_checkpoint: Option<Position>,
    /// By (SKU, reservation id).
    pub reservation_rows: HashMap<(String, String), ReservationFigures>,
    /// The projections whose live schema does not exist.
    pub missing: Vec<&'static str>,
}

/// Stored counts are non-negative by their table's CHECK constraints; a negative one is itself
/// drift, shown as the largest value so that the comparison reports it.
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

impl ReadModels {
    /// The stock levels and reservations of one SKU (all when `None`) with their checkpoints,
    /// in one repeatable-read transaction, so that a projector committing meanwhile cannot make
    /// the rows and their checkpoint disagree.
    pub async fn verification_snapshot(
        &self,
        sku: Option<&Sku>,
    ) -> Result<VerificationSnapshot, ProjectionError> {
        let mut client = self.database().pool().get().await?;
        let transaction = client.transaction().await?;
        transaction
            .batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let sku = sku.map(Sku::as_str);
        let mut snapshot = VerificationSnapshot::default();
        let stock_schema = SchemaName::live(stock_levels::NAME);
        if table_exists(&transaction, &format!("{stock_schema}.stock_levels")).await? {
            snapshot.stock_checkpoint =
                checkpoint::load(&*transaction, &stock_schema, stock_levels::NAME)
                    .await?
                    .position;
            let sql = format!(
                "SELECT sku, on_hand, reserved, reorder_point, version \
                 FROM {stock_schema}.stock_levels WHERE $1::text IS NULL OR sku = $1"
            );
            for row in transaction.query(&sql, &[&sku]).await? {
                snapshot.stock_rows.insert(
                    row.get(0),
                    StockFigures {
                        on_hand: unsigned(row.get(1)),
                        reserved: unsigned(row.get(2)),
                        reorder_point: unsigned(row.get(3)),
                        version: unsigned(row.get(4)),
                    },
                );
            }
        } else {
            snapshot.missing.push(stock_levels::NAME);
        }
        let reservations_schema = SchemaName::live(reservations::NAME);
        if table_exists(&transaction, &format!("{reservations_schema}.reservations")).await? {
            snapshot.reservations_checkpoint =
                checkpoint::load(&*transaction, &reservations_schema, reservations::NAME)
                    .await?
                    .position;
            let sql = format!(
                "SELECT sku, reservation_id, status, quantity \
                 FROM {reservations_schema}.reservations WHERE $1::text IS NULL OR sku = $1"
            );
            for row in transaction.query(&sql, &[&sku]).await? {
                snapshot
                    .reservation_rows
                    .insert((row.get(0), row.get(1)), (row.get(2), unsigned(row.get(3))));
            }
        } else {
            snapshot.missing.push(reservations::NAME);
        }
        transaction.commit().await?;
        Ok(snapshot)
    }
}

async fn table_exists(transaction: &Transaction<'_>, table: &str) -> Result<bool, ProjectionError> {
    Ok(transaction
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await?
        .get(0))
}
