//! Closed-loop HTTP load: a fixed number of keep-alive connections, each sending its next
//! request as soon as the last one is answered, for a time, a request count, or until told to
//! stop. Every timed window also measures the CPU the API, PostgreSQL and the bench spent.

use crate::cpu::{self, CpuUsage, Processes};
use crate::http::{Connection, Endpoint};
use crate::stats::{max_ms, percentile_ms};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Builds request `i` of a scenario: its path and JSON body.
pub type RequestFor = Arc<dyn Fn(u64) -> (String, String) + Send + Sync>;

/// After a failed request a worker opens a new connection; when that fails too it waits this
/// long before trying again, so an API that went away is not hammered with connects.
const RECONNECT_PAUSE_MS: u64 = 100;

/// How long a closed loop runs.
#[derive(Debug, Clone)]
pub enum Length {
    /// Send until this much time has passed since the clock started.
    For(Duration),
    /// Send exactly this many requests.
    Requests(u64),
    /// Send until `stop` is set, or `longest` has passed (so a forgotten flag cannot keep the
    /// load running).
    UntilStopped {
        stop: Arc<AtomicBool>,
        longest: Duration,
    },
}

impl Length {
    fn sends(&self, request: u64, started: Instant) -> bool {
        match self {
            Self::For(duration) => started.elapsed() < *duration,
            Self::Requests(count) => request < *count,
            Self::UntilStopped { stop, longest } => {
                !stop.load(Ordering::Relaxed) && started.elapsed() < *longest
            }
        }
    }
}

impl From<crate::cli::Measure> for Length {
    fn from(measure: crate::cli::Measure) -> Self {
        match measure {
            crate::cli::Measure::For(duration) => Self::For(duration),
            crate::cli::Measure::Requests(count) => Self::Requests(count),
        }
    }
}

/// One closed-loop run.
pub struct ClosedLoop {
    pub name: String,
    pub endpoint: Arc<Endpoint>,
    pub connections: usize,
    pub length: Length,
    pub request: RequestFor,
}

/// Answers by kind: 200/201 ok, 409 refused (insufficient stock), anything else an error.
#[derive(Debug, Clone, Copy, Default, Serialize)]
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

    pub fn total(&self) -> u64 {
        self.ok + self.refused + self.errors
    }
}

/// What a timed window measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub connections: usize,
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
    pub cpu: CpuUsage,
    pub load_average_1min_before: Option<f64>,
    pub load_average_1min_after: Option<f64>,
}

/// The state of the machine when a window opened.
pub struct Window {
    started: Instant,
    cpu: cpu::CpuSample,
    load_average_1min: Option<f64>,
    processes: Processes,
}

impl Window {
    pub fn open(processes: Processes) -> Self {
        let load_average_1min = cpu::load_average_1min();
        Self {
            cpu: processes.sample(),
            started: Instant::now(),
            load_average_1min,
            processes,
        }
    }

    /// Close the window over these answers and their (unsorted) latencies.
    pub fn close(
        self,
        scenario: String,
        connections: usize,
        counts: Counts,
        mut latencies: Vec<Duration>,
    ) -> ScenarioResult {
        let seconds = self.started.elapsed().as_secs_f64();
        let requests = counts.total();
        let cpu = self.cpu.until(&self.processes.sample(), requests);
        latencies.sort();
        ScenarioResult {
            scenario,
            connections,
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
            cpu,
            load_average_1min_before: self.load_average_1min,
            load_average_1min_after: cpu::load_average_1min(),
        }
    }
}

