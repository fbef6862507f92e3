//! The API process publishes integration events when a broker is configured, and shows the
//! publisher where operators look: in `/v1/projections` (checkpoint, lag, last error) and in
//! `/metrics`. Over a real RabbitMQ at `RABBITMQ_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`), on an exchange of the test's own; the test fails,
//! naming RabbitMQ, when it cannot reach it.

mod support;

use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::{json, Value};
use support::TestServer;

const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_broker_gets_every_movement_and_the_publisher_shows_in_status_and_metrics() {
    let url = std::env::var("RABBITMQ_URL").unwrap_or_else(|_| DEFAULT_RABBITMQ_URL.to_owned());
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    let connection = Connection::connect(&url, properties)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "RabbitMQ is not reachable at RABBITMQ_URL ({error}). This test needs a real \
                 RabbitMQ: start it, or set RABBITMQ_URL to where one runs."
            )
        });
    let channel = connection.create_channel().await.unwrap();
    let exchange = format!("ledger-test-{}", uuid::Uuid::new_v4().simple());
    channel
        .exchange_declare(
            &exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = channel
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .name()
        .to_string();
    channel
        .queue_bind(
            &queue,
            &exchange,
            "inventory.stock.*.v1.API-PUB-1",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let server = TestServer::start_with(&[
        "--rabbitmq-url",
        &url,
        "--rabbitmq-exchange",
        &exchange,
        "--integration-source",
        "urn:inventory-ledger:api-test",
    ])
    .await;
    let (status, _, _) = server
        .post("/v1/skus/API-PUB-1/replenishments", json!({"quantity": 5}))
        .await;
    assert_eq!(status, 200);
    // The reserve comes from a traced caller: its trace context reaches the published message
    // (the CloudEvents distributed-tracing extension), spans exported or not.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = server
        .client
        .post(server.url("/v1/skus/API-PUB-1/reservations"))
        .header("traceparent", traceparent)
        .json(&json!({"quantity": 2, "reservation_id": "api-pub-r1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let statuses = server
        .wait_for("/v1/projections", |body| {
            body.as_array().unwrap().iter().any(|p| {
                // The log's head trails transactions still open elsewhere (the positions are
                // transaction ids), so "no lag" alone may be seen after the first event only.
                p["name"] == "publish_rabbitmq"
                    && p["checkpoint"].is_object()
                    && p["lag_events"] == 0
                    && p["events_applied"] == 2
            })
        })
        .await;
    let publisher = statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "publish_rabbitmq")
        .unwrap();
    assert_eq!(publisher["events_applied"], 2, "{publisher}");
    assert_eq!(publisher["running"], true);

    let mut received: Vec<Value> = Vec::new();
    while let Some(message) = channel
        .basic_get(&queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        received.push(serde_json::from_slice(&message.delivery.data).unwrap());
    }
    let types: Vec<&str> = received
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "inventory.stock.replenished.v1",
            "inventory.stock.reserved.v1"
        ]
    );
    assert_eq!(received[1]["source"], "urn:inventory-ledger:api-test");
    assert_eq!(received[1]["data"]["reservation_id"], "api-pub-r1");
    assert_eq!(received[1]["traceparent"], traceparent);
    assert!(
        received[0].get("traceparent").is_none(),
        "an untraced request's message carries no trace context: {}",
        received[0]
    );
    assert_eq!(received[1]["data"]["balances_after"]["available"], 3);

    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "ledger_integration_messages_published_total{publisher=\"publish_rabbitmq\"}",
        "ledger_projection_lag_seconds{projection=\"publish_rabbitmq\"}",
        "ledger_projection_events_applied_total{projection=\"publish_rabbitmq\"}",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from /metrics"
        );
    }
    server.stop().await;
    channel
        .exchange_delete(&exchange, ExchangeDeleteOptions::default())
        .await
        .unwrap();
}
