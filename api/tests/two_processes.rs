//! Two real `api` processes on one PostgreSQL database, hammered at one SKU through both at
//! once, never oversell: every reserve is decided against the stream and appended at the
//! version it was decided on, whichever process serves it, so the store refuses the loser of
//! every race and the history records exactly what was sold.

mod support;

use ledger_tests::postgres::TestDatabase;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::process::ApiProcess;

/// The SKU both processes fight over.
const SKU: &str = "HOT-1";

/// Units replenished before the rush: exactly this many reserves of one unit may succeed.
const STOCK_UNITS: u64 = 300;

/// Reserve requests of the rush, ten times the stock, so that most of them must be refused.
const RUSH_RESERVES: u64 = 3_000;

/// Reservations of the rush released through the first process in the second phase.
const RELEASES: u64 = 150;

/// Reserve requests sent through the second process while those releases run: more than the
/// units the releases free, so that some succeed and the rest are refused.
const LATE_RESERVES: u64 = 600;

/// Concurrent connections per process (32 in all): each worker holds one keep-alive connection
/// and sends one request at a time.
const CONNECTIONS_PER_PROCESS: usize = 16;

/// Connections in each process's PostgreSQL pool: more than its concurrent requests, so the
/// pool is not what serialises them.
const POOL_SIZE: &str = "24";

/// How often one request is sent again after a 503 `contention` answer. Each append a request
/// loses to implies another writer's append in between, and no phase appends more than
/// `STOCK_UNITS` events while a server decides again up to 9 times before answering 503, so
/// a request can lose at most about 34 times in a row; past this bound something is wrong.
const CONTENTION_RETRIES_MAX: u32 = 64;

/// A single request never takes this long unless a server hangs; it fails the test instead.
const REQUEST_DEADLINE_MS: u64 = 60_000;

/// Longest the read models may take to reflect the streams before the test fails.
const CONVERGENCE_DEADLINE_MS: u64 = 60_000;

/// Pause between two looks at a read model or a stopping process.
const POLL_INTERVAL_MS: u64 = 50;

/// Entries asked for per history page, the largest page the API serves.
const HISTORY_PAGE_ENTRIES: u64 = 1_000;

const PROBLEM_INSUFFICIENT_STOCK: &str = "urn:inventory-ledger:problem:insufficient-stock";
const PROBLEM_CONTENTION: &str = "urn:inventory-ledger:problem:contention";

async fn start(label: &'static str, database_url: &str) -> ApiProcess {
    ApiProcess::start(
        label,
        database_url,
        &["--pool-size", POOL_SIZE, "--projectors", "true"],
    )
    .await
}

/// One POST to send, named by the reservation it is about.
struct Job {
    reservation_id: String,
    path: String,
    body: Value,
}

/// Jobs taken in order by any number of workers; each job is sent exactly once.
struct Queue {
    jobs: Vec<Job>,
    next: AtomicUsize,
}

impl Queue {
    fn new(jobs: Vec<Job>) -> Arc<Self> {
        Arc::new(Self {
            jobs,
            next: AtomicUsize::new(0),
        })
    }

