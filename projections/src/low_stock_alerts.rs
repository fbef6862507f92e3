//! Low-stock alerts and their outbox.
//!
//! After every event of a SKU, by the domain's one low-stock rule (`ledger_domain::low_stock`,
//! which the published integration events follow too): when available is below the reorder
//! point and no alert is open, an alert opens, recording the available and reorder point that
//! triggered it; when available is at or above the reorder point and an alert is open, it
//! closes (`recovered`, or `reorder_point_lowered` when a reorder point change did it).
//! Staying below changes nothing.
//! A partial unique index holds the "one open alert per SKU" rule in the database itself.
//!
//! Every opening and closing also writes a notification row. Alert and notification ids are
//! assigned here, densely and in log order (the next id after the largest stored one), rather
//! than drawn from a sequence: a sequence leaves gaps when a batch rolls back and hands out
//! different ids on a rebuild, while these ids are the same on every replay, so a consumer's
//! "last id read" stays valid across crashes and rebuilds. Batches commit one at a time under
//! the checkpoint row lock, so ids also become visible in order: reading `id > last` never
//! skips a row that commits later.
//!
//! The projection keeps its own copy of each SKU's balances (`sku_levels`) so that it can be
//! rebuilt on its own, without reading another projection's tables.

use crate::convert::{
    log_position, optional_u64, position_from, position_to, stored_sku, to_i64, to_u64, LogPosition,
};
use crate::error::ProjectionError;
use crate::projection::{distinct_skus, Projection, SkuRecord};
use crate::read_models::{page_limit, ReadModels};
use crate::schema_name::SchemaName;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use ledger_domain::Sku;
use ledger_domain::{low_stock_change, Balances, LowStockChange, LowStockCloseReason, SkuState};
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_postgres::Row;

pub const NAME: &str = "low_stock_alerts";

/// Why an alert closed.
pub const CLOSED_RECOVERED: &str = LowStockCloseReason::Recovered.as_str();
pub const CLOSED_REORDER_POINT_LOWERED: &str = LowStockCloseReason::ReorderPointLowered.as_str();

/// Notification kinds.
pub const KIND_OPENED: &str = "alert_opened";
pub const KIND_CLOSED: &str = "alert_closed";

const DDL: &str = "
CREATE TABLE {schema}.sku_levels (
    sku           text   PRIMARY KEY,
    on_hand       bigint NOT NULL CHECK (on_hand >= 0),
    reserved      bigint NOT NULL CHECK (reserved >= 0),
    reorder_point bigint NOT NULL CHECK (reorder_point >= 0),
    version       bigint NOT NULL CHECK (version >= 0)
);

CREATE TABLE {schema}.alerts (
    alert_id                bigint      PRIMARY KEY CHECK (alert_id > 0),
    sku                     text        NOT NULL,
    status                  text        NOT NULL CHECK (status IN ('open', 'closed')),
    available_at_open       bigint      NOT NULL,
    reorder_point_at_open   bigint      NOT NULL,
    opened_at               timestamptz NOT NULL,
    opened_version          bigint      NOT NULL,
    opened_position_commit  bigint      NOT NULL,
    opened_position_prepare bigint      NOT NULL,
    closed_at               timestamptz,
    closed_version          bigint,
    closed_position_commit  bigint,
    closed_position_prepare bigint,
    close_reason            text CHECK (close_reason IN ('recovered', 'reorder_point_lowered')),
    available_at_close      bigint,
    reorder_point_at_close  bigint,
    CHECK ((status = 'open') = (closed_at IS NULL))
);

-- At most one open alert per SKU, enforced where no code path can get around it.
CREATE UNIQUE INDEX alerts_one_open_per_sku ON {schema}.alerts (sku) WHERE status = 'open';
CREATE INDEX alerts_by_sku ON {schema}.alerts (sku, alert_id);

