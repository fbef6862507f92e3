//! The CLI beside a running API: what auditors read with `ledger-replay history` is exactly
//! what the API's history endpoint serves, and a rebuild swaps read models in while the API
//! keeps answering from them.

use clap::Parser;
use ledger_api::config::Config;
use ledger_tests::postgres::TestDatabase;
use serde_json::{json, Value};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest the test waits for the read models to show what was written.
const CATCH_UP_DEADLINE_MS: u64 = 30_000;

async fn run_binary(arguments: &[&str], database_url: &str) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ledger-replay"));
    command
        .args(arguments)
        .env("DATABASE_URL", database_url)
        .env_remove("EVENTSTORE_URL")
        .env_remove("LEDGER_DATA_DIR");
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .unwrap()
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> u16 {
    client
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_equals_the_api_and_a_rebuild_keeps_the_api_serving() {
    let database = TestDatabase::create().await;
    let url = database.url();
    let config =
        Config::try_parse_from(["api", "--listen", "127.0.0.1:0", "--database-url", &url]).unwrap();
    let running = ledger_api::startup::start(config)
        .await
        .expect("the API starts");
    let base = format!("http://{}", running.address);
    let client = reqwest::Client::new();

    let sku_url = |path: &str| format!("{base}/v1/skus/AUD-1{path}");
    assert_eq!(
        post(&client, sku_url("/replenishments"), json!({"quantity": 50})).await,
        200
    );
    for i in 0..5 {
        let body = json!({"reservation_id": format!("r{i}"), "quantity": 3});
        assert_eq!(post(&client, sku_url("/reservations"), body).await, 201);
    }
    assert_eq!(
        post(
            &client,
            sku_url("/reservations/r1/release"),
            json!({"reason": "cart, abandoned"})
        )
        .await,
        200
    );
    assert_eq!(
        post(&client, sku_url("/reservations/r2/confirm"), json!({})).await,
        200
    );
    let body = json!({"delta": -4, "reason": "cycle count"});
    assert_eq!(post(&client, sku_url("/adjustments"), body).await, 200);

    let from_api: Value = client
        .get(sku_url("/history?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let output = run_binary(&["history", "AUD-1", "--format", "json"], &url).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let from_cli: Value = serde_json::from_slice(&output.stdout).expect("history JSON parses");
    assert_eq!(from_cli["entries"], from_api["entries"]);
    assert_eq!(from_api["entries"].as_array().unwrap().len(), 9);

    // Rebuild every projection while an appender writes through the API and a reader polls a
    // read-model endpoint: every read must succeed throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (client, base) = (client.clone(), base.clone());
        let (stop, failures, reads) = (stop.clone(), failures.clone(), reads.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let response = client
                    .get(format!("{base}/v1/skus/AUD-1/movements?limit=1000"))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => reads.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let appender = {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            // Bounded so that one page of movements (1,000 rows) shows them all afterwards.
            while !stop.load(Ordering::Relaxed) && sent < 900 {
                let status = post(
                    &client,
                    format!("{base}/v1/skus/AUD-2/replenishments"),
                    json!({"quantity": 1}),
                )
                .await;
                assert_eq!(status, 200);
                sent += 1;
            }
            sent
        })
    };
    let output = run_binary(&["rebuild", "--all", "--quiet"], &url).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stop.store(true, Ordering::Relaxed);
    let sent = appender.await.unwrap();
    reader.await.unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "the API failed reads during the rebuild"
    );
    assert!(reads.load(Ordering::Relaxed) > 0);

    // After the swap the projectors carry on: the appended stock shows up in the read model.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(CATCH_UP_DEADLINE_MS);
    loop {
        let rows: Value = client
            .get(format!("{base}/v1/skus/AUD-2/movements?limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if rows.as_array().map(|r| r.len() as u64) == Some(sent) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "read model stuck at {rows}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = run_binary(&["verify", "--all"], &url).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    running.stop().await;
}