    fn take(&self) -> Option<&Job> {
        self.jobs.get(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// The final answer to one job, after any retries of a `contention` answer.
#[derive(Debug)]
struct Answer {
    process: &'static str,
    reservation_id: String,
    status: u16,
    body: Value,
    contention_retries: u32,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_millis(REQUEST_DEADLINE_MS))
        .build()
        .expect("an HTTP client")
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("the body is read");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    read(client.get(url).send().await.expect("the request is sent")).await
}

/// Sends `job`, and sends it again while the answer is a 503 `contention` (nothing was
/// appended: the server lost its races and says so), at most [`CONTENTION_RETRIES_MAX`] times.
async fn send(client: &reqwest::Client, process: &ApiProcess, job: &Job) -> Answer {
    let url = process.url(&job.path);
    let mut contention_retries = 0;
    loop {
        let response = client
            .post(&url)
            .json(&job.body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {url} was not answered: {error}"));
        let (status, body) = read(response).await;
        if status == 503
            && body["type"] == PROBLEM_CONTENTION
            && contention_retries < CONTENTION_RETRIES_MAX
        {
            contention_retries += 1;
            continue;
        }
        return Answer {
            process: process.label,
            reservation_id: job.reservation_id.clone(),
            status,
            body,
            contention_retries,
        };
    }
}

/// Starts `connections` workers that send the queue's jobs to `process`, one at a time each.
fn spawn_workers(
    process: &Arc<ApiProcess>,
    queue: &Arc<Queue>,
    connections: usize,
) -> Vec<tokio::task::JoinHandle<Vec<Answer>>> {
    (0..connections)
        .map(|_| {
            let process = process.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                let client = client();
                let mut answers = Vec::new();
                while let Some(job) = queue.take() {
                    answers.push(send(&client, &process, job).await);
                }
                answers
            })
        })
        .collect()
}

async fn collect(workers: Vec<tokio::task::JoinHandle<Vec<Answer>>>) -> Vec<Answer> {
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.expect("a worker failed"));
    }
    answers
}

fn reserve_jobs(prefix: &str, count: u64) -> Vec<Job> {
    (0..count)
        .map(|index| {
            let reservation_id = format!("{prefix}-{index}");
            Job {
                path: format!("/v1/skus/{SKU}/reservations"),
                body: json!({"reservation_id": reservation_id, "quantity": 1}),
                reservation_id,
            }
        })
        .collect()
}

/// What a batch of reserve answers amounts to. Any answer other than 201, or 409 for
/// insufficient stock, fails the test with the first such answer.
struct ReserveTally {
    created: BTreeSet<String>,
    refused: u64,
    /// The SKU's version right after each successful reserve: one per success, no repeats.
    versions: BTreeSet<u64>,
    created_by_process: BTreeMap<&'static str, u64>,
    answered_by_process: BTreeMap<&'static str, u64>,
    contention_retries: u64,
}

fn tally_reserves(answers: &[Answer]) -> ReserveTally {
    let mut tally = ReserveTally {
        created: BTreeSet::new(),
        refused: 0,
        versions: BTreeSet::new(),
        created_by_process: BTreeMap::new(),
        answered_by_process: BTreeMap::new(),
        contention_retries: 0,
    };
    let mut unexpected = Vec::new();
    for answer in answers {
        tally.contention_retries += u64::from(answer.contention_retries);
        *tally.answered_by_process.entry(answer.process).or_default() += 1;
        let body = &answer.body;
        match answer.status {
            201 => {
                assert_eq!(body["reservation_id"], answer.reservation_id.as_str());
                assert_eq!(body["deduplicated"], false, "{body}");
                assert_eq!(body["events"][0]["type"], "StockReserved", "{body}");
                assert_eq!(body["events"].as_array().map(Vec::len), Some(1), "{body}");
                let version = body["version"].as_u64().expect("a version");
                assert_eq!(body["events"][0]["version"], version, "{body}");
                assert!(
                    tally.versions.insert(version),
                    "two reserves answered with version {version}"
                );
                let (on_hand, reserved) = (body["on_hand"].as_u64(), body["reserved"].as_u64());
                let (on_hand, reserved) = (on_hand.expect("on hand"), reserved.expect("reserved"));
                assert!(reserved <= on_hand, "oversold: {body}");
                assert_eq!(body["available"], on_hand - reserved, "{body}");
                assert!(
                    tally.created.insert(answer.reservation_id.clone()),
                    "{} was created twice",
                    answer.reservation_id
                );
                *tally.created_by_process.entry(answer.process).or_default() += 1;
            }
            409 if body["type"] == PROBLEM_INSUFFICIENT_STOCK => {
                // Every request asks for one unit, so only an empty shelf refuses it.
                assert_eq!(body["available"], 0, "{body}");
                assert_eq!(body["requested"], 1, "{body}");
                tally.refused += 1;
            }
            _ => unexpected.push(answer),
        }
    }
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers to reserves; the first: {:?}",
        unexpected.len(),
        unexpected.first()
    );
    tally
}

