//! Answers kept apart from the events, for event stores that cannot keep them in the same
//! transaction (EventStoreDB): the book is written just after the append. The gap is explicit:
//! a crash between the two loses the kept answer, and a retry is then recognised by its events'
//! ids and answered from the events instead of with its first answer.

use super::{AnswerKey, StoreError, StoredAnswer};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where answers are kept when the event store does not keep them itself.
#[async_trait]
pub trait AnswerBook: Send + Sync + 'static {
    /// The answers kept for `keys` (those that have one).
    async fn find(&self, keys: &[AnswerKey]) -> Result<Vec<StoredAnswer>, StoreError>;

    /// Keep `answers`; a key that already has an answer keeps its first one.
    async fn keep(&self, answers: Vec<StoredAnswer>) -> Result<(), StoreError>;

    /// Forget the answers kept before `kept_before`; returns how many.
    async fn forget_before(&self, kept_before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Kept answers by key, with when each was kept.
type Kept = HashMap<AnswerKey, (StoredAnswer, DateTime<Utc>)>;

/// Answers in memory: for tests, and for tools that keep nothing.
#[derive(Default, Clone)]
pub struct MemoryAnswers {
    inner: Arc<Mutex<Kept>>,
}

impl MemoryAnswers {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn find_now(&self, keys: &[AnswerKey]) -> Vec<StoredAnswer> {
        let inner = self.inner.lock().expect("answers lock");
        keys.iter()
            .filter_map(|key| inner.get(key).map(|(answer, _)| answer.clone()))
            .collect()
    }

    pub(crate) fn keep_now(&self, answers: Vec<StoredAnswer>) {
        let mut inner = self.inner.lock().expect("answers lock");
        let now = Utc::now();
        for answer in answers {
            inner.entry(answer.key.clone()).or_insert((answer, now));
        }
    }
}

#[async_trait]
impl AnswerBook for MemoryAnswers {
    async fn find(&self, keys: &[AnswerKey]) -> Result<Vec<StoredAnswer>, StoreError> {
        Ok(self.find_now(keys))
    }

    async fn keep(&self, answers: Vec<StoredAnswer>) -> Result<(), StoreError> {
        self.keep_now(answers);
        Ok(())
    }

    async fn forget_before(&self, kept_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut inner = self.inner.lock().expect("answers lock");
        let before = inner.len();
        inner.retain(|_, (_, kept_at)| *kept_at >= kept_before);
        Ok((before - inner.len()) as u64)
    }
}
