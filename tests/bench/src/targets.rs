//! The targets table: each target the tracked issue sets, what this run measured against it,
//! and whether it passed. A target whose scenario did not run (or could not measure it, such
//! as CPU for an API the bench did not start) is "n/a", never a pass.

use crate::results::Results;
use crate::scenario::degradation::DegradationResult;
use crate::table::figure;
use serde::Serialize;

/// Uncontended reserves against the floor measured in the same run: a reserve costs several
/// statements and at least one commit, but should stay within a small factor of the cheapest
/// possible durable commit.
const UNCONTENDED_SHARE_OF_FLOOR_MIN: f64 = 0.30;

/// One SKU must take a flash sale's rate through its single writer.
const HOT_SKU_PER_SECOND_MIN: f64 = 5_000.0;

/// Three locations per SKU against one, in the same run: the location dimension may cost this
/// share of throughput (uncontended and hot SKU) and of CPU per reserve at most.
const LOCATIONS_COST_MAX: f64 = 0.10;

/// What one reserve may cost the server side (the API and PostgreSQL together).
const CPU_PER_RESERVE_US_MAX: f64 = 300.0;

/// At half the maximum rate, a reserve's answer and its appearance in the read model.
const HALF_RATE_RESERVE_P99_MS_MAX: f64 = 10.0;
const HALF_RATE_LAG_P99_MS_MAX: f64 = 100.0;

/// Loading a SKU with a 100,000-event history from nothing cached. A shorter stream loads
/// faster, so a run with fewer events gets no verdict.
const COLD_LOAD_MS_MAX: f64 = 50.0;
const COLD_LOAD_EVENTS_TARGET: u64 = 100_000;

/// From the last of 50,000 holds' due time until no hold is open. Fewer holds end sooner, so a
/// run with fewer gets no verdict.
const EXPIRY_SECONDS_MAX: f64 = 5.0;
const EXPIRY_HOLDS_TARGET: u64 = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    NotMeasured,
}

