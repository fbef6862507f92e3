//! Loading SKUs for decisions: from the latest valid snapshot and the events after it, or from
//! the whole stream; and saving snapshots as streams grow. Carrying a command out is the
//! decision loop's work ([`CommandHandler::execute`] is defined there).

use crate::command::{decode, Clock, CommandError, CommandOutcome, SystemClock, VersionedEvent};
use crate::loaded::LoadedSku;
use crate::snapshot::{Snapshot, SnapshotStore, SNAPSHOT_INTERVAL_EVENTS};
use crate::store::{EventStore, READ_EVENTS_MAX};
use chrono::{DateTime, Utc};
use ledger_domain::envelope::Position;
use ledger_domain::{Sku, SkuSummary};
use std::sync::Arc;

pub struct CommandHandler<S: ?Sized> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    snapshot_interval: u64,
}

impl<S: ?Sized> Clone for CommandHandler<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            clock: self.clock.clone(),
            snapshots: self.snapshots.clone(),
            snapshot_interval: self.snapshot_interval,
        }
    }
}

impl<S: EventStore + ?Sized> CommandHandler<S> {
    pub fn new(store: Arc<S>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    pub fn with_clock(store: Arc<S>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            snapshots: None,
            snapshot_interval: SNAPSHOT_INTERVAL_EVENTS,
        }
    }

