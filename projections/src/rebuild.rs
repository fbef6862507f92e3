//! Rebuilding a projection from the whole log without stopping the live one.
//!
//! The rebuild fills the shadow schema `rm_<name>__shadow` from its own checkpoint (so an
//! interrupted rebuild continues where it stopped), reading the log in large pages and applying
//! each page in one transaction with multi-row statements. Once caught up, one transaction locks
//! the live checkpoint row (the live runner's next batch waits on it), applies the tail that
//! arrived meanwhile, and swaps the schemas by renaming them. The checkpoint lives inside the
//! schema, so it moves with the data: the live runner, once let through, finds a checkpoint it
//! did not expect, rolls its batch back and resumes from the rebuilt checkpoint.

use crate::error::ProjectionError;
use crate::projection::{self, apply_page, Projection};
use crate::queries::LogPosition;
use crate::schema::{self, SchemaName};
use ledger_core::pg::Database;
use ledger_core::store::READ_EVENTS_MAX;
use ledger_core::{EventStore, Position};
use serde::Serialize;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

/// Events a rebuild reads and applies per page (and per transaction): the largest read the
/// store allows, since a rebuild is throughput-bound and nothing waits on its pages.
pub const REBUILD_PAGE_EVENTS_MAX: u64 = READ_EVENTS_MAX;

/// Where a rebuild is, reported after every page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebuildProgress {
    pub projection: &'static str,
    /// Events applied by this run so far.
    pub events_applied: u64,
    /// The shadow schema's checkpoint.
    pub checkpoint: Option<LogPosition>,
}

/// Called after every page; returning `Break` stops the rebuild there (it can be resumed).
pub type ProgressCallback = Arc<dyn Fn(&RebuildProgress) -> ControlFlow<()> + Send + Sync>;

#[derive(Clone)]
pub struct RebuildOptions {
    /// Fill and catch up the shadow schema, compare it with the live one, but swap nothing.
    pub dry_run: bool,
    /// Drop a leftover shadow schema and start from the beginning of the log.
    pub restart: bool,
    /// Events per page, 1 to [`REBUILD_PAGE_EVENTS_MAX`].
    pub page_events_max: u64,
    pub progress: Option<ProgressCallback>,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            restart: false,
            page_events_max: REBUILD_PAGE_EVENTS_MAX,
            progress: None,
        }
    }
}

/// Rows of one table in the live schema and in the rebuilt one, when the rebuild finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableComparison {
    pub table: &'static str,
    pub live_rows: u64,
    pub rebuilt_rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebuildSummary {
    pub projection: &'static str,
    pub dry_run: bool,
    /// The shadow checkpoint this run started from (`None`: from the beginning of the log).
    pub resumed_from: Option<LogPosition>,
    /// Events this run applied to the shadow schema, the final tail included.
    pub events_applied: u64,
    /// The rebuilt schema's checkpoint when the run ended.
    pub checkpoint: Option<LogPosition>,
    /// True when the progress callback stopped the run; run again to continue.
    pub interrupted: bool,
    /// True when the rebuilt schema is now the live one.
    pub swapped: bool,
    pub tables: Vec<TableComparison>,
    pub duration_ms: u64,
}

