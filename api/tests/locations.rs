//! Stock per location over real HTTP on a real PostgreSQL: a store's last unit is sold once,
//! however much the warehouse has; a reserve may let the ledger choose where; the SKU shows
//! its balances per location beside the totals.

mod support;

use serde_json::json;
use support::{read, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_unit_of_a_store_is_sold_once_while_the_warehouse_has_plenty() {
    let server = TestServer::start().await;
    for (location, quantity) in [("store-12", 1), ("wh-1", 500)] {
        let (status, body, _) = server
            .post(
                "/v1/skus/LOC-1/replenishments",
                json!({"quantity": quantity, "location": location}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut buyers = Vec::new();
    for buyer in 0..50 {
        let client = server.client.clone();
        let url = server.url("/v1/skus/LOC-1/reservations");
        buyers.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({
                    "reservation_id": format!("buyer-{buyer}"),
                    "quantity": 1,
                    "location": "store-12",
                }))
                .send()
                .await
                .unwrap();
            read(response).await
        }));
    }
    let (mut created, mut refused) = (0, 0);
    for buyer in buyers {
        let (status, body, _) = buyer.await.unwrap();
        match status {
            201 => {
                assert_eq!(body["location"], "store-12");
                created += 1;
            }
            409 => {
                assert_eq!(body["available"], 0);
                assert_eq!(body["location"], "store-12");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, refused), (1, 49));

    // The store's own history: its movements only, with its own balances.
    let (status, store) = server.get("/v1/skus/LOC-1/history?location=store-12").await;
    assert_eq!(status, 200, "{store}");
    let entries = store["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{store}");
    assert_eq!(
        (&entries[1]["on_hand_after"], &entries[1]["reserved_after"]),
        (&json!(1), &json!(1))
    );
    let (status, _) = server
        .get("/v1/skus/LOC-1/history?location=store%2012")
        .await;
    assert_eq!(status, 400);

    let (status, sku) = server.get("/v1/skus/LOC-1").await;
    assert_eq!(status, 200);
    assert_eq!(
        (sku["on_hand"].as_u64(), sku["reserved"].as_u64()),
        (Some(501), Some(1))
    );
    assert_eq!(sku["locations"]["store-12"]["available"], 0);
    assert_eq!(sku["locations"]["wh-1"]["available"], 500);
    assert_eq!(sku["locations"]["wh-1"]["reserved"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_may_let_the_ledger_choose_the_location() {
    let server = TestServer::start().await;
    for (location, quantity) in [("store-12", 2), ("store-40", 9), ("wh-1", 30)] {
        server
            .post(
                "/v1/skus/LOC-2/replenishments",
                json!({"quantity": quantity, "location": location}),
            )
            .await;
    }
    let reserve = |body| server.post("/v1/skus/LOC-2/reservations", body);
    let (status, body, _) = reserve(json!({
        "quantity": 5,
        "allocation": {"policy": "preference", "locations": ["store-12", "store-40", "wh-1"]},
    }))
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["location"], "store-40");

    let (status, body, _) = reserve(json!({
        "quantity": 3, "allocation": {"policy": "most_available"},
    }))
    .await;
    assert_eq!((status, &body["location"]), (201, &json!("wh-1")), "{body}");

    let (status, body, _) = reserve(json!({
        "quantity": 31,
        "allocation": {"policy": "preference", "locations": ["store-12", "wh-1"]},
    }))
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["available"], 27,
        "the most any one listed location has"
    );
    assert!(body.get("location").is_none(), "{body}");

    for refused in [
        json!({"quantity": 1, "location": "wh-1", "allocation": {"policy": "most_available"}}),
        json!({"quantity": 1, "allocation": {"policy": "preference", "locations": []}}),
        json!({"quantity": 1, "allocation": {"policy": "preference", "locations": ["a", "a"]}}),
        json!({"quantity": 1, "allocation": {"policy": "nearest"}}),
        json!({"quantity": 1, "location": "store 12"}),
    ] {
        let (status, body, _) = reserve(refused.clone()).await;
        assert_eq!(status, 422, "{refused} → {body}");
        assert_eq!(
            body["type"],
            "urn:inventory-ledger:problem:validation-failed"
        );
    }

    // Nothing else moved: the refused requests appended nothing.
    let (_, sku) = server.get("/v1/skus/LOC-2").await;
    assert_eq!(sku["reserved"], 8);
    assert_eq!(sku["version"], 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_never_names_a_location_sees_the_default_one() {
    let server = TestServer::start().await;
    server
        .post("/v1/skus/PLAIN-1/replenishments", json!({"quantity": 7}))
        .await;
    let (status, body, headers) = server
        .post(
            "/v1/skus/PLAIN-1/reservations",
            json!({"reservation_id": "r-1", "quantity": 2}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["location"], "default");
    assert_eq!(body["available"], 5);
    // The reserve's `Location` names a resource that is there at once, read from the stream.
    let path = headers["location"].to_str().unwrap().to_owned();
    assert_eq!(path, "/v1/skus/PLAIN-1/reservations/r-1");
    let (status, held) = server.get(&path).await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(
        (&held["status"], &held["quantity"], &held["location"]),
        (&json!("open"), &json!(2), &json!("default"))
    );
    let (status, missing) = server.get("/v1/skus/PLAIN-1/reservations/r-9").await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(
        missing["type"],
        "urn:inventory-ledger:problem:reservation-not-found"
    );
    let (_, sku) = server.get("/v1/skus/PLAIN-1").await;
    assert_eq!(sku["locations"]["default"]["on_hand"], 7);
    server.stop().await;
}
