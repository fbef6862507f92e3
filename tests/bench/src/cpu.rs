//! CPU time over a timed window, read from /proc: the API process, PostgreSQL (the postmaster
//! and every process it forked) and the bench itself. Each figure is user plus system time,
//! summed over every thread of the process.
//!
//! Background work (the projectors, the expiry worker) is counted when it runs: the
//! projection of a window's last events that spills past its end is balanced by the projection
//! of earlier events within it, as long as the load is steady.
//!
//! PostgreSQL's backends come and go. A backend that ends between two samples is still counted:
//! once the postmaster has reaped it, its times are added to the postmaster's "children" times
//! (`cutime` and `cstime`), which the sum includes. Two blind spots remain, both small against a
//! window of seconds: a backend that has exited but is not yet reaped when a sample is taken,
//! and one that is reaped between reading the postmaster's line and its own (each sample reads
//! the postmaster first, so such a backend is missed once rather than counted twice).

use serde::Serialize;

/// The processes whose CPU time a window reports; `None` where the bench does not know the
/// process (an API it did not start, unless its id was given).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Processes {
    pub api_pid: Option<u32>,
    pub postmaster_pid: Option<u32>,
}

/// Cumulative CPU ticks at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    api_ticks: Option<u64>,
    postgres_ticks: Option<u64>,
    bench_ticks: Option<u64>,
}

/// CPU time spent over a window, in seconds and per request in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUsage {
    pub api_seconds: Option<f64>,
    pub postgres_seconds: Option<f64>,
    pub bench_seconds: Option<f64>,
    pub api_per_request_us: Option<f64>,
    pub postgres_per_request_us: Option<f64>,
    pub bench_per_request_us: Option<f64>,
    /// What one request cost the server side: the API and PostgreSQL together, background
    /// work (projectors, expiry) included.
    pub api_and_postgres_per_request_us: Option<f64>,
}

/// The fields of one /proc/PID/stat line the accounting needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessStat {
    parent_pid: u32,
    own_ticks: u64,
    reaped_children_ticks: u64,
}

impl Processes {
    pub fn sample(&self) -> CpuSample {
        CpuSample {
            api_ticks: self.api_pid.and_then(|pid| own_ticks(&pid.to_string())),
            postgres_ticks: self.postmaster_pid.and_then(postgres_ticks),
            bench_ticks: own_ticks("self"),
        }
    }
}

impl CpuSample {
    /// The CPU spent from this sample to `later`, over `requests` requests.
    pub fn until(&self, later: &CpuSample, requests: u64) -> CpuUsage {
        let seconds = |before: Option<u64>, after: Option<u64>| {
            Some(after?.saturating_sub(before?) as f64 / clock_ticks_per_second() as f64)
        };
        let per_request = |seconds: Option<f64>| {
            seconds
                .filter(|_| requests > 0)
                .map(|s| s * 1e6 / requests as f64)
        };
        let api_seconds = seconds(self.api_ticks, later.api_ticks);
        let postgres_seconds = seconds(self.postgres_ticks, later.postgres_ticks);
        let bench_seconds = seconds(self.bench_ticks, later.bench_ticks);
        let server_seconds = api_seconds.zip(postgres_seconds).map(|(a, p)| a + p);
        CpuUsage {
            api_seconds,
            postgres_seconds,
            bench_seconds,
            api_per_request_us: per_request(api_seconds),
            postgres_per_request_us: per_request(postgres_seconds),
            bench_per_request_us: per_request(bench_seconds),
            api_and_postgres_per_request_us: per_request(server_seconds),
        }
    }
}

/// The kernel's clock ticks per second, the unit of /proc/PID/stat's times (sysconf's
/// `_SC_CLK_TCK`, read through a safe wrapper since the workspace forbids unsafe code).
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// The postmaster's own and reaped children's ticks, plus the own ticks of every live process
/// whose parent it is.
fn postgres_ticks(postmaster_pid: u32) -> Option<u64> {
    let postmaster = read_stat(&postmaster_pid.to_string())?;
    let mut ticks = postmaster.own_ticks + postmaster.reaped_children_ticks;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process that ended since the listing has no line any more: nothing to add.
        if let Some(stat) = read_stat(pid).filter(|s| s.parent_pid == postmaster_pid) {
            ticks += stat.own_ticks;
        }
    }
    Some(ticks)
}

fn own_ticks(pid: &str) -> Option<u64> {
    read_stat(pid).map(|stat| stat.own_ticks)
}

fn read_stat(pid: &str) -> Option<ProcessStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parse one /proc/PID/stat line (see proc(5)). The command name in parentheses may hold
/// spaces and parentheses itself, so the fields are counted from its last closing parenthesis.
fn parse_stat(line: &str) -> Option<ProcessStat> {
    let (_, after_name) = line.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is proc(5)'s field 3 (state); field N is at index N - 3.
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(ProcessStat {
        parent_pid: u32::try_from(field(4)?).ok()?,
        own_ticks: field(14)? + field(15)?,
        reaped_children_ticks: field(16)? + field(17)?,
    })
}

/// The 1-minute load average from /proc/loadavg.
pub fn load_average_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_from_after_the_command_name() {
        let line = "4242 (postgres: a (b) c) S 17 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 30 12 20 0 1 0 123456 1000000 500 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(ProcessStat {
                parent_pid: 17,
                own_ticks: 325,
                reaped_children_ticks: 42,
            })
        );
        assert_eq!(parse_stat("4242 (truncated"), None);
    }

    #[test]
    fn cpu_per_request_is_in_microseconds_and_unknown_processes_stay_unknown() {
        let ticks = clock_ticks_per_second();
        let before = CpuSample {
            api_ticks: Some(0),
            postgres_ticks: None,
            bench_ticks: Some(0),
        };
        let after = CpuSample {
            api_ticks: Some(ticks),
            postgres_ticks: None,
            bench_ticks: Some(ticks * 2),
        };
        let usage = before.until(&after, 1_000);
        assert_eq!(usage.api_seconds, Some(1.0));
        assert_eq!(usage.api_per_request_us, Some(1_000.0));
        assert_eq!(usage.bench_per_request_us, Some(2_000.0));
        assert_eq!(usage.postgres_seconds, None);
        assert_eq!(usage.api_and_postgres_per_request_us, None);
    }
}
