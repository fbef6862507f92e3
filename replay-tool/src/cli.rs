//! The arguments of `ledger-replay`, with the examples and exit codes `--help` shows.

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ledger_startup::BackendArguments;

const AFTER_HELP: &str = "\
Backends (the same choice as the API):
  EVENTSTORE_URL set      events from EventStoreDB/KurrentDB, read models from DATABASE_URL
                          (or the embedded data folder)
  DATABASE_URL set        events and read models in that PostgreSQL database
  neither                 the embedded cluster under --data-dir (LEDGER_DATA_DIR, default
                          .ledger-data), database `ledger`; started if it is not running and
                          stopped again afterwards, left alone if it was running already

Examples:
  ledger-replay history SHOE-42
  ledger-replay history SHOE-42 --as-of 2030-01-01T12:00:00Z
  ledger-replay history SHOE-42 --at-version 10 --format json
  ledger-replay history SHOE-42 --format csv > shoe-42.csv
  ledger-replay verify --all
  ledger-replay verify --sku SHOE-42 --format json
  ledger-replay anchor --output anchor-2030-01-01.json
  ledger-replay verify --anchor anchor-2030-01-01.json
  ledger-replay verify-proof --proof shoe-42-proof.json --anchor anchor-2030-01-01.json
  ledger-replay export --all --output ledger.ndjson
  ledger-replay export --sku SHOE-42 --from 8812/3 > shoe-42.ndjson
  ledger-replay import ledger.ndjson --anchor anchor-2030-01-01.json
  ledger-replay rebuild stock_levels --dry-run
  ledger-replay rebuild --all
  ledger-replay status
  DATABASE_URL=postgresql://ledger@db/ledger ledger-replay status --format json
  ledger-replay republish publish_rabbitmq --from 8812/3

Exit codes:
  0  success; verify found no difference
  1  verify found a difference (drift, version gap, schema violation, a broken hash chain,
     a log that no longer matches the anchor), a proof does not lead to the anchor, an import
     was refused (broken chain, anchor mismatch, a store that is not empty), or another failure
  2  usage error (unknown flag, bad SKU, bad time)
  3  unknown SKU (no events) or unknown projection
  4  event store or read model database unreachable
  5  rebuild interrupted; run the same command again to resume from its checkpoint";

const HISTORY_AFTER_HELP: &str = "\
Formats:
  table  one line per event, sized to the terminal (COLUMNS, default 100)
  json   {\"sku\", \"as_of\", \"at_version\", \"entries\": [...], \"state\": {...}}; each entry
         has every field of the API's history entries, in the same order
  csv    a header line, then one line per event; columns, in this order:
         version, position, event_id, recorded_at, event_type, schema_version, movement,
         on_hand_change, reserved_change, on_hand_after, reserved_after, available_after,
         reorder_point_after, reservation_id, order_id, reason, reference, principal,
         correlation_id, causation_id, data (the event's JSON), location, hash (the
         event's hash chain link, 64 hexadecimal digits; location and hash were added last,
         so older readers of the earlier columns keep working); a text cell that a
         spreadsheet would run as a formula (starting =, +, -, @, tab) gets a leading '

Examples:
  ledger-replay history SHOE-42
  ledger-replay history SHOE-42 --as-of 2030-01-01T12:00:00Z --format json
  ledger-replay history SHOE-42 --at-version 3 --format csv
  ledger-replay history SHOE-42 --location store-12";

const VERIFY_AFTER_HELP: &str = "\
Folds every SKU's events (or one SKU's) and compares the result with the read models at their
checkpoints: stock levels (on hand, reserved, reorder point, version) and reservations (status,
quantity). Also checks that each stream's versions have no gaps, that every event matches
its JSON Schema under schemas/, and that every stream's hash chain verifies: the first broken
link of a stream is named with its version, the hash recomputed and the hash stored. With
--anchor FILE, also recomputes the anchor's Merkle root from the events at or before its log
position: a difference there shows an edit even when its author recomputed the chains. Exits 1
on any difference.

Examples:
  ledger-replay verify
  ledger-replay verify --sku SHOE-42
  ledger-replay verify --all --format json
  ledger-replay verify --anchor anchor-2030-01-01.json";

const ANCHOR_AFTER_HELP: &str = "\
Prints a digest of the whole log now: a Merkle root over every stream's (name, version, head
hash), streams sorted by name, with the log position it covers and the time. Keep it outside
the system (print it, mail it, store it elsewhere); `verify --anchor FILE` later tells whether
anything at or before that position changed since. The README, \"Tamper evidence\", specifies
the digest byte for byte.

