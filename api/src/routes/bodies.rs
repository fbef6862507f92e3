//! Response bodies served from the read models. They are the HTTP contract (with their OpenAPI
//! schemas), kept apart from the read models' row types so that a change to a table is a
//! deliberate change here, not an accident of the wire format; each converts from its row.

use chrono::{DateTime, Utc};
use ledger_domain::{ReservationStatus, Sku};
use ledger_projections as rows;
use serde::Serialize;
use utoipa::ToSchema;

/// A place in the store-wide log, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
pub struct LogPosition {
    pub commit: u64,
    pub prepare: u64,
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

impl From<rows::LogPosition> for LogPosition {
    fn from(position: rows::LogPosition) -> Self {
        Self {
            commit: position.commit,
            prepare: position.prepare,
        }
    }
}

impl From<rows::StockLevel> for StockLevel {
    fn from(row: rows::StockLevel) -> Self {
        Self {
            sku: row.sku,
            on_hand: row.on_hand,
            reserved: row.reserved,
            available: row.available,
            reorder_point: row.reorder_point,
            below_reorder_point: row.below_reorder_point,
            version: row.version,
            last_movement_at: row.last_movement_at,
            updated_at: row.updated_at,
        }
    }
}

impl From<rows::ReservationRow> for ReservationRow {
    fn from(row: rows::ReservationRow) -> Self {
        Self {
            sku: row.sku,
            reservation_id: row.reservation_id,
            order_id: row.order_id,
            quantity: row.quantity,
            status: row.status,
            ttl_seconds: row.ttl_seconds,
            created_at: row.created_at,
            expires_at: row.expires_at,
            closed_at: row.closed_at,
            opened_version: row.opened_version,
            closed_version: row.closed_version,
            close_reason: row.close_reason,
        }
    }
}

impl From<rows::Movement> for Movement {
    fn from(row: rows::Movement) -> Self {
        Self {
            position: row.position.into(),
            sku: row.sku,
            version: row.version,
            event_id: row.event_id,
            event_type: row.event_type,
            movement: row.movement,
            on_hand_change: row.on_hand_change,
            reserved_change: row.reserved_change,
            on_hand_after: row.on_hand_after,
            reserved_after: row.reserved_after,
            available_after: row.available_after,
            reorder_point_after: row.reorder_point_after,
            reservation_id: row.reservation_id,
            order_id: row.order_id,
            reason: row.reason,
            reference: row.reference,
            actor: row.actor,
            correlation_id: row.correlation_id,
            causation_id: row.causation_id,
            recorded_at: row.recorded_at,
        }
    }
}

impl From<rows::AlertStatus> for AlertStatus {
    fn from(status: rows::AlertStatus) -> Self {
        match status {
            rows::AlertStatus::Open => Self::Open,
            rows::AlertStatus::Closed => Self::Closed,
        }
    }
}

impl From<rows::AlertCloseReason> for AlertCloseReason {
    fn from(reason: rows::AlertCloseReason) -> Self {
        match reason {
            rows::AlertCloseReason::Recovered => Self::Recovered,
            rows::AlertCloseReason::ReorderPointLowered => Self::ReorderPointLowered,
        }
    }
}

impl From<rows::LowStockAlert> for LowStockAlert {
    fn from(row: rows::LowStockAlert) -> Self {
        Self {
            alert_id: row.alert_id,
            sku: row.sku,
            status: row.status.into(),
            available_at_open: row.available_at_open,
            reorder_point_at_open: row.reorder_point_at_open,
            opened_at: row.opened_at,
            opened_version: row.opened_version,
            opened_position: row.opened_position.into(),
            closed_at: row.closed_at,
            closed_version: row.closed_version,
            closed_position: row.closed_position.map(Into::into),
            close_reason: row.close_reason.map(Into::into),
            available_at_close: row.available_at_close,
            reorder_point_at_close: row.reorder_point_at_close,
        }
    }
}

impl From<rows::NotificationKind> for NotificationKind {
    fn from(kind: rows::NotificationKind) -> Self {
        match kind {
            rows::NotificationKind::AlertOpened => Self::AlertOpened,
            rows::NotificationKind::AlertClosed => Self::AlertClosed,
        }
    }
}

impl From<rows::Notification> for Notification {
    fn from(row: rows::Notification) -> Self {
        Self {
            notification_id: row.notification_id,
            kind: row.kind.into(),
            alert_id: row.alert_id,
            sku: row.sku,
            available: row.available,
            reorder_point: row.reorder_point,
            close_reason: row.close_reason.map(Into::into),
            position: row.position.into(),
            version: row.version,
            occurred_at: row.occurred_at,
        }
    }
}

impl From<rows::ProjectionStatus> for ProjectionStatus {
    fn from(status: rows::ProjectionStatus) -> Self {
        Self {
            name: status.name,
            migrated: status.migrated,
            checkpoint: status.checkpoint.map(Into::into),
            head: status.head.map(Into::into),
            lag_events: status.lag_events,
            lag_events_capped: status.lag_events_capped,
            lag_seconds: status.lag_seconds,
            events_applied: status.events_applied,
            checkpoint_updated_at: status.checkpoint_updated_at,
            last_error: status.last_error,
            last_error_at: status.last_error_at,
            running: status.running,
            held_by: status.held_by,
        }
    }
}

/// Every row of a read-model query as its response body.
/// One SKU's balances at one location (the per-location read model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LocationStock {
    pub location: String,
    #[schema(value_type = String, example = "SHOE-42")]
    pub sku: Sku,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub reorder_point: u64,
    pub below_reorder_point: bool,
    /// Units on their way here by transfers.
    pub in_transit: u64,
    /// The SKU's stream version this row reflects.
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl From<rows::LocationStockRow> for LocationStock {
    fn from(row: rows::LocationStockRow) -> Self {
        Self {
            location: row.location,
            sku: row.sku,
            on_hand: row.on_hand,
            reserved: row.reserved,
            available: row.available,
            reorder_point: row.reorder_point,
            below_reorder_point: row.below_reorder_point,
            in_transit: row.in_transit,
            version: row.version,
            updated_at: row.updated_at,
        }
    }
}

/// A low-stock alert of one SKU at one location: that location's available against that
/// location's reorder point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LocationAlert {
    pub location: String,
    #[schema(value_type = String, example = "SHOE-42")]
    pub sku: Sku,
    pub status: AlertStatus,
    /// Available stock at the location at the event that opened the alert.
    pub available_at_open: u64,
    pub reorder_point_at_open: u64,
    pub opened_at: DateTime<Utc>,
    pub opened_version: u64,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_version: Option<u64>,
    pub close_reason: Option<AlertCloseReason>,
    pub available_at_close: Option<u64>,
    pub reorder_point_at_close: Option<u64>,
}

