//! Paging through a long history costs a read of the stream, not a replay per page: each page
//! resumes the balances fold where the last one ended, a cursor that does not match the stream
//! is ignored, and reading stops at `to`.

mod support;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ledger_application::command::CommandContext;
use ledger_application::handler::CommandHandler;
use ledger_application::history::{history, HistoryCursor, HistoryFilter, HistoryPage};
use ledger_application::store::memory::MemoryStore;
use ledger_application::store::{
    AnswerKey, AppendResult, Appended, EventStore, EventStream, ExpectedVersion, NewAnswer,
    StoreError, StoredAnswer, READ_EVENTS_MAX,
};
use ledger_application::writer::SkuWriters;
use ledger_domain::envelope::{NewEvent, Position, RecordedEvent};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use support::*;

/// Events in the test stream: more than two store reads, so paging crosses read boundaries.
const EVENTS: u64 = 9_000;
/// Entries per history page.
const PAGE: u64 = 250;

/// The memory store, counting the stream events it hands out.
struct CountingStore {
    inner: MemoryStore,
    events_read: AtomicU64,
}

impl CountingStore {
    fn take_count(&self) -> u64 {
        self.events_read.swap(0, Ordering::SeqCst)
    }
}

#[async_trait]
impl EventStore for CountingStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self
            .inner
            .read_stream(stream, from_version, max_count)
            .await?;
        self.events_read
            .fetch_add(events.len() as u64, Ordering::SeqCst);
        Ok(events)
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max_count).await
    }

    async fn append_answered(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        answers: Vec<NewAnswer>,
    ) -> Result<Appended, StoreError> {
        self.inner
            .append_answered(stream, expected, events, answers)
            .await
    }

    async fn kept_answers(&self, keys: &[AnswerKey]) -> Result<Vec<StoredAnswer>, StoreError> {
        self.inner.kept_answers(keys).await
    }

    async fn forget_answers(&self, kept_before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.forget_answers(kept_before).await
    }

    async fn head_position(&self) -> Result<Option<Position>, StoreError> {
        self.inner.head_position().await
    }

    fn subscribe_all(&self, after: Option<Position>) -> EventStream {
        self.inner.subscribe_all(after)
    }
}

/// A stream of [`EVENTS`] movements whose balances change all the time.
async fn long_stream() -> Arc<CountingStore> {
    let store = Arc::new(CountingStore {
        inner: MemoryStore::new(),
        events_read: AtomicU64::new(0),
    });
    let writers = SkuWriters::new(CommandHandler::new(store.clone()));
    let mut written = 0;
    let mut index = 0;
    while written < EVENTS {
        let command = match index % 3 {
            0 => replenish(5),
            1 => reserve(&format!("r-{index}"), 2),
            _ => release(&format!("r-{}", index - 1)),
        };
        writers
            .execute(&sku(), command, CommandContext::default())
            .await
            .unwrap();
        written += 1;
        index += 1;
    }
    store.take_count();
    store
}

fn page_filter(after_version: Option<u64>) -> HistoryFilter {
    HistoryFilter {
        after_version,
        limit: PAGE,
        ..HistoryFilter::default()
    }
}

/// Every page, following `next_after_version`, resuming from the last cursor when `resume`.
async fn all_pages(store: &CountingStore, resume: bool) -> Vec<HistoryPage> {
    let mut pages = Vec::new();
    let mut after_version = None;
    let mut cursor: Option<HistoryCursor> = None;
    loop {
        let page = history(
            store,
            &sku(),
            &page_filter(after_version),
            cursor.as_ref().filter(|_| resume),
        )
        .await
        .unwrap();
        after_version = page.next_after_version;
        cursor = page.next.clone();
        let last = after_version.is_none();
        pages.push(page);
        if last {
            return pages;
        }
    }
}

#[tokio::test]
async fn paging_with_cursors_reads_the_stream_about_once_and_agrees_with_replaying() {
    let store = long_stream().await;

    let replayed = all_pages(&store, false).await;
    let replay_reads = store.take_count();
    let resumed = all_pages(&store, true).await;
    let resume_reads = store.take_count();

    assert_eq!(replayed.len() as u64, EVENTS.div_ceil(PAGE));
    for (plain, fast) in replayed.iter().zip(&resumed) {
        assert_eq!(plain.entries, fast.entries);
        assert_eq!(plain.next_after_version, fast.next_after_version);
    }
    let last = resumed.last().unwrap().entries.last().unwrap();
    assert_eq!(last.version, EVENTS - 1);
    // One read of the stream, one anchor event and at most one read-ahead page per page.
    let pages = resumed.len() as u64;
    assert!(
        resume_reads <= EVENTS + pages * (1 + PAGE),
        "resumed paging read {resume_reads} events for a {EVENTS}-event stream"
    );
    // Replaying every page from the start reads the stream once per page (the old cost).
    assert!(
        replay_reads > EVENTS * pages / 3,
        "replaying read {replay_reads} events"
    );
}

