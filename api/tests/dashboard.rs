//! The Grafana dashboard against a real scrape: the real `ledger-api` binary on a private
//! PostgreSQL database, running the projectors and the RabbitMQ publisher in-process (as the
//! projector service runs the projectors in compose, under the same names), given traffic —
//! commands accepted and refused, a principal over its rate limit — and then every metric a
//! panel queries must be in its `/metrics`. The names come from what the process exports, not
//! from a list, so a renamed metric or a mistyped panel fails here.

mod support;

use ledger_tests::dashboard;
use ledger_tests::postgres::TestDatabase;
use serde_json::json;
use std::time::Duration;
use support::process::ApiProcess;

const ADMIN_TOKEN: &str = "dashboard-admin-secret";
const CLIENT_TOKEN: &str = "dashboard-client-secret";

const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Requests a principal may send at once; the client sends more than this in a burst.
const RATE_LIMIT_BURST: u64 = 20;

/// Longest the projectors and the publisher may take to catch up and be exported.
const SCRAPE_DEADLINE_MS: u64 = 60_000;

const SKU: &str = "DASHBOARD-1";

async fn delete_exchange(url: &str, exchange: &str) {
    let properties = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    let connection = lapin::Connection::connect(url, properties)
        .await
        .expect("RabbitMQ is reachable");
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_delete(exchange, lapin::options::ExchangeDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported_by_the_api_after_traffic() {
    let rabbitmq_url =
        std::env::var("RABBITMQ_URL").unwrap_or_else(|_| DEFAULT_RABBITMQ_URL.to_owned());
    let exchange = format!("ledger-dashboard-{}", uuid::Uuid::new_v4().simple());
    let database = TestDatabase::create().await;
    let hash = ledger_api::auth::hash_token;
    let tokens = format!(
        "admin:{}:dashboard-admin,client:{}:dashboard-client",
        hash(ADMIN_TOKEN),
        hash(CLIENT_TOKEN)
    );
    let burst = RATE_LIMIT_BURST.to_string();
    let api = ApiProcess::start(
        "dashboard",
        &database.url(),
        &[
            "--tokens",
            &tokens,
            "--rate-limit-per-second",
            "1",
            "--rate-limit-burst",
            &burst,
            "--rabbitmq-url",
            &rabbitmq_url,
            "--rabbitmq-exchange",
            &exchange,
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let send =
        |method: reqwest::Method, path: &str, token: &str, body: Option<serde_json::Value>| {
            let mut request = http.request(method, api.url(path)).bearer_auth(token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            async move {
                let response = request.send().await.expect("the API answers");
                response.status().as_u16()
            }
        };

    // Commands: accepted, and one refused (more than is available).
    use reqwest::Method;
    let replenish = json!({"quantity": 10});
    let status = send(
        Method::POST,
        &format!("/v1/skus/{SKU}/replenishments"),
        ADMIN_TOKEN,
        Some(replenish),
    )
    .await;
    assert_eq!(status, 200);
    for (id, quantity, expected) in [("dash-1", 4, 201), ("dash-2", 4, 201), ("dash-3", 4, 409)] {
        let status = send(
            Method::POST,
            &format!("/v1/skus/{SKU}/reservations"),
            ADMIN_TOKEN,
            Some(json!({"quantity": quantity, "reservation_id": id})),
        )
        .await;
        assert_eq!(status, expected, "reserve {id}");
    }
    // A principal over its rate limit: the burst passes, the rest is refused.
    let mut refused = 0u64;
    for _ in 0..RATE_LIMIT_BURST * 2 {
        let status = send(Method::GET, &format!("/v1/skus/{SKU}"), CLIENT_TOKEN, None).await;
        assert!(status == 200 || status == 404 || status == 429, "{status}");
        refused += u64::from(status == 429);
    }
    assert!(refused >= RATE_LIMIT_BURST / 2, "{refused} refused");

    // Scrape until the projectors and the publisher have applied the three events.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SCRAPE_DEADLINE_MS);
    let exposition = loop {
        let response = http.get(api.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let applied = |projection: &str| {
            dashboard::sample(
                &body,
                "ledger_projection_events_applied_total",
                &[("projection", projection)],
            )
        };
        if applied("stock_levels") == Some(3.0) && applied("publish_rabbitmq") == Some(3.0) {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projectors did not catch up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let exported = dashboard::exported_names(&exposition);
    dashboard::assert_every_panel_metric_is_in(&exported, "the API");
    for (what, metric, _) in dashboard::REQUIRED_PANELS {
        assert!(exported.contains(*metric), "{what}: {metric} not exported");
    }
    // The figures are the traffic's, not merely present.
    assert_eq!(
        dashboard::sample(
            &exposition,
            "ledger_rate_limited_total",
            &[("key", "principal")]
        ),
        Some(refused as f64)
    );
    assert!(
        dashboard::sample(
            &exposition,
            "ledger_projection_lag_seconds",
            &[("projection", "publish_rabbitmq")]
        )
        .is_some(),
        "the publisher's lag is exported: {exposition}"
    );
    assert_eq!(
        dashboard::sample(
            &exposition,
            "ledger_commands_total",
            &[("command", "reserve"), ("outcome", "accepted")]
        ),
        Some(2.0),
        "{exposition}"
    );
    drop(api);
    delete_exchange(&rabbitmq_url, &exchange).await;
}
