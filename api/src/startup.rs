//! Start-up and shutdown: choose the backends from the configuration (the embedded cluster when
//! nothing is configured), open the stores, start the workers, serve HTTP, and stop all of it in
//! order on a signal.

use crate::auth::Authenticator;
use crate::config::Config;
use crate::extract::REQUEST_BODY_BYTES_MAX;
use crate::idempotency::IdempotencyStore;
use crate::problem::Problem;
use crate::state::{AppState, SharedState};
use crate::{routes, telemetry};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use ledger_core::handler::CommandHandler;
use ledger_core::pg::cluster::{ClusterOptions, PrivateCluster};
use ledger_core::pg::Database;
use ledger_core::snapshot::PostgresSnapshots;
use ledger_core::store::kurrent::{KurrentOptions, KurrentStore};
use ledger_core::store::postgres::PostgresStore;
use ledger_core::store::EventStore;
use ledger_core::writer::SkuWriters;
use projections::{ProjectorOptions, ProjectorSet, ReadModels};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The database the embedded cluster keeps the ledger in.
pub const EMBEDDED_DATABASE: &str = "ledger";

/// Connections the embedded cluster accepts: the API's pool, the projectors' leases and
/// listeners, and an operator's replay-tool beside them.
pub const EMBEDDED_CONNECTIONS_MAX: u32 = 100;

/// The expiry worker never sweeps more often than this, whatever the configuration says.
pub const EXPIRY_INTERVAL_MS_MIN: u64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("embedded PostgreSQL: {0}")]
    Cluster(#[from] ledger_core::pg::cluster::ClusterError),
    #[error("database: {0}")]
    Database(#[from] ledger_core::pg::DatabaseError),
    #[error("event store: {0}")]
    EventStore(String),
    #[error("read models: {0}")]
    Projections(#[from] projections::ProjectionError),
    #[error("cannot listen on {address}: {message}")]
    Listen {
        address: SocketAddr,
        message: String,
    },
}

/// Where the ledger's data lives, as chosen from the configuration.
pub struct Backends {
    pub database: Database,
    pub store: Arc<dyn EventStore>,
    /// The private cluster when running the embedded default; stopped on shutdown.
    pub cluster: Option<PrivateCluster>,
    /// A human description for the start-up banner.
    pub description: String,
}

/// Open the database and the event store the configuration names: `DATABASE_URL`, or a private
/// cluster under the data folder.
pub async fn open_backends(config: &Config) -> Result<Backends, StartupError> {
    let (database, cluster, description) = match &config.database_url {
        Some(url) => {
            let database = Database::from_url(url, config.pool_size)?;
            (database, None, "PostgreSQL at DATABASE_URL".to_owned())
        }
        None => {
            let cluster = PrivateCluster::start(&ClusterOptions {
                folder: config.data_dir.clone(),
                durable: true,
                max_connections: EMBEDDED_CONNECTIONS_MAX,
            })
            .await?;
            create_database_if_missing(&cluster).await?;
            let database = Database::from_config(
                cluster.connection_config(EMBEDDED_DATABASE),
                config.pool_size,
            )?;
            let description = format!(
                "embedded PostgreSQL under {} (socket {})",
                cluster.folder().display(),
                cluster.socket_dir().display()
            );
            (database, Some(cluster), description)
        }
    };
    let (store, description): (Arc<dyn EventStore>, String) = match &config.eventstore_url {
        Some(url) => {
            let store = KurrentStore::connect(url, KurrentOptions::default())
                .await
                .map_err(|e| StartupError::EventStore(e.to_string()))?;
            (
                Arc::new(store),
                format!("EventStoreDB events, read models in {description}"),
            )
        }
        None => (
            Arc::new(PostgresStore::open(database.clone()).await?),
            description,
        ),
    };
    Ok(Backends {
        database,
        store,
        cluster,
        description,
    })
}

async fn create_database_if_missing(cluster: &PrivateCluster) -> Result<(), StartupError> {
    let admin = Database::from_config(cluster.connection_config("postgres"), 1)?;
    let client = admin
        .pool()
        .get()
        .await
        .map_err(|e| ledger_core::pg::DatabaseError::Unreachable(e.to_string()))?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&EMBEDDED_DATABASE],
        )
        .await
        .map_err(|e| ledger_core::pg::DatabaseError::Unreachable(e.to_string()))?
        .is_some();
    if !exists {
        // Two instances starting on one folder could race here; the loser's "already exists"
        // is success all the same.
        if let Err(error) = client
            .batch_execute(&format!("CREATE DATABASE {EMBEDDED_DATABASE}"))
            .await
        {
            if error.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(ledger_core::pg::DatabaseError::Unreachable(error.to_string()).into());
            }
        }
    }
    Ok(())
}

