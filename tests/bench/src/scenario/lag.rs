//! Scenario (d), read-model lag: reserves sent open-loop (on a fixed schedule, whether or not
//! earlier ones were answered) at a steady rate, while a poller reads the `stock_levels`
//! projection's checkpoint every few milliseconds. A command's lag is the time from the API's
//! successful answer until the first poll that saw the checkpoint at or past the position the
//! answer carried: when the read model is known to show it.

use super::Target;
use crate::closed_loop::{replenish_all, Counts, ScenarioResult, Window};
use crate::database::LedgerDatabase;
use crate::http::{reserve_body, reserve_path, Answer, ConnectionPool};
use crate::stats::{max_ms, percentile_ms};
use ledger_domain::Position;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// The projection whose checkpoint is watched: the one a client reading stock levels sees.
pub const LAG_PROJECTION: &str = "stock_levels";

/// Most open-loop requests awaiting an answer. Beyond it the sender waits (and counts the send
/// as late) instead of piling up requests without bound; at half the measured maximum rate a
/// healthy API holds far fewer than this in flight, so the bound only bites when it stalls.
pub const IN_FLIGHT_MAX: usize = 1_024;

/// A send this far behind its schedule is counted as late: the load was no longer open-loop.
const LATE_SEND_MS: u64 = 10;

/// How long the checkpoint may take to reach the last answered position once sending ends.
/// Commands it has not reached by then are reported as unmeasured.
const SETTLE_TIMEOUT_SECONDS: u64 = 60;

#[derive(Debug, Clone, Serialize)]
pub struct LagResult {
    pub projection: &'static str,
    /// The rate the scenario aimed for, and where it came from.
    pub target_per_second: f64,
    pub target_source: String,
    pub seconds_planned: u64,
    /// The requests as a client saw them (answered rate and latency).
    pub requests: ScenarioResult,
    /// Sends more than `LATE_SEND_MS` behind schedule.
    pub sent_late: u64,
    /// Answered commands whose lag was measured, and those the checkpoint never reached in time.
    pub measured: u64,
    pub unmeasured: u64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    pub poll_interval_ms_planned: u64,
    /// The mean interval the poller achieved (the resolution of the lag figures).
    pub poll_interval_ms_mean: f64,
    pub polls: u64,
}

pub struct LagPlan {
    pub run: String,
    pub skus: u64,
    pub rate_per_second: f64,
    pub rate_source: String,
    pub seconds: u64,
    pub poll_interval_ms: u64,
}

/// One answered request: when, how, and where its events are in the log.
struct Answered {
    answered_at: Instant,
    latency: Duration,
    status: Option<u16>,
    position: Option<Position>,
}

/// One reading of the checkpoint and when its answer arrived.
type Sample = (Instant, Option<Position>);

pub async fn run(
    target: &Target,
    database: &LedgerDatabase,
    plan: LagPlan,
) -> Result<LagResult, String> {
    if !(plan.rate_per_second > 0.0 && plan.rate_per_second.is_finite()) {
        return Err(format!(
            "a steady load needs a positive rate, not {} req/s",
            plan.rate_per_second
        ));
    }
    let total = (plan.rate_per_second * plan.seconds as f64)
        .round()
        .max(1.0) as u64;
    let skus = plan.skus.max(1);
    let prefix = format!("L{}-", plan.run);
    eprintln!("(d) read-model lag: preparing {skus} SKUs...");
    replenish_all(
        &target.endpoint,
        &prefix,
        skus,
        total / skus + 1,
        target.connections,
    )
    .await?;
    // Let the projectors finish the preparation so it does not count as lag.
    database
        .wait_for_projections(Duration::from_secs(SETTLE_TIMEOUT_SECONDS))
        .await?;

    let (latest_sender, mut latest) = watch::channel(None);
    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_checkpoint(
        database.clone(),
        Duration::from_millis(plan.poll_interval_ms.max(1)),
        latest_sender,
        stop.clone(),
    ));
    eprintln!(
        "(d) read-model lag: {total} reserves at {:.0}/s...",
        plan.rate_per_second
    );
    let sent = send_open_loop(target, &plan, &prefix, total).await;

    let last_position = sent.answers.iter().filter_map(|a| a.position).max();
    // `wait_for` answers with a guard that holds the channel's lock; it must be dropped here,
    // before the poller's next `send_replace`, or the poller blocks its worker thread on it.
    let settled = matches!(
        tokio::time::timeout(
            Duration::from_secs(SETTLE_TIMEOUT_SECONDS),
            latest.wait_for(|checkpoint| *checkpoint >= last_position),
        )
        .await,
        Ok(Ok(_))
    );
    stop.store(true, Ordering::Relaxed);
    let (samples, polling) = poller.await.expect("the checkpoint poller panicked")?;
    if !settled {
        eprintln!(
            "warning: the {LAG_PROJECTION} checkpoint did not reach the last answered position \
             within {SETTLE_TIMEOUT_SECONDS} s"
        );
    }
    Ok(summarise(plan, sent, &samples, polling))
}

