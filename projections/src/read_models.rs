//! The read side the API and the CLI use: one handle on the live read model schemas. Each read
//! model adds its own queries to it beside the projection that writes its tables (an
//! `impl ReadModels` block in [`crate::stock_levels`], [`crate::reservations`],
//! [`crate::stock_movements`], [`crate::low_stock_alerts`]), and [`crate::status`] adds the
//! projections' status. Every list is bounded by [`PAGE_SIZE_MAX`] and paged by a key (SKU,
//! version or id), never by offset, so a page costs the same however deep it is.

use crate::error::ProjectionError;
use ledger_postgres::Database;
use tokio_postgres::Row;

/// Most rows one query returns. Callers page on with the key of the last row.
pub const PAGE_SIZE_MAX: u64 = 1_000;

/// A page size as a bound parameter: `limit` clamped to 1..=[`PAGE_SIZE_MAX`].
pub(crate) fn page_limit(limit: u64) -> i64 {
    limit.clamp(1, PAGE_SIZE_MAX) as i64
}

/// Queries over the live read models.
#[derive(Clone)]
pub struct ReadModels {
    database: Database,
}

impl ReadModels {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Run `sql` (prepared once per pooled connection) and return its rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, ProjectionError> {
        self.database
            .with_client(async |client| {
                let statement = client.prepare_cached(sql).await?;
                Ok(client.query(&statement, params).await?)
            })
            .await
    }
}
