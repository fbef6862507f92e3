//! `ledger-api`: serve the inventory ledger over HTTP. See `ledger-api --help`.

use clap::Parser;
use ledger_api::config::{Command, Config};
use ledger_api::startup::{self, Running};
use std::process::ExitCode;

/// The allocator of this binary: see the workspace manifest for why not the system one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `service.name` of this binary's spans unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE_NAME: &str = "ledger-api";

/// The exit status after a second Ctrl-C: 128 + SIGINT, as a shell reports it.
const SECOND_INTERRUPT_EXIT_CODE: u8 = 130;

fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::HashToken { token }) = &config.command {
        let token = match token.as_deref() {
            Some(token) if token != "-" => token.to_owned(),
            _ => {
                let mut line = String::new();
                if let Err(error) = std::io::stdin().read_line(&mut line) {
                    eprintln!("error: cannot read the token from standard input: {error}");
                    return ExitCode::FAILURE;
                }
                line.trim_end_matches(['\r', '\n']).to_owned()
            }
        };
        if token.is_empty() {
            eprintln!("error: the token is empty");
            return ExitCode::FAILURE;
        }
        println!("{}", ledger_api::auth::hash_token(&token));
        return ExitCode::SUCCESS;
    }
    let traces = ledger_startup::init_logging(
        config.log.log_format,
        ledger_startup::LogOutput::Stderr,
        SERVICE_NAME,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let running = match startup::start(config).await {
            Ok(running) => running,
            Err(error) => {
                tracing::error!(%error, "start-up failed");
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        print_banner(&running);
        wait_for_signal(&running).await;
        eprintln!("shutting down: finishing in-flight requests (Ctrl-C again to exit at once)");
        tokio::select! {
            _ = running.stop() => ExitCode::SUCCESS,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("second interrupt: exiting without waiting");
                ExitCode::from(SECOND_INTERRUPT_EXIT_CODE)
            }
        }
    });
    if code == ExitCode::from(SECOND_INTERRUPT_EXIT_CODE) {
        // Asked to exit at once: no waiting for the collector either.
        std::mem::forget(traces);
    } else if let Some(traces) = traces {
        traces.shutdown();
    }
    code
}

fn print_banner(running: &Running) {
    let url = format!("http://{}", running.address);
    println!("inventory ledger API listening on {url}");
    println!("  data: {}", running.backends_description);
    if running.open_access {
        println!("  WARNING: no tokens configured, the API is open to anyone who can reach it");
    }
    println!("  try:");
    println!(
        "    curl -s -X POST {url}/v1/skus/WIDGET-1/replenishments -H 'content-type: application/json' -d '{{\"quantity\": 10}}'"
    );
    println!(
        "    curl -s -X POST {url}/v1/skus/WIDGET-1/reservations -H 'content-type: application/json' -d '{{\"reservation_id\": \"order-1001\", \"quantity\": 2, \"ttl_seconds\": 900}}'"
    );
    println!("    curl -s {url}/v1/skus/WIDGET-1/history");
    println!("  API description: {url}/openapi.json · metrics: {url}/metrics · stop: Ctrl-C");
}

async fn wait_for_signal(running: &Running) {
    let terminate = async {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    };
    let failed = async {
        while !running.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
        _ = failed => tracing::error!("the HTTP server stopped on its own"),
    }
}
