//! What every figure is measured on (machine, build profile, the exact command), the tables
//! printed to standard output, and the JSON document written beside them.

use crate::cold_load::ColdLoadResult;
use crate::floor::FloorResult;
use crate::http::ScenarioResult;
use crate::lag::LagResult;
use crate::rebuild::RebuildResult;
use crate::reserve::ReserveResults;
use serde::Serialize;

/// Where and how the figures were measured.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// Logical processors listed in /proc/cpuinfo.
    pub cores: usize,
    pub cpu_model: Option<String>,
    /// MemTotal from /proc/meminfo.
    pub memory_gib: f64,
    pub profile: &'static str,
    /// The bench's own command line, as this process received it.
    pub command: String,
    pub connections: usize,
    /// /proc/loadavg's 1, 5 and 15 minute figures when the bench started and when it ended:
    /// on a shared machine, a load above the core count means the figures were measured
    /// beside other work.
    pub load_average_at_start: Option<String>,
    pub load_average_at_end: Option<String>,
}

fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

impl Context {
    pub fn gather(connections: usize) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let listed = cpuinfo
            .lines()
            .filter(|line| line.starts_with("processor"))
            .count();
        let cores = if listed > 0 {
            listed
        } else {
            std::thread::available_parallelism().map_or(0, |n| n.get())
        };
        let cpu_model = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, model)| model.trim().to_owned());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib / 1024.0 / 1024.0)
            })
            .unwrap_or(0.0);
        Self {
            cores,
            cpu_model,
            memory_gib,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            command: std::env::args()
                .map(|argument| shell_quoted(&argument))
                .collect::<Vec<_>>()
                .join(" "),
            connections,
            load_average_at_start: load_average(),
            load_average_at_end: None,
        }
    }

    /// Record the state of the machine at the end of the run.
    pub fn finish(&mut self) {
        self.load_average_at_end = load_average();
    }

    pub fn machine(&self) -> String {
        let model = self
            .cpu_model
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        format!(
            "{} cores{model}, {:.1} GiB memory",
            self.cores, self.memory_gib
        )
    }

    pub fn line(&self) -> String {
        let unknown = || "?".to_owned();
        format!(
            "machine: {} · profile: {} · command: {}\n\
             load average (1/5/15 min): {} at start, {} at end",
            self.machine(),
            self.profile,
            self.command,
            self.load_average_at_start.clone().unwrap_or_else(unknown),
            self.load_average_at_end.clone().unwrap_or_else(unknown),
        )
    }
}

fn shell_quoted(argument: &str) -> String {
    let plain = !argument.is_empty()
        && argument
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
    if plain {
        argument.to_owned()
    } else {
        format!("'{}'", argument.replace('\'', r"'\''"))
    }
}

/// A scenario beyond the always-run ones: its result, or why there is none.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome<T> {
    Ran(T),
    Skipped { reason: String },
    Failed { error: String },
}

impl<T> From<Result<T, String>> for Outcome<T> {
    fn from(result: Result<T, String>) -> Self {
        match result {
            Ok(value) => Self::Ran(value),
            Err(error) => Self::Failed { error },
        }
    }
}

impl<T> Outcome<T> {
    pub fn failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }

    /// Print the section's heading, then the result through `table`, or why there is none.
    fn print(&self, heading: &str, table: impl FnOnce(&T)) {
        println!();
        match self {
            Self::Ran(result) => table(result),
            Self::Skipped { reason } => println!("## {heading}: skipped ({reason})"),
            Self::Failed { error } => println!("## {heading}: FAILED: {error}"),
        }
    }
}

pub struct Report {
    pub context: Context,
    pub reserve: ReserveResults,
    pub lag: Outcome<LagResult>,
    pub rebuild: Outcome<RebuildResult>,
    pub cold_load: Outcome<ColdLoadResult>,
    pub floor: Outcome<FloorResult>,
}

impl Report {
    pub fn any_failed(&self) -> bool {
        self.reserve.oversold()
            || self.lag.failed()
            || self.rebuild.failed()
            || self.cold_load.failed()
            || self.floor.failed()
    }

    pub fn print(&self) {
        println!("{}", self.context.line());
        println!();
        self.print_requests();
        self.lag.print("3. Read-model lag", print_lag);
        self.rebuild.print("4. Rebuild", print_rebuild);
        self.cold_load.print("5. Cold load", print_cold_load);
        self.floor.print("6. Floor", print_floor);
    }

