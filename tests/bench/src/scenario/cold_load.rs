//! Scenario (g), cold load: write one SKU with a long stream straight through the event store,
//! then time loading it from a fresh command handler (nothing cached in the process) a few
//! times. Each way of loading a SKU is one [`LoadPath`] and one row of the result, so a faster
//! path (a snapshot plus the stream's tail, say) is measured beside the full replay by adding
//! a variant and its arm in [`LoadPath::load`].

use crate::history::{self, SkuHistory};
use crate::stats::milliseconds;
use ledger_application::handler::CommandHandler;
use ledger_application::snapshot::{Snapshot, SnapshotStore, SNAPSHOT_INTERVAL_EVENTS};
use ledger_application::EventStore;
use ledger_domain::{Sku, SkuEvent, SkuState};
use ledger_postgres::Database;
use ledger_postgres::PostgresSnapshots;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A way of loading one SKU's state with nothing cached in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadPath {
    /// `CommandHandler::load` from a new handler with no snapshot store: read and fold the
    /// whole stream.
    HandlerLoad,
    /// `CommandHandler::load` from a new handler with the Postgres snapshot store, whose
    /// latest snapshot is [`SNAPSHOT_INTERVAL_EVENTS`] events behind the head: the most a
    /// writer leaves unsnapshotted, so the worst case of a real cold load.
    SnapshotLoad,
}

impl LoadPath {
    /// Every path, in the order of the result's rows.
    pub const ALL: &'static [LoadPath] = &[LoadPath::HandlerLoad, LoadPath::SnapshotLoad];

    pub fn describe(self) -> &'static str {
        match self {
            Self::HandlerLoad => "CommandHandler::load, fresh handler, whole stream",
            Self::SnapshotLoad => {
                "CommandHandler::load, fresh handler, snapshot 1,000 events behind + tail"
            }
        }
    }

    async fn load(
        self,
        store: &Arc<dyn EventStore>,
        snapshots: &Arc<PostgresSnapshots>,
        sku: &Sku,
    ) -> Result<SkuState, String> {
        let handler = match self {
            Self::HandlerLoad => CommandHandler::new(store.clone()),
            // No snapshot is saved while timing, so every repetition starts from the same one.
            Self::SnapshotLoad => CommandHandler::new(store.clone())
                .with_snapshots(snapshots.clone())
                .with_snapshot_interval(u64::MAX),
        };
        handler
            .load(sku)
            .await
            .map(|loaded| loaded.state)
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ColdLoadResult {
    pub sku: String,
    pub events: u64,
    pub write_seconds: f64,
    pub rows: Vec<ColdLoadRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColdLoadRow {
    pub path: LoadPath,
    pub description: &'static str,
    pub repetitions: u32,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
    /// Events folded per second at the median time.
    pub events_per_second: f64,
    /// Every repetition in order, the first one included (it may find colder caches).
    pub each_ms: Vec<f64>,
}

pub async fn run(
    store: Arc<dyn EventStore>,
    database: Database,
    run: &str,
    events: u64,
    repetitions: u32,
) -> Result<ColdLoadResult, String> {
    let sku = Sku::parse(&format!("COLD{run}")).map_err(|e| e.to_string())?;
    eprintln!("cold load: writing {events} events to {}...", sku.stream());
    let started = Instant::now();
    let mut written = SkuHistory::new(sku.clone(), u64::MAX);
    history::append(store.as_ref(), &mut written, events).await?;
    let write_seconds = started.elapsed().as_secs_f64();
    let snapshots = Arc::new(
        PostgresSnapshots::open(database)
            .await
            .map_err(|e| e.to_string())?,
    );
    save_snapshot_behind_head(store.as_ref(), &snapshots, &sku, events).await?;

    let mut rows = Vec::new();
    for &path in LoadPath::ALL {
        let mut times = Vec::new();
        for _ in 0..repetitions.max(1) {
            let started = Instant::now();
            let state = path.load(&store, &snapshots, &sku).await?;
            times.push(started.elapsed());
            if &state != written.state() {
                return Err(format!(
                    "{} loaded a state that differs from the one written (version {:?}, \
                     written {:?})",
                    path.describe(),
                    state.version,
                    written.state().version
                ));
            }
        }
        rows.push(row(path, events, &times));
    }
    Ok(ColdLoadResult {
        sku: sku.as_str().to_owned(),
        events,
        write_seconds,
        rows,
    })
}

/// Save the snapshot a writer would have left: the state [`SNAPSHOT_INTERVAL_EVENTS`] events
/// before the head, anchored to the event it was folded up to.
async fn save_snapshot_behind_head(
    store: &dyn EventStore,
    snapshots: &PostgresSnapshots,
    sku: &Sku,
    events: u64,
) -> Result<(), String> {
    let Some(version) = events.checked_sub(SNAPSHOT_INTERVAL_EVENTS + 1) else {
        return Ok(());
    };
    let mut state = SkuState::new(sku.clone());
    let mut last_event_id = None;
    let mut head = None;
    while state.version != Some(version) {
        let from = state.version.map_or(0, |v| v + 1);
        let count = (version + 1 - from).min(ledger_application::store::READ_EVENTS_MAX);
        let page = store
            .read_stream(&sku.stream(), from, count)
            .await
            .map_err(|e| e.to_string())?;
        if page.is_empty() {
            return Err("the cold-load stream ended before the snapshot's version".into());
        }
        for recorded in &page {
            let event = SkuEvent::decode(
                &recorded.event_type,
                recorded.schema_version,
                &recorded.data,
            )
            .map_err(|e| e.to_string())?;
            state.apply(&event);
            last_event_id = Some(recorded.event_id);
            head = Some((recorded.hash, recorded.recorded_at));
        }
    }
    let last_event_id = last_event_id.ok_or("the cold-load stream is empty")?;
    let (Some(head_hash), head_recorded_at) = head.ok_or("the cold-load stream is empty")? else {
        return Err("the cold-load stream's events carry no hash".into());
    };
    snapshots
        .save(&Snapshot {
            stream: sku.stream(),
            version,
            last_event_id,
            state,
            recent_keys: Vec::new(),
            holders: Vec::new(),
            head_hash,
            head_recorded_at,
        })
        .await
        .map_err(|e| e.to_string())
}

fn row(path: LoadPath, events: u64, times: &[Duration]) -> ColdLoadRow {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    ColdLoadRow {
        path,
        description: path.describe(),
        repetitions: times.len() as u32,
        min_ms: milliseconds(sorted[0]),
        median_ms: milliseconds(median),
        max_ms: milliseconds(sorted[sorted.len() - 1]),
        events_per_second: events as f64 / median.as_secs_f64(),
        each_ms: times.iter().copied().map(milliseconds).collect(),
    }
}

impl ColdLoadResult {
    /// The median of the path a real cold load takes: the snapshot plus the stream's tail.
    pub fn snapshot_median_ms(&self) -> Option<f64> {
        self.rows
            .iter()
            .find(|row| row.path == LoadPath::SnapshotLoad)
            .map(|row| row.median_ms)
    }
}

pub fn print(cold: &ColdLoadResult) {
    println!(
        "## (g) Cold load: SKU {} with {} events (written in {:.1} s), loaded in the bench's \
         process through the library",
        cold.sku, cold.events, cold.write_seconds
    );
    println!("| load path | repetitions | min ms | median ms | max ms | events/s at median |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &cold.rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            row.description,
            row.repetitions,
            row.min_ms,
            row.median_ms,
            row.max_ms,
            row.events_per_second
        );
    }
}
