//! Protections in front of the routes, each a named limit with a metric (the README's "Limits
//! and protections" table lists them with their defaults and flags):
//!
//! - **Host check** (DNS rebinding): on a loopback address (the default), a request must name
//!   the server by a loopback name (`localhost`, `127.0.0.1`, `[::1]`) or an allowed host;
//!   otherwise a web page on another origin that re-points its own name at 127.0.0.1 could
//!   drive a developer's local API from a browser. 421 otherwise.
//! - **Rate limit**: a token bucket per principal (per client address for requests without a
//!   valid token, and in open mode), 429 with `Retry-After`.
//! - **Concurrency limit with load shedding**: at most so many `/v1` requests in flight; past
//!   it a request is answered 503 with `Retry-After` at once instead of queueing.
//! - **Request timeout**: a `/v1` request that takes longer is answered 503. A command cut off
//!   this way may still complete: its client retries with the same `Idempotency-Key`.
//!
//! Operational endpoints (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`) are exempt from
//! the rate limit, the concurrency limit and the timeout, so probes and scrapers keep working
//! under overload.

use crate::auth::Authenticator;
use crate::problem::Problem;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Counter: requests refused by the rate limit, by the kind of key (`principal`, `address`).
pub const METRIC_RATE_LIMITED: &str = "ledger_rate_limited_total";
/// Gauge: keys the rate limiter holds state for.
pub const METRIC_RATE_LIMIT_KEYS: &str = "ledger_rate_limit_keys";
/// Counter: requests shed because the concurrency limit was reached.
pub const METRIC_LOAD_SHED: &str = "ledger_load_shed_total";
/// Counter: requests answered 503 because they took longer than the request timeout.
pub const METRIC_REQUEST_TIMEOUTS: &str = "ledger_request_timeouts_total";
/// Counter: requests refused by the host check.
pub const METRIC_HOST_REFUSED: &str = "ledger_host_refused_total";

/// How often the rate limiter forgets keys that are back to a full bucket.
const RATE_LIMIT_SWEEP_INTERVAL_MS: u64 = 60_000;

/// Names a loopback server answers to without configuration.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// The protections' settings, from the configuration.
#[derive(Debug, Clone)]
pub struct ProtectionSettings {
    /// Host names accepted in `Host`; `None`: any (a non-loopback listener without
    /// `--allowed-host`).
    pub allowed_hosts: Option<Vec<String>>,
    /// Requests per second per key, and the bucket's size; `None`: no rate limit.
    pub rate_limit: Option<(NonZeroU32, NonZeroU32)>,
    /// Most `/v1` requests in flight.
    pub in_flight_max: usize,
    pub request_timeout: Duration,
}

impl ProtectionSettings {
    /// The host check's list: loopback names plus `extra` when listening on a loopback
    /// address, only `extra` (when given) otherwise.
    pub fn allowed_hosts_for(listen: IpAddr, extra: &[String]) -> Option<Vec<String>> {
        let extra: Vec<String> = extra.iter().map(|h| h.to_ascii_lowercase()).collect();
        if listen.is_loopback() {
            let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect();
            hosts.extend(extra);
            Some(hosts)
        } else if extra.is_empty() {
            None
        } else {
            Some(extra)
        }
    }
}

/// The protections' state, shared by every request.
pub struct Protection {
    settings: ProtectionSettings,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    in_flight: Arc<Semaphore>,
}

impl Protection {
    pub fn new(settings: ProtectionSettings) -> Self {
        let limiter = settings.rate_limit.map(|(per_second, burst)| {
            RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        let in_flight = Arc::new(Semaphore::new(settings.in_flight_max.max(1)));
        Self {
            settings,
            limiter,
            in_flight,
        }
    }

    /// Forget rate-limit keys whose bucket is full again, every minute, until shutdown: the
    /// limiter's memory follows the clients active in the last minute.
    pub async fn sweep(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(RATE_LIMIT_SWEEP_INTERVAL_MS)) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            limiter.retain_recent();
            limiter.shrink_to_fit();
            metrics::gauge!(METRIC_RATE_LIMIT_KEYS).set(limiter.len() as f64);
        }
    }

    fn host_allowed(&self, request: &Request) -> bool {
        let Some(allowed) = &self.settings.allowed_hosts else {
            return true;
        };
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        // HTTP/1.1 requires Host; a request without one names no other site either.
        let Some(host) = host else {
            return true;
        };
        let name = host_name(host).to_ascii_lowercase();
        allowed.contains(&name)
    }
}

/// The name part of a `Host` value: without the port, brackets kept for IPv6.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

/// What the middleware needs from the application's state.
pub trait Protected: Send + Sync + 'static {
    fn protection(&self) -> &Protection;
    fn authenticator(&self) -> &Authenticator;
}

/// The middleware: host check for every request; rate limit, load shedding and timeout for
/// `/v1` requests.
pub async fn protect<S: Protected>(
    State(state): State<Arc<S>>,
    request: Request,
    next: Next,
) -> Response {
    let protection = state.protection();
    let auth = state.authenticator();
    if !protection.host_allowed(&request) {
        metrics::counter!(METRIC_HOST_REFUSED).increment(1);
        return Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "host-not-allowed",
            "Host not allowed",
            "this server does not answer to the Host this request names (a loopback server \
             answers to localhost, 127.0.0.1 and [::1]; add names with --allowed-host)",
        )
        .into_response();
    }
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    if let Some(limiter) = &protection.limiter {
        let (kind, key) = match auth.identify(request.headers()) {
            Some(principal) if !auth.is_open() => ("principal", format!("p:{principal}")),
            _ => (
                "address",
                format!(
                    "a:{}",
                    crate::server::peer(&request)
                        .map_or("unknown".to_owned(), |p| p.ip().to_string())
                ),
            ),
        };
        if let Err(not_until) = limiter.check_key(&key) {
            metrics::counter!(METRIC_RATE_LIMITED, "key" => kind).increment(1);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return with_retry_after(
                Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "Too many requests",
                    format!(
                        "this {kind} sent more requests than its rate limit allows; retry after \
                         {} s",
                        seconds.max(1)
                    ),
                )
                .into_response(),
                seconds.max(1),
            );
        }
    }
    let Ok(_permit) = protection.in_flight.clone().try_acquire_owned() else {
        metrics::counter!(METRIC_LOAD_SHED).increment(1);
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Server overloaded",
            "the server has as many requests in flight as it takes; retry shortly",
        )
        .into_response();
    };
    let timeout = protection.settings.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!(METRIC_REQUEST_TIMEOUTS).increment(1);
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request-timeout",
                "Request timed out",
                format!(
                    "the request took longer than {} ms; a command may still have been carried \
                     out: retry it with the same Idempotency-Key to learn its outcome",
                    timeout.as_millis()
                ),
            )
            .into_response()
        }
    }
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port_and_keep_ipv6_brackets() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("evil.example:80"), "evil.example");
    }

    #[test]
    fn loopback_listeners_check_hosts_and_others_only_when_told() {
        let loopback = ProtectionSettings::allowed_hosts_for("127.0.0.1".parse().unwrap(), &[]);
        assert!(loopback.unwrap().contains(&"localhost".to_owned()));
        assert!(ProtectionSettings::allowed_hosts_for("0.0.0.0".parse().unwrap(), &[]).is_none());
        let named = ProtectionSettings::allowed_hosts_for(
            "0.0.0.0".parse().unwrap(),
            &["Ledger.Example".to_owned()],
        );
        assert_eq!(named, Some(vec!["ledger.example".to_owned()]));
    }
}
