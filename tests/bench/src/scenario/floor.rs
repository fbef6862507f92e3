//! Scenario (i), the naive floor: how many single-row INSERT-and-commit transactions a second
//! the same PostgreSQL takes at the same concurrency, measured by `pgbench` with a one-line
//! script: one-row insert into an unindexed table, no read, no check, durable commit. Every
//! reserve commits at least one transaction, so this rate bounds what the ledger can reach on
//! this database, and the uncontended reserve rate is reported as a share of it.
//!
//! The cluster's connection limit is shared with the API's pools, which stay open beside it;
//! when fewer slots are free than clients asked for, pgbench runs with as many as are free and
//! the report says so.

use crate::database::{LedgerDatabase, PgbenchTarget};
use ledger_postgres::cluster::{PrivateCluster, SUPERUSER};
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The table the floor's transactions insert into; created before the run, dropped after.
const FLOOR_TABLE: &str = "bench_floor";

/// pgbench worker threads (`-j`): one per core of the small machines this runs on.
pub const PGBENCH_THREADS: usize = 2;

/// Connection slots left free beside pgbench's clients: the bench's own pool may open one
/// more while pgbench runs, and an operator may need one to look at the cluster.
const FREE_CONNECTIONS_KEPT: i64 = 3;

/// What pgbench's transactions do, as the report states it.
pub const FLOOR_WORKLOAD: &str =
    "one-row insert into an unindexed table, no read, no check, durable commit";

/// How long pgbench may take beyond its own run time (connecting, reporting) before it is
/// considered hung.
const PGBENCH_GRACE_SECONDS: u64 = 60;

#[derive(Debug, Clone, Serialize)]
pub struct FloorResult {
    /// The pgbench command as run.
    pub command: String,
    /// The cluster's durability settings, as PostgreSQL reports them.
    pub durability: String,
    /// The clients asked for (`--connections`) and those pgbench ran with.
    pub clients_asked: usize,
    pub clients: usize,
    pub threads: usize,
    pub seconds: u64,
    pub transactions: Option<u64>,
    pub failed_transactions: Option<u64>,
    pub tps: f64,
    pub latency_average_ms: Option<f64>,
    /// The uncontended reserve rate of scenario (a) and its share of the floor.
    pub reserve_per_second: f64,
    pub reserve_share_of_floor: f64,
}

