//! `bench`: measure the inventory ledger and print a table per scenario (and write them all as
//! JSON), each stated with the machine, the build profile and the exact command line.
//!
//! By default it starts the real API in this process on the embedded default (a private
//! PostgreSQL cluster under a fresh temporary folder, durable commits), so the figures include
//! the application, PostgreSQL and the load generator on the same machine. `--url` drives an
//! API that is already running instead (with `--database-url` for the scenarios that need its
//! database).
//!
//! # Layout
//! - [`cli`]: the flags; [`report`]: context, tables and JSON; [`stats`]: percentiles.
//! - [`http`]: closed-loop HTTP load; [`reserve`]: scenarios 1 and 2 and the sell-out on it.
//! - [`lag`]: scenario 3, read-model lag under a steady open-loop load.
//! - [`history`]: valid histories written straight through the event store, for
//!   [`rebuild`] (scenario 4, rebuild speed) and [`cold_load`] (scenario 5).
//! - [`floor`]: scenario 6, PostgreSQL's single-row commit rate through pgbench.
//! - [`database`]: the bench's own connection to the ledger's PostgreSQL.

mod cli;
mod cold_load;
mod database;
mod floor;
mod history;
mod http;
mod lag;
mod rebuild;
mod report;
mod reserve;
mod stats;

use clap::Parser;
use cli::{Arguments, Optional};
use database::LedgerDatabase;
use report::{Context, Outcome, Report};

/// A request unanswered this long counts as an error, so a stalled API fails the scenario
/// instead of hanging the bench; a healthy one answers in milliseconds even under full load.
const REQUEST_TIMEOUT_SECONDS: u64 = 30;

#[tokio::main]
async fn main() {
    let arguments = Arguments::parse();
    let mut context = Context::gather(arguments.connections);
    let data_dir =
        std::env::temp_dir().join(format!("ledger-bench-{}", uuid::Uuid::new_v4().simple()));
    let mut running = None;
    let base = match &arguments.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let config = ledger_api::config::Config::try_parse_from([
                "api",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data_dir.to_str().expect("a UTF-8 temporary folder"),
                "--pool-size",
                &(arguments.connections + 8).to_string(),
            ])
            .expect("bench configuration");
            let server = ledger_api::startup::start(config)
                .await
                .expect("the API starts");
            let base = format!("http://{}", server.address);
            running = Some(server);
            base
        }
    };
    let database = open_database(&arguments, &data_dir).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(arguments.connections)
        .timeout(std::time::Duration::from_secs(REQUEST_TIMEOUT_SECONDS))
        .build()
        .expect("an HTTP client");
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let connections = arguments.connections;

    let reserve = reserve::run(
        &client,
        &base,
        &run,
        connections,
        arguments.requests,
        arguments.skus,
    )
    .await;
    let uncontended_per_second = reserve.uncontended.per_second;

    let lag = match prerequisites(&arguments, Optional::Lag, &database) {
        Err(outcome) => outcome,
        Ok(database) => {
            eprintln!("read-model lag...");
            let (rate_per_second, rate_source) = match arguments.lag_rate {
                Some(rate) => (rate, "as given".to_owned()),
                None => (
                    uncontended_per_second / 2.0,
                    format!("half the uncontended {uncontended_per_second:.0} req/s"),
                ),
            };
            let plan = lag::LagPlan {
                run: run.clone(),
                skus: arguments.skus,
                rate_per_second,
                rate_source,
                seconds: arguments.lag_seconds,
                poll_interval_ms: arguments.lag_poll_interval_ms,
            };
            lag::run(&client, &base, database, connections, plan)
                .await
                .into()
        }
    };
    let floor = match prerequisites(&arguments, Optional::Floor, &database) {
        Err(outcome) => outcome,
        Ok(database) => floor::run(
            database,
            connections,
            arguments.floor_seconds,
            uncontended_per_second,
        )
        .await
        .into(),
    };
    let rebuild = match prerequisites(&arguments, Optional::Rebuild, &database) {
        Err(outcome) => outcome,
        Ok(database) => {
            let plan = rebuild::RebuildPlan {
                run: run.clone(),
                events: arguments.rebuild_events,
                skus: arguments.rebuild_skus,
                appenders: connections.min(history::APPENDERS_MAX),
            };
            rebuild::run(database, plan).await.into()
        }
    };
    let cold_load = match prerequisites(&arguments, Optional::ColdLoad, &database) {
        Err(outcome) => outcome,
        Ok(database) => cold_load::run(
            database.store.clone(),
            database.database.clone(),
            &run,
            arguments.cold_load_events,
            arguments.cold_load_repetitions,
        )
        .await
        .into(),
    };

    context.finish();
    let report = Report {
        context,
        reserve,
        lag,
        rebuild,
        cold_load,
        floor,
    };
    report.print();
    std::fs::write(
        &arguments.json,
        serde_json::to_string_pretty(&report.json()).expect("JSON"),
    )
    .expect("the results file is writable");
    drop(database);
    if let Some(server) = running {
        server.stop().await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    if report.any_failed() {
        std::process::exit(1);
    }
}

/// The bench's own connection to the ledger's database, when a scenario needs one: the
/// embedded cluster the in-process API started, or `--database-url` beside `--url`.
async fn open_database(
    arguments: &Arguments,
    data_dir: &std::path::Path,
) -> Option<Result<LedgerDatabase, String>> {
    let needed = [
        Optional::Lag,
        Optional::Rebuild,
        Optional::ColdLoad,
        Optional::Floor,
    ]
    .into_iter()
    .any(|scenario| arguments.runs(scenario));
    if !needed {
        return None;
    }
    match (&arguments.url, &arguments.database_url) {
        (None, _) => Some(
            LedgerDatabase::embedded(data_dir, ledger_startup::backends::EMBEDDED_DATABASE).await,
        ),
        (Some(_), Some(database_url)) => Some(LedgerDatabase::from_url(database_url).await),
        (Some(_), None) => None,
    }
}

/// The database for `scenario`, or the outcome that stands in for its result: skipped by a
/// flag, skipped for want of a database, or failed because the database could not be opened.
fn prerequisites<'a, T>(
    arguments: &Arguments,
    scenario: Optional,
    database: &'a Option<Result<LedgerDatabase, String>>,
) -> Result<&'a LedgerDatabase, Outcome<T>> {
    if !arguments.runs(scenario) {
        return Err(Outcome::Skipped {
            reason: "by a flag".to_owned(),
        });
    }
    match database {
        Some(Ok(database)) => Ok(database),
        Some(Err(error)) => Err(Outcome::Failed {
            error: format!("cannot open the ledger's database: {error}"),
        }),
        None => Err(Outcome::Skipped {
            reason: "needs the API's database: pass --database-url with --url".to_owned(),
        }),
    }
}
