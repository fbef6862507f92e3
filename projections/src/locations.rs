//! Stock per location: one row per (SKU, location) with that location's balances and the units
//! on their way to it, a row per transfer, a change counter per location that makes the ETag of
//! a location's stock list (a store polls it; an unchanged list costs one key lookup), and the
//! low-stock alerts of each (SKU, location).
//!
//! A location's alerts follow the domain's one low-stock rule ([`low_stock_change`]) applied to
//! that location's balances and reorder point, exactly as the SKU-wide alerts apply it to the
//! totals. Whether an alert is open needs no lookup: the rule opens one whenever available falls
//! below the reorder point and closes it whenever it is back, and it runs after every event that
//! moves the location's balances, so an alert is open exactly when the balances before the event
//! were below the reorder point.
//!
//! A batch loads the rows of the (SKU, location) pairs it touches, folds each event into every
//! location it concerns with the history's own fold ([`Balances::apply_at`], so the read model
//! cannot drift from the domain's arithmetic), and writes the rows back with one statement per
//! table.

use crate::convert::{stored_sku, to_i64, to_u64};
use crate::error::ProjectionError;
use crate::low_stock_alerts::{AlertCloseReason, AlertStatus};
use crate::projection::{Projection, SkuRecord};
use crate::read_models::{page_limit, ReadModels};
use crate::schema_name::SchemaName;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use ledger_domain::{
    low_stock_change, Balances, LocationId, LowStockChange, Sku, SkuEvent, TransferStatus,
};
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_postgres::Row;

pub const NAME: &str = "locations";

const DDL: &str = "
CREATE TABLE {schema}.location_stock (
    location         text        NOT NULL,
    sku              text        NOT NULL,
    on_hand          bigint      NOT NULL CHECK (on_hand >= 0),
    reserved         bigint      NOT NULL CHECK (reserved >= 0),
    available        bigint      GENERATED ALWAYS AS (on_hand - reserved) STORED,
    reorder_point    bigint      NOT NULL CHECK (reorder_point >= 0),
    in_transit       bigint      NOT NULL CHECK (in_transit >= 0),
    version          bigint      NOT NULL CHECK (version >= 0),
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (location, sku)
);

-- Serves 'everything below its reorder point at this location' without scanning healthy rows.
CREATE INDEX location_stock_below_reorder_point
    ON {schema}.location_stock (location, sku) WHERE on_hand - reserved < reorder_point;

CREATE TABLE {schema}.location_changes (
    location text   PRIMARY KEY,
    changes  bigint NOT NULL CHECK (changes > 0)
);

CREATE TABLE {schema}.transfers (
    sku                 text        NOT NULL,
    transfer_id         text        NOT NULL,
    from_location       text        NOT NULL,
    to_location         text        NOT NULL,
    quantity            bigint      NOT NULL CHECK (quantity > 0),
    reference           text,
    status              text        NOT NULL CHECK (status IN ('in_transit', 'received', 'cancelled')),
    quantity_received   bigint      CHECK (quantity_received >= 0),
    reason              text,
    dispatched_at       timestamptz NOT NULL,
    closed_at           timestamptz,
    dispatched_version  bigint      NOT NULL,
    closed_version      bigint,
    PRIMARY KEY (sku, transfer_id)
);

-- Serves 'transfers in transit' (to or from a location) without scanning ended transfers.
CREATE INDEX transfers_in_transit ON {schema}.transfers (dispatched_at, sku, transfer_id)
    WHERE status = 'in_transit';
";

/// Added after the first release: every (SKU, location)'s low-stock alerts. Alerts before this
/// step were never recorded, so the step empties the read model and rewinds its checkpoint: the
/// runner folds the log again from its start (the ETag counters come out the same, since they
/// count the same events).
const ALERTS_STEP: &str = "
CREATE TABLE IF NOT EXISTS {schema}.location_alerts (
    location               text        NOT NULL,
    sku                    text        NOT NULL,
    opened_version         bigint      NOT NULL,
    status                 text        NOT NULL CHECK (status IN ('open', 'closed')),
    available_at_open      bigint      NOT NULL,
    reorder_point_at_open  bigint      NOT NULL,
    opened_at              timestamptz NOT NULL,
    closed_at              timestamptz,
    closed_version         bigint,
    close_reason           text CHECK (close_reason IN ('recovered', 'reorder_point_lowered')),
    available_at_close     bigint,
    reorder_point_at_close bigint,
    PRIMARY KEY (location, sku, opened_version),
    CHECK ((status = 'open') = (closed_at IS NULL))
);

