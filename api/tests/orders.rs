//! Orders over real HTTP against the real `ledger-api` binary on a real PostgreSQL: an order
//! reserve is all or nothing across SKUs (a short line holds nothing and every short line is
//! named), a retry with the same key gets the same answer and never holds twice, a crash after
//! the first line leaves no hold once the API is back, and an order's reservations are
//! released, confirmed and listed as a whole.

mod support;

use ledger_tests::postgres::TestDatabase;
use serde_json::{json, Value};
use std::time::Duration;
use support::process::ApiProcess;
use support::read;

/// Longest a read model may take to show what the streams say before the test fails.
const CONVERGENCE_DEADLINE_MS: u64 = 20_000;

/// Longest the crashing process may take to die once its order reserve is sent.
const CRASH_DEADLINE_MS: u64 = 30_000;

const PROBLEM_PREFIX: &str = "urn:inventory-ledger:problem:";

/// A client of one running API process.
struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn of(api: &ApiProcess) -> Self {
        Self {
            base: api.base.clone(),
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let (status, body, _) = read(request.send().await.expect("request sent")).await;
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        let (status, body, _) = read(response).await;
        (status, body)
    }

    async fn replenish(&self, sku: &str, quantity: u64) {
        let (status, body) = self
            .post(
                &format!("/v1/skus/{sku}/replenishments"),
                None,
                json!({"quantity": quantity}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn reserve_order(&self, order: &str, key: Option<&str>, lines: Value) -> (u16, Value) {
        self.post(
            &format!("/v1/orders/{order}/reservations"),
            key,
            json!({"lines": lines}),
        )
        .await
    }

    async fn sku(&self, sku: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/skus/{sku}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The event types of the SKU's history, from the event store.
    async fn history(&self, sku: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/v1/skus/{sku}/history?limit=1000"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["entries"].as_array().expect("entries").clone()
    }

    async fn history_types(&self, sku: &str) -> Vec<String> {
        self.history(sku)
            .await
            .iter()
            .map(|entry| entry["event_type"].as_str().expect("event_type").to_owned())
            .collect()
    }

    /// Poll `path` until `done` holds for its JSON body, or fail at the deadline.
    async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CONVERGENCE_DEADLINE_MS);
        loop {
            let (status, body) = self.get(path).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} did not converge within {CONVERGENCE_DEADLINE_MS} ms; last: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn problem(name: &str) -> String {
    format!("{PROBLEM_PREFIX}{name}")
}

fn line(sku: &str, quantity: u64) -> Value {
    json!({"sku": sku, "quantity": quantity})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_with_a_short_line_holds_nothing_and_its_retry_gets_the_same_answer() {
    let database = TestDatabase::create().await;
    let api = ApiProcess::start("orders", &database.url(), &[]).await;
    let client = Client::of(&api);
    client.replenish("ORD-A", 10).await;
    client.replenish("ORD-B", 10).await;
    client.replenish("ORD-C", 1).await;

    // Three lines, the last one short: the first two are held, then released.
    let lines = json!([line("ORD-A", 2), line("ORD-B", 4), line("ORD-C", 3)]);
    let (status, refused) = client
        .reserve_order("order-1", Some("key-1"), lines.clone())
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["type"], problem("order-insufficient-stock"));
    assert_eq!(
        refused["short_lines"],
        json!([{"line": 3, "sku": "ORD-C", "location": "default", "requested": 3, "available": 1}])
    );
    for sku in ["ORD-A", "ORD-B"] {
        let state = client.sku(sku).await;
        assert_eq!(state["reserved"], 0, "{sku}: {state}");
        assert_eq!(state["available"], 10, "{sku}: {state}");
        assert_eq!(
            client.history_types(sku).await,
            ["StockReplenished", "StockReserved", "ReservationReleased"],
            "{sku}"
        );
    }
    assert_eq!(client.history_types("ORD-C").await, ["StockReplenished"]);

    // The same request with the same key: the same answer, and nothing appended.
    let (again_status, again) = client
        .reserve_order("order-1", Some("key-1"), lines.clone())
        .await;
    assert_eq!((again_status, &again), (409, &refused));
    assert_eq!(client.history("ORD-A").await.len(), 3);
    // The same key with another body is refused as for any command.
    let (status, body) = client
        .reserve_order("order-1", Some("key-1"), json!([line("ORD-A", 1)]))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], problem("idempotency-key-reused"));

    // Every short line is named, not only the first: lines 1 and 3 here (line 3 is checked
    // without being held, since the order is refused anyway).
    let (status, body) = client
        .reserve_order(
            "order-2",
            Some("key-2"),
            json!([line("ORD-C", 5), line("ORD-A", 1), line("ORD-B", 11)]),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let short: Vec<(u64, u64)> = body["short_lines"]
        .as_array()
        .expect("short lines")
        .iter()
        .map(|s| {
            (
                s["line"].as_u64().unwrap(),
                s["available"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(short, [(1, 1), (3, 10)]);
    assert_eq!(client.sku("ORD-B").await["reserved"], 0);

    // With stock, a new attempt (a new key) holds every line, and its retry holds nothing more.
    client.replenish("ORD-C", 5).await;
    let (status, reserved) = client
        .reserve_order("order-1", Some("key-3"), lines.clone())
        .await;
    assert_eq!(status, 201, "{reserved}");
    assert_eq!(reserved["lines"].as_array().unwrap().len(), 3);
    let (status, again) = client
        .reserve_order("order-1", Some("key-3"), lines.clone())
        .await;
    assert_eq!((status, &again), (201, &reserved));
    for (sku, quantity) in [("ORD-A", 2), ("ORD-B", 4), ("ORD-C", 3)] {
        assert_eq!(client.sku(sku).await["reserved"], quantity, "{sku}");
    }
    // While it holds the order, another key for the same order is refused.
    let (status, body) = client
        .reserve_order("order-1", Some("key-4"), lines.clone())
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["type"], problem("order-already-reserved"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_is_listed_released_and_confirmed_as_a_whole() {
    let database = TestDatabase::create().await;
    let api = ApiProcess::start("order-endings", &database.url(), &[]).await;
    let client = Client::of(&api);
    for sku in ["END-A", "END-B", "END-C"] {
        client.replenish(sku, 10).await;
    }
    let (status, body) = client
        .reserve_order(
            "cancelled-1",
            Some("reserve-cancelled-1"),
            json!([line("END-A", 1), line("END-B", 2)]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // A single reserve that names the order is part of it too.
    let (status, body) = client
        .post(
            "/v1/skus/END-C/reservations",
            None,
            json!({"reservation_id": "single-1", "order_id": "cancelled-1", "quantity": 3}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let listed = client
        .wait_for("/v1/orders/cancelled-1/reservations", |rows| {
            rows.as_array().is_some_and(|rows| rows.len() == 3)
        })
        .await;
    let skus: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["END-A", "END-B", "END-C"]);

    let (status, released) = client
        .post(
            "/v1/orders/cancelled-1/release",
            None,
            json!({"reason": "order cancelled"}),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["ended"].as_array().unwrap().len(), 3, "{released}");
    assert_eq!(released["read_model_current"], true);
    for sku in ["END-A", "END-B", "END-C"] {
        assert_eq!(client.sku(sku).await["reserved"], 0, "{sku}");
    }
    // Again: nothing more is released, and what was is listed as ended.
    let (status, again) = client
        .post("/v1/orders/cancelled-1/release", None, json!({}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["ended"], json!([]));
    assert_eq!(
        again["already_ended"].as_array().unwrap().len(),
        3,
        "{again}"
    );
    assert_eq!(
        client.history_types("END-C").await,
        ["StockReplenished", "StockReserved", "ReservationReleased"]
    );

    // Confirm, sent twice at once: each reservation is confirmed exactly once.
    let (status, body) = client
        .reserve_order(
            "paid-1",
            Some("reserve-paid-1"),
            json!([line("END-A", 4), line("END-B", 5)]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let ((first_status, first), (second_status, second)) = tokio::join!(
        client.post("/v1/orders/paid-1/confirm", None, json!({})),
        client.post("/v1/orders/paid-1/confirm", None, json!({})),
    );
    assert_eq!(
        (first_status, second_status),
        (200, 200),
        "{first} {second}"
    );
    let confirmed =
        first["ended"].as_array().unwrap().len() + second["ended"].as_array().unwrap().len();
    assert_eq!(confirmed, 2, "{first} {second}");
    for (sku, on_hand) in [("END-A", 6), ("END-B", 5)] {
        let state = client.sku(sku).await;
        assert_eq!(state["on_hand"], on_hand, "{sku}: {state}");
        assert_eq!(state["reserved"], 0, "{sku}: {state}");
    }
    let confirmed_rows = client
        .wait_for("/v1/orders/paid-1/reservations?status=confirmed", |rows| {
            rows.as_array().is_some_and(|rows| rows.len() == 2)
        })
        .await;
    assert!(confirmed_rows
        .as_array()
        .unwrap()
        .iter()
        .all(|row| row["order_id"] == "paid-1"));
    // The order's attempt is over: the order id may be reserved again.
    let (status, body) = client
        .reserve_order(
            "paid-1",
            Some("reserve-paid-1-again"),
            json!([line("END-A", 1)]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_first_line_leaves_no_hold_once_the_api_is_back() {
    let database = TestDatabase::create().await;
    let mut crashing = ApiProcess::start_with_environment(
        "order-crash",
        &database.url(),
        &[],
        &[("LEDGER_FAULT_ORDER_CRASH_AFTER_LINES", "1")],
    )
    .await;
    let client = Client::of(&crashing);
    client.replenish("CRASH-A", 10).await;
    client.replenish("CRASH-B", 10).await;
    let lines = json!([line("CRASH-A", 2), line("CRASH-B", 3)]);
    // The process dies after holding the first line: no answer comes back.
    let sent = client
        .http
        .post(format!("{}/v1/orders/crash-1/reservations", client.base))
        .header("idempotency-key", "crash-key")
        .json(&json!({"lines": lines}))
        .send()
        .await;
    assert!(sent.is_err(), "the order reserve was answered: {sent:?}");
    let exit = crashing
        .wait_for_exit(Duration::from_millis(CRASH_DEADLINE_MS))
        .expect("the process died");
    assert!(!exit.success(), "{exit}");
    drop(crashing);

    // Started again (without the hook) on the same database: recovery ran before it listens.
    let api = ApiProcess::start("order-recovered", &database.url(), &[]).await;
    let client = Client::of(&api);
    let state = client.sku("CRASH-A").await;
    assert_eq!(state["reserved"], 0, "{state}");
    assert_eq!(state["available"], 10, "{state}");
    let history = client.history("CRASH-A").await;
    let types: Vec<&str> = history
        .iter()
        .map(|entry| entry["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["StockReplenished", "StockReserved", "ReservationReleased"]
    );
    assert_eq!(history[2]["principal"], "system:orders");
    assert_eq!(client.history_types("CRASH-B").await, ["StockReplenished"]);
    // The interrupted attempt's retry says what happened; a new key reserves the order.
    let (status, body) = client
        .reserve_order("crash-1", Some("crash-key"), lines.clone())
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["type"], problem("order-reserve-interrupted"));
    let (status, body) = client
        .reserve_order("crash-1", Some("crash-key-2"), lines)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(client.sku("CRASH-A").await["reserved"], 2);
    assert_eq!(client.sku("CRASH-B").await["reserved"], 3);
}
