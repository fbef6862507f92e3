//! The command handler: load a SKU from its stream, decide, append with the expected version,
//! and retry a bounded number of times when another writer got there first.
//!
//! Its steps are public on their own ([`CommandHandler::load`], [`encode_events`]) so that a
//! single writer per SKU can load once, decide a queue of commands with
//! [`SkuState::decide_sequence`], and append the accepted events as one batch.

use crate::domain::{DomainError, Sku, SkuCommand, SkuEvent, SkuState, SkuSummary};
use crate::envelope::{event_id_for, Metadata, NewEvent, Position, RecordedEvent};
use crate::snapshot::{Snapshot, SnapshotStore, SNAPSHOT_INTERVAL_EVENTS};
use crate::store::{EventStore, ExpectedVersion, StoreError, READ_EVENTS_MAX};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// How many times a command is decided again after losing a race to another writer of the same
/// SKU. Each loss means someone else's command succeeded, so a handful of retries keeps a busy
/// SKU moving; past that the caller gets a clear "try again" instead of an unbounded loop.
pub const COMMAND_CONFLICT_RETRIES_MAX: u32 = 8;

/// Upper bound of the random pause before a retry, multiplied by the attempt number. The jitter
/// spreads contending writers apart so they do not collide again in lockstep.
const CONFLICT_RETRY_JITTER_MS: u64 = 3;

/// Idempotency keys remembered per loaded SKU. A retried command whose key is remembered gets
/// its original outcome even if deciding it again would now be refused (a second release of the
/// same reservation). Older keys are still caught by the store when the retried decision
/// produces events, since event ids derive from the key.
pub const IDEMPOTENCY_KEYS_PER_SKU_MAX: usize = 10_000;

/// What a command's caller adds to the command: who acts, why, and which version they saw.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub principal: Option<String>,
    pub idempotency_key: Option<String>,
    /// The version the caller based the command on (HTTP `If-Match`). `None`: decide against
    /// the latest state and retry on conflicts. `Some(v)`: decide only if the SKU is still at
    /// `v` (`Some(None)`: only if the SKU has no events yet), never retry.
    pub expected_version: Option<Option<u64>>,
}

impl CommandContext {
    pub fn metadata(&self) -> Metadata {
        Metadata {
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            principal: self.principal.clone(),
            idempotency_key: self.idempotency_key.clone(),
        }
    }
}

/// The source of "now" for decisions (reservation expiry). Tests substitute a controllable one.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// One event with the version it has in its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedEvent {
    pub version: u64,
    pub event: SkuEvent,
}