-- At most one open alert per (location, SKU); also serves a location's open alerts in SKU order.
CREATE UNIQUE INDEX IF NOT EXISTS location_alerts_one_open
    ON {schema}.location_alerts (location, sku) WHERE status = 'open';

TRUNCATE {schema}.location_stock, {schema}.location_changes, {schema}.transfers;
UPDATE {schema}.checkpoint SET position_commit = NULL, position_prepare = NULL, events_applied = 0;
";

pub struct Locations;

/// An alert opened in the batch at hand (written whole, closed or not).
struct AlertRow {
    available_at_open: u64,
    reorder_point_at_open: u64,
    opened_at: DateTime<Utc>,
    close: Option<AlertClose>,
}

/// How an alert closed.
struct AlertClose {
    at: DateTime<Utc>,
    version: u64,
    reason: &'static str,
    available: u64,
    reorder_point: u64,
}

/// The alert changes of a batch: alerts it opened, keyed by (location, SKU, opened version), and
/// closings of alerts opened by an earlier batch, keyed by (location, SKU).
#[derive(Default)]
struct AlertChanges {
    opened: BTreeMap<(String, String, u64), AlertRow>,
    closed_earlier: BTreeMap<(String, String), AlertClose>,
}

impl AlertChanges {
    /// Record what the event at `version` did to the alert of (`location`, `sku`).
    fn fold(
        &mut self,
        (location, sku): (&str, &str),
        record: &SkuRecord,
        before: &Balances,
        after: &Balances,
    ) {
        let open = before.available() < before.reorder_point;
        let at = record.recorded.recorded_at;
        let version = record.recorded.version;
        match low_stock_change(open, before, after, &record.event) {
            None => {}
            Some(LowStockChange::Opened) => {
                self.opened.insert(
                    (location.to_owned(), sku.to_owned(), version),
                    AlertRow {
                        available_at_open: after.available(),
                        reorder_point_at_open: after.reorder_point,
                        opened_at: at,
                        close: None,
                    },
                );
            }
            Some(LowStockChange::Closed(reason)) => {
                let close = AlertClose {
                    at,
                    version,
                    reason: reason.as_str(),
                    available: after.available(),
                    reorder_point: after.reorder_point,
                };
                let opened_here = self
                    .opened
                    .range_mut((location.to_owned(), sku.to_owned(), 0)..)
                    .take_while(|((l, s, _), _)| l == location && s == sku)
                    .find(|(_, row)| row.close.is_none());
                match opened_here {
                    Some((_, row)) => row.close = Some(close),
                    None => {
                        self.closed_earlier
                            .insert((location.to_owned(), sku.to_owned()), close);
                    }
                }
            }
        }
    }
}

struct Level {
    balances: Balances,
    version: u64,
    updated_at: DateTime<Utc>,
}

struct TransferRow {
    from_location: String,
    to_location: String,
    quantity: u64,
    reference: Option<String>,
    status: TransferStatus,
    quantity_received: Option<u64>,
    reason: Option<String>,
    dispatched_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    dispatched_version: u64,
    closed_version: Option<u64>,
}

