//! Snapshots of SKU aggregates, so that loading a SKU with a long stream reads one row and the
//! events after it instead of the whole stream.
//!
//! A snapshot is a cache, never a source of truth: it records the stream version and the id
//! of the event it was folded up to, and a loader uses it only if the stream still holds that
//! event at that version (a store that was reset or replaced invalidates every snapshot by
//! itself). A snapshot written by another build of the code (`SNAPSHOT_FORMAT` differs) or one
//! that no longer decodes is ignored and the stream is replayed in full. Auditors never see
//! snapshots: `ledger-replay verify` and `history` fold the events themselves.

use crate::domain::SkuState;
use crate::pg::migrate::{migrate, Migration};
use crate::pg::{Database, DatabaseError};
use crate::store::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// A snapshot is taken once this many events were folded since the last one (or since the
/// stream's start). Loading then replays at most about this many events after the snapshot;
/// writing one costs a row of the SKU's state, in the background.
pub const SNAPSHOT_INTERVAL_EVENTS: u64 = 1_000;

/// The layout of the stored state; bump it when `SkuState` or the key window changes shape so
/// that older snapshots are ignored rather than misread.
pub const SNAPSHOT_FORMAT: i32 = 1;

/// A SKU's folded state at one version of its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub stream: String,
    /// The version of the last event folded into `state`.
    pub version: u64,
    /// The id of that event; the snapshot is only valid while the stream holds it there.
    pub last_event_id: Uuid,
    pub state: SkuState,
    /// The idempotency keys of the most recent events: (key, first version, last version).
    pub recent_keys: Vec<(String, u64, u64)>,
}

#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// The latest snapshot of `stream`, if any usable one is stored.
    async fn load(&self, stream: &str) -> Result<Option<Snapshot>, StoreError>;

    /// Store `snapshot` unless a newer one of the same stream is already stored.
    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Forget the snapshot of `stream` (a loader found it does not match the stream).
    async fn discard(&self, stream: &str) -> Result<(), StoreError>;
}

/// Snapshots in memory, for tests and in-memory deployments.
#[derive(Default, Clone)]
pub struct MemorySnapshots {
    inner: Arc<Mutex<HashMap<String, Snapshot>>>,
}

impl MemorySnapshots {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace a stored snapshot outright (tests use it to plant stale or foreign snapshots).
    pub fn put(&self, snapshot: Snapshot) {
        self.inner
            .lock()
            .expect("snapshot map lock")
            .insert(snapshot.stream.clone(), snapshot);
    }
}

#[async_trait]
impl SnapshotStore for MemorySnapshots {
    async fn load(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self
            .inner
            .lock()
            .expect("snapshot map lock")
            .get(stream)
            .cloned())
    }

    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("snapshot map lock");
        let newer = inner
            .get(&snapshot.stream)
            .is_some_and(|stored| stored.version >= snapshot.version);
        if !newer {
            inner.insert(snapshot.stream.clone(), snapshot.clone());
        }
        Ok(())
    }

    async fn discard(&self, stream: &str) -> Result<(), StoreError> {
        self.inner.lock().expect("snapshot map lock").remove(stream);
        Ok(())
    }
}

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "snapshots",
    sql: "CREATE SCHEMA IF NOT EXISTS snapshots;
          CREATE TABLE snapshots.sku_snapshots (
              stream        text        PRIMARY KEY,
              version       bigint      NOT NULL CHECK (version >= 0),
              last_event_id uuid        NOT NULL,
              format        integer     NOT NULL,
              body          jsonb       NOT NULL,
              taken_at      timestamptz NOT NULL DEFAULT now()
          );",
}];

/// Snapshots in PostgreSQL (schema `snapshots`), beside the read models. Used with either event
/// store: with EventStoreDB the snapshots still live in the read-model database.
#[derive(Clone)]
pub struct PostgresSnapshots {
    database: Database,
}

#[derive(Serialize, Deserialize)]
struct Body {
    state: SkuState,
    recent_keys: Vec<(String, u64, u64)>,
}

impl PostgresSnapshots {
    pub async fn open(database: Database) -> Result<Self, DatabaseError> {
        let mut client = database
            .pool()
            .get()
            .await
            .map_err(|e| DatabaseError::Unreachable(e.to_string()))?;
        migrate(&mut client, "snapshots", MIGRATIONS).await?;
        Ok(Self { database })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.database
            .pool()
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

fn backend(error: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(format!("snapshots: {error}"))
}

#[async_trait]
impl SnapshotStore for PostgresSnapshots {
    async fn load(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT version, last_event_id, body FROM snapshots.sku_snapshots \
                 WHERE stream = $1 AND format = $2",
            )
            .await
            .map_err(backend)?;
        let Some(row) = client
            .query_opt(&statement, &[&stream, &SNAPSHOT_FORMAT])
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let body: serde_json::Value = row.get(2);
        let Ok(body) = serde_json::from_value::<Body>(body) else {
            tracing::warn!(stream, "ignoring a snapshot that does not decode");
            return Ok(None);
        };
        Ok(Some(Snapshot {
            stream: stream.to_owned(),
            version: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            last_event_id: row.get(1),
            state: body.state,
            recent_keys: body.recent_keys,
        }))
    }

    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let body = serde_json::to_value(Body {
            state: snapshot.state.clone(),
            recent_keys: snapshot.recent_keys.clone(),
        })
        .expect("a SKU state always serialises");
        let version = i64::try_from(snapshot.version).unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(backend)?;
        // A snapshot is a cache that can always be rebuilt from the stream: losing the last few
        // in a crash costs a longer load, never a wrong one, so its commit need not wait for
        // the disk.
        transaction
            .batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .map_err(backend)?;
        transaction
            .execute(
                "INSERT INTO snapshots.sku_snapshots AS s \
                     (stream, version, last_event_id, format, body) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (stream) DO UPDATE \
                     SET version = excluded.version, last_event_id = excluded.last_event_id, \
                         format = excluded.format, body = excluded.body, taken_at = now() \
                   WHERE s.version < excluded.version OR s.format <> excluded.format",
                &[
                    &snapshot.stream,
                    &version,
                    &snapshot.last_event_id,
                    &SNAPSHOT_FORMAT,
                    &body,
                ],
            )
            .await
            .map_err(backend)?;
        transaction.commit().await.map_err(backend)
    }

    async fn discard(&self, stream: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM snapshots.sku_snapshots WHERE stream = $1",
                &[&stream],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }
}
