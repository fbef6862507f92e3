//! The status of every projection: checkpoint, the head of the log, lag in events and seconds,
//! the last error, and which database session holds the projection's lock.

use crate::checkpoint;
use crate::convert::LogPosition;
use crate::error::ProjectionError;
use crate::lock::{lock_key, LOCK_CLASS};
use crate::read_models::ReadModels;
use crate::schema_name::SchemaName;
use chrono::{DateTime, Utc};
use ledger_application::store::READ_EVENTS_MAX;
use ledger_application::EventStore;
use ledger_domain::Position;
use serde::Serialize;

/// Most unapplied events a status report counts before it reports "at least this many". Each
/// counted page is a read of the log; a few pages keep a status call cheap however far behind
/// a projection is.
pub const STATUS_LAG_EVENTS_COUNTED_MAX: u64 = 3 * READ_EVENTS_MAX;

#[derive(Debug, Clone, PartialEq, Serialize)]
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

impl ReadModels {
    /// Checkpoint, head, lag, last error and lock holder of every projection, and of every
    /// integration event publisher that has ever run on this database (a publisher's schema is
    /// created by its first run; one never configured is not listed).
    pub async fn status(
        &self,
        store: &dyn EventStore,
    ) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let head = store.head_position().await?;
        let mut statuses = Vec::new();
        for projection in crate::all() {
            statuses.push(self.status_of(store, projection.name(), head).await?);
        }
        for publisher in crate::publisher::NAMES {
            let status = self.status_of(store, publisher, head).await?;
            if status.migrated {
                statuses.push(status);
            }
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
        let client = self.database().pool().get().await?;
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
        let checkpoint = checkpoint::load(&**client, &schema, name).await?;
        drop(client);
        status.checkpoint = checkpoint.position.map(Into::into);
        status.events_applied = checkpoint.events_applied;
        status.checkpoint_updated_at = Some(checkpoint.updated_at);
        status.last_error = checkpoint.last_error;
        status.last_error_at = checkpoint.last_error_at;
        if head.is_some() && head != checkpoint.position {
            let backlog = store
                .backlog(checkpoint.position, STATUS_LAG_EVENTS_COUNTED_MAX)
                .await?;
            status.lag_events = backlog.events;
            status.lag_events_capped = backlog.capped;
            status.lag_seconds = backlog.oldest_recorded_at.map_or(0.0, |recorded_at| {
                (Utc::now() - recorded_at)
                    .to_std()
                    .map_or(0.0, |lag| lag.as_secs_f64())
            });
        }
        Ok(status)
    }
}
