//! The table every HTTP scenario prints, and how a figure that may be unknown is shown.

use crate::closed_loop::ScenarioResult;

/// The table every HTTP scenario prints: answers, rate, latency, and the CPU the window cost.
pub fn print_request_table(rows: &[&ScenarioResult]) {
    println!(
        "| scenario | connections | requests | ok | 409 | errors | req/s | p50 ms | p90 ms | \
         p99 ms | max ms | CPU s API / PG / bench | CPU µs per request API / PG / bench | \
         CPU per reserve (API + PostgreSQL) µs | load 1 min before → after |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let cpu = &r.cpu;
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} / {} / {} \
             | {} / {} / {} | {} | {} → {} |",
            r.scenario,
            r.connections,
            r.requests,
            r.ok,
            r.refused,
            r.errors,
            r.per_second,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            figure(cpu.api_seconds, 2),
            figure(cpu.postgres_seconds, 2),
            figure(cpu.bench_seconds, 2),
            figure(cpu.api_per_request_us, 0),
            figure(cpu.postgres_per_request_us, 0),
            figure(cpu.bench_per_request_us, 0),
            figure(cpu.api_and_postgres_per_request_us, 0),
            figure(r.load_average_1min_before, 2),
            figure(r.load_average_1min_after, 2),
        );
    }
}

/// A figure with `decimals` decimals, or "n/a" when it is not known.
pub fn figure(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}
