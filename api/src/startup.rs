//! Start-up and shutdown: choose the backends from the configuration (the embedded cluster when
//! nothing is configured), open the stores, start the workers, serve HTTP, and stop all of it in
//! order on a signal.

use crate::auth::Authenticator;
use crate::config::Config;
use crate::extract::REQUEST_BODY_BYTES_MAX;
use crate::problem::Problem;
use crate::state::{AppState, SharedState};
use crate::{routes, telemetry};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use ledger_application::handler::CommandHandler;
use ledger_application::writer::SkuWriters;
use ledger_postgres::cluster::PrivateCluster;
use ledger_postgres::PostgresSnapshots;
use ledger_projections::{ProjectorOptions, ProjectorSet, ReadModels};
use ledger_startup::{Backends, BackendsOptions, EmbeddedMode};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The expiry worker never sweeps more often than this, whatever the configuration says.
pub const EXPIRY_INTERVAL_MS_MIN: u64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Backends(#[from] ledger_startup::StartupError),
    #[error("database: {0}")]
    Database(#[from] ledger_postgres::DatabaseError),
    #[error("read models: {0}")]
    Projections(#[from] ledger_projections::ProjectionError),
    #[error("cannot listen on {address}: {message}")]
    Listen {
        address: SocketAddr,
        message: String,
    },
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
    if auth.is_open() {
        tracing::warn!(
            "NO TOKENS CONFIGURED: the API is open, anyone who can reach it may change stock; \
             set LEDGER_TOKENS or LEDGER_TOKENS_FILE before exposing it"
        );
    }
    let projections = ledger_projections::cli::selected_projections(&config.projectors.projectors)?;
    let mut backends = Backends::open(
        &config.backends,
        &BackendsOptions {
            pool_size: config.pool_size,
            embedded: EmbeddedMode::Create,
            needs_database: true,
            eventstore_connect_timeout_ms: None,
        },
    )
    .await?;
    match serve(config, auth, projections, &backends).await {
        Ok(mut running) => {
            running.cluster = backends.take_cluster();
            Ok(running)
        }
        Err(error) => {
            backends.close().await;
            Err(error)
        }
    }
}

/// Open what the API keeps beside the backends, start the workers and the server.
async fn serve(
    config: Config,
    auth: Authenticator,
    projections: Vec<&'static str>,
    backends: &Backends,
) -> Result<Running, StartupError> {
    let open_access = auth.is_open();
    let metrics = telemetry::metrics_handle();
    let database = backends.database().clone();
    crate::answer::migrate_api_tables(&database).await?;
    let snapshots = PostgresSnapshots::open(database.clone()).await?;
    ledger_projections::migrate(&database).await?;
    let read_models = ReadModels::new(database.clone());
    let state: SharedState = Arc::new(AppState {
        writers: SkuWriters::new(
            CommandHandler::new(backends.store.clone()).with_snapshots(Arc::new(snapshots)),
        ),
        store: backends.store.clone(),
        database: database.clone(),
        auth,
        metrics,
        read_models: read_models.clone(),
        openapi: OnceLock::new(),
    });
    let (shutdown, signal) = watch::channel(false);
    let mut workers = Vec::new();
    if !projections.is_empty() {
        let set = ProjectorSet::spawn(
            backends.store.clone(),
            database.clone(),
            ProjectorOptions {
                projections,
                ..ProjectorOptions::default()
            },
            signal.clone(),
        );
        workers.push(tokio::spawn(set.join()));
    }
    workers.push(ledger_postgres::statistics::spawn(
        database.clone(),
        signal.clone(),
    ));
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
        backends_description: backends.description.clone(),
        open_access,
        shutdown,
        server,
        workers,
        cluster: None,
    })
}