/// The SKU's whole history from one process, every page of it.
async fn full_history(client: &reqwest::Client, process: &ApiProcess) -> Vec<Value> {
    let mut entries: Vec<Value> = Vec::new();
    let mut after_version: Option<u64> = None;
    // Each page but the last is full, so the loop ends after this many pages at most.
    let pages_max = (1 + RUSH_RESERVES + RELEASES + LATE_RESERVES) / HISTORY_PAGE_ENTRIES + 2;
    for _ in 0..pages_max {
        let mut path = format!("/v1/skus/{SKU}/history?limit={HISTORY_PAGE_ENTRIES}");
        if let Some(version) = after_version {
            path.push_str(&format!("&after_version={version}"));
        }
        let (status, body) = get(client, &process.url(&path)).await;
        assert_eq!(status, 200, "{body}");
        entries.extend(body["entries"].as_array().expect("entries").iter().cloned());
        match body["next_after_version"].as_u64() {
            Some(version) => after_version = Some(version),
            None => return entries,
        }
    }
    panic!("the history of {SKU} did not end within {pages_max} pages");
}

/// A SKU's balances folded by this test from the events themselves, not from the balances the
/// history reports beside them.
#[derive(Debug, Default)]
struct Fold {
    on_hand: u64,
    reserved: u64,
    open: BTreeSet<String>,
    reserved_ids: BTreeSet<String>,
    released_ids: BTreeSet<String>,
    events_by_type: BTreeMap<String, u64>,
    version: Option<u64>,
}

/// Folds the history, checking on the way that versions run 0, 1, 2, … without gaps, that
/// reserved never exceeds on hand after any event, and that the balances the history reports
/// after each event agree with the fold.
fn fold(entries: &[Value]) -> Fold {
    let mut fold = Fold::default();
    for (index, entry) in entries.iter().enumerate() {
        let version = index as u64;
        assert_eq!(
            entry["version"], version,
            "versions must have no gaps: {entry}"
        );
        let event_type = entry["event_type"].as_str().expect("an event type");
        let quantity = entry["data"]["quantity"].as_u64().expect("a quantity");
        let reservation_id = entry["data"]["reservation_id"].as_str().map(str::to_owned);
        match event_type {
            "StockReplenished" => fold.on_hand += quantity,
            "StockReserved" => {
                let id = reservation_id.expect("a reserved event names its reservation");
                assert!(fold.reserved_ids.insert(id.clone()), "{id} reserved twice");
                fold.open.insert(id);
                fold.reserved += quantity;
            }
            "ReservationReleased" => {
                let id = reservation_id.expect("a released event names its reservation");
                assert!(fold.open.remove(&id), "{id} released while not open");
                fold.released_ids.insert(id);
                fold.reserved = fold
                    .reserved
                    .checked_sub(quantity)
                    .expect("a release never frees more than is reserved");
            }
            other => panic!("no {other} event was asked for: {entry}"),
        }
        *fold
            .events_by_type
            .entry(event_type.to_owned())
            .or_default() += 1;
        assert!(
            fold.reserved <= fold.on_hand,
            "oversold at version {version}: {entry}"
        );
        assert_eq!(entry["on_hand_after"], fold.on_hand, "{entry}");
        assert_eq!(entry["reserved_after"], fold.reserved, "{entry}");
        assert_eq!(
            entry["available_after"],
            fold.on_hand - fold.reserved,
            "{entry}"
        );
        fold.version = Some(version);
    }
    fold
}

/// The SKU's state as each process reads it from the stream must equal the fold.
async fn assert_state_equals_fold(
    client: &reqwest::Client,
    processes: [&ApiProcess; 2],
    fold: &Fold,
) {
    for process in processes {
        let (status, state) = get(client, &process.url(&format!("/v1/skus/{SKU}"))).await;
        assert_eq!(status, 200, "{state}");
        assert_eq!(state["on_hand"], fold.on_hand, "{} {state}", process.label);
        assert_eq!(
            state["reserved"], fold.reserved,
            "{} {state}",
            process.label
        );
        assert_eq!(
            state["available"],
            fold.on_hand - fold.reserved,
            "{} {state}",
            process.label
        );
        assert_eq!(
            state["open_reservations"],
            fold.open.len() as u64,
            "{} {state}",
            process.label
        );
        assert_eq!(
            state["version"],
            json!(fold.version),
            "{} {state}",
            process.label
        );
    }
}

