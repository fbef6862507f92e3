//! A SKU's history for auditors, replayed from the event store (never from a read model): every
//! event with who caused it and the balances after it, and the state as of a past moment.
//! Shared by the HTTP API and the replay CLI so both tell the same story.

use crate::domain::{Sku, SkuEvent, SkuState, SkuSummary};
use crate::envelope::{Position, RecordedEvent};
use crate::store::{EventStore, StoreError, READ_EVENTS_MAX};
use chrono::{DateTime, Utc};
use serde::Serialize;

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

/// One event of a SKU's stream, with its effect and the balances right after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub position: Position,
    pub event_id: uuid::Uuid,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub schema_version: u32,
    /// The movement kind (replenished, reserved, released, expired, confirmed, adjusted), or
    /// `None` for an event that moves no stock (a reorder point change).
    pub movement: Option<&'static str>,
    pub on_hand_change: i64,
    pub reserved_change: i64,
    pub on_hand_after: u64,
    pub reserved_after: u64,
    pub available_after: u64,
    pub reorder_point_after: u64,
    pub reservation_id: Option<String>,
    pub order_id: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub principal: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub data: serde_json::Value,
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
        entries.push(entry(recorded, event, before, after));
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

fn signed(value: u64) -> i64 {
    i64::try_from(value).expect("balances stay below the on hand limit")
}

fn entry(
    recorded: &RecordedEvent,
    event: &SkuEvent,
    before: &SkuSummary,
    after: &SkuState,
) -> HistoryEntry {
    let (reservation_id, order_id, reason, reference) = match event {
        SkuEvent::Replenished(e) => (None, None, None, e.reference.clone()),
        SkuEvent::Reserved(e) => (
            Some(e.reservation_id.clone()),
            e.order_id.clone(),
            None,
            None,
        ),
        SkuEvent::Released(e) => (
            Some(e.reservation_id.clone()),
            e.order_id.clone(),
            e.reason.clone(),
            None,
        ),
        SkuEvent::Expired(e) => (
            Some(e.reservation_id.clone()),
            e.order_id.clone(),
            None,
            None,
        ),
        SkuEvent::Confirmed(e) => (
            Some(e.reservation_id.clone()),
            e.order_id.clone(),
            None,
            None,
        ),
        SkuEvent::Adjusted(e) => (None, None, Some(e.reason.clone()), e.reference.clone()),
        SkuEvent::ReorderPointSet(_) => (None, None, None, None),
    };
    HistoryEntry {
        version: recorded.version,
        position: recorded.position,
        event_id: recorded.event_id,
        recorded_at: recorded.recorded_at,
        event_type: recorded.event_type.clone(),
        schema_version: recorded.schema_version,
        movement: event.movement(),
        on_hand_change: signed(after.on_hand) - signed(before.on_hand),
        reserved_change: signed(after.reserved) - signed(before.reserved),
        on_hand_after: after.on_hand,
        reserved_after: after.reserved,
        available_after: after.available(),
        reorder_point_after: after.reorder_point,
        reservation_id,
        order_id,
        reason,
        reference,
        principal: recorded.metadata.principal.clone(),
        correlation_id: recorded.metadata.correlation_id.clone(),
        causation_id: recorded.metadata.causation_id.clone(),
        data: recorded.data.clone(),
    }
}
