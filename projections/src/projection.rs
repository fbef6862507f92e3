//! What every projection is to the runtime: a name, a DDL template, and a function that applies
//! a batch of decoded events inside the caller's transaction. The runtime (live runner and
//! rebuild alike) owns the transaction and the checkpoint; a projection only writes its tables.
//! The registry of projections is the crate root's ([`crate::all`]).

use crate::error::ProjectionError;
use crate::schema_name::SchemaName;
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use ledger_domain::{RecordedEvent, Sku, SkuEvent};

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

    /// The steps that bring a live schema created by an earlier release up to the current
    /// [`Projection::ddl_template`], oldest first: migration versions 2, 3, … of the live
    /// schema (version 1 is the template itself). The template always states the newest shape,
    /// so a fresh schema (and a rebuild's shadow) gets everything from it and then runs these
    /// steps too: each must be idempotent (`CREATE INDEX IF NOT EXISTS`, …) and must leave the
    /// schema exactly as the template makes it. `{schema}` stands for the schema name.
    fn upgrades(&self) -> &'static [Upgrade] {
        &[]
    }

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

/// One step of a live schema's migrations after the template (see [`Projection::upgrades`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    /// A short name for the migrations table.
    pub name: &'static str,
    /// The statements, with `{schema}` where the schema name goes; idempotent.
    pub sql: &'static str,
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

/// The SKUs `records` touch, sorted and each once (what a batch loads rows for).
pub fn distinct_skus(records: &[SkuRecord]) -> Vec<&str> {
    let mut skus: Vec<&str> = records.iter().map(|r| r.sku.as_str()).collect();
    skus.sort_unstable();
    skus.dedup();
    skus
}
