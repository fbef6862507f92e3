//! `ledger-bench`: measure the inventory ledger and print a table per scenario and a targets
//! table (and write them all as JSON), each stated with the machine, the build profile, the
//! exact command line, the load, the durability and the date.
//!
//! By default it starts the real `ledger-api` binary in its own process on a fresh embedded
//! cluster (durable commits) and drives it over HTTP from this process, so the API's, the
//! database's and the load generator's CPU are measured apart. `--url` drives an API that is
//! already running instead (with `--database-url` for the scenarios that need its database).
//!
//! # Layout
//! - [`cli`]: the flags; [`run`]: the order of a run; [`results`]: every scenario's outcome;
//!   [`report`]: context, the printed report and JSON; [`table`]: the request table;
//!   [`targets`]: the targets table.
//! - [`api_process`]: the API's own process, started and always stopped; [`cpu`]: CPU time
//!   from /proc over each timed window.
//! - [`http`]: the lean HTTP/1.1 client; [`closed_loop`]: the closed-loop load generator;
//!   [`stats`]: percentiles.
//! - [`scenario`]: one module per scenario, (a) to (i).
//! - [`history`]: valid histories written straight through the event store, for the rebuild
//!   and cold-load scenarios; [`database`]: the bench's own connection to the API's database.

mod api_process;
mod cli;
mod closed_loop;
mod cpu;
mod database;
mod history;
mod http;
mod report;
mod results;
mod run;
mod scenario;
mod stats;
mod table;
mod targets;

use clap::Parser;
use std::process::ExitCode;

/// The exit code of a run cut short by a signal: 128 plus SIGINT's number, as shells report it.
const INTERRUPTED_EXIT_CODE: u8 = 130;

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = cli::Arguments::parse();
    let mut bench = Box::pin(run::run(&arguments));
    let finished = tokio::select! {
        report = &mut bench => Some(report),
        () = interrupted() => None,
    };
    let report = match finished {
        Some(Ok(report)) => report,
        Some(Err(error)) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
        None => {
            eprintln!("interrupted: stopping the API processes and removing their folders...");
            // Dropping the run drops its API processes, which stop them and their clusters.
            drop(bench);
            return ExitCode::from(INTERRUPTED_EXIT_CODE);
        }
    };
    report.print();
    let written = serde_json::to_string_pretty(&report.json())
        .map_err(|e| e.to_string())
        .and_then(|json| std::fs::write(&arguments.json, json).map_err(|e| e.to_string()));
    if let Err(error) = written {
        eprintln!("error: writing {}: {error}", arguments.json.display());
        return ExitCode::FAILURE;
    }
    if report.any_failed() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
