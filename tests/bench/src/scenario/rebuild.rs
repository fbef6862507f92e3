//! Scenario (h), rebuild speed: write a large store of valid events straight through the event
//! store, let the live projectors catch up (so they do not compete with the rebuild), then
//! rebuild every projection with the library function the operators' CLI calls, one after
//! the other, and report events per second for each.

use crate::database::LedgerDatabase;
use crate::history::{write_histories, HistoriesWritten};
use ledger_projections::{RebuildOptions, RebuildSummary};
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long the live projectors may take to apply the written history before the rebuilds
/// start anyway (and then share the machine with them). Generous: at a few thousand events a
/// second, a million events takes minutes.
pub const CATCH_UP_TIMEOUT_SECONDS: u64 = 1_800;

#[derive(Debug, Clone, Serialize)]
pub struct RebuildResult {
    /// The cluster's durability settings, as PostgreSQL reports them.
    pub durability: String,
    /// Events written for this scenario (the store also holds the other scenarios' events,
    /// which the rebuilds apply as well).
    pub written: HistoriesWritten,
    /// How long the live projectors needed after the last append to reach the log's head;
    /// `None` when they did not within [`CATCH_UP_TIMEOUT_SECONDS`].
    pub live_catch_up_seconds: Option<f64>,
    pub projections: Vec<ProjectionRebuild>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionRebuild {
    pub projection: &'static str,
    pub events_applied: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    /// True when every table of the rebuilt schema has as many rows as the live one had.
    pub rows_match_live: bool,
    pub summary: RebuildSummary,
}

pub struct RebuildPlan {
    pub run: String,
    pub events: u64,
    pub skus: u64,
    pub appenders: usize,
}

pub async fn run(database: &LedgerDatabase, plan: RebuildPlan) -> Result<RebuildResult, String> {
    eprintln!(
        "rebuild: writing {} events over {} SKUs...",
        plan.events, plan.skus
    );
    let written = write_histories(
        database.store.clone(),
        &format!("R{}-", plan.run),
        plan.skus.max(1),
        plan.events,
        plan.appenders,
    )
    .await?;
    eprintln!(
        "rebuild: written in {:.1} s; waiting for the live projectors...",
        written.seconds
    );
    let live_catch_up_seconds = match database
        .wait_for_projections(Duration::from_secs(CATCH_UP_TIMEOUT_SECONDS))
        .await
    {
        Ok(waited) => Some(waited.as_secs_f64()),
        Err(error) => {
            eprintln!("warning: {error}; rebuilding anyway");
            None
        }
    };
    let mut rebuilt = Vec::new();
    for projection in ledger_projections::names() {
        eprintln!("rebuild: {projection}...");
        let started = Instant::now();
        let summary = ledger_projections::rebuild(
            database.store.as_ref(),
            &database.database,
            projection,
            RebuildOptions {
                restart: true,
                ..RebuildOptions::default()
            },
        )
        .await
        .map_err(|e| format!("rebuilding {projection}: {e}"))?;
        let seconds = started.elapsed().as_secs_f64();
        rebuilt.push(ProjectionRebuild {
            projection,
            events_applied: summary.events_applied,
            seconds,
            events_per_second: summary.events_applied as f64 / seconds,
            rows_match_live: summary
                .tables
                .iter()
                .all(|table| table.live_rows == table.rebuilt_rows),
            summary,
        });
    }
    Ok(RebuildResult {
        durability: database.durability().await?,
        written,
        live_catch_up_seconds,
        projections: rebuilt,
    })
}

/// What the written history holds, for the report: the generator's mix (see
/// [`crate::history`]), beside whatever the other scenarios appended.
pub const EVENT_MIX: &str = "mixed events (replenishments, reorder points, reservations mostly \
    confirmed and sometimes released, cycle-count adjustments), beside the other scenarios' \
    reserves";

pub fn print(rebuild: &RebuildResult) {
    let written = &rebuild.written;
    println!(
        "## (h) Rebuild: {} {EVENT_MIX}, written over {} SKUs in {:.1} s ({:.0} events/s \
         through EventStore::append); cluster durability: {}",
        written.events,
        written.streams,
        written.seconds,
        written.events_per_second,
        rebuild.durability
    );
    match rebuild.live_catch_up_seconds {
        Some(seconds) => {
            println!("live projectors reached the log's head {seconds:.1} s after the last append")
        }
        None => println!("live projectors had NOT caught up when the rebuilds started"),
    }
    println!("| projection | events applied | seconds | events/s | rows match live |");
    println!("|---|---:|---:|---:|---|");
    for p in &rebuild.projections {
        println!(
            "| {} | {} | {:.1} | {:.0} | {} |",
            p.projection,
            p.events_applied,
            p.seconds,
            p.events_per_second,
            if p.rows_match_live { "yes" } else { "NO" }
        );
    }
}
