//! The `projector` binary and the optional webhook delivery, against real PostgreSQL.

mod support;

use axum::http::StatusCode;
use ledger_projections::webhook::{delivery_log, WebhookOptions};
use ledger_projections::ProjectorOptions;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::process::Command;

/// How long the binary may take to stop after SIGTERM.
const STOP_DEADLINE_MS: u64 = 30_000;

fn projector() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger-projector"));
    for variable in ledger_projections::cli::environment_variables() {
        command.env_remove(variable);
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

#[test]
fn every_environment_variable_the_projector_reads_is_listed() {
    for variable in [
        "DATABASE_URL",
        "EVENTSTORE_URL",
        "LEDGER_PROJECTORS",
        "LEDGER_LOG_FORMAT",
    ] {
        assert!(
            ledger_projections::cli::environment_variables()
                .iter()
                .any(|v| v == variable),
            "{variable}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_refuses_an_eventstore_url_that_leaves_tls_unsaid() {
    let output = projector()
        .env("DATABASE_URL", "postgresql://nobody@localhost:1/none")
        .env("EVENTSTORE_URL", "esdb://localhost:2113")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tls=true or tls=false"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_refuses_an_unknown_projection_name() {
    let output = projector()
        .env("DATABASE_URL", "postgresql://nobody@localhost:1/none")
        .env("LEDGER_PROJECTORS", "stock_levels,stock_level")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown projection \"stock_level\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_binary_projects_and_stops_cleanly_on_sigterm() {
    let ledger = Ledger::new().await;
    mixed_history(&ledger, 2).await;
    let mut child = projector()
        .env("DATABASE_URL", ledger.test_database.url())
        .env("LEDGER_PROJECTORS", "stock_levels, low_stock_alerts")
        .env("LEDGER_LOG_FORMAT", "json")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let target = ledger.last_committed_position().await;
    wait_until("the binary catches up", || async {
        let client = ledger.database.pool().get().await.unwrap();
        let mut caught_up = true;
        for name in ["stock_levels", "low_stock_alerts"] {
            let checkpoint = ledger_projections::checkpoint::load(
                &**client,
                &ledger_projections::schema_name::SchemaName::live(name),
                name,
            )
            .await
            .unwrap();
            caught_up &= checkpoint.position >= target;
        }
        caught_up
    })
    .await;
    let status = ledger
        .read_models
        .status(ledger.store.as_ref())
        .await
        .unwrap();
    let running: Vec<_> = status
        .iter()
        .filter(|s| s.running)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(running, ["stock_levels", "low_stock_alerts"]);

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_millis(STOP_DEADLINE_MS), child.wait())
        .await
        .expect("the projector stops after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit}");
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        use tokio::io::AsyncReadExt;
        out.read_to_string(&mut stdout).await.unwrap();
    }
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with('{') && line.contains("stopped")),
        "json logs mention the stop: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_retries_a_refused_notification_and_logs_every_attempt() {
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                // The receiver refuses the very first request, then accepts.
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let ledger = Ledger::new().await;
    ledger.run("HOOK-1", set_reorder_point(5)).await; // opens an alert (available 0)
    ledger.run("HOOK-1", replenish(9)).await; // closes it
    let mut webhook = WebhookOptions::new(format!("http://{address}/alerts"));
    webhook.retry_initial_ms = 10;
    let running = ledger.spawn(ProjectorOptions {
        webhook: Some(webhook),
        ..test_options()
    });
    wait_until("both notifications are delivered", || async {
        delivery_log(&ledger.database, 100)
            .await
            .map(|log| log.iter().filter(|a| a.delivered).count() == 2)
            .unwrap_or(false)
    })
    .await;
    let log = delivery_log(&ledger.database, 100).await.unwrap();
    let summary: Vec<_> = log
        .iter()
        .map(|a| (a.notification_id, a.attempt, a.status_code, a.delivered))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, 1, Some(503), false),
            (1, 2, Some(204), true),
            (2, 1, Some(204), true)
        ]
    );
    running.stop().await;
    server.abort();
}