CREATE TABLE {schema}.notifications (
    notification_id  bigint      PRIMARY KEY CHECK (notification_id > 0),
    kind             text        NOT NULL CHECK (kind IN ('alert_opened', 'alert_closed')),
    alert_id         bigint      NOT NULL REFERENCES {schema}.alerts,
    sku              text        NOT NULL,
    available        bigint      NOT NULL,
    reorder_point    bigint      NOT NULL,
    close_reason     text,
    position_commit  bigint      NOT NULL,
    position_prepare bigint      NOT NULL,
    version          bigint      NOT NULL,
    occurred_at      timestamptz NOT NULL,
    UNIQUE (alert_id, kind)
);
";

pub struct LowStockAlerts;

/// Where an open alert lives while the batch runs.
#[derive(Clone, Copy)]
enum OpenAlert {
    Stored(i64),
    /// Index into the batch's new alerts.
    New(usize),
}

/// The event at which an alert opened or closed.
#[derive(Clone)]
struct Moment {
    at: DateTime<Utc>,
    version: i64,
    position: (i64, i64),
    available: i64,
    reorder_point: i64,
}

struct Closing {
    moment: Moment,
    reason: &'static str,
}

struct NewAlert {
    alert_id: i64,
    sku: String,
    opened: Moment,
    closed: Option<Closing>,
}

struct NewNotification {
    notification_id: i64,
    kind: &'static str,
    alert_id: i64,
    sku: String,
    moment: Moment,
    close_reason: Option<&'static str>,
}

#[async_trait]
impl Projection for LowStockAlerts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn ddl_template(&self) -> &'static str {
        DDL
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sku_levels", "alerts", "notifications"]
    }

    async fn apply(
        &self,
        transaction: &Transaction<'_>,
        schema: &SchemaName,
        records: &[SkuRecord],
    ) -> Result<(), ProjectionError> {
        let skus = distinct_skus(records);
        let mut levels = load_levels(transaction, schema, &skus).await?;
        let mut open = load_open_alerts(transaction, schema, &skus).await?;
        let (mut last_alert_id, mut last_notification_id) = last_ids(transaction, schema).await?;

        let mut new_alerts: Vec<NewAlert> = Vec::new();
        let mut closed_stored: Vec<(i64, Closing)> = Vec::new();
        let mut notifications: Vec<NewNotification> = Vec::new();
        for record in records {
            let sku = record.sku.as_str();
            let state = levels
                .entry(sku.to_owned())
                .or_insert_with(|| SkuState::new(record.sku.clone()));
            let before = Balances::of(state);
            state.apply_to_totals(&record.event);
            state.reservations.clear();
            state.version = Some(record.recorded.version);
            let moment = Moment {
                at: record.recorded.recorded_at,
                version: to_i64("version", record.recorded.version)?,
                position: position_to(record.recorded.position)?,
                available: to_i64("available", state.available())?,
                reorder_point: to_i64("reorder point", state.reorder_point)?,
            };
            let open_alert = open.get(sku).copied();
            let change = low_stock_change(
                open_alert.is_some(),
                &before,
                &Balances::of(state),
                &record.event,
            );
            match (change, open_alert) {
                (Some(LowStockChange::Opened), _) => {
                    last_alert_id += 1;
                    last_notification_id += 1;
                    open.insert(sku.to_owned(), OpenAlert::New(new_alerts.len()));
                    new_alerts.push(NewAlert {
                        alert_id: last_alert_id,
                        sku: sku.to_owned(),
                        opened: moment.clone(),
                        closed: None,
                    });
                    notifications.push(NewNotification {
                        notification_id: last_notification_id,
                        kind: KIND_OPENED,
                        alert_id: last_alert_id,
                        sku: sku.to_owned(),
                        moment,
                        close_reason: None,
                    });
                }
                (Some(LowStockChange::Closed(reason)), Some(alert)) => {
                    let reason = reason.as_str();
                    let closing = Closing {
                        moment: moment.clone(),
                        reason,
                    };
                    let alert_id = match alert {
                        OpenAlert::Stored(alert_id) => {
                            closed_stored.push((alert_id, closing));
                            alert_id
                        }
                        OpenAlert::New(index) => {
                            new_alerts[index].closed = Some(closing);
                            new_alerts[index].alert_id
                        }
                    };
                    open.remove(sku);
                    last_notification_id += 1;
                    notifications.push(NewNotification {
                        notification_id: last_notification_id,
                        kind: KIND_CLOSED,
                        alert_id,
                        sku: sku.to_owned(),
                        moment,
                        close_reason: Some(reason),
                    });
                }
                (Some(LowStockChange::Closed(_)), None) => {
                    unreachable!("the low-stock rule closes only an open alert")
                }
                (None, _) => {}
            }
        }
        // Close stored alerts before inserting new ones: a SKU may close one and open the next
        // in one batch, and the partial unique index checks each row as it is written.
        close_stored(transaction, schema, &closed_stored).await?;
        insert_alerts(transaction, schema, &new_alerts).await?;
        insert_notifications(transaction, schema, &notifications).await?;
        write_levels(transaction, schema, &levels).await
    }
}

