//! The auditor's digests: an anchor of the whole log now (the one `ledger-replay anchor`
//! prints), and a SKU's inclusion proof in the anchor at a log position, which the auditor
//! checks offline against an anchor kept earlier (`ledger-replay verify-proof`). Both read the
//! whole log up to the position from the event store and recompute every hash: neither a
//! stored hash nor a read model is trusted.

use super::bodies::LogPosition;
use crate::contract::{Conflict, Guarded, NotFound, PathProblems, QueryProblems, SkuPath};
use crate::extract::{Auditing, Authorized, Query, SkuTarget};
use crate::problem::Problem;
use crate::state::SharedState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use ledger_application::anchor::{prove_inclusion, take_anchor, Anchor, InclusionProof, Side};
use ledger_domain::Position;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// Digests computed at once by this process. Each reads and hashes the whole log (seconds for
/// a million events), so more at once would only share the same cores and the store's reads
/// with the commands; later requests wait their turn.
pub const AUDIT_DIGESTS_IN_FLIGHT_MAX: usize = 1;

/// The turns of [`AUDIT_DIGESTS_IN_FLIGHT_MAX`], shared by every server of the process.
static DIGESTS: Semaphore = Semaphore::const_new(AUDIT_DIGESTS_IN_FLIGHT_MAX);

/// A digest of the whole log at a position, as `ledger-replay anchor` prints it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AnchorBody {
    /// Always `ledger-anchor/1`: names the layout of the anchor and of its Merkle tree.
    pub format: String,
    /// The last event the anchor covers; null for the empty log.
    pub log_position: Option<LogPosition>,
    /// When the anchor was taken.
    pub taken_at: DateTime<Utc>,
    /// Streams covered.
    pub streams: u64,
    /// Events covered.
    pub events: u64,
    /// The Merkle root over every stream's (name, version, head hash), streams sorted by name.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub merkle_root: String,
}

impl From<Anchor> for AnchorBody {
    fn from(anchor: Anchor) -> Self {
        Self {
            format: anchor.format,
            log_position: anchor.log_position.map(|p| LogPosition {
                commit: p.commit,
                prepare: p.prepare,
            }),
            taken_at: anchor.taken_at,
            streams: anchor.streams,
            events: anchor.events,
            merkle_root: anchor.merkle_root.to_hex(),
        }
    }
}

/// Which side of the path's node a sibling sits on.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProofSide {
    /// The parent is `SHA-256(0x01 ‖ sibling ‖ node)`.
    Left,
    /// The parent is `SHA-256(0x01 ‖ node ‖ sibling)`.
    Right,
}

/// One step from a node of the Merkle tree up to its parent.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProofStepBody {
    pub side: ProofSide,
    /// The sibling's hash.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
}

/// A SKU stream's head in an anchor's Merkle tree, with the sibling hashes that lead from its
/// leaf to the root; `ledger-replay verify-proof` checks it against a kept anchor.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AnchorProofBody {
    /// Always `ledger-anchor-proof/1`.
    pub format: String,
    /// The anchor of the log at the position asked for (now, when none was).
    pub anchor: AnchorBody,
    /// The SKU's stream, `sku-<SKU>`.
    pub stream: String,
    /// The stream's version at the anchor's position.
    pub version: u64,
    /// The hash of the stream's event at that version, recomputed from the events.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub head_hash: String,
    /// `SHA-256(0x00 ‖ field(stream) ‖ field(version) ‖ field(head_hash))`.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub leaf: String,
    /// The siblings from the leaf up to the root; a level where the node is carried up alone
    /// adds no step.
    pub path: Vec<ProofStepBody>,
}

impl From<InclusionProof> for AnchorProofBody {
    fn from(proof: InclusionProof) -> Self {
        Self {
            format: proof.format,
            anchor: proof.anchor.into(),
            stream: proof.stream,
            version: proof.version,
            head_hash: proof.head_hash.to_hex(),
            leaf: proof.leaf.to_hex(),
            path: proof
                .path
                .into_iter()
                .map(|step| ProofStepBody {
                    side: match step.side {
                        Side::Left => ProofSide::Left,
                        Side::Right => ProofSide::Right,
                    },
                    hash: step.hash.to_hex(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AnchorProofQuery {
    /// The anchor's log position, as `COMMIT/PREPARE` (e.g. `9143/7`, the `log_position` of an
    /// anchor kept earlier): the proof then leads to that anchor's root. The head of the log
    /// when absent; a position past the head is refused (409 `log-position-ahead`: the log has
    /// not reached it).
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,20}/[0-9]{1,20}$")]
    pub log_position: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/anchor", tag = "audit",
    responses((status = 200, description = "An anchor of the whole log now, recomputed from the events", body = AnchorBody),
              Guarded)
)]
pub async fn anchor(
    State(state): State<SharedState>,
    _: Authorized<Auditing>,
) -> Result<Json<AnchorBody>, Problem> {
    let _turn = DIGESTS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let anchor = take_anchor(state.store.as_ref(), Utc::now()).await?;
    Ok(Json(anchor.into()))
}

#[utoipa::path(
    get, path = "/v1/skus/{sku}/anchor-proof", tag = "audit",
    params(SkuPath, AnchorProofQuery),
    responses((status = 200, description = "The SKU's inclusion proof in the anchor of the log at the position", body = AnchorProofBody),
              NotFound, Conflict, PathProblems, QueryProblems, Guarded)
)]
pub async fn anchor_proof(
    State(state): State<SharedState>,
    _: Authorized<Auditing>,
    target: SkuTarget,
    Query(query): Query<AnchorProofQuery>,
) -> Result<Json<AnchorProofBody>, Problem> {
    let at = query
        .log_position
        .as_deref()
        .map(|text| {
            text.parse::<Position>().map_err(|e| {
                Problem::bad_request("invalid-query", format!("log_position: {e}"))
                    .with("field", "log_position")
            })
        })
        .transpose()?;
    let _turn = DIGESTS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    if let Some(at) = at {
        let head = state.store.head_position().await?;
        if head.is_none_or(|head| at > head) {
            // A well-formed position the log has not reached: the state of the log refuses it,
            // as a command's state does (409), not the request's form.
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "log-position-ahead",
                "The log has not reached that position",
                format!(
                    "log_position {at} is past the head of the log ({}); give the position of \
                     an anchor taken earlier",
                    head.map_or_else(|| "empty".to_owned(), |h| h.to_string())
                ),
            )
            .with("field", "log_position"));
        }
    }
    let stream = target.sku.stream();
    match prove_inclusion(state.store.as_ref(), &stream, at, Utc::now()).await? {
        Some(proof) => Ok(Json(proof.into())),
        None => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "sku-not-in-log",
            "SKU not in the log",
            format!("{stream} has no event at or before the anchor's position"),
        )),
    }
}
