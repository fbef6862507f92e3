//! Traces end to end: the real `ledger-api` binary, with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing
//! at an OTLP/HTTP receiver this test runs, exports one trace per traced request that holds
//! the request span (continuing the caller's `traceparent`), the writer batch that decided the
//! command, the group commit that wrote it, and the batch of every projection that applied its
//! event, each in the relation the README describes.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use ledger_tests::postgres::TestDatabase;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use support::process::ApiProcess;

/// How long the spans of one request may take to arrive: the export runs every
/// [`EXPORT_INTERVAL_MS`], the projectors follow the log within milliseconds.
const ARRIVAL_DEADLINE_MS: u64 = 30_000;

/// The batch span processor's schedule delay in the server: short, so the test waits little.
const EXPORT_INTERVAL_MS: &str = "100";

const POLL_INTERVAL_MS: u64 = 50;

const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const EXPORT_INTERVAL: &str = "OTEL_BSP_SCHEDULE_DELAY";

const SKU: &str = "TRACED-1";

/// The callers' trace contexts: the replenishment's and the reserve's.
const REPLENISH_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const REPLENISH_PARENT: &str = "b7ad6b7169203331";
const RESERVE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const RESERVE_PARENT: &str = "00f067aa0ba902b7";

/// One exported span and the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// `POST /v1/traces`: an OTLP/HTTP protobuf export request, kept span by span.
async fn receive(State(inbox): State<Inbox>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut inbox = inbox.lock().unwrap_or_else(PoisonError::into_inner);
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find_map(|attribute| (attribute.key == "service.name").then(|| text(attribute)))
            .flatten()
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                inbox.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    StatusCode::OK
}

fn text(attribute: &KeyValue) -> Option<String> {
    match attribute.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(text)
}

/// A receiver on a free loopback port; its base URL (what `OTEL_EXPORTER_OTLP_ENDPOINT` names)
/// and what it received.
async fn start_receiver() -> (String, Inbox) {
    let inbox = Inbox::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the receiver binds");
    let address = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the receiver serves");
    });
    (format!("http://{address}"), inbox)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of trace `trace_id` received so far.
fn trace(inbox: &Inbox, trace_id: &str) -> Vec<Received> {
    inbox
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|received| hex(&received.span.trace_id) == trace_id)
        .cloned()
        .collect()
}

/// The projections whose batch spans are in `spans`.
fn projections_in(spans: &[Received]) -> BTreeSet<String> {
    spans
        .iter()
        .filter(|r| r.span.name == "projector.batch")
        .filter_map(|r| attribute(&r.span, "projection"))
        .collect()
}

