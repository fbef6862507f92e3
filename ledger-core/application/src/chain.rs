//! The hash chain: every event's hash covers the hash of the event before it in its stream and
//! the event's canonical form ([`ledger_domain::chain`]), so that an edited, deleted, inserted
//! or reordered event no longer links to its neighbours.
//!
//! The writer that decides events knows its stream's head (hash and recorded time), so it
//! seals them before the append ([`seal`]): no read, no round trip, one SHA-256 per event.
//! Readers check a stream from its first event with [`ChainWalk`].

use chrono::{DateTime, Utc};
use ledger_domain::chain::{to_microseconds, CanonicalEvent, EventHash};
use ledger_domain::envelope::{NewEvent, RecordedEvent};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// `SHA-256(previous ‖ canonical bytes of event)`.
pub fn link(previous: &EventHash, event: &CanonicalEvent<'_>) -> EventHash {
    let mut bytes = Vec::with_capacity(512);
    event.write_to(&mut bytes);
    let mut digest = Sha256::new();
    digest.update(previous.as_bytes());
    digest.update(&bytes);
    EventHash(digest.finalize().into())
}

/// The hash `recorded` should carry when the event before it has `previous`.
pub fn link_recorded(previous: &EventHash, recorded: &RecordedEvent) -> EventHash {
    link(previous, &CanonicalEvent::of_recorded(recorded))
}

/// When a batch decided now on a stream whose last event was recorded at `head_recorded_at`
/// is recorded: now in whole microseconds, but never before the head, so that recorded times
/// follow versions within a stream even when the clocks of two writers disagree.
pub fn recording_time(
    now: DateTime<Utc>,
    head_recorded_at: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let now = to_microseconds(now);
    head_recorded_at.map_or(now, |head| now.max(head))
}

/// Give `events`, to be appended to `stream` from `first_version` on after an event whose hash
/// is `previous`, their recorded time and their hashes; returns the new head hash.
pub fn seal(
    stream: &str,
    first_version: u64,
    previous: EventHash,
    recorded_at: DateTime<Utc>,
    events: &mut [NewEvent],
) -> EventHash {
    let mut head = previous;
    for (offset, event) in events.iter_mut().enumerate() {
        event.recorded_at = to_microseconds(recorded_at);
        head = link(
            &head,
            &CanonicalEvent::of_new(stream, first_version + offset as u64, event),
        );
        event.hash = head;
    }
    head
}

/// The first link of a stream that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    pub stream: String,
    /// The version of the stored event whose hash does not verify.
    pub version: u64,
    /// The version of the event before it, as read (`None` when it is the first read).
    pub previous_version: Option<u64>,
    /// The hash recomputed from the event before it and this event's canonical form.
    pub expected: EventHash,
    /// The hash stored with the event (`None`: none stored).
    pub found: Option<EventHash>,
}

impl std::fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let found = self
            .found
            .map_or_else(|| "no hash".to_owned(), |hash| hash.to_hex());
        write!(
            f,
            "version {} does not chain to {}: expected hash {}, found {found}",
            self.version,
            self.previous_version.map_or_else(
                || "the start of the stream".to_owned(),
                |v| format!("version {v}")
            ),
            self.expected
        )
    }
}

/// A stream's chain checked event by event from its first event, in the order read (version
/// order, when read with `read_stream`).
#[derive(Debug, Clone)]
pub struct ChainWalk {
    stream: String,
    head: EventHash,
    previous_version: Option<u64>,
    /// Events checked so far.
    pub events: u64,
    /// Events stored without a hash (chained through by recomputing theirs).
    pub events_without_hash: u64,
}

