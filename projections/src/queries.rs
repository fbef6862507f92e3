//! The read side for the API and the CLI: typed queries over the live read model schemas, and
//! the status of every projection. Every list is bounded by [`PAGE_SIZE_MAX`] and paged by a key
//! (SKU, version or id), never by offset, so a page costs the same however deep it is.

use crate::error::ProjectionError;
use crate::lock::{lock_key, LOCK_CLASS};
use crate::low_stock_alerts::{self, CLOSED_REORDER_POINT_LOWERED, KIND_OPENED};
use crate::projection::{self, position_from, to_i64, to_u64};
use crate::schema::SchemaName;
use crate::{reservations, stock_levels, stock_movements};
use chrono::{DateTime, Utc};
use ledger_core::domain::{ReservationStatus, Sku};
use ledger_core::pg::Database;
use ledger_core::store::READ_EVENTS_MAX;
use ledger_core::{EventStore, Position};
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;

/// Most rows one query returns. Callers page on with the key of the last row.
pub const PAGE_SIZE_MAX: u64 = 1_000;

/// Most unapplied events a status report counts before it reports "at least this many". Each
/// counted page is a read of the log; a few pages keep a status call cheap however far behind
/// a projection is.
pub const STATUS_LAG_EVENTS_COUNTED_MAX: u64 = 3 * READ_EVENTS_MAX;

fn page_limit(limit: u64) -> i64 {
    limit.clamp(1, PAGE_SIZE_MAX) as i64
}

/// A place in the store-wide log, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
pub struct LogPosition {
    pub commit: u64,
    pub prepare: u64,
}

impl From<Position> for LogPosition {
    fn from(position: Position) -> Self {
        Self {
            commit: position.commit,
            prepare: position.prepare,
        }
    }
}

impl From<LogPosition> for Position {
    fn from(position: LogPosition) -> Self {
        Self {
            commit: position.commit,
            prepare: position.prepare,
        }
    }
}

fn log_position(row: &Row, commit: &str, prepare: &str) -> Result<LogPosition, ProjectionError> {
    Ok(position_from(row.get(commit), row.get(prepare))?.into())
}