/// A running API: its address, and what it takes to stop it.
pub struct Running {
    pub address: SocketAddr,
    pub backends_description: String,
    pub open_access: bool,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<()>>,
    cluster: Option<PrivateCluster>,
}

impl Running {
    /// Stop accepting connections, let in-flight requests finish, stop the workers between
    /// batches, then stop the embedded cluster.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the HTTP server failed"),
            Err(error) => tracing::error!(%error, "the HTTP server task panicked"),
        }
        for worker in self.workers {
            if let Err(error) = worker.await {
                tracing::error!(%error, "a worker panicked");
            }
        }
        if let Some(cluster) = self.cluster {
            match cluster.stop().await {
                Ok(()) => tracing::info!("embedded PostgreSQL stopped"),
                Err(error) => tracing::error!(%error, "could not stop the embedded PostgreSQL"),
            }
        }
    }

    /// Resolves when the server has stopped by itself (it only does on failure).
    pub fn is_finished(&self) -> bool {
        self.server.is_finished()
    }
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "No such resource",
        "no route matches this method and path; see /openapi.json",
    )
}

/// Build the HTTP application over the given state: routes, body limit, observation.
pub fn application(state: SharedState) -> axum::Router {
    let (router, api) = routes::router(state.clone());
    let _ = state
        .openapi
        .set(serde_json::to_string_pretty(&api).expect("the OpenAPI description serialises"));
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn(telemetry::observe))
}

/// Start everything the configuration asks for and serve until [`Running::stop`].
pub async fn start(config: Config) -> Result<Running, StartupError> {
    let auth = Authenticator::from_config(config.tokens.as_deref(), config.tokens_file.as_deref())
        .map_err(StartupError::Config)?;
    let open_access = auth.is_open();
    if open_access {
        tracing::warn!(
            "NO TOKENS CONFIGURED: the API is open, anyone who can reach it may change stock; \
             set LEDGER_TOKENS or LEDGER_TOKENS_FILE before exposing it"
        );
    }
    let metrics = telemetry::metrics_handle();
    let backends = open_backends(&config).await?;
    let idempotency = IdempotencyStore::open(&backends.database, config.pool_size).await?;
    let snapshots = PostgresSnapshots::open(backends.database.clone()).await?;
    projections::migrate(&backends.database).await?;
    let read_models = ReadModels::new(backends.database.clone());
    let state: SharedState = Arc::new(AppState {
        writers: SkuWriters::new(
            CommandHandler::new(backends.store.clone()).with_snapshots(Arc::new(snapshots)),
        ),
        store: backends.store.clone(),
        database: backends.database.clone(),
        auth,
        idempotency,
        metrics,
        read_models: read_models.clone(),
        openapi: OnceLock::new(),
    });
    let (shutdown, signal) = watch::channel(false);
    let mut workers = Vec::new();
    if config.projectors {
        let set = ProjectorSet::spawn(
            backends.store.clone(),
            backends.database.clone(),
            ProjectorOptions::default(),
            signal.clone(),
        );
        workers.push(tokio::spawn(set.join()));
    }
    workers.push(tokio::spawn(crate::expiry::run(
        state.clone(),
        read_models,
        Duration::from_millis(config.expiry_interval_ms.max(EXPIRY_INTERVAL_MS_MIN)),
        signal.clone(),
    )));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartupError::Listen {
            address: config.listen,
            message: e.to_string(),
        })?;
    let address = listener.local_addr().map_err(|e| StartupError::Listen {
        address: config.listen,
        message: e.to_string(),
    })?;
    let app = application(state);
    let mut server_signal = signal.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_signal.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(%address, backends = %backends.description, "listening");
    Ok(Running {
        address,
        backends_description: backends.description,
        open_access,
        shutdown,
        server,
        workers,
        cluster: backends.cluster,
    })
}
