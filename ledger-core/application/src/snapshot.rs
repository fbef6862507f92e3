//! Snapshots of SKU aggregates, so that loading a SKU with a long stream reads one row and the
//! events after it instead of the whole stream.
//!
//! A snapshot is a cache, never a source of truth: it records the stream version, the id of
//! the event it was folded up to and that event's chain hash (what the next event chains to),
//! and a loader uses it only if the stream still holds that event, with that hash, at that
//! version (a store that was reset or replaced invalidates every snapshot by
//! itself). A snapshot written by another build of the code (`SNAPSHOT_FORMAT` differs) or one
//! that no longer decodes is ignored and the stream is replayed in full. Auditors never see
//! snapshots: `ledger-replay verify` and `history` fold the events themselves.

use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ledger_domain::{EventHash, SkuState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// A snapshot is taken once this many events were folded since the last one (or since the
/// stream's start). Loading then replays at most about this many events after the snapshot;
/// writing one costs a row of the SKU's state, in the background.
pub const SNAPSHOT_INTERVAL_EVENTS: u64 = 1_000;

/// The layout of the stored state; bump it when `SkuState` or the key window changes shape so
/// that older snapshots are ignored rather than misread.
pub const SNAPSHOT_FORMAT: i32 = 6;

/// A SKU's folded state at one version of its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub stream: String,
    /// The version of the last event folded into `state`.
    pub version: u64,
    /// The id of that event; the snapshot is only valid while the stream holds it there.
    pub last_event_id: Uuid,
    pub state: SkuState,
    /// The idempotency keys of the most recent events: (key, first version, last version).
    pub recent_keys: Vec<(String, u64, u64)>,
    /// Who holds each open reservation: (reservation id, principal).
    #[serde(default)]
    pub holders: Vec<(String, String)>,
    /// The hash of the event at `version`: what the next event chains to. A loader also
    /// checks it against that event as stored.
    pub head_hash: EventHash,
    /// When the event at `version` was recorded.
    pub head_recorded_at: DateTime<Utc>,
}

#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// The latest snapshot of `stream`, if any usable one is stored.
    async fn load(&self, stream: &str) -> Result<Option<Snapshot>, StoreError>;

    /// Store `snapshot` unless a newer one of the same stream is already stored.
    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Forget the snapshot of `stream` (a loader found it does not match the stream).
    async fn discard(&self, stream: &str) -> Result<(), StoreError>;
}

/// Snapshots in memory, for tests and in-memory deployments.
#[derive(Default, Clone)]
pub struct MemorySnapshots {
    inner: Arc<Mutex<HashMap<String, Snapshot>>>,
}

impl MemorySnapshots {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace a stored snapshot outright (tests use it to plant stale or foreign snapshots).
    pub fn put(&self, snapshot: Snapshot) {
        self.inner
            .lock()
            .expect("snapshot map lock")
            .insert(snapshot.stream.clone(), snapshot);
    }
}

#[async_trait]
impl SnapshotStore for MemorySnapshots {
    async fn load(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self
            .inner
            .lock()
            .expect("snapshot map lock")
            .get(stream)
            .cloned())
    }

    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("snapshot map lock");
        let newer = inner
            .get(&snapshot.stream)
            .is_some_and(|stored| stored.version >= snapshot.version);
        if !newer {
            inner.insert(snapshot.stream.clone(), snapshot.clone());
        }
        Ok(())
    }

    async fn discard(&self, stream: &str) -> Result<(), StoreError> {
        self.inner.lock().expect("snapshot map lock").remove(stream);
        Ok(())
    }
}