fn optional_u64(what: &'static str, value: Option<i64>) -> Result<Option<u64>, ProjectionError> {
    value.map(|v| to_u64(what, v)).transpose()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StockLevel {
    #[schema(value_type = String, example = "SHOE-42")]
    pub sku: Sku,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub reorder_point: u64,
    pub below_reorder_point: bool,
    /// The SKU's stream version this row reflects.
    pub version: u64,
    /// When the last event that moved stock was recorded (reorder point changes do not count).
    pub last_movement_at: Option<DateTime<Utc>>,
    /// When the last event of the SKU was recorded.
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReservationRow {
    #[schema(value_type = String)]
    pub sku: Sku,
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub quantity: u64,
    #[schema(value_type = String, example = "open")]
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

/// One row of the movement ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Movement {
    pub position: LogPosition,
    #[schema(value_type = String)]
    pub sku: Sku,
    pub version: u64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    /// replenished, reserved, released, expired, confirmed, adjusted; `None` for an event that
    /// moves no stock (a reorder point change).
    pub movement: Option<String>,
    pub on_hand_change: i64,
    pub reserved_change: i64,
    pub on_hand_after: u64,
    pub reserved_after: u64,
    pub available_after: u64,
    pub reorder_point_after: u64,
    pub reservation_id: Option<String>,
    pub order_id: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    /// The principal that caused the event.
    pub actor: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// Which movements of a SKU to return, in version order.
#[derive(Debug, Clone, Default)]
pub struct MovementFilter {
    /// Only movements recorded at or after this moment.
    pub from: Option<DateTime<Utc>>,
    /// Only movements recorded before this moment.
    pub to: Option<DateTime<Utc>>,
    /// Only movements after this version (paging).
    pub after_version: Option<u64>,
    /// Most rows to return, 1 to [`PAGE_SIZE_MAX`].
    pub limit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertCloseReason {
    /// Available stock returned to the reorder point or above.
    Recovered,
    /// The reorder point was lowered to (or below) available stock.
    ReorderPointLowered,
}

impl AlertCloseReason {
    fn parse(value: &str) -> Self {
        if value == CLOSED_REORDER_POINT_LOWERED {
            Self::ReorderPointLowered
        } else {
            Self::Recovered
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LowStockAlert {
    pub alert_id: i64,
    #[schema(value_type = String)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    AlertOpened,
    AlertClosed,
}

/// One row of the low-stock outbox. Ids are dense, increasing and stable across replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Notification {
    pub notification_id: i64,
    pub kind: NotificationKind,
    pub alert_id: i64,
    #[schema(value_type = String)]
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

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProjectionStatus {
    pub name: String,
    /// False until the projection's schema has been created.
    pub migrated: bool,
    pub checkpoint: Option<LogPosition>,
    pub head: Option<LogPosition>,
    /// Events in the log after the checkpoint, counted up to a bound (see `lag_events_capped`).
    pub lag_events: u64,
    /// True when there are at least `lag_events` unapplied events, possibly more.
    pub lag_events_capped: bool,
    /// How long the oldest unapplied event has been waiting; 0 when caught up.
    pub lag_seconds: f64,
    pub events_applied: u64,
    pub checkpoint_updated_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// True when some runner holds the projection's lock.
    pub running: bool,
    /// Which database session holds the lock: its application name and backend pid.
    pub held_by: Option<String>,
}

/// Queries over the live read models.
#[derive(Clone)]
pub struct ReadModels {
    database: Database,
}

impl ReadModels {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, ProjectionError> {
        let client = self.database.pool().get().await?;
        let statement = client.prepare_cached(sql).await?;
        Ok(client.query(&statement, params).await?)
    }

    pub async fn stock_level(&self, sku: &Sku) -> Result<Option<StockLevel>, ProjectionError> {
        let schema = SchemaName::live(stock_levels::NAME);
        let sql = format!("{} WHERE sku = $1", stock_level_select(&schema));
        self.query(&sql, &[&sku.as_str()])
            .await?
            .first()
            .map(stock_level)
            .transpose()
    }

    /// SKUs whose available stock is below their reorder point, in SKU order after `after_sku`.
    pub async fn stock_levels_below_reorder_point(
        &self,
        limit: u64,
        after_sku: Option<&Sku>,
    ) -> Result<Vec<StockLevel>, ProjectionError> {
        let schema = SchemaName::live(stock_levels::NAME);
        let sql = format!(
            "{} WHERE on_hand - reserved < reorder_point AND ($1::text IS NULL OR sku > $1) \
             ORDER BY sku LIMIT $2",
            stock_level_select(&schema)
        );
        let after = after_sku.map(Sku::as_str);
        self.query(&sql, &[&after, &page_limit(limit)])
            .await?
            .iter()
            .map(stock_level)
            .collect()
    }

    /// Open low-stock alerts, one per SKU, in SKU order after `after_sku`.
    pub async fn open_alerts(
        &self,
        limit: u64,
        after_sku: Option<&Sku>,
    ) -> Result<Vec<LowStockAlert>, ProjectionError> {
        let schema = SchemaName::live(low_stock_alerts::NAME);
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
        let schema = SchemaName::live(low_stock_alerts::NAME);
        let sql =
            format!("SELECT * FROM {schema}.alerts WHERE sku = $1 ORDER BY alert_id DESC LIMIT $2");
        self.query(&sql, &[&sku.as_str(), &page_limit(limit)])
            .await?
            .iter()
            .map(alert)
            .collect()
    }

    /// A SKU's movements in version order, filtered by recorded time and paged by version.
    pub async fn movements(
        &self,
        sku: &Sku,
        filter: MovementFilter,
    ) -> Result<Vec<Movement>, ProjectionError> {
        let schema = SchemaName::live(stock_movements::NAME);
        let sql = format!(
            "SELECT * FROM {schema}.movements WHERE sku = $1 \
             AND ($2::timestamptz IS NULL OR recorded_at >= $2) \
             AND ($3::timestamptz IS NULL OR recorded_at < $3) \
             AND ($4::bigint IS NULL OR version > $4) \
             ORDER BY version LIMIT $5"
        );
        let after_version = filter
            .after_version
            .map(|v| to_i64("version", v))
            .transpose()?;
        self.query(
            &sql,
            &[
                &sku.as_str(),
                &filter.from,
                &filter.to,
                &after_version,
                &page_limit(filter.limit),
            ],
        )
        .await?
        .iter()
        .map(movement)
        .collect()
    }

    /// A SKU's reservations, newest first, optionally only those with `status`.
    pub async fn reservations(
        &self,
        sku: &Sku,
        status: Option<ReservationStatus>,
        limit: u64,
    ) -> Result<Vec<ReservationRow>, ProjectionError> {
        let schema = SchemaName::live(reservations::NAME);
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

    /// Open reservations whose expiry time is at or before `now`, soonest first: the expiry
    /// worker's queue.
    pub async fn due_reservations(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<(Sku, ledger_core::domain::ReservationId)>, ProjectionError> {
        let schema = SchemaName::live(reservations::NAME);
        let sql = format!(
            "SELECT sku, reservation_id FROM {schema}.reservations \
             WHERE status = 'open' AND expires_at IS NOT NULL AND expires_at <= $1 \
             ORDER BY expires_at, sku, reservation_id LIMIT $2"
        );
        self.query(&sql, &[&now, &page_limit(limit)])
            .await?
            .iter()
            .map(|row| {
                let sku = projection::stored_sku(row.get("sku"))?;
                let id: &str = row.get("reservation_id");
                let id = ledger_core::domain::ReservationId::parse(id).map_err(|e| {
                    ProjectionError::OutOfRange {
                        what: "stored reservation id",
                        value: e.to_string(),
                    }
                })?;
                Ok((sku, id))
            })
            .collect()
    }

    /// Outbox rows with an id above `after_id`, in id order. A consumer stores the last id it
    /// handled (in the same transaction as its own effect, for exactly-once) and asks again.
    pub async fn notifications_after(
        &self,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<Notification>, ProjectionError> {
        let schema = SchemaName::live(low_stock_alerts::NAME);
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

    /// Checkpoint, head, lag, last error and lock holder of every projection.
    pub async fn status(
        &self,
        store: &dyn EventStore,
    ) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let head = store.head_position().await?;
        let mut statuses = Vec::new();
        for projection in projection::all() {
            statuses.push(self.status_of(store, projection.name(), head).await?);
        }
        Ok(statuses)
    }

    async fn status_of(
        &self,
        store: &dyn EventStore,
        name: &'static str,
        head: Option<Position>,
    ) -> Result<ProjectionStatus, ProjectionError> {
        let schema = SchemaName::live(name);
        let client = self.database.pool().get().await?;
        let exists: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("{schema}.checkpoint")],
            )
            .await?
            .get(0);
        let holder = client
            .query_opt(
                "SELECT a.application_name, a.pid FROM pg_locks l \
                 JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
                   AND l.database = (SELECT oid FROM pg_database \
                                     WHERE datname = current_database()) \
                   AND l.classid::bigint = $1 AND l.objid::bigint = $2 LIMIT 1",
                &[
                    &i64::from(LOCK_CLASS as u32),
                    &i64::from(lock_key(name) as u32),
                ],
            )
            .await?
            .map(|row| {
                let application: Option<String> = row.get(0);
                let pid: i32 = row.get(1);
                format!("{} (backend pid {pid})", application.unwrap_or_default())
            });
        let mut status = ProjectionStatus {
            name: name.to_owned(),
            migrated: exists,
            checkpoint: None,
            head: head.map(Into::into),
            lag_events: 0,
            lag_events_capped: false,
            lag_seconds: 0.0,
            events_applied: 0,
            checkpoint_updated_at: None,
            last_error: None,
            last_error_at: None,
            running: holder.is_some(),
            held_by: holder,
        };
        if !exists {
            return Ok(status);
        }
        let checkpoint = crate::checkpoint::load(&**client, &schema, name).await?;
        drop(client);
        status.checkpoint = checkpoint.position.map(Into::into);
        status.events_applied = checkpoint.events_applied;
        status.checkpoint_updated_at = Some(checkpoint.updated_at);
        status.last_error = checkpoint.last_error;
        status.last_error_at = checkpoint.last_error_at;
        if head.is_some() && head != checkpoint.position {
            let (lag_events, capped, oldest) = count_after(store, checkpoint.position).await?;
            status.lag_events = lag_events;
            status.lag_events_capped = capped;
            status.lag_seconds = oldest.map_or(0.0, |recorded_at| {
                (Utc::now() - recorded_at)
                    .to_std()
                    .map_or(0.0, |lag| lag.as_secs_f64())
            });
        }
        Ok(status)
    }
}

/// Events after `after`, counted up to [`STATUS_LAG_EVENTS_COUNTED_MAX`], whether the count
/// stopped at that bound, and when the first of them was recorded.
async fn count_after(
    store: &dyn EventStore,
    after: Option<Position>,
) -> Result<(u64, bool, Option<DateTime<Utc>>), ProjectionError> {
    let mut counted = 0;
    let mut cursor = after;
    let mut oldest = None;
    while counted < STATUS_LAG_EVENTS_COUNTED_MAX {
        let page = store.read_all(cursor, READ_EVENTS_MAX).await?;
        let Some(last) = page.last() else {
            return Ok((counted, false, oldest));
        };
        if oldest.is_none() {
            oldest = page.first().map(|e| e.recorded_at);
        }
        cursor = Some(last.position);
        counted += page.len() as u64;
        if (page.len() as u64) < READ_EVENTS_MAX {
            return Ok((counted, false, oldest));
        }
    }
    Ok((counted, true, oldest))
}

fn stock_level_select(schema: &SchemaName) -> String {
    format!(
        "SELECT sku, on_hand, reserved, available, reorder_point, version, last_movement_at, \
         updated_at FROM {schema}.stock_levels"
    )
}

fn stock_level(row: &Row) -> Result<StockLevel, ProjectionError> {
    let available = to_u64("available", row.get("available"))?;
    let reorder_point = to_u64("reorder point", row.get("reorder_point"))?;
    Ok(StockLevel {
        sku: projection::stored_sku(row.get("sku"))?,
        on_hand: to_u64("on hand", row.get("on_hand"))?,
        reserved: to_u64("reserved", row.get("reserved"))?,
        available,
        reorder_point,
        below_reorder_point: available < reorder_point,
        version: to_u64("version", row.get("version"))?,
        last_movement_at: row.get("last_movement_at"),
        updated_at: row.get("updated_at"),
    })
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
        sku: projection::stored_sku(row.get("sku"))?,
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

fn movement(row: &Row) -> Result<Movement, ProjectionError> {
    Ok(Movement {
        position: log_position(row, "position_commit", "position_prepare")?,
        sku: projection::stored_sku(row.get("sku"))?,
        version: to_u64("version", row.get("version"))?,
        event_id: row.get("event_id"),
        event_type: row.get("event_type"),
        movement: row.get("movement"),
        on_hand_change: row.get("on_hand_change"),
        reserved_change: row.get("reserved_change"),
        on_hand_after: to_u64("on hand", row.get("on_hand_after"))?,
        reserved_after: to_u64("reserved", row.get("reserved_after"))?,
        available_after: to_u64("available", row.get("available_after"))?,
        reorder_point_after: to_u64("reorder point", row.get("reorder_point_after"))?,
        reservation_id: row.get("reservation_id"),
        order_id: row.get("order_id"),
        reason: row.get("reason"),
        reference: row.get("reference"),
        actor: row.get("actor"),
        correlation_id: row.get("correlation_id"),
        causation_id: row.get("causation_id"),
        recorded_at: row.get("recorded_at"),
    })
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
        sku: projection::stored_sku(row.get("sku"))?,
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
        sku: projection::stored_sku(row.get("sku"))?,
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
