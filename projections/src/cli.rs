//! The `ledger-projector` binary's settings and start-up, kept in the library so that tests (and
//! the compose checks) can see exactly which settings it reads.

use crate::error::ProjectionError;
use crate::publisher::{Publisher, PublisherArguments};
use crate::runtime::{ProjectorOptions, ProjectorSet};
use crate::webhook::{WebhookOptions, WebhookSecret};
use clap::CommandFactory;
use ledger_startup::{
    BackendArguments, Backends, BackendsOptions, EmbeddedMode, LogArguments, ProjectorArguments,
    ProjectorSelection, StartupError,
};
use std::net::SocketAddr;
use tokio::sync::watch;

/// Connections the projector's pool may open: one batch transaction per projection at a time,
/// plus the event store's reads and status queries, with room to spare. Lock connections are
/// dedicated and come on top (one per projection).
pub const PROJECTOR_POOL_SIZE: usize = 8;

/// Runs the read model projectors of the inventory ledger until Ctrl-C or SIGTERM.
#[derive(Debug, clap::Parser)]
#[command(name = "ledger-projector", version)]
pub struct Arguments {
    #[command(flatten)]
    pub backends: BackendArguments,
    #[command(flatten)]
    pub projectors: ProjectorArguments,
    #[command(flatten)]
    pub log: LogArguments,
    #[command(flatten)]
    pub publishers: PublisherArguments,
    /// POST low-stock notifications to this URL (off when unset; needs the secret below).
    #[arg(
        long,
        env = "LEDGER_ALERT_WEBHOOK_URL",
        requires = "alert_webhook_secret"
    )]
    pub alert_webhook_url: Option<String>,
    /// Shared secret (16 bytes at least) that signs each webhook request with HMAC-SHA256 in
    /// its Ledger-Signature header, for the receiver to check.
    #[arg(
        long,
        env = "LEDGER_ALERT_WEBHOOK_SECRET",
        hide_env_values = true,
        value_parser = WebhookSecret::parse,
        requires = "alert_webhook_url"
    )]
    pub alert_webhook_secret: Option<WebhookSecret>,
    /// Serve Prometheus metrics (projection lag, batches, errors, publishers) at
    /// http://ADDRESS/metrics, e.g. 0.0.0.0:9091 in a container. Off when unset: a second
    /// projector on the same host (a standby) would otherwise collide on a fixed port.
    #[arg(long, env = "LEDGER_PROJECTOR_METRICS_LISTEN", value_name = "ADDRESS")]
    pub metrics_listen: Option<SocketAddr>,
}

impl Arguments {
    /// Webhook delivery, when a URL (and so a secret) is given.
    fn webhook(&self) -> Option<WebhookOptions> {
        match (&self.alert_webhook_url, &self.alert_webhook_secret) {
            (Some(url), Some(secret)) => Some(WebhookOptions::new(url, secret.clone())),
            _ => None,
        }
    }
}

/// Every environment variable the `ledger-projector` binary reads.
pub fn environment_variables() -> Vec<String> {
    let mut names = ledger_startup::environment_variables(&Arguments::command());
    names.push(ledger_startup::LOG_FILTER_VARIABLE.to_owned());
    names.extend(
        ledger_startup::TRACE_VARIABLES
            .iter()
            .map(|name| (*name).to_owned()),
    );
    names
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("LEDGER_PROJECTORS=none and no broker configured leave this process nothing to run")]
    NothingToRun,
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
    #[error("cannot serve metrics on {address}: {source}")]
    MetricsListen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// The projections a selection names (each once, in the order named), all of them for `all`.
pub fn selected_projections(
    selection: &ProjectorSelection,
) -> Result<Vec<&'static str>, ProjectionError> {
    let names = match selection {
        ProjectorSelection::All => return Ok(crate::names()),
        ProjectorSelection::None => return Ok(Vec::new()),
        ProjectorSelection::Named(names) => names,
    };
    let mut selected = Vec::new();
    for name in names {
        let projection = crate::by_name(name)?.name();
        if !selected.contains(&projection) {
            selected.push(projection);
        }
    }
    Ok(selected)
}

/// Start the projectors and run until a shutdown signal, then stop them between batches.
pub async fn run(arguments: Arguments) -> Result<(), CliError> {
    let projections = selected_projections(&arguments.projectors.projectors)?;
    let publishers = arguments.publishers.publishers();
    if projections.is_empty() && publishers.is_empty() {
        return Err(CliError::NothingToRun);
    }
    // The recorder first, so that the runners' metric descriptions reach it.
    let metrics = arguments
        .metrics_listen
        .map(|address| (address, ledger_startup::metrics::prometheus_handle()));
    let backends = Backends::open(
        &arguments.backends,
        &BackendsOptions {
            pool_size: PROJECTOR_POOL_SIZE,
            embedded: EmbeddedMode::Existing,
            needs_database: true,
            statement_timeout_ms: None,
            eventstore_connect_timeout_ms: None,
        },
    )
    .await?;
    let result = serve(
        &backends,
        projections,
        publishers,
        arguments.webhook(),
        metrics,
    )
    .await;
    backends.close().await;
    result
}

async fn serve(
    backends: &Backends,
    projections: Vec<&'static str>,
    publishers: Vec<Publisher>,
    webhook: Option<WebhookOptions>,
    metrics: Option<(SocketAddr, metrics_exporter_prometheus::PrometheusHandle)>,
) -> Result<(), CliError> {
    crate::migrate(backends.database()).await?;
    let (stop, shutdown) = watch::channel(false);
    let listener = match metrics {
        Some((address, handle)) => Some(
            crate::metrics_listener::spawn(address, handle, shutdown.clone())
                .await
                .map_err(|source| CliError::MetricsListen { address, source })?,
        ),
        None => None,
    };
    let options = ProjectorOptions {
        projections,
        webhook,
        publishers,
        ..ProjectorOptions::default()
    };
    tracing::info!(projections = ?options.projections, publishers = ?options.publishers, "projector starting");
    let statistics =
        ledger_postgres::statistics::spawn(backends.database().clone(), shutdown.clone());
    let set = ProjectorSet::spawn(
        backends.store.clone(),
        backends.database().clone(),
        options,
        shutdown,
    );
    wait_for_signal().await?;
    tracing::info!("shutdown requested; stopping after the current batches");
    let _ = stop.send(true);
    set.join().await;
    let _ = statistics.await;
    if let Some(listener) = listener {
        let _ = listener.task.await;
    }
    Ok(())
}

async fn wait_for_signal() -> Result<(), CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Signal)?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map_err(CliError::Signal),
        _ = terminate.recv() => Ok(()),
    }
}
