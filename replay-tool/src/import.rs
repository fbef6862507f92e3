//! `import`: load an export (see [`crate::export`]) into an empty event store of either
//! backend, keeping every event's id, stream, version, type, data, metadata, recorded time and
//! hash; only the positions are the new store's own.
//!
//! The file is read twice. The first pass writes nothing: it checks that every line is an
//! event, that positions rise, that every stream starts at version 0 and that every hash chain
//! verifies (and, with an anchor, that the file's log at the anchor's position has the
//! anchor's Merkle root). Only then, and only into a store whose log is empty, does the second
//! pass append the events, checking the chains again as it goes (the file could have changed
//! between the passes).
//!
//! No special store path is needed: a new event already carries its recorded time and hash
//! (the writer decides both), and an append with an expected version puts it at the version
//! the file says. Events of a window of the file are grouped by stream and the streams'
//! appends run side by side, so within a window the new log may order events of different
//! streams differently from the old one; each stream's order, which is all that its chain
//! and its state depend on, is kept.

use crate::cli::ImportArguments;
use crate::error::{ExitCodeName, ToolError};
use crate::export::ExportedEvent;
use crate::output::events_per_second;
use crate::progress::Progress;
use futures::TryStreamExt;
use ledger_application::anchor::{Anchor, LogHeads};
use ledger_application::chain::ChainWalk;
use ledger_application::{EventStore, ExpectedVersion};
use ledger_domain::{NewEvent, Position, RecordedEvent};
use ledger_startup::Backends;
use serde::Serialize;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

/// Events of the file gathered before they are appended, grouped by stream. Bounds memory
/// (a few MB) and the size of one append: at most this many events go into one append,
/// well under the Postgres append limit, and under EventStoreDB's 1 MiB append for events of
/// up to a kilobyte.
pub const IMPORT_WINDOW_EVENTS: usize = 1_024;

/// Appends of one window in flight at once: enough to fill the store's group commit on a
/// log of many streams, few enough to stay within the tool's small connection pool.
pub const IMPORT_APPENDS_IN_FLIGHT: usize = 8;

/// Bytes read from the file at a time.
const INPUT_BUFFER_BYTES: usize = 256 * 1024;

/// How a refusal of the first pass ends.
const NOTHING_WRITTEN: &str = "nothing was written";

/// What a file holds, as its first pass found it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileCheck {
    pub events: u64,
    pub streams: u64,
    /// Events without a hash (exported from EventStoreDB events written before the chain):
    /// they are imported with the hash the chain gives them.
    pub events_without_hash: u64,
    pub last_position: Option<Position>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub file: FileCheck,
    pub appends: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

pub async fn run(
    backends: &Backends,
    arguments: ImportArguments,
) -> Result<ExitCodeName, ToolError> {
    let anchor = arguments
        .anchor
        .as_deref()
        .map(crate::anchor::read_anchor)
        .transpose()?;
    let mut progress = Progress::on_stderr("import", arguments.progress);
    let summary = import(
        backends.store.as_ref(),
        &arguments.file,
        anchor.as_ref(),
        &mut progress,
    )
    .await?;
    progress.finish(summary.file.events);
    let text = serde_json::to_string_pretty(&summary).expect("a summary serialises");
    println!("{text}");
    Ok(ExitCodeName::Ok)
}

/// Check `file` (and `anchor`), then load it into `store`, which must be empty.
pub async fn import<S: EventStore + ?Sized>(
    store: &S,
    file: &Path,
    anchor: Option<&Anchor>,
    progress: &mut Progress,
) -> Result<ImportSummary, ToolError> {
    let started = Instant::now();
    let checked = check_file(file, anchor)?;
    if let Some(head) = store.head_position().await? {
        return Err(ToolError::Failed(format!(
            "the event store is not empty (its log ends at {head}): import only into an empty \
             store; nothing was written"
        )));
    }
    let appends = load(store, file, progress).await?;
    let elapsed = started.elapsed();
    Ok(ImportSummary {
        events_per_second: events_per_second(checked.events, elapsed),
        file: checked,
        appends,
        seconds: elapsed.as_secs_f64(),
    })
}

