//! Start-up and shutdown: choose the backends from the configuration (the embedded cluster when
//! nothing is configured), open the stores, start the workers, serve HTTP, and stop all of it in
//! order on a signal.

use crate::auth::Authenticator;
use crate::config::Config;
use crate::extract::REQUEST_BODY_BYTES_MAX;
use crate::problem::Problem;
use crate::protection::{Protection, ProtectionSettings};
use crate::server::ServerLimits;
use crate::state::{AppState, OrderRecords, SharedState};
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

/// How often kept answers older than the retention are purged.
pub const ANSWER_PURGE_INTERVAL_MS: u64 = 10 * 60 * 1_000;

/// Connections of the snapshots' pool (writes happen in the background, loads are rare).
const SNAPSHOT_POOL_SIZE: usize = 2;

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
    server: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    cluster: Option<PrivateCluster>,
    state: SharedState,
}

impl Running {
    /// Stop accepting connections, let in-flight requests finish, stop the workers between
    /// batches, then stop the embedded cluster.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Err(error) = self.server.await {
            tracing::error!(%error, "the HTTP server task panicked");
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

    /// How many SKUs have a writer (a loaded state) in this process now.
    pub fn writers_active(&self) -> usize {
        self.state.writers.active()
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

/// A known path with a method it does not serve; the router adds the `Allow` header.
async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this path does not serve this method; `Allow` lists those it does",
    )
}

/// Build the HTTP application over the given state: routes, body limit, observation.
pub fn application(state: SharedState) -> axum::Router {
    let (router, api) = routes::router(state.clone());
    let _ = state
        .openapi
        .set(serde_json::to_string_pretty(&api).expect("the OpenAPI description serialises"));
    router
        .merge(crate::console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::protection::protect::<AppState>,
        ))
        .layer(axum::middleware::from_fn(telemetry::observe))
}

