//! `verify`: fold every SKU's events and compare the result with the read models.
//!
//! The read models are read in one snapshot (one repeatable-read transaction) together with
//! their checkpoints. The log is then folded in position order, and each projection is compared
//! at the moment the fold passes its checkpoint, so a projection that is merely behind is never
//! reported as drift. While folding, every event is checked against its JSON Schema (the files
//! under `schemas/`, embedded) and decoded strictly with `SkuEvent::decode`, and each stream's
//! versions must follow 0, 1, 2… without a gap.
//!
//! The hash chain is checked in the same pass: each event's hash is recomputed from the hash
//! of the event before it and its canonical form, and the first link of a stream that does not
//! verify is named (SKU, version, expected and found hash). Within a stream the log holds
//! events in version order, so one pass suffices; a stream whose versions come out of order
//! (a row renumbered, deleted or inserted) is walked again in version order to name its first
//! broken link.

use crate::cli::{ReportFormat, VerifyArguments};
use crate::error::{ExitCodeName, ToolError};
use crate::output::events_per_second;
use crate::schemas::EventSchemas;
use crate::status::show;
use ledger_application::anchor::{check_anchor, AnchorCheck};
use ledger_application::chain::{BrokenLink, ChainWalk};
use ledger_application::store::READ_EVENTS_MAX;
use ledger_domain::{EventHash, Position, RecordedEvent};
use ledger_domain::{Sku, SkuEvent, SkuState};
use ledger_projections::verification::{StockFigures, VerificationSnapshot};
use ledger_projections::LogPosition;
use ledger_projections::{reservations, stock_levels, ReadModels};
use ledger_startup::Backends;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::Instant;

/// Differences the report lists in detail; the rest are only counted. A badly broken store
/// could otherwise print millions of lines.
pub const DIFFERENCES_SHOWN_MAX: usize = 1_000;

/// SKUs the report names; beyond this only their number is given.
pub const SKUS_NAMED_MAX: usize = 1_000;

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// The SKU concerned, when the difference concerns one.
    pub sku: Option<String>,
    /// What disagrees: `stock_level`, `reservation`, `version_gap`, `schema`, `undecodable`,
    /// `invariant`, `read_model_missing`, `chain` (a link of the hash chain) or `anchor` (the
    /// log does not match the anchor given).
    pub kind: &'static str,
    pub detail: String,
    /// For `chain`: the version of the first event whose hash does not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// For `chain`: the hash recomputed from the event before it and its canonical form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_hash: Option<EventHash>,
    /// For `chain`: the hash stored with the event (`null`: none stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found_hash: Option<Option<EventHash>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub skus_checked: u64,
    pub events_checked: u64,
    pub duration_ms: u64,
    pub events_per_second: f64,
    pub stock_levels_checkpoint: Option<LogPosition>,
    pub reservations_checkpoint: Option<LogPosition>,
    /// Events stored without a hash (EventStoreDB events written before the chain); the
    /// chain runs through them with their hashes recomputed.
    pub events_without_hash: u64,
    pub differences_total: u64,
    /// The first [`DIFFERENCES_SHOWN_MAX`] differences.
    pub differences: Vec<Difference>,
    /// The SKUs with a difference, sorted, at most [`SKUS_NAMED_MAX`].
    pub skus_with_differences: Vec<String>,
    /// The log compared with an anchor, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorCheck>,
}

