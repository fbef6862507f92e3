//! The hash chain's canonical form: the exact bytes of an event that its hash covers, written
//! so that an auditor can recompute them in a few lines of any language (the README gives the
//! procedure byte for byte). The digest itself (SHA-256) is computed by the application layer;
//! this crate stays free of cryptography.
//!
//! `hash(n) = SHA-256(hash(n - 1) ‖ canonical(event n))`, with `hash(-1)` 32 zero bytes, per
//! stream. `canonical(event)` is nine fields, each a 4-byte big-endian length and then that
//! many bytes of UTF-8 text:
//! 1. [`CHAIN_FORMAT`] (so that the form can change without ambiguity),
//! 2. the event id, lower-case hyphenated (`0b0c…-…`, 36 characters),
//! 3. the stream name,
//! 4. the version, in decimal,
//! 5. the event type,
//! 6. the schema version, in decimal,
//! 7. the data, as canonical JSON ([`canonical_json`]),
//! 8. the metadata, as canonical JSON,
//! 9. the recorded time ([`recorded_time_text`]): RFC 3339 in UTC with exactly six fraction
//!    digits, e.g. `2030-01-02T03:04:05.000678Z`.
//!
//! Text with lengths before it, rather than a binary layout, because every language reads it
//! the same way and no field can run into the next.

pub use crate::envelope::{EventHash, EVENT_HASH_BYTES};
use crate::envelope::{Metadata, NewEvent, RecordedEvent};
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

/// The first field of every canonical form: names this layout, so that a later one can never
/// produce the same bytes for another event.
pub const CHAIN_FORMAT: &str = "ledger-event/1";

/// The fields of an event that its hash covers, borrowed from a new or a stored event.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalEvent<'a> {
    pub event_id: Uuid,
    pub stream: &'a str,
    pub version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub data: &'a serde_json::Value,
    pub metadata: &'a Metadata,
    pub recorded_at: DateTime<Utc>,
}

impl<'a> CanonicalEvent<'a> {
    pub fn of_recorded(event: &'a RecordedEvent) -> Self {
        Self {
            event_id: event.event_id,
            stream: &event.stream,
            version: event.version,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            data: &event.data,
            metadata: &event.metadata,
            recorded_at: event.recorded_at,
        }
    }

    /// `event` as it will be stored in `stream` at `version`.
    pub fn of_new(stream: &'a str, version: u64, event: &'a NewEvent) -> Self {
        Self {
            event_id: event.event_id,
            stream,
            version,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            data: &event.data,
            metadata: &event.metadata,
            recorded_at: event.recorded_at,
        }
    }

    /// The canonical bytes, appended to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut json = Vec::with_capacity(256);
        field(out, CHAIN_FORMAT.as_bytes());
        field(out, self.event_id.hyphenated().to_string().as_bytes());
        field(out, self.stream.as_bytes());
        field(out, self.version.to_string().as_bytes());
        field(out, self.event_type.as_bytes());
        field(out, self.schema_version.to_string().as_bytes());
        canonical_json(self.data, &mut json);
        field(out, &json);
        json.clear();
        let metadata = serde_json::to_value(self.metadata).expect("metadata serialises");
        canonical_json(&metadata, &mut json);
        field(out, &json);
        field(out, recorded_time_text(self.recorded_at).as_bytes());
    }

    /// The canonical bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_to(&mut out);
        out
    }
}

/// One field: its length as 4 bytes, big-endian, then its bytes.
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).expect("an event field is shorter than 4 GiB");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A recorded time as the hash covers it: RFC 3339, UTC, `Z`, exactly six fraction digits
/// (anything finer is cut off, as PostgreSQL keeps microseconds).
pub fn recorded_time_text(moment: DateTime<Utc>) -> String {
    moment.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `moment` cut to whole microseconds: what every store keeps of a recorded time.
pub fn to_microseconds(moment: DateTime<Utc>) -> DateTime<Utc> {
    moment.trunc_subsecs(6)
}

/// Canonical JSON, appended to `out`: no whitespace; object members sorted by their keys'
/// UTF-8 bytes; strings with only `"` `\` and the control characters U+0000–U+001F escaped
/// (`\b \t \n \f \r` by name, the others as `\u00xx`, lower-case hex), everything else as its
/// UTF-8 bytes; integers in plain decimal. This is what Python's
/// `json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)` writes for
/// the values events hold (event payloads hold no fractions; a fraction, should one occur, is
/// written the shortest way that reads back to the same double).
pub fn canonical_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => out.extend_from_slice(number.to_string().as_bytes()),
        Value::String(text) => json_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            // Sorted here whatever order the map keeps (it depends on serde_json's features).
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (index, (key, item)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                json_string(key, out);
                out.push(b':');
                canonical_json(item, out);
            }
            out.push(b'}');
        }
    }
}