impl ChainWalk {
    pub fn new(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            head: EventHash::GENESIS,
            previous_version: None,
            events: 0,
            events_without_hash: 0,
        }
    }

    /// The hash of the last event checked (the genesis hash before the first).
    pub fn head(&self) -> EventHash {
        self.head
    }

    /// The version of the last event checked.
    pub fn version(&self) -> Option<u64> {
        self.previous_version
    }

    /// Check the next event read. An event with no stored hash (written before the chain, on a
    /// store that cannot add one) is chained through with the hash recomputed. After a broken
    /// link the walk goes on from the hash found, so that one edit is reported once.
    pub fn step(&mut self, recorded: &RecordedEvent) -> Result<(), BrokenLink> {
        let expected = link_recorded(&self.head, recorded);
        let previous_version = self.previous_version;
        self.previous_version = Some(recorded.version);
        self.events += 1;
        let in_place = recorded.version == previous_version.map_or(0, |v| v + 1);
        match recorded.hash {
            None if in_place => {
                self.events_without_hash += 1;
                self.head = expected;
                Ok(())
            }
            Some(found) if found == expected && in_place => {
                self.head = found;
                Ok(())
            }
            found => {
                self.head = found.unwrap_or(expected);
                Err(BrokenLink {
                    stream: self.stream.clone(),
                    version: recorded.version,
                    previous_version,
                    expected,
                    found,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ledger_domain::envelope::{Metadata, Position};

    fn new_event(n: u64) -> NewEvent {
        NewEvent {
            event_id: uuid::Uuid::from_u128(u128::from(n) + 1),
            event_type: "StockAdjusted".into(),
            schema_version: 2,
            data: serde_json::json!({"delta": n, "reason": "count", "reference": null, "location": "default"}),
            metadata: Metadata::default(),
            recorded_at: DateTime::<Utc>::MIN_UTC,
            hash: EventHash::GENESIS,
        }
    }

    fn recorded(stream: &str, version: u64, event: &NewEvent) -> RecordedEvent {
        RecordedEvent {
            event_id: event.event_id,
            stream: stream.to_owned(),
            version,
            position: Position {
                commit: version,
                prepare: version,
            },
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            data: event.data.clone(),
            metadata: event.metadata.clone(),
            recorded_at: event.recorded_at,
            hash: Some(event.hash),
        }
    }

    fn sealed_stream(count: u64) -> Vec<RecordedEvent> {
        let mut events: Vec<NewEvent> = (0..count).map(new_event).collect();
        let at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        seal("sku-A", 0, EventHash::GENESIS, at, &mut events);
        events
            .iter()
            .enumerate()
            .map(|(version, event)| recorded("sku-A", version as u64, event))
            .collect()
    }

    fn first_break(events: &[RecordedEvent]) -> Option<BrokenLink> {
        let mut walk = ChainWalk::new("sku-A");
        events.iter().find_map(|event| walk.step(event).err())
    }

    #[test]
    fn sealed_events_verify_and_the_first_links_to_zero_bytes() {
        let events = sealed_stream(5);
        assert_eq!(first_break(&events), None);
        let mut digest = Sha256::new();
        digest.update([0u8; 32]);
        digest.update(CanonicalEvent::of_recorded(&events[0]).bytes());
        assert_eq!(events[0].hash, Some(EventHash(digest.finalize().into())));
    }

    #[test]
    fn an_edited_event_breaks_its_own_link_only() {
        let mut events = sealed_stream(5);
        events[2].data["delta"] = serde_json::json!(99);
        let broken = first_break(&events).expect("the edit is found");
        assert_eq!((broken.version, broken.previous_version), (2, Some(1)));
        assert_eq!(broken.found, events[2].hash);
        let mut walk = ChainWalk::new("sku-A");
        let breaks = events.iter().filter(|e| walk.step(e).is_err()).count();
        assert_eq!(breaks, 1);
    }

    #[test]
    fn a_deleted_or_reordered_event_breaks_the_chain_where_it_was() {
        let mut deleted = sealed_stream(5);
        deleted.remove(2);
        let broken = first_break(&deleted).unwrap();
        assert_eq!((broken.version, broken.previous_version), (3, Some(1)));

        let mut swapped = sealed_stream(5);
        swapped.swap(1, 2);
        swapped[1].version = 1;
        swapped[2].version = 2;
        assert_eq!(first_break(&swapped).unwrap().version, 1);
    }

    #[test]
    fn events_stored_without_a_hash_are_chained_through_and_counted() {
        let mut events = sealed_stream(4);
        let second = events[1].hash;
        events[0].hash = None;
        events[1].hash = None;
        let mut walk = ChainWalk::new("sku-A");
        for event in &events {
            walk.step(event).unwrap();
        }
        assert_eq!((walk.events, walk.events_without_hash), (4, 2));
        // Their recomputed hashes are the ones the later events chained to.
        let mut walk = ChainWalk::new("sku-A");
        walk.step(&events[0]).unwrap();
        walk.step(&events[1]).unwrap();
        assert_eq!(Some(walk.head()), second);
        // An edit of an event without a hash is still found at the next event that has one.
        events[1].data["delta"] = serde_json::json!(42);
        let broken = first_break(&events).unwrap();
        assert_eq!(broken.version, 2);
    }

    #[test]
    fn recording_times_never_go_before_the_head_and_keep_microseconds() {
        let head = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let earlier = head - chrono::Duration::seconds(3);
        assert_eq!(recording_time(earlier, Some(head)), head);
        let later = head + chrono::Duration::nanoseconds(1_500);
        assert_eq!(
            recording_time(later, Some(head)),
            head + chrono::Duration::microseconds(1)
        );
    }
}
