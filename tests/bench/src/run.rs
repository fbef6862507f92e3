//! One run of the bench: start (or find) the API, run the scenarios in order, stop the API,
//! then run the degradation scenario on API processes of its own, so that no two scenarios
//! share the machine.

use crate::api_process::{ApiOptions, ApiProcess, DataFolder};
use crate::cli::{Arguments, Optional};
use crate::closed_loop::Length;
use crate::cpu::Processes;
use crate::database::LedgerDatabase;
use crate::history;
use crate::http::Endpoint;
use crate::report::{Context, Report};
use crate::results::{Outcome, Results};
use crate::scenario::uncontended::{self, Skus};
use crate::scenario::{
    audit, cold_load, degradation, expiry, floor, hot_sku, lag, locations, publisher, rebuild,
    sellout, DatabaseAccess, Target,
};

/// The API scenarios (a) to (e) and (g) to (i) drive.
struct MainApi {
    /// The process the bench started; `None` with `--url`. Declared before the folder, so a
    /// drop stops the process before its folder is removed.
    process: Option<ApiProcess>,
    target: Target,
    /// The bench's own connection to the API's database, or why there is none.
    database: DatabaseAccess,
    /// The API's data folder, kept only to be removed when dropped (after the process).
    _folder: Option<DataFolder>,
}

/// The whole run; an error when the API the scenarios drive cannot be had at all.
pub async fn run(arguments: &Arguments) -> Result<Report, String> {
    let options = ApiOptions::new(
        arguments.api_binary.clone(),
        arguments.api_pool_size(),
        arguments.api_arguments.clone(),
    );
    let api = match (&arguments.url, &options) {
        (Some(url), _) => format!("already running at {url}"),
        (None, Ok(options)) => format!("{} in its own process", options.binary.display()),
        (None, Err(error)) => return Err(error.clone()),
    };
    let mut report = Report {
        context: Context::gather(arguments, api),
        results: Results::default(),
        problems: Vec::new(),
    };
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    run_main(arguments, &options, &run, &mut report).await?;
    report.results.degradation = match (&arguments.url, &options) {
        _ if !arguments.runs(Optional::Degradation) => skipped("by a flag"),
        (Some(_), _) => skipped("needs to start API processes of its own, not --url"),
        (None, Err(error)) => Outcome::Failed {
            error: error.clone(),
        },
        (None, Ok(options)) => degradation::run(options, degradation_plan(arguments, &run))
            .await
            .into(),
    };
    report.results.publisher = match (&arguments.url, &options) {
        _ if !arguments.runs(Optional::Publisher) => skipped("by a flag"),
        (Some(_), _) => skipped("needs to start API processes of its own, not --url"),
        (None, Err(error)) => Outcome::Failed {
            error: error.clone(),
        },
        (None, Ok(options)) => publisher::run(options, publisher_plan(arguments, &run))
            .await
            .into(),
    };
    report.context.finish();
    Ok(report)
}

/// Start the main API, run its scenarios, stop it and remove its folder.
async fn run_main(
    arguments: &Arguments,
    options: &Result<ApiOptions, String>,
    run: &str,
    report: &mut Report,
) -> Result<(), String> {
    let main = open_main(arguments, options, run).await?;
    report.context.durability = match &main.database {
        Ok(database) => database.durability().await.ok(),
        Err(_) => None,
    };
    run_on_main(arguments, &main, &mut report.results).await;
    if let Some(process) = main.process {
        if let Err(error) = process.stop().await {
            report.problems.push(format!("stopping the API: {error}"));
        }
    }
    Ok(())
}

fn skipped<T>(reason: &str) -> Outcome<T> {
    Outcome::Skipped {
        reason: reason.to_owned(),
    }
}

