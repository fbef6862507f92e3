//! `export`: the log (or one SKU's stream) as NDJSON, one event per line with its position and
//! hash, streamed page by page so that memory stays flat whatever the log's length.
//!
//! A line is a JSON object with the fields of the hash chain's canonical form, named and
//! written as the README's audit script reads them (the recorded time with exactly six
//! fraction digits), plus the event's log position: an exported file can be checked without
//! this tool, and `import` loads it into an empty store.

use crate::cli::ExportArguments;
use crate::error::{ExitCodeName, ToolError};
use crate::output::events_per_second;
use crate::progress::Progress;
use chrono::{DateTime, Utc};
use ledger_application::store::READ_EVENTS_MAX;
use ledger_application::EventStore;
use ledger_domain::chain::recorded_time_text;
use ledger_domain::{EventHash, Metadata, Position, RecordedEvent, Sku};
use ledger_startup::Backends;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io::Write;
use std::time::Instant;

/// Bytes buffered before the output is written: large enough that a page of events costs a
/// few writes, small enough to be nothing beside a page of events in memory.
pub const OUTPUT_BUFFER_BYTES: usize = 256 * 1024;

/// One line of an export: an event as stored, with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEvent {
    /// The event's position in the exporting store's log (a stream read from an EventStoreDB
    /// server older than 21 has none: the maximum value in both parts).
    pub position: Position,
    pub event_id: uuid::Uuid,
    pub stream: String,
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: Metadata,
    /// As the hash covers it: RFC 3339, UTC, six fraction digits.
    #[serde(
        serialize_with = "write_recorded_time",
        deserialize_with = "read_recorded_time"
    )]
    pub recorded_at: DateTime<Utc>,
    /// The hash stored with the event (`null`: stored without one, before the chain).
    pub hash: Option<EventHash>,
}

impl From<RecordedEvent> for ExportedEvent {
    fn from(event: RecordedEvent) -> Self {
        Self {
            position: event.position,
            event_id: event.event_id,
            stream: event.stream,
            version: event.version,
            event_type: event.event_type,
            schema_version: event.schema_version,
            data: event.data,
            metadata: event.metadata,
            recorded_at: event.recorded_at,
            hash: event.hash,
        }
    }
}

impl From<ExportedEvent> for RecordedEvent {
    fn from(event: ExportedEvent) -> Self {
        Self {
            event_id: event.event_id,
            stream: event.stream,
            version: event.version,
            position: event.position,
            event_type: event.event_type,
            schema_version: event.schema_version,
            data: event.data,
            metadata: event.metadata,
            recorded_at: event.recorded_at,
            hash: event.hash,
        }
    }
}

fn write_recorded_time<S: Serializer>(
    moment: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&recorded_time_text(*moment))
}

fn read_recorded_time<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|moment| moment.with_timezone(&Utc))
        .map_err(serde::de::Error::custom)
}

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportSelection {
    /// One SKU's stream, in version order; the whole log in position order when `None`.
    pub sku: Option<Sku>,
    /// Only events at or after this position.
    pub from: Option<Position>,
    /// Only events at or before this position.
    pub to: Option<Position>,
}

