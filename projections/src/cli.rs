//! The `projector` binary's configuration and startup, kept in the library so that tests (and
//! the compose checks) can see exactly which settings it reads.

use crate::error::ProjectionError;
use crate::projection;
use crate::runtime::{ProjectorOptions, ProjectorSet};
use crate::webhook::WebhookOptions;
use ledger_core::pg::Database;
use ledger_core::store::kurrent::{KurrentOptions, KurrentStore};
use ledger_core::store::postgres::PostgresStore;
use ledger_core::store::EventStore;
use std::sync::Arc;
use tokio::sync::watch;

/// Every environment variable the `projector` binary reads.
pub const ENVIRONMENT_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "EVENTSTORE_URL",
    "LEDGER_PROJECTORS",
    "LEDGER_LOG_FORMAT",
    "LEDGER_ALERT_WEBHOOK_URL",
    "RUST_LOG",
];

/// Connections the projector's pool may open: one batch transaction per projection at a time,
/// plus the event store's reads and status queries, with room to spare. Lock connections are
/// dedicated and come on top (one per projection).
pub const PROJECTOR_POOL_SIZE: usize = 8;

/// Log filter when `RUST_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Runs the read model projectors of the inventory ledger until Ctrl-C or SIGTERM.
#[derive(Debug, clap::Parser)]
#[command(name = "projector", version)]
pub struct Arguments {
    /// PostgreSQL holding the read models (and, without EVENTSTORE_URL, the event store).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// EventStoreDB/KurrentDB to follow instead of the Postgres event store.
    #[arg(long, env = "EVENTSTORE_URL", hide_env_values = true)]
    pub eventstore_url: Option<String>,
    /// Comma-separated projections to run; all when empty.
    #[arg(long, env = "LEDGER_PROJECTORS", value_delimiter = ',')]
    pub projectors: Vec<String>,
    #[arg(long, env = "LEDGER_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// POST low-stock notifications to this URL (off when unset).
    #[arg(long, env = "LEDGER_ALERT_WEBHOOK_URL")]
    pub alert_webhook_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
}

/// The projections named by `--projectors`, all of them when none is named.
pub fn selected_projections(names: &[String]) -> Result<Vec<&'static str>, ProjectionError> {
    let named: Vec<&str> = names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .collect();
    if named.is_empty() {
        return Ok(projection::names());
    }
    let mut selected = Vec::new();
    for name in named {
        let projection = projection::by_name(name)?.name();
        if !selected.contains(&projection) {
            selected.push(projection);
        }
    }
    Ok(selected)
}

pub fn init_telemetry(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(error) = installed {
        eprintln!("logging was already set up: {error}");
    }
}

/// Start the projectors and run until a shutdown signal, then stop them between batches.
pub async fn run(arguments: Arguments) -> Result<(), CliError> {
    let projections = selected_projections(&arguments.projectors)?;
    let database = Database::from_url(&arguments.database_url, PROJECTOR_POOL_SIZE)
        .map_err(ProjectionError::from)?;
    let store: Arc<dyn EventStore> = match &arguments.eventstore_url {
        Some(url) => Arc::new(
            KurrentStore::connect(url, KurrentOptions::default())
                .await
                .map_err(ProjectionError::from)?,
        ),
        None => Arc::new(
            PostgresStore::open(database.clone())
                .await
                .map_err(ProjectionError::from)?,
        ),
    };
    crate::migrate(&database).await?;
    let (stop, shutdown) = watch::channel(false);
    let options = ProjectorOptions {
        projections,
        webhook: arguments.alert_webhook_url.map(WebhookOptions::new),
        ..ProjectorOptions::default()
    };
    tracing::info!(projections = ?options.projections, "projector starting");
    let set = ProjectorSet::spawn(store, database, options, shutdown);
    wait_for_signal().await?;
    tracing::info!("shutdown requested; stopping after the current batches");
    let _ = stop.send(true);
    set.join().await;
    Ok(())
}

async fn wait_for_signal() -> Result<(), CliError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Signal)?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(CliError::Signal),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(CliError::Signal)
    }
}