/// Start the API on a fresh folder and open its database, or attach to the one at `--url`.
async fn open_main(
    arguments: &Arguments,
    options: &Result<ApiOptions, String>,
    run: &str,
) -> Result<MainApi, String> {
    let target = |endpoint, processes| Target {
        endpoint,
        processes,
        connections: arguments.connections,
        warmup: arguments.warmup(),
        run: run.to_owned(),
    };
    if let Some(url) = &arguments.url {
        let database = match &arguments.database_url {
            Some(database_url) => LedgerDatabase::from_url(database_url).await,
            None => Err("needs the API's database: pass --database-url with --url".to_owned()),
        };
        let processes = Processes {
            api_pid: arguments.api_pid,
            postmaster_pid: arguments.postgres_pid,
        };
        return Ok(MainApi {
            process: None,
            target: target(std::sync::Arc::new(Endpoint::parse(url)?), processes),
            database,
            _folder: None,
        });
    }
    let options = options.as_ref().map_err(Clone::clone)?;
    let folder = DataFolder::new("main")?;
    eprintln!("starting the API on {}...", folder.path().display());
    let process = ApiProcess::start(options, folder.path()).await?;
    let database =
        LedgerDatabase::embedded(folder.path(), ledger_startup::backends::EMBEDDED_DATABASE).await;
    Ok(MainApi {
        target: target(process.endpoint.clone(), process.processes()),
        process: Some(process),
        database,
        _folder: Some(folder),
    })
}

/// Scenarios (a) to (e) and (g) to (i), in order.
async fn run_on_main(arguments: &Arguments, main: &MainApi, results: &mut Results) {
    let target = &main.target;
    let skus = Skus::prepare(target, format!("B{}-", target.run), arguments.skus).await;
    results.uncontended = match &skus {
        Ok(skus) => uncontended::run(
            target,
            skus,
            Length::from(arguments.measure()),
            uncontended::name(skus.count()),
        )
        .await
        .into(),
        Err(error) => Outcome::Failed {
            error: error.clone(),
        },
    };
    results.hot_sku = hot_sku::run(target, Length::from(arguments.measure()))
        .await
        .into();
    results.locations = if arguments.runs(Optional::Locations) {
        locations::run(target, arguments.skus, Length::from(arguments.measure()))
            .await
            .into()
    } else {
        skipped("by a flag")
    };
    results.sellout = sellout::run(target, arguments.sellout_stock).await.into();
    let uncontended_per_second = results.uncontended.ran().map(|r| r.per_second);
    results.lag = match prerequisites(arguments, Optional::Lag, &main.database) {
        Err(outcome) => outcome,
        Ok(database) => {
            let plan = lag_plan(arguments, &target.run, uncontended_per_second);
            lag::run(target, database, plan).await.into()
        }
    };
    results.expiry = match (
        prerequisites(arguments, Optional::Expiry, &main.database),
        &skus,
    ) {
        (Err(outcome), _) => outcome,
        (Ok(_), Err(_)) => skipped("needs the SKUs of (a), which could not be prepared"),
        (Ok(database), Ok(skus)) => {
            let plan = expiry_plan(arguments, main.process.as_ref(), uncontended_per_second);
            expiry::run(target, database, skus, plan).await.into()
        }
    };
    run_on_database(arguments, main, results).await;
}