impl VerifyReport {
    /// Add the comparison with an anchor; a log that does not match it is a difference.
    fn add_anchor_check(&mut self, check: AnchorCheck) {
        if !check.holds() {
            self.differences_total += 1;
            let detail = format!(
                "the log at or before position {} does not match the anchor taken at {}: \
                 Merkle root {} over {} streams and {} events then, {} over {} streams and {} \
                 events now",
                check
                    .anchor
                    .log_position
                    .map_or_else(|| "(empty)".to_owned(), |p| p.to_string()),
                check.anchor.taken_at.to_rfc3339(),
                check.anchor.merkle_root,
                check.anchor.streams,
                check.anchor.events,
                check.merkle_root,
                check.streams,
                check.events,
            );
            if self.differences.len() < DIFFERENCES_SHOWN_MAX {
                self.differences.push(Difference {
                    sku: None,
                    kind: "anchor",
                    detail,
                    version: None,
                    expected_hash: None,
                    found_hash: None,
                });
            }
        }
        self.anchor = Some(check);
    }
}

pub async fn run(
    backends: &Backends,
    arguments: VerifyArguments,
) -> Result<ExitCodeName, ToolError> {
    let sku = arguments
        .sku
        .as_deref()
        .map(|value| {
            Sku::parse(value).map_err(|e| ToolError::Usage(format!("invalid SKU {value:?}: {e}")))
        })
        .transpose()?;
    let anchor = arguments
        .anchor
        .as_deref()
        .map(crate::anchor::read_anchor)
        .transpose()?;
    let mut report = verify(backends, sku.as_ref()).await?;
    if let Some(anchor) = anchor {
        let check = check_anchor(backends.store.as_ref(), &anchor).await?;
        report.add_anchor_check(check);
    }
    let mut out = std::io::stdout().lock();
    match arguments.format {
        ReportFormat::Json => {
            let text = serde_json::to_string_pretty(&report).expect("the report serialises");
            writeln!(out, "{text}")?;
        }
        ReportFormat::Table => write_table(&mut out, &report)?,
    }
    Ok(if report.differences_total == 0 {
        ExitCodeName::Ok
    } else {
        ExitCodeName::Failed
    })
}

fn write_table<W: Write>(out: &mut W, report: &VerifyReport) -> std::io::Result<()> {
    writeln!(
        out,
        "verified {} SKUs, {} events in {:.2} s ({:.0} events/s); read models at stock_levels {}, \
         reservations {}",
        report.skus_checked,
        report.events_checked,
        report.duration_ms as f64 / 1000.0,
        report.events_per_second,
        show(report.stock_levels_checkpoint.as_ref()),
        show(report.reservations_checkpoint.as_ref()),
    )?;
    if report.differences_total == 0 {
        return writeln!(
            out,
            "OK: every hash chain verifies{} and the read models agree with the events",
            if report.anchor.is_some() {
                ", the log matches the anchor"
            } else {
                ""
            }
        );
    }
    writeln!(
        out,
        "DRIFT: {} differences in {} SKUs",
        report.differences_total,
        report.skus_with_differences.len()
    )?;
    for difference in &report.differences {
        writeln!(
            out,
            "  {:<24} {:<18} {}",
            difference.sku.as_deref().unwrap_or("-"),
            difference.kind,
            difference.detail
        )?;
    }
    if report.differences_total > report.differences.len() as u64 {
        writeln!(
            out,
            "  … and {} more",
            report.differences_total - report.differences.len() as u64
        )?;
    }
    writeln!(
        out,
        "SKUs with differences: {}",
        report.skus_with_differences.join(", ")
    )
}

