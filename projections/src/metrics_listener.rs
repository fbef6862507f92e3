//! The projector's own Prometheus endpoint: `GET /metrics` on a listener of its own, rendering
//! the process-wide recorder (`ledger_startup::metrics`, the API's too), so the lag, batches
//! and errors of the projections and publishers this process runs reach Prometheus under the
//! same names as when the API runs them in-process.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The port compose and the README use for the projector's metrics (the API has 8080,
/// Prometheus itself 9090).
pub const METRICS_PORT: u16 = 9091;

/// The path Prometheus scrapes, as on the API.
pub const METRICS_PATH: &str = "/metrics";

/// A bound metrics listener: where it listens, and the task serving it until shutdown.
pub struct MetricsListener {
    pub address: SocketAddr,
    pub task: JoinHandle<()>,
}

fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        METRICS_PATH,
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        ledger_startup::metrics::EXPOSITION_CONTENT_TYPE,
                    )],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}

/// Bind `address` (a bind failure fails start-up rather than leaving the projector unseen) and
/// serve `/metrics` until `shutdown` holds `true` or its sender is dropped. Only `/metrics`
/// answers; the listener carries no data beyond what Prometheus scrapes, so it is meant for
/// the services' network, not for publishing.
pub async fn spawn(
    address: SocketAddr,
    handle: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<MetricsListener> {
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving metrics at http://{address}{METRICS_PATH}");
    let task = tokio::spawn(async move {
        let stopped = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(error) = axum::serve(listener, router(handle))
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(%error, "the metrics listener failed");
        }
    });
    Ok(MetricsListener { address, task })
}
