//! `ledger-replay` through its real binary against a real PostgreSQL: events are written with
//! the command handler, read models are kept by the real projectors, and every output is
//! compared with what the libraries compute from the same events.

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use ledger_application::command::CommandContext;
use ledger_application::handler::CommandHandler;
use ledger_application::history::{history, HistoryFilter, HISTORY_PAGE_ENTRIES_MAX};
use ledger_application::store::READ_EVENTS_MAX;
use ledger_application::EventStore;
use ledger_domain::RecordedEvent;
use ledger_domain::{SkuEvent, SkuState};
use ledger_postgres::Database;
use ledger_postgres::PostgresStore;
use ledger_projections::{ProjectorOptions, ProjectorSet, RebuildOptions};
use ledger_tests::ledger::*;
use serde_json::Value;
use std::ops::ControlFlow;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// Exit codes as `--help` documents them.
const EXIT_OK: i32 = 0;
const EXIT_FAILED: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_NOT_FOUND: i32 = 3;
const EXIT_UNREACHABLE: i32 = 4;

/// The shared test ledger, with what these tests add: a varied history, projectors with the
/// default options, the events of a SKU, and the binary run against this ledger's database.
struct Ledger(TestLedger);

impl std::ops::Deref for Ledger {
    type Target = TestLedger;

    fn deref(&self) -> &TestLedger {
        &self.0
    }
}

impl Ledger {
    async fn new() -> Self {
        Self(TestLedger::new().await)
    }

    /// A varied history: every event type, a reason with a comma and a quote for CSV.
    async fn write_mixed_history(&self, sku: &str, rounds: u64) {
        self.run(sku, replenish(100)).await;
        self.run(sku, set_reorder_point(20)).await;
        for round in 0..rounds {
            let id = format!("r-{round}");
            self.run(sku, reserve(&id, 3, None)).await;
            let command = match round % 3 {
                0 => confirm(&id),
                1 => release_because(&id, "customer said \"no\", cart dropped"),
                _ => continue,
            };
            self.run(sku, command).await;
        }
        self.run(sku, adjust_because(-2, "cycle count, shelf 4"))
            .await;
    }

    fn spawn_projectors(&self) -> (ProjectorSet, watch::Sender<bool>) {
        let (stop, shutdown) = watch::channel(false);
        let set = ProjectorSet::spawn(
            self.store.clone() as Arc<dyn EventStore>,
            self.database.clone(),
            ProjectorOptions::default(),
            shutdown,
        );
        (set, stop)
    }

    /// Every event of `sku`, from the store.
    async fn events(&self, sku: &str) -> Vec<RecordedEvent> {
        let page = self
            .store
            .read_stream(&sku_of(sku).stream(), 0, READ_EVENTS_MAX)
            .await
            .unwrap();
        assert!(
            (page.len() as u64) < READ_EVENTS_MAX,
            "tests keep streams short"
        );
        page
    }

    /// Run the binary with this ledger's database and nothing else configured.
    async fn replay(&self, arguments: &[&str]) -> Output {
        run_binary(arguments, &[("DATABASE_URL", self.test_database.url())]).await
    }
}

