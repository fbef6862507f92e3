//! Reservations: one row per reservation with its status and times. A reservation opened in a
//! batch is inserted once with whatever state it ends the batch in; reservations opened in
//! earlier batches are closed with one multi-row update.

use crate::convert::{optional_u64, stored_sku, to_i64, to_u64};
use crate::error::ProjectionError;
use crate::projection::{Projection, SkuRecord};
use crate::read_models::{page_limit, ReadModels};
use crate::schema_name::SchemaName;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use ledger_domain::{OrderId, Position, ReservationId, Sku};
use ledger_domain::{ReservationStatus, SkuEvent};
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_postgres::Row;

pub const NAME: &str = "reservations";

const DDL: &str = "
CREATE TABLE {schema}.reservations (
    sku            text        NOT NULL,
    reservation_id text        NOT NULL,
    order_id       text,
    quantity       bigint      NOT NULL CHECK (quantity > 0),
    status         text        NOT NULL
                               CHECK (status IN ('open', 'released', 'expired', 'confirmed')),
    ttl_seconds    bigint,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz,
    closed_at      timestamptz,
    opened_version bigint      NOT NULL,
    closed_version bigint,
    close_reason   text,
    PRIMARY KEY (sku, reservation_id),
    CHECK ((status = 'open') = (closed_at IS NULL))
);

-- The expiry worker's question: open reservations whose time is up, oldest first.
CREATE INDEX reservations_due
    ON {schema}.reservations (expires_at) WHERE status = 'open' AND expires_at IS NOT NULL;

-- A SKU's reservations, newest first, optionally by status.
CREATE INDEX reservations_by_sku ON {schema}.reservations (sku, opened_version);
";

/// The steps after the first release's DDL (see [`Projection::later_steps`]). Step 1 (orders):
/// an order's reservations across SKUs, for listing, release and confirm by order.
const LATER_STEPS: &[&str] = &["
CREATE INDEX IF NOT EXISTS reservations_by_order
    ON {schema}.reservations (order_id, sku, reservation_id) WHERE order_id IS NOT NULL;
"];

pub struct Reservations;

/// A reservation opened in this batch.
struct Opened {
    sku: String,
    reservation_id: String,
    order_id: Option<String>,
    quantity: i64,
    ttl_seconds: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    opened_version: i64,
    closed: Option<Closed>,
}

/// How a reservation ended.
struct Closed {
    status: ReservationStatus,
    closed_at: DateTime<Utc>,
    closed_version: i64,
    reason: Option<String>,
}

#[async_trait]
impl Projection for Reservations {
    fn name(&self) -> &'static str {
        NAME
    }

    fn ddl_template(&self) -> &'static str {
        DDL
    }

    fn tables(&self) -> &'static [&'static str] {
        &["reservations"]
    }

    fn later_steps(&self) -> &'static [&'static str] {
        LATER_STEPS
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        schema: &SchemaName,
        records: &[SkuRecord],
    ) -> Result<(), ProjectionError> {
        let mut opened: BTreeMap<(String, String), Opened> = BTreeMap::new();
        let mut closed_earlier: BTreeMap<(String, String), Closed> = BTreeMap::new();
        for record in records {
            let sku = record.sku.as_str().to_owned();
            let version = to_i64("version", record.recorded.version)?;
            let at = record.recorded.recorded_at;
            let (reservation_id, closed) = match &record.event {
                SkuEvent::Reserved(e) => {
                    opened.insert(
                        (sku.clone(), e.reservation_id.clone()),
                        Opened {
                            sku,
                            reservation_id: e.reservation_id.clone(),
                            order_id: e.order_id.clone(),
                            quantity: to_i64("quantity", e.quantity)?,
                            ttl_seconds: e
                                .ttl_seconds
                                .map(|t| to_i64("time-to-live", t))
                                .transpose()?,
                            created_at: at,
                            expires_at: e.expires_at,
                            opened_version: version,
                            closed: None,
                        },
                    );
                    continue;
                }
                SkuEvent::Released(e) => (
                    &e.reservation_id,
                    Closed {
                        status: ReservationStatus::Released,
                        closed_at: at,
                        closed_version: version,
                        reason: e.reason.clone(),
                    },
                ),
                SkuEvent::Expired(e) => (
                    &e.reservation_id,
                    Closed {
                        status: ReservationStatus::Expired,
                        closed_at: at,
                        closed_version: version,
                        reason: None,
                    },
                ),
                SkuEvent::Confirmed(e) => (
                    &e.reservation_id,
                    Closed {
                        status: ReservationStatus::Confirmed,
                        closed_at: at,
                        closed_version: version,
                        reason: None,
                    },
                ),
                SkuEvent::Replenished(_)
                | SkuEvent::Adjusted(_)
                | SkuEvent::ReorderPointSet(_)
                | SkuEvent::TransferDispatched(_)
                | SkuEvent::TransferReceived(_)
                | SkuEvent::TransferCancelled(_)
                | SkuEvent::Registered(_)
                | SkuEvent::Updated(_)
                | SkuEvent::Discontinued(_) => continue,
            };
            let key = (sku, reservation_id.clone());
            match opened.get_mut(&key) {
                Some(reservation) => reservation.closed = Some(closed),
                None => {
                    closed_earlier.insert(key, closed);
                }
            }
        }
        insert_opened(transaction, schema, opened.values()).await?;
        close_earlier(transaction, schema, &closed_earlier).await
    }
}