/// Verify one SKU, or all when `sku` is `None`.
pub async fn verify(backends: &Backends, sku: Option<&Sku>) -> Result<VerifyReport, ToolError> {
    let snapshot = ReadModels::new(backends.database().clone())
        .verification_snapshot(sku)
        .await?;
    // Taken after the snapshot, so both checkpoints lie at or before it.
    let head = backends.store.head_position().await?;
    let started = Instant::now();
    let mut fold = Fold::new(snapshot);
    let store = backends.store.as_ref();
    match sku {
        Some(sku) => {
            let stream = sku.stream();
            let mut from = 0;
            'stream: loop {
                let page = store.read_stream(&stream, from, READ_EVENTS_MAX).await?;
                for recorded in &page {
                    if head.is_none_or(|head| recorded.position > head) {
                        break 'stream;
                    }
                    fold.event(recorded);
                }
                if (page.len() as u64) < READ_EVENTS_MAX {
                    break;
                }
                from += page.len() as u64;
            }
            if fold.states.is_empty() && !fold.has_rows() {
                return Err(ToolError::NotFound(format!(
                    "unknown SKU {sku}: it has no events and no read model rows"
                )));
            }
        }
        None => {
            let mut after = None;
            'log: loop {
                let page = store.read_all(after, READ_EVENTS_MAX).await?;
                for recorded in &page {
                    if head.is_none_or(|head| recorded.position > head) {
                        break 'log;
                    }
                    fold.event(recorded);
                }
                match page.last() {
                    Some(last) if (page.len() as u64) == READ_EVENTS_MAX => {
                        after = Some(last.position)
                    }
                    _ => break,
                }
            }
        }
    }
    for sku in fold.streams_to_walk() {
        let link = first_broken_link(store, &sku).await?;
        if let Some(broken) = link {
            fold.broken_link(&sku, broken);
        }
    }
    fold.finish();
    let duration = started.elapsed();
    Ok(fold.report(duration))
}

/// The first link of `sku`'s chain that does not verify, read in version order.
async fn first_broken_link(
    store: &dyn ledger_application::EventStore,
    sku: &Sku,
) -> Result<Option<BrokenLink>, ToolError> {
    let stream = sku.stream();
    let mut walk = ChainWalk::new(&stream);
    let mut from = 0;
    loop {
        let page = store.read_stream(&stream, from, READ_EVENTS_MAX).await?;
        for recorded in &page {
            if let Err(broken) = walk.step(recorded) {
                return Ok(Some(broken));
            }
        }
        match page.last() {
            Some(last) if (page.len() as u64) == READ_EVENTS_MAX => from = last.version + 1,
            _ => return Ok(None),
        }
    }
}

/// Where the check of one SKU's chain stands in the pass over the log.
enum ChainCheck {
    /// Every link so far verified; the walk goes on.
    Walking(ChainWalk),
    /// A broken link was reported; the rest of the stream is not checked.
    Broken,
    /// Versions came out of order: walked again in version order after the pass.
    OutOfOrder,
}

/// The fold of the log, with the differences found so far.
struct Fold {
    schemas: EventSchemas,
    states: HashMap<Sku, SkuState>,
    chains: HashMap<Sku, ChainCheck>,
    events_without_hash: u64,
    snapshot: VerificationSnapshot,
    stock_compared: bool,
    reservations_compared: bool,
    events_checked: u64,
    differences_total: u64,
    differences: Vec<Difference>,
    skus_with_differences: BTreeSet<String>,
}

impl Fold {
    fn new(snapshot: VerificationSnapshot) -> Self {
        let mut fold = Self {
            schemas: EventSchemas::compile(),
            states: HashMap::new(),
            chains: HashMap::new(),
            events_without_hash: 0,
            stock_compared: false,
            reservations_compared: false,
            events_checked: 0,
            differences_total: 0,
            differences: Vec::new(),
            skus_with_differences: BTreeSet::new(),
            snapshot,
        };
        for name in fold.snapshot.missing.clone() {
            fold.differ(
                None,
                "read_model_missing",
                format!("the live schema of {name} does not exist; run the projector or a rebuild"),
            );
        }
        fold.stock_compared = fold.snapshot.missing.contains(&stock_levels::NAME);
        fold.reservations_compared = fold.snapshot.missing.contains(&reservations::NAME);
        fold
    }

    fn has_rows(&self) -> bool {
        !self.snapshot.stock_rows.is_empty() || !self.snapshot.reservation_rows.is_empty()
    }

    fn differ(&mut self, sku: Option<&str>, kind: &'static str, detail: String) {
        self.note(Difference {
            sku: sku.map(str::to_owned),
            kind,
            detail,
            version: None,
            expected_hash: None,
            found_hash: None,
        });
    }

