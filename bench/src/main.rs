//! `bench`: drive the ledger's HTTP API with concurrent connections and print a table of
//! throughput and latency percentiles (and write it as JSON).
//!
//! By default it starts the real API in this process on the embedded default (a private
//! PostgreSQL cluster under a fresh temporary folder, durable commits), so the figures include
//! the application, PostgreSQL and the load generator on the same machine. `--url` drives an
//! API that is already running instead.

use clap::Parser;
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    about = "Benchmark the inventory ledger API over HTTP",
    after_help = "Example:\n  cargo run --release -p bench -- --connections 32 --requests 20000 --skus 10000"
)]
struct Arguments {
    /// Drive this running API instead of starting one in-process on the embedded default.
    #[arg(long)]
    url: Option<String>,
    /// Concurrent connections (each sends its next request when the last one is answered).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Reserve requests per scenario.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Distinct SKUs of the uncontended scenario.
    #[arg(long, default_value_t = 10_000)]
    skus: u64,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results.json")]
    json: std::path::PathBuf,
}

#[derive(Debug, Serialize)]
struct ScenarioResult {
    scenario: String,
    requests: u64,
    ok: u64,
    refused: u64,
    errors: u64,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// Send `requests` requests from `connections` workers; `request(i)` gives the path and body
/// of request `i`. 201 counts as ok, 409 as refused, anything else as an error.
async fn drive(
    name: &str,
    client: &reqwest::Client,
    base: &str,
    connections: usize,
    requests: u64,
    request: Arc<dyn Fn(u64) -> (String, serde_json::Value) + Send + Sync>,
) -> ScenarioResult {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (client, base, next, request) = (
            client.clone(),
            base.to_owned(),
            next.clone(),
            request.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut refused, mut errors) = (0u64, 0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let (path, body) = request(i);
                let sent = Instant::now();
                let response = client
                    .post(format!("{base}{path}"))
                    .json(&body)
                    .send()
                    .await;
                match response {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let _ = r.bytes().await;
                        match status {
                            200 | 201 => ok += 1,
                            409 => refused += 1,
                            _ => errors += 1,
                        }
                    }
                    Err(_) => errors += 1,
                }
                latencies.push(sent.elapsed());
            }
            (latencies, ok, refused, errors)
        }));
    }
    let mut latencies = Vec::new();
    let (mut ok, mut refused, mut errors) = (0, 0, 0);
    for worker in workers {
        let (l, o, r, e) = worker.await.expect("a load worker panicked");
        latencies.extend(l);
        ok += o;
        refused += r;
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    ScenarioResult {
        scenario: name.to_owned(),
        requests,
        ok,
        refused,
        errors,
        seconds,
        per_second: requests as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p90_ms: percentile(&latencies, 0.90),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

async fn replenish(client: &reqwest::Client, base: &str, sku: &str, quantity: u64) {
    let status = client
        .post(format!("{base}/v1/skus/{sku}/replenishments"))
        .json(&json!({"quantity": quantity}))
        .send()
        .await
        .expect("replenish sent")
        .status();
    assert!(status.is_success(), "replenishing {sku} failed: {status}");
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0 / 1024.0)
        })
        .unwrap_or(0.0);
    format!("{cores} cores, {memory_gib:.0} GiB")
}

#[tokio::main]
async fn main() {
    let arguments = Arguments::parse();
    let data_dir =
        std::env::temp_dir().join(format!("ledger-bench-{}", uuid::Uuid::new_v4().simple()));
    let mut running = None;
    let base = match &arguments.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let config = api::config::Config::try_parse_from([
                "api",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data_dir.to_str().expect("a UTF-8 temporary folder"),
                "--pool-size",
                &(arguments.connections + 8).to_string(),
            ])
            .expect("bench configuration");
            let server = api::startup::start(config).await.expect("the API starts");
            let base = format!("http://{}", server.address);
            running = Some(server);
            base
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(arguments.connections)
        .build()
        .expect("an HTTP client");
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (connections, requests, skus) = (arguments.connections, arguments.requests, arguments.skus);
    eprintln!("preparing {skus} SKUs...");
    let stock_per_sku = requests / skus + 1;
    for chunk in (0..skus).collect::<Vec<_>>().chunks(connections.max(1)) {
        let mut batch = Vec::new();
        for &i in chunk {
            let (client, base, sku) = (client.clone(), base.clone(), format!("B{run}-{i}"));
            batch.push(tokio::spawn(async move {
                replenish(&client, &base, &sku, stock_per_sku).await
            }));
        }
        for task in batch {
            task.await.expect("replenish task");
        }
    }
    let mut results = Vec::new();
    let uncontended_run = run.clone();
    results.push(
        drive(
            &format!("reserve, {skus} SKUs"),
            &client,
            &base,
            connections,
            requests,
            Arc::new(move |i| {
                (
                    format!("/v1/skus/B{uncontended_run}-{}/reservations", i % skus),
                    json!({"reservation_id": format!("u{i}"), "quantity": 1}),
                )
            }),
        )
        .await,
    );
    let hot = format!("HOT{run}");
    replenish(&client, &base, &hot, requests).await;
    let hot_path = format!("/v1/skus/{hot}/reservations");
    results.push(
        drive(
            "reserve, one hot SKU",
            &client,
            &base,
            connections,
            requests,
            Arc::new(move |i| {
                (
                    hot_path.clone(),
                    json!({"reservation_id": format!("h{i}"), "quantity": 1}),
                )
            }),
        )
        .await,
    );
    let sellout_stock = requests / 2;
    let sold = format!("SELL{run}");
    replenish(&client, &base, &sold, sellout_stock).await;
    let sold_path = format!("/v1/skus/{sold}/reservations");
    let sellout = drive(
        "reserve, hot SKU selling out",
        &client,
        &base,
        connections,
        requests,
        Arc::new(move |i| {
            (
                sold_path.clone(),
                json!({"reservation_id": format!("s{i}"), "quantity": 1}),
            )
        }),
    )
    .await;
    let oversold = sellout.ok != sellout_stock;
    results.push(sellout);

    println!(
        "machine: {} · profile: {} · connections: {connections} · requests per scenario: {requests}",
        machine(),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    println!(
        "| scenario | requests | ok | 409 | errors | req/s | p50 ms | p90 ms | p99 ms | max ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.scenario,
            r.requests,
            r.ok,
            r.refused,
            r.errors,
            r.per_second,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms
        );
    }
    println!(
        "sell-out: stock {sellout_stock}, successful reservations {} — {}",
        results[2].ok,
        if oversold {
            "MISMATCH"
        } else {
            "exactly the stock, zero oversell"
        }
    );
    let document = json!({
        "machine": machine(),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "connections": connections,
        "results": results,
    });
    std::fs::write(
        &arguments.json,
        serde_json::to_string_pretty(&document).expect("JSON"),
    )
    .expect("the results file is writable");
    if let Some(server) = running {
        server.stop().await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    if oversold {
        std::process::exit(1);
    }
}
