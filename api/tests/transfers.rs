//! Transfers, the catalogue and a location's stock list over real HTTP on a real PostgreSQL:
//! units leave a warehouse, are in transit, arrive (short, with a reason) at a store; a
//! cancelled transfer returns them; a discontinued SKU refuses restocking and new holds; a
//! store polls its stock list with `If-None-Match` and pays for a body only when it changed.

mod support;

use serde_json::json;
use support::{read, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_moves_units_between_locations_through_transit() {
    let server = TestServer::start().await;
    let (status, body, _) = server
        .post(
            "/v1/skus/TR-1/replenishments",
            json!({"quantity": 50, "location": "wh-1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let dispatch = json!({
        "transfer_id": "TR-0042",
        "from_location": "wh-1",
        "to_location": "store-12",
        "quantity": 20,
        "reference": "DN-88412",
    });
    let (status, body, headers) = server
        .post("/v1/skus/TR-1/transfers", dispatch.clone())
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["location"], "/v1/skus/TR-1/transfers/TR-0042");
    assert_eq!(body["transfer_id"], "TR-0042");
    assert_eq!(body["in_transit"], 20);
    assert_eq!(body["on_hand"], 30);
    assert_eq!(body["locations"]["store-12"]["in_transit"], 20);
    assert_eq!(body["locations"]["wh-1"]["on_hand"], 30);
    // A retry is answered the same, without a second dispatch.
    let (status, again, _) = server.post("/v1/skus/TR-1/transfers", dispatch).await;
    assert_eq!((status, &again["in_transit"]), (201, &json!(20)), "{again}");

    // In-transit units serve no sale at the store.
    let (status, body, _) = server
        .post(
            "/v1/skus/TR-1/reservations",
            json!({"quantity": 1, "location": "store-12"}),
        )
        .await;
    assert_eq!((status, &body["available"]), (409, &json!(0)), "{body}");

    let (status, body, _) = server
        .post(
            "/v1/skus/TR-1/transfers/TR-0042/receive",
            json!({"quantity_received": 18}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["type"]
        .as_str()
        .unwrap()
        .ends_with(":discrepancy-reason-required"));
    let (status, body, _) = server
        .post(
            "/v1/skus/TR-1/transfers/TR-0042/receive",
            json!({"quantity_received": 18, "discrepancy_reason": "two crushed"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["in_transit"], 0);
    assert_eq!(body["locations"]["store-12"]["on_hand"], 18);
    assert_eq!(body["on_hand"], 48);
    let (status, body) = server.get("/v1/skus/TR-1/transfers/TR-0042").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["status"], &body["quantity_received"]),
        (&json!("received"), &json!(18))
    );
    let (status, _, _) = server
        .post("/v1/skus/TR-1/transfers/TR-0042/cancel", json!({}))
        .await;
    assert_eq!(status, 409, "a received transfer cannot be cancelled");
    let (status, _) = server.get("/v1/skus/TR-1/transfers/NOPE").await;
    assert_eq!(status, 404);

    // A second transfer, cancelled: its units return to the warehouse.
    let (status, body, _) = server
        .post(
            "/v1/skus/TR-1/transfers",
            json!({"transfer_id": "TR-0043", "from_location": "wh-1", "to_location": "store-40", "quantity": 5}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let in_transit = server
        .wait_for("/v1/transfers?location=store-40", |rows| {
            rows.as_array().is_some_and(|r| r.len() == 1)
        })
        .await;
    assert_eq!(in_transit[0]["transfer_id"], "TR-0043");
    assert_eq!(in_transit[0]["status"], "in_transit");
    let (status, body, _) = server
        .post(
            "/v1/skus/TR-1/transfers/TR-0043/cancel",
            json!({"reason": "store closed for refit"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["locations"]["wh-1"]["on_hand"], 30);

    // The history of the store shows the receipt at its own balances.
    let (status, store) = server.get("/v1/skus/TR-1/history?location=store-12").await;
    assert_eq!(status, 200);
    let entries = store["entries"].as_array().unwrap();
    let movements: Vec<&str> = entries
        .iter()
        .map(|e| e["movement"].as_str().unwrap())
        .collect();
    assert_eq!(movements, ["transfer_dispatched", "transfer_received"]);
    assert_eq!(entries[0]["in_transit_after"], 20);
    assert_eq!(entries[0]["on_hand_after"], 0);
    assert_eq!(entries[1]["on_hand_after"], 18);
    assert_eq!(entries[1]["reason"], "two crushed");

    // A transfer needs two locations.
    let (status, body, _) = server
        .post(
            "/v1/skus/TR-1/transfers",
            json!({"from_location": "wh-1", "to_location": "wh-1", "quantity": 1}),
        )
        .await;
    assert_eq!((status, &body["location"]), (409, &json!("wh-1")), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_discontinued_sku_refuses_restocking_and_new_holds_but_keeps_its_history() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/v1/skus/CAT-1/catalogue").await;
    assert_eq!(status, 404, "{body}");
    let client = &server.client;
    let entry = json!({"name": "Trail shoe 42", "unit": "pair", "attributes": {"colour": "blue"}});
    let response = client
        .put(server.url("/v1/skus/CAT-1/catalogue"))
        .json(&entry)
        .send()
        .await
        .unwrap();
    let (status, body, _) = read(response).await;
    assert_eq!(status, 200, "{body}");
    let response = client
        .patch(server.url("/v1/skus/CAT-1/catalogue"))
        .json(&json!({"name": "Trail shoe, size 42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await.0, 200);
    let (status, body) = server.get("/v1/skus/CAT-1/catalogue").await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["name"], &body["unit"], &body["attributes"]["colour"]),
        (
            &json!("Trail shoe, size 42"),
            &json!("pair"),
            &json!("blue")
        )
    );
    let (status, _, _) = server
        .post("/v1/skus/CAT-1/replenishments", json!({"quantity": 5}))
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = server
        .post(
            "/v1/skus/CAT-1/reservations",
            json!({"reservation_id": "r-1", "quantity": 2}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body, _) = server
        .post("/v1/skus/CAT-1/discontinue", json!({"reason": "replaced"}))
        .await;
    assert_eq!(
        (status, &body["discontinued"]),
        (200, &json!(true)),
        "{body}"
    );
    for (path, request) in [
        ("/v1/skus/CAT-1/replenishments", json!({"quantity": 1})),
        (
            "/v1/skus/CAT-1/reservations",
            json!({"reservation_id": "r-2", "quantity": 1}),
        ),
    ] {
        let (status, body, _) = server.post(path, request).await;
        assert_eq!(status, 409, "{path}: {body}");
        assert!(body["type"].as_str().unwrap().ends_with("sku-discontinued"));
    }
    let (status, _, _) = server
        .post("/v1/skus/CAT-1/reservations/r-1/confirm", json!({}))
        .await;
    assert_eq!(status, 200, "an open hold still ships");
    let (_, history) = server.get("/v1/skus/CAT-1/history").await;
    let types: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "SkuRegistered",
            "SkuUpdated",
            "StockReplenished",
            "StockReserved",
            "SkuDiscontinued",
            "ReservationConfirmed"
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_polls_its_stock_list_and_gets_a_body_only_when_it_changed() {
    let server = TestServer::start().await;
    for (sku, quantity) in [("A-1", 3), ("B-1", 10)] {
        let (status, _, _) = server
            .post(
                &format!("/v1/skus/{sku}/replenishments"),
                json!({"quantity": quantity, "location": "store-12"}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let response = server
        .client
        .put(server.url("/v1/skus/A-1/reorder-point"))
        .json(&json!({"reorder_point": 5, "location": "store-12"}))
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await.0, 200);
    let rows = server
        .wait_for("/v1/locations/store-12/stock", |rows| {
            rows.as_array()
                .is_some_and(|r| r.len() == 2 && r[0]["reorder_point"] == 5)
        })
        .await;
    assert_eq!(rows[0]["sku"], "A-1");
    assert_eq!(rows[0]["below_reorder_point"], true);
    let below = server
        .wait_for(
            "/v1/locations/store-12/stock?below_reorder_point=true",
            |rows| rows.as_array().is_some_and(|r| r.len() == 1),
        )
        .await;
    assert_eq!(below[0]["sku"], "A-1");
    // The store's own alert: A-1's 3 units there are below its reorder point there.
    let alerts = server
        .wait_for("/v1/locations/store-12/alerts", |rows| {
            rows.as_array().is_some_and(|r| r.len() == 1)
        })
        .await;
    assert_eq!(
        (
            &alerts[0]["sku"],
            &alerts[0]["status"],
            &alerts[0]["available_at_open"],
            &alerts[0]["reorder_point_at_open"]
        ),
        (&json!("A-1"), &json!("open"), &json!(3), &json!(5))
    );

    let poll = |tag: Option<String>| {
        let request = server
            .client
            .get(server.url("/v1/locations/store-12/stock"));
        let request = match tag {
            Some(tag) => request.header("if-none-match", tag),
            None => request,
        };
        async move { read(request.send().await.unwrap()).await }
    };
    let (status, _, headers) = poll(None).await;
    assert_eq!(status, 200);
    let tag = headers["etag"].to_str().unwrap().to_owned();
    let (status, body, _) = poll(Some(tag.clone())).await;
    assert_eq!((status, body), (304, serde_json::Value::Null));
    // A movement elsewhere leaves the store's list alone; one at the store changes it.
    let (status, _, _) = server
        .post(
            "/v1/skus/A-1/replenishments",
            json!({"quantity": 1, "location": "wh-1"}),
        )
        .await;
    assert_eq!(status, 200);
    server
        .wait_for("/v1/locations/wh-1/stock", |rows| {
            rows.as_array().is_some_and(|r| r.len() == 1)
        })
        .await;
    assert_eq!(poll(Some(tag.clone())).await.0, 304);
    let (status, _, _) = server
        .post(
            "/v1/skus/B-1/reservations",
            json!({"quantity": 1, "location": "store-12"}),
        )
        .await;
    assert_eq!(status, 201);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body, headers) = poll(Some(tag.clone())).await;
        if status == 200 {
            assert_ne!(headers["etag"].to_str().unwrap(), tag);
            assert_eq!(body[1]["reserved"], 1);
            break;
        }
        assert_eq!(status, 304);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the list never changed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, _) = server.get("/v1/locations/store%2012/stock").await;
    assert_eq!(status, 422);

    // Stock arriving at the store closes its alert; the warehouse never had one.
    let (status, _, _) = server
        .post(
            "/v1/skus/A-1/replenishments",
            json!({"quantity": 2, "location": "store-12"}),
        )
        .await;
    assert_eq!(status, 200);
    server
        .wait_for("/v1/locations/store-12/alerts", |rows| {
            rows.as_array().is_some_and(Vec::is_empty)
        })
        .await;
    let (status, none) = server.get("/v1/locations/wh-1/alerts").await;
    assert_eq!((status, none), (200, json!([])));
    server.stop().await;
}