/// Poll until trace `trace_id` holds a request span, a writer batch, a group commit and a
/// batch of every projection, or fail at the deadline with what did arrive.
async fn wait_for_trace(inbox: &Inbox, trace_id: &str) -> Vec<Received> {
    let every_projection: BTreeSet<String> = ledger_projections::names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ARRIVAL_DEADLINE_MS);
    loop {
        let spans = trace(inbox, trace_id);
        let has = |name: &str| spans.iter().any(|r| r.span.name == name);
        if has("writer.batch")
            && has("event_store.group_commit")
            && spans.iter().any(|r| r.span.kind == SpanKind::Server as i32)
            && projections_in(&spans) == every_projection
        {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trace {trace_id} was not complete within {ARRIVAL_DEADLINE_MS} ms; it has {:?}",
            spans
                .iter()
                .map(|r| (&r.service, &r.span.name, attribute(&r.span, "projection")))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

fn one<'a>(spans: &'a [Received], name: &str) -> &'a Span {
    let found: Vec<&Received> = spans.iter().filter(|r| r.span.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span expected, found {found:?}");
    &found[0].span
}

/// Replenish [`SKU`] through `api` in the caller's trace [`REPLENISH_TRACE`].
async fn replenish_traced(http: &reqwest::Client, api: &ApiProcess) {
    let replenished = http
        .post(api.url(&format!("/v1/skus/{SKU}/replenishments")))
        .header(
            "traceparent",
            format!("00-{REPLENISH_TRACE}-{REPLENISH_PARENT}-01"),
        )
        .json(&json!({"quantity": 10}))
        .send()
        .await
        .expect("the replenishment is sent");
    assert_eq!(replenished.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_reserve_is_one_trace_from_the_request_to_the_projector_batches() {
    let (endpoint, inbox) = start_receiver().await;
    let database = TestDatabase::create().await;
    let mut api = ApiProcess::start_with_environment(
        "traced",
        &database.url(),
        &["--projectors", "true"],
        &[
            (OTLP_ENDPOINT, &endpoint),
            (EXPORT_INTERVAL, EXPORT_INTERVAL_MS),
        ],
    )
    .await;
    let http = reqwest::Client::new();

    // Given stock, replenished in a trace of its own, and applied by every projection (so that
    // the reserve's event is the first of its projector batches, not linked from another).
    replenish_traced(&http, &api).await;
    wait_for_trace(&inbox, REPLENISH_TRACE).await;

    // When a reserve comes with the caller's trace context.
    let reserved = http
        .post(api.url(&format!("/v1/skus/{SKU}/reservations")))
        .header(
            "traceparent",
            format!("00-{RESERVE_TRACE}-{RESERVE_PARENT}-01"),
        )
        .json(&json!({"reservation_id": "traced-order-1", "quantity": 2, "ttl_seconds": 900}))
        .send()
        .await
        .expect("the reserve is sent");
    assert_eq!(reserved.status(), 201);

    // Then one trace, the caller's, holds the whole path.
    let spans = wait_for_trace(&inbox, RESERVE_TRACE).await;
    assert!(
        spans.iter().all(|r| r.service == "ledger-api"),
        "every span comes from the API process under its default service name: {spans:?}"
    );

    // The request span is the server span, a child of the caller's span.
    let request = spans
        .iter()
        .map(|r| &r.span)
        .find(|span| span.kind == SpanKind::Server as i32)
        .expect("a server span");
    assert_eq!(request.name, "POST /v1/skus/{sku}/reservations");
    assert_eq!(hex(&request.parent_span_id), RESERVE_PARENT);
    assert_eq!(
        attribute(request, "route").as_deref(),
        Some("/v1/skus/{sku}/reservations")
    );

    // The writer batch that decided the reserve is the request's child ...
    let batch = one(&spans, "writer.batch");
    assert_eq!(hex(&batch.parent_span_id), hex(&request.span_id));
    assert_eq!(attribute(batch, "sku").as_deref(), Some(SKU));

    // ... and the group commit that wrote its event is the batch's.
    let commit = one(&spans, "event_store.group_commit");
    assert_eq!(hex(&commit.parent_span_id), hex(&batch.span_id));

    // Each projection's batch that applied the event continues the request span, whose
    // traceparent the event carries in its metadata.
    for projector_batch in spans.iter().filter(|r| r.span.name == "projector.batch") {
        assert_eq!(
            hex(&projector_batch.span.parent_span_id),
            hex(&request.span_id),
            "{:?}",
            attribute(&projector_batch.span, "projection")
        );
        assert_eq!(projector_batch.span.kind, SpanKind::Consumer as i32);
    }

    // The event keeps the request span's traceparent in its metadata: what the projectors
    // joined.
    let client = database.database(1).client().await.expect("a connection");
    let row = client
        .query_one(
            "SELECT metadata FROM event_store.events WHERE stream = $1 AND event_type = $2",
            &[&format!("sku-{SKU}"), &"StockReserved"],
        )
        .await
        .expect("the reserve's event is stored");
    let metadata: serde_json::Value = row.get(0);
    assert_eq!(
        metadata["traceparent"],
        format!("00-{RESERVE_TRACE}-{}-01", hex(&request.span_id)),
        "{metadata}"
    );
    drop(client);

    api.send_signal("TERM");
    tokio::task::block_in_place(|| api.wait_for_clean_exit());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_sends_the_spans_still_queued() {
    // With an export interval far longer than the test, spans leave the process only when it
    // stops: a SIGTERM must flush them before the exit.
    let (endpoint, inbox) = start_receiver().await;
    let database = TestDatabase::create().await;
    let mut api = ApiProcess::start_with_environment(
        "flushed",
        &database.url(),
        &["--projectors", "false"],
        &[
            (OTLP_ENDPOINT, &endpoint),
            (EXPORT_INTERVAL, "600000"),
            ("OTEL_SERVICE_NAME", "ledger-api-under-test"),
        ],
    )
    .await;
    replenish_traced(&reqwest::Client::new(), &api).await;
    assert!(
        trace(&inbox, REPLENISH_TRACE).is_empty(),
        "nothing is exported before the interval or the stop"
    );

    api.send_signal("TERM");
    tokio::task::block_in_place(|| api.wait_for_clean_exit());

    let spans = trace(&inbox, REPLENISH_TRACE);
    let names: BTreeSet<&str> = spans.iter().map(|r| r.span.name.as_str()).collect();
    assert!(
        names.contains("POST /v1/skus/{sku}/replenishments")
            && names.contains("writer.batch")
            && names.contains("event_store.group_commit"),
        "{names:?}"
    );
    assert!(
        spans.iter().all(|r| r.service == "ledger-api-under-test"),
        "OTEL_SERVICE_NAME names the service: {spans:?}"
    );
}
