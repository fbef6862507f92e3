//! The event store port and its adapters.
//!
//! The port is deliberately small: append with an expected version, read one stream forwards,
//! read the store-wide log from a position, and follow that log (catch up, then live). Every
//! adapter passes the same contract suite (`ledger-tests`), so code above the port cannot tell
//! which store it runs on.

pub mod kurrent;
pub mod memory;
pub mod postgres;
mod subscription;

use crate::envelope::{NewEvent, Position, RecordedEvent};
use async_trait::async_trait;
use futures::stream::BoxStream;
use std::fmt;

pub use subscription::SUBSCRIPTION_POLL_INTERVAL_MS;

/// Most events one append may carry. A command produces one or two; a group commit batches a
/// few hundred. The bound keeps one append within one short transaction and one gRPC message.
pub const APPEND_EVENTS_MAX: usize = 4096;

/// Most events one read may return. Readers page through longer streams and logs, so memory
/// stays bounded whatever the history's length.
pub const READ_EVENTS_MAX: u64 = 4096;

/// What the appender believes the stream's version is. Mirrors EventStoreDB's stream states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
    /// No check.
    Any,
    /// The stream must exist, at any version.
    StreamExists,
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
            Self::Any => f.write_str("any version"),
            Self::StreamExists => f.write_str("an existing stream"),
        }
    }
}

/// The outcome of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's version after the append: the version of its last event.
    pub version: u64,
    /// The position of the last event appended.
    pub position: Position,
    /// True when these event ids were already stored by an earlier append: nothing new was
    /// written, and `version` and `position` are the original ones.
    pub deduplicated: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream}: expected {expected}, but the stream is at {}", display_version(*.actual))]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        /// The stream's version when the append was refused; `None` when it does not exist.
        actual: Option<u64>,
    },
    #[error(
        "stream {stream}: event {event_id} was already stored by a different append; \
         an idempotency key must not be reused for a different command"
    )]
    IdempotencyMismatch {
        stream: String,
        event_id: uuid::Uuid,
    },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("event store did not answer within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("event store failure: {0}")]
    Backend(String),
}

fn display_version(version: Option<u64>) -> String {
    version.map_or_else(|| "no stream".to_owned(), |v| format!("version {v}"))
}

pub type EventStream = BoxStream<'static, Result<RecordedEvent, StoreError>>;

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Append `events` to `stream` atomically if its version matches `expected`. Appending
    /// event ids that an earlier append already stored, to the same stream and in the same
    /// order, writes nothing and reports that append's result (`deduplicated`).
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Up to `max_count` (at most [`READ_EVENTS_MAX`]) events of `stream` in version order,
    /// starting at `from_version`. A stream that does not exist reads as empty.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `max_count` (at most [`READ_EVENTS_MAX`]) events of the store-wide log in position
    /// order, strictly after `after` (from the beginning when `None`). Once an event has been
    /// returned, no event can later appear before it: readers may checkpoint any position seen.
    /// An appended event becomes readable here shortly after its append returns: at once in
    /// memory, and in Postgres once every transaction older than its own has ended.
    async fn read_all(
        &self,
        after: Option<Position>,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position of the last event readable in the store-wide log, `None` when empty.
    async fn head_position(&self) -> Result<Option<Position>, StoreError>;

    /// Follow the store-wide log strictly after `after`: everything already stored, then each
    /// new event as it becomes readable. Never ends on its own; a transient failure is yielded
    /// as an error item and the follower retries after a pause.
    fn subscribe_all(&self, after: Option<Position>) -> EventStream;
}

/// Checks shared by every adapter before an append touches storage.
pub(crate) fn check_append(events: &[NewEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::InvalidAppend(
            "an append needs at least one event".to_owned(),
        ));
    }
    if events.len() > APPEND_EVENTS_MAX {
        return Err(StoreError::InvalidAppend(format!(
            "{} events in one append; at most {APPEND_EVENTS_MAX} are allowed",
            events.len()
        )));
    }
    let mut ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(StoreError::InvalidAppend(format!(
            "event id {} appears twice in one append",
            pair[0]
        )));
    }
    Ok(())
}

pub(crate) fn clamp_read_count(max_count: u64) -> u64 {
    max_count.clamp(1, READ_EVENTS_MAX)
}
