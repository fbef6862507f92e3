//! The API end to end: the real server on port 0, a fresh PostgreSQL database, real HTTP.

mod support;

use serde_json::{json, Value};
use support::{history, read, TestServer};

type Answer = (u16, Value, reqwest::header::HeaderMap);

fn types(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_has_a_happy_path_and_the_history_tells_the_round_trip() {
    let server = TestServer::start().await;
    let (status, body, headers) = server
        .post(
            "/v1/skus/RT-1/replenishments",
            json!({"quantity": 10, "reference": "PO-1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["on_hand"], 10);
    assert_eq!(headers["etag"], "\"0\"");

    let (status, body, headers) = server
        .post(
            "/v1/skus/RT-1/reservations",
            json!({"reservation_id": "r1", "order_id": "o1", "quantity": 4}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["location"], "/v1/skus/RT-1/reservations/r1");
    assert_eq!(
        (body["reserved"].as_u64(), body["available"].as_u64()),
        (Some(4), Some(6))
    );

    let (status, body, _) = server
        .post(
            "/v1/skus/RT-1/reservations/r1/release",
            json!({"reason": "cart abandoned"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reserved"], 0);

    let (status, body, _) = server
        .post(
            "/v1/skus/RT-1/reservations",
            json!({"reservation_id": "r2", "quantity": 3}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Confirm with an empty body (its fields are optional), but still as JSON: without the
    // content type a cross-site page could send it (see the hardening tests).
    let response = server
        .client
        .post(server.url("/v1/skus/RT-1/reservations/r2/confirm"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let (status, body, _) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["on_hand"].as_u64(), body["reserved"].as_u64()),
        (Some(7), Some(0))
    );

    let (status, body, _) = server
        .post(
            "/v1/skus/RT-1/adjustments",
            json!({"delta": -2, "reason": "cycle count"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let response = server
        .client
        .put(server.url("/v1/skus/RT-1/reorder-point"))
        .json(&json!({"reorder_point": 8}))
        .send()
        .await
        .unwrap();
    let (status, body, _) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["below_reorder_point"], true);

    let entries = history(&server, "RT-1").await;
    assert_eq!(
        types(&entries),
        [
            "StockReplenished",
            "StockReserved",
            "ReservationReleased",
            "StockReserved",
            "ReservationConfirmed",
            "StockAdjusted",
            "ReorderPointSet"
        ]
    );
    let after: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["on_hand_after"].as_u64().unwrap(),
                e["reserved_after"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        after,
        [(10, 0), (10, 4), (10, 0), (10, 3), (7, 0), (5, 0), (5, 0)]
    );
    assert_eq!(entries[2]["reason"], "cart abandoned");
    assert_eq!(entries[0]["principal"], "anonymous");
    // Every entry shows its event's link in the hash chain: 64 lower-case hex digits, each
    // event its own.
    let hashes: std::collections::HashSet<&str> = entries
        .iter()
        .map(|e| e["hash"].as_str().expect("every entry has a hash"))
        .collect();
    assert_eq!(hashes.len(), entries.len());
    assert!(hashes.iter().all(|hash| hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))));

    // As of version 1 the first reservation was still holding four units.
    let (status, body) = server.get("/v1/skus/RT-1/history?at_version=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["reserved"], 4);

    // The read models catch up: the SKU is below its reorder point, with one open alert.
    server
        .wait_for("/v1/low-stock", |b| {
            b.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let alerts = server
        .wait_for("/v1/alerts", |b| b.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert_eq!(alerts[0]["sku"], "RT-1");
    assert_eq!(alerts[0]["available_at_open"], 5);
    let movements = server
        .wait_for("/v1/skus/RT-1/movements", |b| {
            b.as_array().is_some_and(|a| a.len() == 7)
        })
        .await;
    assert_eq!(movements[4]["movement"], "confirmed");
    let reservations = server
        .wait_for("/v1/skus/RT-1/reservations?status=confirmed", |b| {
            b.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert_eq!(reservations[0]["reservation_id"], "r2");
    let (status, body) = server.get("/v1/projections").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.as_array().unwrap().len(),
        ledger_projections::names().len()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flash_sale_of_one_unit_sells_exactly_one() {
    let server = TestServer::start().await;
    let (status, _, _) = server
        .post("/v1/skus/FLASH-1/replenishments", json!({"quantity": 1}))
        .await;
    assert_eq!(status, 200);
    let mut buyers = Vec::new();
    for buyer in 0..100 {
        let client = server.client.clone();
        let url = server.url("/v1/skus/FLASH-1/reservations");
        buyers.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"reservation_id": format!("buyer-{buyer}"), "quantity": 1}))
                .send()
                .await
                .unwrap();
            read(response).await
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for buyer in buyers {
        let (status, body, headers) = buyer.await.unwrap();
        match status {
            201 => created += 1,
            409 => {
                assert_eq!(
                    body["type"],
                    "urn:inventory-ledger:problem:insufficient-stock"
                );
                assert_eq!(body["available"], 0);
                assert_eq!(headers["content-type"], "application/problem+json");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, refused), (1, 99));
    let entries = history(&server, "FLASH-1").await;
    assert_eq!(types(&entries), ["StockReplenished", "StockReserved"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_requests_sent_at_once_with_one_key_append_once_and_answer_alike() {
    let server = TestServer::start().await;
    let send = |body: Value| {
        let client = server.client.clone();
        let url = server.url("/v1/skus/IDEM-1/replenishments");
        async move {
            let response = client
                .post(url)
                .header("idempotency-key", "delivery-77")
                .json(&body)
                .send()
                .await
                .unwrap();
            read(response).await
        }
    };
    let (first, second) = tokio::join!(send(json!({"quantity": 5})), send(json!({"quantity": 5})));
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!((first.0, &first.1), (second.0, &second.1));
    assert_eq!(history(&server, "IDEM-1").await.len(), 1);

    let (status, body, _) = send(json!({"quantity": 6})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["type"],
        "urn:inventory-ledger:problem:idempotency-key-reused"
    );

    // A reservation id is a key of its own: a retried reserve returns the original answer.
    let reserve = json!({"reservation_id": "hold-1", "quantity": 2});
    let (a, b) = tokio::join!(
        server.post("/v1/skus/IDEM-1/reservations", reserve.clone()),
        server.post("/v1/skus/IDEM-1/reservations", reserve.clone())
    );
    assert_eq!(a.0, 201, "{}", a.1);
    assert_eq!((a.0, &a.1), (b.0, &b.1));
    let (status, body, _) = server
        .post(
            "/v1/skus/IDEM-1/reservations",
            json!({"reservation_id": "hold-1", "quantity": 3}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(history(&server, "IDEM-1").await.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_if_match_is_refused_with_the_current_version() {
    let server = TestServer::start().await;
    server
        .post("/v1/skus/IFM-1/replenishments", json!({"quantity": 5}))
        .await;
    server
        .post("/v1/skus/IFM-1/replenishments", json!({"quantity": 5}))
        .await;
    let response = server
        .client
        .post(server.url("/v1/skus/IFM-1/adjustments"))
        .header("if-match", "\"0\"")
        .json(&json!({"delta": -1, "reason": "recount"}))
        .send()
        .await
        .unwrap();
    let (status, body, _) = read(response).await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["current_version"], 1);
    let response = server
        .client
        .post(server.url("/v1/skus/IFM-1/adjustments"))
        .header("if-match", "\"1\"")
        .json(&json!({"delta": -1, "reason": "recount"}))
        .send()
        .await
        .unwrap();
    let (status, body, headers) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["etag"], "\"2\"");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_problem_that_says_what_was_wrong_and_appends_nothing() {
    let server = TestServer::start().await;
    let path = "/v1/skus/BAD-1/reservations";
    let raw = |body: &'static str| {
        let client = server.client.clone();
        let url = server.url(path);
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            read(response).await
        }
    };
    type Case = (&'static str, Answer, &'static str, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (
            "malformed",
            raw("{\"quantity\": ").await,
            "malformed-json",
            None,
        ),
        (
            "wrong type",
            raw("{\"quantity\": \"two\"}").await,
            "validation-failed",
            Some("quantity"),
        ),
        (
            "unknown field",
            raw("{\"quantity\": 1, \"colour\": \"red\"}").await,
            "validation-failed",
            None,
        ),
        (
            "negative",
            raw("{\"quantity\": -3}").await,
            "validation-failed",
            Some("quantity"),
        ),
        (
            "zero",
            raw("{\"quantity\": 0}").await,
            "validation-failed",
            Some("quantity"),
        ),
        (
            "oversized quantity",
            raw("{\"quantity\": 1000000000000}").await,
            "validation-failed",
            Some("quantity"),
        ),
        (
            "bad reservation id",
            raw("{\"quantity\": 1, \"reservation_id\": \"has space\"}").await,
            "validation-failed",
            Some("reservation_id"),
        ),
    ];
    for (name, (status, body, headers), code, field) in cases {
        assert!((400..500).contains(&status), "{name}: {status} {body}");
        assert_eq!(
            body["type"],
            format!("urn:inventory-ledger:problem:{code}"),
            "{name}: {body}"
        );
        assert!(
            !body["detail"].as_str().unwrap_or_default().is_empty(),
            "{name}: {body}"
        );
        assert_eq!(headers["content-type"], "application/problem+json");
        if let Some(field) = field {
            assert_eq!(body["field"], field, "{name}: {body}");
        }
    }

    let big = format!(
        "{{\"quantity\": 1, \"order_id\": \"{}\"}}",
        "x".repeat(20_000)
    );
    let response = server
        .client
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (status, body, _) = read(response).await;
    assert_eq!(status, 413, "{body}");

    for sku in ["bad%20sku", "x".repeat(200).as_str(), "%C3%A9t%C3%A9"] {
        let (status, body, _) = server
            .post(
                &format!("/v1/skus/{sku}/replenishments"),
                json!({"quantity": 1}),
            )
            .await;
        assert_eq!(status, 422, "{sku}: {body}");
        assert_eq!(
            body["type"],
            "urn:inventory-ledger:problem:validation-failed"
        );
    }

    let response = server
        .client
        .post(server.url(path))
        .header("content-type", "text/plain")
        .body("quantity=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);

    let (status, body, _) = server
        .post("/v1/skus/BAD-1/reservations/nope/release", json!({}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["type"],
        "urn:inventory-ledger:problem:reservation-not-found"
    );

    assert!(history(&server, "BAD-1").await.is_empty());
    let (status, body) = server.get("/v1/skus/BAD-1").await;
    assert_eq!(status, 200);
    assert_eq!(body["version"], Value::Null);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_decide_who_may_do_what() {
    let hash = |token: &str| ledger_api::auth::hash_token(token);
    let tokens = format!(
        "client:{}:checkout,operator:{}:ops,auditor:{}:audit",
        hash("c-token"),
        hash("o-token"),
        hash("a-token")
    );
    let server = TestServer::start_with(&["--tokens", &tokens]).await;
    let call = |token: Option<&'static str>, path: &'static str, body: Value| {
        let client = server.client.clone();
        let url = server.url(path);
        async move {
            let mut request = client.post(url).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let (status, body, headers) = read(request.send().await.unwrap()).await;
            (status, body, headers)
        }
    };
    let replenish = "/v1/skus/AUTH-1/replenishments";
    let reserve = "/v1/skus/AUTH-1/reservations";
    let (status, _, headers) = call(None, replenish, json!({"quantity": 5})).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(
        call(Some("wrong"), replenish, json!({"quantity": 5}))
            .await
            .0,
        401
    );
    assert_eq!(
        call(Some("c-token"), replenish, json!({"quantity": 5}))
            .await
            .0,
        403
    );
    assert_eq!(
        call(Some("a-token"), replenish, json!({"quantity": 5}))
            .await
            .0,
        403
    );
    assert_eq!(
        call(Some("o-token"), replenish, json!({"quantity": 5}))
            .await
            .0,
        200
    );
    assert_eq!(
        call(Some("a-token"), reserve, json!({"quantity": 1}))
            .await
            .0,
        403
    );
    let (status, body, _) = call(Some("c-token"), reserve, json!({"quantity": 1})).await;
    assert_eq!(status, 201, "{body}");

    let get = |token: &'static str, path: &'static str| {
        let request = server.client.get(server.url(path)).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("a-token", "/v1/skus/AUTH-1/history").await, 200);
    assert_eq!(get("c-token", "/v1/skus/AUTH-1/history").await, 403);
    assert_eq!(get("c-token", "/v1/skus/AUTH-1").await, 200);
    // Operational endpoints stay open for probes and scrapers.
    assert_eq!(
        server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let entries = {
        let response = server
            .client
            .get(server.url("/v1/skus/AUTH-1/history"))
            .bearer_auth("a-token")
            .send()
            .await
            .unwrap();
        read(response).await.1["entries"].clone()
    };
    assert_eq!(entries[0]["principal"], "ops");
    assert_eq!(entries[1]["principal"], "checkout");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_endpoints_answer_and_every_route_is_described() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");

    let response = server
        .client
        .post(server.url("/v1/skus/OPS-1/replenishments"))
        .header("x-correlation-id", "corr-123")
        .json(&json!({"quantity": 3}))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.status(), 200);
    let entries = history(&server, "OPS-1").await;
    assert_eq!(entries[0]["correlation_id"], "corr-123");

    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "ledger_http_requests_total",
        "ledger_http_request_duration_seconds",
        "ledger_commands_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics.contains("route=\"/v1/skus/{sku}/replenishments\""));

    let (status, spec) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().expect("paths");
    let described: std::collections::BTreeSet<String> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    // Every route the server answers must be described, and every described route answered.
    let served = [
        "POST /v1/skus/{sku}/replenishments",
        "POST /v1/skus/{sku}/reservations",
        "POST /v1/skus/{sku}/reservations/{reservation_id}/release",
        "POST /v1/skus/{sku}/reservations/{reservation_id}/confirm",
        "POST /v1/skus/{sku}/adjustments",
        "PUT /v1/skus/{sku}/reorder-point",
        "POST /v1/skus/{sku}/transfers",
        "POST /v1/skus/{sku}/transfers/{transfer_id}/receive",
        "POST /v1/skus/{sku}/transfers/{transfer_id}/cancel",
        "PUT /v1/skus/{sku}/catalogue",
        "PATCH /v1/skus/{sku}/catalogue",
        "POST /v1/skus/{sku}/discontinue",
        "POST /v1/orders/{order_id}/reservations",
        "POST /v1/orders/{order_id}/release",
        "POST /v1/orders/{order_id}/confirm",
        "GET /v1/orders/{order_id}/reservations",
        "GET /v1/skus/{sku}/catalogue",
        "GET /v1/skus/{sku}/transfers/{transfer_id}",
        "GET /v1/locations/{location}/stock",
        "GET /v1/locations/{location}/alerts",
        "GET /v1/transfers",
        "GET /v1/skus/{sku}",
        "GET /v1/skus/{sku}/reservations",
        "GET /v1/skus/{sku}/reservations/{reservation_id}",
        "GET /v1/skus/{sku}/history",
        "GET /v1/skus/{sku}/movements",
        "GET /v1/skus/{sku}/alerts",
        "GET /v1/skus",
        "GET /v1/low-stock",
        "GET /v1/alerts",
        "GET /v1/notifications",
        "GET /v1/projections",
        "GET /v1/anchor",
        "GET /v1/skus/{sku}/anchor-proof",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
    ];
    let served: std::collections::BTreeSet<String> = served.iter().map(|s| s.to_string()).collect();
    assert_eq!(described, served);
    for route in &described {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path
            .replace("{sku}", "OPS-1")
            .replace("{reservation_id}", "none")
            .replace("{order_id}", "none");
        let response = server
            .client
            .request(method.parse().unwrap(), server.url(&path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let (status, body, _) = read(response).await;
        assert_ne!(
            body["type"], "urn:inventory-ledger:problem:not-found",
            "{route} is described but not served ({status})"
        );
    }
    let (status, body) = server.get("/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(body["type"], "urn:inventory-ledger:problem:not-found");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_past_their_ttl_are_expired_by_the_worker() {
    let server = TestServer::start().await;
    server
        .post("/v1/skus/TTL-1/replenishments", json!({"quantity": 5}))
        .await;
    let (status, body, _) = server
        .post(
            "/v1/skus/TTL-1/reservations",
            json!({"reservation_id": "short", "quantity": 2, "ttl_seconds": 1}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let state = server
        .wait_for("/v1/skus/TTL-1", |b| b["reserved"] == 0)
        .await;
    assert_eq!(state["available"], 5);
    let entries = history(&server, "TTL-1").await;
    assert_eq!(
        types(&entries),
        ["StockReplenished", "StockReserved", "ReservationExpired"]
    );
    assert_eq!(entries[2]["principal"], "system:expiry");
    server.stop().await;
}
