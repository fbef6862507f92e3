//! `verify-proof`: check a SKU's inclusion proof (as the API's `GET /v1/skus/{sku}/anchor-proof`
//! serves it) against an anchor the auditor kept, offline: no event store is opened.

use crate::cli::VerifyProofArguments;
use crate::error::{ExitCodeName, ToolError};
use ledger_application::anchor::InclusionProof;
use std::io::Write;

pub fn run(arguments: VerifyProofArguments) -> Result<ExitCodeName, ToolError> {
    let anchor = crate::anchor::read_anchor(&arguments.anchor)?;
    let proof = read_proof(&arguments.proof)?;
    let mut out = std::io::stdout().lock();
    match proof.check(&anchor) {
        Ok(()) => {
            writeln!(
                out,
                "OK: {} at version {} (head hash {}) is in the anchor taken at {} (Merkle root {})",
                proof.stream,
                proof.version,
                proof.head_hash,
                anchor.taken_at.to_rfc3339(),
                anchor.merkle_root
            )?;
            Ok(ExitCodeName::Ok)
        }
        Err(mismatch) => {
            writeln!(
                out,
                "MISMATCH: {} is not shown in the anchor: {mismatch}",
                proof.stream
            )?;
            Ok(ExitCodeName::Failed)
        }
    }
}

/// A proof read from a file (the API's answer, saved).
pub fn read_proof(path: &std::path::Path) -> Result<InclusionProof, ToolError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ToolError::Usage(format!("cannot read the proof {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| ToolError::Usage(format!("{} is not an inclusion proof: {e}", path.display())))
}