    fn print_requests(&self) {
        println!(
            "## Reserves over HTTP ({} connections closed loop; the lag scenario open loop)",
            self.context.connections
        );
        println!(
            "| scenario | requests | ok | 409 | errors | req/s | p50 ms | p90 ms | p99 ms | max ms |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let open_loop = match &self.lag {
            Outcome::Ran(lag) => Some(&lag.requests),
            _ => None,
        };
        for r in self.reserve.rows().into_iter().chain(open_loop) {
            print_request_row(r);
        }
        println!(
            "sell-out: stock {}, successful reservations {} — {}",
            self.reserve.sellout_stock,
            self.reserve.sellout.ok,
            if self.reserve.oversold() {
                "MISMATCH"
            } else {
                "exactly the stock, zero oversell"
            }
        );
    }

    pub fn json(&self) -> serde_json::Value {
        let reserve = &self.reserve;
        serde_json::json!({
            "machine": self.context.machine(),
            "profile": self.context.profile,
            "command": self.context.command,
            "connections": self.context.connections,
            "context": self.context,
            "results": reserve.rows(),
            "sellout": {
                "stock": reserve.sellout_stock,
                "successful_reservations": reserve.sellout.ok,
                "oversold": reserve.oversold(),
            },
            "read_model_lag": self.lag,
            "rebuild": self.rebuild,
            "cold_load": self.cold_load,
            "floor": self.floor,
        })
    }
}

fn print_request_row(r: &ScenarioResult) {
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

fn print_lag(lag: &LagResult) {
    println!(
        "## 3. Read-model lag: {} checkpoint, open loop at {:.0} req/s ({}) for {} s",
        lag.projection, lag.target_per_second, lag.target_source, lag.seconds_planned
    );
    println!(
        "| projection | req/s sent | answered ok | lag measured | lag p50 ms | lag p99 ms | lag max ms | poll every ms | sends late |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
        lag.projection,
        lag.requests.per_second,
        lag.requests.ok,
        lag.measured,
        lag.lag_p50_ms,
        lag.lag_p99_ms,
        lag.lag_max_ms,
        lag.poll_interval_ms_mean,
        lag.sent_late
    );
    println!(
        "lag = API answer → first checkpoint read at or past the answer's position; \
         resolution one poll ({:.1} ms mean){}",
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

fn print_rebuild(rebuild: &RebuildResult) {
    let written = &rebuild.written;
    println!(
        "## 4. Rebuild: {} events written over {} SKUs in {:.1} s ({:.0} events/s through EventStore::append)",
        written.events, written.streams, written.seconds, written.events_per_second
    );
    match rebuild.live_catch_up_seconds {
        Some(seconds) => {
            println!("live projectors reached the log's head {seconds:.1} s after the last append")
        }
        None => println!("live projectors had NOT caught up when the rebuilds started"),
    }
    println!("| projection | events applied | seconds | events/s | rows match live |");
    println!("|---|---:|---:|---:|---|");
    for p in &rebuild.projections {
        println!(
            "| {} | {} | {:.1} | {:.0} | {} |",
            p.projection,
            p.events_applied,
            p.seconds,
            p.events_per_second,
            if p.rows_match_live { "yes" } else { "NO" }
        );
    }
}

fn print_cold_load(cold: &ColdLoadResult) {
    println!(
        "## 5. Cold load: SKU {} with {} events (written in {:.1} s)",
        cold.sku, cold.events, cold.write_seconds
    );
    println!("| load path | repetitions | min ms | median ms | max ms | events/s at median |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &cold.rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            row.description,
            row.repetitions,
            row.min_ms,
            row.median_ms,
            row.max_ms,
            row.events_per_second
        );
    }
}

fn print_floor(floor: &FloorResult) {
    println!(
        "## 6. Floor: single-row INSERT-and-commit transactions, `{}`",
        floor.command
    );
    println!(
        "| clients | threads | seconds | transactions | tps | latency avg ms | reserve req/s (1.) | reserve / floor |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {:.0} | {} | {:.0} | {:.1}% |",
        floor.clients,
        floor.threads,
        floor.seconds,
        floor
            .transactions
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        floor.tps,
        floor
            .latency_average_ms
            .map_or_else(|| "?".to_owned(), |ms| format!("{ms:.2}")),
        floor.reserve_per_second,
        floor.reserve_share_of_floor * 100.0
    );
}