/// Run `plan`: open every connection first, then start the clock and the CPU window, and end
/// both when the last answer has arrived.
pub async fn drive(plan: ClosedLoop, processes: Processes) -> Result<ScenarioResult, String> {
    let mut connections = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections.max(1) {
        connections.push(Connection::open(&plan.endpoint).await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let length = Arc::new(plan.length);
    let window = Window::open(processes);
    let started = Instant::now();
    let mut workers = Vec::with_capacity(connections.len());
    for connection in connections {
        workers.push(tokio::spawn(work(
            connection,
            plan.endpoint.clone(),
            next.clone(),
            length.clone(),
            started,
            plan.request.clone(),
        )));
    }
    let mut latencies = Vec::new();
    let mut counts = Counts::default();
    for worker in workers {
        let (worker_latencies, worker_counts) = worker.await.expect("a load worker panicked");
        latencies.extend(worker_latencies);
        counts.add(worker_counts);
    }
    Ok(window.close(plan.name, plan.connections, counts, latencies))
}

/// One connection's loop: take the next request number, send it, wait for the answer.
async fn work(
    mut connection: Connection,
    endpoint: Arc<Endpoint>,
    next: Arc<AtomicU64>,
    length: Arc<Length>,
    started: Instant,
    request: RequestFor,
) -> (Vec<Duration>, Counts) {
    let mut latencies = Vec::new();
    let mut counts = Counts::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if !length.sends(i, started) {
            break;
        }
        let (path, body) = request(i);
        let sent = Instant::now();
        let status = match connection.post(&path, body).await {
            Ok(answer) => Some(answer.status),
            Err(_) => None,
        };
        latencies.push(sent.elapsed());
        counts.count(status);
        if status.is_none() {
            match reconnect(&endpoint, &length, started).await {
                Some(fresh) => connection = fresh,
                None => break,
            }
        }
    }
    (latencies, counts)
}

/// A new connection after a failed request, retried while the loop would still send.
async fn reconnect(
    endpoint: &Arc<Endpoint>,
    length: &Length,
    started: Instant,
) -> Option<Connection> {
    loop {
        if let Ok(connection) = Connection::open(endpoint).await {
            return Some(connection);
        }
        tokio::time::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)).await;
        // A request-count loop has no clock; it gives up after one failed reconnect.
        if matches!(length, Length::Requests(_)) || !length.sends(0, started) {
            return None;
        }
    }
}

/// Send `request` for `duration` before a scenario's clock starts, so connections, caches and
/// the SKUs' writers are warm; nothing is counted.
pub async fn warm_up(
    name: &str,
    endpoint: &Arc<Endpoint>,
    connections: usize,
    duration: Duration,
    request: RequestFor,
) -> Result<(), String> {
    if duration.is_zero() {
        return Ok(());
    }
    let result = drive(
        ClosedLoop {
            name: format!("warm-up of {name}"),
            endpoint: endpoint.clone(),
            connections,
            length: Length::For(duration),
            request,
        },
        Processes::default(),
    )
    .await?;
    eprintln!(
        "  warm-up: {} requests in {:.1} s ({} errors), not counted",
        result.requests, result.seconds, result.errors
    );
    Ok(())
}

/// Replenish SKUs `<prefix>0` to `<prefix><count - 1>` with `stock` units each, over
/// `connections` connections; every one must succeed.
pub async fn replenish_all(
    endpoint: &Arc<Endpoint>,
    prefix: &str,
    count: u64,
    stock: u64,
    connections: usize,
) -> Result<(), String> {
    let body = crate::http::replenish_body(stock);
    let prefix = prefix.to_owned();
    let result = drive(
        ClosedLoop {
            name: format!("replenish {count} SKUs"),
            endpoint: endpoint.clone(),
            connections: connections.min(count.max(1) as usize),
            length: Length::Requests(count),
            request: Arc::new(move |i| {
                (
                    crate::http::replenish_path(&format!("{prefix}{i}")),
                    body.clone(),
                )
            }),
        },
        Processes::default(),
    )
    .await?;
    if result.ok != count {
        return Err(format!(
            "replenishing {count} SKUs: {} succeeded, {} refused, {} failed",
            result.ok, result.refused, result.errors
        ));
    }
    Ok(())
}
