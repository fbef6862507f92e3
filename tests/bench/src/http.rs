//! Closed-loop HTTP load: a fixed number of connections, each sending its next request as soon
//! as the last one is answered. Scenarios 1 and 2 and the sell-out run on it.

use crate::stats::{max_ms, percentile_ms};
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Builds request `i` of a scenario: its path and JSON body.
pub type RequestFor = Arc<dyn Fn(u64) -> (String, serde_json::Value) + Send + Sync>;

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub requests: u64,
    pub ok: u64,
    pub refused: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl ScenarioResult {
    /// Summarise one scenario from its counts and its (unsorted) latencies.
    pub fn new(
        scenario: String,
        counts: Counts,
        seconds: f64,
        mut latencies: Vec<Duration>,
    ) -> Self {
        latencies.sort();
        let requests = counts.ok + counts.refused + counts.errors;
        Self {
            scenario,
            requests,
            ok: counts.ok,
            refused: counts.refused,
            errors: counts.errors,
            seconds,
            per_second: requests as f64 / seconds,
            p50_ms: percentile_ms(&latencies, 0.50),
            p90_ms: percentile_ms(&latencies, 0.90),
            p99_ms: percentile_ms(&latencies, 0.99),
            max_ms: max_ms(&latencies),
        }
    }
}

/// Answers by kind: 200/201 ok, 409 refused (insufficient stock), anything else an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub ok: u64,
    pub refused: u64,
    pub errors: u64,
}

impl Counts {
    pub fn count(&mut self, status: Option<u16>) {
        match status {
            Some(200 | 201) => self.ok += 1,
            Some(409) => self.refused += 1,
            _ => self.errors += 1,
        }
    }

    pub fn add(&mut self, other: Counts) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.errors += other.errors;
    }
}

/// Send `requests` requests from `connections` workers; `request(i)` gives the path and body
/// of request `i`.
pub async fn drive(
    name: &str,
    client: &reqwest::Client,
    base: &str,
    connections: usize,
    requests: u64,
    request: RequestFor,
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
            let mut counts = Counts::default();
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
                let status = match response {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        Some(status)
                    }
                    Err(_) => None,
                };
                counts.count(status);
                latencies.push(sent.elapsed());
            }
            (latencies, counts)
        }));
    }
    let mut latencies = Vec::new();
    let mut counts = Counts::default();
    for worker in workers {
        let (worker_latencies, worker_counts) = worker.await.expect("a load worker panicked");
        latencies.extend(worker_latencies);
        counts.add(worker_counts);
    }
    ScenarioResult::new(
        name.to_owned(),
        counts,
        started.elapsed().as_secs_f64(),
        latencies,
    )
}

pub async fn replenish(client: &reqwest::Client, base: &str, sku: &str, quantity: u64) {
    let status = client
        .post(format!("{base}/v1/skus/{sku}/replenishments"))
        .json(&json!({"quantity": quantity}))
        .send()
        .await
        .expect("replenish sent")
        .status();
    assert!(status.is_success(), "replenishing {sku} failed: {status}");
}

/// Replenish SKUs `<prefix>0` to `<prefix><count - 1>` with `stock` units each, `connections`
/// at a time.
pub async fn prepare_skus(
    client: &reqwest::Client,
    base: &str,
    prefix: &str,
    count: u64,
    stock: u64,
    connections: usize,
) {
    let chunk = connections.max(1) as u64;
    let mut first = 0;
    while first < count {
        let mut batch = Vec::new();
        for i in first..(first + chunk).min(count) {
            let (client, base, sku) = (client.clone(), base.to_owned(), format!("{prefix}{i}"));
            batch.push(tokio::spawn(async move {
                replenish(&client, &base, &sku, stock).await
            }));
        }
        for task in batch {
            task.await.expect("replenish task");
        }
        first += chunk;
    }
}