    fn note(&mut self, difference: Difference) {
        self.differences_total += 1;
        if let Some(sku) = &difference.sku {
            if self.skus_with_differences.len() < SKUS_NAMED_MAX {
                self.skus_with_differences.insert(sku.clone());
            }
        }
        if self.differences.len() < DIFFERENCES_SHOWN_MAX {
            self.differences.push(difference);
        }
    }

    /// Report `sku`'s first broken link.
    fn broken_link(&mut self, sku: &Sku, broken: BrokenLink) {
        self.chains.insert(sku.clone(), ChainCheck::Broken);
        self.note(Difference {
            sku: Some(sku.as_str().to_owned()),
            kind: "chain",
            detail: broken.to_string(),
            version: Some(broken.version),
            expected_hash: Some(broken.expected),
            found_hash: Some(broken.found),
        });
    }

    /// The SKUs whose versions came out of order, to walk again in version order.
    fn streams_to_walk(&self) -> Vec<Sku> {
        let mut skus: Vec<Sku> = self
            .chains
            .iter()
            .filter(|(_, check)| matches!(check, ChainCheck::OutOfOrder))
            .map(|(sku, _)| sku.clone())
            .collect();
        skus.sort();
        skus
    }

    /// Check `recorded`'s link in its SKU's chain (see the module's documentation).
    fn link(&mut self, sku: &Sku, recorded: &RecordedEvent, in_order: bool) {
        let check = self
            .chains
            .entry(sku.clone())
            .or_insert_with(|| ChainCheck::Walking(ChainWalk::new(&recorded.stream)));
        let ChainCheck::Walking(walk) = check else {
            return;
        };
        if !in_order {
            *check = ChainCheck::OutOfOrder;
            return;
        }
        let without_hash = walk.events_without_hash;
        let outcome = walk.step(recorded);
        self.events_without_hash += walk.events_without_hash - without_hash;
        if let Err(broken) = outcome {
            self.broken_link(sku, broken);
        }
    }

    /// Fold one event, comparing first any projection whose checkpoint lies before it.
    fn event(&mut self, recorded: &RecordedEvent) {
        if !self.stock_compared && passes(self.snapshot.stock_checkpoint, recorded.position) {
            self.compare_stock_levels();
        }
        if !self.reservations_compared
            && passes(self.snapshot.reservations_checkpoint, recorded.position)
        {
            self.compare_reservations();
        }
        // Events of other streams are not SKU events; the projections pass over them too.
        let Some(sku) = Sku::from_stream(&recorded.stream) else {
            return;
        };
        self.events_checked += 1;
        let expected = self
            .states
            .get(&sku)
            .and_then(|state| state.version)
            .map_or(0, |v| v + 1);
        self.link(&sku, recorded, recorded.version == expected);
        if recorded.version != expected {
            self.differ(
                Some(sku.as_str()),
                "version_gap",
                format!(
                    "expected version {expected}, found {} at position {}",
                    recorded.version, recorded.position
                ),
            );
        }
        if let Err(message) = self.schemas.check(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.data,
        ) {
            self.differ(
                Some(sku.as_str()),
                "schema",
                format!("version {}: {message}", recorded.version),
            );
        }
        let decoded = SkuEvent::decode(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.data,
        );
        let state = self
            .states
            .entry(sku.clone())
            .or_insert_with(|| SkuState::new(sku.clone()));
        match decoded {
            Ok(event) => state.apply(&event),
            Err(error) => {
                self.differ(
                    Some(sku.as_str()),
                    "undecodable",
                    format!("version {}: {error}", recorded.version),
                );
                return;
            }
        }
        // After a gap, continue from the version actually found so one gap is one difference.
        state.version = Some(recorded.version);
    }

