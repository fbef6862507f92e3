//! `anchor`: a digest of the whole log now (see [`ledger_application::anchor`]), printed as JSON
//! and, with `--output`, written to a file for the auditor to keep outside the system.

use crate::cli::AnchorArguments;
use crate::error::{ExitCodeName, ToolError};
use ledger_application::anchor::{take_anchor, Anchor};
use ledger_startup::Backends;
use std::io::Write;

pub async fn run(
    backends: &Backends,
    arguments: AnchorArguments,
) -> Result<ExitCodeName, ToolError> {
    let anchor = take_anchor(backends.store.as_ref(), chrono::Utc::now()).await?;
    let text = serde_json::to_string_pretty(&anchor).expect("an anchor serialises");
    if let Some(path) = &arguments.output {
        // Written whole to a new file beside the target, then moved over it, so that an
        // interrupted run never leaves half an anchor where a kept one was.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, format!("{text}\n"))
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| ToolError::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(ExitCodeName::Ok)
}

/// An anchor read from the file an auditor kept.
pub fn read_anchor(path: &std::path::Path) -> Result<Anchor, ToolError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ToolError::Usage(format!("cannot read the anchor {}: {e}", path.display())))?;
    let anchor: Anchor = serde_json::from_str(&text)
        .map_err(|e| ToolError::Usage(format!("{} is not an anchor: {e}", path.display())))?;
    if anchor.format != ledger_application::anchor::ANCHOR_FORMAT {
        return Err(ToolError::Usage(format!(
            "{}: anchor format {:?} is not {:?}",
            path.display(),
            anchor.format,
            ledger_application::anchor::ANCHOR_FORMAT
        )));
    }
    Ok(anchor)
}