/// What the open-loop sender saw.
struct Sent {
    answers: Vec<Answered>,
    requests: ScenarioResult,
    late: u64,
}

/// Send `total` reserves on a fixed schedule, whether or not earlier ones were answered; the
/// timed window (and its CPU) closes with the last answer.
async fn send_open_loop(target: &Target, plan: &LagPlan, prefix: &str, total: u64) -> Sent {
    let skus = plan.skus.max(1);
    let period = Duration::from_secs_f64(1.0 / plan.rate_per_second);
    let pool = Arc::new(ConnectionPool::new(target.endpoint.clone()));
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut requests = JoinSet::new();
    let mut late = 0;
    let window = Window::open(target.processes);
    let started = Instant::now();
    for i in 0..total {
        let scheduled = started + period.mul_f64(i as f64);
        tokio::time::sleep_until(tokio::time::Instant::from_std(scheduled)).await;
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if scheduled.elapsed() > Duration::from_millis(LATE_SEND_MS) {
            late += 1;
        }
        let path = reserve_path(&format!("{prefix}{}", i % skus));
        let body = reserve_body(&format!("l{i}"), None);
        let pool = pool.clone();
        requests.spawn(async move {
            let sent = Instant::now();
            let answer = pool.post(&path, body).await;
            let latency = sent.elapsed();
            drop(permit);
            let (status, position) = read_answer(answer);
            Answered {
                answered_at: Instant::now(),
                latency,
                status,
                position,
            }
        });
    }
    let mut answers = Vec::with_capacity(total as usize);
    while let Some(answer) = requests.join_next().await {
        answers.push(answer.expect("a request task panicked"));
    }
    let mut counts = Counts::default();
    for answer in &answers {
        counts.count(answer.status);
    }
    let latencies = answers.iter().map(|a| a.latency).collect();
    let requests = window.close(
        format!("(d) open loop at {:.0}/s", plan.rate_per_second),
        pool.opened(),
        counts,
        latencies,
    );
    Sent {
        answers,
        requests,
        late,
    }
}

/// Each answered command's lag against the checkpoint readings, summarised.
fn summarise(plan: LagPlan, sent: Sent, samples: &[Sample], polling: Duration) -> LagResult {
    let mut lags = Vec::new();
    let mut unmeasured = 0;
    for answer in &sent.answers {
        if let Some(position) = answer.position {
            match lag_of(samples, answer.answered_at, position) {
                Some(lag) => lags.push(lag),
                None => unmeasured += 1,
            }
        }
    }
    lags.sort();
    let polls = samples.len() as u64;
    LagResult {
        projection: LAG_PROJECTION,
        target_per_second: plan.rate_per_second,
        target_source: plan.rate_source,
        seconds_planned: plan.seconds,
        requests: sent.requests,
        sent_late: sent.late,
        measured: lags.len() as u64,
        unmeasured,
        lag_p50_ms: percentile_ms(&lags, 0.50),
        lag_p99_ms: percentile_ms(&lags, 0.99),
        lag_max_ms: max_ms(&lags),
        poll_interval_ms_planned: plan.poll_interval_ms,
        poll_interval_ms_mean: if polls > 1 {
            polling.as_secs_f64() * 1000.0 / (polls - 1) as f64
        } else {
            0.0
        },
        polls,
    }
}