    /// Load SKUs from snapshots plus the events after them, and take a snapshot whenever
    /// [`SNAPSHOT_INTERVAL_EVENTS`] events were folded since the last one.
    pub fn with_snapshots(mut self, snapshots: Arc<dyn SnapshotStore>) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    /// Take snapshots every `events` events instead of [`SNAPSHOT_INTERVAL_EVENTS`] (tests use
    /// small intervals to exercise many snapshots in short histories).
    pub fn with_snapshot_interval(mut self, events: u64) -> Self {
        self.snapshot_interval = events.max(1);
        self
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Rebuild a SKU: from its latest valid snapshot and the events after it when snapshots
    /// are configured, otherwise from its whole stream, page by page.
    #[tracing::instrument(name = "handler.load", skip_all, fields(sku = %sku))]
    pub async fn load(&self, sku: &Sku) -> Result<LoadedSku, CommandError> {
        if let Some(loaded) = self.load_from_snapshot(sku).await? {
            return Ok(loaded);
        }
        self.replay(sku).await
    }

    /// Rebuild a SKU from its whole stream, ignoring snapshots (what auditors' tools and the
    /// snapshot property tests compare against).
    pub async fn replay(&self, sku: &Sku) -> Result<LoadedSku, CommandError> {
        let mut loaded = LoadedSku::empty(sku);
        self.catch_up(&mut loaded).await?;
        self.check_loaded(&loaded)?;
        self.maybe_snapshot(&mut loaded);
        Ok(loaded)
    }

    /// Fold the events appended after `loaded` (by anyone); returns how many there were.
    pub async fn refresh(&self, loaded: &mut LoadedSku) -> Result<u64, CommandError> {
        let folded = self.catch_up(loaded).await?;
        if folded > 0 {
            self.check_loaded(loaded)?;
            self.maybe_snapshot(loaded);
        }
        Ok(folded)
    }

    async fn catch_up(&self, loaded: &mut LoadedSku) -> Result<u64, CommandError> {
        let stream = loaded.state.sku.stream();
        let mut folded = 0;
        loop {
            let from = loaded.state.version.map_or(0, |v| v + 1);
            let page = self
                .store
                .read_stream(&stream, from, READ_EVENTS_MAX)
                .await?;
            for recorded in &page {
                loaded.fold(&stream, recorded)?;
            }
            folded += page.len() as u64;
            if (page.len() as u64) < READ_EVENTS_MAX {
                return Ok(folded);
            }
        }
    }

    /// Stored events are facts, but a foreign writer or a damaged store could still hold a
    /// history no sequence of decisions produces; refuse to decide on it.
    fn check_loaded(&self, loaded: &LoadedSku) -> Result<(), CommandError> {
        loaded
            .state
            .check_invariants()
            .map_err(|broken| CommandError::CorruptStream {
                stream: loaded.state.sku.stream(),
                message: format!("the folded state breaks an invariant: {broken}"),
            })
    }

    /// The SKU from its snapshot and the events after it; `None` when there is no snapshot
    /// store, no snapshot, or the snapshot does not match the stream (then it is discarded).
    async fn load_from_snapshot(&self, sku: &Sku) -> Result<Option<LoadedSku>, CommandError> {
        let Some(snapshots) = &self.snapshots else {
            return Ok(None);
        };
        let stream = sku.stream();
        let snapshot = match snapshots.load(&stream).await {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return Ok(None),
            Err(error) => {
                // Snapshots only make loading faster; without them commands still work.
                tracing::warn!(%error, %stream, "snapshot unavailable; replaying the stream");
                return Ok(None);
            }
        };
        // Read from the snapshot's own version: the first event must be the one it was
        // anchored to, or the stream is not the one the snapshot was taken from.
        let page = self
            .store
            .read_stream(&stream, snapshot.version, READ_EVENTS_MAX)
            .await?;
        let anchored = page.first().is_some_and(|first| {
            first.version == snapshot.version
                && first.event_id == snapshot.last_event_id
                && first.hash.is_none_or(|hash| hash == snapshot.head_hash)
        }) && snapshot.state.sku == *sku
            && snapshot.state.version == Some(snapshot.version);
        if !anchored {
            tracing::warn!(%stream, version = snapshot.version, "snapshot does not match the stream; discarding it");
            if let Err(error) = snapshots.discard(&stream).await {
                tracing::warn!(%error, %stream, "could not discard a stale snapshot");
            }
            return Ok(None);
        }
        let mut loaded = LoadedSku::new(snapshot.state);
        loaded.last_event_id = Some(snapshot.last_event_id);
        loaded.head_hash = snapshot.head_hash;
        loaded.head_recorded_at = Some(snapshot.head_recorded_at);
        loaded.snapshot_version = Some(snapshot.version);
        for (key, first, last) in snapshot.recent_keys {
            loaded.keys.restore(key, first, last);
        }
        loaded.holders = snapshot.holders.into_iter().collect();
        for recorded in &page[1..] {
            loaded.fold(&stream, recorded)?;
        }
        if page.len() as u64 == READ_EVENTS_MAX {
            self.catch_up(&mut loaded).await?;
        }
        self.check_loaded(&loaded)?;
        self.maybe_snapshot(&mut loaded);
        Ok(Some(loaded))
    }

    /// Save a snapshot in the background when enough events were folded since the last one.
    pub fn maybe_snapshot(&self, loaded: &mut LoadedSku) {
        let (Some(snapshots), Some(version), Some(last_event_id), Some(head_recorded_at)) = (
            &self.snapshots,
            loaded.state.version,
            loaded.last_event_id,
            loaded.head_recorded_at,
        ) else {
            return;
        };
        let since = loaded
            .snapshot_version
            .map_or(version + 1, |taken| version - taken);
        if since < self.snapshot_interval {
            return;
        }
        loaded.snapshot_version = Some(version);
        let snapshot = Snapshot {
            stream: loaded.state.sku.stream(),
            version,
            last_event_id,
            state: loaded.state.clone(),
            recent_keys: loaded.keys.entries(),
            holders: loaded.holders(),
            head_hash: loaded.head_hash,
            head_recorded_at,
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            if let Err(error) = snapshots.save(&snapshot).await {
                tracing::warn!(%error, stream = %snapshot.stream, "could not save a snapshot");
            }
        });
    }

    /// What the command that produced versions `first..=last` answered, for a recognised
    /// retry; `state` is the SKU's balances now.
    pub async fn original_outcome(
        &self,
        state: SkuSummary,
        first: u64,
        last: u64,
    ) -> Result<CommandOutcome, CommandError> {
        let stream = state.sku.stream();
        let recorded = self
            .store
            .read_stream(&stream, first, last - first + 1)
            .await?;
        // A stream read may not know the log position (old EventStoreDB servers): the
        // answer then says none rather than one no projector will ever reach.
        let position = recorded
            .last()
            .map(|r| r.position)
            .filter(Position::is_known);
        let events = recorded
            .iter()
            .map(|r| {
                Ok(VersionedEvent {
                    version: r.version,
                    event: decode(&stream, r)?,
                })
            })
            .collect::<Result<_, CommandError>>()?;
        Ok(CommandOutcome {
            state,
            events,
            position,
            deduplicated: true,
        })
    }
}
