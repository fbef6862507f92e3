//! A SKU's history for auditors, replayed from the event store (never from a read model): every
//! event with who caused it and the balances after it, and the state as of a past moment.
//! Shared by the HTTP API and the replay CLI so both tell the same story; what each entry says
//! is the domain's history fold ([`ledger_domain::history`]).

use crate::store::{EventStore, StoreError, READ_EVENTS_MAX};
use chrono::{DateTime, Utc};
use ledger_domain::envelope::RecordedEvent;
use ledger_domain::{Balances, Sku, SkuEvent, SkuState, SkuSummary};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use ledger_domain::HistoryEntry;

/// Most entries one history page returns; callers page on with `after_version`.
pub const HISTORY_PAGE_ENTRIES_MAX: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stream {stream} holds an unreadable event at version {version}: {message}")]
    Undecodable {
        stream: String,
        version: u64,
        message: String,
    },
}

/// Which part of the history to return.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Only events recorded at or after this moment.
    pub from: Option<DateTime<Utc>>,
    /// Only events recorded before this moment.
    pub to: Option<DateTime<Utc>>,
    /// Only events after this version (paging).
    pub after_version: Option<u64>,
    /// Most entries to return, at most [`HISTORY_PAGE_ENTRIES_MAX`].
    pub limit: u64,
    /// Only the movements at this location, each with that location's balances (instead of
    /// the SKU's) before and after it.
    pub location: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryPage {
    pub sku: Sku,
    pub entries: Vec<HistoryEntry>,
    /// The version to pass as `after_version` for the next page; `None` at the end.
    pub next_after_version: Option<u64>,
    /// Where this page ended, to resume the next one from; `None` at the end.
    #[serde(skip)]
    pub next: Option<HistoryCursor>,
}

/// Where an as-of replay stops. A state is always a prefix of the stream: as of a moment, it is
/// the longest prefix whose events were all recorded at or before that moment (recorded times
/// follow version order within a stream).
#[derive(Debug, Clone, Copy)]
pub enum AsOf {
    /// Include every event recorded at or before this moment.
    Time(DateTime<Utc>),
    /// Include events up to and including this version.
    Version(u64),
}

/// Replays `stream` from the start, calling `visit` with each event, its decoded form, the
/// balances before it and the state after it, until `visit` returns false or the stream ends.
/// (The balances before are a constant-size summary, so a long stream replays in linear time.)
pub async fn replay<S, F>(store: &S, sku: &Sku, mut visit: F) -> Result<SkuState, HistoryError>
where
    S: EventStore + ?Sized,
    F: FnMut(&RecordedEvent, &SkuEvent, &SkuSummary, &SkuState) -> bool,
{
    let stream = sku.stream();
    let mut state = SkuState::new(sku.clone());
    let mut from = 0;
    loop {
        let page = store.read_stream(&stream, from, READ_EVENTS_MAX).await?;
        let length = page.len() as u64;
        for recorded in &page {
            let event = decode(&stream, recorded)?;
            let before = state.summary();
            state.apply(&event);
            if !visit(recorded, &event, &before, &state) {
                return Ok(state);
            }
        }
        if length < READ_EVENTS_MAX {
            return Ok(state);
        }
        from += length;
    }
}

fn decode(stream: &str, recorded: &RecordedEvent) -> Result<SkuEvent, HistoryError> {
    SkuEvent::decode(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
    .map_err(|e| HistoryError::Undecodable {
        stream: stream.to_owned(),
        version: recorded.version,
        message: e.to_string(),
    })
}

/// The fewest events a history page reads at once past its start (a page filtered by time may
/// skip many before it fills).
const READ_AHEAD_EVENTS_MIN: u64 = 64;

/// Where a history page ended: the last entry's version and event id, and the balances right
/// after it. Handed back with the next page's `after_version`, it lets that page start reading
/// at its own position instead of replaying the stream from the first event (paging through a
/// long history is linear, not quadratic). The event id anchors it: a cursor that does not
/// match the stored event at its version (another store, a reset) is ignored and the page
/// replays from the start, so a cursor can make a page cheaper but never different.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryCursor {
    pub version: u64,
    pub event_id: Uuid,
    /// The SKU's balances, or the location's for a page of one location.
    pub balances: Balances,
    /// The location the page was filtered to, if any.
    pub location: Option<String>,
}