    fn finish(&mut self) {
        if !self.stock_compared {
            self.compare_stock_levels();
        }
        if !self.reservations_compared {
            self.compare_reservations();
        }
        let mut broken = Vec::new();
        for (sku, state) in &self.states {
            if let Err(message) = state.check_invariants() {
                broken.push((sku.as_str().to_owned(), message));
            }
        }
        broken.sort();
        for (sku, message) in broken {
            self.differ(Some(&sku), "invariant", message);
        }
    }

    fn compare_stock_levels(&mut self) {
        self.stock_compared = true;
        let mut rows = std::mem::take(&mut self.snapshot.stock_rows);
        let mut found = Vec::new();
        for (sku, state) in &self.states {
            let Some(version) = state.version else {
                continue;
            };
            let folded = StockFigures {
                on_hand: state.on_hand,
                reserved: state.reserved,
                reorder_point: state.reorder_point,
                version,
            };
            match rows.remove(sku.as_str()) {
                None => found.push((
                    sku.as_str().to_owned(),
                    format!("no stock_levels row; the events say {}", describe(&folded)),
                )),
                Some(row) if row != folded => found.push((
                    sku.as_str().to_owned(),
                    format!(
                        "read model says {}; the events say {}",
                        describe(&row),
                        describe(&folded)
                    ),
                )),
                Some(_) => {}
            }
        }
        for (sku, row) in rows {
            found.push((
                sku,
                format!(
                    "stock_levels row without events at the checkpoint: {}",
                    describe(&row)
                ),
            ));
        }
        found.sort();
        for (sku, detail) in found {
            self.differ(Some(&sku), "stock_level", detail);
        }
    }

    fn compare_reservations(&mut self) {
        self.reservations_compared = true;
        let mut rows = std::mem::take(&mut self.snapshot.reservation_rows);
        let mut found = Vec::new();
        for (sku, state) in &self.states {
            for reservation in state.reservations.values() {
                let key = (sku.as_str().to_owned(), reservation.reservation_id.clone());
                let folded = (reservation.status.as_str().to_owned(), reservation.quantity);
                match rows.remove(&key) {
                    None => found.push((
                        key.0,
                        format!(
                            "reservation {} missing; the events say {} of {}",
                            key.1, folded.0, folded.1
                        ),
                    )),
                    Some(row) if row != folded => found.push((
                        key.0,
                        format!(
                            "reservation {}: read model says {} of {}; the events say {} of {}",
                            key.1, row.0, row.1, folded.0, folded.1
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
        for ((sku, id), (status, quantity)) in rows {
            found.push((
                sku,
                format!("reservation {id} ({status} of {quantity}) has no events"),
            ));
        }
        found.sort();
        for (sku, detail) in found {
            self.differ(Some(&sku), "reservation", detail);
        }
    }

    fn report(self, duration: std::time::Duration) -> VerifyReport {
        VerifyReport {
            skus_checked: self.states.len() as u64,
            events_checked: self.events_checked,
            duration_ms: duration.as_millis() as u64,
            events_per_second: events_per_second(self.events_checked, duration),
            events_without_hash: self.events_without_hash,
            stock_levels_checkpoint: self.snapshot.stock_checkpoint.map(Into::into),
            reservations_checkpoint: self.snapshot.reservations_checkpoint.map(Into::into),
            differences_total: self.differences_total,
            differences: self.differences,
            skus_with_differences: self.skus_with_differences.into_iter().collect(),
            anchor: None,
        }
    }
}

/// True when an event at `position` lies beyond `checkpoint` (every event does when the
/// projection has applied none).
fn passes(checkpoint: Option<Position>, position: Position) -> bool {
    checkpoint.is_none_or(|checkpoint| position > checkpoint)
}

fn describe(row: &StockFigures) -> String {
    format!(
        "on hand {}, reserved {}, reorder point {}, version {}",
        row.on_hand, row.reserved, row.reorder_point, row.version
    )
}
