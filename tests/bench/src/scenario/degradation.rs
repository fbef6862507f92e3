//! Scenario (f), degradation: does a process that started on an EMPTY data folder keep its
//! speed as the tables fill? Plans PostgreSQL caches on a long-lived connection while the
//! tables are empty (a sequential scan is the best plan for an empty table) can live on for
//! the life of the process. So one fresh API process runs three consecutive rounds of the
//! uncontended load (a), each on new SKUs; then it is stopped, the same binary is started again
//! on the same folder, and a fourth round runs on fresh connections and fresh plans. Each of
//! the first three rounds should be within [`TOLERANCE`] of the restarted one.

use super::uncontended::{self, Skus};
use super::Target;
use crate::api_process::{ApiOptions, ApiProcess, DataFolder};
use crate::closed_loop::{Length, ScenarioResult};
use serde::Serialize;
use std::time::Duration;

/// Rounds run by the first process, before the restart.
const ROUNDS_BEFORE_RESTART: u32 = 3;

/// How far a round's throughput may be from the restarted round's and still count as the same:
/// run-to-run noise on a small shared machine is a few per cent.
pub const TOLERANCE: f64 = 0.10;

pub struct DegradationPlan {
    pub skus: u64,
    pub seconds: u64,
    pub connections: usize,
    pub warmup: Duration,
    pub run: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DegradationResult {
    /// The rounds of the first process, in order.
    pub rounds: Vec<ScenarioResult>,
    /// The round after the restart on the same folder.
    pub restarted: ScenarioResult,
    /// Each first-process round's throughput divided by the restarted round's.
    pub ratios: Vec<f64>,
    pub tolerance: f64,
}

impl DegradationResult {
    pub fn passes(&self) -> bool {
        self.ratios
            .iter()
            .all(|ratio| (ratio - 1.0).abs() <= self.tolerance)
    }
}

pub async fn run(options: &ApiOptions, plan: DegradationPlan) -> Result<DegradationResult, String> {
    let folder = DataFolder::new("degradation")?;
    eprintln!(
        "(f) degradation: a fresh API on the empty folder {}...",
        folder.path().display()
    );
    let api = ApiProcess::start(options, folder.path()).await?;
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS_BEFORE_RESTART {
        rounds.push(run_round(&api, &plan, round, "fresh process").await?);
    }
    api.stop().await?;
    eprintln!("(f) degradation: restarting the API on the same folder...");
    let api = ApiProcess::start(options, folder.path()).await?;
    let restarted = run_round(&api, &plan, ROUNDS_BEFORE_RESTART + 1, "after a restart").await?;
    api.stop().await?;
    let ratios = rounds
        .iter()
        .map(|round| round.per_second / restarted.per_second)
        .collect();
    Ok(DegradationResult {
        rounds,
        restarted,
        ratios,
        tolerance: TOLERANCE,
    })
}

/// One round of (a) on its own SKUs.
async fn run_round(
    api: &ApiProcess,
    plan: &DegradationPlan,
    round: u32,
    process: &str,
) -> Result<ScenarioResult, String> {
    let target = Target {
        endpoint: api.endpoint.clone(),
        processes: api.processes(),
        connections: plan.connections,
        warmup: plan.warmup,
        run: plan.run.clone(),
    };
    let skus = Skus::prepare(&target, format!("D{}r{round}-", plan.run), plan.skus).await?;
    uncontended::run(
        &target,
        &skus,
        Length::For(Duration::from_secs(plan.seconds)),
        format!("(f) round {round}, {process}: {} SKUs", skus.count()),
    )
    .await
}

pub fn print(degradation: &DegradationResult) {
    println!(
        "## (f) Degradation: one API process started on an empty folder, {} rounds of (a), then \
         the same binary restarted on the same folder for one more",
        degradation.rounds.len()
    );
    let rows: Vec<&ScenarioResult> = degradation
        .rounds
        .iter()
        .chain([&degradation.restarted])
        .collect();
    crate::table::print_request_table(&rows);
    println!();
    println!(
        "| round | req/s | / restarted round | within ±{:.0} % |",
        degradation.tolerance * 100.0
    );
    println!("|---|---:|---:|---|");
    for (index, (round, ratio)) in degradation
        .rounds
        .iter()
        .zip(&degradation.ratios)
        .enumerate()
    {
        println!(
            "| {} | {:.0} | {:.3} | {} |",
            index + 1,
            round.per_second,
            ratio,
            if (ratio - 1.0).abs() <= degradation.tolerance {
                "yes"
            } else {
                "NO"
            }
        );
    }
    println!(
        "| {} (restarted) | {:.0} | 1.000 | — |",
        degradation.rounds.len() + 1,
        degradation.restarted.per_second
    );
    println!(
        "every round of the fresh process within ±{:.0} % of the restarted one: {}",
        degradation.tolerance * 100.0,
        if degradation.passes() { "yes" } else { "NO" }
    );
}