impl Verdict {
    fn of(passed: Option<bool>) -> Self {
        match passed {
            Some(true) => Self::Pass,
            Some(false) => Self::Fail,
            None => Self::NotMeasured,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::NotMeasured => "n/a",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetRow {
    pub target: String,
    pub measured: String,
    pub verdict: Verdict,
}

fn row(target: String, measured: String, passed: Option<bool>) -> TargetRow {
    TargetRow {
        target,
        measured,
        verdict: Verdict::of(passed),
    }
}

pub fn evaluate(results: &Results) -> Vec<TargetRow> {
    vec![
        uncontended_against_floor(results),
        hot_sku(results),
        locations_cost(results),
        cpu_per_reserve(results),
        half_rate_reserve_p99(results),
        half_rate_lag_p99(results),
        cold_load(results),
        expiry(results),
        degradation(results),
    ]
}

pub fn print(rows: &[TargetRow]) {
    println!("## Targets");
    println!("| target | measured | pass/fail |");
    println!("|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} |",
            row.target,
            row.measured,
            row.verdict.label()
        );
    }
}

fn not_run() -> String {
    "not measured (scenario did not run)".to_owned()
}

fn uncontended_against_floor(results: &Results) -> TargetRow {
    let target = format!(
        "uncontended reserves ≥ {:.0} % of the floor measured in this run",
        UNCONTENDED_SHARE_OF_FLOOR_MIN * 100.0
    );
    match (results.uncontended.ran(), results.floor.ran()) {
        (Some(uncontended), Some(floor)) => {
            let share = uncontended.per_second / floor.tps;
            row(
                target,
                format!(
                    "{:.0} req/s = {:.1} % of {:.0} tps ({} pgbench clients)",
                    uncontended.per_second,
                    share * 100.0,
                    floor.tps,
                    floor.clients
                ),
                Some(share >= UNCONTENDED_SHARE_OF_FLOOR_MIN),
            )
        }
        _ => row(target, not_run(), None),
    }
}

fn hot_sku(results: &Results) -> TargetRow {
    let target = format!("hot SKU ≥ {HOT_SKU_PER_SECOND_MIN:.0} reserves/s with zero oversell");
    match (results.hot_sku.ran(), results.sellout.ran()) {
        (Some(hot), Some(sellout)) => row(
            target,
            format!(
                "{:.0} req/s; sell-out {} reserved of stock {}",
                hot.per_second, sellout.requests.ok, sellout.stock
            ),
            Some(hot.per_second >= HOT_SKU_PER_SECOND_MIN && sellout.exact()),
        ),
        _ => row(target, not_run(), None),
    }
}

fn locations_cost(results: &Results) -> TargetRow {
    let target = format!(
        "three locations per SKU cost ≤ {:.0} % (throughput of (a3) vs (a), (b3) vs (b); CPU \
         per reserve of (a3) vs (a))",
        LOCATIONS_COST_MAX * 100.0
    );
    let (Some(one), Some(hot), Some(three)) = (
        results.uncontended.ran(),
        results.hot_sku.ran(),
        results.locations.ran(),
    ) else {
        return row(target, not_run(), None);
    };
    let uncontended = three.uncontended.per_second / one.per_second;
    let hot_sku = three.hot_sku.per_second / hot.per_second;
    let cpu = three
        .uncontended
        .cpu
        .api_and_postgres_per_request_us
        .zip(one.cpu.api_and_postgres_per_request_us)
        .map(|(three, one)| three / one);
    let floor = 1.0 - LOCATIONS_COST_MAX;
    row(
        target,
        format!(
            "throughput {:.2} (uncontended), {:.2} (hot SKU) of one location; CPU per reserve \
             {} of one location",
            uncontended,
            hot_sku,
            figure(cpu, 2)
        ),
        cpu.map(|cpu| uncontended >= floor && hot_sku >= floor && cpu <= 1.0 + LOCATIONS_COST_MAX),
    )
}

fn cpu_per_reserve(results: &Results) -> TargetRow {
    let target =
        format!("CPU per reserve (API + PostgreSQL) ≤ {CPU_PER_RESERVE_US_MAX:.0} µs, uncontended");
    match results.uncontended.ran() {
        Some(uncontended) => {
            let cost = uncontended.cpu.api_and_postgres_per_request_us;
            row(
                target,
                format!(
                    "{} µs (API {} + PostgreSQL {})",
                    figure(cost, 0),
                    figure(uncontended.cpu.api_per_request_us, 0),
                    figure(uncontended.cpu.postgres_per_request_us, 0)
                ),
                cost.map(|us| us <= CPU_PER_RESERVE_US_MAX),
            )
        }
        None => row(target, not_run(), None),
    }
}

fn half_rate_reserve_p99(results: &Results) -> TargetRow {
    let target = format!("reserve p99 ≤ {HALF_RATE_RESERVE_P99_MS_MAX:.0} ms at half rate");
    match results.lag.ran() {
        Some(lag) => row(
            target,
            format!(
                "{:.2} ms at {:.0} req/s",
                lag.requests.p99_ms, lag.requests.per_second
            ),
            Some(lag.requests.p99_ms <= HALF_RATE_RESERVE_P99_MS_MAX && lag.requests.errors == 0),
        ),
        None => row(target, not_run(), None),
    }
}

fn half_rate_lag_p99(results: &Results) -> TargetRow {
    let target = format!("read-model lag p99 ≤ {HALF_RATE_LAG_P99_MS_MAX:.0} ms at half rate");
    match results.lag.ran() {
        Some(lag) => row(
            target,
            format!(
                "{:.1} ms ({} of {} answers seen by the checkpoint)",
                lag.lag_p99_ms,
                lag.measured,
                lag.measured + lag.unmeasured
            ),
            Some(lag.lag_p99_ms <= HALF_RATE_LAG_P99_MS_MAX && lag.unmeasured == 0),
        ),
        None => row(target, not_run(), None),
    }
}

fn cold_load(results: &Results) -> TargetRow {
    let target = format!(
        "cold load of a {COLD_LOAD_EVENTS_TARGET}-event SKU ≤ {COLD_LOAD_MS_MAX:.0} ms \
         (snapshot + tail, median)"
    );
    let measured = results
        .cold_load
        .ran()
        .and_then(|cold| Some((cold.events, cold.snapshot_median_ms()?)));
    match measured {
        Some((events, median_ms)) => row(
            target,
            format!(
                "{median_ms:.1} ms for {events} events{}",
                smaller_run(events, COLD_LOAD_EVENTS_TARGET)
            ),
            (events >= COLD_LOAD_EVENTS_TARGET).then_some(median_ms <= COLD_LOAD_MS_MAX),
        ),
        None => row(target, not_run(), None),
    }
}

fn expiry(results: &Results) -> TargetRow {
    let target = format!(
        "{EXPIRY_HOLDS_TARGET} holds all ended within {EXPIRY_SECONDS_MAX:.0} s of the last one's \
         due time (projection lag included)"
    );
    let Some(expiry) = results.expiry.ran() else {
        return row(target, not_run(), None);
    };
    let full_size = expiry.holds >= EXPIRY_HOLDS_TARGET;
    let smaller = smaller_run(expiry.holds, EXPIRY_HOLDS_TARGET);
    match expiry.all_ended_after_last_due_seconds {
        Some(seconds) => row(
            target,
            format!("{seconds:.2} s for {} holds{smaller}", expiry.holds),
            full_size.then_some(seconds <= EXPIRY_SECONDS_MAX),
        ),
        None => row(
            target,
            format!(
                "{} of {} still open after {} s{smaller}",
                expiry.open_at_end, expiry.holds, expiry.timeout_seconds
            ),
            full_size.then_some(false),
        ),
    }
}

/// A note for a run smaller than the target's size, which then gets no verdict.
fn smaller_run(size: u64, target_size: u64) -> String {
    if size >= target_size {
        String::new()
    } else {
        format!(" (fewer than the target's {target_size}: no verdict)")
    }
}

fn degradation(results: &Results) -> TargetRow {
    let target = format!(
        "degradation: rounds 1–3 of a fresh process within ±{:.0} % of the restarted round",
        crate::scenario::degradation::TOLERANCE * 100.0
    );
    match results.degradation.ran() {
        Some(degradation) => row(target, ratios(degradation), Some(degradation.passes())),
        None => row(target, not_run(), None),
    }
}

fn ratios(degradation: &DegradationResult) -> String {
    let ratios: Vec<String> = degradation
        .ratios
        .iter()
        .map(|ratio| format!("{ratio:.3}"))
        .collect();
    format!(
        "{} of {:.0} req/s",
        ratios.join(", "),
        degradation.restarted.per_second
    )
}
