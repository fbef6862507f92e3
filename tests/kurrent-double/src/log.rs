//! The double's store: streams and the store-wide log, with the server's rules for expected
//! revisions and for recognising a retried append by its event ids. No networking here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

/// Where the first record of the log starts. A real log begins with its own records (epochs,
/// settings), so positions never start at zero; neither do the double's.
const LOG_START_OFFSET: u64 = 4_096;

/// Bytes a record takes besides its data and metadata. Positions are byte offsets in a real
/// server's log; the double grows them similarly so they are large, sparse and never equal to
/// an event count, which keeps the adapter from relying on anything else.
const RECORD_OVERHEAD_BYTES: u64 = 128;

/// How many of a stream's last events the double looks at, by default, to recognise a retried
/// `Any` or `StreamExists` append (its server-side deduplication, a model of a forgetting cache).
pub const DEDUPE_WINDOW_EVENTS_DEFAULT: u64 = 256;

/// Name of the system stream the double writes one record to when created, so the store-wide
/// log holds an event the adapter's stream-name filter must leave out, as a real one does.
pub const SYSTEM_STREAM: &str = "$double-started";

/// What the appender believes the stream's revision is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Revision(u64),
    NoStream,
    Any,
    StreamExists,
}

/// An event as proposed by an append.
#[derive(Debug, Clone)]
pub struct Proposed {
    pub id: Uuid,
    pub metadata: HashMap<String, String>,
    pub custom_metadata: bytes::Bytes,
    pub data: bytes::Bytes,
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: Uuid,
    pub stream: bytes::Bytes,
    pub revision: u64,
    pub commit: u64,
    pub prepare: u64,
    /// System metadata: `type` and `content-type` as proposed, plus `created`.
    pub metadata: HashMap<String, String>,
    pub custom_metadata: bytes::Bytes,
    pub data: bytes::Bytes,
}

impl Stored {
    pub fn position(&self) -> (u64, u64) {
        (self.commit, self.prepare)
    }
}

/// The outcome of an append, in the protocol's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written, or recognised as a retry of an earlier append and acknowledged again with that
    /// append's last revision and position.
    Success { revision: u64, position: (u64, u64) },
    WrongExpectedVersion {
        current: Option<u64>,
        expected: Expected,
    },
    /// The stream was deleted permanently (tombstoned): nothing can be appended to it again.
    StreamDeleted,
}

/// What a read of one stream finds.
pub enum StreamRead {
    NotFound,
    /// The stream was deleted permanently (tombstoned).
    Deleted,
    Events(Vec<Stored>),
}

/// Which events of the store-wide log a read or subscription wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Match on the event type instead of the stream name.
    pub on_event_type: bool,
    /// Keep events whose stream name (or type) starts with one of these; none keeps all.
    pub prefixes: Vec<String>,
}

impl Filter {
    fn keeps(&self, event: &Stored) -> bool {
        if self.prefixes.is_empty() {
            return true;
        }
        let subject: &[u8] = if self.on_event_type {
            event.metadata.get("type").map_or(&[], |t| t.as_bytes())
        } else {
            &event.stream
        };
        self.prefixes
            .iter()
            .any(|prefix| subject.starts_with(prefix.as_bytes()))
    }
}

#[derive(Default)]
struct Inner {
    events: Vec<Stored>,
    /// Each stream's events as indexes into `events`, in revision order.
    streams: HashMap<bytes::Bytes, Vec<usize>>,
    next_offset: u64,
    /// Streams deleted permanently: their events stay in the store-wide log (until a scavenge,
    /// which the double never runs), but the stream can be neither read nor written.
    tombstoned: std::collections::HashSet<bytes::Bytes>,
    /// Streams truncated before a revision (`$tb` in their metadata): reads skip the events
    /// below it, which stay in the store-wide log.
    truncated_before: HashMap<bytes::Bytes, u64>,
    /// How many of a stream's last events the server-side recognition of `Any` and
    /// `StreamExists` retries looks at: a model of a best-effort cache, not the size of any
    /// real server's. Retries with an exact expected revision are checked at that revision,
    /// which a real server does by reading it, so they are always recognised.
    dedupe_window_events: u64,
}

