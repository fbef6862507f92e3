//! Opens the ledger the way the API does: `EVENTSTORE_URL` selects EventStoreDB for the events,
//! `DATABASE_URL` a shared PostgreSQL, and with neither the embedded cluster under the data
//! folder. The tool starts the embedded cluster only when it is not running, and then stops it
//! again, so an API running on the same folder is never disturbed.

use crate::cli::BackendArguments;
use crate::error::ToolError;
use ledger_core::pg::cluster::{ClusterOptions, PrivateCluster};
use ledger_core::pg::Database;
use ledger_core::store::kurrent::{KurrentOptions, KurrentStore};
use ledger_core::store::postgres::PostgresStore;
use ledger_core::EventStore;
use std::path::Path;
use std::sync::Arc;

/// The database the embedded cluster keeps the ledger in (the API's choice).
pub const EMBEDDED_DATABASE: &str = "ledger";

/// Connections the embedded cluster accepts when this tool is the one to start it; the same
/// bound as the API's, so an API started later on the same folder finds what it expects.
pub const EMBEDDED_CONNECTIONS_MAX: u32 = 100;

/// Connections of the tool's pool: one command runs at a time, with the event store's reads,
/// a read model snapshot and the rebuild's transaction beside each other.
pub const TOOL_POOL_SIZE: usize = 4;

/// How long the tool waits for EventStoreDB before calling it unreachable. An operator at a
/// terminal wants a clear error soon rather than the API's patient minute.
pub const EVENTSTORE_CONNECT_TIMEOUT_MS: u64 = 10_000;

/// The socket file inside the cluster folder's socket directory (PostgreSQL's default port).
const CLUSTER_SOCKET_FILE: &str = ".s.PGSQL.5432";

pub struct Backends {
    pub store: Arc<dyn EventStore>,
    /// The read model database; `None` when only the EventStoreDB store was asked for.
    database: Option<Database>,
    /// True when the events live in PostgreSQL (enables event counts for progress estimates).
    pub postgres_events: bool,
    /// The embedded cluster, when this process started it (and must stop it again).
    started_cluster: Option<PrivateCluster>,
}

impl Backends {
    pub async fn open(
        arguments: &BackendArguments,
        needs_read_models: bool,
    ) -> Result<Self, ToolError> {
        let needs_database = needs_read_models || arguments.eventstore_url.is_none();
        let mut started_cluster = None;
        let database = if !needs_database {
            None
        } else if let Some(url) = &arguments.database_url {
            Some(Database::from_url(url, TOOL_POOL_SIZE)?)
        } else {
            let (cluster, started) = open_cluster(&arguments.data_dir).await?;
            let database = Database::from_config(
                cluster.connection_config(EMBEDDED_DATABASE),
                TOOL_POOL_SIZE,
            )?;
            if started {
                started_cluster = Some(cluster);
            }
            Some(database)
        };
        let opened = Self::open_store(arguments, database.as_ref()).await;
        match opened {
            Ok((store, postgres_events)) => Ok(Self {
                store,
                database,
                postgres_events,
                started_cluster,
            }),
            Err(error) => {
                stop_cluster(started_cluster).await;
                Err(error)
            }
        }
    }

    async fn open_store(
        arguments: &BackendArguments,
        database: Option<&Database>,
    ) -> Result<(Arc<dyn EventStore>, bool), ToolError> {
        if let Some(url) = &arguments.eventstore_url {
            let options = KurrentOptions {
                connect_timeout_ms: EVENTSTORE_CONNECT_TIMEOUT_MS,
                ..KurrentOptions::default()
            };
            let store = KurrentStore::connect(url, options).await?;
            return Ok((Arc::new(store), false));
        }
        let database = database.expect("a database is opened whenever EVENTSTORE_URL is unset");
        database.ping().await?;
        Ok((Arc::new(PostgresStore::open(database.clone()).await?), true))
    }

    /// The read model database.
    pub fn database(&self) -> &Database {
        self.database
            .as_ref()
            .expect("commands that read read models open the database")
    }

    /// Stop the embedded cluster if this process started it.
    pub async fn close(self) {
        stop_cluster(self.started_cluster).await;
    }
}

async fn stop_cluster(cluster: Option<PrivateCluster>) {
    if let Some(cluster) = cluster {
        if let Err(error) = cluster.stop().await {
            eprintln!("ledger-replay: could not stop the embedded PostgreSQL it started: {error}");
        }
    }
}

/// The embedded cluster under `folder`, and whether this call started it.
async fn open_cluster(folder: &Path) -> Result<(PrivateCluster, bool), ToolError> {
    // Refuse to create a cluster: an auditor pointing at the wrong folder should learn so,
    // not read an empty ledger.
    if !folder.join("pgdata").join("PG_VERSION").is_file() {
        return Err(ToolError::Unreachable(format!(
            "no embedded ledger under {}: start the API once there, or set DATABASE_URL",
            folder.display()
        )));
    }
    // A server that answers on the socket was started by someone else (usually the API).
    let running_before =
        std::os::unix::net::UnixStream::connect(folder.join("socket").join(CLUSTER_SOCKET_FILE))
            .is_ok();
    let cluster = PrivateCluster::start(&ClusterOptions {
        folder: folder.to_owned(),
        durable: true,
        max_connections: EMBEDDED_CONNECTIONS_MAX,
    })
    .await
    .map_err(|e| ToolError::Unreachable(format!("embedded PostgreSQL: {e}")))?;
    Ok((cluster, !running_before))
}