#[async_trait]
impl Projection for Locations {
    fn name(&self) -> &'static str {
        NAME
    }

    fn ddl_template(&self) -> &'static str {
        DDL
    }

    fn later_steps(&self) -> &'static [&'static str] {
        &[ALERTS_STEP]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "location_stock",
            "location_changes",
            "transfers",
            "location_alerts",
        ]
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        schema: &SchemaName,
        records: &[SkuRecord],
    ) -> Result<(), ProjectionError> {
        let mut keys: Vec<(&str, &str)> = records
            .iter()
            .flat_map(|r| {
                r.event
                    .locations_moved()
                    .into_iter()
                    .map(|l| (l, r.sku.as_str()))
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut levels: BTreeMap<(String, String), Level> = BTreeMap::new();
        if !keys.is_empty() {
            let (locations, skus): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
            let load = format!(
                "SELECT s.location, s.sku, s.on_hand, s.reserved, s.reorder_point, s.in_transit, \
                        s.version, s.updated_at \
                 FROM {schema}.location_stock s \
                 JOIN unnest($1::text[], $2::text[]) AS k(location, sku) \
                   ON s.location = k.location AND s.sku = k.sku"
            );
            let statement = transaction.prepare_cached(&load).await?;
            for row in transaction.query(&statement, &[&locations, &skus]).await? {
                let balances = Balances {
                    on_hand: to_u64("on hand", row.get("on_hand"))?,
                    reserved: to_u64("reserved", row.get("reserved"))?,
                    reorder_point: to_u64("reorder point", row.get("reorder_point"))?,
                    in_transit: to_u64("in transit", row.get("in_transit"))?,
                };
                levels.insert(
                    (row.get("location"), row.get("sku")),
                    Level {
                        balances,
                        version: to_u64("version", row.get("version"))?,
                        updated_at: row.get("updated_at"),
                    },
                );
            }
        }
        let mut transfers: BTreeMap<(String, String), TransferRow> = BTreeMap::new();
        let mut changes: BTreeMap<String, i64> = BTreeMap::new();
        let mut alerts = AlertChanges::default();
        for record in records {
            for location in record.event.locations_moved() {
                let level = levels
                    .entry((location.to_owned(), record.sku.as_str().to_owned()))
                    .or_insert_with(|| Level {
                        balances: Balances::default(),
                        version: record.recorded.version,
                        updated_at: record.recorded.recorded_at,
                    });
                let before = level.balances;
                level.balances.apply_at(&record.event, Some(location));
                alerts.fold(
                    (location, record.sku.as_str()),
                    record,
                    &before,
                    &level.balances,
                );
                level.version = record.recorded.version;
                level.updated_at = record.recorded.recorded_at;
                *changes.entry(location.to_owned()).or_default() += 1;
            }
            fold_transfer(&mut transfers, record);
        }
        write_levels(transaction, schema, &levels).await?;
        write_changes(transaction, schema, &changes).await?;
        write_alerts(transaction, schema, &alerts).await?;
        write_transfers(transaction, schema, &transfers).await
    }
}

/// Records a transfer event as a row change: a dispatch opens the row, a receipt or
/// cancellation closes it (the row is written whole; a close of a transfer dispatched in an
/// earlier batch updates only the closing columns).
fn fold_transfer(transfers: &mut BTreeMap<(String, String), TransferRow>, record: &SkuRecord) {
    let at = record.recorded.recorded_at;
    let version = record.recorded.version;
    let (transfer_id, from, to, quantity, status, received, reason) = match &record.event {
        SkuEvent::TransferDispatched(e) => {
            transfers.insert(
                (record.sku.as_str().to_owned(), e.transfer_id.clone()),
                TransferRow {
                    from_location: e.from_location.clone(),
                    to_location: e.to_location.clone(),
                    quantity: e.quantity,
                    reference: e.reference.clone(),
                    status: TransferStatus::InTransit,
                    quantity_received: None,
                    reason: None,
                    dispatched_at: at,
                    closed_at: None,
                    dispatched_version: version,
                    closed_version: None,
                },
            );
            return;
        }
        SkuEvent::TransferReceived(e) => (
            &e.transfer_id,
            &e.from_location,
            &e.to_location,
            e.quantity_dispatched,
            TransferStatus::Received,
            Some(e.quantity_received),
            e.discrepancy_reason.clone(),
        ),
        SkuEvent::TransferCancelled(e) => (
            &e.transfer_id,
            &e.from_location,
            &e.to_location,
            e.quantity,
            TransferStatus::Cancelled,
            None,
            e.reason.clone(),
        ),
        _ => return,
    };
    let row = transfers
        .entry((record.sku.as_str().to_owned(), transfer_id.clone()))
        .or_insert_with(|| TransferRow {
            from_location: from.clone(),
            to_location: to.clone(),
            quantity,
            reference: None,
            status: TransferStatus::InTransit,
            quantity_received: None,
            reason: None,
            // Only the closing columns of a row dispatched in an earlier batch are written.
            dispatched_at: at,
            closed_at: None,
            dispatched_version: version,
            closed_version: None,
        });
    row.status = status;
    row.quantity_received = received;
    row.reason = reason;
    row.closed_at = Some(at);
    row.closed_version = Some(version);
}

async fn write_levels(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    levels: &BTreeMap<(String, String), Level>,
) -> Result<(), ProjectionError> {
    if levels.is_empty() {
        return Ok(());
    }
    let n = levels.len();
    let (mut locations, mut skus) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut on_hand, mut reserved, mut reorder_point, mut in_transit) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut version, mut updated_at) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for ((location, sku), level) in levels {
        locations.push(location.as_str());
        skus.push(sku.as_str());
        on_hand.push(to_i64("on hand", level.balances.on_hand)?);
        reserved.push(to_i64("reserved", level.balances.reserved)?);
        reorder_point.push(to_i64("reorder point", level.balances.reorder_point)?);
        in_transit.push(to_i64("in transit", level.balances.in_transit)?);
        version.push(to_i64("version", level.version)?);
        updated_at.push(level.updated_at);
    }
    let upsert = format!(
        "INSERT INTO {schema}.location_stock \
             (location, sku, on_hand, reserved, reorder_point, in_transit, version, updated_at) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
                              $6::bigint[], $7::bigint[], $8::timestamptz[]) \
         ON CONFLICT (location, sku) DO UPDATE SET \
             on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved, \
             reorder_point = EXCLUDED.reorder_point, in_transit = EXCLUDED.in_transit, \
             version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
    );
    let statement = transaction.prepare_cached(&upsert).await?;
    transaction
        .execute(
            &statement,
            &[
                &locations,
                &skus,
                &on_hand,
                &reserved,
                &reorder_point,
                &in_transit,
                &version,
                &updated_at,
            ],
        )
        .await?;
    Ok(())
}