/// Scenarios (g) to (i): the library and pgbench on the API's database.
async fn run_on_database(arguments: &Arguments, main: &MainApi, results: &mut Results) {
    let run = &main.target.run;
    results.cold_load = match prerequisites(arguments, Optional::ColdLoad, &main.database) {
        Err(outcome) => outcome,
        Ok(database) => cold_load::run(
            database.store.clone(),
            database.database.clone(),
            run,
            arguments.cold_load_events,
            arguments.cold_load_repetitions,
        )
        .await
        .into(),
    };
    results.rebuild = match prerequisites(arguments, Optional::Rebuild, &main.database) {
        Err(outcome) => outcome,
        Ok(database) => {
            let plan = rebuild::RebuildPlan {
                run: run.clone(),
                events: arguments.rebuild_events,
                skus: arguments.rebuild_skus,
                appenders: arguments.connections.min(history::APPENDERS_MAX),
            };
            rebuild::run(database, plan).await.into()
        }
    };
    results.audit = match prerequisites(arguments, Optional::Audit, &main.database) {
        Err(outcome) => outcome,
        Ok(database) => {
            let plan = audit::AuditPlan {
                run: run.clone(),
                events: arguments.audit_events,
                skus: arguments.audit_skus,
                appenders: arguments.connections.min(history::APPENDERS_MAX),
                reserves_per_second: results.uncontended.ran().map(|r| r.per_second),
            };
            audit::run(database, plan).await.into()
        }
    };
    let uncontended_per_second = results.uncontended.ran().map_or(0.0, |r| r.per_second);
    results.floor = match prerequisites(arguments, Optional::Floor, &main.database) {
        Err(outcome) => outcome,
        Ok(database) => floor::run(
            database,
            arguments.connections,
            arguments.floor_seconds,
            uncontended_per_second,
        )
        .await
        .into(),
    };
}

/// The database for `scenario`, or the outcome that stands in for its result: skipped by a
/// flag, skipped for want of a database, or failed because the database could not be opened.
fn prerequisites<'a, T>(
    arguments: &Arguments,
    scenario: Optional,
    database: &'a DatabaseAccess,
) -> Result<&'a LedgerDatabase, Outcome<T>> {
    if !arguments.runs(scenario) {
        return Err(skipped("by a flag"));
    }
    match database {
        Ok(database) => Ok(database),
        Err(error) if arguments.url.is_some() && arguments.database_url.is_none() => {
            Err(skipped(error))
        }
        Err(error) => Err(Outcome::Failed {
            error: format!("cannot open the ledger's database: {error}"),
        }),
    }
}

fn lag_plan(arguments: &Arguments, run: &str, uncontended_per_second: Option<f64>) -> lag::LagPlan {
    let (rate_per_second, rate_source) = match (arguments.lag_rate, uncontended_per_second) {
        (Some(rate), _) => (rate, "as given".to_owned()),
        (None, Some(uncontended)) => (
            uncontended / 2.0,
            format!("half the uncontended {uncontended:.0} req/s"),
        ),
        (None, None) => (0.0, "no uncontended rate to halve".to_owned()),
    };
    lag::LagPlan {
        run: run.to_owned(),
        skus: arguments.skus,
        rate_per_second,
        rate_source,
        seconds: arguments.lag_seconds,
        poll_interval_ms: arguments.lag_poll_interval_ms,
    }
}

fn expiry_plan(
    arguments: &Arguments,
    process: Option<&ApiProcess>,
    uncontended_per_second: Option<f64>,
) -> expiry::ExpiryPlan {
    expiry::ExpiryPlan {
        holds: arguments.expiry_holds,
        skus: arguments.expiry_skus,
        timeout_seconds: arguments.expiry_timeout_seconds,
        uncontended_per_second,
        expiry_interval_ms: process.map(ApiProcess::expiry_interval_ms),
    }
}

fn publisher_plan(arguments: &Arguments, run: &str) -> publisher::PublisherPlan {
    publisher::PublisherPlan {
        run: run.to_owned(),
        skus: arguments.skus,
        length: Length::from(arguments.measure()),
        connections: arguments.connections,
        warmup: arguments.warmup(),
        rabbitmq_url: arguments.rabbitmq_url.clone(),
        nats_url: arguments.nats_url.clone(),
    }
}

fn degradation_plan(arguments: &Arguments, run: &str) -> degradation::DegradationPlan {
    degradation::DegradationPlan {
        skus: arguments.skus,
        seconds: arguments.degradation_seconds,
        connections: arguments.connections,
        warmup: arguments.warmup(),
        run: run.to_owned(),
    }
}