async fn insert_opened<'a>(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    opened: impl ExactSizeIterator<Item = &'a Opened>,
) -> Result<(), ProjectionError> {
    if opened.len() == 0 {
        return Ok(());
    }
    let mut columns = OpenedColumns::default();
    for reservation in opened {
        columns.push(reservation);
    }
    let sql = format!(
        "INSERT INTO {schema}.reservations \
             (sku, reservation_id, order_id, quantity, status, ttl_seconds, created_at, \
              expires_at, closed_at, opened_version, closed_version, close_reason) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
                              $6::bigint[], $7::timestamptz[], $8::timestamptz[], \
                              $9::timestamptz[], $10::bigint[], $11::bigint[], $12::text[])"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    let c = &columns;
    transaction
        .execute(
            &statement,
            &[
                &c.sku,
                &c.reservation_id,
                &c.order_id,
                &c.quantity,
                &c.status,
                &c.ttl_seconds,
                &c.created_at,
                &c.expires_at,
                &c.closed_at,
                &c.opened_version,
                &c.closed_version,
                &c.close_reason,
            ],
        )
        .await?;
    Ok(())
}

#[derive(Default)]
struct OpenedColumns<'a> {
    sku: Vec<&'a str>,
    reservation_id: Vec<&'a str>,
    order_id: Vec<Option<&'a str>>,
    quantity: Vec<i64>,
    status: Vec<&'static str>,
    ttl_seconds: Vec<Option<i64>>,
    created_at: Vec<DateTime<Utc>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    closed_at: Vec<Option<DateTime<Utc>>>,
    opened_version: Vec<i64>,
    closed_version: Vec<Option<i64>>,
    close_reason: Vec<Option<&'a str>>,
}

impl<'a> OpenedColumns<'a> {
    fn push(&mut self, r: &'a Opened) {
        self.sku.push(&r.sku);
        self.reservation_id.push(&r.reservation_id);
        self.order_id.push(r.order_id.as_deref());
        self.quantity.push(r.quantity);
        self.status.push(
            r.closed
                .as_ref()
                .map_or(ReservationStatus::Open, |c| c.status)
                .as_str(),
        );
        self.ttl_seconds.push(r.ttl_seconds);
        self.created_at.push(r.created_at);
        self.expires_at.push(r.expires_at);
        self.closed_at.push(r.closed.as_ref().map(|c| c.closed_at));
        self.opened_version.push(r.opened_version);
        self.closed_version
            .push(r.closed.as_ref().map(|c| c.closed_version));
        self.close_reason
            .push(r.closed.as_ref().and_then(|c| c.reason.as_deref()));
    }
}