async fn write_changes(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    changes: &BTreeMap<String, i64>,
) -> Result<(), ProjectionError> {
    if changes.is_empty() {
        return Ok(());
    }
    let locations: Vec<&str> = changes.keys().map(String::as_str).collect();
    let counts: Vec<i64> = changes.values().copied().collect();
    let upsert = format!(
        "INSERT INTO {schema}.location_changes (location, changes) \
         SELECT * FROM unnest($1::text[], $2::bigint[]) \
         ON CONFLICT (location) DO UPDATE \
             SET changes = {schema}.location_changes.changes + EXCLUDED.changes"
    );
    let statement = transaction.prepare_cached(&upsert).await?;
    transaction
        .execute(&statement, &[&locations, &counts])
        .await?;
    Ok(())
}

/// Close the alerts opened by earlier batches, then insert the alerts this batch opened (in that
/// order: an alert closed and opened again in one batch must leave the old one closed first).
async fn write_alerts(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    alerts: &AlertChanges,
) -> Result<(), ProjectionError> {
    if !alerts.closed_earlier.is_empty() {
        let mut columns = CloseColumns::default();
        let (mut locations, mut skus) = (Vec::new(), Vec::new());
        for ((location, sku), close) in &alerts.closed_earlier {
            locations.push(location.as_str());
            skus.push(sku.as_str());
            columns.push(Some(close))?;
        }
        let update = format!(
            "UPDATE {schema}.location_alerts a SET status = 'closed', closed_at = k.closed_at, \
                 closed_version = k.closed_version, close_reason = k.close_reason, \
                 available_at_close = k.available, reorder_point_at_close = k.reorder_point \
             FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::text[], \
                         $6::bigint[], $7::bigint[]) \
                  AS k(location, sku, closed_at, closed_version, close_reason, available, \
                       reorder_point) \
             WHERE a.location = k.location AND a.sku = k.sku AND a.status = 'open'"
        );
        let statement = transaction.prepare_cached(&update).await?;
        transaction
            .execute(
                &statement,
                &[
                    &locations,
                    &skus,
                    &columns.at,
                    &columns.version,
                    &columns.reason,
                    &columns.available,
                    &columns.reorder_point,
                ],
            )
            .await?;
    }
    if alerts.opened.is_empty() {
        return Ok(());
    }
    let mut columns = CloseColumns::default();
    let (mut locations, mut skus, mut opened_version) = (Vec::new(), Vec::new(), Vec::new());
    let (mut status, mut available, mut reorder_point, mut opened_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((location, sku, version), row) in &alerts.opened {
        locations.push(location.as_str());
        skus.push(sku.as_str());
        opened_version.push(to_i64("version", *version)?);
        status.push(if row.close.is_some() {
            "closed"
        } else {
            "open"
        });
        available.push(to_i64("available", row.available_at_open)?);
        reorder_point.push(to_i64("reorder point", row.reorder_point_at_open)?);
        opened_at.push(row.opened_at);
        columns.push(row.close.as_ref())?;
    }
    let insert = format!(
        "INSERT INTO {schema}.location_alerts \
             (location, sku, opened_version, status, available_at_open, reorder_point_at_open, \
              opened_at, closed_at, closed_version, close_reason, available_at_close, \
              reorder_point_at_close) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], \
                              $6::bigint[], $7::timestamptz[], $8::timestamptz[], $9::bigint[], \
                              $10::text[], $11::bigint[], $12::bigint[])"
    );
    let statement = transaction.prepare_cached(&insert).await?;
    transaction
        .execute(
            &statement,
            &[
                &locations,
                &skus,
                &opened_version,
                &status,
                &available,
                &reorder_point,
                &opened_at,
                &columns.at,
                &columns.version,
                &columns.reason,
                &columns.available,
                &columns.reorder_point,
            ],
        )
        .await?;
    Ok(())
}

/// The closing columns of alert rows, column by column (null for an alert still open).
#[derive(Default)]
struct CloseColumns {
    at: Vec<Option<DateTime<Utc>>>,
    version: Vec<Option<i64>>,
    reason: Vec<Option<&'static str>>,
    available: Vec<Option<i64>>,
    reorder_point: Vec<Option<i64>>,
}

impl CloseColumns {
    fn push(&mut self, close: Option<&AlertClose>) -> Result<(), ProjectionError> {
        self.at.push(close.map(|c| c.at));
        self.version
            .push(close.map(|c| to_i64("version", c.version)).transpose()?);
        self.reason.push(close.map(|c| c.reason));
        self.available.push(
            close
                .map(|c| to_i64("available", c.available))
                .transpose()?,
        );
        self.reorder_point.push(
            close
                .map(|c| to_i64("reorder point", c.reorder_point))
                .transpose()?,
        );
        Ok(())
    }
}

async fn write_transfers(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    transfers: &BTreeMap<(String, String), TransferRow>,
) -> Result<(), ProjectionError> {
    if transfers.is_empty() {
        return Ok(());
    }
    let n = transfers.len();
    let mut skus = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut from = Vec::with_capacity(n);
    let mut to = Vec::with_capacity(n);
    let mut quantity = Vec::with_capacity(n);
    let mut reference = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut reason = Vec::with_capacity(n);
    let mut dispatched_at = Vec::with_capacity(n);
    let mut closed_at = Vec::with_capacity(n);
    let mut dispatched_version = Vec::with_capacity(n);
    let mut closed_version = Vec::with_capacity(n);
    for ((sku, transfer_id), row) in transfers {
        skus.push(sku.as_str());
        ids.push(transfer_id.as_str());
        from.push(row.from_location.as_str());
        to.push(row.to_location.as_str());
        quantity.push(to_i64("quantity", row.quantity)?);
        reference.push(row.reference.as_deref());
        status.push(row.status.as_str());
        received.push(
            row.quantity_received
                .map(|q| to_i64("quantity received", q))
                .transpose()?,
        );
        reason.push(row.reason.as_deref());
        dispatched_at.push(row.dispatched_at);
        closed_at.push(row.closed_at);
        dispatched_version.push(to_i64("version", row.dispatched_version)?);
        closed_version.push(
            row.closed_version
                .map(|v| to_i64("version", v))
                .transpose()?,
        );
    }
    // A dispatch inserts the row; a close keeps what the dispatch wrote and sets the rest.
    let upsert = format!(
        "INSERT INTO {schema}.transfers \
             (sku, transfer_id, from_location, to_location, quantity, reference, status, \
              quantity_received, reason, dispatched_at, closed_at, dispatched_version, \
              closed_version) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
                              $6::text[], $7::text[], $8::bigint[], $9::text[], \
                              $10::timestamptz[], $11::timestamptz[], $12::bigint[], $13::bigint[]) \
         ON CONFLICT (sku, transfer_id) DO UPDATE SET \
             status = EXCLUDED.status, quantity_received = EXCLUDED.quantity_received, \
             reason = EXCLUDED.reason, closed_at = EXCLUDED.closed_at, \
             closed_version = EXCLUDED.closed_version"
    );
    let statement = transaction.prepare_cached(&upsert).await?;
    transaction
        .execute(
            &statement,
            &[
                &skus,
                &ids,
                &from,
                &to,
                &quantity,
                &reference,
                &status,
                &received,
                &reason,
                &dispatched_at,
                &closed_at,
                &dispatched_version,
                &closed_version,
            ],
        )
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rows and queries
// ---------------------------------------------------------------------------------------------

/// One SKU's balances at one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationStockRow {
    pub location: String,
    pub sku: Sku,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub reorder_point: u64,
    pub below_reorder_point: bool,
    /// Units on their way here.
    pub in_transit: u64,
    /// The SKU's stream version this row reflects.
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

/// One transfer as the read model has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferRowView {
    pub sku: Sku,
    pub transfer_id: String,
    pub from_location: String,
    pub to_location: String,
    pub quantity: u64,
    pub reference: Option<String>,
    pub status: TransferStatus,
    pub quantity_received: Option<u64>,
    /// The discrepancy reason of a short receipt, or why a transfer was cancelled.
    pub reason: Option<String>,
    pub dispatched_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub dispatched_version: u64,
    pub closed_version: Option<u64>,
}