/// Start everything the configuration asks for and serve until [`Running::stop`].
pub async fn start(config: Config) -> Result<Running, StartupError> {
    let auth = Authenticator::from_config(config.tokens.as_deref(), config.tokens_file.as_deref())
        .map_err(StartupError::Config)?;
    if auth.is_open() && !config.listen.ip().is_loopback() && !config.allow_open {
        return Err(StartupError::Config(format!(
            "refusing to serve {} without tokens: anyone who can reach it could change stock. \
             Configure LEDGER_TOKENS or LEDGER_TOKENS_FILE, listen on 127.0.0.1, or pass \
             --allow-open (LEDGER_ALLOW_OPEN=true) if that is really meant",
            config.listen
        )));
    }
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
            statement_timeout_ms: Some(config.statement_timeout_ms),
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
    let consumers = config
        .order_events
        .consumers(&config.publishers)
        .map_err(StartupError::Config)?;
    let metrics = ledger_startup::metrics::prometheus_handle();
    let database = backends.database().clone();
    crate::answer::migrate_api_tables(&database).await?;
    ledger_projections::migrate(&database).await?;
    // Bulkheads: the event store has its own pools (committers, loads); snapshots, read-model
    // queries and readiness checks get theirs, so that none of them can starve another (the
    // projectors' pool is made by the projector set).
    let statement_timeout = Duration::from_millis(config.statement_timeout_ms);
    let snapshots = PostgresSnapshots::open(database.with_statement_timeout(
        statement_timeout,
        &[],
        SNAPSHOT_POOL_SIZE,
    )?)
    .await?;
    let read_models = ReadModels::new(database.with_statement_timeout(
        statement_timeout,
        &[],
        (config.pool_size / 2).max(2),
    )?);
    let readiness = database.with_statement_timeout(statement_timeout, &[], 1)?;
    let rate_limit = std::num::NonZeroU32::new(config.rate_limit_per_second).map(|per_second| {
        let burst = config
            .rate_limit_burst
            .and_then(std::num::NonZeroU32::new)
            .unwrap_or(per_second);
        (per_second, burst)
    });
    let protection = Arc::new(Protection::new(ProtectionSettings {
        allowed_hosts: ProtectionSettings::allowed_hosts_for(
            config.listen.ip(),
            &config.allowed_host,
        ),
        rate_limit,
        in_flight_max: config.in_flight_max,
        request_timeout: Duration::from_millis(config.request_timeout_ms),
    }));
    let state: SharedState = Arc::new(AppState {
        writers: SkuWriters::new(
            CommandHandler::new(backends.store.clone()).with_snapshots(Arc::new(snapshots)),
        )
        .with_writers_max(config.writers_max),
        store: backends.store.clone(),
        database: readiness,
        auth,
        metrics,
        read_models: read_models.clone(),
        openapi: OnceLock::new(),
        protection: protection.clone(),
        history_cursors: Default::default(),
        orders: OrderRecords {
            database: database.with_statement_timeout(
                statement_timeout,
                &[],
                crate::orders::ORDERS_POOL_SIZE,
            )?,
            crash_after_lines: crate::orders::crash_after_lines_hook(),
        },
    });
    // Before serving: order reserves a crash cut short are compensated, so nothing they held
    // stays held. A failure here is logged; the next start (or a retry) tries again.
    match crate::orders::recover(&state, None).await {
        Ok(0) => {}
        Ok(compensated) => tracing::info!(compensated, "interrupted order reserves compensated"),
        Err(problem) => tracing::error!(
            detail = %problem.detail,
            "could not compensate interrupted order reserves; retrying at the next start"
        ),
    }
    let (shutdown, signal) = watch::channel(false);
    let mut workers = Vec::new();
    workers.push(tokio::spawn(protection.sweep(signal.clone())));
    workers.push(tokio::spawn(purge_answers(
        backends.store.clone(),
        Duration::from_secs(config.answer_retention_hours.saturating_mul(3_600)),
        signal.clone(),
    )));
    // Integration event publishers run here when a broker is configured, whatever the
    // projections selection says: they hold their own lock, so a separate projector process
    // configured alike only stands by.
    let publishers = config.publishers.publishers();
    if !projections.is_empty() || !publishers.is_empty() {
        let set = ProjectorSet::spawn(
            backends.store.clone(),
            database.clone(),
            ProjectorOptions {
                projections,
                publishers,
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
    // The order flow's events, when a queue or stream is configured.
    if !consumers.is_empty() {
        let actions = Arc::new(crate::order_actions::OrderCommands::new(state.clone()));
        workers.extend(
            consumers
                .spawn(database.clone(), actions, signal.clone())
                .await?,
        );
    }

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
    let app = application(state.clone());
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(config.header_read_timeout_ms.max(1)),
        connections_max: config.connections_max,
        shutdown_deadline: Duration::from_millis(config.shutdown_deadline_ms),
    };
    let server = tokio::spawn(crate::server::serve(listener, app, limits, signal.clone()));
    tracing::info!(%address, backends = %backends.description, "listening");
    Ok(Running {
        address,
        backends_description: backends.description.clone(),
        open_access,
        shutdown,
        server,
        workers,
        cluster: None,
        state,
    })
}

/// Forget kept answers older than `retention`, now and every [`ANSWER_PURGE_INTERVAL_MS`],
/// until shutdown. Several API instances may run it at once: a delete is idempotent.
async fn purge_answers(
    store: Arc<dyn ledger_application::EventStore>,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let kept_before = chrono::Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match store.forget_answers(kept_before).await {
            Ok(0) => {}
            Ok(forgotten) => {
                metrics::counter!("ledger_answers_purged_total").increment(forgotten);
                tracing::info!(forgotten, "purged kept answers past their retention");
            }
            Err(error) => tracing::warn!(%error, "could not purge kept answers; retrying later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ANSWER_PURGE_INTERVAL_MS)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
