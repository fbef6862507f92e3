//! In-memory event store with the same semantics as the durable adapters, for unit and
//! property tests and for tools that replay a history without a database.

use super::{
    check_answered_append, check_append, clamp_read_count, set_answer_position, subscription,
    AnswerKey, AppendResult, Appended, EventStore, EventStream, ExpectedVersion, NewAnswer,
    StoreError, StoredAnswer,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ledger_domain::envelope::{NewEvent, Position, RecordedEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    /// Bumped after every append so followers wake at once instead of waiting to poll.
    appended: Arc<watch::Sender<u64>>,
}

#[derive(Default)]
struct Inner {
    /// The store-wide log; an event's index is its position's sequence number minus one.
    log: Vec<RecordedEvent>,
    /// Each stream's events, as indexes into `log`, in version order.
    streams: HashMap<String, Vec<usize>>,
    /// Every stored event id, as an index into `log`, to recognise retried appends.
    ids: HashMap<Uuid, usize>,
    /// Kept answers by key, with when they were kept.
    answers: HashMap<AnswerKey, (StoredAnswer, DateTime<Utc>)>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            appended: Arc::new(watch::channel(0).0),
        }
    }

    fn position_of(index: usize) -> Position {
        let sequence = index as u64 + 1;
        Position {
            commit: sequence,
            prepare: sequence,
        }
    }
}

impl Inner {
    /// The original result if every event id was stored by one earlier append to `stream`,
    /// `None` if none was, and an error if the ids only partly match.
    fn find_retry(
        &self,
        stream: &str,
        events: &[NewEvent],
    ) -> Result<Option<AppendResult>, StoreError> {
        let found: Vec<Option<&RecordedEvent>> = events
            .iter()
            .map(|e| self.ids.get(&e.event_id).map(|&i| &self.log[i]))
            .collect();
        if found.iter().all(Option::is_none) {
            return Ok(None);
        }
        let first = found[0].filter(|e| e.stream == stream);
        let consistent = first.is_some_and(|first| {
            found.iter().enumerate().all(|(offset, e)| {
                e.is_some_and(|e| e.stream == stream && e.version == first.version + offset as u64)
            })
        });
        if !consistent {
            let event_id = events
                .iter()
                .zip(&found)
                .find(|(_, f)| f.is_some())
                .map(|(e, _)| e.event_id)
                .expect("at least one id was found");
            return Err(StoreError::IdempotencyMismatch {
                stream: stream.to_owned(),
                event_id,
            });
        }
        let last = found.last().copied().flatten().expect("all ids were found");
        Ok(Some(AppendResult {
            version: last.version,
            position: last.position,
            deduplicated: true,
        }))
    }
}

impl Inner {
    /// Append `events` to `stream` if its version matches `expected`.
    fn append(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        if let Some(original) = self.find_retry(stream, &events)? {
            return Ok(original);
        }
        let current = self
            .streams
            .get(stream)
            .map(|indexes| indexes.len() as u64 - 1);
        let matches = match expected {
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::Exact(v) => current == Some(v),
            ExpectedVersion::Any => true,
            ExpectedVersion::StreamExists => current.is_some(),
        };
        if !matches {
            return Err(StoreError::WrongExpectedVersion {
                stream: stream.to_owned(),
                expected,
                actual: current,
            });
        }
        let mut version = current.map_or(0, |v| v + 1);
        let mut position = Position {
            commit: 0,
            prepare: 0,
        };
        for event in events {
            let index = self.log.len();
            position = MemoryStore::position_of(index);
            self.log.push(RecordedEvent {
                event_id: event.event_id,
                stream: stream.to_owned(),
                version,
                position,
                event_type: event.event_type,
                schema_version: event.schema_version,
                data: event.data,
                metadata: event.metadata,
                recorded_at: event.recorded_at,
                hash: Some(event.hash),
            });
            self.streams
                .entry(stream.to_owned())
                .or_default()
                .push(index);
            self.ids.insert(event.event_id, index);
            version += 1;
        }
        Ok(AppendResult {
            version: version - 1,
            position,
            deduplicated: false,
        })
    }

    fn answered_before(&self, answers: &[NewAnswer]) -> Vec<StoredAnswer> {
        answers
            .iter()
            .filter_map(|answer| self.answers.get(&answer.key).map(|(kept, _)| kept.clone()))
            .collect()
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        check_append(&events)?;
        let result = self
            .inner
            .lock()
            .expect("memory store lock poisoned")
            .append(stream, expected, events)?;
        self.appended.send_modify(|count| *count += 1);
        Ok(result)
    }

    async fn append_answered(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        answers: Vec<NewAnswer>,
    ) -> Result<Appended, StoreError> {
        check_answered_append(&events, &answers)?;
        let mut inner = self.inner.lock().expect("memory store lock poisoned");
        let before = inner.answered_before(&answers);
        if !before.is_empty() {
            return Ok(Appended::AnsweredBefore(before));
        }
        let result = if events.is_empty() {
            None
        } else {
            Some(inner.append(stream, expected, events)?)
        };
        let now = Utc::now();
        for mut answer in answers {
            if let (true, Some(result)) = (answer.positioned, result) {
                set_answer_position(&mut answer.answer, result.position);
            }
            let kept = StoredAnswer {
                key: answer.key.clone(),
                fingerprint: answer.fingerprint,
                answer: answer.answer,
            };
            inner.answers.insert(answer.key, (kept, now));
        }
        drop(inner);
        if result.is_some() {
            self.appended.send_modify(|count| *count += 1);
        }
        Ok(Appended::Written(result))
    }

    async fn kept_answers(&self, keys: &[AnswerKey]) -> Result<Vec<StoredAnswer>, StoreError> {
        let inner = self.inner.lock().expect("memory store lock poisoned");
        Ok(keys
            .iter()
            .filter_map(|key| inner.answers.get(key).map(|(kept, _)| kept.clone()))
            .collect())
    }

    async fn forget_answers(&self, kept_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut inner = self.inner.lock().expect("memory store lock poisoned");
        let before = inner.answers.len();
        inner
            .answers
            .retain(|_, (_, kept_at)| *kept_at >= kept_before);
        Ok((before - inner.answers.len()) as u64)
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = self.inner.lock().expect("memory store lock poisoned");
        let Some(indexes) = inner.streams.get(stream) else {
            return Ok(Vec::new());
        };
        Ok(indexes
            .iter()
            .skip(from_version.min(indexes.len() as u64) as usize)
            .take(clamp_read_count(max_count) as usize)
            .map(|&i| inner.log[i].clone())
            .collect())
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = self.inner.lock().expect("memory store lock poisoned");
        let start = after.map_or(0, |p| inner.log.partition_point(|e| e.position <= p));
        Ok(inner.log[start..]
            .iter()
            .take(clamp_read_count(max_count) as usize)
            .cloned()
            .collect())
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        let inner = self.inner.lock().expect("memory store lock poisoned");
        Ok(inner.log.last().map(|e| e.position))
    }

    fn subscribe_all(&self, after: Option<Position>) -> EventStream {
        subscription::follow(
            self.clone(),
            after,
            self.appended.subscribe(),
            std::time::Duration::ZERO,
        )
    }
}