/// A low-stock alert of one SKU at one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationAlertRow {
    pub location: String,
    pub sku: Sku,
    /// The SKU's stream version of the event that opened the alert.
    pub opened_version: u64,
    pub status: AlertStatus,
    pub available_at_open: u64,
    pub reorder_point_at_open: u64,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_version: Option<u64>,
    pub close_reason: Option<AlertCloseReason>,
    pub available_at_close: Option<u64>,
    pub reorder_point_at_close: Option<u64>,
}

/// Which rows of a location's stock list a page holds.
#[derive(Debug, Clone, Default)]
pub struct LocationStockFilter {
    pub below_reorder_point: bool,
    pub after_sku: Option<Sku>,
    pub limit: u64,
}

impl ReadModels {
    /// How many changes the location's rows have seen: a value that changes whenever any row
    /// of the location does (the stock list's ETag); `None` for a location never seen.
    pub async fn location_changes(
        &self,
        location: &LocationId,
    ) -> Result<Option<u64>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!("SELECT changes FROM {schema}.location_changes WHERE location = $1");
        self.query(&sql, &[&location.as_str()])
            .await?
            .first()
            .map(|row| to_u64("changes", row.get("changes")))
            .transpose()
    }

    /// The SKUs held at `location`, in SKU order.
    pub async fn location_stock(
        &self,
        location: &LocationId,
        filter: &LocationStockFilter,
    ) -> Result<Vec<LocationStockRow>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let below = if filter.below_reorder_point {
            "AND on_hand - reserved < reorder_point"
        } else {
            ""
        };
        let sql = format!(
            "SELECT location, sku, on_hand, reserved, available, reorder_point, in_transit, \
                    version, updated_at \
             FROM {schema}.location_stock \
             WHERE location = $1 {below} AND ($2::text IS NULL OR sku > $2) \
             ORDER BY sku LIMIT $3"
        );
        let after = filter.after_sku.as_ref().map(Sku::as_str);
        self.query(
            &sql,
            &[&location.as_str(), &after, &page_limit(filter.limit)],
        )
        .await?
        .iter()
        .map(location_stock_row)
        .collect()
    }

    /// The low-stock alerts of `location` in (SKU, opening) order: only the open ones unless
    /// `closed_too`. A page starts after `after`: a SKU and the version its alert opened at, or
    /// with no version, after every alert of that SKU.
    pub async fn location_alerts(
        &self,
        location: &LocationId,
        closed_too: bool,
        after: Option<(&Sku, Option<u64>)>,
        limit: u64,
    ) -> Result<Vec<LocationAlertRow>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let open_only = if closed_too {
            ""
        } else {
            "AND status = 'open'"
        };
        let sql = format!(
            "SELECT * FROM {schema}.location_alerts \
             WHERE location = $1 {open_only} \
               AND ($2::text IS NULL OR sku > $2 \
                    OR (sku = $2 AND $3::bigint IS NOT NULL AND opened_version > $3)) \
             ORDER BY sku, opened_version LIMIT $4"
        );
        let after_sku = after.map(|(sku, _)| sku.as_str());
        let after_version = after
            .and_then(|(_, version)| version)
            .map(|version| to_i64("version", version))
            .transpose()?;
        self.query(
            &sql,
            &[
                &location.as_str(),
                &after_sku,
                &after_version,
                &page_limit(limit),
            ],
        )
        .await?
        .iter()
        .map(location_alert_row)
        .collect()
    }

    /// Transfers in transit, oldest dispatch first; to or from `location` when one is given.
    pub async fn transfers_in_transit(
        &self,
        location: Option<&LocationId>,
        limit: u64,
    ) -> Result<Vec<TransferRowView>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!(
            "SELECT * FROM {schema}.transfers WHERE status = 'in_transit' \
             AND ($1::text IS NULL OR from_location = $1 OR to_location = $1) \
             ORDER BY dispatched_at, sku, transfer_id LIMIT $2"
        );
        let location = location.map(LocationId::as_str);
        self.query(&sql, &[&location, &page_limit(limit)])
            .await?
            .iter()
            .map(transfer_row)
            .collect()
    }
}

