//! Abuse and bad-input protections of the API, each against a real server over HTTP on a real
//! PostgreSQL: idempotency keys and reservations belong to their principal, open mode is
//! refused off loopback, cross-site posts and foreign Host names are refused, rate limits per
//! principal, bounded memory for reads of many SKUs and made-up methods, bulkheads between
//! read-model queries and appends, and the roles table of the README matching the code.

mod support;

use ledger_api::auth::{Permission, Role};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{read, TestServer};

fn tokens() -> String {
    let hash = ledger_api::auth::hash_token;
    format!(
        "client:{}:alice,client:{}:bob,operator:{}:ops",
        hash("alice-token"),
        hash("bob-token"),
        hash("ops-token")
    )
}

async fn call(
    server: &TestServer,
    token: &str,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = server
        .client
        .post(server.url(path))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let (status, body, _) = read(request.send().await.unwrap()).await;
    (status, body)
}

fn problem_type(body: &Value) -> &str {
    body["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("urn:inventory-ledger:problem:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_and_reservations_belong_to_their_principal() {
    let server = TestServer::start_with(&["--tokens", &tokens()]).await;
    let sku = "OWN-1";
    let (status, body) = call(
        &server,
        "ops-token",
        &format!("/v1/skus/{sku}/replenishments"),
        None,
        json!({"quantity": 10}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reserve = format!("/v1/skus/{sku}/reservations");
    let (status, body) = call(
        &server,
        "alice-token",
        &reserve,
        Some("shared-key"),
        json!({"reservation_id": "r-alice", "quantity": 2}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Bob's request with the same key is his own request: carried out, not "deduplicated"
    // with Alice's answer.
    let (status, body) = call(
        &server,
        "bob-token",
        &reserve,
        Some("shared-key"),
        json!({"reservation_id": "r-bob", "quantity": 3}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["deduplicated"], false);
    assert_eq!(body["reservation_id"], "r-bob");
    assert_eq!(body["reserved"], 5);

    // Bob can neither claim, release nor confirm Alice's reservation.
    let (status, body) = call(
        &server,
        "bob-token",
        &reserve,
        None,
        json!({"reservation_id": "r-alice", "quantity": 2}),
    )
    .await;
    assert_eq!(
        (status, problem_type(&body)),
        (403, "reservation-held-by-another"),
        "{body}"
    );
    for action in ["release", "confirm"] {
        let (status, body) = call(
            &server,
            "bob-token",
            &format!("/v1/skus/{sku}/reservations/r-alice/{action}"),
            None,
            json!({}),
        )
        .await;
        assert_eq!(
            (status, problem_type(&body)),
            (403, "reservation-held-by-another"),
            "{action}: {body}"
        );
    }
    // Alice may; an operator may end anyone's.
    let (status, body) = call(
        &server,
        "alice-token",
        &format!("/v1/skus/{sku}/reservations/r-alice/release"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &server,
        "ops-token",
        &format!("/v1/skus/{sku}/reservations/r-bob/confirm"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["on_hand"].as_u64(), body["reserved"].as_u64()),
        (Some(7), Some(0))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_cannot_name_the_expiry_workers_key() {
    let server = TestServer::start_with(&["--tokens", &tokens()]).await;
    let sku = "EXPKEY-1";
    call(
        &server,
        "ops-token",
        &format!("/v1/skus/{sku}/replenishments"),
        None,
        json!({"quantity": 10}),
    )
    .await;
    let reserve = format!("/v1/skus/{sku}/reservations");
    let (status, body) = call(
        &server,
        "alice-token",
        &reserve,
        None,
        json!({"reservation_id": "r-short", "quantity": 1, "ttl_seconds": 1}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The key the expiry worker uses for that reservation, sent by a client first.
    let (status, body) = call(
        &server,
        "alice-token",
        &reserve,
        Some(&format!("expire:{sku}:r-short")),
        json!({"reservation_id": "r-other", "quantity": 1}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let client = server.client.clone();
    let url = server.url(&format!("/v1/skus/{sku}/reservations?status=expired"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body, _) = read(
            client
                .get(&url)
                .bearer_auth("ops-token")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let expired = body.to_string().contains("r-short");
        if expired {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reservation never expired: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_is_refused_off_loopback_unless_allowed() {
    let database = ledger_tests::postgres::TestDatabase::create().await;
    let url = database.url();
    let parse = |extra: &[&str]| {
        let mut args = vec!["api", "--listen", "0.0.0.0:0", "--database-url", &url];
        args.extend_from_slice(extra);
        <ledger_api::config::Config as clap::Parser>::try_parse_from(args).unwrap()
    };
    let refused = ledger_api::startup::start(parse(&[])).await;
    let error = refused
        .err()
        .expect("open mode on 0.0.0.0 is refused")
        .to_string();
    assert!(error.contains("--allow-open"), "{error}");
    let running = ledger_api::startup::start(parse(&["--allow-open"]))
        .await
        .expect("with --allow-open it starts");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_and_foreign_hosts_are_refused() {
    let server = TestServer::start().await;
    let (status, _, _) = server
        .post("/v1/skus/CSRF-1/replenishments", json!({"quantity": 5}))
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = server
        .post(
            "/v1/skus/CSRF-1/reservations",
            json!({"reservation_id": "r1", "quantity": 1}),
        )
        .await;
    assert_eq!(status, 201);
    // What a web page can send without a preflight: no body, or a form's content type.
    let release = server.url("/v1/skus/CSRF-1/reservations/r1/release");
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = server.client.post(&release);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, body, _) = read(request.send().await.unwrap()).await;
        assert_eq!(
            (status, problem_type(&body)),
            (415, "unsupported-media-type"),
            "{content_type:?}: {body}"
        );
    }
    let (status, body) = server.get("/v1/skus/CSRF-1").await;
    assert_eq!(
        (status, body["reserved"].as_u64()),
        (200, Some(1)),
        "{body}"
    );

    // DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 sends its own name.
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    for (host, allowed) in [
        (format!("evil.example:{port}"), false),
        (format!("localhost:{port}"), true),
        (format!("127.0.0.1:{port}"), true),
    ] {
        let (status, body, _) = read(
            server
                .client
                .get(server.url("/v1/skus/CSRF-1"))
                .header("host", host.as_str())
                .send()
                .await
                .unwrap(),
        )
        .await;
        if allowed {
            assert_eq!(status, 200, "{host}: {body}");
        } else {
            assert_eq!(
                (status, problem_type(&body)),
                (421, "host-not-allowed"),
                "{host}: {body}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_principal_has_its_own_rate_limit() {
    let server = TestServer::start_with(&[
        "--tokens",
        &tokens(),
        "--rate-limit-per-second",
        "1",
        "--rate-limit-burst",
        "3",
    ])
    .await;
    let get = |token: &'static str| {
        let request = server
            .client
            .get(server.url("/v1/skus/RATE-1"))
            .bearer_auth(token);
        async move { read(request.send().await.unwrap()).await }
    };
    let mut limited = None;
    for _ in 0..6 {
        let (status, body, headers) = get("alice-token").await;
        if status == 429 {
            limited = Some((body, headers));
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let (body, headers) = limited.expect("alice was rate limited within 6 requests");
    assert_eq!(problem_type(&body), "rate-limited", "{body}");
    assert_eq!(
        headers["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    // Bob's bucket is his own; probes are never limited.
    let (status, body, _) = get("bob-token").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("ledger_rate_limited_total{key=\"principal\"}"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_of_many_skus_and_made_up_methods_stay_bounded() {
    let server = TestServer::start_with(&["--writers-max", "20"]).await;
    for index in 0..300 {
        let (status, body) = server.get(&format!("/v1/skus/NEVER-{index}")).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        server.writers_active(),
        0,
        "reading a SKU must not start a writer"
    );
    for index in 0..100 {
        let (status, body, _) = server
            .post(
                &format!("/v1/skus/MANY-{index}/replenishments"),
                json!({"quantity": 1}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(server.writers_active() <= 20, "{}", server.writers_active());
    }
    for index in 0..200 {
        let method = reqwest::Method::from_bytes(format!("M{index}").as_bytes()).unwrap();
        let (status, _, _) = read(
            server
                .client
                .request(method, server.url("/v1/skus/MANY-1"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 405);
    }
    let (_, metrics) = server.get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        !metrics.contains("method=\"M1"),
        "a made-up method became a label"
    );
    assert!(metrics.contains("method=\"other\""));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_read_model_queries_do_not_starve_appends() {
    let server = TestServer::start_with(&["--statement-timeout-ms", "3000"]).await;
    let (status, _, _) = server
        .post("/v1/skus/BULK-1/replenishments", json!({"quantity": 100}))
        .await;
    assert_eq!(status, 200);
    // Wait until the read model exists, then hold a lock that blocks every query on it.
    server
        .wait_for("/v1/skus/BULK-1/reservations", |_| true)
        .await;
    let database_url = server.database_url();
    let (locker, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute("BEGIN; LOCK TABLE rm_reservations.reservations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // More blocked queries than the read models' pool has connections.
    let mut blocked = Vec::new();
    for _ in 0..30 {
        let request = server
            .client
            .get(server.url("/v1/skus/BULK-1/reservations"));
        blocked.push(tokio::spawn(async move { request.send().await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for index in 0..5 {
        let (status, body, _) = server
            .post(
                "/v1/skus/BULK-1/reservations",
                json!({"reservation_id": format!("b{index}"), "quantity": 1}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(2_000),
        "appends waited {:?} behind blocked read-model queries",
        started.elapsed()
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
    for request in blocked {
        let _ = request.await;
    }
    server.stop().await;
}

/// The README's roles table, between `<!-- roles:start -->` and `<!-- roles:end -->`: a row per
/// role, a column per permission, `yes` where the role has it.
#[test]
fn the_readmes_roles_table_is_what_the_code_allows() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README is readable");
    let start = readme
        .find("<!-- roles:start -->")
        .expect("roles table start marker");
    let end = readme
        .find("<!-- roles:end -->")
        .expect("roles table end marker");
    let rows: Vec<Vec<String>> = readme[start..end]
        .lines()
        .filter(|line| line.starts_with('|') && !line.contains("---"))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect();
    let header = &rows[0];
    let column = |permission: Permission| -> usize {
        let name = match permission {
            Permission::Read => "read",
            Permission::Reserve => "reserve, release / confirm own",
            Permission::EndAnyReservation => "release / confirm any",
            Permission::Manage => "replenish, adjust, reorder points",
            Permission::Audit => "history, movements, anchors",
        };
        header
            .iter()
            .position(|cell| cell == name)
            .unwrap_or_else(|| panic!("no column {name:?} in {header:?}"))
    };
    assert_eq!(rows.len(), 1 + Role::ALL.len(), "{rows:?}");
    for role in Role::ALL {
        let row = rows
            .iter()
            .find(|row| row[0] == role.as_str())
            .unwrap_or_else(|| panic!("no row for {}", role.as_str()));
        for permission in Permission::ALL {
            let documented = row[column(permission)] == "yes";
            assert_eq!(
                documented,
                role.allows(permission),
                "{} / {permission:?}: README says {documented}",
                role.as_str()
            );
        }
    }
}

/// The README's limits table, between `<!-- limits:start -->` and `<!-- limits:end -->`: every
/// flag it names is a flag of the binary with the default it states, and every metric it names
/// is one the code registers.
#[test]
fn the_readmes_limits_table_is_what_the_binary_offers() {
    use clap::CommandFactory;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README");
    let start = readme.find("<!-- limits:start -->").expect("start marker");
    let end = readme.find("<!-- limits:end -->").expect("end marker");
    let rows: Vec<Vec<String>> = readme[start..end]
        .lines()
        .filter(|line| line.starts_with('|') && !line.contains("---"))
        .skip(1)
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect();
    assert!(rows.len() >= 10, "{rows:?}");
    let command = ledger_api::config::Config::command();
    let mut sources = String::new();
    for folder in [
        "api/src",
        "ledger-core/postgres/src",
        "ledger-core/application/src",
    ] {
        for entry in std::fs::read_dir(format!("{root}/{folder}")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    for row in &rows {
        let (default, flag, metric) = (&row[1], &row[2], &row[4]);
        if let Some(flag) = flag.strip_prefix("`--").and_then(|f| f.strip_suffix('`')) {
            let argument = command
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .unwrap_or_else(|| panic!("README names --{flag}, which the binary lacks"));
            let stated: String = default.chars().take_while(char::is_ascii_digit).collect();
            if !stated.is_empty() {
                let defaults: Vec<String> = argument
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                assert_eq!(defaults, [stated], "default of --{flag}");
            }
        }
        for name in metric.split('`').filter(|part| part.starts_with("ledger_")) {
            let name = name.split('{').next().unwrap();
            assert!(
                sources.contains(&format!("\"{name}\"")),
                "README names metric {name}, which the code does not register"
            );
        }
    }
}

/// `hash-token` reads the secret from standard input (keeping it out of the process list and
/// the shell history), refuses an empty one, and a malformed token entry at start-up is
/// explained without repeating the entry (which may hold a secret).
#[test]
fn secrets_stay_out_of_argv_and_logs() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let binary = env!("CARGO_BIN_EXE_ledger-api");
    let hash_from_stdin = |input: &str| {
        let mut child = Command::new(binary)
            .arg("hash-token")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let output = hash_from_stdin("s3cret-from-stdin\n");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        ledger_api::auth::hash_token("s3cret-from-stdin")
    );
    assert!(!hash_from_stdin("\n").status.success());

    let secret = "client:not-a-hash-but-a-pasted-secret:alice";
    let output = Command::new(binary)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/nonexistent/never-created",
        ])
        .env("LEDGER_TOKENS", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("token"), "{said}");
    assert!(
        !said.contains("not-a-hash-but-a-pasted-secret"),
        "the malformed entry was repeated: {said}"
    );
}
