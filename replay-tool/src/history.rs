//! `history`: a SKU's movements replayed from the event store through the same library
//! functions the API's history endpoint uses, so the two always agree.

use crate::cli::{HistoryArguments, HistoryFormat};
use crate::error::{ExitCodeName, ToolError};
use crate::output::{terminal_columns, truncate, write_csv_record, DETAIL_COLUMNS_MIN};
use chrono::{DateTime, SecondsFormat, Utc};
use ledger_application::history::{
    history, state_as_of, AsOf, HistoryEntry, HistoryFilter, HISTORY_PAGE_ENTRIES_MAX,
};
use ledger_domain::{Sku, SkuState};
use ledger_startup::Backends;
use serde::Serialize;
use std::io::{BufWriter, Write};

/// The CSV columns, in their documented and stable order.
pub const CSV_COLUMNS: &[&str] = &[
    "version",
    "position",
    "event_id",
    "recorded_at",
    "event_type",
    "schema_version",
    "movement",
    "on_hand_change",
    "reserved_change",
    "on_hand_after",
    "reserved_after",
    "available_after",
    "reorder_point_after",
    "reservation_id",
    "order_id",
    "reason",
    "reference",
    "principal",
    "correlation_id",
    "causation_id",
    "data",
    "location",
    "hash",
];

/// Width of the fixed columns of the table (everything but the detail column), separators
/// included; the detail column gets what the terminal has left.
const TABLE_FIXED_COLUMNS: usize = 81;

/// The state after the last event shown, as JSON prints it.
#[derive(Serialize)]
struct StateView<'a> {
    #[serde(flatten)]
    state: &'a SkuState,
    available: u64,
}

