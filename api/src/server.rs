//! The HTTP server loop: HTTP/1.1 connections with a header read timeout (slow or silent
//! clients are closed), a cap on open connections (past it, a new connection gets a short 503
//! and is closed at once rather than waiting in the kernel's queue), and a graceful shutdown
//! with a deadline.
//!
//! Why not `axum::serve`: it sets no timer, so hyper's header read timeout never fires and a
//! client that sends one byte a minute keeps its connection (and a task) forever.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Gauge: open HTTP connections.
pub const METRIC_CONNECTIONS_OPEN: &str = "ledger_http_connections_open";
/// Counter: connections refused because [`ServerLimits::connections_max`] were open.
pub const METRIC_CONNECTIONS_REFUSED: &str = "ledger_http_connections_refused_total";

/// Largest request head (request line and headers) accepted, in bytes.
pub const REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;

/// Most headers one request may carry.
pub const REQUEST_HEADERS_MAX: usize = 64;

/// Pause after a failed `accept` (out of file descriptors, say) before trying again, so a
/// persistent failure does not spin a core.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// The answer a connection gets when the server is at its connection cap.
const OVER_CAPACITY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/problem+json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 168\r\n\
\r\n\
{\"type\":\"urn:inventory-ledger:problem:too-many-connections\",\"title\":\"Too many connections\",\"status\":503,\"detail\":\"the server is at its connection limit; retry shortly\"}";

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A request head must arrive within this long of the connection being ready for it (this
    /// also closes keep-alive connections idle for that long).
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub connections_max: usize,
    /// How long a shutdown waits for requests in flight before it closes their connections.
    pub shutdown_deadline: Duration,
}

/// Serve `app` on `listener` until `shutdown` turns true, then stop accepting and give the
/// connections until the deadline to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(REQUEST_HEAD_BYTES_MAX.max(8 * 1024))
        .max_headers(REQUEST_HEADERS_MAX);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.connections_max.max(1)));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!(METRIC_CONNECTIONS_REFUSED).increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        metrics::gauge!(METRIC_CONNECTIONS_OPEN).increment(1.0);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            metrics::gauge!(METRIC_CONNECTIONS_OPEN).decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            deadline_ms = limits.shutdown_deadline.as_millis() as u64,
            "requests still in flight at the shutdown deadline; closing their connections"
        );
    }
}

/// Answer a connection over the cap with a 503 and close it, without reading its request.
async fn refuse(mut stream: TcpStream) {
    let write = async {
        stream.write_all(OVER_CAPACITY_RESPONSE).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// The peer address the server loop records on every request.
pub fn peer(request: &axum::extract::Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_capacity_answer_declares_its_own_length() {
        let text = std::str::from_utf8(OVER_CAPACITY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
