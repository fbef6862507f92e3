//! The command handler: load a SKU from its stream, decide, append with the expected version,
//! and retry a bounded number of times when another writer got there first.
//!
//! Its steps are public on their own ([`CommandHandler::load`], [`encode_events`]) so that a
//! single writer per SKU can load once, decide a queue of commands with
//! [`SkuState::decide_sequence`], and append the accepted events as one batch.

use crate::domain::{DomainError, Sku, SkuCommand, SkuEvent, SkuState};
use crate::envelope::{event_id_for, Metadata, NewEvent, Position, RecordedEvent};
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
    /// The SKU's state after the command.
    pub state: SkuState,
    /// The events the command produced (or, for a recognised retry, originally produced).
    pub events: Vec<VersionedEvent>,
    /// The position of the last event appended; `None` when nothing was appended.
    pub position: Option<Position>,
    /// True when nothing new was written: a retry of an earlier command was recognised, or a
    /// reserve repeated an identical existing reservation.
    pub deduplicated: bool,
}

#[derive(Debug, thiserror::Error)]
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
}

pub struct CommandHandler<S: ?Sized> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
}

impl<S: ?Sized> Clone for CommandHandler<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<S: EventStore + ?Sized> CommandHandler<S> {
    pub fn new(store: Arc<S>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    pub fn with_clock(store: Arc<S>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Rebuild a SKU from its whole stream, page by page.
    #[tracing::instrument(name = "handler.load", skip_all, fields(sku = %sku))]
    pub async fn load(&self, sku: &Sku) -> Result<LoadedSku, CommandError> {
        let stream = sku.stream();
        let mut loaded = LoadedSku {
            state: SkuState::new(sku.clone()),
            keys: IdempotencyWindow::default(),
        };
        loop {
            let from = loaded.state.version.map_or(0, |v| v + 1);
            let page = self
                .store
                .read_stream(&stream, from, READ_EVENTS_MAX)
                .await?;
            let page_length = page.len() as u64;
            for recorded in &page {
                let expected = loaded.state.version.map_or(0, |v| v + 1);
                assert_eq!(
                    recorded.version, expected,
                    "stream {stream} has a gap: expected version {expected}, read {}",
                    recorded.version
                );
                let event = decode(&stream, recorded)?;
                loaded.state.apply(&event);
                if let Some(key) = &recorded.metadata.idempotency_key {
                    loaded.keys.record(key, recorded.version);
                }
            }
            if page_length < READ_EVENTS_MAX {
                // Stored events are facts, but a foreign writer or a damaged store could still
                // hold a history no sequence of decisions produces; refuse to decide on it.
                loaded
                    .state
                    .check_invariants()
                    .map_err(|broken| CommandError::CorruptStream {
                        stream: stream.clone(),
                        message: format!("the folded state breaks an invariant: {broken}"),
                    })?;
                return Ok(loaded);
            }
        }
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
                    return self.original_outcome(loaded.state, first, last).await;
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
                    state: loaded.state,
                    events: Vec::new(),
                    position: None,
                    deduplicated: true,
                });
            }
            let mut next = loaded.state.clone();
            for event in &decided {
                next.apply(event);
            }
            if let Err(broken) = next.check_invariants() {
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
                            reloaded.state,
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
                        state: next,
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

    async fn original_outcome(
        &self,
        state: SkuState,
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

fn versioned(first: u64, events: Vec<SkuEvent>) -> Vec<VersionedEvent> {
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