pub async fn run(
    database: &LedgerDatabase,
    clients: usize,
    seconds: u64,
    reserve_per_second: f64,
) -> Result<FloorResult, String> {
    let pgbench = find_pgbench()?;
    let clients_asked = clients;
    let clients = clients_that_fit(database, clients).await?;
    let client = database.client().await?;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (v integer NOT NULL)"
        ))
        .await
        .map_err(|e| format!("creating {FLOOR_TABLE}: {e}"))?;
    let script = std::env::temp_dir().join(format!(
        "ledger-bench-floor-{}.sql",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(
        &script,
        format!("INSERT INTO {FLOOR_TABLE}(v) VALUES (1);\n"),
    )
    .map_err(|e| format!("{}: {e}", script.display()))?;
    let outcome = run_pgbench(
        &pgbench,
        &database.pgbench_target,
        &script,
        clients,
        seconds,
    )
    .await;
    let _ = std::fs::remove_file(&script);
    if let Err(error) = client
        .batch_execute(&format!("DROP TABLE IF EXISTS {FLOOR_TABLE}"))
        .await
    {
        eprintln!("warning: could not drop {FLOOR_TABLE}: {error}");
    }
    let (command, output) = outcome?;
    let tps =
        field(&output, "tps = ").ok_or_else(|| format!("no tps in pgbench's output:\n{output}"))?;
    Ok(FloorResult {
        command,
        durability: database.durability().await?,
        clients_asked,
        clients,
        threads: PGBENCH_THREADS.min(clients.max(1)),
        seconds,
        transactions: field(&output, "number of transactions actually processed: ")
            .map(|n| n as u64),
        failed_transactions: field(&output, "number of failed transactions: ").map(|n| n as u64),
        tps,
        latency_average_ms: field(&output, "latency average = "),
        reserve_per_second,
        reserve_share_of_floor: reserve_per_second / tps,
    })
}

/// As many of the clients asked for as the cluster has connection slots free for.
async fn clients_that_fit(database: &LedgerDatabase, asked: usize) -> Result<usize, String> {
    let free = database.free_connections().await? - FREE_CONNECTIONS_KEPT;
    let clients = asked.min(usize::try_from(free).unwrap_or(0));
    if clients == 0 {
        return Err(format!(
            "no connection slot is free for pgbench beside the API's pools ({free} free)"
        ));
    }
    Ok(clients)
}

pub fn print(floor: &FloorResult) {
    println!("## (i) Floor: {FLOOR_WORKLOAD} (pgbench on the same cluster)");
    println!("`{}`; durability: {}", floor.command, floor.durability);
    if floor.clients < floor.clients_asked {
        println!(
            "pgbench ran {} clients, not the {} asked: the cluster's connection limit is shared \
             with the API's pools, which stay open",
            floor.clients, floor.clients_asked
        );
    }
    println!(
        "| clients | threads | seconds | transactions | tps | latency avg ms | reserve req/s (a) | reserve / floor |"
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

/// pgbench from the PostgreSQL installation the embedded cluster runs on: beside the server
/// binaries the cluster found, or beside the files they link to (a folder on PATH often holds
/// only links to `initdb` and `pg_ctl`), or else on PATH.
fn find_pgbench() -> Result<PathBuf, String> {
    let binaries = PrivateCluster::find_binaries().map_err(|e| e.to_string())?;
    let linked = std::fs::canonicalize(binaries.join("pg_ctl"))
        .ok()
        .and_then(|pg_ctl| pg_ctl.parent().map(Path::to_owned));
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    std::iter::once(binaries.clone())
        .chain(linked)
        .chain(on_path)
        .map(|folder| folder.join("pgbench"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "pgbench was found neither beside the server binaries in {} nor on PATH",
                binaries.display()
            )
        })
}

/// Run pgbench against `target`; returns the command as run and its standard output.
async fn run_pgbench(
    pgbench: &Path,
    target: &PgbenchTarget,
    script: &Path,
    clients: usize,
    seconds: u64,
) -> Result<(String, String), String> {
    let clients = clients.max(1);
    let mut arguments: Vec<String> = vec![
        "-n".into(),
        "-c".into(),
        clients.to_string(),
        "-j".into(),
        PGBENCH_THREADS.min(clients).to_string(),
        "-T".into(),
        seconds.to_string(),
        "-f".into(),
        script.display().to_string(),
    ];
    // The embedded cluster is reached over its socket as the superuser; as root, run pgbench
    // as that user, as the cluster runs its own tools, so the socket's owner-only permissions
    // hold without relying on root's privileges.
    let run_as = match target {
        PgbenchTarget::Socket { socket_dir, dbname } => {
            arguments.extend([
                "-h".into(),
                socket_dir.display().to_string(),
                "-p".into(),
                "5432".into(),
                "-U".into(),
                SUPERUSER.into(),
                dbname.clone(),
            ]);
            running_as_root().then_some(SUPERUSER)
        }
        PgbenchTarget::Url(url) => {
            arguments.push(url.clone());
            None
        }
    };
    let mut program: Vec<String> = match run_as {
        Some(user) => vec!["runuser".into(), "-u".into(), user.into(), "--".into()],
        None => Vec::new(),
    };
    program.push(pgbench.display().to_string());
    program.extend(arguments);
    let shown = match target {
        // A URL may carry a password; show the command without it.
        PgbenchTarget::Url(_) => {
            let mut shown = program.clone();
            shown.pop();
            shown.push("<database-url>".into());
            shown.join(" ")
        }
        PgbenchTarget::Socket { .. } => program.join(" "),
    };
    eprintln!("floor: {shown}");
    let mut command = tokio::process::Command::new(&program[0]);
    command
        .args(&program[1..])
        .stdin(std::process::Stdio::null())
        // A working directory the server user can enter.
        .current_dir(std::env::temp_dir());
    let output = tokio::time::timeout(
        Duration::from_secs(seconds + PGBENCH_GRACE_SECONDS),
        command.output(),
    )
    .await
    .map_err(|_| format!("`{shown}` did not finish in time"))?
    .map_err(|e| format!("`{shown}`: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "`{shown}` failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            stdout.trim()
        ));
    }
    Ok((shown, stdout))
}

/// The number after `label` on the first line of pgbench's report that starts with it.
fn field(output: &str, label: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn pgbench_report_fields_are_parsed() {
        let report = "transaction type: /tmp/floor.sql\n\
                      number of transactions actually processed: 12345\n\
                      number of failed transactions: 0 (0.000%)\n\
                      latency average = 12.961 ms\n\
                      initial connection time = 9.532 ms\n\
                      tps = 1234.442317 (without initial connection time)\n";
        assert_eq!(field(report, "tps = "), Some(1234.442317));
        assert_eq!(
            field(report, "number of transactions actually processed: "),
            Some(12345.0)
        );
        assert_eq!(field(report, "number of failed transactions: "), Some(0.0));
        assert_eq!(field(report, "latency average = "), Some(12.961));
        assert_eq!(field(report, "tps excluding = "), None);
    }
}
