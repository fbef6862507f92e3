//! The `projector` binary and the optional webhook delivery, against real PostgreSQL.

mod support;

use axum::http::StatusCode;
use ledger_projections::webhook::{
    delivery_log, WebhookOptions, WebhookSecret, NOTIFICATION_ID_HEADER, SIGNATURE_HEADER,
};
use ledger_projections::ProjectorOptions;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio::process::Command;

/// How long the binary may take to stop after SIGTERM.
const STOP_DEADLINE_MS: u64 = 30_000;

/// The secret the test webhooks share with their receivers.
const WEBHOOK_SECRET: &str = "a-test-secret-of-enough-length";

/// How far a signature's timestamp may be from the receiver's clock.
const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;

fn webhook_to(url: String) -> WebhookOptions {
    let mut webhook = WebhookOptions::new(url, WebhookSecret::parse(WEBHOOK_SECRET).unwrap());
    webhook.retry_initial_ms = 10;
    webhook
}

/// A receiver on a free loopback port; returns its address and the server task.
async fn receiver(app: axum::Router) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (address, server)
}

/// What a receiver does with `Ledger-Signature`, written here from the documented rule (not
/// with the deliverer's own code): recompute HMAC-SHA256 over `<t>.<body>` and compare in
/// constant time, and refuse a timestamp far from now.
fn signature_verifies(header: &str, body: &[u8], secret: &str, now: i64) -> bool {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => tags.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    if (now - timestamp).abs() > SIGNATURE_TOLERANCE_SECONDS {
        return false;
    }
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    tags.iter().any(|tag| {
        let bytes: Option<Vec<u8>> = (0..tag.len())
            .step_by(2)
            .map(|i| {
                tag.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        bytes.is_some_and(|bytes| ring::hmac::verify(&key, &signed, &bytes).is_ok())
    })
}

fn projector() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger-projector"));
    for variable in ledger_projections::cli::environment_variables() {
        command.env_remove(variable);
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// The binary on `ledger`'s database running `projections`, logging JSON, killed when dropped.
fn projector_on(ledger: &Ledger, projections: &str) -> Command {
    let mut command = projector();
    command
        .env("DATABASE_URL", ledger.test_database.url())
        .env("LEDGER_PROJECTORS", projections)
        .env("LEDGER_LOG_FORMAT", "json")
        .kill_on_drop(true);
    command
}

/// Send SIGTERM, as an orchestrator does, and require a clean exit within the deadline.
async fn stop_cleanly(child: &mut tokio::process::Child) {
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
    let mut child = projector_on(&ledger, "stock_levels, low_stock_alerts")
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

    stop_cleanly(&mut child).await;
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
    let (address, server) = receiver(app).await;

    let ledger = Ledger::new().await;
    ledger.run("HOOK-1", set_reorder_point(5)).await; // opens an alert (available 0)
    ledger.run("HOOK-1", replenish(9)).await; // closes it
    let running = ledger.spawn(ProjectorOptions {
        webhook: Some(webhook_to(format!("http://{address}/alerts"))),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_does_not_follow_a_redirect_and_counts_it_as_a_failed_attempt() {
    // The receiver redirects every notification elsewhere on the same server; the deliverer
    // must log each 3xx as a failure, retry per its policy, give up, and never call the
    // redirect's target.
    let redirected = Arc::new(AtomicU64::new(0));
    let counter = redirected.clone();
    let app = axum::Router::new()
        .route(
            "/alerts",
            axum::routing::post(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(axum::http::header::LOCATION, "/elsewhere")],
                )
            }),
        )
        .route(
            "/elsewhere",
            axum::routing::any(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    StatusCode::NO_CONTENT
                }
            }),
        );
    let (address, server) = receiver(app).await;

    let ledger = Ledger::new().await;
    ledger.run("HOOK-R", set_reorder_point(5)).await; // opens an alert: notification 1
    let mut webhook = webhook_to(format!("http://{address}/alerts"));
    webhook.attempts_max = 2;
    let running = ledger.spawn(ProjectorOptions {
        webhook: Some(webhook),
        ..test_options()
    });
    wait_until("the deliverer gives up on the notification", || async {
        delivery_log(&ledger.database, 100)
            .await
            .map(|log| log.len() == 2)
            .unwrap_or(false)
    })
    .await;
    let log = delivery_log(&ledger.database, 100).await.unwrap();
    for attempt in &log {
        assert_eq!(attempt.status_code, Some(307), "{attempt:?}");
        assert!(!attempt.delivered, "{attempt:?}");
        assert!(
            attempt
                .error
                .as_deref()
                .is_some_and(|e| e.contains("redirects are not followed")),
            "{attempt:?}"
        );
    }
    assert_eq!(
        redirected.load(Ordering::SeqCst),
        0,
        "the redirect's target received a request"
    );
    running.stop().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_signs_each_request_and_only_the_shared_secret_verifies_it() {
    type Received = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push((headers, body.to_vec()));
                    StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let (address, server) = receiver(app).await;

    let ledger = Ledger::new().await;
    ledger.run("HOOK-S", set_reorder_point(5)).await; // opens an alert
    ledger.run("HOOK-S", replenish(9)).await; // closes it
    let running = ledger.spawn(ProjectorOptions {
        webhook: Some(webhook_to(format!("http://{address}/alerts"))),
        ..test_options()
    });
    wait_until("both notifications arrive", || async {
        received.lock().unwrap().len() == 2
    })
    .await;
    running.stop().await;
    server.abort();

    let now = chrono::Utc::now().timestamp();
    let requests = received.lock().unwrap().clone();
    for (expected_id, (headers, body)) in (1..).zip(&requests) {
        let signature = headers
            .get(SIGNATURE_HEADER)
            .expect("every request is signed")
            .to_str()
            .unwrap();
        assert!(
            signature_verifies(signature, body, WEBHOOK_SECRET, now),
            "the signature verifies with the shared secret: {signature}"
        );
        assert!(
            !signature_verifies(signature, body, "another-secret-of-enough-length", now),
            "and with no other secret"
        );
        let mut tampered = body.clone();
        tampered.push(b' ');
        assert!(
            !signature_verifies(signature, &tampered, WEBHOOK_SECRET, now),
            "and over no other body"
        );
        assert!(
            !signature_verifies(
                signature,
                body,
                WEBHOOK_SECRET,
                now + 2 * SIGNATURE_TOLERANCE_SECONDS
            ),
            "and not long after it was sent"
        );
        let notification: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(notification["notification_id"], expected_id);
        assert_eq!(
            headers.get(NOTIFICATION_ID_HEADER).unwrap(),
            &expected_id.to_string()
        );
        assert_eq!(
            headers.get(axum::http::header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
    }
}

#[test]
fn a_webhook_secret_is_never_shown_and_a_short_one_is_refused() {
    let secret = WebhookSecret::parse(WEBHOOK_SECRET).unwrap();
    let options = WebhookOptions::new("http://127.0.0.1:1/alerts", secret);
    assert!(!format!("{options:?}").contains(WEBHOOK_SECRET));
    assert!(WebhookSecret::parse("short").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_refuses_a_webhook_url_without_a_secret() {
    let output = projector()
        .env("DATABASE_URL", "postgresql://nobody@localhost:1/none")
        .env("LEDGER_ALERT_WEBHOOK_URL", "http://127.0.0.1:1/alerts")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--alert-webhook-secret"), "{stderr}");
}

/// How long the binary may take to connect, migrate and bind its metrics listener.
const START_DEADLINE_MS: u64 = 60_000;

/// The `host:port` in the projector's "serving metrics" log line.
fn metrics_address(line: &str) -> Option<String> {
    let start = line.find("http://")? + "http://".len();
    let rest = &line[start..];
    Some(rest[..rest.find("/metrics")?].to_owned())
}

/// GET `url`; the status, the media type and the body.
async fn scrape(http: &reqwest::Client, url: &str) -> (u16, String, String) {
    let response = http.get(url).send().await.expect("the projector answers");
    let status = response.status().as_u16();
    let media_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, media_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_binary_serves_its_projections_metrics_over_http() {
    // Goal: Prometheus can scrape a separate projector, and what it reads there is the real
    // state of the projection: its checkpoint at the log's head and every event counted.
    use ledger_tests::dashboard;
    use tokio::io::AsyncBufReadExt;
    let ledger = Ledger::new().await;
    mixed_history(&ledger, 2).await;
    let mut child = projector_on(&ledger, "stock_levels")
        .env("LEDGER_PROJECTOR_METRICS_LISTEN", "127.0.0.1:0")
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_millis(START_DEADLINE_MS), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("serving metrics") {
                return metrics_address(&line).expect("the line names the address");
            }
        }
        panic!("the projector ended without serving metrics");
    })
    .await
    .expect("the projector serves metrics within the start-up deadline");
    // Keep its log drained, so that logging never blocks it.
    let drained = tokio::spawn(async move {
        let mut log = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            log.push(line);
        }
        log
    });
    let url = format!("http://{address}/metrics");
    let http = reqwest::Client::new();

    let head = ledger
        .last_committed_position()
        .await
        .expect("the history has events");
    let client = ledger.database.pool().get().await.unwrap();
    let events: i64 = client
        .query_one("SELECT count(*) FROM event_store.events", &[])
        .await
        .unwrap()
        .get(0);
    drop(client);
    let labels = [("projection", "stock_levels")];
    let deadline = tokio::time::Instant::now() + Duration::from_millis(START_DEADLINE_MS);
    let exposition = loop {
        let (status, media_type, body) = scrape(&http, &url).await;
        assert_eq!(status, 200, "{body}");
        assert!(media_type.starts_with("text/plain"), "{media_type}");
        let checkpoint = dashboard::sample(&body, "ledger_projection_checkpoint_commit", &labels);
        if checkpoint == Some(head.commit as f64) {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scrape never showed the checkpoint at the log's head {head:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        dashboard::sample(
            &exposition,
            "ledger_projection_events_applied_total",
            &labels
        ),
        Some(events as f64),
        "every event of the log counted once: {exposition}"
    );
    let batches = dashboard::sample(
        &exposition,
        "ledger_projection_batch_duration_seconds_count",
        &labels,
    )
    .expect("the batches are timed");
    assert!(batches >= 1.0, "{exposition}");
    assert_eq!(
        dashboard::sample(&exposition, "ledger_projection_lag_seconds", &labels),
        Some(0.0),
        "caught up, the lag is zero"
    );
    // Every projection metric the dashboard queries is one this process serves.
    let exported = dashboard::exported_names(&exposition);
    let mut queried = 0;
    for panel in dashboard::panels() {
        for metric in panel.queries.iter().flat_map(|q| &q.metrics) {
            if metric.starts_with("ledger_projection_") {
                queried += 1;
                assert!(
                    exported.contains(metric),
                    "{}: {metric} not served by the projector",
                    panel.title
                );
            }
        }
    }
    assert!(queried >= 2, "the dashboard shows the projections' lag");
    // Only /metrics answers.
    let (status, _, _) = scrape(&http, &format!("http://{address}/")).await;
    assert_eq!(status, 404);

    stop_cleanly(&mut child).await;
    let log = drained.await.unwrap();
    assert!(
        log.iter().any(|line| line.contains("stopped")),
        "the log mentions the stop: {log:?}"
    );
    assert!(
        http.get(&url).send().await.is_err(),
        "the listener closed with the process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_refuses_a_metrics_address_it_cannot_bind() {
    let ledger = Ledger::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = projector_on(&ledger, "stock_levels")
        .env("LEDGER_PROJECTOR_METRICS_LISTEN", &address)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let refused = format!("cannot serve metrics on {address}");
    assert!(
        !output.status.success() && stderr.contains(&refused),
        "{stderr}"
    );
}
