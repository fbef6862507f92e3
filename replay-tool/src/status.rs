//! `status`: every projection's checkpoint, the head of the log, the lag and the last error,
//! from the same query the API's status endpoint uses, plus any rebuild left half done.

use crate::cli::{ReportFormat, StatusArguments};
use crate::error::{ExitCodeName, ToolError};
use ledger_projections::ReadModels;
use ledger_projections::{LogPosition, ProjectionStatus};
use ledger_startup::Backends;
use serde::Serialize;
use std::io::Write;

#[derive(Serialize)]
struct StatusRow {
    #[serde(flatten)]
    status: ProjectionStatus,
    /// The shadow schema's checkpoint when a rebuild is under way or was interrupted.
    rebuild_checkpoint: Option<Option<LogPosition>>,
}

pub async fn run(
    backends: &Backends,
    arguments: StatusArguments,
) -> Result<ExitCodeName, ToolError> {
    let read_models = ReadModels::new(backends.database().clone());
    let mut rows = Vec::new();
    for status in read_models.status(backends.store.as_ref()).await? {
        let rebuild_checkpoint =
            ledger_projections::rebuild::shadow_checkpoint(backends.database(), &status.name)
                .await?
                .map(|position| position.map(Into::into));
        rows.push(StatusRow {
            status,
            rebuild_checkpoint,
        });
    }
    let mut out = std::io::stdout().lock();
    match arguments.format {
        ReportFormat::Json => {
            let text = serde_json::to_string_pretty(&rows).expect("statuses serialise");
            writeln!(out, "{text}")?;
        }
        ReportFormat::Table => {
            writeln!(
                out,
                "{:<17} {:<22} {:<22} {:>10} {:>9} {:<8} {:<22} LAST ERROR",
                "PROJECTION", "CHECKPOINT", "HEAD", "LAG EVENTS", "LAG S", "RUNNING", "REBUILD"
            )?;
            for row in &rows {
                let status = &row.status;
                let lag = format!(
                    "{}{}",
                    status.lag_events,
                    if status.lag_events_capped { "+" } else { "" }
                );
                let rebuild = match &row.rebuild_checkpoint {
                    None => "-".to_owned(),
                    Some(position) => format!("at {}", show(position.as_ref())),
                };
                let error = match (&status.last_error, status.last_error_at) {
                    (Some(error), Some(at)) => format!("{} ({at})", error),
                    (Some(error), None) => error.clone(),
                    _ => "-".to_owned(),
                };
                let checkpoint = if status.migrated {
                    show(status.checkpoint.as_ref())
                } else {
                    "not migrated".to_owned()
                };
                writeln!(
                    out,
                    "{:<17} {:<22} {:<22} {:>10} {:>9.1} {:<8} {:<22} {}",
                    status.name,
                    checkpoint,
                    show(status.head.as_ref()),
                    lag,
                    status.lag_seconds,
                    if status.running { "yes" } else { "no" },
                    rebuild,
                    error,
                )?;
            }
        }
    }
    Ok(ExitCodeName::Ok)
}

/// A log position the way operators read it: `COMMIT/PREPARE`, or `start` for none.
pub fn show(position: Option<&LogPosition>) -> String {
    position.map_or_else(
        || "start".to_owned(),
        |p| format!("{}/{}", p.commit, p.prepare),
    )
}
