//! Anchors: a digest of the whole log at a moment, for an auditor to keep outside the system.
//!
//! A hash chain shows that a stream was edited unless whoever edited it also recomputed every
//! hash after the edit; an anchor kept elsewhere shows that too. It is a Merkle root over every
//! stream's (name, version, head hash) at a log position, streams sorted by name, with the
//! head hashes recomputed from the events (so that neither a stored hash nor a read model is
//! trusted). Checking an anchor later recomputes the same root from the events at or before
//! its position; any edit, deletion, insertion or reordering there changes it, chains
//! recomputed or not.
//!
//! Leaf of a stream: `SHA-256(0x00 ‖ field(name) ‖ field(version) ‖ field(head hash))`, each
//! field as in the chain's canonical form (a 4-byte big-endian length, then UTF-8 text; the
//! version in decimal, the hash in lower-case hexadecimal). Inner node: `SHA-256(0x01 ‖ left ‖
//! right)`; a level with an odd count carries its last node up unchanged. The root of no
//! streams is 32 zero bytes.

use crate::chain::link_recorded;
use crate::store::{EventStore, StoreError, READ_EVENTS_MAX};
use chrono::{DateTime, Utc};
use ledger_domain::envelope::{Position, RecordedEvent};
use ledger_domain::EventHash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Names the layout of an anchor file and of its Merkle tree.
pub const ANCHOR_FORMAT: &str = "ledger-anchor/1";

/// A digest of the log at one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Always [`ANCHOR_FORMAT`].
    pub format: String,
    /// The last event the anchor covers (`None`: the log was empty).
    pub log_position: Option<Position>,
    /// When the anchor was taken.
    pub taken_at: DateTime<Utc>,
    /// Streams and events covered.
    pub streams: u64,
    pub events: u64,
    /// The Merkle root over every stream's (name, version, head hash), by name.
    pub merkle_root: EventHash,
}

/// Every stream's head as the log is read, with its hash recomputed from the events.
#[derive(Debug, Clone, Default)]
pub struct LogHeads {
    heads: BTreeMap<String, (u64, EventHash)>,
    events: u64,
}

impl LogHeads {
    /// Fold the next event of the log.
    pub fn add(&mut self, recorded: &RecordedEvent) {
        let previous = self
            .heads
            .get(&recorded.stream)
            .map_or(EventHash::GENESIS, |(_, hash)| *hash);
        let hash = link_recorded(&previous, recorded);
        self.heads
            .insert(recorded.stream.clone(), (recorded.version, hash));
        self.events += 1;
    }

    pub fn streams(&self) -> u64 {
        self.heads.len() as u64
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    /// The Merkle root over the heads, by stream name.
    pub fn merkle_root(&self) -> EventHash {
        merkle_root(self.leaves())
    }

    fn leaves(&self) -> Vec<EventHash> {
        self.heads
            .iter()
            .map(|(name, (version, hash))| leaf(name, *version, hash))
            .collect()
    }

    /// The anchor of these heads, read up to `log_position`.
    pub fn anchor(&self, log_position: Option<Position>, taken_at: DateTime<Utc>) -> Anchor {
        Anchor {
            format: ANCHOR_FORMAT.to_owned(),
            log_position,
            taken_at,
            streams: self.streams(),
            events: self.events(),
            merkle_root: self.merkle_root(),
        }
    }

    /// `stream`'s inclusion proof in `anchor` (the anchor of these heads); `None` when the
    /// stream has no event among them.
    pub fn proof(&self, stream: &str, anchor: &Anchor) -> Option<InclusionProof> {
        let (version, head_hash) = *self.heads.get(stream)?;
        let index = self
            .heads
            .keys()
            .take_while(|name| name.as_str() < stream)
            .count();
        let leaves = self.leaves();
        let proof = InclusionProof {
            format: PROOF_FORMAT.to_owned(),
            anchor: anchor.clone(),
            stream: stream.to_owned(),
            version,
            head_hash,
            leaf: leaves[index],
            path: merkle_path(leaves, index),
        };
        debug_assert_eq!(proof.check(anchor), Ok(()));
        Some(proof)
    }
}

/// Names the layout of an inclusion proof.
pub const PROOF_FORMAT: &str = "ledger-anchor-proof/1";

/// Which side of the path's node a sibling hash sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The sibling is the left child: the parent is `SHA-256(0x01 ‖ sibling ‖ node)`.
    Left,
    /// The sibling is the right child: the parent is `SHA-256(0x01 ‖ node ‖ sibling)`.
    Right,
}