async fn load_levels(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    skus: &[&str],
) -> Result<BTreeMap<String, SkuState>, ProjectionError> {
    let sql = format!(
        "SELECT sku, on_hand, reserved, reorder_point, version FROM {schema}.sku_levels \
         WHERE sku = ANY($1)"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    let mut levels = BTreeMap::new();
    for row in transaction.query(&statement, &[&skus]).await? {
        let sku: String = row.get("sku");
        let mut state = SkuState::new(stored_sku(&sku)?);
        state.on_hand = to_u64("on hand", row.get("on_hand"))?;
        state.reserved = to_u64("reserved", row.get("reserved"))?;
        state.reorder_point = to_u64("reorder point", row.get("reorder_point"))?;
        state.version = Some(to_u64("version", row.get("version"))?);
        levels.insert(sku, state);
    }
    Ok(levels)
}

async fn load_open_alerts(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    skus: &[&str],
) -> Result<BTreeMap<String, OpenAlert>, ProjectionError> {
    let sql = format!(
        "SELECT sku, alert_id FROM {schema}.alerts WHERE sku = ANY($1) AND status = 'open'"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    Ok(transaction
        .query(&statement, &[&skus])
        .await?
        .iter()
        .map(|row| (row.get("sku"), OpenAlert::Stored(row.get("alert_id"))))
        .collect())
}

async fn last_ids(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
) -> Result<(i64, i64), ProjectionError> {
    let sql = format!(
        "SELECT (SELECT coalesce(max(alert_id), 0) FROM {schema}.alerts), \
                (SELECT coalesce(max(notification_id), 0) FROM {schema}.notifications)"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    let row = transaction.query_one(&statement, &[]).await?;
    Ok((row.get(0), row.get(1)))
}

async fn close_stored(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    closed: &[(i64, Closing)],
) -> Result<(), ProjectionError> {
    if closed.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = closed.iter().map(|(id, _)| *id).collect();
    let at: Vec<DateTime<Utc>> = closed.iter().map(|(_, c)| c.moment.at).collect();
    let version: Vec<i64> = closed.iter().map(|(_, c)| c.moment.version).collect();
    let commit: Vec<i64> = closed.iter().map(|(_, c)| c.moment.position.0).collect();
    let prepare: Vec<i64> = closed.iter().map(|(_, c)| c.moment.position.1).collect();
    let reason: Vec<&str> = closed.iter().map(|(_, c)| c.reason).collect();
    let available: Vec<i64> = closed.iter().map(|(_, c)| c.moment.available).collect();
    let reorder: Vec<i64> = closed.iter().map(|(_, c)| c.moment.reorder_point).collect();
    let sql = format!(
        "UPDATE {schema}.alerts AS a SET status = 'closed', closed_at = c.at, \
             closed_version = c.version, closed_position_commit = c.commit, \
             closed_position_prepare = c.prepare, close_reason = c.reason, \
             available_at_close = c.available, reorder_point_at_close = c.reorder_point \
         FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::bigint[], \
                     $5::bigint[], $6::text[], $7::bigint[], $8::bigint[]) \
              AS c(alert_id, at, version, commit, prepare, reason, available, reorder_point) \
         WHERE a.alert_id = c.alert_id AND a.status = 'open'"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    let updated = transaction
        .execute(
            &statement,
            &[
                &ids, &at, &version, &commit, &prepare, &reason, &available, &reorder,
            ],
        )
        .await?;
    assert_eq!(
        updated,
        ids.len() as u64,
        "every alert closed here was read as open in this transaction"
    );
    Ok(())
}

async fn insert_alerts(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    alerts: &[NewAlert],
) -> Result<(), ProjectionError> {
    if alerts.is_empty() {
        return Ok(());
    }
    let closed = |f: fn(&Closing) -> Option<i64>| -> Vec<Option<i64>> {
        alerts
            .iter()
            .map(|a| a.closed.as_ref().and_then(f))
            .collect()
    };
    let ids: Vec<i64> = alerts.iter().map(|a| a.alert_id).collect();
    let skus: Vec<&str> = alerts.iter().map(|a| a.sku.as_str()).collect();
    let status: Vec<&str> = alerts
        .iter()
        .map(|a| if a.closed.is_some() { "closed" } else { "open" })
        .collect();
    let available_open: Vec<i64> = alerts.iter().map(|a| a.opened.available).collect();
    let reorder_open: Vec<i64> = alerts.iter().map(|a| a.opened.reorder_point).collect();
    let opened_at: Vec<DateTime<Utc>> = alerts.iter().map(|a| a.opened.at).collect();
    let opened_version: Vec<i64> = alerts.iter().map(|a| a.opened.version).collect();
    let opened_commit: Vec<i64> = alerts.iter().map(|a| a.opened.position.0).collect();
    let opened_prepare: Vec<i64> = alerts.iter().map(|a| a.opened.position.1).collect();
    let closed_at: Vec<Option<DateTime<Utc>>> = alerts
        .iter()
        .map(|a| a.closed.as_ref().map(|c| c.moment.at))
        .collect();
    let closed_version = closed(|c| Some(c.moment.version));
    let closed_commit = closed(|c| Some(c.moment.position.0));
    let closed_prepare = closed(|c| Some(c.moment.position.1));
    let close_reason: Vec<Option<&str>> = alerts
        .iter()
        .map(|a| a.closed.as_ref().map(|c| c.reason))
        .collect();
    let available_close = closed(|c| Some(c.moment.available));
    let reorder_close = closed(|c| Some(c.moment.reorder_point));
    let sql = format!(
        "INSERT INTO {schema}.alerts \
             (alert_id, sku, status, available_at_open, reorder_point_at_open, opened_at, \
              opened_version, opened_position_commit, opened_position_prepare, closed_at, \
              closed_version, closed_position_commit, closed_position_prepare, close_reason, \
              available_at_close, reorder_point_at_close) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
                              $6::timestamptz[], $7::bigint[], $8::bigint[], $9::bigint[], \
                              $10::timestamptz[], $11::bigint[], $12::bigint[], $13::bigint[], \
                              $14::text[], $15::bigint[], $16::bigint[])"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    transaction
        .execute(
            &statement,
            &[
                &ids,
                &skus,
                &status,
                &available_open,
                &reorder_open,
                &opened_at,
                &opened_version,
                &opened_commit,
                &opened_prepare,
                &closed_at,
                &closed_version,
                &closed_commit,
                &closed_prepare,
                &close_reason,
                &available_close,
                &reorder_close,
            ],
        )
        .await?;
    Ok(())
}

async fn insert_notifications(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    notifications: &[NewNotification],
) -> Result<(), ProjectionError> {
    if notifications.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = notifications.iter().map(|n| n.notification_id).collect();
    let kinds: Vec<&str> = notifications.iter().map(|n| n.kind).collect();
    let alert_ids: Vec<i64> = notifications.iter().map(|n| n.alert_id).collect();
    let skus: Vec<&str> = notifications.iter().map(|n| n.sku.as_str()).collect();
    let available: Vec<i64> = notifications.iter().map(|n| n.moment.available).collect();
    let reorder: Vec<i64> = notifications
        .iter()
        .map(|n| n.moment.reorder_point)
        .collect();
    let reasons: Vec<Option<&str>> = notifications.iter().map(|n| n.close_reason).collect();
    let commit: Vec<i64> = notifications.iter().map(|n| n.moment.position.0).collect();
    let prepare: Vec<i64> = notifications.iter().map(|n| n.moment.position.1).collect();
    let version: Vec<i64> = notifications.iter().map(|n| n.moment.version).collect();
    let at: Vec<DateTime<Utc>> = notifications.iter().map(|n| n.moment.at).collect();
    let sql = format!(
        "INSERT INTO {schema}.notifications \
             (notification_id, kind, alert_id, sku, available, reorder_point, close_reason, \
              position_commit, position_prepare, version, occurred_at) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], \
                              $6::bigint[], $7::text[], $8::bigint[], $9::bigint[], \
                              $10::bigint[], $11::timestamptz[])"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    transaction
        .execute(
            &statement,
            &[
                &ids, &kinds, &alert_ids, &skus, &available, &reorder, &reasons, &commit, &prepare,
                &version, &at,
            ],
        )
        .await?;
    Ok(())
}

async fn write_levels(
    transaction: &Transaction<'_>,
    schema: &SchemaName,
    levels: &BTreeMap<String, SkuState>,
) -> Result<(), ProjectionError> {
    let skus: Vec<&str> = levels.keys().map(String::as_str).collect();
    let mut on_hand = Vec::with_capacity(levels.len());
    let mut reserved = Vec::with_capacity(levels.len());
    let mut reorder = Vec::with_capacity(levels.len());
    let mut version = Vec::with_capacity(levels.len());
    for state in levels.values() {
        on_hand.push(to_i64("on hand", state.on_hand)?);
        reserved.push(to_i64("reserved", state.reserved)?);
        reorder.push(to_i64("reorder point", state.reorder_point)?);
        version.push(to_i64("version", state.version.unwrap_or(0))?);
    }
    let sql = format!(
        "INSERT INTO {schema}.sku_levels (sku, on_hand, reserved, reorder_point, version) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], \
                              $5::bigint[]) \
         ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, \
             reserved = EXCLUDED.reserved, reorder_point = EXCLUDED.reorder_point, \
             version = EXCLUDED.version"
    );
    let statement = transaction.prepare_cached(&sql).await?;
    transaction
        .execute(
            &statement,
            &[&skus, &on_hand, &reserved, &reorder, &version],
        )
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rows and queries
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertCloseReason {
    /// Available stock returned to the reorder point or above.
    Recovered,
    /// The reorder point was lowered to (or below) available stock.
    ReorderPointLowered,
}

impl AlertCloseReason {
    /// The reason as stored (the read models' `close_reason` columns hold only the two values).
    pub(crate) fn parse(value: &str) -> Self {
        if value == CLOSED_REORDER_POINT_LOWERED {
            Self::ReorderPointLowered
        } else {
            Self::Recovered
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LowStockAlert {
    pub alert_id: i64,
    pub sku: Sku,
    pub status: AlertStatus,
    /// Available stock at the event that opened the alert.
    pub available_at_open: u64,
    pub reorder_point_at_open: u64,
    pub opened_at: DateTime<Utc>,
    pub opened_version: u64,
    pub opened_position: LogPosition,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_version: Option<u64>,
    pub closed_position: Option<LogPosition>,
    pub close_reason: Option<AlertCloseReason>,
    pub available_at_close: Option<u64>,
    pub reorder_point_at_close: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    AlertOpened,
    AlertClosed,
}

/// One row of the low-stock outbox. Ids are dense, increasing and stable across replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub notification_id: i64,
    pub kind: NotificationKind,
    pub alert_id: i64,
    pub sku: Sku,
    /// Available stock right after the event that caused the notification.
    pub available: u64,
    pub reorder_point: u64,
    pub close_reason: Option<AlertCloseReason>,
    pub position: LogPosition,
    pub version: u64,
    /// When the causing event was recorded.
    pub occurred_at: DateTime<Utc>,
}

impl ReadModels {
    /// Open low-stock alerts, one per SKU, in SKU order after `after_sku`.
    pub async fn open_alerts(
        &self,
        limit: u64,
        after_sku: Option<&Sku>,
    ) -> Result<Vec<LowStockAlert>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!(
            "SELECT * FROM {schema}.alerts WHERE status = 'open' \
             AND ($1::text IS NULL OR sku > $1) ORDER BY sku LIMIT $2"
        );
        let after = after_sku.map(Sku::as_str);
        self.query(&sql, &[&after, &page_limit(limit)])
            .await?
            .iter()
            .map(alert)
            .collect()
    }

    /// A SKU's alerts, open and closed, newest first.
    pub async fn alert_history(
        &self,
        sku: &Sku,
        limit: u64,
    ) -> Result<Vec<LowStockAlert>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql =
            format!("SELECT * FROM {schema}.alerts WHERE sku = $1 ORDER BY alert_id DESC LIMIT $2");
        self.query(&sql, &[&sku.as_str(), &page_limit(limit)])
            .await?
            .iter()
            .map(alert)
            .collect()
    }

    /// Outbox rows with an id above `after_id`, in id order. A consumer stores the last id it
    /// handled (in the same transaction as its own effect, for exactly-once) and asks again.
    pub async fn notifications_after(
        &self,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<Notification>, ProjectionError> {
        let schema = SchemaName::live(NAME);
        let sql = format!(
            "SELECT * FROM {schema}.notifications WHERE notification_id > $1 \
             ORDER BY notification_id LIMIT $2"
        );
        self.query(&sql, &[&after_id, &page_limit(limit)])
            .await?
            .iter()
            .map(notification)
            .collect()
    }
}

fn alert(row: &Row) -> Result<LowStockAlert, ProjectionError> {
    let status: &str = row.get("status");
    let closed_commit: Option<i64> = row.get("closed_position_commit");
    let closed_prepare: Option<i64> = row.get("closed_position_prepare");
    let closed_position = match (closed_commit, closed_prepare) {
        (Some(commit), Some(prepare)) => Some(position_from(commit, prepare)?.into()),
        _ => None,
    };
    Ok(LowStockAlert {
        alert_id: row.get("alert_id"),
        sku: stored_sku(row.get("sku"))?,
        status: if status == "open" {
            AlertStatus::Open
        } else {
            AlertStatus::Closed
        },
        available_at_open: to_u64("available", row.get("available_at_open"))?,
        reorder_point_at_open: to_u64("reorder point", row.get("reorder_point_at_open"))?,
        opened_at: row.get("opened_at"),
        opened_version: to_u64("version", row.get("opened_version"))?,
        opened_position: log_position(row, "opened_position_commit", "opened_position_prepare")?,
        closed_at: row.get("closed_at"),
        closed_version: optional_u64("version", row.get("closed_version"))?,
        closed_position,
        close_reason: row
            .get::<_, Option<&str>>("close_reason")
            .map(AlertCloseReason::parse),
        available_at_close: optional_u64("available", row.get("available_at_close"))?,
        reorder_point_at_close: optional_u64("reorder point", row.get("reorder_point_at_close"))?,
    })
}

fn notification(row: &Row) -> Result<Notification, ProjectionError> {
    let kind: &str = row.get("kind");
    Ok(Notification {
        notification_id: row.get("notification_id"),
        kind: if kind == KIND_OPENED {
            NotificationKind::AlertOpened
        } else {
            NotificationKind::AlertClosed
        },
        alert_id: row.get("alert_id"),
        sku: stored_sku(row.get("sku"))?,
        available: to_u64("available", row.get("available"))?,
        reorder_point: to_u64("reorder point", row.get("reorder_point"))?,
        close_reason: row
            .get::<_, Option<&str>>("close_reason")
            .map(AlertCloseReason::parse),
        position: log_position(row, "position_commit", "position_prepare")?,
        version: to_u64("version", row.get("version"))?,
        occurred_at: row.get("occurred_at"),
    })
}