/// One page of a SKU's history, filtered by time and paged by version. `resume`, when it names
/// the page's `after_version`, starts the fold there (see [`HistoryCursor`]). Reading stops at
/// `to` (recorded times follow version order within a stream) and one entry past the page.
pub async fn history<S: EventStore + ?Sized>(
    store: &S,
    sku: &Sku,
    filter: &HistoryFilter,
    resume: Option<&HistoryCursor>,
) -> Result<HistoryPage, HistoryError> {
    let stream = sku.stream();
    let limit = filter.limit.clamp(1, HISTORY_PAGE_ENTRIES_MAX) as usize;
    let resume = resume.filter(|cursor| {
        filter.after_version == Some(cursor.version) && cursor.location == filter.location
    });
    let (mut balances, mut from) = match resume {
        Some(cursor) => (cursor.balances, cursor.version),
        None => (Balances::default(), 0),
    };
    let here = |event: &SkuEvent| {
        filter
            .location
            .as_deref()
            .is_none_or(|location| event.concerns(location))
    };
    let mut anchor = resume.map(|cursor| cursor.event_id);
    let mut entries = Vec::new();
    let mut next = None;
    let mut more = false;
    'pages: loop {
        // Read ahead only as far as the page needs, except while folding up to `after_version`.
        let count = if filter.after_version.is_some_and(|v| from <= v) && anchor.is_none() {
            READ_EVENTS_MAX
        } else {
            ((limit - entries.len()) as u64 + 2).clamp(READ_AHEAD_EVENTS_MIN, READ_EVENTS_MAX)
        };
        let page = store.read_stream(&stream, from, count).await?;
        let mut events = page.iter();
        if let Some(event_id) = anchor.take() {
            if events.next().map(|anchor| anchor.event_id) != Some(event_id) {
                // Not this stream's event at that version: fold from the start instead.
                balances = Balances::default();
                from = 0;
                continue;
            }
        }
        for recorded in events {
            if filter.to.is_some_and(|to| recorded.recorded_at >= to) {
                break 'pages;
            }
            let event = decode(&stream, recorded)?;
            if !here(&event) {
                continue;
            }
            let before = balances;
            balances.apply_at(&event, filter.location.as_deref());
            if filter.after_version.is_some_and(|v| recorded.version <= v)
                || filter.from.is_some_and(|from| recorded.recorded_at < from)
            {
                continue;
            }
            if entries.len() == limit {
                more = true;
                break 'pages;
            }
            entries.push(HistoryEntry::between(recorded, &event, before, balances));
            next = Some(HistoryCursor {
                version: recorded.version,
                event_id: recorded.event_id,
                balances,
                location: filter.location.clone(),
            });
        }
        if (page.len() as u64) < count {
            break;
        }
        from += page.len() as u64;
    }
    let next = if more { next } else { None };
    Ok(HistoryPage {
        sku: sku.clone(),
        entries,
        next_after_version: next.as_ref().map(|cursor| cursor.version),
        next,
    })
}

/// The cursors of the history pages this process served lately, so that a client paging on
/// with `after_version` resumes where its last page ended (see [`HistoryCursor`]). Bounded: the
/// oldest are forgotten first, and a forgotten cursor only costs one replay from the start.
#[derive(Debug, Default)]
pub struct HistoryCursors {
    inner: std::sync::Mutex<CursorsInner>,
}

#[derive(Debug, Default)]
struct CursorsInner {
    by_position: std::collections::HashMap<CursorKey, HistoryCursor>,
    order: std::collections::VecDeque<CursorKey>,
}

/// A cursor's SKU, version and location filter.
type CursorKey = (Sku, u64, Option<String>);

/// Most history cursors one process keeps (each well under 200 bytes).
pub const HISTORY_CURSORS_MAX: usize = 10_000;

impl HistoryCursors {
    /// The cursor of the page that ended at `after_version`, for the same location filter.
    pub fn get(
        &self,
        sku: &Sku,
        after_version: u64,
        location: Option<&str>,
    ) -> Option<HistoryCursor> {
        let inner = self.inner.lock().expect("history cursors lock");
        let key = (sku.clone(), after_version, location.map(str::to_owned));
        inner.by_position.get(&key).cloned()
    }

    pub fn remember(&self, sku: &Sku, cursor: HistoryCursor) {
        let mut inner = self.inner.lock().expect("history cursors lock");
        let key = (sku.clone(), cursor.version, cursor.location.clone());
        if inner.by_position.insert(key.clone(), cursor).is_none() {
            inner.order.push_back(key);
        }
        while inner.order.len() > HISTORY_CURSORS_MAX {
            if let Some(oldest) = inner.order.pop_front() {
                inner.by_position.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("history cursors lock").order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The SKU's state as of a past moment or version, folded from the event store.
pub async fn state_as_of<S: EventStore + ?Sized>(
    store: &S,
    sku: &Sku,
    as_of: AsOf,
) -> Result<SkuState, HistoryError> {
    // Decide inclusion before folding, so the state stops exactly at the last included event.
    let stream = sku.stream();
    let mut state = SkuState::new(sku.clone());
    let mut from = 0;
    loop {
        let page = store.read_stream(&stream, from, READ_EVENTS_MAX).await?;
        for recorded in &page {
            let included = match as_of {
                AsOf::Time(moment) => recorded.recorded_at <= moment,
                AsOf::Version(version) => recorded.version <= version,
            };
            if !included {
                return Ok(state);
            }
            state.apply(&decode(&stream, recorded)?);
        }
        if (page.len() as u64) < READ_EVENTS_MAX {
            return Ok(state);
        }
        from += page.len() as u64;
    }
}
