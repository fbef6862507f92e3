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

/// GET with a bearer token; the status and the JSON body.
async fn get_as(client: &reqwest::Client, url: String, token: &str) -> (u16, Value) {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `verify-proof` of `proof` (saved to a file) against the anchor file `anchor`.
async fn verify_proof(folder: &std::path::Path, proof: &Value, anchor: &std::path::Path) -> Output {
    let file = folder.join(format!("proof-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, proof.to_string()).unwrap();
    let arguments = [
        "verify-proof",
        "--proof",
        file.to_str().unwrap(),
        "--anchor",
        anchor.to_str().unwrap(),
    ];
    // Offline: no store is named, and none is needed.
    run_binary(&arguments, "postgres://nobody@127.0.0.1:1/none").await
}

/// The auditor's procedure over real HTTP: the API's anchor is the CLI's, a SKU's proof at a
/// kept anchor's position checks against it offline, and after a forged chain (an edit with
/// every later hash recomputed) the proof no longer leads to the kept root.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_auditor_checks_a_skus_proof_from_the_api_against_a_kept_anchor() {
    let database = TestDatabase::create().await;
    let url = database.url();
    let tokens = format!(
        "auditor:{}:audit-1,operator:{}:ops-1",
        ledger_api::auth::hash_token("auditor-secret"),
        ledger_api::auth::hash_token("operator-secret")
    );
    let config = Config::try_parse_from([
        "api",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--tokens",
        &tokens,
    ])
    .unwrap();
    let running = ledger_api::startup::start(config)
        .await
        .expect("the API starts");
    let base = format!("http://{}", running.address);
    let client = reqwest::Client::new();
    let replenish = |sku: &'static str, quantity: u64| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let status = client
                .post(format!("{base}/v1/skus/{sku}/replenishments"))
                .bearer_auth("operator-secret")
                .json(&json!({"quantity": quantity}))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
    };
    for (sku, quantity) in [("PRF-1", 5), ("PRF-2", 6), ("PRF-3", 7), ("PRF-2", 8)] {
        replenish(sku, quantity).await;
    }

    // Only the auditor (and admin) may ask.
    let (status, _) = get_as(&client, format!("{base}/v1/anchor"), "operator-secret").await;
    assert_eq!(status, 403);

    // The API's anchor is the CLI's (the same log, the same root).
    let folder = std::env::temp_dir().join(format!("proof-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder).unwrap();
    let kept = folder.join("anchor.json");
    let output = run_binary(&["anchor", "--output", kept.to_str().unwrap()], &url).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let from_cli: Value = serde_json::from_slice(&output.stdout).unwrap();
    let (status, from_api) = get_as(&client, format!("{base}/v1/anchor"), "auditor-secret").await;
    assert_eq!(status, 200, "{from_api}");
    for field in ["format", "log_position", "streams", "events", "merkle_root"] {
        assert_eq!(from_api[field], from_cli[field], "{field}");
    }
    assert_eq!(
        (from_api["streams"].as_u64(), from_api["events"].as_u64()),
        (Some(3), Some(4))
    );

    // The log moves on; a proof at the kept anchor's position still checks against it.
    replenish("PRF-2", 9).await;
    replenish("PRF-4", 1).await;
    let position = format!(
        "{}/{}",
        from_cli["log_position"]["commit"], from_cli["log_position"]["prepare"]
    );
    let proof_url = |sku: &str, at: Option<&str>| match at {
        Some(at) => format!("{base}/v1/skus/{sku}/anchor-proof?log_position={at}"),
        None => format!("{base}/v1/skus/{sku}/anchor-proof"),
    };
    let (status, proof) = get_as(
        &client,
        proof_url("PRF-2", Some(&position)),
        "auditor-secret",
    )
    .await;
    assert_eq!(status, 200, "{proof}");
    assert_eq!(
        (proof["stream"].as_str(), proof["version"].as_u64()),
        (Some("sku-PRF-2"), Some(1))
    );
    assert_eq!(proof["anchor"]["merkle_root"], from_cli["merkle_root"]);
    assert!(!proof["path"].as_array().unwrap().is_empty());
    let output = verify_proof(&folder, &proof, &kept).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    // The stream's head hash in the proof is the hash history shows for that version.
    let (_, history) = get_as(
        &client,
        format!("{base}/v1/skus/PRF-2/history"),
        "auditor-secret",
    )
    .await;
    assert_eq!(history["entries"][1]["hash"], proof["head_hash"]);

    // A proof of the log now is for another position than the kept anchor's.
    let (status, now) = get_as(&client, proof_url("PRF-2", None), "auditor-secret").await;
    assert_eq!((status, now["version"].as_u64()), (200, Some(2)));
    let output = verify_proof(&folder, &now, &kept).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("position"));

    // Refusals: a SKU not in the log then, a position past the head, one that does not parse.
    let (status, body) = get_as(
        &client,
        proof_url("PRF-4", Some(&position)),
        "auditor-secret",
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("urn:inventory-ledger:problem:sku-not-in-log"))
    );
    let (status, body) = get_as(
        &client,
        proof_url("PRF-1", Some("999999999999/0")),
        "auditor-secret",
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (409, Some("urn:inventory-ledger:problem:log-position-ahead"))
    );
    let (status, _) = get_as(&client, proof_url("PRF-1", Some("12-3")), "auditor-secret").await;
    assert_eq!(status, 400);

    // A forgery before the anchor: PRF-3's quantity edited and its chain recomputed. PRF-2's
    // proof at the kept position now leads to another root.
    let ledger_database = database.database(2);
    let client_sql = ledger_database.pool().get().await.unwrap();
    client_sql
        .batch_execute(
            "UPDATE event_store.events SET data = jsonb_set(data, '{quantity}', '70') \
             WHERE stream = 'sku-PRF-3' AND version = 0",
        )
        .await
        .unwrap();
    let store = ledger_postgres::PostgresStore::open(ledger_database.clone())
        .await
        .unwrap();
    let mut previous = ledger_domain::EventHash::GENESIS;
    for event in ledger_application::EventStore::read_stream(&store, "sku-PRF-3", 0, 100)
        .await
        .unwrap()
    {
        let hash = ledger_application::chain::link_recorded(&previous, &event);
        client_sql
            .execute(
                "UPDATE event_store.events SET hash = $1 WHERE event_id = $2",
                &[&hash.as_bytes().as_slice(), &event.event_id],
            )
            .await
            .unwrap();
        previous = hash;
    }
    let (status, forged) = get_as(
        &client,
        proof_url("PRF-2", Some(&position)),
        "auditor-secret",
    )
    .await;
    assert_eq!(status, 200, "{forged}");
    assert_ne!(forged["anchor"]["merkle_root"], from_cli["merkle_root"]);
    let output = verify_proof(&folder, &forged, &kept).await;
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("root"), "{stdout}");
    std::fs::remove_dir_all(&folder).unwrap();
    running.stop().await;
}