/// The file's events in order, each with its line number.
fn lines(
    file: &Path,
) -> Result<impl Iterator<Item = Result<(u64, ExportedEvent), ToolError>>, ToolError> {
    let opened = std::fs::File::open(file)
        .map_err(|e| ToolError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let name = file.display().to_string();
    let reader = std::io::BufReader::with_capacity(INPUT_BUFFER_BYTES, opened);
    Ok(reader
        .lines()
        .enumerate()
        .filter(|(_, line)| !matches!(line, Ok(text) if text.trim().is_empty()))
        .map(move |(index, line)| {
            let number = index as u64 + 1;
            let text = line.map_err(|e| ToolError::Failed(format!("{name}:{number}: {e}")))?;
            let event = serde_json::from_str(&text).map_err(|e| {
                ToolError::Failed(format!("{name}:{number}: not an exported event: {e}"))
            })?;
            Ok((number, event))
        }))
}

/// The chains of a file's streams as read so far, checking that each starts at version 0.
struct Chains {
    walks: HashMap<String, ChainWalk>,
    events_without_hash: u64,
    /// What a refusal means for the store, said at the end of its message.
    consequence: &'static str,
}

impl Chains {
    fn new(consequence: &'static str) -> Self {
        Self {
            walks: HashMap::new(),
            events_without_hash: 0,
            consequence,
        }
    }

    /// Check the next event; returns the hash it is to be stored with.
    fn step(
        &mut self,
        file: &Path,
        line: u64,
        event: &RecordedEvent,
    ) -> Result<ledger_domain::EventHash, ToolError> {
        if !self.walks.contains_key(&event.stream) {
            if event.version != 0 {
                return Err(ToolError::Failed(format!(
                    "{}:{line}: stream {} starts at version {} in the file: an import needs \
                     every stream from its first event (export with --all, without --from); \
                     {}",
                    file.display(),
                    event.stream,
                    event.version,
                    self.consequence
                )));
            }
            self.walks
                .insert(event.stream.clone(), ChainWalk::new(&event.stream));
        }
        let walk = self
            .walks
            .get_mut(&event.stream)
            .expect("every stream read has a walk");
        let without_hash = walk.events_without_hash;
        walk.step(event).map_err(|broken| {
            ToolError::Failed(format!(
                "{}:{line}: the hash chain of {} is broken: {broken}; {}",
                file.display(),
                broken.stream,
                self.consequence
            ))
        })?;
        self.events_without_hash += walk.events_without_hash - without_hash;
        Ok(walk.head())
    }
}

/// The first pass: read the whole file, write nothing.
pub fn check_file(file: &Path, anchor: Option<&Anchor>) -> Result<FileCheck, ToolError> {
    let mut chains = Chains::new(NOTHING_WRITTEN);
    let mut heads = LogHeads::default();
    let mut checked = FileCheck::default();
    for line in lines(file)? {
        let (number, exported) = line?;
        let position = exported.position;
        if position.is_known() && checked.last_position.is_some_and(|last| position <= last) {
            return Err(ToolError::Failed(format!(
                "{}:{number}: position {position} does not follow {}: the lines are not in \
                 log order; nothing was written",
                file.display(),
                checked.last_position.expect("checked above")
            )));
        }
        let event = RecordedEvent::from(exported);
        chains.step(file, number, &event)?;
        if let Some(anchor) = anchor {
            if anchor.log_position.is_some_and(|at| position <= at) {
                heads.add(&event);
            }
        }
        checked.events += 1;
        if position.is_known() {
            checked.last_position = Some(position);
        }
    }
    checked.streams = chains.walks.len() as u64;
    checked.events_without_hash = chains.events_without_hash;
    if let Some(anchor) = anchor {
        let root = heads.merkle_root();
        if root != anchor.merkle_root
            || heads.streams() != anchor.streams
            || heads.events() != anchor.events
        {
            return Err(ToolError::Failed(format!(
                "{}: the events at or before the anchor's position {} do not match the anchor: \
                 Merkle root {} over {} streams and {} events in the file, {} over {} streams \
                 and {} events in the anchor; nothing was written",
                file.display(),
                anchor
                    .log_position
                    .map_or_else(|| "(empty)".to_owned(), |p| p.to_string()),
                root,
                heads.streams(),
                heads.events(),
                anchor.merkle_root,
                anchor.streams,
                anchor.events
            )));
        }
    }
    Ok(checked)
}

/// One stream's events of a window, to be appended after `first_version - 1`.
struct StreamBatch {
    stream: String,
    first_version: u64,
    events: Vec<NewEvent>,
}

/// The second pass: append the file's events window by window; returns the appends made.
async fn load<S: EventStore + ?Sized>(
    store: &S,
    file: &Path,
    progress: &mut Progress,
) -> Result<u64, ToolError> {
    // The file was checked whole before; a difference now means it changed since.
    let mut chains = Chains::new(
        "the file changed while it was imported and the import stopped part way: import it \
         again into a new empty store",
    );
    let mut window: Vec<StreamBatch> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut buffered = 0usize;
    let mut written = 0u64;
    let mut appends = 0u64;
    for line in lines(file)? {
        let (number, exported) = line?;
        let event = RecordedEvent::from(exported);
        let hash = chains.step(file, number, &event)?;
        let slot = *index.entry(event.stream.clone()).or_insert_with(|| {
            window.push(StreamBatch {
                stream: event.stream.clone(),
                first_version: event.version,
                events: Vec::new(),
            });
            window.len() - 1
        });
        window[slot].events.push(NewEvent {
            event_id: event.event_id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            data: event.data,
            metadata: event.metadata,
            recorded_at: event.recorded_at,
            hash,
        });
        buffered += 1;
        if buffered == IMPORT_WINDOW_EVENTS {
            appends += append_window(store, std::mem::take(&mut window)).await?;
            index.clear();
            written += buffered as u64;
            buffered = 0;
            progress.update(written);
        }
    }
    appends += append_window(store, window).await?;
    progress.update(written + buffered as u64);
    Ok(appends)
}

/// Append every stream's batch of a window, a few at once; returns the appends made.
async fn append_window<S: EventStore + ?Sized>(
    store: &S,
    window: Vec<StreamBatch>,
) -> Result<u64, ToolError> {
    let appends = window.len() as u64;
    futures::stream::iter(window.into_iter().map(Ok))
        .try_for_each_concurrent(IMPORT_APPENDS_IN_FLIGHT, |batch| async move {
            let expected = match batch.first_version {
                0 => ExpectedVersion::NoStream,
                version => ExpectedVersion::Exact(version - 1),
            };
            let last_version = batch.first_version + batch.events.len() as u64 - 1;
            let result = store
                .append(&batch.stream, expected, batch.events)
                .await
                .map_err(|e| {
                    ToolError::from(e).with_context(&format!(
                        "appending {} from version {}",
                        batch.stream, batch.first_version
                    ))
                })?;
            if result.deduplicated || result.version != last_version {
                return Err(ToolError::Failed(format!(
                    "appending {} from version {}: the store answered version {}{}, not {}",
                    batch.stream,
                    batch.first_version,
                    result.version,
                    if result.deduplicated {
                        " (events already stored)"
                    } else {
                        ""
                    },
                    last_version
                )));
            }
            Ok(())
        })
        .await?;
    Ok(appends)
}
