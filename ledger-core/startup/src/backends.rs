//! Open the event store and the database the settings name:
//! - `EVENTSTORE_URL`: events in EventStoreDB / KurrentDB; everything else (read models,
//!   snapshots, idempotency keys) in `DATABASE_URL` or the embedded cluster;
//! - `DATABASE_URL`: events and everything else in that PostgreSQL database;
//! - neither: the private cluster under the data folder, database `ledger`.

use crate::settings::BackendArguments;
use ledger_application::store::{EventStore, StoreError};
use ledger_postgres::cluster::{ClusterError, ClusterOptions, PrivateCluster};
use ledger_postgres::{Database, DatabaseError, PostgresStore};
use std::path::Path;
use std::sync::Arc;

/// The database the embedded cluster keeps the ledger in.
pub const EMBEDDED_DATABASE: &str = "ledger";

/// Connections the embedded cluster accepts: an API's pools, the projectors' leases and
/// listeners, and an operator's replay tool beside them.
pub const EMBEDDED_CONNECTIONS_MAX: u32 = 100;

/// The socket file inside the cluster's socket directory (PostgreSQL's default port).
const CLUSTER_SOCKET_FILE: &str = ".s.PGSQL.5432";

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The settings are wrong: fix them.
    #[error("configuration: {0}")]
    Config(String),
    /// The embedded cluster could not be created or started.
    #[error("embedded PostgreSQL: {0}")]
    Cluster(#[from] ClusterError),
    /// There is no embedded ledger under the folder (tools refuse to create one).
    #[error("no embedded ledger under {folder}: start the API once there, or set DATABASE_URL")]
    NoEmbeddedLedger { folder: String },
    #[error("database: {0}")]
    Database(#[from] DatabaseError),
    #[error("event store: {0}")]
    EventStore(#[from] StoreError),
}

/// What to do with the embedded cluster when neither `DATABASE_URL` nor a running server is
/// given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddedMode {
    /// Create the cluster and the ledger database when missing, start the cluster, and stop
    /// it on [`Backends::close`]: the API and the bench, which own the folder.
    Create,
    /// Use an existing cluster only (an auditor pointing at the wrong folder should learn so,
    /// not read an empty ledger); start it if it is not running, and stop it on close only if
    /// this process started it, so an API running on the folder is never disturbed.
    Existing,
}

/// How a binary wants its backends.
#[derive(Debug, Clone)]
pub struct BackendsOptions {
    /// Connections of the database pool.
    pub pool_size: usize,
    pub embedded: EmbeddedMode,
    /// Whether the database is needed when the events live in EventStoreDB (a history command
    /// reads events only).
    pub needs_database: bool,
    /// How long to wait for EventStoreDB at start, when not the adapter's default (an operator
    /// at a terminal wants a clear error sooner than a service does).
    pub eventstore_connect_timeout_ms: Option<u64>,
    /// The Postgres event store's statement timeout (appends and reads), when not the
    /// default ([`ledger_postgres::STATEMENT_TIMEOUT_MS_DEFAULT`]).
    pub statement_timeout_ms: Option<u64>,
}

/// Where the ledger's data lives, opened.
pub struct Backends {
    pub store: Arc<dyn EventStore>,
    database: Option<Database>,
    /// The PostgreSQL event store, when the events live in PostgreSQL (for what only it can
    /// answer cheaply, such as counting the events after a position).
    postgres_store: Option<PostgresStore>,
    /// The embedded cluster, when this process must stop it again.
    cluster: Option<PrivateCluster>,
    /// A human description for start-up banners.
    pub description: String,
}

impl Backends {
    pub async fn open(
        arguments: &BackendArguments,
        options: &BackendsOptions,
    ) -> Result<Self, StartupError> {
        let needs_database = options.needs_database || arguments.eventstore_url.is_none();
        let (database, cluster, description) = if !needs_database {
            (None, None, "no database".to_owned())
        } else if let Some(url) = &arguments.database_url {
            let database = Database::from_url(url, options.pool_size)?;
            (
                Some(database),
                None,
                "PostgreSQL at DATABASE_URL".to_owned(),
            )
        } else {
            let (database, cluster, description) =
                open_embedded(&arguments.data_dir, options).await?;
            (Some(database), cluster, description)
        };
        let mut backends = Self {
            store: Arc::new(ledger_application::store::memory::MemoryStore::new()),
            database,
            postgres_store: None,
            cluster,
            description,
        };
        if let Err(error) = backends.open_store(arguments, options).await {
            backends.close().await;
            return Err(error);
        }
        Ok(backends)
    }

    async fn open_store(
        &mut self,
        arguments: &BackendArguments,
        options: &BackendsOptions,
    ) -> Result<(), StartupError> {
        if let Some(url) = &arguments.eventstore_url {
            let credentials = arguments
                .eventstore_username
                .clone()
                .zip(arguments.eventstore_password.clone());
            self.store =
                connect_eventstore(url, credentials, options, self.database.clone()).await?;
            self.description = format!("EventStoreDB events, read models in {}", self.description);
            return Ok(());
        }
        let database = self
            .database
            .clone()
            .expect("a database is opened whenever EVENTSTORE_URL is unset");
        let mut settings = ledger_postgres::StoreSettings::for_database(&database);
        if let Some(millis) = options.statement_timeout_ms {
            settings.statement_timeout = std::time::Duration::from_millis(millis);
        }
        let store = PostgresStore::open_with(database, settings).await?;
        self.store = Arc::new(store.clone());
        self.postgres_store = Some(store);
        Ok(())
    }

    /// The database (read models, snapshots, idempotency keys; and the events without
    /// EventStoreDB).
    ///
    /// # Panics
    /// When the options said the database is not needed and the events live in EventStoreDB.
    pub fn database(&self) -> &Database {
        self.database
            .as_ref()
            .expect("commands that use the database open it")
    }

    /// The PostgreSQL event store, when the events live in PostgreSQL.
    pub fn postgres_store(&self) -> Option<&PostgresStore> {
        self.postgres_store.as_ref()
    }

    /// Hand the embedded cluster to the caller, who then stops it itself (the API stops it
    /// after its workers have ended).
    pub fn take_cluster(&mut self) -> Option<PrivateCluster> {
        self.cluster.take()
    }

    /// Stop the embedded cluster if this process must.
    pub async fn close(mut self) {
        if let Some(cluster) = self.cluster.take() {
            if let Err(error) = cluster.stop().await {
                tracing::error!(%error, "could not stop the embedded PostgreSQL");
                eprintln!("could not stop the embedded PostgreSQL: {error}");
            }
        }
    }
}

#[cfg(feature = "eventstoredb")]
async fn connect_eventstore(
    url: &str,
    credentials: Option<(String, String)>,
    options: &BackendsOptions,
    database: Option<Database>,
) -> Result<Arc<dyn EventStore>, StartupError> {
    use ledger_kurrent::{EventStoreCredentials, KurrentOptions, KurrentStore};
    let mut settings = KurrentOptions {
        credentials: credentials
            .map(|(username, password)| EventStoreCredentials { username, password }),
        ..KurrentOptions::default()
    };
    if let Some(timeout_ms) = options.eventstore_connect_timeout_ms {
        settings.connect_timeout_ms = timeout_ms;
    }
    let mut store = KurrentStore::connect(url, settings).await?;
    // The answers of keyed commands go to PostgreSQL; a tool that only reads events (history)
    // opens no database and keeps none.
    if let Some(database) = database {
        let answers = ledger_postgres::PostgresAnswers::open(database).await?;
        store = store.with_answer_book(Arc::new(answers));
    }
    Ok(Arc::new(store))
}

#[cfg(not(feature = "eventstoredb"))]
async fn connect_eventstore(
    _url: &str,
    _credentials: Option<(String, String)>,
    _options: &BackendsOptions,
    _database: Option<Database>,
) -> Result<Arc<dyn EventStore>, StartupError> {
    Err(StartupError::Config(
        "EVENTSTORE_URL is set, but this build has no EventStoreDB support; build with the \
         `eventstoredb` feature (on by default)"
            .to_owned(),
    ))
}

/// The embedded cluster under `folder` and a pool on its ledger database; the cluster is
/// returned when this process must stop it again.
async fn open_embedded(
    folder: &Path,
    options: &BackendsOptions,
) -> Result<(Database, Option<PrivateCluster>, String), StartupError> {
    let running_before = match options.embedded {
        EmbeddedMode::Create => false,
        EmbeddedMode::Existing => {
            if !folder.join("pgdata").join("PG_VERSION").is_file() {
                return Err(StartupError::NoEmbeddedLedger {
                    folder: folder.display().to_string(),
                });
            }
            // A server that answers on the socket was started by someone else (the API).
            std::os::unix::net::UnixStream::connect(folder.join("socket").join(CLUSTER_SOCKET_FILE))
                .is_ok()
        }
    };
    let cluster = PrivateCluster::start(&ClusterOptions {
        folder: folder.to_owned(),
        durable: true,
        max_connections: EMBEDDED_CONNECTIONS_MAX,
    })
    .await?;
    let opened = async {
        if options.embedded == EmbeddedMode::Create {
            create_database_if_missing(&cluster).await?;
        }
        Ok::<_, StartupError>(Database::from_config(
            cluster.connection_config(EMBEDDED_DATABASE),
            options.pool_size,
        )?)
    }
    .await;
    let database = match opened {
        Ok(database) => database,
        Err(error) => {
            if !running_before {
                let _ = cluster.stop().await;
            }
            return Err(error);
        }
    };
    let description = format!(
        "embedded PostgreSQL under {} (socket {})",
        cluster.folder().display(),
        cluster.socket_dir().display()
    );
    let to_stop = (!running_before).then_some(cluster);
    Ok((database, to_stop, description))
}

async fn create_database_if_missing(cluster: &PrivateCluster) -> Result<(), StartupError> {
    let admin = Database::from_config(cluster.connection_config("postgres"), 1)?;
    let client = admin.client().await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&EMBEDDED_DATABASE],
        )
        .await
        .map_err(DatabaseError::query("look for the ledger database"))?
        .is_some();
    if !exists {
        // Two instances starting on one folder could race here; the loser's "already exists"
        // is success all the same.
        if let Err(error) = client
            .batch_execute(&format!("CREATE DATABASE {EMBEDDED_DATABASE}"))
            .await
        {
            if error.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(DatabaseError::query("create the ledger database")(error).into());
            }
        }
    }
    Ok(())
}