impl From<rows::LocationAlertRow> for LocationAlert {
    fn from(row: rows::LocationAlertRow) -> Self {
        Self {
            location: row.location,
            sku: row.sku,
            status: row.status.into(),
            available_at_open: row.available_at_open,
            reorder_point_at_open: row.reorder_point_at_open,
            opened_at: row.opened_at,
            opened_version: row.opened_version,
            closed_at: row.closed_at,
            closed_version: row.closed_version,
            close_reason: row.close_reason.map(Into::into),
            available_at_close: row.available_at_close,
            reorder_point_at_close: row.reorder_point_at_close,
        }
    }
}

/// A transfer between two locations of a SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Transfer {
    #[schema(value_type = String, example = "SHOE-42")]
    pub sku: Sku,
    pub transfer_id: String,
    pub from_location: String,
    pub to_location: String,
    pub quantity: u64,
    pub reference: Option<String>,
    /// in_transit, received or cancelled.
    #[schema(value_type = String, example = "in_transit")]
    pub status: ledger_domain::TransferStatus,
    pub quantity_received: Option<u64>,
    /// The discrepancy reason of a short receipt, or why the transfer was cancelled.
    pub reason: Option<String>,
    pub dispatched_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub dispatched_version: u64,
    pub closed_version: Option<u64>,
}

impl From<rows::TransferRowView> for Transfer {
    fn from(row: rows::TransferRowView) -> Self {
        Self {
            sku: row.sku,
            transfer_id: row.transfer_id,
            from_location: row.from_location,
            to_location: row.to_location,
            quantity: row.quantity,
            reference: row.reference,
            status: row.status,
            quantity_received: row.quantity_received,
            reason: row.reason,
            dispatched_at: row.dispatched_at,
            closed_at: row.closed_at,
            dispatched_version: row.dispatched_version,
            closed_version: row.closed_version,
        }
    }
}

pub fn bodies<R, B: From<R>>(rows: Vec<R>) -> Vec<B> {
    rows.into_iter().map(B::from).collect()
}
