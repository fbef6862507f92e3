//! The README's first command, as a new user runs it: the real `api` binary with no
//! configuration but a data folder. It creates a private PostgreSQL cluster, serves, prints
//! where it listens, keeps its data across restarts and stops the cluster on SIGTERM.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Start-up includes initdb on the first run.
const START_DEADLINE_MS: u64 = 60_000;

struct Api {
    child: Child,
    base: String,
}

fn start(data_dir: &std::path::Path) -> Api {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-api"))
        .env_remove("DATABASE_URL")
        .env_remove("EVENTSTORE_URL")
        .env_remove("LEDGER_TOKENS")
        .env_remove("LEDGER_TOKENS_FILE")
        .env("LEDGER_DATA_DIR", data_dir)
        .env("LEDGER_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the api binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_millis(START_DEADLINE_MS);
    let mut banner = Vec::new();
    let base = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = receiver
            .recv_timeout(remaining)
            .unwrap_or_else(|_| panic!("no listening line within the deadline; got {banner:?}"));
        if let Some(url) = line.strip_prefix("inventory ledger API listening on ") {
            break url.trim().to_owned();
        }
        banner.push(line);
    };
    // The banner goes on with a first curl command.
    let next: Vec<String> = (0..8)
        .filter_map(|_| receiver.recv_timeout(Duration::from_secs(5)).ok())
        .collect();
    assert!(
        next.iter()
            .any(|l| l.contains("curl") && l.contains("/reservations")),
        "{next:?}"
    );
    Api { child, base }
}

fn terminate(mut api: Api) {
    let status = Command::new("kill")
        .args(["-TERM", &api.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_millis(START_DEADLINE_MS);
    loop {
        if let Some(status) = api.child.try_wait().expect("wait works") {
            assert!(status.success(), "api exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "api did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cluster_running(data_dir: &std::path::Path) -> bool {
    data_dir.join("pgdata").join("postmaster.pid").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_command_serves_on_a_private_cluster_and_keeps_the_data() {
    let data_dir =
        std::env::temp_dir().join(format!("ledger-embedded-{}", uuid::Uuid::new_v4().simple()));
    let client = reqwest::Client::new();

    let api = start(&data_dir);
    assert!(cluster_running(&data_dir));
    let (status, body) = post(
        &client,
        &api.base,
        "/v1/skus/WIDGET-1/replenishments",
        json!({"quantity": 10}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &client,
        &api.base,
        "/v1/skus/WIDGET-1/reservations",
        json!({"reservation_id": "order-1001", "quantity": 2, "ttl_seconds": 900}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    terminate(api);
    assert!(
        !cluster_running(&data_dir),
        "the cluster must stop with the API"
    );

    // The next start reuses the folder: the history is still there.
    let api = start(&data_dir);
    let history: Value = client
        .get(format!("{}/v1/skus/WIDGET-1/history", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["StockReplenished", "StockReserved"]);
    terminate(api);
    let _ = std::fs::remove_dir_all(&data_dir);
}

async fn post(client: &reqwest::Client, base: &str, path: &str, body: Value) -> (u16, Value) {
    let response = client
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
