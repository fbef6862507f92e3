//! The vocabulary of carrying out a command: what the caller adds (who, why, which version it
//! saw), what it gets back, how it can fail, and how decided events are wrapped for the store.

use crate::store::StoreError;
use chrono::{DateTime, Utc};
use ledger_domain::envelope::{event_id_for, Metadata, NewEvent, Position, RecordedEvent};
use ledger_domain::{scoped_key, DomainError, EventHash, SkuEvent, SkuSummary};

/// Whose idempotency key a command carries. A client names keys in its principal's scope; the
/// system's workers (expiry) name theirs in the system scope, which no client can reach, so a
/// client can neither pre-empt nor replay another principal's or a worker's command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyScope {
    /// The acting principal's own keys.
    #[default]
    Principal,
    /// A system worker's keys.
    System,
}

/// Whose reservations a caller may end (release, confirm).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReservationRights {
    /// Any reservation: operators, administrators and the system's workers.
    #[default]
    Any,
    /// Only reservations the caller's principal made (a client).
    OwnOnly,
}

/// What a command's caller adds to the command: who acts, why, and which version they saw.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub principal: Option<String>,
    /// The caller's key that makes the command safe to retry.
    pub idempotency_key: Option<String>,
    /// Whose key `idempotency_key` is.
    pub key_scope: KeyScope,
    /// What the keyed request was (e.g. a digest of method, path and body). With it, the
    /// command's answer is kept for its key: a retry gets exactly that answer back, and the
    /// same key with another fingerprint is refused ([`CommandError::IdempotencyKeyReused`]).
    pub fingerprint: Option<String>,
    /// The version the caller based the command on (HTTP `If-Match`). `None`: decide against
    /// the latest state and retry on conflicts. `Some(v)`: decide only if the SKU is still at
    /// `v` (`Some(None)`: only if the SKU has no events yet), never retry.
    pub expected_version: Option<Option<u64>>,
    /// Whose reservations this caller may release or confirm; the holder of a reservation is
    /// the principal recorded on the event that made it.
    pub reservation_rights: ReservationRights,
    /// The W3C `traceparent` of the request (see [`Metadata::traceparent`]), recorded on the
    /// command's events.
    pub traceparent: Option<String>,
}

impl CommandContext {
    pub fn metadata(&self) -> Metadata {
        Metadata {
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            principal: self.principal.clone(),
            idempotency_key: self.idempotency_key.clone(),
            idempotency_scope: self.idempotency_key.as_ref().map(|_| self.scope()),
            traceparent: self.traceparent.clone(),
        }
    }

    /// The scope of this command's key: `principal:<name>` or `system:<name>`.
    pub fn scope(&self) -> String {
        let name = self.principal.as_deref().unwrap_or_default();
        match self.key_scope {
            KeyScope::Principal => format!("principal:{name}"),
            KeyScope::System => format!("system:{name}"),
        }
    }

    /// The key within its scope, as event ids and remembered keys use it.
    pub fn scoped_key(&self) -> Option<String> {
        let key = self.idempotency_key.as_deref()?;
        Some(scoped_key(&self.scope(), key))
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

#[derive(Debug, Clone, PartialEq)]
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

/// Why a command was not carried out. Each variant says what its caller should do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    /// A business rule refused the command; nothing was written. Tell the client why (the
    /// rejection carries the numbers it needs, such as the available quantity).
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// The caller asked for a version (`If-Match`) the SKU is no longer at; nothing was written.
    /// The client reads the SKU again and decides anew.
    #[error("the SKU is at {}, not at the expected {}", show(*.actual), show(*.expected))]
    VersionMismatch {
        expected: Option<u64>,
        actual: Option<u64>,
    },
    /// Other writers appended first every time; nothing was written. Safe to retry as is.
    #[error(
        "the SKU changed under this command {attempts} times in a row (heavy contention); \
         retry the request"
    )]
    ContentionRetriesExhausted { attempts: u32 },
    /// The stream holds something no sequence of decisions produces (a gap, an undecodable
    /// event, a fold that breaks an invariant, a store that disagrees with the fold). Nothing
    /// was decided; an operator has to look. Never retried.
    #[error("stream {stream} cannot be loaded: {message}")]
    CorruptStream { stream: String, message: String },
    /// The idempotency key was already used, in this principal's scope, for another request;
    /// nothing was done. The client must use a new key for a new request.
    #[error(
        "idempotency key {key:?} was already used for a different request; use a new key for a \
         new request"
    )]
    IdempotencyKeyReused { key: String },
    /// The event store failed; see [`StoreError`] for which failures are worth a retry.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn show(version: Option<u64>) -> String {
    version.map_or_else(
        || "no version (no events)".to_owned(),
        |v| format!("version {v}"),
    )
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

pub(crate) fn decode(stream: &str, recorded: &RecordedEvent) -> Result<SkuEvent, CommandError> {
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
/// metadata, and ids derived from the idempotency key when there is one. Not yet sealed: the
/// recorded time and the hash are set by [`crate::chain::seal`], which needs the stream's head.
pub fn encode_events(stream: &str, events: &[SkuEvent], context: &CommandContext) -> Vec<NewEvent> {
    let metadata = context.metadata();
    let scoped = context.scoped_key();
    events
        .iter()
        .enumerate()
        .map(|(index, event)| NewEvent {
            event_id: event_id_for(stream, scoped.as_deref(), index),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: event.encode(),
            metadata: metadata.clone(),
            recorded_at: DateTime::<Utc>::MIN_UTC,
            hash: EventHash::GENESIS,
        })
        .collect()
}