fn location_stock_row(row: &Row) -> Result<LocationStockRow, ProjectionError> {
    let available = to_u64("available", row.get("available"))?;
    let reorder_point = to_u64("reorder point", row.get("reorder_point"))?;
    Ok(LocationStockRow {
        location: row.get("location"),
        sku: stored_sku(row.get("sku"))?,
        on_hand: to_u64("on hand", row.get("on_hand"))?,
        reserved: to_u64("reserved", row.get("reserved"))?,
        available,
        reorder_point,
        below_reorder_point: available < reorder_point,
        in_transit: to_u64("in transit", row.get("in_transit"))?,
        version: to_u64("version", row.get("version"))?,
        updated_at: row.get("updated_at"),
    })
}

fn location_alert_row(row: &Row) -> Result<LocationAlertRow, ProjectionError> {
    let status = if row.get::<_, &str>("status") == "open" {
        AlertStatus::Open
    } else {
        AlertStatus::Closed
    };
    let optional = |what, value: Option<i64>| value.map(|v| to_u64(what, v)).transpose();
    Ok(LocationAlertRow {
        location: row.get("location"),
        sku: stored_sku(row.get("sku"))?,
        opened_version: to_u64("version", row.get("opened_version"))?,
        status,
        available_at_open: to_u64("available", row.get("available_at_open"))?,
        reorder_point_at_open: to_u64("reorder point", row.get("reorder_point_at_open"))?,
        opened_at: row.get("opened_at"),
        closed_at: row.get("closed_at"),
        closed_version: optional("version", row.get("closed_version"))?,
        close_reason: row
            .get::<_, Option<&str>>("close_reason")
            .map(AlertCloseReason::parse),
        available_at_close: optional("available", row.get("available_at_close"))?,
        reorder_point_at_close: optional("reorder point", row.get("reorder_point_at_close"))?,
    })
}

fn transfer_row(row: &Row) -> Result<TransferRowView, ProjectionError> {
    let status = match row.get::<_, &str>("status") {
        "in_transit" => TransferStatus::InTransit,
        "received" => TransferStatus::Received,
        "cancelled" => TransferStatus::Cancelled,
        other => {
            return Err(ProjectionError::OutOfRange {
                what: "transfer status",
                value: other.to_owned(),
            })
        }
    };
    let optional = |what, value: Option<i64>| value.map(|v| to_u64(what, v)).transpose();
    Ok(TransferRowView {
        sku: stored_sku(row.get("sku"))?,
        transfer_id: row.get("transfer_id"),
        from_location: row.get("from_location"),
        to_location: row.get("to_location"),
        quantity: to_u64("quantity", row.get("quantity"))?,
        reference: row.get("reference"),
        status,
        quantity_received: optional("quantity received", row.get("quantity_received"))?,
        reason: row.get("reason"),
        dispatched_at: row.get("dispatched_at"),
        closed_at: row.get("closed_at"),
        dispatched_version: to_u64("version", row.get("dispatched_version"))?,
        closed_version: optional("version", row.get("closed_version"))?,
    })
}
