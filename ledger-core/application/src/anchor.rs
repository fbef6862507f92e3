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
        merkle_root(
            self.heads
                .iter()
                .map(|(name, (version, hash))| leaf(name, *version, hash))
                .collect(),
        )
    }
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
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut digest = Sha256::new();
                    digest.update([1u8]);
                    digest.update(left.as_bytes());
                    digest.update(right.as_bytes());
                    EventHash(digest.finalize().into())
                }
                [alone] => *alone,
                _ => unreachable!("chunks of two"),
            })
            .collect();
    }
    level[0]
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
    let heads = match log_position {
        Some(position) => heads_up_to(store, Some(position)).await?,
        None => LogHeads::default(),
    };
    Ok(Anchor {
        format: ANCHOR_FORMAT.to_owned(),
        log_position,
        taken_at: now,
        streams: heads.streams(),
        events: heads.events(),
        merkle_root: heads.merkle_root(),
    })
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
    let heads = match anchor.log_position {
        Some(position) => heads_up_to(store, Some(position)).await?,
        None => LogHeads::default(),
    };
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