/// Rebuild `projection_name` from the log, as described in the module documentation.
pub async fn rebuild(
    store: &dyn EventStore,
    database: &Database,
    projection_name: &str,
    options: RebuildOptions,
) -> Result<RebuildSummary, ProjectionError> {
    let started = Instant::now();
    let projection = projection::by_name(projection_name)?;
    let name = projection.name();
    let live = SchemaName::live(name);
    let shadow = SchemaName::shadow(name);
    let page_size = options.page_events_max.clamp(1, REBUILD_PAGE_EVENTS_MAX);
    let mut client = database.pool().get().await?;
    schema::migrate_live(&mut client, projection).await?;
    prepare_shadow(&mut client, projection, &shadow, options.restart).await?;

    let resumed_from = crate::checkpoint::load(&**client, &shadow, name)
        .await?
        .position;
    let mut summary = RebuildSummary {
        projection: name,
        dry_run: options.dry_run,
        resumed_from: resumed_from.map(Into::into),
        events_applied: 0,
        checkpoint: resumed_from.map(Into::into),
        interrupted: false,
        swapped: false,
        tables: Vec::new(),
        duration_ms: 0,
    };
    let mut checkpoint = resumed_from;
    loop {
        let page = store.read_all(checkpoint, page_size).await?;
        if page.is_empty() {
            break;
        }
        let transaction = client.transaction().await?;
        checkpoint = apply_page(&transaction, projection, &shadow, checkpoint, &page).await?;
        transaction.commit().await?;
        summary.events_applied += page.len() as u64;
        summary.checkpoint = checkpoint.map(Into::into);
        let progress = RebuildProgress {
            projection: name,
            events_applied: summary.events_applied,
            checkpoint: summary.checkpoint,
        };
        tracing::info!(projection = name, events_applied = summary.events_applied, checkpoint = ?checkpoint, "rebuild progress");
        if let Some(callback) = &options.progress {
            if callback(&progress).is_break() {
                summary.interrupted = true;
                summary.duration_ms = started.elapsed().as_millis() as u64;
                return Ok(summary);
            }
        }
        if (page.len() as u64) < page_size {
            break;
        }
    }

    if options.dry_run {
        summary.tables = compare_tables(&**client, projection, &live, &shadow).await?;
        summary.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(summary);
    }

    let retired = SchemaName::retired(name);
    let transaction = client.transaction().await?;
    // Pause the live runner: its batches lock this row first.
    crate::checkpoint::lock(&*transaction, &live, name).await?;
    loop {
        let page = store.read_all(checkpoint, page_size).await?;
        if page.is_empty() {
            break;
        }
        checkpoint = apply_page(&transaction, projection, &shadow, checkpoint, &page).await?;
        summary.events_applied += page.len() as u64;
        if (page.len() as u64) < page_size {
            break;
        }
    }
    summary.checkpoint = checkpoint.map(Into::into);
    summary.tables = compare_tables(&*transaction, projection, &live, &shadow).await?;
    transaction
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {retired} CASCADE; \
             ALTER SCHEMA {live} RENAME TO {retired}; \
             ALTER SCHEMA {shadow} RENAME TO {live};"
        ))
        .await?;
    transaction.commit().await?;
    summary.swapped = true;
    // Dropped after the swap's commit, on its own: a live batch that was waiting on the old
    // checkpoint row still holds a lock on the old tables until it rolls back, and dropping
    // them inside the swap would wait for it while it waits for the swap.
    schema::drop_schema(&client, &retired).await?;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        projection = name,
        events_applied = summary.events_applied,
        "rebuild swapped in"
    );
    Ok(summary)
}

/// Make sure the shadow schema exists with the current DDL, keeping a compatible leftover (to
/// resume it) unless `restart` asks for a fresh start.
async fn prepare_shadow(
    client: &mut tokio_postgres::Client,
    projection: &dyn Projection,
    shadow: &SchemaName,
    restart: bool,
) -> Result<(), ProjectionError> {
    match schema::schema_fingerprint(client, shadow).await? {
        Some(found) if !restart && found == Some(schema::ddl_fingerprint(projection)) => {
            return Ok(());
        }
        Some(found) => {
            tracing::info!(schema = %shadow, ?found, restart, "dropping the leftover shadow schema");
            schema::drop_schema(client, shadow).await?;
        }
        None => {}
    }
    schema::create_schema(client, projection, shadow).await?;
    Ok(())
}

async fn compare_tables<C: tokio_postgres::GenericClient>(
    client: &C,
    projection: &dyn Projection,
    live: &SchemaName,
    rebuilt: &SchemaName,
) -> Result<Vec<TableComparison>, ProjectionError> {
    let mut tables = Vec::new();
    for table in projection.tables() {
        let row = client
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM {live}.{table}), \
                            (SELECT count(*) FROM {rebuilt}.{table})"
                ),
                &[],
            )
            .await?;
        tables.push(TableComparison {
            table,
            live_rows: projection::to_u64("row count", row.get(0))?,
            rebuilt_rows: projection::to_u64("row count", row.get(1))?,
        });
    }
    Ok(tables)
}

/// The shadow schema's checkpoint, if a rebuild left one (for status pages and the CLI).
pub async fn shadow_checkpoint(
    database: &Database,
    projection_name: &str,
) -> Result<Option<Option<Position>>, ProjectionError> {
    let projection = projection::by_name(projection_name)?;
    let shadow = SchemaName::shadow(projection.name());
    let client = database.pool().get().await?;
    if schema::schema_fingerprint(&client, &shadow)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    Ok(Some(
        crate::checkpoint::load(&**client, &shadow, projection.name())
            .await?
            .position,
    ))
}