pub struct Log {
    inner: Mutex<Inner>,
    /// The number of events in the log, published after every write so subscriptions wake.
    length: watch::Sender<usize>,
    appends_received: AtomicU64,
}

impl Default for Log {
    fn default() -> Self {
        Self::new()
    }
}

impl Log {
    pub fn new() -> Self {
        let log = Self {
            inner: Mutex::new(Inner {
                next_offset: LOG_START_OFFSET,
                dedupe_window_events: DEDUPE_WINDOW_EVENTS_DEFAULT,
                ..Inner::default()
            }),
            length: watch::channel(0).0,
            appends_received: AtomicU64::new(0),
        };
        let started = Proposed {
            id: Uuid::new_v4(),
            metadata: HashMap::from([
                ("type".to_owned(), "$started".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ]),
            custom_metadata: bytes::Bytes::new(),
            data: bytes::Bytes::from_static(b"{}"),
        };
        let outcome = log.append(
            bytes::Bytes::from_static(SYSTEM_STREAM.as_bytes()),
            Expected::NoStream,
            vec![started],
        );
        assert!(matches!(outcome, AppendOutcome::Success { .. }));
        log.appends_received.store(0, Ordering::Relaxed);
        log
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("double log lock poisoned")
    }

    pub fn appends_received(&self) -> u64 {
        self.appends_received.load(Ordering::Relaxed)
    }

    /// A receiver that changes whenever events are written.
    pub fn watch_length(&self) -> watch::Receiver<usize> {
        self.length.subscribe()
    }

    pub fn stream_event_ids(&self, stream: &[u8]) -> Vec<Uuid> {
        let inner = self.lock();
        inner.streams.get(stream).map_or_else(Vec::new, |indexes| {
            indexes.iter().map(|&i| inner.events[i].id).collect()
        })
    }

    /// Append with the server's rules: the expected revision must hold, unless the event ids
    /// are already stored in this stream as one consecutive run where this append would have
    /// put them (or anywhere, for `Any` and `StreamExists`, whose idempotency a real server
    /// gives on a best-effort basis): then nothing is written and the earlier append's result
    /// is returned.
    pub fn append(
        &self,
        stream: bytes::Bytes,
        expected: Expected,
        events: Vec<Proposed>,
    ) -> AppendOutcome {
        self.appends_received.fetch_add(1, Ordering::Relaxed);
        let outcome = {
            let mut inner = self.lock();
            if inner.tombstoned.contains(&stream) {
                return AppendOutcome::StreamDeleted;
            }
            let current = inner
                .streams
                .get(&stream)
                .map(|indexes| indexes.len() as u64 - 1);
            let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
            let fits = match expected {
                Expected::Revision(r) => current == Some(r),
                Expected::NoStream => current.is_none(),
                Expected::Any => true,
                Expected::StreamExists => current.is_some(),
            };
            let earlier_slot = match expected {
                Expected::Revision(r) => Some(r + 1),
                Expected::NoStream => Some(0),
                Expected::Any | Expected::StreamExists => {
                    inner.first_revision_of(&stream, ids.first())
                }
            };
            let retried = earlier_slot.and_then(|slot| inner.stored_run(&stream, slot, &ids));
            if let Some(original) = retried {
                original
            } else if !fits {
                AppendOutcome::WrongExpectedVersion { current, expected }
            } else if events.is_empty() {
                // The server accepts an empty append as a no-op reporting the current state.
                AppendOutcome::Success {
                    revision: current.unwrap_or(0),
                    position: inner.events.last().map_or((0, 0), Stored::position),
                }
            } else {
                inner.write(stream, current, events)
            }
        };
        if let AppendOutcome::Success { .. } = outcome {
            let length = self.lock().events.len();
            self.length.send_replace(length);
        }
        outcome
    }

    /// Delete `stream` permanently, as an operator's hard delete does.
    pub fn tombstone(&self, stream: &[u8]) {
        self.lock()
            .tombstoned
            .insert(bytes::Bytes::copy_from_slice(stream));
    }

    /// Let the server-side recognition of `Any` and `StreamExists` retries look at the last
    /// `events` of a stream only.
    pub fn set_dedupe_window(&self, events: u64) {
        self.lock().dedupe_window_events = events;
    }

    /// Hide the events of `stream` below `revision` from reads, as `$tb` does.
    pub fn truncate_before(&self, stream: &[u8], revision: u64) {
        self.lock()
            .truncated_before
            .insert(bytes::Bytes::copy_from_slice(stream), revision);
    }

    /// Events of one stream: forwards from `from` (the start when `None`), or backwards from
    /// `from` (the end when `None`), at most `count`.
    pub fn read_stream(
        &self,
        stream: &[u8],
        from: Option<u64>,
        backwards: bool,
        count: u64,
    ) -> StreamRead {
        let inner = self.lock();
        if inner.tombstoned.contains(stream) {
            return StreamRead::Deleted;
        }
        let Some(indexes) = inner.streams.get(stream) else {
            return StreamRead::NotFound;
        };
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let kept_from = inner.truncated_before.get(stream).copied().unwrap_or(0);
        let kept_from = usize::try_from(kept_from)
            .unwrap_or(usize::MAX)
            .min(indexes.len());
        let hidden = kept_from;
        let picked: Vec<usize> = if backwards {
            let last = indexes.len() as u64 - 1;
            let from = from.map_or(last, |r| r.min(last)) as usize;
            indexes[..=from]
                .iter()
                .skip(hidden)
                .rev()
                .take(count)
                .copied()
                .collect()
        } else {
            let from = from.map_or(0, |r| r.min(indexes.len() as u64)) as usize;
            indexes[from.max(hidden)..]
                .iter()
                .take(count)
                .copied()
                .collect()
        };
        StreamRead::Events(
            picked
                .into_iter()
                .map(|i| inner.events[i].clone())
                .collect(),
        )
    }

    /// Events of the store-wide log that `filter` keeps: forwards from `from` inclusive (the
    /// start when `None`), or backwards from before `from` (the end when `None`), at most
    /// `count`. `end` forwards reads nothing.
    pub fn read_all(
        &self,
        from: Option<(u64, u64)>,
        from_end: bool,
        backwards: bool,
        filter: &Filter,
        count: u64,
    ) -> Vec<Stored> {
        let inner = self.lock();
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let split = match (from, from_end) {
            (_, true) => inner.events.len(),
            (Some(position), false) => inner.events.partition_point(|e| e.position() < position),
            (None, false) => {
                if backwards {
                    inner.events.len()
                } else {
                    0
                }
            }
        };
        let kept = |e: &&Stored| filter.keeps(e);
        if backwards {
            inner.events[..split]
                .iter()
                .rev()
                .filter(kept)
                .take(count)
                .cloned()
                .collect()
        } else {
            inner.events[split..]
                .iter()
                .filter(kept)
                .take(count)
                .cloned()
                .collect()
        }
    }

    /// For a subscription: the index of the first event strictly after `position`, of the first
    /// event when `None`, or the end of the log when `from_end`.
    pub fn subscription_start(&self, position: Option<(u64, u64)>, from_end: bool) -> usize {
        let inner = self.lock();
        match (position, from_end) {
            (_, true) => inner.events.len(),
            (Some(position), false) => inner.events.partition_point(|e| e.position() <= position),
            (None, false) => 0,
        }
    }

    /// For a subscription: up to `count` kept events from index `cursor`, and the index to go on
    /// from. Scans at most `scan_max` events so a sparse filter cannot hold the lock for long.
    pub fn page_from(
        &self,
        cursor: usize,
        filter: &Filter,
        count: usize,
        scan_max: usize,
    ) -> (Vec<Stored>, usize) {
        let inner = self.lock();
        let mut page = Vec::new();
        let mut next = cursor;
        for event in inner.events.iter().skip(cursor).take(scan_max) {
            next += 1;
            if filter.keeps(event) {
                page.push(event.clone());
                if page.len() == count {
                    break;
                }
            }
        }
        (page, next)
    }

    /// The position of the event at `index` of the log.
    pub fn position_at(&self, index: usize) -> Option<(u64, u64)> {
        self.lock().events.get(index).map(Stored::position)
    }

    /// The position of the last event in the log, for a subscription's caught-up message.
    pub fn last_position(&self) -> Option<(u64, u64)> {
        self.lock().events.last().map(Stored::position)
    }
}

impl Inner {
    /// Where `id` lies in `stream`, if among its last [`Inner::dedupe_window_events`] events:
    /// a retry with `Any` or `StreamExists` is recognised by a real server only while its
    /// caches still remember the write, so never for sure.
    fn first_revision_of(&self, stream: &[u8], id: Option<&Uuid>) -> Option<u64> {
        let id = id?;
        let indexes = self.streams.get(stream)?;
        let window = usize::try_from(self.dedupe_window_events).unwrap_or(usize::MAX);
        let start = indexes.len().saturating_sub(window);
        indexes[start..]
            .iter()
            .position(|&i| self.events[i].id == *id)
            .map(|offset| (start + offset) as u64)
    }

