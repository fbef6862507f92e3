//! The published contract against the served API: `/openapi.json` states the rules the server
//! enforces and every refusal it can give, and refusals that axum would answer in plain text
//! (query strings, unknown methods) are problem documents like the rest. The real server on
//! port 0 over a fresh PostgreSQL database, real HTTP.

mod support;

use ledger_api::contract::{identifier_pattern, if_match_pattern};
use ledger_domain::{Sku, QUANTITY_MAX, SKU_LENGTH_MAX};
use serde_json::{json, Value};
use support::{read, TestServer};

const PROBLEM: &str = "application/problem+json";

fn content_type(headers: &reqwest::header::HeaderMap) -> &str {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn get_with(server: &TestServer, path: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    read(server.client.get(server.url(path)).send().await.unwrap()).await
}

async fn description(server: &TestServer) -> Value {
    let (status, spec) = server.get("/openapi.json").await;
    assert_eq!(status, 200, "{spec}");
    spec
}

/// Every `$ref` in `value`, with where it was found.
fn references<'a>(value: &'a Value, at: String, found: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                match (key.as_str(), member) {
                    ("$ref", Value::String(target)) => found.push((at.clone(), target)),
                    _ => references(member, format!("{at}/{key}"), found),
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                references(item, format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

/// Every operation of the description: method, path, operation object.
fn operations(spec: &Value) -> Vec<(String, String, &Value)> {
    let mut all = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            all.push((method.to_uppercase(), path.clone(), operation));
        }
    }
    all
}

fn parameter<'a>(operation: &'a Value, name: &str) -> Option<&'a Value> {
    operation["parameters"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_string_refusals_are_problem_documents_naming_the_parameter() {
    let server = TestServer::start().await;
    for (path, field) in [
        ("/v1/skus/Q-1/reservations?limit=abc", "limit"),
        ("/v1/skus/Q-1/reservations?limit=-1", "limit"),
        ("/v1/skus/Q-1/reservations?status=lost", "status"),
        ("/v1/skus/Q-1/history?after_version=1.5", "after_version"),
        ("/v1/skus/Q-1/history?from=yesterday", "from"),
        ("/v1/notifications?after_id=x", "after_id"),
        ("/v1/low-stock?bogus=1", "bogus"),
    ] {
        let (status, body, headers) = get_with(&server, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(content_type(&headers), PROBLEM, "{path}");
        assert_eq!(
            body["type"], "urn:inventory-ledger:problem:invalid-query",
            "{path}: {body}"
        );
        assert_eq!(body["field"], field, "{path}: {body}");
        assert_eq!(body["status"], 400, "{path}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unserved_method_is_a_problem_document_with_allow() {
    let server = TestServer::start().await;
    let response = server
        .client
        .delete(server.url("/v1/skus/M-1"))
        .send()
        .await
        .unwrap();
    let (status, body, headers) = read(response).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(content_type(&headers), PROBLEM);
    assert_eq!(
        body["type"],
        "urn:inventory-ledger:problem:method-not-allowed"
    );
    let allow = headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET"), "{allow}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_reference_in_the_description_resolves() {
    let server = TestServer::start().await;
    let spec = description(&server).await;
    let mut found = Vec::new();
    references(&spec, String::new(), &mut found);
    // The problem schema and responses are referenced from every operation under /v1.
    assert!(found.len() > 100, "only {} references", found.len());
    for wanted in [
        "#/components/schemas/Problem",
        "#/components/responses/BadRequest",
        "#/components/responses/Unauthorized",
        "#/components/schemas/CommandResultBody",
    ] {
        assert!(
            found.iter().any(|(_, target)| *target == wanted),
            "{wanted} is never referenced"
        );
    }
    for (at, target) in &found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {target} is not local"));
        assert!(
            spec.pointer(pointer).is_some(),
            "{at}: {target} does not resolve"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_description_states_the_rules_the_server_enforces() {
    let server = TestServer::start().await;
    let spec = description(&server).await;
    let all = operations(&spec);
    let sku_pattern = identifier_pattern(Sku::CHARACTERS_EXTRA, SKU_LENGTH_MAX);
    let mut limits = 0;
    for (method, path, operation) in &all {
        let route = format!("{method} {path}");
        if path.contains("{sku}") {
            let sku = parameter(operation, "sku").expect("the sku parameter");
            assert_eq!(sku["required"], true, "{route}");
            assert_eq!(sku["schema"]["pattern"], sku_pattern.as_str(), "{route}");
            assert_eq!(sku["schema"]["maxLength"], SKU_LENGTH_MAX, "{route}");
        }
        if let Some(limit) = parameter(operation, "limit") {
            limits += 1;
            assert_eq!(limit["schema"]["minimum"], 1, "{route}");
            assert_eq!(limit["schema"]["maximum"], 1000, "{route}");
        }
        for (status, response) in operation["responses"].as_object().expect("responses") {
            // A success, or "not modified" (which has no body at all).
            if status.starts_with('2') || status == "304" {
                continue;
            }
            // Every refusal is a problem document (except readiness's own 503 body).
            let response = match response["$ref"].as_str() {
                Some(target) => spec.pointer(&target[1..]).expect("resolves"),
                None => response,
            };
            if path == "/readyz" && status == "503" {
                continue;
            }
            assert_eq!(
                response["content"][PROBLEM]["schema"]["$ref"], "#/components/schemas/Problem",
                "{route} {status}"
            );
        }
        if path.starts_with("/v1/") {
            for status in ["401", "403", "429", "500", "503"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{route} does not document {status}"
                );
            }
            assert!(operation.get("security").is_none(), "{route} opts out");
        } else {
            assert_eq!(operation["security"], json!([{}]), "{route} needs no token");
        }
        if method == "POST" || method == "PUT" {
            let body = &operation["requestBody"];
            assert_eq!(body["required"], true, "{route}");
            let types: Vec<&String> = body["content"].as_object().unwrap().keys().collect();
            assert_eq!(types, ["application/json"], "{route}");
            for status in ["400", "412", "413", "415", "422"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{route} does not document {status}"
                );
            }
            if path.starts_with("/v1/orders/") {
                // An order spans several SKUs: there is no one version for If-Match to name
                // (the server refuses the header there).
                assert!(parameter(operation, "If-Match").is_none(), "{route}");
                continue;
            }
            let if_match = parameter(operation, "If-Match").expect("If-Match");
            assert_eq!(if_match["in"], "header", "{route}");
            assert_eq!(if_match["required"], false, "{route}");
            assert_eq!(
                if_match["schema"]["pattern"],
                if_match_pattern().as_str(),
                "{route}"
            );
        }
    }
    assert_eq!(limits, 12, "every paged query has a limit");
    let bearer = &spec["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&bearer["type"], &bearer["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    assert_eq!(spec["security"], json!([{"bearer": []}]));
    let quantity = &spec["components"]["schemas"]["ReplenishRequest"]["properties"]["quantity"];
    assert_eq!(quantity["minimum"], 1);
    assert_eq!(quantity["maximum"], QUANTITY_MAX);
    let problem = &spec["components"]["schemas"]["Problem"];
    assert_eq!(
        problem["required"],
        json!(["type", "title", "status", "detail"])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_number_with_an_integral_value_is_an_integer() {
    // JSON Schema counts 2.0 and 1e3 as integers, so the server does too.
    let server = TestServer::start().await;
    let (status, body, _) = server
        .post("/v1/skus/N-1/replenishments", json!({"quantity": 2.0}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["on_hand"], 2);
    let response = server
        .client
        .put(server.url("/v1/skus/N-1/reorder-point"))
        .header("content-type", "application/json")
        .body(r#"{"reorder_point": 1e3}"#)
        .send()
        .await
        .unwrap();
    let (status, body, _) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reorder_point"], 1000);
    let (status, body, _) = server
        .post("/v1/skus/N-1/replenishments", json!({"quantity": 2.5}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "quantity");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_match_is_read_only_as_an_entity_tag() {
    let server = TestServer::start().await;
    let (status, body, _) = server
        .post("/v1/skus/IM-1/replenishments", json!({"quantity": 5}))
        .await;
    assert_eq!(status, 200, "{body}");
    let replenish = |tag: &'static str| {
        server
            .client
            .post(server.url("/v1/skus/IM-1/replenishments"))
            .header("if-match", tag)
            .json(&json!({"quantity": 1}))
            .send()
    };
    // The SKU is at version 0: these name it, but not as the grammar says.
    for refused in ["0", "\"00\"", "\"+0\"", "\"0", "0\""] {
        let (status, body, headers) = read(replenish(refused).await.unwrap()).await;
        assert_eq!(status, 400, "{refused}: {body}");
        assert_eq!(content_type(&headers), PROBLEM);
        assert_eq!(
            body["type"], "urn:inventory-ledger:problem:invalid-if-match",
            "{refused}"
        );
    }
    let (status, body, _) = read(replenish("W/\"0\"").await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = read(replenish("\"0\"").await.unwrap()).await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["current_version"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_must_be_a_json_object() {
    // Serde reads a struct from an array of its fields too; the contract says object.
    let server = TestServer::start().await;
    let (status, body, _) = server
        .post("/v1/skus/B-1/replenishments", json!([5, null]))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["type"],
        "urn:inventory-ledger:problem:validation-failed"
    );
    let (status, body, _) = server
        .post("/v1/skus/B-1/replenishments", json!({"quantity": 5}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = server
        .post(
            "/v1/skus/B-1/reservations",
            json!({"reservation_id": "r1", "quantity": 1}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for array in [json!([]), json!([null])] {
        let (status, body, headers) = server
            .post("/v1/skus/B-1/reservations/r1/release", array.clone())
            .await;
        assert_eq!(status, 422, "{array}: {body}");
        assert_eq!(content_type(&headers), PROBLEM);
    }
    let (status, body, _) = server
        .post("/v1/skus/B-1/reservations/r1/confirm", json!([]))
        .await;
    assert_eq!(status, 422, "{body}");
    let state = server.get("/v1/skus/B-1").await.1;
    assert_eq!(state["reserved"], 1, "{state}");
    server.stop().await;
}