Examples:
  ledger-replay anchor
  ledger-replay anchor --output anchor-2030-01-01.json";

const VERIFY_PROOF_AFTER_HELP: &str = "\
Checks, without opening any store, that a SKU's inclusion proof (the JSON the API serves at
GET /v1/skus/{sku}/anchor-proof, saved to a file) leads to the Merkle root of an anchor kept
earlier: the proof's leaf is the stream's (name, version, head hash), and its sibling hashes
lead from there to the anchor's root. Ask the API for the proof at the kept anchor's position
(`?log_position=COMMIT/PREPARE`). Exits 1 when it does not.

Examples:
  ledger-replay verify-proof --proof shoe-42-proof.json --anchor anchor-2030-01-01.json";

const EXPORT_AFTER_HELP: &str = "\
Writes the log (or one SKU's stream) as NDJSON: one event per line, with its log position,
event id, stream, version, type, schema version, data, metadata, recorded time (six fraction
digits, as the hash covers it) and hash. Reads the store a page at a time, so memory stays flat
whatever the log's length. With --output the file appears only once complete. A progress line
goes to standard error when it is a terminal (or with --progress).

Examples:
  ledger-replay export --all --output ledger.ndjson
  ledger-replay export --from 8812/3 --to 9143/7 > slice.ndjson
  ledger-replay export --sku SHOE-42";

const IMPORT_AFTER_HELP: &str = "\
Loads an export into an EMPTY event store (PostgreSQL, or EventStoreDB with EVENTSTORE_URL),
keeping every event's id, version, recorded time, metadata and hash. The whole file is checked
first and nothing is written unless every stream starts at version 0, every hash chain
verifies and, with --anchor, the file's log at the anchor's position has the anchor's Merkle
root. A store that already holds events is refused. Prints a JSON summary.

Examples:
  ledger-replay import ledger.ndjson
  EVENTSTORE_URL='esdb://localhost:2113?tls=false' ledger-replay import ledger.ndjson \\
      --anchor anchor-2030-01-01.json";

const REBUILD_AFTER_HELP: &str = "\
Builds the projection into its shadow schema while the live one keeps serving, catches up with
the head of the log, then swaps the two in one transaction. Interrupted (Ctrl-C), it stops after
the current page and exits 5; running it again continues from the shadow's checkpoint.

Examples:
  ledger-replay rebuild stock_levels
  ledger-replay rebuild --all --dry-run
  ledger-replay rebuild reservations --restart --quiet";

const REPUBLISH_AFTER_HELP: &str = "\
Makes an integration event publisher (publish_rabbitmq, publish_nats) publish again, on its next
run, every event from a position of the log on (or from the start): for a consumer that lost
messages, or a new one that needs the history. The events before the position are folded again
without publishing, so the messages published again carry the same ids, balances and alerts as
the first time; consumers drop the ones they have. Refused while the publisher runs: stop the
process that runs it (the API or ledger-projector with a broker configured) first.

Examples:
  ledger-replay republish publish_nats
  ledger-replay republish publish_rabbitmq --from 8812/3";