impl ExportSelection {
    fn wants(&self, position: Position) -> bool {
        self.from.is_none_or(|from| position >= from) && self.to.is_none_or(|to| position <= to)
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ExportSummary {
    pub events: u64,
    /// The position of the last event written.
    pub last_position: Option<Position>,
    pub seconds: f64,
    pub events_per_second: f64,
}

pub async fn run(
    backends: &Backends,
    arguments: ExportArguments,
) -> Result<ExitCodeName, ToolError> {
    let sku = arguments
        .sku
        .as_deref()
        .map(|value| {
            Sku::parse(value).map_err(|e| ToolError::Usage(format!("invalid SKU {value:?}: {e}")))
        })
        .transpose()?;
    let selection = ExportSelection {
        sku,
        from: arguments.from,
        to: arguments.to,
    };
    let mut progress = Progress::on_stderr("export", arguments.progress);
    let summary = match &arguments.output {
        Some(path) => {
            // Written to a file beside the target and moved over it once complete, so that an
            // interrupted export never looks like a finished one.
            let partial = path.with_extension("partial");
            let file = std::fs::File::create(&partial).map_err(|e| {
                ToolError::Failed(format!("cannot create {}: {e}", partial.display()))
            })?;
            let mut out = std::io::BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, file);
            let summary =
                export(backends.store.as_ref(), &selection, &mut out, &mut progress).await?;
            out.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|file| file.sync_all())
                .and_then(|()| std::fs::rename(&partial, path))
                .map_err(|e| ToolError::Failed(format!("cannot write {}: {e}", path.display())))?;
            summary
        }
        None => {
            let stdout = std::io::stdout().lock();
            let mut out = std::io::BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, stdout);
            let summary =
                export(backends.store.as_ref(), &selection, &mut out, &mut progress).await?;
            out.flush()?;
            summary
        }
    };
    progress.finish(summary.events);
    if arguments.output.is_some() || progress.shown() {
        eprintln!(
            "exported {} events in {:.1} s ({:.0} events/s){}",
            summary.events,
            summary.seconds,
            summary.events_per_second,
            summary
                .last_position
                .map_or_else(String::new, |p| format!(", up to position {p}"))
        );
    }
    if selection.sku.is_some() && summary.events == 0 {
        return Err(ToolError::NotFound(
            "the SKU has no events in the range asked for".to_owned(),
        ));
    }
    Ok(ExitCodeName::Ok)
}

/// Write the events `selection` names to `out`, one JSON line each, reading the store a page
/// at a time.
pub async fn export<S: EventStore + ?Sized, W: Write>(
    store: &S,
    selection: &ExportSelection,
    out: &mut W,
    progress: &mut Progress,
) -> Result<ExportSummary, ToolError> {
    let started = Instant::now();
    let mut events = 0u64;
    let mut last_position = None;
    let mut write_page = |page: Vec<RecordedEvent>| -> Result<bool, ToolError> {
        for event in page {
            if selection.to.is_some_and(|to| event.position > to) && selection.sku.is_none() {
                return Ok(false);
            }
            if !selection.wants(event.position) {
                continue;
            }
            last_position = Some(event.position);
            serde_json::to_writer(&mut *out, &ExportedEvent::from(event))
                .map_err(|e| ToolError::Failed(format!("cannot write the output: {e}")))?;
            out.write_all(b"\n")?;
            events += 1;
        }
        progress.update(events);
        Ok(true)
    };
    match &selection.sku {
        None => {
            let mut after = selection.from.and_then(position_before);
            loop {
                let page = store.read_all(after, READ_EVENTS_MAX).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.position);
                if !write_page(page)? {
                    break;
                }
            }
        }
        Some(sku) => {
            let stream = sku.stream();
            let mut from_version = 0;
            loop {
                let page = store
                    .read_stream(&stream, from_version, READ_EVENTS_MAX)
                    .await?;
                let Some(last) = page.last() else { break };
                from_version = last.version + 1;
                write_page(page)?;
            }
        }
    }
    let elapsed = started.elapsed();
    Ok(ExportSummary {
        events,
        last_position,
        seconds: elapsed.as_secs_f64(),
        events_per_second: events_per_second(events, elapsed),
    })
}

/// The position just before `position` in the log's order, so that a read strictly after it
/// starts at `position` itself; `None` for the very first position.
fn position_before(position: Position) -> Option<Position> {
    match (position.commit, position.prepare) {
        (0, 0) => None,
        (commit, 0) => Some(Position {
            commit: commit - 1,
            prepare: u64::MAX,
        }),
        (commit, prepare) => Some(Position {
            commit,
            prepare: prepare - 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_before_reads_from_the_position_itself() {
        let at = |commit, prepare| Position { commit, prepare };
        assert_eq!(position_before(at(0, 0)), None);
        assert_eq!(position_before(at(5, 0)), Some(at(4, u64::MAX)));
        assert_eq!(position_before(at(5, 3)), Some(at(5, 2)));
        assert!(position_before(at(5, 3)).unwrap() < at(5, 3));
    }
}