/// One step from a node up to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofStep {
    pub side: Side,
    pub hash: EventHash,
}

/// One stream's head in an anchor's Merkle tree, with what it takes to recompute the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Always [`PROOF_FORMAT`].
    pub format: String,
    /// The anchor the proof leads to.
    pub anchor: Anchor,
    pub stream: String,
    /// The stream's version at the anchor's position.
    pub version: u64,
    /// The hash of the stream's event at that version, recomputed from the events.
    pub head_hash: EventHash,
    /// The stream's leaf ([`leaf`] of the three fields above).
    pub leaf: EventHash,
    /// The siblings from the leaf up to the root.
    pub path: Vec<ProofStep>,
}

/// Why a proof does not lead to an anchor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofMismatch {
    #[error("the proof's format {found:?} is not {PROOF_FORMAT:?}")]
    Format { found: String },
    #[error(
        "the proof is against the log at {}, the anchor at {}; ask for a proof at the \
         anchor's position",
        display_position(*proof),
        display_position(*anchor)
    )]
    Position {
        proof: Option<Position>,
        anchor: Option<Position>,
    },
    #[error("the leaf {found} is not the leaf of {stream} at version {version}: {expected}")]
    Leaf {
        stream: String,
        version: u64,
        expected: EventHash,
        found: EventHash,
    },
    #[error("the path leads to the root {computed}, the anchor's root is {anchor}")]
    Root {
        computed: EventHash,
        anchor: EventHash,
    },
}

fn display_position(position: Option<Position>) -> String {
    position.map_or_else(|| "the empty log".to_owned(), |p| format!("position {p}"))
}

impl InclusionProof {
    /// Check the proof offline against `anchor` (one kept by the auditor): the leaf is the
    /// stream's (name, version, head hash), and the path leads from it to the anchor's root.
    pub fn check(&self, anchor: &Anchor) -> Result<(), ProofMismatch> {
        if self.format != PROOF_FORMAT {
            return Err(ProofMismatch::Format {
                found: self.format.clone(),
            });
        }
        if self.anchor.log_position != anchor.log_position {
            return Err(ProofMismatch::Position {
                proof: self.anchor.log_position,
                anchor: anchor.log_position,
            });
        }
        let expected = leaf(&self.stream, self.version, &self.head_hash);
        if expected != self.leaf {
            return Err(ProofMismatch::Leaf {
                stream: self.stream.clone(),
                version: self.version,
                expected,
                found: self.leaf,
            });
        }
        let computed = root_from_path(self.leaf, &self.path);
        if computed != anchor.merkle_root {
            return Err(ProofMismatch::Root {
                computed,
                anchor: anchor.merkle_root,
            });
        }
        Ok(())
    }
}

/// The root reached from `leaf` by `path`.
pub fn root_from_path(leaf: EventHash, path: &[ProofStep]) -> EventHash {
    path.iter().fold(leaf, |node, step| match step.side {
        Side::Left => parent(&step.hash, &node),
        Side::Right => parent(&node, &step.hash),
    })
}

/// The siblings on the way from `leaves[index]` up to the root of [`merkle_root`].
pub fn merkle_path(mut level: Vec<EventHash>, mut index: usize) -> Vec<ProofStep> {
    assert!(index < level.len(), "the leaf is one of the leaves");
    let mut path = Vec::new();
    while level.len() > 1 {
        if index % 2 == 1 {
            path.push(ProofStep {
                side: Side::Left,
                hash: level[index - 1],
            });
        } else if index + 1 < level.len() {
            path.push(ProofStep {
                side: Side::Right,
                hash: level[index + 1],
            });
        }
        level = next_level(&level);
        index /= 2;
    }
    path
}