/// A reserve's status, and the log position its answer names.
fn read_answer(answer: Result<Answer, String>) -> (Option<u16>, Option<Position>) {
    let Ok(answer) = answer else {
        return (None, None);
    };
    let position = (answer.status == 201)
        .then(|| serde_json::from_slice::<serde_json::Value>(&answer.body).ok())
        .flatten()
        .and_then(|body| body.get("position")?.as_str()?.parse().ok());
    (Some(answer.status), position)
}

/// The time from `answered_at` until the first sample at or after it whose checkpoint is at
/// or past `position`; `None` when no sample got there.
fn lag_of(samples: &[Sample], answered_at: Instant, position: Position) -> Option<Duration> {
    let first = samples.partition_point(|(at, _)| *at < answered_at);
    samples[first..]
        .iter()
        .find(|(_, checkpoint)| *checkpoint >= Some(position))
        .map(|(at, _)| at.duration_since(answered_at))
}

/// Read the checkpoint every `interval` until `stop`, publishing each reading; returns every
/// reading and how long polling lasted.
async fn poll_checkpoint(
    database: LedgerDatabase,
    interval: Duration,
    latest: watch::Sender<Option<Position>>,
    stop: Arc<AtomicBool>,
) -> Result<(Vec<Sample>, Duration), String> {
    // One connection for the whole run, so a poll is one query and nothing else.
    let client = database.client().await?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next = tokio::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let checkpoint = LedgerDatabase::checkpoint_on(&client, LAG_PROJECTION).await?;
        samples.push((Instant::now(), checkpoint));
        latest.send_replace(checkpoint);
        // A poll that overran its slot starts the next one a full interval later rather than
        // firing a burst to catch up.
        next = (next + interval).max(tokio::time::Instant::now());
        tokio::time::sleep_until(next).await;
    }
    Ok((samples, started.elapsed()))
}

pub fn print(lag: &LagResult) {
    println!(
        "## (d) Read-model lag: {} checkpoint, open loop at {:.0} req/s ({}) for {} s",
        lag.projection, lag.target_per_second, lag.target_source, lag.seconds_planned
    );
    crate::table::print_request_table(&[&lag.requests]);
    println!();
    println!(
        "| projection | lag measured | lag p50 ms | lag p99 ms | lag max ms | poll every ms | sends late |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
        lag.projection,
        lag.measured,
        lag.lag_p50_ms,
        lag.lag_p99_ms,
        lag.lag_max_ms,
        lag.poll_interval_ms_mean,
        lag.sent_late
    );
    println!(
        "lag = API answer → first checkpoint read at or past the answer's position; \
         resolution one poll ({:.1} ms mean); \"connections\" above = connections opened{}",
        lag.poll_interval_ms_mean,
        if lag.unmeasured > 0 {
            format!(
                "; {} answered commands NEVER seen by the checkpoint",
                lag.unmeasured
            )
        } else {
            String::new()
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(commit: u64) -> Option<Position> {
        Some(Position { commit, prepare: 0 })
    }

    #[test]
    fn lag_runs_to_the_first_reading_after_the_answer_that_shows_the_position() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let samples = vec![
            (ms(0), None),
            (ms(2), at(5)),
            (ms(4), at(9)),
            (ms(6), at(12)),
        ];
        let position = at(9).expect("a position");
        // Answered before the checkpoint got there: lag runs to the reading that saw it.
        assert_eq!(
            lag_of(&samples, ms(1), position),
            Some(Duration::from_millis(3))
        );
        // Answered after the checkpoint passed it: lag runs to the next reading.
        assert_eq!(
            lag_of(&samples, ms(5), position),
            Some(Duration::from_millis(1))
        );
        // Never reached.
        assert_eq!(lag_of(&samples, ms(1), at(13).expect("a position")), None);
    }
}
