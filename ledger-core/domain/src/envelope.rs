//! The envelope every stored event travels in: identity, place (stream, version, position),
//! type and schema version, payload, and the metadata that says who caused it and why.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use uuid::Uuid;

/// Namespace for event ids derived from idempotency keys (UUID v5). Fixed forever: changing it
/// would make a retried command after an upgrade look new.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_2d65_7665_6e74_2d69_6473);

/// An event's place in the store-wide log. Ordered: a later event has a greater position.
///
/// Two parts, as EventStoreDB's `$all` positions have (commit, prepare), so that every adapter
/// maps onto it without loss: the Postgres store uses (appending transaction id, sequence
/// number), the in-memory store uses its sequence number for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub commit: u64,
    pub prepare: u64,
}

impl Position {
    /// What a store reports for an event whose log position it cannot tell: EventStoreDB
    /// servers older than the protocol's current shape send no position with events read from
    /// a stream (the maximum value in both parts). Never a real position, and never used as a
    /// checkpoint: the store-wide log always carries real positions.
    pub const UNKNOWN: Position = Position {
        commit: u64::MAX,
        prepare: u64::MAX,
    };

    /// False for [`Position::UNKNOWN`].
    pub fn is_known(&self) -> bool {
        *self != Self::UNKNOWN
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.commit, self.prepare)
    }
}

impl std::str::FromStr for Position {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (commit, prepare) = value
            .split_once('/')
            .ok_or_else(|| format!("position {value:?} is not of the form COMMIT/PREPARE"))?;
        let parse = |part: &str| {
            part.parse::<u64>()
                .map_err(|_| format!("position {value:?}: {part:?} is not a whole number"))
        };
        Ok(Self {
            commit: parse(commit)?,
            prepare: parse(prepare)?,
        })
    }
}

/// Bytes of one event hash (SHA-256).
pub const EVENT_HASH_BYTES: usize = 32;

/// The hash of one event in its stream's hash chain (see [`crate::chain`]). Shown (API, CLI, EventStoreDB metadata) as 64
/// lower-case hexadecimal digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventHash(pub [u8; EVENT_HASH_BYTES]);

impl EventHash {
    /// What the first event of a stream chains to: 32 zero bytes.
    pub const GENESIS: EventHash = EventHash([0; EVENT_HASH_BYTES]);

    /// The hash from its stored bytes; `None` unless there are exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; EVENT_HASH_BYTES] {
        &self.0
    }

    /// The 64 lower-case hexadecimal digits.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(EVENT_HASH_BYTES * 2);
        for byte in self.0 {
            text.push(DIGITS[usize::from(byte >> 4)] as char);
            text.push(DIGITS[usize::from(byte & 0x0f)] as char);
        }
        text
    }

    /// The hash from 64 hexadecimal digits (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != EVENT_HASH_BYTES * 2 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; EVENT_HASH_BYTES];
        for (index, pair) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).ok()?;
            bytes[index] = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl fmt::Display for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventHash({})", self.to_hex())
    }
}

impl std::str::FromStr for EventHash {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_hex(text)
            .ok_or_else(|| format!("{text:?} is not a hash of 64 hexadecimal digits"))
    }
}

impl Serialize for EventHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for EventHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Who caused an event and in answer to what. Stored as JSON beside every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Shared by everything one business request caused, across services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The message (request or event) that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The acting principal: a token's subject, a worker's name, an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The client's key that makes the command safe to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Whose key `idempotency_key` is (a principal's, or a system worker's): keys of different
    /// scopes never meet. Absent on events written before keys were scoped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_scope: Option<String>,
    /// The W3C `traceparent` of the request that caused the event (version-00 form), so that
    /// whatever later handles the event can join that trace. Absent when the request carried
    /// none and the writer exported no trace of its own, and on every event written before it
    /// existed: absent, it is left out of the JSON and so out of the hash chain's canonical
    /// form, which keeps those events' hashes unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Metadata {
    /// The key this event's command is remembered by: scope and key together, or the bare key
    /// for events written before keys were scoped.
    pub fn scoped_key(&self) -> Option<String> {
        let key = self.idempotency_key.as_deref()?;
        Some(scoped_key(
            self.idempotency_scope.as_deref().unwrap_or_default(),
            key,
        ))
    }
}

/// One string for a key within its scope, unambiguous whatever either holds (the scope's length
/// comes first). An empty scope gives the bare key, as events written before scopes have.
pub fn scoped_key(scope: &str, key: &str) -> String {
    if scope.is_empty() {
        key.to_owned()
    } else {
        format!("{}:{scope}:{key}", scope.len())
    }
}

/// An event about to be appended. Its writer decides the recorded time and the chain hash
/// (it knows the stream's head), so that the hash covers the time the store keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: Metadata,
    /// When the event is recorded, in whole microseconds (what every store keeps).
    pub recorded_at: DateTime<Utc>,
    /// The event's link in its stream's hash chain (see [`crate::chain`]).
    pub hash: EventHash,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream: String,
    pub version: u64,
    pub position: Position,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
    /// The event's link in its stream's hash chain as stored; `None` for an event stored
    /// without one (EventStoreDB events written before the chain existed).
    pub hash: Option<EventHash>,
}

/// The id of the `index`-th event a command produces. With an idempotency key (scoped: see
/// [`scoped_key`]) the id is derived from (stream, key, index), so a retried command produces
/// the same ids and the store recognises the retry, while the same key of another principal
/// produces other ids; without a key the id is random.
pub fn event_id_for(stream: &str, scoped_idempotency_key: Option<&str>, index: usize) -> Uuid {
    match scoped_idempotency_key {
        Some(key) => Uuid::new_v5(
            &EVENT_ID_NAMESPACE,
            format!("{stream}\u{1f}{key}\u{1f}{index}").as_bytes(),
        ),
        None => Uuid::new_v4(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_from_the_same_key_are_equal_and_differ_by_index_and_stream() {
        let a = event_id_for("sku-A", Some("k1"), 0);
        assert_eq!(a, event_id_for("sku-A", Some("k1"), 0));
        assert_ne!(a, event_id_for("sku-A", Some("k1"), 1));
        assert_ne!(a, event_id_for("sku-B", Some("k1"), 0));
        assert_ne!(
            event_id_for("sku-A", None, 0),
            event_id_for("sku-A", None, 0)
        );
    }

    #[test]
    fn the_same_key_in_two_scopes_gives_two_ids_and_scopes_cannot_be_forged() {
        let alice = scoped_key("principal:alice", "k1");
        let bob = scoped_key("principal:bob", "k1");
        assert_ne!(
            event_id_for("sku-A", Some(&alice), 0),
            event_id_for("sku-A", Some(&bob), 0)
        );
        // A scope cannot be reached by a longer key in a shorter scope.
        assert_ne!(scoped_key("a:b", "c"), scoped_key("a", "b:c"));
        assert_eq!(scoped_key("", "k1"), "k1");
    }

    #[test]
    fn positions_order_by_commit_then_prepare_and_round_trip_as_text() {
        let a = Position {
            commit: 1,
            prepare: 9,
        };
        let b = Position {
            commit: 2,
            prepare: 3,
        };
        assert!(a < b);
        assert_eq!("2/3".parse::<Position>().unwrap(), b);
        assert!("2-3".parse::<Position>().is_err());
    }
}