async fn close_earlier(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    closed: &BTreeMap<(String, String), Closed>,
) -> Result<(), ProjectionError> {
    if closed.is_empty() {
        return Ok(());
    }
    let skus: Vec<&str> = closed.keys().map(|(sku, _)| sku.as_str()).collect();
    let ids: Vec<&str> = closed.keys().map(|(_, id)| id.as_str()).collect();
    let statuses: Vec<&str> = closed.values().map(|c| c.status.as_str()).collect();
    let closed_at: Vec<DateTime<Utc>> = closed.values().map(|c| c.closed_at).collect();
    let versions: Vec<i64> = closed.values().map(|c| c.closed_version).collect();
    let reasons: Vec<Option<&str>> = closed.values().map(|c| c.reason.as_deref()).collect();
    // Only open rows are closed: a close event for a reservation this model never saw open
    // (a foreign writer) changes nothing rather than inventing a row.
    let sql = format!(
        "UPDATE {schema}.reservations AS r \
         SET status = c.status, closed_at = c.closed_at, closed_version = c.closed_version, \
             close_reason = c.close_reason \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], \
                     $6::text[]) \
              AS c(sku, reservation_id, status, closed_at, closed_version, close_reason) \
         WHERE r.sku = c.sku AND r.reservation_id = c.reservation_id AND r.status = 'open'"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    transaction
        .execute(
            &statement,
            &[&skus, &ids, &statuses, &closed_at, &versions, &reasons],
        )
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rows and queries
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservationRow {
    pub sku: Sku,
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub quantity: u64,
    pub status: ReservationStatus,
    pub ttl_seconds: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub opened_version: u64,
    pub closed_version: Option<u64>,
    /// The reason given when the reservation was released.
    pub close_reason: Option<String>,
}

/// One entry of the expiry queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReservation {
    pub expires_at: DateTime<Utc>,
    pub sku: Sku,
    pub reservation_id: ReservationId,
}

impl ReadModels {
    /// A SKU's reservations, newest first, optionally only those with `status`.
    pub async fn reservations(
        &self,
        sku: &Sku,
        status: Option<ReservationStatus>,
        limit: u64,
    ) -> Result<Vec<ReservationRow>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!(
            "SELECT * FROM {schema}.reservations WHERE sku = $1 \
             AND ($2::text IS NULL OR status = $2) ORDER BY opened_version DESC LIMIT $3"
        );
        let status = status.map(ReservationStatus::as_str);
        self.query(&sql, &[&sku.as_str(), &status, &page_limit(limit)])
            .await?
            .iter()
            .map(reservation)
            .collect()
    }

    /// An order's reservations across SKUs, by SKU and reservation id, optionally only those
    /// with `status`. The read model trails the log: a reservation made a moment ago may not be
    /// listed yet (see `ledger_api::orders` for how the order commands deal with that).
    pub async fn order_reservations(
        &self,
        order_id: &OrderId,
        status: Option<ReservationStatus>,
        limit: u64,
    ) -> Result<Vec<ReservationRow>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!(
            "SELECT * FROM {schema}.reservations WHERE order_id = $1 \
             AND ($2::text IS NULL OR status = $2) ORDER BY sku, reservation_id LIMIT $3"
        );
        let status = status.map(ReservationStatus::as_str);
        self.query(&sql, &[&order_id.as_str(), &status, &page_limit(limit)])
            .await?
            .iter()
            .map(reservation)
            .collect()
    }

    /// Where in the log the reservations read model is (its checkpoint); `None` before its
    /// first batch.
    pub async fn reservations_checkpoint(&self) -> Result<Option<Position>, ProjectionError> {
        let client = self.database().pool().get().await?;
        let checkpoint = crate::checkpoint::load(&**client, &SchemaName::live(NAME), NAME).await?;
        Ok(checkpoint.position)
    }

    /// Open reservations whose expiry time is at or before `now`, soonest first: the expiry
    /// worker's queue.
    pub async fn due_reservations(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<(Sku, ReservationId)>, ProjectionError> {
        Ok(self
            .due_reservations_after(now, None, limit)
            .await?
            .into_iter()
            .map(|due| (due.sku, due.reservation_id))
            .collect())
    }

    /// The page of the expiry queue after `after` (in the queue's order: expiry time, SKU,
    /// reservation id), so that a worker pages through a long queue without offsets.
    pub async fn due_reservations_after(
        &self,
        now: DateTime<Utc>,
        after: Option<&DueReservation>,
        limit: u64,
    ) -> Result<Vec<DueReservation>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!(
            "SELECT expires_at, sku, reservation_id FROM {schema}.reservations \
             WHERE status = 'open' AND expires_at IS NOT NULL AND expires_at <= $1 \
               AND ($2::timestamptz IS NULL \
                    OR (expires_at, sku, reservation_id) > ($2, $3::text, $4::text)) \
             ORDER BY expires_at, sku, reservation_id LIMIT $5"
        );
        let after_expires_at = after.map(|due| due.expires_at);
        let after_sku = after.map(|due| due.sku.as_str());
        let after_id = after.map(|due| due.reservation_id.as_str());
        self.query(
            &sql,
            &[
                &now,
                &after_expires_at,
                &after_sku,
                &after_id,
                &page_limit(limit),
            ],
        )
        .await?
        .iter()
        .map(|row| {
            let id: &str = row.get("reservation_id");
            Ok(DueReservation {
                expires_at: row.get("expires_at"),
                sku: stored_sku(row.get("sku"))?,
                reservation_id: ReservationId::parse(id).map_err(|e| {
                    ProjectionError::OutOfRange {
                        what: "stored reservation id",
                        value: e.to_string(),
                    }
                })?,
            })
        })
        .collect()
    }
}

fn reservation_status(value: &str) -> Result<ReservationStatus, ProjectionError> {
    match value {
        "open" => Ok(ReservationStatus::Open),
        "released" => Ok(ReservationStatus::Released),
        "expired" => Ok(ReservationStatus::Expired),
        "confirmed" => Ok(ReservationStatus::Confirmed),
        other => Err(ProjectionError::OutOfRange {
            what: "reservation status",
            value: other.to_owned(),
        }),
    }
}

fn reservation(row: &Row) -> Result<ReservationRow, ProjectionError> {
    Ok(ReservationRow {
        sku: stored_sku(row.get("sku"))?,
        reservation_id: row.get("reservation_id"),
        order_id: row.get("order_id"),
        quantity: to_u64("quantity", row.get("quantity"))?,
        status: reservation_status(row.get("status"))?,
        ttl_seconds: optional_u64("time-to-live", row.get("ttl_seconds"))?,
        created_at: row.get("created_at"),
        expires_at: row.get("expires_at"),
        closed_at: row.get("closed_at"),
        opened_version: to_u64("version", row.get("opened_version"))?,
        closed_version: optional_u64("version", row.get("closed_version"))?,
        close_reason: row.get("close_reason"),
    })
}
