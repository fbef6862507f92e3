//! The bench's own way into the ledger's PostgreSQL, beside the API: the embedded cluster the
//! API process started (found again under its folder, as the replay tool finds it; the API
//! process owns its lifetime), or the database at `--database-url`. The scenarios that read checkpoints, write large histories,
//! rebuild projections or run pgbench go through it.

use ledger_application::EventStore;
use ledger_domain::Position;
use ledger_postgres::cluster::{ClusterOptions, PrivateCluster};
use ledger_postgres::Database;
use ledger_postgres::PostgresStore;
use ledger_projections::schema_name::SchemaName;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections of the bench's own pool: the history writers (see
/// `history::APPENDERS_MAX`), the lag poller and a rebuild's reader and writer beside them. Kept
/// small because the embedded cluster's connection limit is shared with the API's pool and
/// with pgbench's clients.
pub const BENCH_POOL_SIZE: usize = 6;

/// The settings that decide whether a commit survives a crash (all `on` is durable: the
/// commit is flushed to disk before it is acknowledged, and torn pages can be repaired).
const DURABILITY_SETTINGS: [&str; 3] = ["fsync", "synchronous_commit", "full_page_writes"];

/// How often the projections' checkpoints are compared with the log's head while waiting for
/// them to catch up.
const CATCH_UP_POLL_INTERVAL_MS: u64 = 100;

/// How pgbench reaches the same database.
#[derive(Debug, Clone)]
pub enum PgbenchTarget {
    /// The embedded cluster: its socket folder and database, as the superuser.
    Socket { socket_dir: PathBuf, dbname: String },
    /// A connection URL, passed to pgbench as its database argument.
    Url(String),
}

#[derive(Clone)]
pub struct LedgerDatabase {
    pub database: Database,
    /// The Postgres event store over the same database, typed as the API holds its store.
    pub store: Arc<dyn EventStore>,
    pub pgbench_target: PgbenchTarget,
}

impl LedgerDatabase {
    /// Attach to the embedded cluster the API runs under `folder`. Starting a cluster that
    /// already runs only finds it again; stopping it stays the API's job.
    pub async fn embedded(folder: &Path, dbname: &str) -> Result<Self, String> {
        let cluster = PrivateCluster::start(&ClusterOptions {
            folder: folder.to_owned(),
            durable: true,
            max_connections: ledger_startup::backends::EMBEDDED_CONNECTIONS_MAX,
        })
        .await
        .map_err(|e| format!("embedded PostgreSQL: {e}"))?;
        let database = Database::from_config(cluster.connection_config(dbname), BENCH_POOL_SIZE)
            .map_err(|e| e.to_string())?;
        let target = PgbenchTarget::Socket {
            socket_dir: cluster.socket_dir(),
            dbname: dbname.to_owned(),
        };
        Self::open(database, target).await
    }

    pub async fn from_url(url: &str) -> Result<Self, String> {
        let database = Database::from_url(url, BENCH_POOL_SIZE).map_err(|e| e.to_string())?;
        Self::open(database, PgbenchTarget::Url(url.to_owned())).await
    }

    async fn open(database: Database, pgbench_target: PgbenchTarget) -> Result<Self, String> {
        database.ping().await.map_err(|e| e.to_string())?;
        let store = PostgresStore::open(database.clone())
            .await
            .map_err(|e| format!("event store: {e}"))?;
        Ok(Self {
            database,
            store: Arc::new(store),
            pgbench_target,
        })
    }

    /// A connection from the bench's pool.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, String> {
        self.database.pool().get().await.map_err(|e| e.to_string())
    }

    /// The live checkpoint of `projection`.
    pub async fn checkpoint(&self, projection: &str) -> Result<Option<Position>, String> {
        let client = self.client().await?;
        Self::checkpoint_on(&client, projection).await
    }

    /// The live checkpoint of `projection`, read over `client`.
    pub async fn checkpoint_on(
        client: &tokio_postgres::Client,
        projection: &str,
    ) -> Result<Option<Position>, String> {
        let checkpoint =
            ledger_projections::checkpoint::load(client, &SchemaName::live(projection), projection)
                .await
                .map_err(|e| e.to_string())?;
        Ok(checkpoint.position)
    }

    /// How durable a commit is on this database: the settings that decide it, as PostgreSQL
    /// reports them.
    pub async fn durability(&self) -> Result<String, String> {
        let client = self.client().await?;
        let mut settings = Vec::new();
        for name in DURABILITY_SETTINGS {
            let row = client
                .query_one("SELECT current_setting($1)", &[&name])
                .await
                .map_err(|e| format!("reading {name}: {e}"))?;
            settings.push(format!("{name}={}", row.get::<_, String>(0)));
        }
        Ok(settings.join(", "))
    }

    /// Connections this database would still accept: its limit less the client connections
    /// open now.
    pub async fn free_connections(&self) -> Result<i64, String> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT current_setting('max_connections')::bigint, \
                        (SELECT count(*) FROM pg_stat_activity \
                          WHERE backend_type = 'client backend')",
                &[],
            )
            .await
            .map_err(|e| format!("counting connections: {e}"))?;
        let (limit, open): (i64, i64) = (row.get(0), row.get(1));
        Ok(limit - open)
    }

    /// Wait until every projection's live checkpoint has reached the log's head as it is now.
    /// Returns how long that took, or an error on `timeout`.
    pub async fn wait_for_projections(&self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let head = self
            .store
            .head_position()
            .await
            .map_err(|e| e.to_string())?;
        let Some(head) = head else {
            return Ok(Duration::ZERO);
        };
        for projection in ledger_projections::names() {
            loop {
                if self.checkpoint(projection).await? >= Some(head) {
                    break;
                }
                if started.elapsed() > timeout {
                    return Err(format!(
                        "projection {projection} did not reach the log's head {head} within {} s",
                        timeout.as_secs()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(CATCH_UP_POLL_INTERVAL_MS)).await;
            }
        }
        Ok(started.elapsed())
    }
}
