//! Faults and overload against the real `ledger-api` binary on a real PostgreSQL, loopback
//! only, every wait bounded: slow and silent connections are closed at the header timeout;
//! 2,000 concurrent connections all get an answer (2xx, 429 or 503) while memory stays bounded;
//! floods of distinct SKUs and made-up methods leave memory and `/metrics` bounded; a stalled
//! database link fails requests within the statement timeout, sheds load past the in-flight
//! limit and shows in readiness; PostgreSQL restarted in the middle of a load loses no
//! acknowledged command and the API recovers by itself; a shutdown stops at its deadline and a
//! second interrupt exits at once.

mod support;

use ledger_postgres::cluster::{ClusterOptions, PrivateCluster};
use ledger_tests::postgres::TestDatabase;
use ledger_tests::proxy::TcpProxy;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::process::ApiProcess;
use support::read;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read until the server closes the connection (or `within` passes); how long it took.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        let remaining = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(remaining, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Send one HTTP/1.1 request on a fresh connection and return the status code.
async fn raw_request(address: &str, method: &str, path: &str, body: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(address).await.expect("connects");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("reads");
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_silent_connections_are_closed_at_the_header_timeout() {
    let database = TestDatabase::create().await;
    let api = ApiProcess::start(
        "slowloris",
        &database.url(),
        &["--header-read-timeout-ms", "1000", "--projectors", "none"],
    )
    .await;
    let address = api.address();
    // One byte every 300 ms never finishes a request head.
    let mut slow = TcpStream::connect(&address).await.unwrap();
    let trickle = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
        let started = Instant::now();
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if slow.write_all(&[*byte]).await.is_err() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if started.elapsed() > Duration::from_secs(10) {
                return None;
            }
        }
        None
    });
    let mut silent = TcpStream::connect(&address).await.unwrap();
    let closed = closed_within(&mut silent, Duration::from_secs(10)).await;
    let closed = closed.expect("the silent connection was not closed within 10 s");
    assert!(
        closed < Duration::from_millis(3_000),
        "silent closed after {closed:?}"
    );
    let trickled = trickle
        .await
        .unwrap()
        .expect("the trickling connection stayed open");
    assert!(
        trickled < Duration::from_millis(4_000),
        "trickle cut after {trickled:?}"
    );
    // A well-behaved client is served.
    assert_eq!(raw_request(&address, "GET", "/healthz", None).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_concurrent_connections_all_get_an_answer() {
    let database = TestDatabase::create().await;
    let api = ApiProcess::start(
        "crowd",
        &database.url(),
        &["--in-flight-max", "64", "--pool-size", "16"],
    )
    .await;
    let address = api.address();
    for index in 0..50 {
        let status = raw_request(
            &address,
            "POST",
            &format!("/v1/skus/CROWD-{index}/replenishments"),
            Some(r#"{"quantity": 1000}"#),
        )
        .await;
        assert_eq!(status, 200);
    }
    let before = api.resident_bytes();
    let started = Instant::now();
    let mut clients = Vec::new();
    for index in 0..2_000 {
        let address = address.clone();
        clients.push(tokio::spawn(async move {
            let body = format!(r#"{{"reservation_id": "c{index}", "quantity": 1}}"#);
            tokio::time::timeout(
                Duration::from_secs(60),
                raw_request(
                    &address,
                    "POST",
                    &format!("/v1/skus/CROWD-{}/reservations", index % 50),
                    Some(&body),
                ),
            )
            .await
        }));
    }
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for client in clients {
        let status = client
            .await
            .unwrap()
            .expect("every connection is answered within 60 s");
        *statuses.entry(status).or_default() += 1;
    }
    let elapsed = started.elapsed();
    assert!(
        statuses.keys().all(|s| [201, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.get(&201).copied().unwrap_or(0) > 0, "{statuses:?}");
    let after = api.resident_bytes();
    assert!(
        after < before + 256 * 1024 * 1024,
        "resident memory grew from {before} to {after} bytes"
    );
    eprintln!("2000 connections answered in {elapsed:?}: {statuses:?}; RSS {before} → {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_of_skus_and_methods_leave_memory_and_metrics_bounded() {
    let database = TestDatabase::create().await;
    // Rate limiting is another test's subject: here every request must reach the router.
    let api = ApiProcess::start(
        "flood",
        &database.url(),
        &["--projectors", "none", "--rate-limit-per-second", "0"],
    )
    .await;
    let client = reqwest::Client::new();
    let metrics_size = || {
        let client = client.clone();
        let url = api.url("/metrics");
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .len()
        }
    };
    // Warm up the series the flood itself creates.
    client.get(api.url("/v1/skus/WARM")).send().await.unwrap();
    let before_memory = api.resident_bytes();
    let before_metrics = metrics_size().await;
    let skus = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let client = client.clone();
        let base = api.base.clone();
        let skus = skus.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let index = skus.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= 10_000 {
                    return;
                }
                let response = client
                    .get(format!("{base}/v1/skus/FLOOD-{index}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 200);
                let method = reqwest::Method::from_bytes(format!("M{index}").as_bytes()).unwrap();
                let response = client
                    .request(method, format!("{base}/v1/skus/FLOOD-{index}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 405);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let after_memory = api.resident_bytes();
    let after_metrics = metrics_size().await;
    assert!(
        after_memory < before_memory + 64 * 1024 * 1024,
        "10,000 SKUs read grew memory from {before_memory} to {after_memory} bytes"
    );
    assert!(
        after_metrics < before_metrics + 8 * 1024,
        "/metrics grew from {before_metrics} to {after_metrics} bytes"
    );
    let metrics = client
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ledger_sku_writers 0") || !metrics.contains("ledger_sku_writers "),
        "reads started writers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_database_link_fails_fast_sheds_load_and_shows_in_readiness() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.upstream()).await;
    let api = ApiProcess::start(
        "stalled",
        &database.url_through(&proxy),
        &[
            "--statement-timeout-ms",
            "1000",
            "--in-flight-max",
            "2",
            "--projectors",
            "none",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let post = |path: String, body: Value| {
        let request = client.post(api.url(&path)).json(&body);
        async move {
            let started = Instant::now();
            let (status, body, _) = read(request.send().await.unwrap()).await;
            (status, body, started.elapsed())
        }
    };
    let (status, body, _) = post(
        "/v1/skus/STALL-1/replenishments".into(),
        json!({"quantity": 10}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    proxy.stall(true);
    let first = tokio::spawn(post(
        "/v1/skus/STALL-1/reservations".into(),
        json!({"reservation_id": "s1", "quantity": 1}),
    ));
    let second = tokio::spawn(post(
        "/v1/skus/STALL-2/reservations".into(),
        json!({"reservation_id": "s2", "quantity": 1}),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Both in-flight slots are held by requests waiting on the database: the next is shed.
    let (status, body, took) = post(
        "/v1/skus/STALL-3/reservations".into(),
        json!({"reservation_id": "s3", "quantity": 1}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:inventory-ledger:problem:overloaded");
    assert!(took < Duration::from_millis(500), "shedding took {took:?}");
    let (readiness, _, _) = read(client.get(api.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(readiness, 503, "readiness reflects the stalled database");
    for waiting in [first, second] {
        let (status, body, took) = waiting.await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(
            took < Duration::from_millis(5_000),
            "a request over the stalled link took {took:?}"
        );
    }

    proxy.stall(false);
    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body, _) = post(
            "/v1/skus/STALL-1/reservations".into(),
            json!({"reservation_id": "after", "quantity": 1}),
        )
        .await;
        if status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (readiness, _, _) = read(client.get(api.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(readiness, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_loses_no_acknowledged_command() {
    let folder = std::env::temp_dir().join(format!(
        "ledger-restart-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let options = ClusterOptions {
        folder: folder.clone(),
        durable: true,
        max_connections: 100,
    };
    let cluster = PrivateCluster::start(&options)
        .await
        .expect("a private cluster");
    cluster
        .remove_when_process_exits()
        .expect("the folder is removed at exit");
    let admin = cluster.connection_config("postgres");
    let (client, connection) = admin.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE DATABASE ledger")
        .await
        .unwrap();
    let socket = cluster
        .socket_dir()
        .display()
        .to_string()
        .replace('/', "%2F");
    let url = format!("postgresql://postgres@{socket}/ledger");
    let api = ApiProcess::start("restart", &url, &["--statement-timeout-ms", "2000"]).await;
    let http = reqwest::Client::new();
    let (status, body, _) = read(
        http.post(api.url("/v1/skus/RESTART-1/replenishments"))
            .json(&json!({"quantity": 100000}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Keyed reserves from 4 clients until told to stop; every answer is kept.
    let answers: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        let http = http.clone();
        let url = api.url("/v1/skus/RESTART-1/reservations");
        let answers = answers.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut index = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("w{worker}-{index}");
                index += 1;
                let status = match http
                    .post(&url)
                    .json(&json!({"reservation_id": id, "quantity": 1}))
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                };
                answers.lock().unwrap().push((id, status));
                if status != 201 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop().await.expect("the cluster stops");
    let mut saw_unready = false;
    for _ in 0..50 {
        let (status, _, _) = read(http.get(api.url("/readyz")).send().await.unwrap()).await;
        if status == 503 {
            saw_unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_unready, "readiness never reported the outage");
    tokio::time::sleep(Duration::from_secs(1)).await;
    PrivateCluster::start(&options)
        .await
        .expect("the cluster starts again");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let recent_ok = answers
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(8)
            .filter(|(_, status)| *status == 201)
            .count();
        if recent_ok == 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API did not recover by itself"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in load {
        worker.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let failed = answers.iter().filter(|(_, s)| *s != 201).count();
    assert!(failed > 0, "the restart should have failed some requests");

    // Every acknowledged reserve is in the stream; retrying the unacknowledged ones with their
    // keys applies each at most once.
    for (id, status) in answers.iter().filter(|(_, s)| *s != 201) {
        let (retry, body, _) = read(
            http.post(api.url("/v1/skus/RESTART-1/reservations"))
                .json(&json!({"reservation_id": id, "quantity": 1}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            retry, 201,
            "retry of {id} (first answered {status}): {body}"
        );
    }
    let (status, state, _) = read(
        http.get(api.url("/v1/skus/RESTART-1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        state["reserved"].as_u64(),
        Some(answers.len() as u64),
        "every reservation held exactly once: {state}"
    );
    let mut history = Vec::new();
    let mut after = None;
    loop {
        let mut path = "/v1/skus/RESTART-1/history?limit=1000".to_owned();
        if let Some(after) = after {
            path.push_str(&format!("&after_version={after}"));
        }
        let (status, page, _) = read(http.get(api.url(&path)).send().await.unwrap()).await;
        assert_eq!(status, 200, "{page}");
        history.extend(page["entries"].as_array().unwrap().clone());
        match page["next_after_version"].as_u64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let text = serde_json::to_string(&history).unwrap();
    for (id, _) in answers.iter().filter(|(_, s)| *s == 201) {
        assert!(
            text.contains(&format!("\"{id}\"")),
            "acknowledged {id} is missing"
        );
    }
    drop(api);
    let _ = cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_stops_at_its_deadline_and_a_second_interrupt_exits_at_once() {
    let database = TestDatabase::create().await;
    let proxy = TcpProxy::start(database.upstream()).await;
    let url = database.url_through(&proxy);
    let flags = [
        "--statement-timeout-ms",
        "30000",
        "--request-timeout-ms",
        "60000",
        "--shutdown-deadline-ms",
        "1000",
        "--projectors",
        "none",
    ];
    for signals in [&["TERM"][..], &["INT", "INT"][..]] {
        let mut api = ApiProcess::start("shutdown", &url, &flags).await;
        let client = reqwest::Client::new();
        let (status, _, _) = read(
            client
                .post(api.url("/v1/skus/SHUT-1/replenishments"))
                .json(&json!({"quantity": 1}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        proxy.stall(true);
        let hanging = tokio::spawn(
            client
                .post(api.url("/v1/skus/SHUT-1/replenishments"))
                .json(&json!({"quantity": 1}))
                .send(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        for signal in signals {
            api.send_signal(signal);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = tokio::task::block_in_place(|| api.wait_for_exit(Duration::from_secs(10)));
        let took = started.elapsed();
        let status = status.expect("the process exited");
        if signals.len() == 2 {
            assert_eq!(status.code(), Some(130), "{status}");
            assert!(
                took < Duration::from_millis(1_000),
                "second interrupt took {took:?}"
            );
        } else {
            assert!(
                took < Duration::from_millis(4_000),
                "shutdown took {took:?}"
            );
        }
        hanging.abort();
        proxy.stall(false);
        proxy.cut();
    }
}
