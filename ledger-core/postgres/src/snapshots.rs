//! Snapshots in PostgreSQL (schema `snapshots`), beside the read models: the adapter of the
//! application's [`SnapshotStore`] port. Used with either event store: with EventStoreDB the
//! snapshots still live in the read-model database.

use crate::database::{Database, DatabaseError};
use crate::migrate::{migrate, Migration};
use crate::snapshot_codec;
use async_trait::async_trait;
use ledger_application::snapshot::{Snapshot, SnapshotStore, SNAPSHOT_FORMAT};
use ledger_application::store::StoreError;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    Migration {
        version: 2,
        name: "binary_snapshots",
        sql: "ALTER TABLE snapshots.sku_snapshots
              ADD COLUMN data bytea,
              ALTER COLUMN body DROP NOT NULL;
          -- A snapshot is a cache of data that is compact already; do not spend CPU on
          -- compressing it on every save.
          ALTER TABLE snapshots.sku_snapshots ALTER COLUMN data SET STORAGE EXTERNAL;",
    },
];

/// Snapshots in PostgreSQL (schema `snapshots`), beside the read models. Used with either event
/// store: with EventStoreDB the snapshots still live in the read-model database.
#[derive(Clone)]
pub struct PostgresSnapshots {
    database: Database,
}

impl PostgresSnapshots {
    pub async fn open(database: Database) -> Result<Self, DatabaseError> {
        let mut client = database.client().await?;
        migrate(&mut client, "snapshots", MIGRATIONS).await?;
        Ok(Self { database })
    }
}

fn backend(error: tokio_postgres::Error) -> StoreError {
    StoreError::backend("snapshots", error)
}

#[async_trait]
impl SnapshotStore for PostgresSnapshots {
    async fn load(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let row = self
            .database
            .with_client(async |client| {
                let statement = client
                    .prepare_cached(
                        "SELECT version, last_event_id, data FROM snapshots.sku_snapshots \
                         WHERE stream = $1 AND format = $2",
                    )
                    .await
                    .map_err(backend)?;
                client
                    .query_opt(&statement, &[&stream, &SNAPSHOT_FORMAT])
                    .await
                    .map_err(backend)
            })
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let data: Option<&[u8]> = row.get(2);
        let Some(body) = data.and_then(snapshot_codec::decode) else {
            tracing::warn!(stream, "ignoring a snapshot that does not decode");
            return Ok(None);
        };
        Ok(Some(Snapshot {
            stream: stream.to_owned(),
            version: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            last_event_id: row.get(1),
            state: body.state,
            recent_keys: body.recent_keys,
            holders: body.holders,
            head_hash: body.head.hash,
            head_recorded_at: body.head.recorded_at,
        }))
    }

    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let data = snapshot_codec::encode(
            &snapshot.state,
            &snapshot.recent_keys,
            &snapshot.holders,
            snapshot_codec::ChainHead {
                hash: snapshot.head_hash,
                recorded_at: snapshot.head_recorded_at,
            },
        );
        let version = i64::try_from(snapshot.version).unwrap_or(i64::MAX);
        self.database
            .with_client(async |client| {
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
                     (stream, version, last_event_id, format, data) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (stream) DO UPDATE \
                     SET version = excluded.version, last_event_id = excluded.last_event_id, \
                         format = excluded.format, body = NULL, data = excluded.data, \
                         taken_at = now() \
                   WHERE s.version < excluded.version OR s.format <> excluded.format",
                        &[
                            &snapshot.stream,
                            &version,
                            &snapshot.last_event_id,
                            &SNAPSHOT_FORMAT,
                            &data,
                        ],
                    )
                    .await
                    .map_err(backend)?;
                transaction.commit().await.map_err(backend)
            })
            .await
    }

    async fn discard(&self, stream: &str) -> Result<(), StoreError> {
        self.database
            .with_client(async |client| {
                client
                    .execute(
                        "DELETE FROM snapshots.sku_snapshots WHERE stream = $1",
                        &[&stream],
                    )
                    .await
                    .map_err(backend)
            })
            .await?;
        Ok(())
    }
}
