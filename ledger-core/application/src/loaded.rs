//! A SKU as loaded from its stream: the folded state, and the idempotency keys its recent
//! events carry (so that a retried command gets its original answer).

use crate::chain::link_recorded;
use crate::command::{decode, CommandError};
use chrono::{DateTime, Utc};
use ledger_domain::envelope::{Metadata, NewEvent, RecordedEvent};
use ledger_domain::{EventHash, Sku, SkuEvent, SkuState};
use std::collections::{HashMap, VecDeque};

/// Idempotency keys remembered per loaded SKU. A retried command whose key is remembered gets
/// its original outcome even if deciding it again would now be refused (a second release of the
/// same reservation). Older keys are still caught by the store when the retried decision
/// produces events, since event ids derive from the key.
pub const IDEMPOTENCY_KEYS_PER_SKU_MAX: usize = 10_000;

/// A SKU as loaded from its stream, with the idempotency keys its recent events carry.
#[derive(Debug, Clone)]
pub struct LoadedSku {
    pub state: SkuState,
    pub(crate) keys: IdempotencyWindow,
    /// The id of the last event folded (what a snapshot taken now is anchored to).
    pub(crate) last_event_id: Option<uuid::Uuid>,
    /// The hash of the last event folded (the genesis hash before the first): what the next
    /// decided events chain to. Taken from the stored event, not recomputed, so a load costs
    /// no hashing; `ledger-replay verify` is what checks stored hashes.
    pub(crate) head_hash: EventHash,
    /// When the last event folded was recorded: the next events are never recorded before it.
    pub(crate) head_recorded_at: Option<DateTime<Utc>>,
    /// The version of the last snapshot this SKU was loaded from or saved at.
    pub(crate) snapshot_version: Option<u64>,
    /// Who holds each open reservation: the principal recorded on the event that made it.
    /// Only open reservations are kept, so this grows with the holds, not the history.
    pub(crate) holders: HashMap<String, String>,
}

impl LoadedSku {
    pub(crate) fn empty(sku: &Sku) -> Self {
        Self::new(SkuState::new(sku.clone()))
    }

    /// A SKU at `state`, remembering no idempotency keys (tests of the batch decision start
    /// from a given state this way).
    pub fn new(state: SkuState) -> Self {
        Self {
            state,
            keys: IdempotencyWindow::default(),
            last_event_id: None,
            head_hash: EventHash::GENESIS,
            head_recorded_at: None,
            snapshot_version: None,
            holders: HashMap::new(),
        }
    }

    /// The hash of the last event folded or appended (what the next event chains to).
    pub fn head_hash(&self) -> EventHash {
        self.head_hash
    }

    /// When the last event folded or appended was recorded.
    pub fn head_recorded_at(&self) -> Option<DateTime<Utc>> {
        self.head_recorded_at
    }

    /// The principal holding the open reservation `reservation_id`, when one is recorded.
    pub fn holder(&self, reservation_id: &str) -> Option<&str> {
        self.holders.get(reservation_id).map(String::as_str)
    }

    /// Every open reservation's holder (what a snapshot keeps).
    pub fn holders(&self) -> Vec<(String, String)> {
        let mut holders: Vec<(String, String)> = self
            .holders
            .iter()
            .map(|(id, holder)| (id.clone(), holder.clone()))
            .collect();
        holders.sort_unstable();
        holders
    }

    fn track_holder(&mut self, event: &SkuEvent, metadata: &Metadata) {
        match event {
            SkuEvent::Reserved(e) => {
                if let Some(principal) = &metadata.principal {
                    self.holders
                        .insert(e.reservation_id.clone(), principal.clone());
                }
            }
            SkuEvent::Released(e) => {
                self.holders.remove(&e.reservation_id);
            }
            SkuEvent::Expired(e) => {
                self.holders.remove(&e.reservation_id);
            }
            SkuEvent::Confirmed(e) => {
                self.holders.remove(&e.reservation_id);
            }
            _ => {}
        }
    }

    /// Every remembered idempotency key with the versions its command produced, oldest first.
    pub fn remembered_keys(&self) -> Vec<(String, u64, u64)> {
        self.keys.entries()
    }

    /// The versions the command with idempotency key `key` (scoped: see
    /// [`ledger_domain::scoped_key`]) produced, if it is remembered.
    pub fn remembered(&self, key: &str) -> Option<(u64, u64)> {
        self.keys.get(key)
    }

    /// Fold events this process has just appended (the single writer keeps its cache current
    /// without reading its own writes back).
    pub fn record_appended(&mut self, events: &[SkuEvent], new_events: &[NewEvent]) {
        for (event, new_event) in events.iter().zip(new_events) {
            self.state.apply(event);
            self.track_holder(event, &new_event.metadata);
            if let (Some(key), Some(version)) =
                (new_event.metadata.scoped_key(), self.state.version)
            {
                self.keys.record(&key, version);
            }
            self.last_event_id = Some(new_event.event_id);
            self.head_hash = new_event.hash;
            self.head_recorded_at = Some(new_event.recorded_at);
        }
    }

    pub(crate) fn fold(
        &mut self,
        stream: &str,
        recorded: &RecordedEvent,
    ) -> Result<(), CommandError> {
        let expected = self.state.version.map_or(0, |v| v + 1);
        if recorded.version != expected {
            return Err(CommandError::CorruptStream {
                stream: stream.to_owned(),
                message: format!(
                    "gap: expected version {expected}, read {}",
                    recorded.version
                ),
            });
        }
        let event = decode(stream, recorded)?;
        self.state.apply(&event);
        self.track_holder(&event, &recorded.metadata);
        if let Some(key) = recorded.metadata.scoped_key() {
            self.keys.record(&key, recorded.version);
        }
        self.last_event_id = Some(recorded.event_id);
        self.head_hash = recorded
            .hash
            .unwrap_or_else(|| link_recorded(&self.head_hash, recorded));
        self.head_recorded_at = Some(recorded.recorded_at);
        Ok(())
    }
}

/// The most recent idempotency keys of a stream and the versions each key's command produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdempotencyWindow {
    versions: HashMap<String, (u64, u64)>,
    order: VecDeque<String>,
}

impl IdempotencyWindow {
    fn record(&mut self, key: &str, version: u64) {
        if let Some(range) = self.versions.get_mut(key) {
            range.1 = version;
            return;
        }
        if self.order.len() == IDEMPOTENCY_KEYS_PER_SKU_MAX {
            let oldest = self.order.pop_front().expect("window is full");
            self.versions.remove(&oldest);
        }
        self.order.push_back(key.to_owned());
        self.versions.insert(key.to_owned(), (version, version));
    }

    fn get(&self, key: &str) -> Option<(u64, u64)> {
        self.versions.get(key).copied()
    }

    /// Oldest first, as `restore` expects them.
    pub(crate) fn entries(&self) -> Vec<(String, u64, u64)> {
        self.order
            .iter()
            .map(|key| {
                let (first, last) = self.versions[key];
                (key.clone(), first, last)
            })
            .collect()
    }

    pub(crate) fn restore(&mut self, key: String, first: u64, last: u64) {
        self.record(&key, first);
        if let Some(range) = self.versions.get_mut(&key) {
            range.1 = last;
        }
    }
}
