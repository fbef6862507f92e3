//! A lean HTTP/1.1 client for the load: each closed-loop worker owns one keep-alive connection
//! and sends one request at a time on it, with no pool, redirects, compression or JSON encoder
//! in the way, so the load generator takes as little of the shared CPU as it can. The open-loop
//! scenario borrows connections from a small [`ConnectionPool`] instead.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request unanswered this long counts as an error, so a stalled API fails the scenario
/// instead of hanging the bench; a healthy one answers in milliseconds even under full load.
pub const REQUEST_TIMEOUT_SECONDS: u64 = 30;

/// Where the API listens: what to connect to and what to name in the `Host` header.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port`, as given to `TcpStream::connect`.
    pub authority: String,
    /// The base URL, for messages and the report.
    pub url: String,
}

impl Endpoint {
    /// An `http://host:port` URL; TLS is not supported, since the bench talks to an API on the
    /// same machine.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim_end_matches('/');
        let authority = url
            .strip_prefix("http://")
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .ok_or_else(|| format!("{url}: the bench drives http://HOST:PORT URLs only"))?;
        Ok(Self {
            authority: authority.to_owned(),
            url: url.to_owned(),
        })
    }
}

/// An answer: its status and body.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// One keep-alive connection to the API.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    endpoint: Arc<Endpoint>,
}

impl Connection {
    pub async fn open(endpoint: &Arc<Endpoint>) -> Result<Self, String> {
        let stream = tokio::net::TcpStream::connect(&endpoint.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", endpoint.url))?;
        // Requests are small and sent whole; Nagle's delay would only add latency.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", endpoint.url))?;
        // The connection task ends when the sender is dropped or the server closes it.
        tokio::spawn(connection);
        Ok(Self {
            sender,
            endpoint: endpoint.clone(),
        })
    }

    /// POST a JSON body to `path` and read the whole answer. After an error the connection's
    /// state is unknown: open a new one.
    pub async fn post(&mut self, path: &str, json: String) -> Result<Answer, String> {
        let exchange = async {
            self.sender.ready().await.map_err(|e| e.to_string())?;
            let request = Request::post(path)
                .header(HOST, &self.endpoint.authority)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(json)))
                .map_err(|e| e.to_string())?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(Duration::from_secs(REQUEST_TIMEOUT_SECONDS), exchange)
            .await
            .map_err(|_| format!("no answer within {REQUEST_TIMEOUT_SECONDS} s"))?
    }
}

/// Connections for requests sent on a schedule rather than one after another: a request takes
/// an idle connection or opens one, and gives it back once answered. The caller bounds the
/// requests in flight, and so the connections.
pub struct ConnectionPool {
    endpoint: Arc<Endpoint>,
    /// A std mutex: it is held only to push or pop, never across an await.
    idle: Mutex<Vec<Connection>>,
    /// Connections opened so far, for the report.
    opened: AtomicUsize,
}

impl ConnectionPool {
    pub fn new(endpoint: Arc<Endpoint>) -> Self {
        Self {
            endpoint,
            idle: Mutex::new(Vec::new()),
            opened: AtomicUsize::new(0),
        }
    }

    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    pub async fn post(&self, path: &str, json: String) -> Result<Answer, String> {
        let idle = self.idle.lock().expect("the pool's lock").pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                Connection::open(&self.endpoint).await?
            }
        };
        let answer = connection.post(path, json).await?;
        self.idle.lock().expect("the pool's lock").push(connection);
        Ok(answer)
    }
}

/// The JSON body of a keyed reserve of one unit; `ttl_seconds` when the hold should expire.
pub fn reserve_body(reservation_id: &str, ttl_seconds: Option<u64>) -> String {
    match ttl_seconds {
        Some(ttl) => {
            format!(r#"{{"reservation_id":"{reservation_id}","quantity":1,"ttl_seconds":{ttl}}}"#)
        }
        None => format!(r#"{{"reservation_id":"{reservation_id}","quantity":1}}"#),
    }
}

pub fn reserve_path(sku: &str) -> String {
    format!("/v1/skus/{sku}/reservations")
}

pub fn replenish_path(sku: &str) -> String {
    format!("/v1/skus/{sku}/replenishments")
}

pub fn replenish_body(quantity: u64) -> String {
    format!(r#"{{"quantity":{quantity}}}"#)
}

/// Replenish one SKU over a new connection.
pub async fn replenish(endpoint: &Arc<Endpoint>, sku: &str, quantity: u64) -> Result<(), String> {
    let answer = Connection::open(endpoint)
        .await?
        .post(&replenish_path(sku), replenish_body(quantity))
        .await?;
    if answer.status != 200 {
        return Err(format!(
            "replenishing {sku} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_an_http_url_with_host_and_port_only() {
        let endpoint = Endpoint::parse("http://127.0.0.1:8080/").expect("a valid URL");
        assert_eq!(endpoint.authority, "127.0.0.1:8080");
        assert_eq!(endpoint.url, "http://127.0.0.1:8080");
        assert!(Endpoint::parse("https://127.0.0.1:8080").is_err());
        assert!(Endpoint::parse("http://127.0.0.1:8080/v1").is_err());
        assert!(Endpoint::parse("http://").is_err());
    }

    #[test]
    fn reserve_bodies_are_the_json_the_api_expects() {
        let plain: serde_json::Value =
            serde_json::from_str(&reserve_body("u1", None)).expect("JSON");
        assert_eq!(
            plain,
            serde_json::json!({"reservation_id": "u1", "quantity": 1})
        );
        let held: serde_json::Value =
            serde_json::from_str(&reserve_body("x1", Some(30))).expect("JSON");
        assert_eq!(
            held,
            serde_json::json!({"reservation_id": "x1", "quantity": 1, "ttl_seconds": 30})
        );
    }
}