fn json_string(text: &str, out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(DIGITS[usize::from(byte >> 4)]);
                out.push(DIGITS[usize::from(byte & 0x0f)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn text(value: &serde_json::Value) -> String {
        let mut out = Vec::new();
        canonical_json(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn canonical_json_sorts_keys_by_bytes_and_writes_no_whitespace() {
        let value = json!({"b": 1, "a": {"z": [true, null, -3], "B": "x"}, "é": 0, "Z": 18446744073709551615u64});
        assert_eq!(
            text(&value),
            r#"{"Z":18446744073709551615,"a":{"B":"x","z":[true,null,-3]},"b":1,"é":0}"#
        );
    }

    #[test]
    fn canonical_json_escapes_only_quotes_backslashes_and_control_characters() {
        let value = json!("q\"b\\s/\u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}é\u{2028}😀");
        assert_eq!(
            text(&value),
            "\"q\\\"b\\\\s/\\b\\t\\n\\f\\r\\u0001\\u001f\u{7f}é\u{2028}😀\""
        );
    }

    #[test]
    fn recorded_times_have_six_fraction_digits_in_utc() {
        let moment = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::nanoseconds(678_999);
        assert_eq!(recorded_time_text(moment), "2030-01-02T03:04:05.000678Z");
        assert_eq!(
            recorded_time_text(to_microseconds(moment)),
            recorded_time_text(moment)
        );
        assert_eq!(to_microseconds(moment).timestamp_subsec_nanos(), 678_000);
    }

    #[test]
    fn hashes_read_back_from_their_hexadecimal_form() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x0f;
        let hash = EventHash(bytes);
        let text = hash.to_hex();
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("ab00") && text.ends_with("000f"));
        assert_eq!(EventHash::from_hex(&text), Some(hash));
        assert_eq!(EventHash::from_hex(&text.to_uppercase()), Some(hash));
        assert_eq!(EventHash::from_hex(&text[1..]), None);
        assert_eq!(EventHash::from_hex(&"g".repeat(64)), None);
        assert_eq!(
            serde_json::to_value(hash).unwrap(),
            serde_json::Value::String(text)
        );
    }

    /// The canonical form, field by field, as the README specifies it.
    #[test]
    fn the_canonical_form_is_nine_length_prefixed_text_fields() {
        let metadata = Metadata {
            principal: Some("clerk".into()),
            correlation_id: Some("c-1".into()),
            ..Metadata::default()
        };
        let data = json!({"quantity": 5, "location": "default", "reference": null});
        let event = CanonicalEvent {
            event_id: Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            stream: "sku-A",
            version: 12,
            event_type: "StockReplenished",
            schema_version: 2,
            data: &data,
            metadata: &metadata,
            recorded_at: Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap(),
        };
        let fields = [
            "ledger-event/1",
            "01020304-0506-0708-090a-0b0c0d0e0f10",
            "sku-A",
            "12",
            "StockReplenished",
            "2",
            r#"{"location":"default","quantity":5,"reference":null}"#,
            r#"{"correlation_id":"c-1","principal":"clerk"}"#,
            "2030-01-02T03:04:05.000000Z",
        ];
        let mut expected = Vec::new();
        for field in fields {
            expected.extend_from_slice(&(field.len() as u32).to_be_bytes());
            expected.extend_from_slice(field.as_bytes());
        }
        assert_eq!(event.bytes(), expected);
    }

    /// A traceparent is covered like every other metadata key when present; absent, the
    /// metadata's canonical JSON (and so every hash written before the key existed) is as it was.
    #[test]
    fn a_traceparent_is_hashed_when_present_and_leaves_no_trace_when_absent() {
        let without = Metadata {
            principal: Some("clerk".into()),
            ..Metadata::default()
        };
        let mut text = Vec::new();
        canonical_json(&serde_json::to_value(&without).unwrap(), &mut text);
        assert_eq!(text, br#"{"principal":"clerk"}"#);
        let with = Metadata {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..without
        };
        text.clear();
        canonical_json(&serde_json::to_value(&with).unwrap(), &mut text);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"principal":"clerk","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#
        );
    }
}
