//! Request observation: the middleware that gives every request an id, a span (the server
//! span of its trace, when spans are exported) and its rate and latency metrics. (The
//! Prometheus recorder is `ledger_startup::metrics`, shared with the projector; logging is set
//! up by `ledger_startup::init_logging`, the same for every binary.)

use crate::extract::{is_header_identifier, RequestId, TraceParent};
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use ledger_startup::traces;
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_header_identifier(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The method as a metric label: the methods the API knows by name, anything else `other`, so
/// a flood of made-up methods cannot add series (every label of a metric is bounded: route
/// templates, not paths; status codes).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The W3C trace context header: the caller's trace, which the request span continues.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Make `span` the request's server span in the caller's trace, when spans are exported; the
/// `traceparent` to record on the request's events, if any.
fn trace_request(
    request: &Request,
    span: &tracing::Span,
    method: &str,
    route: &str,
) -> Option<String> {
    let caller = request
        .headers()
        .get(TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok());
    if !traces::exporting() {
        return caller.and_then(traces::accepted_traceparent);
    }
    span.record("otel.name", format!("{method} {route}"));
    span.record("otel.kind", "server");
    if let Some(caller) = caller {
        traces::continue_trace(span, caller);
    }
    traces::traceparent_of(span)
}

/// Gives the request an id (the caller's `X-Request-Id` when it sent a sane one), runs it in a
/// span carrying that id, echoes the id in the response, and records rate and latency by route
/// template (never by raw path, which would make one series per SKU).
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(traceparent) = trace_request(&request, &span, method, &route) {
        request.extensions_mut().insert(TraceParent(traceparent));
    }
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if traces::exporting() {
        span.record("http.response.status_code", status.as_u16());
    }
    let elapsed = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("ledger_http_requests_total", &labels).increment(1);
    metrics::histogram!("ledger_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::error!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_millis() as u64,
                "answered"
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_millis() as u64,
                "answered"
            );
        }
    });
    response
}
