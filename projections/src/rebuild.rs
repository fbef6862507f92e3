//! Rebuilding a projection from the whole log without stopping the live one.
//!
//! The rebuild fills the shadow schema `rm_<name>__shadow` from its own checkpoint (so an
//! interrupted rebuild continues where it stopped). It reads the log in pages of about twenty
//! thousand events (several reads of the store each) and applies each page in one transaction
//! with the projection's bulk apply, which folds in memory and writes each table with one
//! statement or one COPY; while a page is written, the next one is read on another connection.
//! Once caught up, one transaction locks the live checkpoint row (the live runner's next batch
//! waits on it), applies the tail that arrived meanwhile, and swaps the schemas by renaming
//! them. The checkpoint lives inside the schema, so it moves with the data: the live runner,
//! once let through, finds a checkpoint it did not expect, rolls its batch back and resumes from
//! the rebuilt checkpoint.

use crate::batch::apply_bulk_page;
use crate::checkpoint;
use crate::convert::{to_u64, LogPosition};
use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::schema;
use crate::schema_name::SchemaName;
use ledger_application::store::READ_EVENTS_MAX;
use ledger_application::EventStore;
use ledger_domain::{Position, RecordedEvent};
use ledger_postgres::Database;
use serde::Serialize;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

/// Events a rebuild applies per page, that is per shadow transaction (five reads of the store
/// at most). Large enough that commits, checkpoint updates and each projection's per-page
/// lookups (the touched SKUs' stored rows) are spread over many events; small enough that a
/// page in memory, with the next one read ahead, stays in the tens of megabytes, and that an
/// interrupted rebuild loses only the page in flight, a fraction of a second of work.
pub const REBUILD_PAGE_EVENTS_MAX: u64 = 5 * READ_EVENTS_MAX;

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
    /// Events per page (per shadow transaction), 1 to [`REBUILD_PAGE_EVENTS_MAX`].
    pub page_events_max: u64,
    /// Events per read of the log, 1 to [`READ_EVENTS_MAX`]; a page takes as many reads as it
    /// needs. Tests lower it so that pages and reads end at different events.
    pub read_events_max: u64,
    pub progress: Option<ProgressCallback>,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            restart: false,
            page_events_max: REBUILD_PAGE_EVENTS_MAX,
            read_events_max: READ_EVENTS_MAX,
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
    let projection = crate::by_name(projection_name)?;
    let name = projection.name();
    let live = SchemaName::live(name);
    let shadow = SchemaName::shadow(name);
    let pages = Pages {
        store,
        page_events: options.page_events_max.clamp(1, REBUILD_PAGE_EVENTS_MAX),
        read_events: options.read_events_max.clamp(1, READ_EVENTS_MAX),
    };
    let mut client = database.pool().get().await?;
    schema::migrate_live(&mut client, projection).await?;
    prepare_shadow(&mut client, projection, &shadow, options.restart).await?;

    let resumed_from = checkpoint::load(&**client, &shadow, name).await?.position;
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
    let filling = Filling {
        projection,
        shadow: &shadow,
        pages: &pages,
        progress: options.progress.as_ref(),
    };
    // Fill the shadow, then build its deferred indexes. Building takes a while on a large
    // table, so the shadow catches up once more with what arrived meanwhile, in its own pages,
    // leaving the swap's transaction (which pauses the live runner) only the last moments to
    // apply. Two passes at most: the second finds every index built.
    loop {
        if filling
            .catch_up(&mut client, &mut checkpoint, &mut summary)
            .await?
            .is_break()
        {
            summary.interrupted = true;
            summary.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(summary);
        }
        if !build_deferred_indexes(&mut client, projection, &shadow).await? {
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
    checkpoint::lock(&transaction, &live, name).await?;
    // Ends at the first page that is not full: the shadow has just caught up, so this is only
    // what was appended since. This transaction keeps the server's durable commit: the swap
    // must survive a crash once reported, and its commit record, flushed, makes every earlier
    // shadow page durable too.
    loop {
        let page = pages.read(checkpoint).await?;
        if page.is_empty() {
            break;
        }
        let events = page.len() as u64;
        let full = pages.is_full(&page);
        checkpoint = apply_bulk_page(&transaction, projection, &shadow, checkpoint, page).await?;
        summary.events_applied += events;
        if !full {
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

/// How a rebuild reads the log: pages of `page_events`, each filled by reads of at most
/// `read_events` (the store's limit per read).
struct Pages<'a> {
    store: &'a dyn EventStore,
    page_events: u64,
    read_events: u64,
}

impl Pages<'_> {
    /// The next page after `after`: `page_events` events, or fewer when the log ends first.
    async fn read(&self, after: Option<Position>) -> Result<Vec<RecordedEvent>, ProjectionError> {
        let mut page: Vec<RecordedEvent> = Vec::new();
        let mut after = after;
        // Bounded: every pass but the last adds `read_events` events to a page that stops at
        // `page_events`.
        while (page.len() as u64) < self.page_events {
            let wanted = (self.page_events - page.len() as u64).min(self.read_events);
            let events = self.store.read_all(after, wanted).await?;
            let Some(last) = events.last() else {
                break;
            };
            after = Some(last.position);
            let short = (events.len() as u64) < wanted;
            page.extend(events);
            if short {
                break;
            }
        }
        Ok(page)
    }

    fn is_full(&self, page: &[RecordedEvent]) -> bool {
        page.len() as u64 >= self.page_events
    }
}

/// What filling the shadow schema needs besides the connection and where it is.
struct Filling<'a> {
    projection: &'static dyn Projection,
    shadow: &'a SchemaName,
    pages: &'a Pages<'a>,
    progress: Option<&'a ProgressCallback>,
}

impl Filling<'_> {
    /// Apply pages to the shadow, one transaction each, from `checkpoint` until a page is not
    /// full (caught up), reporting progress after each. `Break` when the callback stopped it.
    async fn catch_up(
        &self,
        client: &mut deadpool_postgres::Client,
        checkpoint: &mut Option<Position>,
        summary: &mut RebuildSummary,
    ) -> Result<ControlFlow<()>, ProjectionError> {
        let name = self.projection.name();
        let mut page = self.pages.read(*checkpoint).await?;
        // Bounded by the log: every pass applies a non-empty page and moves the checkpoint on.
        while !page.is_empty() {
            let events = page.len() as u64;
            let full = self.pages.is_full(&page);
            let last = page.last().map(|e| e.position);
            // The next page is read (on a connection of the store) while this one is written,
            // so the server scans the log and writes the shadow at once, one core each on a
            // small machine. Only a full page can have a successor; a short one means caught
            // up.
            let (applied, next) = tokio::join!(
                apply_shadow_page(client, self.projection, self.shadow, *checkpoint, page),
                async {
                    if full {
                        self.pages.read(last).await
                    } else {
                        Ok(Vec::new())
                    }
                }
            );
            *checkpoint = applied?;
            summary.events_applied += events;
            summary.checkpoint = checkpoint.map(Into::into);
            let progress = RebuildProgress {
                projection: name,
                events_applied: summary.events_applied,
                checkpoint: summary.checkpoint,
            };
            tracing::info!(projection = name, events_applied = summary.events_applied, checkpoint = ?checkpoint, "rebuild progress");
            if let Some(callback) = self.progress {
                if callback(&progress).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            page = next?;
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// Apply one page to the shadow schema in its own transaction, checkpoint included.
async fn apply_shadow_page(
    client: &mut deadpool_postgres::Client,
    projection: &dyn Projection,
    shadow: &SchemaName,
    expected: Option<Position>,
    page: Vec<RecordedEvent>,
) -> Result<Option<Position>, ProjectionError> {
    let transaction = client.transaction().await?;
    // A shadow page need not wait for its commit to reach the disk. A crash can lose the last
    // pages that reported success, but never part of a page and never a page without the one
    // before it: the shadow's checkpoint commits in the same transaction as the page's rows,
    // an asynchronous commit is still atomic, and the log replays commits in order. So after
    // a crash the shadow is exactly as of an earlier page and its checkpoint, and the next run
    // resumes from there. Nothing reads the shadow meanwhile, and the swap commits durably.
    transaction
        .batch_execute("SET LOCAL synchronous_commit = off")
        .await?;
    let checkpoint = apply_bulk_page(&transaction, projection, shadow, expected, page).await?;
    transaction.commit().await?;
    Ok(checkpoint)
}

/// Build the deferred indexes the shadow lacks: all of them after a fresh load, none when an
/// earlier run (a dry run, or one stopped between here and the swap) built them already. Done
/// before the swap's transaction, so the live runner does not wait for it. Returns whether it
/// built any.
async fn build_deferred_indexes(
    client: &mut deadpool_postgres::Client,
    projection: &dyn Projection,
    shadow: &SchemaName,
) -> Result<bool, ProjectionError> {
    let deferred = projection.deferred_indexes();
    if deferred.is_empty() {
        return Ok(false);
    }
    let present = schema::index_names(&***client, shadow).await?;
    let mut built = false;
    for index in deferred {
        if present.iter().any(|name| name == index.name) {
            continue;
        }
        built = true;
        let started = Instant::now();
        client
            .batch_execute(&schema::render_statement(index.create, shadow))
            .await?;
        tracing::info!(
            projection = projection.name(),
            index = index.name,
            duration_ms = started.elapsed().as_millis() as u64,
            "rebuild built a deferred index"
        );
    }
    Ok(built)
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
    schema::create_shadow_schema(client, projection, shadow).await?;
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
            live_rows: to_u64("row count", row.get(0))?,
            rebuilt_rows: to_u64("row count", row.get(1))?,
        });
    }
    Ok(tables)
}

/// The shadow schema's checkpoint, if a rebuild left one (for status pages and the CLI).
pub async fn shadow_checkpoint(
    database: &Database,
    projection_name: &str,
) -> Result<Option<Option<Position>>, ProjectionError> {
    if crate::publisher::NAMES.contains(&projection_name) {
        // Publishers are not rebuilt into a shadow (see `publisher::restart_from`).
        return Ok(None);
    }
    let projection = crate::by_name(projection_name)?;
    let shadow = SchemaName::shadow(projection.name());
    let client = database.pool().get().await?;
    if schema::schema_fingerprint(&client, &shadow)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    Ok(Some(
        checkpoint::load(&**client, &shadow, projection.name())
            .await?
            .position,
    ))
}