#[derive(Debug, Clone)]
pub struct CommandOutcome {
    /// The SKU's balances after the command.
    pub state: SkuSummary,
    /// The events the command produced (or, for a recognised retry, originally produced).
    pub events: Vec<VersionedEvent>,
    /// The position of the last event appended; `None` when nothing was appended. Through a
    /// single writer ([`crate::writer`]) it is the position of the last event of the batch
    /// the command was appended in: at or after its own events, so waiting for a read model to
    /// pass it still shows the command's effect.
    pub position: Option<Position>,
    /// True when nothing new was written: a retry of an earlier command was recognised, or a
    /// reserve repeated an identical existing reservation.
    pub deduplicated: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] DomainError),
    #[error("the SKU is at {}, not at the expected {}", show(*.actual), show(*.expected))]
    VersionMismatch {
        expected: Option<u64>,
        actual: Option<u64>,
    },
    #[error(
        "the SKU changed under this command {attempts} times in a row (heavy contention); \
         retry the request"
    )]
    ContentionRetriesExhausted { attempts: u32 },
    #[error("stream {stream} cannot be loaded: {message}")]
    CorruptStream { stream: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn show(version: Option<u64>) -> String {
    version.map_or_else(
        || "no version (no events)".to_owned(),
        |v| format!("version {v}"),
    )
}

/// A SKU as loaded from its stream, with the idempotency keys its recent events carry.
#[derive(Debug, Clone)]
pub struct LoadedSku {
    pub state: SkuState,
    keys: IdempotencyWindow,
    /// The id of the last event folded (what a snapshot taken now is anchored to).
    last_event_id: Option<uuid::Uuid>,
    /// The version of the last snapshot this SKU was loaded from or saved at.
    snapshot_version: Option<u64>,
}

impl LoadedSku {
    fn empty(sku: &Sku) -> Self {
        Self {
            state: SkuState::new(sku.clone()),
            keys: IdempotencyWindow::default(),
            last_event_id: None,
            snapshot_version: None,
        }
    }

    /// Every remembered idempotency key with the versions its command produced, oldest first.
    pub fn remembered_keys(&self) -> Vec<(String, u64, u64)> {
        self.keys.entries()
    }

    /// The versions the command with idempotency key `key` produced, if it is remembered.
    pub fn remembered(&self, key: &str) -> Option<(u64, u64)> {
        self.keys.get(key)
    }

    /// Fold events this process has just appended (the single writer keeps its cache current
    /// without reading its own writes back).
    pub fn record_appended(&mut self, events: &[SkuEvent], new_events: &[NewEvent]) {
        for (event, new_event) in events.iter().zip(new_events) {
            self.state.apply(event);
            if let (Some(key), Some(version)) =
                (&new_event.metadata.idempotency_key, self.state.version)
            {
                self.keys.record(key, version);
            }
            self.last_event_id = Some(new_event.event_id);
        }
    }

    fn fold(&mut self, stream: &str, recorded: &RecordedEvent) -> Result<(), CommandError> {
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
        if let Some(key) = &recorded.metadata.idempotency_key {
            self.keys.record(key, recorded.version);
        }
        self.last_event_id = Some(recorded.event_id);
        Ok(())
    }
}

/// The most recent idempotency keys of a stream and the versions each key's command produced.
#[derive(Debug, Clone, Default)]
struct IdempotencyWindow {
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
    fn entries(&self) -> Vec<(String, u64, u64)> {
        self.order
            .iter()
            .map(|key| {
                let (first, last) = self.versions[key];
                (key.clone(), first, last)
            })
            .collect()
    }

    fn restore(&mut self, key: String, first: u64, last: u64) {
        self.record(&key, first);
        if let Some(range) = self.versions.get_mut(&key) {
            range.1 = last;
        }
    }
}

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
            first.version == snapshot.version && first.event_id == snapshot.last_event_id
        }) && snapshot.state.sku == *sku
            && snapshot.state.version == Some(snapshot.version);
        if !anchored {
            tracing::warn!(%stream, version = snapshot.version, "snapshot does not match the stream; discarding it");
            if let Err(error) = snapshots.discard(&stream).await {
                tracing::warn!(%error, %stream, "could not discard a stale snapshot");
            }
            return Ok(None);
        }
        let mut loaded = LoadedSku {
            state: snapshot.state,
            keys: IdempotencyWindow::default(),
            last_event_id: Some(snapshot.last_event_id),
            snapshot_version: Some(snapshot.version),
        };
        for (key, first, last) in snapshot.recent_keys {
            loaded.keys.restore(key, first, last);
        }
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
        let (Some(snapshots), Some(version), Some(last_event_id)) =
            (&self.snapshots, loaded.state.version, loaded.last_event_id)
        else {
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
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            if let Err(error) = snapshots.save(&snapshot).await {
                tracing::warn!(%error, stream = %snapshot.stream, "could not save a snapshot");
            }
        });
    }

    /// Carry out one command against the latest state of its SKU.
    #[tracing::instrument(
        name = "handler.execute",
        skip_all,
        fields(sku = %sku, command = command.name())
    )]
    pub async fn execute(
        &self,
        sku: &Sku,
        command: &SkuCommand,
        context: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let stream = sku.stream();
        for attempt in 0..=COMMAND_CONFLICT_RETRIES_MAX {
            if attempt > 0 {
                let jitter = rand::random_range(0..=CONFLICT_RETRY_JITTER_MS * u64::from(attempt));
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            let loaded = self.load(sku).await?;
            if let Some(key) = &context.idempotency_key {
                if let Some((first, last)) = loaded.keys.get(key) {
                    return self
                        .original_outcome(loaded.state.summary(), first, last)
                        .await;
                }
            }
            let current = loaded.state.version;
            if let Some(expected) = context.expected_version {
                if expected != current {
                    return Err(CommandError::VersionMismatch {
                        expected,
                        actual: current,
                    });
                }
            }
            let decided = loaded.state.decide(command, self.clock.now())?;
            if decided.is_empty() {
                return Ok(CommandOutcome {
                    state: loaded.state.summary(),
                    events: Vec::new(),
                    position: None,
                    deduplicated: true,
                });
            }
            let mut next = loaded.state.clone();
            for event in &decided {
                next.apply(event);
            }
            if let Err(broken) = next.check_balances() {
                panic!("decide produced a state that breaks an invariant for {sku}: {broken}");
            }
            let expected = current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            let new_events = encode_events(&stream, &decided, context);
            match self.store.append(&stream, expected, new_events).await {
                Ok(result) if result.deduplicated => {
                    // The store recognised the event ids: a retry of a command that is already
                    // stored, beyond the remembered keys. Report what is stored now.
                    let count = decided.len() as u64;
                    let reloaded = self.load(sku).await?;
                    return self
                        .original_outcome(
                            reloaded.state.summary(),
                            result.version + 1 - count,
                            result.version,
                        )
                        .await;
                }
                Ok(result) => {
                    assert_eq!(
                        Some(result.version),
                        next.version,
                        "the store's version after the append disagrees with the fold"
                    );
                    let first = current.map_or(0, |v| v + 1);
                    return Ok(CommandOutcome {
                        state: next.summary(),
                        events: versioned(first, decided),
                        position: Some(result.position),
                        deduplicated: false,
                    });
                }
                Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                    if context.expected_version.is_some() {
                        return Err(CommandError::VersionMismatch {
                            expected: current,
                            actual,
                        });
                    }
                    tracing::debug!(attempt, ?actual, "append lost a race; deciding again");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(CommandError::ContentionRetriesExhausted {
            attempts: COMMAND_CONFLICT_RETRIES_MAX + 1,
        })
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
        let position = recorded.last().map(|r| r.position);
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

pub fn versioned(first: u64, events: Vec<SkuEvent>) -> Vec<VersionedEvent> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| VersionedEvent {
            version: first + i as u64,
            event,
        })
        .collect()
}

fn decode(stream: &str, recorded: &RecordedEvent) -> Result<SkuEvent, CommandError> {
    SkuEvent::decode(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
    .map_err(|e| CommandError::CorruptStream {
        stream: stream.to_owned(),
        message: format!("event at version {}: {e}", recorded.version),
    })
}

/// Wrap decided events for the store: type, schema version, JSON payload, the context's
/// metadata, and ids derived from the idempotency key when there is one.
pub fn encode_events(stream: &str, events: &[SkuEvent], context: &CommandContext) -> Vec<NewEvent> {
    let metadata = context.metadata();
    events
        .iter()
        .enumerate()
        .map(|(index, event)| NewEvent {
            event_id: event_id_for(stream, context.idempotency_key.as_deref(), index),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: event.encode(),
            metadata: metadata.clone(),
        })
        .collect()
}
