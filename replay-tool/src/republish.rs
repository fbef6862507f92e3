//! `republish`: make an integration event publisher publish again from a position of the log,
//! through `ledger_projections::publisher::restart_from`.

use crate::cli::RepublishArguments;
use crate::error::{ExitCodeName, ToolError};
use crate::status::show;
use ledger_projections::LogPosition;
use ledger_startup::Backends;

pub async fn run(
    backends: &Backends,
    arguments: RepublishArguments,
) -> Result<ExitCodeName, ToolError> {
    let summary = ledger_projections::publisher::restart_from(
        backends.store.as_ref(),
        backends.database(),
        &arguments.publisher,
        arguments.from,
    )
    .await?;
    let checkpoint: Option<LogPosition> = summary.checkpoint.map(Into::into);
    println!(
        "{}: folded {} events again without publishing; its next run publishes every event \
         after {}",
        arguments.publisher,
        summary.events_folded,
        show(checkpoint.as_ref())
    );
    Ok(ExitCodeName::Ok)
}