async fn run_binary(arguments: &[&str], environment: &[(&str, String)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ledger-replay"));
    command
        .args(arguments)
        .env_remove("DATABASE_URL")
        .env_remove("EVENTSTORE_URL")
        .env_remove("LEDGER_DATA_DIR")
        .env("COLUMNS", "100");
    for (name, value) in environment {
        command.env(name, value);
    }
    // The binary runs on a blocking thread so that projectors and appenders of the test keep
    // running on the runtime meanwhile.
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status; stdout:\n{}\nstderr:\n{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The fold of the events accepted by `include`.
fn fold(sku: &str, events: &[RecordedEvent], include: impl Fn(&RecordedEvent) -> bool) -> SkuState {
    let mut state = SkuState::new(sku_of(sku));
    for recorded in events.iter().filter(|e| include(e)) {
        let event = SkuEvent::decode(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.data,
        )
        .unwrap();
        state.apply(&event);
    }
    state
}

/// The parts of a state the JSON output must show exactly as the fold has them.
fn assert_state_matches(json: &Value, expected: &SkuState, what: &str) {
    let mut expected_json = serde_json::to_value(expected).unwrap();
    expected_json["available"] = Value::from(expected.available());
    assert_eq!(json["state"], expected_json, "{what}");
}

/// A small RFC 4180 reader: quoted fields with doubled quotes, commas and line breaks inside.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut characters = text.chars().peekable();
    while let Some(character) = characters.next() {
        match (quoted, character) {
            (true, '"') if characters.peek() == Some(&'"') => {
                field.push('"');
                characters.next();
            }
            (true, '"') => quoted = false,
            (true, other) => field.push(other),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, other) => field.push(other),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "CSV ends with a line break"
    );
    records
}

fn rfc3339(moment: DateTime<Utc>) -> String {
    moment.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised() {
    let ledger = Ledger::new().await;
    ledger.run("CSV-1", replenish(10)).await;
    let reasons = [
        "=HYPERLINK(\"https://example.invalid\",\"open me\")",
        "+1+2",
        "@SUM(A1)",
        "-2+3",
    ];
    for reason in reasons {
        ledger.run("CSV-1", adjust_because(1, reason)).await;
    }
    ledger.run("CSV-1", adjust_because(-1, "shrink")).await;

    let output = ledger
        .replay(&["history", "CSV-1", "--format", "csv"])
        .await;
    assert_exit(&output, EXIT_OK);
    let records = parse_csv(&stdout(&output));
    for (record, reason) in records[2..].iter().zip(reasons) {
        assert_eq!(record[15], format!("'{reason}"));
    }
    let last = records.last().unwrap();
    assert_eq!(last[15], "shrink");
    assert_eq!(last[7], "-1", "numbers stay numbers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_json_and_csv_equal_the_library_history() {
    let ledger = Ledger::new().await;
    ledger.write_mixed_history("SHOE-42", 12).await;
    ledger.write_mixed_history("OTHER-1", 2).await;

    let output = ledger
        .replay(&["history", "SHOE-42", "--format", "json"])
        .await;
    assert_exit(&output, EXIT_OK);
    let json: Value = serde_json::from_str(&stdout(&output)).expect("history JSON parses");
    let expected = history(
        ledger.store.as_ref(),
        &sku_of("SHOE-42"),
        &HistoryFilter {
            limit: HISTORY_PAGE_ENTRIES_MAX,
            ..HistoryFilter::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(json["sku"], "SHOE-42");
    assert_eq!(
        json["entries"],
        serde_json::to_value(&expected.entries).unwrap()
    );
    let events = ledger.events("SHOE-42").await;
    assert_state_matches(
        &json,
        &fold("SHOE-42", &events, |_| true),
        "state at the end",
    );

    let output = ledger
        .replay(&["history", "SHOE-42", "--format", "csv"])
        .await;
    assert_exit(&output, EXIT_OK);
    let records = parse_csv(&stdout(&output));
    assert_eq!(records[0], ledger_replay::history::CSV_COLUMNS);
    assert_eq!(records.len() - 1, expected.entries.len());
    for (record, entry) in records[1..].iter().zip(&expected.entries) {
        assert_eq!(record.len(), ledger_replay::history::CSV_COLUMNS.len());
        assert_eq!(record[0], entry.version.to_string());
        assert_eq!(record[1], entry.position.to_string());
        assert_eq!(record[4], entry.event_type);
        assert_eq!(record[11], entry.available_after.to_string());
        assert_eq!(record[15], entry.reason.clone().unwrap_or_default());
        let data: Value = serde_json::from_str(&record[20]).unwrap();
        assert_eq!(data, entry.data);
    }

    let output = ledger.replay(&["history", "SHOE-42"]).await;
    assert_exit(&output, EXIT_OK);
    let table = stdout(&output);
    assert_eq!(table.lines().count(), expected.entries.len() + 3);
    for line in table.lines().take(expected.entries.len() + 2) {
        assert!(
            line.chars().count() <= 100,
            "line wider than the terminal: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_as_of_several_moments_equals_a_fold() {
    let ledger = Ledger::new().await;
    ledger.write_mixed_history("BOOT-7", 9).await;
    let events = ledger.events("BOOT-7").await;
    let first = events.first().unwrap().recorded_at;
    let last = events.last().unwrap().recorded_at;
    let mut moments = vec![first - ChronoDuration::seconds(1), first, last];
    moments.extend(events.iter().step_by(4).map(|e| e.recorded_at));
    moments.push(events[events.len() / 2].recorded_at + ChronoDuration::microseconds(1));
    for moment in moments {
        let text = rfc3339(moment);
        let output = ledger
            .replay(&["history", "BOOT-7", "--as-of", &text, "--format", "json"])
            .await;
        assert_exit(&output, EXIT_OK);
        let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
        let expected = fold("BOOT-7", &events, |e| e.recorded_at <= moment);
        assert_state_matches(&json, &expected, &format!("as of {text}"));
        let shown = json["entries"].as_array().unwrap().len() as u64;
        assert_eq!(
            shown,
            expected.version.map_or(0, |v| v + 1),
            "entries as of {text}"
        );
    }
    for version in [0, 3, events.len() as u64 - 1, events.len() as u64 + 5] {
        let output = ledger
            .replay(&[
                "history",
                "BOOT-7",
                "--at-version",
                &version.to_string(),
                "--format",
                "json",
            ])
            .await;
        assert_exit(&output, EXIT_OK);
        let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
        let expected = fold("BOOT-7", &events, |e| e.version <= version);
        assert_state_matches(&json, &expected, &format!("at version {version}"));
    }

    let output = ledger.replay(&["history", "NO-SUCH-SKU"]).await;
    assert_exit(&output, EXIT_NOT_FOUND);
    let output = ledger
        .replay(&["history", "BOOT-7", "--as-of", "yesterday"])
        .await;
    assert_exit(&output, EXIT_USAGE);
    let output = ledger.replay(&["history", "bad sku!"]).await;
    assert_exit(&output, EXIT_USAGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_passes_on_a_healthy_store_and_names_a_tampered_sku() {
    let ledger = Ledger::new().await;
    for sku in ["HAT-1", "HAT-2", "HAT-3"] {
        ledger.write_mixed_history(sku, 5).await;
    }
    let (set, stop) = ledger.spawn_projectors();
    ledger.wait_caught_up().await;
    let _ = stop.send(true);
    set.join().await;

    let output = ledger
        .replay(&["verify", "--all", "--format", "json"])
        .await;
    assert_exit(&output, EXIT_OK);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["differences_total"], 0);
    assert_eq!(report["skus_checked"], 3);
    assert!(report["events_checked"].as_u64().unwrap() > 20);
    assert_exit(&ledger.replay(&["verify"]).await, EXIT_OK);

    let client = ledger.database.pool().get().await.unwrap();
    client
        .execute(
            "UPDATE rm_stock_levels.stock_levels SET on_hand = on_hand + 7 WHERE sku = 'HAT-2'",
            &[],
        )
        .await
        .unwrap();
    let output = ledger.replay(&["verify", "--all"]).await;
    assert_exit(&output, EXIT_FAILED);
    assert!(stdout(&output).contains("HAT-2"), "{}", stdout(&output));
    assert!(!stdout(&output).contains("HAT-1"), "{}", stdout(&output));
    let output = ledger.replay(&["verify", "--format", "json"]).await;
    assert_exit(&output, EXIT_FAILED);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        report["skus_with_differences"],
        serde_json::json!(["HAT-2"])
    );
    assert_exit(&ledger.replay(&["verify", "--sku", "HAT-1"]).await, EXIT_OK);
    assert_exit(
        &ledger.replay(&["verify", "--sku", "HAT-2"]).await,
        EXIT_FAILED,
    );
    assert_exit(
        &ledger.replay(&["verify", "--sku", "NOPE-9"]).await,
        EXIT_NOT_FOUND,
    );

    client
        .execute(
            "UPDATE rm_reservations.reservations SET quantity = quantity + 1 \
             WHERE sku = 'HAT-3' AND reservation_id = 'r-0'",
            &[],
        )
        .await
        .unwrap();
    let output = ledger.replay(&["verify", "--format", "json"]).await;
    assert_exit(&output, EXIT_FAILED);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        report["skus_with_differences"],
        serde_json::json!(["HAT-2", "HAT-3"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_while_an_appender_runs_ends_equal_to_the_fold() {
    let ledger = Arc::new(Ledger::new().await);
    for sku in ["CAP-1", "CAP-2", "CAP-3", "CAP-4"] {
        ledger.write_mixed_history(sku, 20).await;
    }
    let (set, stop_projectors) = ledger.spawn_projectors();
    let stop_appender = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let appender = {
        let ledger = ledger.clone();
        let stop = stop_appender.clone();
        let appended = appended.clone();
        tokio::spawn(async move {
            let read_models = ledger_projections::ReadModels::new(ledger.database.clone());
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let sku = format!("CAP-{}", round % 4 + 1);
                ledger.run(&sku, replenish(1)).await;
                ledger
                    .run(&sku, reserve(&format!("live-{round}"), 1, None))
                    .await;
                // The read side keeps answering while the rebuild swaps schemas under it.
                read_models
                    .stock_level(&sku_of(&sku))
                    .await
                    .expect("read models serve");
                appended.fetch_add(2, Ordering::SeqCst);
                round += 1;
            }
        })
    };
    let output = ledger.replay(&["rebuild", "--all"]).await;
    assert_exit(&output, EXIT_OK);
    let summary = stdout(&output);
    assert_eq!(
        summary.lines().count(),
        ledger_projections::names().len(),
        "{summary}"
    );
    assert!(
        summary.lines().all(|l| l.contains("swapped in")),
        "{summary}"
    );
    stop_appender.store(true, Ordering::SeqCst);
    appender.await.unwrap();
    assert!(
        appended.load(Ordering::SeqCst) > 0,
        "the appender ran during the rebuild"
    );
    ledger.wait_caught_up().await;
    let _ = stop_projectors.send(true);
    set.join().await;

    let output = ledger.replay(&["verify", "--format", "json"]).await;
    assert_exit(&output, EXIT_OK);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["skus_checked"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_rebuild_resumes_from_its_checkpoint() {
    let ledger = Ledger::new().await;
    for sku in ["SOCK-1", "SOCK-2"] {
        ledger.write_mixed_history(sku, 15).await;
    }
    let (set, stop) = ledger.spawn_projectors();
    ledger.wait_caught_up().await;
    let _ = stop.send(true);
    set.join().await;

    let interrupted = ledger_projections::rebuild(
        ledger.store.as_ref(),
        &ledger.database,
        "stock_levels",
        RebuildOptions {
            page_events_max: 10,
            progress: Some(Arc::new(|_| ControlFlow::Break(()))),
            ..RebuildOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(interrupted.interrupted);
    assert_eq!(interrupted.events_applied, 10);

    let output = ledger.replay(&["status", "--format", "json"]).await;
    assert_exit(&output, EXIT_OK);
    let statuses: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let stock = statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "stock_levels")
        .unwrap();
    assert_eq!(
        stock["rebuild_checkpoint"],
        serde_json::to_value(interrupted.checkpoint).unwrap()
    );

    let output = ledger
        .replay(&["rebuild", "stock_levels", "--quiet", "--format", "json"])
        .await;
    assert_exit(&output, EXIT_OK);
    let summaries: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let summary = &summaries[0];
    assert_eq!(
        summary["resumed_from"],
        serde_json::to_value(interrupted.checkpoint).unwrap()
    );
    assert_eq!(summary["swapped"], true);
    let total = ledger.events("SOCK-1").await.len() + ledger.events("SOCK-2").await.len();
    assert_eq!(summary["events_applied"], (total - 10) as u64);
    assert_exit(&ledger.replay(&["verify"]).await, EXIT_OK);

    let output = ledger.replay(&["status"]).await;
    assert_exit(&output, EXIT_OK);
    // A header and one line per projection.
    assert_eq!(
        stdout(&output).lines().count(),
        ledger_projections::names().len() + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_have_their_documented_exit_codes() {
    let ledger = Ledger::new().await;
    assert_exit(
        &ledger.replay(&["rebuild", "no_such_projection"]).await,
        EXIT_NOT_FOUND,
    );
    assert_exit(&ledger.replay(&["rebuild"]).await, EXIT_USAGE);
    let unreachable = run_binary(
        &["status"],
        &[(
            "DATABASE_URL",
            "postgresql://postgres@127.0.0.1:1/ledger".to_owned(),
        )],
    )
    .await;
    assert_exit(&unreachable, EXIT_UNREACHABLE);
    let no_data = run_binary(
        &["status"],
        &[("LEDGER_DATA_DIR", "/nonexistent/ledger-data".to_owned())],
    )
    .await;
    assert_exit(&no_data, EXIT_UNREACHABLE);
    let help = run_binary(&["--help"], &[]).await;
    assert_exit(&help, EXIT_OK);
    assert!(stdout(&help).contains("Exit codes:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn republish_folds_the_log_before_the_position_and_leaves_the_publisher_to_publish_the_rest()
{
    // The publisher's own tests prove what it publishes after a restart; this proves the
    // command reaches it: the fold stops right before the position, status then lists the
    // publisher at that checkpoint, and an unknown publisher is an unknown projection.
    let ledger = Ledger::new().await;
    ledger.write_mixed_history("REPUB-1", 2).await;
    let client = ledger.database.pool().get().await.unwrap();
    let third = client
        .query_one(
            "SELECT transaction_id, sequence FROM event_store.events \
             ORDER BY transaction_id, sequence OFFSET 2 LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let from = format!("{}/{}", third.get::<_, i64>(0), third.get::<_, i64>(1));
    let output = ledger
        .replay(&["republish", "publish_nats", "--from", &from])
        .await;
    assert_exit(&output, EXIT_OK);
    assert!(
        stdout(&output).contains("folded 2 events again"),
        "{}",
        stdout(&output)
    );
    let status = ledger.replay(&["status", "--format", "json"]).await;
    assert_exit(&status, EXIT_OK);
    let rows: Value = serde_json::from_str(&stdout(&status)).unwrap();
    let publisher = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == "publish_nats")
        .expect("status lists a publisher once it exists");
    assert_eq!(publisher["events_applied"], 2);
    assert!(publisher["lag_events"].as_u64().unwrap() > 0);
    assert_exit(
        &ledger.replay(&["republish", "publish_nowhere"]).await,
        EXIT_NOT_FOUND,
    );
}

/// SKUs and events per SKU of the throughput measurement: 100,000 events unless
/// `MEASURED_SKUS_VARIABLE` asks for more SKUs.
const MEASURED_SKUS: u64 = 200;
const MEASURED_EVENTS_PER_SKU: u64 = 500;

/// Environment variable that sets the measurement's SKU count, e.g. 2000 for a store of
/// 1,000,000 events.
const MEASURED_SKUS_VARIABLE: &str = "LEDGER_MEASURED_SKUS";

/// How long the live projectors may take to catch up per 100,000 measured events: far more
/// than they need, so that only a stuck projector fails the measurement.
const MEASURED_CATCH_UP_MS_PER_100K_EVENTS: u64 = 60_000;

/// Measures verify and rebuild throughput on a store of 100,000 events (or
/// `LEDGER_MEASURED_SKUS` × 500); run on demand with
/// `cargo test -p replay-tool --release -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check; run on demand"]
async fn measure_verify_and_rebuild_throughput() {
    let skus: u64 = match std::env::var(MEASURED_SKUS_VARIABLE) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|e| panic!("{MEASURED_SKUS_VARIABLE}={value:?}: {e}")),
        Err(_) => MEASURED_SKUS,
    };
    let ledger = Ledger::new().await;
    let appending = Instant::now();
    for sku in 0..skus {
        let events = (0..MEASURED_EVENTS_PER_SKU)
            .map(|_| {
                let event = SkuEvent::Replenished(ledger_domain::StockReplenished {
                    quantity: 1,
                    reference: None,
                    location: ledger_domain::DEFAULT_LOCATION.to_owned(),
                });
                ledger_domain::NewEvent {
                    event_id: uuid::Uuid::new_v4(),
                    event_type: event.event_type().to_owned(),
                    schema_version: event.schema_version(),
                    data: event.encode(),
                    metadata: ledger_domain::Metadata::default(),
                    recorded_at: Utc::now(),
                    hash: ledger_domain::EventHash::GENESIS,
                }
            })
            .collect();
        let mut events: Vec<ledger_domain::NewEvent> = events;
        let stream = format!("sku-LOAD-{sku}");
        ledger_application::chain::seal(
            &stream,
            0,
            ledger_domain::EventHash::GENESIS,
            Utc::now(),
            &mut events,
        );
        ledger
            .store
            .append(
                &stream,
                ledger_application::ExpectedVersion::NoStream,
                events,
            )
            .await
            .unwrap();
    }
    let events = skus * MEASURED_EVENTS_PER_SKU;
    println!(
        "appended {events} events for {skus} SKUs in {:.1} s",
        appending.elapsed().as_secs_f64()
    );
    let projecting = Instant::now();
    let (set, stop) = ledger.spawn_projectors();
    ledger
        .wait_caught_up_within(MEASURED_CATCH_UP_MS_PER_100K_EVENTS * events.div_ceil(100_000))
        .await;
    let _ = stop.send(true);
    set.join().await;
    println!(
        "live projectors caught up in {:.1} s",
        projecting.elapsed().as_secs_f64()
    );
    let output = ledger.replay(&["verify"]).await;
    assert_exit(&output, EXIT_OK);
    println!("{}", stdout(&output));
    let output = ledger.replay(&["rebuild", "--all"]).await;
    assert_exit(&output, EXIT_OK);
    println!("{}", stdout(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_data_folder_is_used_and_a_running_cluster_left_running() {
    use ledger_postgres::cluster::{ClusterOptions, PrivateCluster};
    // A short folder name: the cluster's Unix socket path must stay under 107 bytes.
    let folder = std::env::temp_dir().join(format!(
        "lr-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let cluster = PrivateCluster::start(&ClusterOptions {
        folder: folder.clone(),
        durable: false,
        max_connections: 50,
    })
    .await
    .unwrap();
    cluster.remove_when_process_exits().unwrap();
    let admin = Database::from_config(cluster.connection_config("postgres"), 1).unwrap();
    admin
        .pool()
        .get()
        .await
        .unwrap()
        .batch_execute("CREATE DATABASE ledger")
        .await
        .unwrap();
    let database = Database::from_config(cluster.connection_config("ledger"), 4).unwrap();
    let store = Arc::new(PostgresStore::open(database.clone()).await.unwrap());
    ledger_projections::migrate(&database).await.unwrap();
    CommandHandler::new(store)
        .execute(&sku_of("MUG-1"), &replenish(5), &CommandContext::default())
        .await
        .unwrap();
    let environment = [("LEDGER_DATA_DIR", folder.display().to_string())];

    // Running already (as under the API): used, and left running.
    let output = run_binary(&["history", "MUG-1", "--format", "json"], &environment).await;
    assert_exit(&output, EXIT_OK);
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["state"]["on_hand"], 5);
    assert!(
        cluster.is_running().await,
        "a cluster the tool did not start keeps running"
    );

    // Stopped: started for the command, and stopped again after it.
    drop(database);
    cluster.stop().await.unwrap();
    let output = run_binary(&["status"], &environment).await;
    assert_exit(&output, EXIT_OK);
    assert!(
        !cluster.is_running().await,
        "the tool stops the cluster it started"
    );
}
