//! A SKU's history for auditors, replayed from the event store (never from a read model): every
//! event with who caused it and the balances after it, and the state as of a past moment.
//! Shared by the HTTP API and the replay CLI so both tell the same story; what each entry says
//! is the domain's history fold ([`ledger_domain::history`]).

use crate::store::{EventStore, StoreError, READ_EVENTS_MAX};
use chrono::{DateTime, Utc};
use ledger_domain::envelope::RecordedEvent;
use ledger_domain::{Sku, SkuEvent, SkuState, SkuSummary};
use serde::Serialize;

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
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryPage {
    pub sku: Sku,
    pub entries: Vec<HistoryEntry>,
    /// The version to pass as `after_version` for the next page; `None` at the end.
    pub next_after_version: Option<u64>,
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

/// One page of a SKU's history, filtered by time and paged by version.
pub async fn history<S: EventStore + ?Sized>(
    store: &S,
    sku: &Sku,
    filter: &HistoryFilter,
) -> Result<HistoryPage, HistoryError> {
    let limit = filter.limit.clamp(1, HISTORY_PAGE_ENTRIES_MAX) as usize;
    let mut entries = Vec::new();
    let mut more = false;
    replay(store, sku, |recorded, event, before, after| {
        if filter.after_version.is_some_and(|v| recorded.version <= v)
            || filter.from.is_some_and(|from| recorded.recorded_at < from)
        {
            return true;
        }
        if filter.to.is_some_and(|to| recorded.recorded_at >= to) {
            return true;
        }
        if entries.len() == limit {
            more = true;
            return false;
        }
        entries.push(HistoryEntry::new(recorded, event, before, after));
        true
    })
    .await?;
    let next_after_version = if more {
        entries.last().map(|e| e.version)
    } else {
        None
    };
    Ok(HistoryPage {
        sku: sku.clone(),
        entries,
        next_after_version,
    })
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