/// Replay, verify and rebuild the inventory ledger from its event store.
#[derive(Debug, Parser)]
#[command(name = "ledger-replay", version, after_help = AFTER_HELP)]
pub struct Arguments {
    #[command(flatten)]
    pub backend: BackendArguments,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every movement of one SKU, replayed from the event store, with the balances after each.
    #[command(after_help = HISTORY_AFTER_HELP)]
    History(HistoryArguments),
    /// Recompute every SKU from its events and compare with the read models; check the hash
    /// chains (and, with --anchor, the log against an anchor).
    #[command(after_help = VERIFY_AFTER_HELP)]
    Verify(VerifyArguments),
    /// A digest of the whole log now, for an auditor to keep outside the system.
    #[command(after_help = ANCHOR_AFTER_HELP)]
    Anchor(AnchorArguments),
    /// Check a SKU's inclusion proof (from the API) against an anchor kept earlier, offline.
    #[command(after_help = VERIFY_PROOF_AFTER_HELP)]
    VerifyProof(VerifyProofArguments),
    /// The log, or one SKU's stream, as NDJSON with every event's position and hash.
    #[command(after_help = EXPORT_AFTER_HELP)]
    Export(ExportArguments),
    /// Load an export into an empty event store, after checking its chains (and an anchor).
    #[command(after_help = IMPORT_AFTER_HELP)]
    Import(ImportArguments),
    /// Rebuild read models from the start of the log without downtime.
    #[command(after_help = REBUILD_AFTER_HELP)]
    Rebuild(RebuildArguments),
    /// Every projection's checkpoint, the head of the log, the lag and the last error.
    Status(StatusArguments),
    /// Make an integration event publisher publish again from a position of the log.
    #[command(after_help = REPUBLISH_AFTER_HELP)]
    Republish(RepublishArguments),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct HistoryArguments {
    /// The SKU (product code).
    pub sku: String,
    /// Stop at this moment (RFC 3339): events recorded at or before it, and the state then.
    #[arg(long, value_parser = parse_moment, conflicts_with = "at_version")]
    pub as_of: Option<DateTime<Utc>>,
    /// Stop at this stream version (inclusive), and show the state then.
    #[arg(long)]
    pub at_version: Option<u64>,
    /// Only the movements at this location (a store, a warehouse), each with that location's
    /// balances after it instead of the SKU's; the closing state is still the SKU's.
    #[arg(long)]
    pub location: Option<String>,
    #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
    pub format: HistoryFormat,
}

#[derive(Debug, Args)]
pub struct VerifyArguments {
    /// Verify this SKU only.
    #[arg(long, conflicts_with = "all")]
    pub sku: Option<String>,
    /// Verify every SKU (the default).
    #[arg(long)]
    pub all: bool,
    /// Also check the log against an anchor taken earlier with `ledger-replay anchor`.
    #[arg(long, value_name = "FILE", conflicts_with = "sku")]
    pub anchor: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct AnchorArguments {
    /// Also write the anchor (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyProofArguments {
    /// The inclusion proof (JSON, as the API serves it).
    #[arg(long, value_name = "FILE")]
    pub proof: std::path::PathBuf,
    /// The anchor kept earlier (as `ledger-replay anchor --output` writes it).
    #[arg(long, value_name = "FILE")]
    pub anchor: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArguments {
    /// Export this SKU's stream only, in version order.
    #[arg(long, conflicts_with = "all")]
    pub sku: Option<String>,
    /// Export the whole log, in position order (the default).
    #[arg(long)]
    pub all: bool,
    /// Only events at or after this position (COMMIT/PREPARE).
    #[arg(long)]
    pub from: Option<ledger_domain::Position>,
    /// Only events at or before this position (COMMIT/PREPARE).
    #[arg(long)]
    pub to: Option<ledger_domain::Position>,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Show the progress line even when standard error is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

#[derive(Debug, Args)]
pub struct ImportArguments {
    /// The export to load (NDJSON, as `export` writes it).
    pub file: std::path::PathBuf,
    /// Also require the file's log at this anchor's position to have the anchor's root.
    #[arg(long, value_name = "FILE")]
    pub anchor: Option<std::path::PathBuf>,
    /// Show the progress line even when standard error is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

#[derive(Debug, Args)]
pub struct RebuildArguments {
    /// The projection: stock_levels, reservations, stock_movements or low_stock_alerts.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub projection: Option<String>,
    /// Rebuild every projection, one after the other.
    #[arg(long)]
    pub all: bool,
    /// Build and catch up the shadow schema and compare row counts, but swap nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Drop a leftover shadow schema instead of resuming it.
    #[arg(long)]
    pub restart: bool,
    /// No progress output; only the summary.
    #[arg(long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct StatusArguments {
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct RepublishArguments {
    /// The publisher: publish_rabbitmq or publish_nats.
    pub publisher: String,
    /// The first event to publish again, as COMMIT/PREPARE (positions as `status` and the
    /// history show them); the start of the log when left out.
    #[arg(long)]
    pub from: Option<ledger_domain::Position>,
}

fn parse_moment(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|moment| moment.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time (e.g. 2030-01-01T12:00:00Z): {e}"))
}
