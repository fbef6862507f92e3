//! Scenario (j), the audit trail's costs over a large log: the store is filled up to
//! `--audit-events` events (the rebuild scenario's history counts; the rest is written
//! straight through the event store), the live projectors are let catch up, then:
//! - verify: every stream's chain recomputed from the events, as `ledger-replay anchor` and
//!   `verify --anchor` do (every event read, its canonical form built and hashed);
//! - export: `ledger-replay export --all` to a file, with the library function the CLI calls;
//! - the chain's share of an append: the seal (canonical form and SHA-256, what the writer
//!   adds per event) timed alone over a sample of the log's own events, against the time per
//!   event of appending through the store and per request of the uncontended reserves. There
//!   is no switch that turns the chain off, so its cost is measured beside the append's
//!   rather than as the difference of two runs.

use crate::database::LedgerDatabase;
use crate::history::{write_histories, HistoriesWritten};
use chrono::Utc;
use ledger_application::anchor::take_anchor;
use ledger_application::chain::seal;
use ledger_application::store::READ_EVENTS_MAX;
use ledger_domain::{EventHash, NewEvent};
use ledger_replay::export::{export, ExportSelection};
use ledger_replay::progress::Progress;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Events of the log's sample whose seal is timed: enough for a steady figure, few enough to
/// hold in memory.
pub const SEAL_SAMPLE_EVENTS: u64 = 100_000;

/// How many times the sample is sealed; the fastest round counts (the least disturbed by
/// the other processes on the machine).
pub const SEAL_ROUNDS: u32 = 3;

/// How long the live projectors may take to apply the written history (see the rebuild
/// scenario's bound).
pub const CATCH_UP_TIMEOUT_SECONDS: u64 = 1_800;

#[derive(Debug, Clone, Serialize)]
pub struct AuditResult {
    /// Events written for this scenario, when the log held fewer than asked for.
    pub written: Option<HistoriesWritten>,
    pub log_events: u64,
    pub log_streams: u64,
    pub verify_seconds: f64,
    pub verify_events_per_second: f64,
    pub export_seconds: f64,
    pub export_events_per_second: f64,
    pub export_bytes: u64,
    /// The seal's time per event (canonical form and SHA-256).
    pub seal_microseconds_per_event: f64,
    /// Time per event of appending through the store (wall time over the events written,
    /// several appenders at once), when this scenario wrote events.
    pub append_microseconds_per_event: Option<f64>,
    /// Time per request of the uncontended reserves (wall time over requests, every
    /// connection at once), when that scenario ran.
    pub reserve_microseconds_per_request: Option<f64>,
}

impl AuditResult {
    /// The seal's time as a share of the append's.
    pub fn seal_share_of_append(&self) -> Option<f64> {
        self.append_microseconds_per_event
            .map(|append| self.seal_microseconds_per_event / append)
    }

    /// The seal's time (a reserve appends one event) as a share of a reserve's.
    pub fn seal_share_of_reserve(&self) -> Option<f64> {
        self.reserve_microseconds_per_request
            .map(|reserve| self.seal_microseconds_per_event / reserve)
    }
}

pub struct AuditPlan {
    pub run: String,
    pub events: u64,
    pub skus: u64,
    pub appenders: usize,
    /// The uncontended reserves' throughput, when they ran.
    pub reserves_per_second: Option<f64>,
}

pub async fn run(database: &LedgerDatabase, plan: AuditPlan) -> Result<AuditResult, String> {
    let stored = count_events(database).await?;
    let written = if stored < plan.events {
        let missing = plan.events - stored;
        eprintln!("audit: writing {missing} events over {} SKUs...", plan.skus);
        let written = write_histories(
            database.store.clone(),
            &format!("A{}-", plan.run),
            plan.skus.max(1),
            missing,
            plan.appenders,
        )
        .await?;
        eprintln!(
            "audit: written in {:.1} s; waiting for the live projectors...",
            written.seconds
        );
        if let Err(error) = database
            .wait_for_projections(Duration::from_secs(CATCH_UP_TIMEOUT_SECONDS))
            .await
        {
            eprintln!("warning: {error}; measuring anyway");
        }
        Some(written)
    } else {
        None
    };

    eprintln!("audit: verifying every chain...");
    let started = Instant::now();
    let anchor = take_anchor(database.store.as_ref(), Utc::now())
        .await
        .map_err(|e| format!("verifying the chains: {e}"))?;
    let verify_seconds = started.elapsed().as_secs_f64();

    eprintln!("audit: exporting...");
    let file = std::env::temp_dir().join(format!("ledger-bench-export-{}.ndjson", plan.run));
    let exported = export_to(database, &file).await;
    let export_bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&file);
    let (export_seconds, exported_events) = exported?;

    eprintln!("audit: timing the seal over {SEAL_SAMPLE_EVENTS} of the log's events...");
    let seal_microseconds_per_event = time_seal(database).await?;
    Ok(AuditResult {
        append_microseconds_per_event: written.as_ref().map(|w| 1e6 / w.events_per_second),
        written,
        log_events: anchor.events,
        log_streams: anchor.streams,
        verify_seconds,
        verify_events_per_second: anchor.events as f64 / verify_seconds,
        export_seconds,
        export_events_per_second: exported_events as f64 / export_seconds,
        export_bytes,
        seal_microseconds_per_event,
        reserve_microseconds_per_request: plan.reserves_per_second.map(|rate| 1e6 / rate),
    })
}