#[tokio::test]
async fn a_cursor_that_does_not_match_the_stream_is_ignored() {
    let store = long_stream().await;
    let first = history(store.as_ref(), &sku(), &page_filter(None), None)
        .await
        .unwrap();
    let genuine = first.next.unwrap();
    let forged = HistoryCursor {
        event_id: uuid::Uuid::new_v4(),
        balances: ledger_domain::Balances {
            on_hand: 1,
            reserved: 1,
            reorder_point: 1,
            in_transit: 0,
        },
        ..genuine.clone()
    };
    let filter = page_filter(Some(genuine.version));
    let plain = history(store.as_ref(), &sku(), &filter, None)
        .await
        .unwrap();
    let with_forged = history(store.as_ref(), &sku(), &filter, Some(&forged))
        .await
        .unwrap();
    let with_genuine = history(store.as_ref(), &sku(), &filter, Some(&genuine))
        .await
        .unwrap();
    assert_eq!(plain.entries, with_forged.entries);
    assert_eq!(plain.entries, with_genuine.entries);
    // A cursor for another position than the page's is not used either.
    let elsewhere = history(
        store.as_ref(),
        &sku(),
        &page_filter(Some(genuine.version + 1)),
        Some(&forged),
    )
    .await
    .unwrap();
    assert_eq!(elsewhere.entries[0].version, genuine.version + 2);
    assert_eq!(elsewhere.entries[..PAGE as usize - 1], plain.entries[1..]);
}

#[tokio::test]
async fn reading_stops_at_to() {
    let store = long_stream().await;
    let head = store
        .read_stream(&sku().stream(), 10, 1)
        .await
        .unwrap()
        .remove(0);
    store.take_count();
    let filter = HistoryFilter {
        to: Some(head.recorded_at),
        limit: 1_000,
        ..HistoryFilter::default()
    };
    let page = history(store.as_ref(), &sku(), &filter, None)
        .await
        .unwrap();
    assert!(page.next_after_version.is_none());
    assert!(!page.entries.is_empty() && page.entries.len() <= 10);
    assert!(page
        .entries
        .iter()
        .all(|entry| entry.recorded_at < head.recorded_at));
    let reads = store.take_count();
    assert!(
        reads <= READ_EVENTS_MAX,
        "a history ending at the 10th event read {reads} of {EVENTS} events"
    );
}

#[tokio::test]
async fn a_page_of_one_location_shows_that_locations_balances_and_resumes_with_them() {
    use ledger_domain::{LocationId, Quantity, ReplenishStock, SkuCommand};
    let store = Arc::new(CountingStore {
        inner: MemoryStore::new(),
        events_read: AtomicU64::new(0),
    });
    let writers = SkuWriters::new(CommandHandler::new(store.clone()));
    for round in 0..30u64 {
        for (location, quantity) in [("store-12", 1), ("wh-1", 100)] {
            let command = SkuCommand::Replenish(ReplenishStock {
                quantity: Quantity::new(quantity + round).unwrap(),
                reference: None,
                location: LocationId::parse(location).unwrap(),
            });
            writers
                .execute(&sku(), command, CommandContext::default())
                .await
                .unwrap();
        }
    }
    let filter = |after_version| HistoryFilter {
        after_version,
        limit: 10,
        location: Some("store-12".into()),
        ..HistoryFilter::default()
    };
    let mut cursor: Option<HistoryCursor> = None;
    let mut after_version = None;
    let mut on_hand = 0;
    let mut seen = 0;
    loop {
        let page = history(
            store.as_ref(),
            &sku(),
            &filter(after_version),
            cursor.as_ref(),
        )
        .await
        .unwrap();
        for entry in &page.entries {
            assert_eq!(entry.location.as_deref(), Some("store-12"));
            on_hand += 1 + seen;
            seen += 1;
            assert_eq!(entry.on_hand_after, on_hand, "store-12's own balance");
        }
        // A cursor of another location (or of the whole SKU) is never used for this one.
        if let Some(next) = &page.next {
            let unfiltered = HistoryFilter {
                after_version: Some(next.version),
                limit: 1,
                ..HistoryFilter::default()
            };
            let whole = history(store.as_ref(), &sku(), &unfiltered, Some(next))
                .await
                .unwrap();
            assert!(whole.entries[0].on_hand_after > on_hand);
        }
        after_version = page.next_after_version;
        cursor = page.next;
        if after_version.is_none() {
            break;
        }
    }
    assert_eq!(seen, 30);
}