    /// The earlier append's result when `ids` are stored in `stream` at revisions `slot`,
    /// `slot + 1`, … in this order.
    fn stored_run(&self, stream: &[u8], slot: u64, ids: &[Uuid]) -> Option<AppendOutcome> {
        if ids.is_empty() {
            return None;
        }
        let indexes = self.streams.get(stream)?;
        let start = usize::try_from(slot).ok()?;
        let run = indexes.get(start..start.checked_add(ids.len())?)?;
        let matches = run.iter().zip(ids).all(|(&i, id)| self.events[i].id == *id);
        let last = &self.events[*run.last()?];
        matches.then(|| AppendOutcome::Success {
            revision: last.revision,
            position: last.position(),
        })
    }

    fn write(
        &mut self,
        stream: bytes::Bytes,
        current: Option<u64>,
        events: Vec<Proposed>,
    ) -> AppendOutcome {
        let created_ticks = created_ticks_now().to_string();
        // As a real server writes an append (an implicit transaction): each event is a record
        // of its own in the log, and its `$all` position is that record's offset, as both the
        // commit and the prepare position. Only explicit transactions, which the ledger never
        // uses, give events a commit position other than their prepare position.
        let mut offset = self.next_offset;
        let mut offsets = Vec::with_capacity(events.len());
        for event in &events {
            offsets.push(offset);
            offset += RECORD_OVERHEAD_BYTES
                + event.data.len() as u64
                + event.custom_metadata.len() as u64;
        }
        self.next_offset = offset;
        let first_revision = current.map_or(0, |r| r + 1);
        for (revision, (event, offset)) in (first_revision..).zip(events.into_iter().zip(offsets)) {
            let mut metadata = event.metadata;
            metadata.insert("created".to_owned(), created_ticks.clone());
            let index = self.events.len();
            self.events.push(Stored {
                id: event.id,
                stream: stream.clone(),
                revision,
                commit: offset,
                prepare: offset,
                metadata,
                custom_metadata: event.custom_metadata,
                data: event.data,
            });
            self.streams.entry(stream.clone()).or_default().push(index);
        }
        let last = self.events.last().expect("at least one event was written");
        AppendOutcome::Success {
            revision: last.revision,
            position: last.position(),
        }
    }
}

/// The `created` system metadata: 100-nanosecond ticks since the Unix epoch, as the protocol
/// carries it.
fn created_ticks_now() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since_epoch.as_nanos() / 100) as u64
}