async fn count_events(database: &LedgerDatabase) -> Result<u64, String> {
    let client = database
        .database
        .pool()
        .get()
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one("SELECT count(*) FROM event_store.events", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Export the whole log to `file`; the seconds taken and the events written.
async fn export_to(
    database: &LedgerDatabase,
    file: &std::path::Path,
) -> Result<(f64, u64), String> {
    let opened = std::fs::File::create(file).map_err(|e| e.to_string())?;
    let mut out =
        std::io::BufWriter::with_capacity(ledger_replay::export::OUTPUT_BUFFER_BYTES, opened);
    let started = Instant::now();
    let summary = export(
        database.store.as_ref(),
        &ExportSelection::default(),
        &mut out,
        &mut Progress::hidden("export"),
    )
    .await
    .map_err(|e| format!("exporting: {e}"))?;
    std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
    Ok((started.elapsed().as_secs_f64(), summary.events))
}

/// The fastest of [`SEAL_ROUNDS`] seals of a sample of the log's events, per event, in µs.
async fn time_seal(database: &LedgerDatabase) -> Result<f64, String> {
    let mut sample: Vec<(String, u64, NewEvent)> = Vec::new();
    let mut after = None;
    while (sample.len() as u64) < SEAL_SAMPLE_EVENTS {
        let page = database
            .store
            .read_all(after, READ_EVENTS_MAX)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        sample.extend(page.into_iter().map(|event| {
            let new = NewEvent {
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                data: event.data,
                metadata: event.metadata,
                recorded_at: event.recorded_at,
                hash: EventHash::GENESIS,
            };
            (event.stream, event.version, new)
        }));
    }
    if sample.is_empty() {
        return Err("the log is empty".to_owned());
    }
    let mut fastest = f64::INFINITY;
    for _ in 0..SEAL_ROUNDS {
        let started = Instant::now();
        for (stream, version, event) in &mut sample {
            let recorded_at = event.recorded_at;
            seal(
                stream,
                *version,
                EventHash::GENESIS,
                recorded_at,
                std::slice::from_mut(event),
            );
        }
        fastest = fastest.min(started.elapsed().as_secs_f64());
    }
    Ok(fastest * 1e6 / sample.len() as f64)
}

pub fn print(audit: &AuditResult) {
    println!(
        "## (j) Audit trail: {} events over {} streams in the log",
        audit.log_events, audit.log_streams
    );
    if let Some(written) = &audit.written {
        println!(
            "({} of them written for this scenario in {:.1} s, {:.0} events/s through \
             EventStore::append)",
            written.events, written.seconds, written.events_per_second
        );
    }
    println!("| measure | events | seconds | events/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| verify: every chain recomputed (anchor) | {} | {:.1} | {:.0} |",
        audit.log_events, audit.verify_seconds, audit.verify_events_per_second
    );
    println!(
        "| export --all to a file ({:.0} MB) | {} | {:.1} | {:.0} |",
        audit.export_bytes as f64 / 1e6,
        audit.log_events,
        audit.export_seconds,
        audit.export_events_per_second
    );
    println!("| the chain's cost per event | µs | share |");
    println!("|---|---:|---:|");
    println!(
        "| seal (canonical form + SHA-256), one core | {:.2} | |",
        audit.seal_microseconds_per_event
    );
    if let (Some(append), Some(share)) = (
        audit.append_microseconds_per_event,
        audit.seal_share_of_append(),
    ) {
        println!(
            "| append through the store, per event (wall) | {append:.2} | seal = {:.1} % |",
            share * 100.0
        );
    }
    if let (Some(reserve), Some(share)) = (
        audit.reserve_microseconds_per_request,
        audit.seal_share_of_reserve(),
    ) {
        println!(
            "| uncontended reserve over HTTP, per request (wall) | {reserve:.2} | seal = {:.1} % |",
            share * 100.0
        );
    }
}
