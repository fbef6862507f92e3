//! What every figure is measured on (machine, build profile, the exact command, load,
//! durability, date), the report printed to standard output, and the JSON document written
//! beside it.

use crate::cli::Arguments;
use crate::closed_loop::ScenarioResult;
use crate::results::Results;
use crate::scenario::{audit, cold_load, degradation, expiry, floor, lag, publisher, rebuild};
use crate::table::print_request_table;
use crate::targets;
use serde::Serialize;

/// Where and how the figures were measured.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub date: String,
    /// Logical processors listed in /proc/cpuinfo.
    pub cores: usize,
    pub cpu_model: Option<String>,
    /// MemTotal from /proc/meminfo.
    pub memory_gib: f64,
    /// The bench's own build profile.
    pub profile: &'static str,
    /// The bench's own command line, as this process received it.
    pub command: String,
    /// The API the scenarios drove: the binary started, or the URL given.
    pub api: String,
    pub connections: usize,
    /// The units of /proc's CPU times.
    pub clock_ticks_per_second: u64,
    /// /proc/loadavg's 1, 5 and 15 minute figures when the bench started and when it ended:
    /// on a shared machine, a load above the core count means the figures were measured
    /// beside other work.
    pub load_average_at_start: Option<String>,
    pub load_average_at_end: Option<String>,
    /// The durability settings of the API's database, when the bench could read them.
    pub durability: Option<String>,
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
    pub fn gather(arguments: &Arguments, api: String) -> Self {
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
        Self {
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            cores,
            cpu_model,
            memory_gib: memory_gib(),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            command: std::env::args()
                .map(|argument| shell_quoted(&argument))
                .collect::<Vec<_>>()
                .join(" "),
            api,
            connections: arguments.connections,
            clock_ticks_per_second: crate::cpu::clock_ticks_per_second(),
            load_average_at_start: load_average(),
            load_average_at_end: None,
            durability: None,
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

    fn print(&self) {
        let unknown = || "?".to_owned();
        println!("# Inventory ledger benchmark");
        println!("date: {}", self.date);
        println!("machine: {}", self.machine());
        println!("build profile: {} · API: {}", self.profile, self.api);
        println!("command: {}", self.command);
        println!(
            "load average (1/5/15 min): {} at start, {} at end",
            self.load_average_at_start.clone().unwrap_or_else(unknown),
            self.load_average_at_end.clone().unwrap_or_else(unknown),
        );
        println!("durability: {}", self.durability_line());
        println!(
            "CPU times from /proc at {} ticks per second; \"n/a\" where a process is not known",
            self.clock_ticks_per_second
        );
    }

    fn durability_line(&self) -> String {
        match &self.durability {
            None => "unknown (no access to the API's database)".to_owned(),
            Some(settings) if !settings.contains("off") => {
                format!("{settings} (durable commits)")
            }
            Some(settings) => format!("{settings} (NOT durable commits)"),
        }
    }
}

fn memory_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0 / 1024.0)
        })
        .unwrap_or(0.0)
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

pub struct Report {
    pub context: Context,
    pub results: Results,
    /// Problems outside any one scenario (an API that did not stop cleanly, say).
    pub problems: Vec<String>,
}

impl Report {
    /// A failed scenario, an oversell, or a problem outside the scenarios.
    pub fn any_failed(&self) -> bool {
        let r = &self.results;
        r.uncontended.failed()
            || r.hot_sku.failed()
            || r.locations.failed()
            || r.sellout.failed()
            || r.sellout.ran().is_some_and(|sellout| !sellout.exact())
            || r.lag.failed()
            || r.expiry.failed()
            || r.degradation.failed()
            || r.cold_load.failed()
            || r.rebuild.failed()
            || r.floor.failed()
            || r.audit.failed()
            || r.publisher.failed()
            || !self.problems.is_empty()
    }

    pub fn print(&self) {
        self.context.print();
        let r = &self.results;
        let connections = self.context.connections;
        r.uncontended.print("(a) Uncontended", |result| {
            print_closed_loop("(a) Uncontended keyed reserves", connections, result)
        });
        r.hot_sku.print("(b) One hot SKU", |result| {
            print_closed_loop("(b) One hot SKU", connections, result)
        });
        r.locations
            .print("(a3), (b3) Three locations per SKU", |result| {
                println!(
                    "## (a3), (b3) Three locations per SKU: {connections} keep-alive connections, \
                 closed loop"
                );
                print_request_table(&[&result.uncontended, &result.hot_sku]);
            });
        r.sellout.print("(c) Sell-out", |sellout| {
            print_closed_loop("(c) Hot SKU selling out", connections, &sellout.requests);
            println!("{}", sellout.verdict());
        });
        r.lag.print("(d) Read-model lag", lag::print);
        r.expiry.print("(e) Expiry", expiry::print);
        r.degradation.print("(f) Degradation", degradation::print);
        r.cold_load.print("(g) Cold load", cold_load::print);
        r.rebuild.print("(h) Rebuild", rebuild::print);
        r.floor.print("(i) Floor", floor::print);
        r.audit.print("(j) Audit trail", audit::print);
        r.publisher.print("(k) Publisher", publisher::print);
        println!();
        targets::print(&targets::evaluate(r));
        for problem in &self.problems {
            println!("PROBLEM: {problem}");
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "context": self.context,
            "results": self.results,
            "targets": targets::evaluate(&self.results),
            "problems": self.problems,
        })
    }
}

fn print_closed_loop(heading: &str, connections: usize, result: &ScenarioResult) {
    println!("## {heading}: {connections} keep-alive connections, closed loop");
    print_request_table(&[result]);
}