/// The leaf of one stream.
pub fn leaf(name: &str, version: u64, head: &EventHash) -> EventHash {
    let mut digest = Sha256::new();
    digest.update([0u8]);
    for field in [name, &version.to_string(), &head.to_hex()] {
        let length = u32::try_from(field.len()).expect("a stream name is shorter than 4 GiB");
        digest.update(length.to_be_bytes());
        digest.update(field.as_bytes());
    }
    EventHash(digest.finalize().into())
}

/// The root over `leaves` in their order (see the module's documentation).
pub fn merkle_root(mut level: Vec<EventHash>) -> EventHash {
    if level.is_empty() {
        return EventHash::GENESIS;
    }
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

/// The level above `level`: pairs hashed left to right, an odd last node carried up.
fn next_level(level: &[EventHash]) -> Vec<EventHash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => parent(left, right),
            [alone] => *alone,
            _ => unreachable!("chunks of two"),
        })
        .collect()
}

/// An inner node: `SHA-256(0x01 ‖ left ‖ right)`.
fn parent(left: &EventHash, right: &EventHash) -> EventHash {
    let mut digest = Sha256::new();
    digest.update([1u8]);
    digest.update(left.as_bytes());
    digest.update(right.as_bytes());
    EventHash(digest.finalize().into())
}

/// Read the log from its start to `up_to` (inclusive; to its end when `None`) and fold every
/// event into the streams' heads.
pub async fn heads_up_to<S: EventStore + ?Sized>(
    store: &S,
    up_to: Option<Position>,
) -> Result<LogHeads, StoreError> {
    let mut heads = LogHeads::default();
    let mut after = None;
    loop {
        let page = store.read_all(after, READ_EVENTS_MAX).await?;
        for recorded in &page {
            if up_to.is_some_and(|up_to| recorded.position > up_to) {
                return Ok(heads);
            }
            heads.add(recorded);
        }
        match page.last() {
            Some(last) if page.len() as u64 == READ_EVENTS_MAX => after = Some(last.position),
            _ => return Ok(heads),
        }
    }
}

/// Take an anchor of the log as it is now, at its head position.
pub async fn take_anchor<S: EventStore + ?Sized>(
    store: &S,
    now: DateTime<Utc>,
) -> Result<Anchor, StoreError> {
    let log_position = store.head_position().await?;
    let heads = heads_at(store, log_position).await?;
    Ok(heads.anchor(log_position, now))
}

/// The heads of the log at `log_position` (none for the empty log).
async fn heads_at<S: EventStore + ?Sized>(
    store: &S,
    log_position: Option<Position>,
) -> Result<LogHeads, StoreError> {
    match log_position {
        Some(position) => heads_up_to(store, Some(position)).await,
        None => Ok(LogHeads::default()),
    }
}

/// `stream`'s inclusion proof in the anchor of the log at `at` (at its head now when `None`):
/// `None` when the stream has no event at or before that position. An auditor who kept an
/// anchor asks at its position, so that the proof leads to the root kept.
pub async fn prove_inclusion<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    at: Option<Position>,
    now: DateTime<Utc>,
) -> Result<Option<InclusionProof>, StoreError> {
    let log_position = match at {
        Some(position) => Some(position),
        None => store.head_position().await?,
    };
    let heads = heads_at(store, log_position).await?;
    let anchor = heads.anchor(log_position, now);
    Ok(heads.proof(stream, &anchor))
}

/// How the log compares with an anchor kept earlier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorCheck {
    pub anchor: Anchor,
    /// The root recomputed now from the events at or before the anchor's position.
    pub merkle_root: EventHash,
    pub streams: u64,
    pub events: u64,
}

impl AnchorCheck {
    /// True when the log at or before the anchor's position is what the anchor says.
    pub fn holds(&self) -> bool {
        self.merkle_root == self.anchor.merkle_root
            && self.streams == self.anchor.streams
            && self.events == self.anchor.events
    }
}

