//! The event store port, and the in-memory adapter that tests and the decision loop's
//! properties run on. The PostgreSQL and EventStoreDB adapters live in their own crates.
//!
//! The port is deliberately small: append with an expected version, read one stream forwards,
//! read the store-wide log from a position, and follow that log (catch up, then live). Every
//! adapter passes the same contract suite (`ledger-tests`), so code above the port cannot tell
//! which store it runs on.

pub mod answers;
pub mod memory;
pub mod subscription;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use ledger_domain::envelope::{NewEvent, Position, RecordedEvent};
use std::fmt;
use std::sync::Arc;

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
    /// The outcome of an append is not known: the connection was lost (or overran its
    /// deadline) after the commit was sent, and the store could not be asked afterwards
    /// whether it landed. A retry with the same idempotency key is safe (it is answered
    /// exactly once); an unkeyed command retried may apply twice.
    #[error("the outcome of the append is unknown: {message}")]
    OutcomeUnknown { message: String },
    /// The store cannot be reached now (connection refused or lost, pool exhausted, node not
    /// the leader): retry later. The PostgreSQL store reports an append this way only when it
    /// was not written (it says [`StoreError::OutcomeUnknown`] otherwise); other stores may
    /// not know.
    #[error("event store unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// The store answered with a failure this code does not expect (a query error, an answer
    /// of the wrong shape): an operator has to look; retrying rarely helps.
    #[error("event store failure: {message}")]
    Backend {
        message: String,
        #[source]
        source: Option<Cause>,
    },
}

impl StoreError {
    /// The store is unreachable because of `error`.
    pub fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable {
            message: error.to_string(),
            source: Some(Cause::new(error)),
        }
    }

    /// The store is unreachable, for a reason this code states itself.
    pub fn unavailable_because(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// The store failed with `error` while doing `context`.
    pub fn backend(
        context: impl fmt::Display,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            message: format!("{context}: {error}"),
            source: Some(Cause::new(error)),
        }
    }

    /// The store answered something this code cannot make sense of.
    pub fn backend_because(message: impl Into<String>) -> Self {
        Self::Backend {
            message: message.into(),
            source: None,
        }
    }
}

/// The error underneath a [`StoreError`], shared so that one failure can be reported to every
/// command of a batch (the error is cloned, the cause is not).
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// The underlying error as its own type, e.g. to read a database error's SQLSTATE.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

fn display_version(version: Option<u64>) -> String {
    version.map_or_else(|| "no stream".to_owned(), |v| format!("version {v}"))
}

pub type EventStream = BoxStream<'static, Result<RecordedEvent, StoreError>>;

/// The key an answer is kept under: whose key it is (see `CommandContext::scope`) and the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnswerKey {
    pub scope: String,
    pub key: String,
}

/// An answer to keep with an append (see [`crate::answer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnswer {
    pub key: AnswerKey,
    /// What the request was; a later request with the same key must match it.
    pub fingerprint: String,
    pub answer: serde_json::Value,
    /// Set the answer's position to that of the append's last event when it is written.
    pub positioned: bool,
}

/// The JSON path of a kept answer's position (see [`crate::answer`]), which the store fills in
/// when it appends (the position is known only then).
pub const ANSWER_POSITION_PATH: [&str; 2] = ["done", "position"];

/// Set a kept answer's position (for stores that fill it in outside SQL).
pub fn set_answer_position(answer: &mut serde_json::Value, position: Position) {
    if let Some(done) = answer.get_mut(ANSWER_POSITION_PATH[0]) {
        if let Some(object) = done.as_object_mut() {
            object.insert(
                ANSWER_POSITION_PATH[1].to_owned(),
                serde_json::to_value(position).expect("positions serialise"),
            );
        }
    }
}

/// An answer kept earlier.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub key: AnswerKey,
    pub fingerprint: String,
    pub answer: serde_json::Value,
}

/// What an append with answers did.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// The events (if any) and the answers were written; the result is `None` when there were
    /// no events (answers of refused commands).
    Written(Option<AppendResult>),
    /// Some keys already had answers: these. Nothing was written.
    AnsweredBefore(Vec<StoredAnswer>),
}

/// The events of the store-wide log past a position (see [`EventStore::backlog`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events counted, at most the bound asked for.
    pub events: u64,
    /// Whether counting stopped at the bound (there may be more).
    pub capped: bool,
    /// When the first of them was recorded.
    pub oldest_recorded_at: Option<DateTime<Utc>>,
}

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

    /// [`EventStore::append`] that also keeps `answers` for their keys, atomically with the
    /// events where the store can (PostgreSQL, memory; EventStoreDB keeps them beside, just
    /// after). `events` may be empty when `answers` is not (answers of refused commands). When
    /// any key already has an answer, nothing is written and those answers are returned.
    async fn append_answered(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        answers: Vec<NewAnswer>,
    ) -> Result<Appended, StoreError>;

    /// The answers kept for `keys` (those that have one).
    async fn kept_answers(&self, keys: &[AnswerKey]) -> Result<Vec<StoredAnswer>, StoreError>;

    /// What the store knows of its own write path: an error (saying why) when appends are
    /// failing or its writers keep failing, for readiness checks. Stores that know nothing
    /// beyond their answers to requests say it is fine.
    fn write_path_health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Forget the answers kept before `kept_before` (the retention window); returns how many.
    /// A retry after that is still recognised by its events' ids, but answered from the events
    /// rather than with its first answer.
    async fn forget_answers(&self, kept_before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The position of the last event readable in the store-wide log, `None` when empty.
    async fn head_position(&self) -> Result<Option<Position>, StoreError>;

    /// How far the store-wide log runs past `after`, counted up to `count_max` events (the
    /// status of a follower that is behind). This default reads the events; a store that can
    /// count without reading them says so in one query.
    async fn backlog(
        &self,
        after: Option<Position>,
        count_max: u64,
    ) -> Result<Backlog, StoreError> {
        let mut backlog = Backlog::default();
        let mut cursor = after;
        loop {
            // One event past the bound tells whether there are more.
            let wanted = (count_max + 1 - backlog.events).min(READ_EVENTS_MAX);
            let page = self.read_all(cursor, wanted).await?;
            let Some(last) = page.last() else {
                return Ok(backlog);
            };
            if backlog.oldest_recorded_at.is_none() {
                backlog.oldest_recorded_at = page.first().map(|e| e.recorded_at);
            }
            backlog.events += page.len() as u64;
            if backlog.events > count_max {
                backlog.events = count_max;
                backlog.capped = true;
                return Ok(backlog);
            }
            if (page.len() as u64) < wanted {
                return Ok(backlog);
            }
            cursor = Some(last.position);
        }
    }

    /// Follow the store-wide log strictly after `after`: everything already stored, then each
    /// new event as it becomes readable. Never ends on its own; a transient failure is yielded
    /// as an error item and the follower retries after a pause.
    fn subscribe_all(&self, after: Option<Position>) -> EventStream;
}

/// Checks shared by every adapter before an append with answers touches storage: events may
/// be missing when answers are given.
pub fn check_answered_append(events: &[NewEvent], answers: &[NewAnswer]) -> Result<(), StoreError> {
    if events.is_empty() && !answers.is_empty() {
        return Ok(());
    }
    check_append(events)
}

/// Checks shared by every adapter before an append touches storage.
pub fn check_append(events: &[NewEvent]) -> Result<(), StoreError> {
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

pub fn clamp_read_count(max_count: u64) -> u64 {
    max_count.clamp(1, READ_EVENTS_MAX)
}