/// The reservations read model, which the projectors of both processes share through their
/// lease, must come to list exactly the open reservations the history holds.
async fn wait_for_open_reservations(
    client: &reqwest::Client,
    process: &ApiProcess,
    open: &BTreeSet<String>,
) {
    let url = process.url(&format!("/v1/skus/{SKU}/reservations?status=open"));
    let deadline = Instant::now() + Duration::from_millis(CONVERGENCE_DEADLINE_MS);
    loop {
        let (status, body) = get(client, &url).await;
        let listed: Option<BTreeSet<String>> = body.as_array().map(|rows| {
            rows.iter()
                .filter_map(|row| row["reservation_id"].as_str().map(str::to_owned))
                .collect()
        });
        if status == 200 && listed.as_ref() == Some(open) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the open reservations read through {} did not match the history within \
             {CONVERGENCE_DEADLINE_MS} ms: {status}, {} rows listed, {} open",
            process.label,
            listed.map_or(0, |l| l.len()),
            open.len()
        );
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_on_one_database_never_oversell_a_hot_sku() {
    let database = TestDatabase::create().await;
    let url = database.url();
    let first = Arc::new(start("A", &url).await);
    let second = Arc::new(start("B", &url).await);
    let client = client();

    // Given 300 units, replenished through the first process.
    let (status, body) = read(
        client
            .post(first.url(&format!("/v1/skus/{SKU}/replenishments")))
            .json(&json!({"quantity": STOCK_UNITS, "reference": "PO-RUSH"}))
            .send()
            .await
            .expect("the replenishment is sent"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["on_hand"], STOCK_UNITS, "{body}");

    // When 3,000 one-unit reserves with distinct ids arrive over 32 connections, half of them
    // to each process, taking the requests from one queue.
    let started = Instant::now();
    let rush = Queue::new(reserve_jobs("rush", RUSH_RESERVES));
    let mut workers = spawn_workers(&first, &rush, CONNECTIONS_PER_PROCESS);
    workers.extend(spawn_workers(&second, &rush, CONNECTIONS_PER_PROCESS));
    let answers = collect(workers).await;
    let rush_elapsed = started.elapsed();

    // Then exactly 300 are created, each at its own version, and all others are refused for
    // insufficient stock, whichever process answered.
    assert_eq!(answers.len() as u64, RUSH_RESERVES);
    let rush_tally = tally_reserves(&answers);
    assert_eq!(rush_tally.created.len() as u64, STOCK_UNITS);
    assert_eq!(rush_tally.refused, RUSH_RESERVES - STOCK_UNITS);
    assert_eq!(
        rush_tally.versions,
        (1..=STOCK_UNITS).collect::<BTreeSet<u64>>(),
        "each success appended the next version"
    );
    // How the sales split between the processes is up to scheduling and varies widely from
    // run to run, so only serving is required of both; the split is printed below.
    for process in ["A", "B"] {
        assert!(
            rush_tally
                .answered_by_process
                .get(process)
                .copied()
                .unwrap_or(0)
                > 0,
            "process {process} answered no reserve: {:?}",
            rush_tally.answered_by_process
        );
    }

    // Both processes read reserved 300, available 0, on hand 300 from the stream, and the
    // history holds exactly the 300 reserves that were answered 201, at consecutive versions.
    let entries = full_history(&client, &first).await;
    assert_eq!(entries, full_history(&client, &second).await);
    let after_rush = fold(&entries);
    assert_eq!(entries.len() as u64, 1 + STOCK_UNITS);
    assert_eq!(after_rush.events_by_type["StockReserved"], STOCK_UNITS);
    assert_eq!(after_rush.reserved_ids, rush_tally.created);
    assert_eq!(
        (after_rush.on_hand, after_rush.reserved),
        (STOCK_UNITS, STOCK_UNITS)
    );
    assert_state_equals_fold(&client, [&*first, &*second], &after_rush).await;

    // When half of those reservations are released through the first process while one-unit
    // reserves keep arriving at the second.
    let started = Instant::now();
    let released: BTreeSet<String> = rush_tally
        .created
        .iter()
        .take(RELEASES as usize)
        .cloned()
        .collect();
    let releases = Queue::new(
        released
            .iter()
            .map(|id| Job {
                reservation_id: id.clone(),
                path: format!("/v1/skus/{SKU}/reservations/{id}/release"),
                body: json!({"reason": "order cancelled"}),
            })
            .collect(),
    );
    let late = Queue::new(reserve_jobs("late", LATE_RESERVES));
    let release_workers = spawn_workers(&first, &releases, CONNECTIONS_PER_PROCESS);
    let late_workers = spawn_workers(&second, &late, CONNECTIONS_PER_PROCESS);
    let (release_answers, late_answers) =
        tokio::join!(collect(release_workers), collect(late_workers));
    let mixed_elapsed = started.elapsed();

    // Then every release succeeds once, and the late reserves take at most the units freed.
    assert_eq!(release_answers.len() as u64, RELEASES);
    let mut release_retries = 0;
    for answer in &release_answers {
        release_retries += u64::from(answer.contention_retries);
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body["deduplicated"], false, "{answer:?}");
        assert_eq!(
            answer.body["events"][0]["type"], "ReservationReleased",
            "{answer:?}"
        );
        assert_eq!(
            answer.body["events"][0]["data"]["reservation_id"],
            answer.reservation_id.as_str(),
            "{answer:?}"
        );
    }
    assert_eq!(late_answers.len() as u64, LATE_RESERVES);
    let late_tally = tally_reserves(&late_answers);
    let late_created = late_tally.created.len() as u64;
    assert!(late_created <= RELEASES, "{late_created} late reserves");
    assert_eq!(late_tally.refused, LATE_RESERVES - late_created);

    // And the final balances, read through either process, equal a fold of the history, which
    // holds exactly the answered movements.
    let entries = full_history(&client, &second).await;
    assert_eq!(entries, full_history(&client, &first).await);
    let after_mix = fold(&entries);
    let answered_reserves: BTreeSet<String> = rush_tally
        .created
        .union(&late_tally.created)
        .cloned()
        .collect();
    assert_eq!(after_mix.reserved_ids, answered_reserves);
    assert_eq!(after_mix.released_ids, released);
    assert_eq!(
        after_mix.events_by_type,
        BTreeMap::from([
            ("StockReplenished".to_owned(), 1),
            ("StockReserved".to_owned(), STOCK_UNITS + late_created),
            ("ReservationReleased".to_owned(), RELEASES),
        ])
    );
    assert_eq!(after_mix.on_hand, STOCK_UNITS);
    assert_eq!(after_mix.reserved, STOCK_UNITS - RELEASES + late_created);
    assert_state_equals_fold(&client, [&*first, &*second], &after_mix).await;
    for process in [&first, &second] {
        wait_for_open_reservations(&client, process, &after_mix.open).await;
    }

    eprintln!(
        "rush: {} reserves in {rush_elapsed:?}, answered by process {:?}, created by process \
         {:?}, {} contention retries; mix: {RELEASES} releases ({release_retries} retries) \
         beside {LATE_RESERVES} reserves ({late_created} created, {} retries) in \
         {mixed_elapsed:?}",
        RUSH_RESERVES,
        rush_tally.answered_by_process,
        rush_tally.created_by_process,
        rush_tally.contention_retries,
        late_tally.contention_retries,
    );

    // Finally both stop on SIGTERM and exit 0.
    let mut first = Arc::try_unwrap(first).unwrap_or_else(|_| panic!("a worker holds process A"));
    let mut second = Arc::try_unwrap(second).unwrap_or_else(|_| panic!("a worker holds process B"));
    first.send_signal("TERM");
    second.send_signal("TERM");
    first.wait_for_clean_exit();
    second.wait_for_clean_exit();
    drop(database);
}