/// Recompute `anchor`'s root from the log as it is now.
pub async fn check_anchor<S: EventStore + ?Sized>(
    store: &S,
    anchor: &Anchor,
) -> Result<AnchorCheck, StoreError> {
    let heads = heads_at(store, anchor.log_position).await?;
    Ok(AnchorCheck {
        anchor: anchor.clone(),
        merkle_root: heads.merkle_root(),
        streams: heads.streams(),
        events: heads.events(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> EventHash {
        EventHash([byte; 32])
    }

    fn node(left: EventHash, right: EventHash) -> EventHash {
        let mut digest = Sha256::new();
        digest.update([1u8]);
        digest.update(left.as_bytes());
        digest.update(right.as_bytes());
        EventHash(digest.finalize().into())
    }

    #[test]
    fn the_root_pairs_leaves_and_carries_an_odd_one_up() {
        assert_eq!(merkle_root(Vec::new()), EventHash::GENESIS);
        assert_eq!(merkle_root(vec![hash(1)]), hash(1));
        let (a, b, c) = (hash(1), hash(2), hash(3));
        assert_eq!(merkle_root(vec![a, b, c]), node(node(a, b), c));
        assert_ne!(merkle_root(vec![a, b, c]), merkle_root(vec![b, a, c]));
    }

    #[test]
    fn every_leaf_has_a_path_to_the_root_of_trees_of_any_size() {
        for count in 1..=17u8 {
            let leaves: Vec<EventHash> = (0..count).map(hash).collect();
            let root = merkle_root(leaves.clone());
            for (index, leaf) in leaves.iter().enumerate() {
                let path = merkle_path(leaves.clone(), index);
                assert_eq!(
                    root_from_path(*leaf, &path),
                    root,
                    "{count} leaves, #{index}"
                );
                let mut wrong = path.clone();
                if let Some(step) = wrong.first_mut() {
                    step.side = match step.side {
                        Side::Left => Side::Right,
                        Side::Right => Side::Left,
                    };
                    assert_ne!(root_from_path(*leaf, &wrong), root);
                }
            }
        }
        // Three leaves: the third is carried up alone, so its path is one step.
        let (a, b, c) = (hash(1), hash(2), hash(3));
        assert_eq!(
            merkle_path(vec![a, b, c], 2),
            vec![ProofStep {
                side: Side::Left,
                hash: node(a, b)
            }]
        );
    }

    fn anchored(heads: &LogHeads) -> Anchor {
        heads.anchor(
            Some(Position {
                commit: 9,
                prepare: 1,
            }),
            Utc::now(),
        )
    }

    #[test]
    fn a_proof_checks_against_its_anchor_and_names_what_differs() {
        let mut heads = LogHeads::default();
        for (stream, version, head) in [("sku-A", 3, 1), ("sku-B", 0, 2), ("sku-C", 7, 3)] {
            heads.heads.insert(stream.to_owned(), (version, hash(head)));
        }
        let anchor = anchored(&heads);
        let proof = heads.proof("sku-B", &anchor).expect("sku-B is in the log");
        assert_eq!((proof.version, proof.head_hash), (0, hash(2)));
        assert_eq!(proof.check(&anchor), Ok(()));
        assert!(heads.proof("sku-Z", &anchor).is_none());

        let mut later = anchor.clone();
        later.log_position = None;
        assert!(matches!(
            proof.check(&later),
            Err(ProofMismatch::Position { .. })
        ));
        let mut claimed = proof.clone();
        claimed.version = 1;
        assert!(matches!(
            claimed.check(&anchor),
            Err(ProofMismatch::Leaf { .. })
        ));
        let mut edited = heads.clone();
        edited.heads.insert("sku-C".to_owned(), (7, hash(4)));
        let edited_anchor = anchored(&edited);
        assert!(matches!(
            proof.check(&edited_anchor),
            Err(ProofMismatch::Root { .. })
        ));
    }

    #[test]
    fn a_leaf_covers_name_version_and_head() {
        let head = hash(9);
        let mut digest = Sha256::new();
        digest.update([0u8]);
        digest.update(5u32.to_be_bytes());
        digest.update(b"sku-A");
        digest.update(2u32.to_be_bytes());
        digest.update(b"12");
        digest.update(64u32.to_be_bytes());
        digest.update(head.to_hex().as_bytes());
        assert_eq!(
            leaf("sku-A", 12, &head),
            EventHash(digest.finalize().into())
        );
        assert_ne!(leaf("sku-A", 12, &head), leaf("sku-A", 13, &head));
    }
}