pub async fn run(
    backends: &Backends,
    arguments: HistoryArguments,
) -> Result<ExitCodeName, ToolError> {
    let sku = Sku::parse(&arguments.sku)
        .map_err(|e| ToolError::Usage(format!("invalid SKU {:?}: {e}", arguments.sku)))?;
    let location = match &arguments.location {
        Some(name) => Some(
            ledger_domain::LocationId::parse(name)
                .map_err(|e| ToolError::Usage(format!("invalid location {name:?}: {e}")))?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    let bound = match (arguments.as_of, arguments.at_version) {
        (Some(moment), _) => Some(AsOf::Time(moment)),
        (None, Some(version)) => Some(AsOf::Version(version)),
        (None, None) => None,
    };
    let stdout = std::io::stdout();
    let mut writer = EntryWriter {
        out: BufWriter::new(stdout.lock()),
        format: arguments.format,
        entries_written: 0,
        detail_columns: terminal_columns()
            .saturating_sub(TABLE_FIXED_COLUMNS)
            .max(DETAIL_COLUMNS_MIN),
    };
    let store = backends.store.as_ref();
    let mut after_version = None;
    let mut resume = None;
    let mut last_version = None;
    let mut started = false;
    'pages: loop {
        let filter = HistoryFilter {
            after_version,
            limit: HISTORY_PAGE_ENTRIES_MAX,
            location: location.clone(),
            ..HistoryFilter::default()
        };
        let page = history(store, &sku, &filter, resume.as_ref()).await?;
        if !started {
            if page.entries.is_empty() {
                return Err(ToolError::NotFound(match &location {
                    Some(location) => format!("SKU {sku} has no movements at {location}"),
                    None => format!("unknown SKU {sku}: it has no events"),
                }));
            }
            writer.begin(&sku, arguments.as_of, arguments.at_version)?;
            started = true;
        }
        for entry in &page.entries {
            if !included(bound, entry) {
                break 'pages;
            }
            writer.entry(entry)?;
            last_version = Some(entry.version);
        }
        match page.next {
            Some(cursor) => {
                after_version = Some(cursor.version);
                resume = Some(cursor);
            }
            None => break,
        }
    }
    // Bounded by the last entry shown, so events appended meanwhile cannot make the state
    // disagree with the entries above it.
    let state = match last_version {
        Some(version) => state_as_of(store, &sku, AsOf::Version(version)).await?,
        None => SkuState::new(sku.clone()),
    };
    writer.finish(&state, bound)?;
    Ok(ExitCodeName::Ok)
}

fn included(bound: Option<AsOf>, entry: &HistoryEntry) -> bool {
    match bound {
        None => true,
        Some(AsOf::Time(moment)) => entry.recorded_at <= moment,
        Some(AsOf::Version(version)) => entry.version <= version,
    }
}

struct EntryWriter<W: Write> {
    out: W,
    format: HistoryFormat,
    entries_written: u64,
    detail_columns: usize,
}

impl<W: Write> EntryWriter<W> {
    fn begin(
        &mut self,
        sku: &Sku,
        as_of: Option<DateTime<Utc>>,
        at_version: Option<u64>,
    ) -> Result<(), ToolError> {
        match self.format {
            HistoryFormat::Json => {
                // Streamed by hand so that a long history never has to sit in memory whole.
                write!(
                    self.out,
                    "{{\"sku\":{},\"as_of\":{},\"at_version\":{},\"entries\":[",
                    serde_json::to_string(sku.as_str()).expect("a string serialises"),
                    serde_json::to_string(&as_of.map(rfc3339)).expect("a time serialises"),
                    serde_json::to_string(&at_version).expect("a number serialises"),
                )?;
            }
            HistoryFormat::Csv => {
                let header: Vec<String> = CSV_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
                write_csv_record(&mut self.out, &header)?;
            }
            HistoryFormat::Table => {
                writeln!(self.out, "history of {sku} (from the event store)")?;
                writeln!(
                    self.out,
                    "{:>7} {:<19} {:<13} {:>14} {:>12} {:>9} DETAIL",
                    "VERSION", "RECORDED (UTC)", "MOVEMENT", "ON HAND", "RESERVED", "AVAILABLE"
                )?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, entry: &HistoryEntry) -> Result<(), ToolError> {
        match self.format {
            HistoryFormat::Json => {
                if self.entries_written > 0 {
                    write!(self.out, ",")?;
                }
                serde_json::to_writer(&mut self.out, entry)
                    .map_err(|e| ToolError::Failed(format!("cannot write JSON: {e}")))?;
            }
            HistoryFormat::Csv => write_csv_record(&mut self.out, &csv_fields(entry))?,
            HistoryFormat::Table => {
                let detail = truncate(&detail(entry), self.detail_columns);
                writeln!(
                    self.out,
                    "{:>7} {:<19} {:<13} {:>14} {:>12} {:>9} {}",
                    entry.version,
                    entry.recorded_at.format("%Y-%m-%d %H:%M:%S"),
                    entry.movement.unwrap_or("reorder point"),
                    with_change(entry.on_hand_after, entry.on_hand_change),
                    with_change(entry.reserved_after, entry.reserved_change),
                    entry.available_after,
                    detail,
                )?;
            }
        }
        self.entries_written += 1;
        Ok(())
    }

    fn finish(&mut self, state: &SkuState, bound: Option<AsOf>) -> Result<(), ToolError> {
        match self.format {
            HistoryFormat::Json => {
                let view = StateView {
                    state,
                    available: state.available(),
                };
                write!(self.out, "],\"state\":")?;
                serde_json::to_writer(&mut self.out, &view)
                    .map_err(|e| ToolError::Failed(format!("cannot write JSON: {e}")))?;
                writeln!(self.out, "}}")?;
            }
            HistoryFormat::Csv => {}
            HistoryFormat::Table => {
                let moment = match bound {
                    None => "now".to_owned(),
                    Some(AsOf::Time(moment)) => rfc3339(moment),
                    Some(AsOf::Version(version)) => format!("version {version}"),
                };
                let version = state
                    .version
                    .map_or_else(|| "none".to_owned(), |v| v.to_string());
                writeln!(
                    self.out,
                    "{} events; state as of {moment}: version {version}, on hand {}, reserved {}, \
                     available {}, reorder point {}, open reservations {}",
                    self.entries_written,
                    state.on_hand,
                    state.reserved,
                    state.available(),
                    state.reorder_point,
                    state.open_reservations().count(),
                )?;
            }
        }
        self.out.flush()?;
        Ok(())
    }
}

fn rfc3339(moment: DateTime<Utc>) -> String {
    moment.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn with_change(after: u64, change: i64) -> String {
    if change == 0 {
        after.to_string()
    } else {
        format!("{after} ({change:+})")
    }
}

fn detail(entry: &HistoryEntry) -> String {
    let mut parts = Vec::new();
    if entry.movement.is_none() {
        parts.push(format!("reorder point {}", entry.reorder_point_after));
    }
    if let Some(id) = &entry.reservation_id {
        parts.push(format!("res {id}"));
    }
    if let Some(order) = &entry.order_id {
        parts.push(format!("order {order}"));
    }
    if let Some(reason) = &entry.reason {
        parts.push(format!("\"{reason}\""));
    }
    if let Some(reference) = &entry.reference {
        parts.push(format!("ref {reference}"));
    }
    if let Some(principal) = &entry.principal {
        parts.push(format!("by {principal}"));
    }
    parts.join(" ")
}

fn optional(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn csv_fields(entry: &HistoryEntry) -> Vec<String> {
    vec![
        entry.version.to_string(),
        entry.position.to_string(),
        entry.event_id.to_string(),
        rfc3339(entry.recorded_at),
        entry.event_type.clone(),
        entry.schema_version.to_string(),
        entry.movement.unwrap_or_default().to_owned(),
        entry.on_hand_change.to_string(),
        entry.reserved_change.to_string(),
        entry.on_hand_after.to_string(),
        entry.reserved_after.to_string(),
        entry.available_after.to_string(),
        entry.reorder_point_after.to_string(),
        optional(&entry.reservation_id),
        optional(&entry.order_id),
        optional(&entry.reason),
        optional(&entry.reference),
        optional(&entry.principal),
        optional(&entry.correlation_id),
        optional(&entry.causation_id),
        entry.data.to_string(),
        optional(&entry.location),
        entry.hash.map(|hash| hash.to_hex()).unwrap_or_default(),
    ]
}
