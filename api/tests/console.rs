//! The console in a real browser: the real `ledger-api` binary on a private PostgreSQL
//! database, a SKU seeded with a few hundred movements through the HTTP API, and headless
//! Chromium driven over the DevTools protocol — sign in with a token, find the SKU by prefix,
//! read its chart (one vertex per history entry, alert markers where the alerts opened), open an
//! as-of state from the movement table, zoom with the form and by dragging the mouse across the
//! chart, walk the page with the keyboard, read the audit page's anchor, meet a 403 for a token
//! without the audit role, and watch a stopped projector's lag. Screenshots of each page
//! are saved under `target/console-screenshots/`.

mod support;

#[path = "console/devtools.rs"]
mod devtools;

use chrono::{DateTime, Utc};
use devtools::Browser;
use ledger_tests::postgres::TestDatabase;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use support::process::ApiProcess;

const ADMIN_TOKEN: &str = "console-admin-secret";
const AUDITOR_TOKEN: &str = "console-auditor-secret";
const CLIENT_TOKEN: &str = "console-client-secret";

/// The SKU the console shows, and two others a prefix search must tell apart from it.
const SKU: &str = "CONSOLE-WIDGET-1";
const NEIGHBOUR: &str = "CONSOLE-GADGET-2";
const STRANGER: &str = "STORE-9";

const REORDER_POINT: u64 = 50;
const START_UNITS: u64 = 100;
/// Each cycle reserves 8 × 10 units (available falls to 20, below the reorder point: an alert
/// opens), confirms half and releases half, replenishes what was confirmed (available is back
/// at 100: the alert closes) and corrects the count by one unit.
const CYCLES: u64 = 15;
const RESERVES_PER_CYCLE: u64 = 8;
const RESERVE_UNITS: u64 = 10;

/// Longest the read models may take to catch up with the seeded streams.
const CONVERGENCE_DEADLINE_MS: u64 = 60_000;

fn tokens() -> String {
    let hash = ledger_api::auth::hash_token;
    format!(
        "admin:{}:console-admin,auditor:{}:console-auditor,client:{}:console-client",
        hash(ADMIN_TOKEN),
        hash(AUDITOR_TOKEN),
        hash(CLIENT_TOKEN)
    )
}

fn screenshots() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/console-screenshots"
    ))
}

fn browser_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ledger-console-{}-{name}", std::process::id()))
}

struct Api {
    process: ApiProcess,
    client: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        correlation: &str,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, self.process.url(path))
            .bearer_auth(token)
            .header("x-correlation-id", correlation);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let (status, body, _) = support::read(response).await;
        (status, body)
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value, correlation: &str) {
        let (status, answer) = self
            .send(method, path, ADMIN_TOKEN, Some(body), correlation)
            .await;
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, token, None, "console-test-read")
            .await
    }

    /// Poll `path` until `done` holds, or fail at the deadline.
    async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CONVERGENCE_DEADLINE_MS);
        loop {
            let (status, body) = self.get(path, ADMIN_TOKEN).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} did not converge within {CONVERGENCE_DEADLINE_MS} ms: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every history entry of `sku`, page after page.
    async fn history(&self, sku: &str) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut after = None::<u64>;
        loop {
            let path = match after {
                Some(v) => format!("/v1/skus/{sku}/history?limit=1000&after_version={v}"),
                None => format!("/v1/skus/{sku}/history?limit=1000"),
            };
            let (status, page) = self.get(&path, AUDITOR_TOKEN).await;
            assert_eq!(status, 200, "{page}");
            entries.extend(page["entries"].as_array().unwrap().iter().cloned());
            match page["next_after_version"].as_u64() {
                Some(v) => after = Some(v),
                None => return entries,
            }
        }
    }
}

async fn start_api(extra: &[&str]) -> (Api, TestDatabase) {
    let database = TestDatabase::create().await;
    let tokens = tokens();
    let mut args = vec!["--tokens", tokens.as_str()];
    args.extend_from_slice(extra);
    let process = ApiProcess::start("console", &database.url(), &args).await;
    let api = Api {
        process,
        client: reqwest::Client::new(),
    };
    (api, database)
}

/// The seeded SKU's story: opening stock, then the reorder point (so no alert opens before
/// the first cycle), then [`CYCLES`]. Ends with two open reservations of an hour, the
/// second of which leaves the SKU below its reorder point with an alert open.
async fn seed(api: &Api) -> u64 {
    use reqwest::Method;
    let mut step = 0u64;
    let mut next = || {
        step += 1;
        format!("seed-{step}")
    };
    let sku = |tail: &str| format!("/v1/skus/{SKU}{tail}");
    api.command(
        Method::POST,
        &sku("/replenishments"),
        json!({"quantity": START_UNITS, "reference": "opening stock"}),
        &next(),
    )
    .await;
    api.command(
        Method::PUT,
        &sku("/reorder-point"),
        json!({"reorder_point": REORDER_POINT}),
        &next(),
    )
    .await;
    for cycle in 0..CYCLES {
        for k in 0..RESERVES_PER_CYCLE {
            api.command(
                Method::POST,
                &sku("/reservations"),
                json!({"quantity": RESERVE_UNITS, "reservation_id": format!("r-{cycle}-{k}"),
                       "order_id": format!("order-{cycle}-{k}")}),
                &next(),
            )
            .await;
        }
        for k in 0..RESERVES_PER_CYCLE {
            let (action, body) = if k % 2 == 0 {
                ("confirm", json!({}))
            } else {
                ("release", json!({"reason": "customer cancelled"}))
            };
            api.command(
                Method::POST,
                &sku(&format!("/reservations/r-{cycle}-{k}/{action}")),
                body,
                &next(),
            )
            .await;
        }
        api.command(
            Method::POST,
            &sku("/replenishments"),
            json!({"quantity": RESERVE_UNITS * RESERVES_PER_CYCLE / 2, "reference": format!("po-{cycle}")}),
            &next(),
        )
        .await;
        let delta = if cycle % 2 == 0 { -1 } else { 1 };
        api.command(
            Method::POST,
            &sku("/adjustments"),
            json!({"delta": delta, "reason": "cycle count"}),
            &next(),
        )
        .await;
    }
    for (id, units) in [("hold-1", 10), ("hold-2", 50)] {
        api.command(
            Method::POST,
            &sku("/reservations"),
            json!({"quantity": units, "reservation_id": id, "ttl_seconds": 3600}),
            &next(),
        )
        .await;
    }
    for other in [NEIGHBOUR, STRANGER] {
        api.command(
            Method::POST,
            &format!("/v1/skus/{other}/replenishments"),
            json!({"quantity": 5}),
            &next(),
        )
        .await;
    }
    step
}

/// The versions at which an alert opened, by the rule the read model follows: available falls
/// below the reorder point while no alert is open.
fn alert_openings(entries: &[Value]) -> Vec<u64> {
    let mut open = false;
    let mut openings = Vec::new();
    for entry in entries {
        let below = entry["available_after"].as_u64() < entry["reorder_point_after"].as_u64();
        if below && !open {
            openings.push(entry["version"].as_u64().unwrap());
        }
        open = below;
    }
    openings
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

fn sign_in(browser: &mut Browser, token: &str) {
    browser.wait_for(
        "!document.getElementById('sign-in').hidden",
        "the sign-in form is shown",
    );
    browser.type_into("#token", token);
    browser.press("Enter");
    browser.wait_for(
        "document.getElementById('sign-in').hidden && !document.getElementById('session').hidden",
        "the token is accepted",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sku_page_draws_every_movement_and_its_alerts_and_links_to_as_of_states() {
    let (api, _database) = start_api(&[]).await;

    // The console's files: embedded, typed, under a strict policy, without a token.
    let response = api
        .client
        .get(api.process.url("/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    for (path, kind) in [
        ("/console/console.js", "text/javascript"),
        ("/console/chart.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let response = api.client.get(api.process.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }

    let requests = seed(&api).await;
    let entries = api.history(SKU).await;
    assert!(entries.len() >= 250, "{} entries", entries.len());
    let openings = alert_openings(&entries);
    assert_eq!(openings.len() as u64, CYCLES + 1, "{openings:?}");
    let last_version = entries.last().unwrap()["version"].as_u64().unwrap();
    // The read models the pages use have caught up with everything seeded.
    api.wait_for(&format!("/v1/skus?prefix={SKU}"), |rows| {
        rows[0]["version"].as_u64() == Some(last_version)
    })
    .await;
    api.wait_for(&format!("/v1/skus/{SKU}/alerts"), |alerts| {
        alerts.as_array().map(Vec::len) == Some(openings.len())
    })
    .await;
    api.wait_for(
        &format!("/v1/skus/{SKU}/reservations?status=open"),
        |rows| rows.as_array().map(Vec::len) == Some(2),
    )
    .await;
    api.wait_for("/v1/skus?prefix=STORE", |rows| {
        rows.as_array().map(Vec::len) == Some(1)
    })
    .await;
    // The prefix search itself: `_` and `.` are characters, not patterns; bad prefixes are 422.
    let (status, rows) = api.get("/v1/skus?prefix=CONSOLE-", CLIENT_TOKEN).await;
    assert_eq!(status, 200);
    let found: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sku"].as_str().unwrap())
        .collect();
    assert_eq!(found, [NEIGHBOUR, SKU]);
    let (status, rows) = api.get("/v1/skus?prefix=CONSOLE_", CLIENT_TOKEN).await;
    assert_eq!((status, rows), (200, json!([])));
    let (status, rows) = api
        .get(
            "/v1/skus?prefix=CONSOLE-&after_sku=CONSOLE-GADGET-2&limit=1",
            CLIENT_TOKEN,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rows[0]["sku"], SKU);
    let (status, problem) = api.get("/v1/skus?prefix=-no", CLIENT_TOKEN).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "prefix");

    let shots = screenshots();
    let dir = browser_dir("sku");
    let mut browser = Browser::launch(&dir);
    browser.navigate(&api.process.url("/console"));
    sign_in(&mut browser, AUDITOR_TOKEN);

    // Find the SKU by prefix.
    browser.wait_for("document.getElementById('prefix')", "the search form");
    browser.type_into("#prefix", "CONSOLE-W");
    browser.press("Enter");
    let listed = browser.wait_for(
        "(() => { const rows = document.querySelectorAll('#sku-results tbody tr'); \
         return rows.length ? Array.from(rows, r => r.dataset.sku) : null; })()",
        "search results",
    );
    assert_eq!(listed, json!([SKU]));
    browser.screenshot(&shots.join("find.png"));
    browser.click(&format!("#sku-results tr[data-sku='{SKU}'] a"));

    // The chart: one vertex per history entry in every series.
    let drawn = browser.wait_for(
        "(() => { const s = document.querySelector('svg.timeline'); \
         return s && document.querySelectorAll('#movements tbody tr').length && \
           document.querySelector('#reservations') ? Number(s.dataset.points) : null; })()",
        "the timeline, the movements and the reservations are drawn",
    );
    assert_eq!(drawn, json!(entries.len()));
    for series in [
        "on_hand_after",
        "reserved_after",
        "available_after",
        "reorder_point_after",
    ] {
        let ys = browser.eval(&format!(
            "Array.from(document.querySelector('polyline[data-series={series}]').points, p => p.y)"
        ));
        let ys = numbers(&ys);
        assert_eq!(ys.len(), entries.len(), "{series}");
        // Each vertex rises exactly where the figure rises (SVG's y grows downwards).
        for (i, pair) in entries.windows(2).enumerate() {
            let (a, b) = (pair[0][series].as_u64(), pair[1][series].as_u64());
            let (ya, yb) = (ys[i], ys[i + 1]);
            assert_eq!(
                a.cmp(&b),
                yb.partial_cmp(&ya).unwrap(),
                "{series} between versions {} and {}",
                pair[0]["version"],
                pair[1]["version"]
            );
        }
    }
    // An alert marker at each version where an alert opened, on that entry's vertex.
    let markers = browser.eval(
        "Array.from(document.querySelectorAll('g[data-alert=opened]'), g => \
         [Number(g.dataset.version), Number(g.dataset.x)])",
    );
    let xs = numbers(&browser.eval(
        "Array.from(document.querySelector('polyline[data-series=available_after]').points, p => p.x)",
    ));
    let mut marked: Vec<u64> = Vec::new();
    for marker in markers.as_array().unwrap() {
        let version = marker[0].as_u64().unwrap();
        let index = entries
            .iter()
            .position(|e| e["version"].as_u64() == Some(version))
            .expect("a marker names a version of the history");
        assert!(
            (marker[1].as_f64().unwrap() - xs[index]).abs() < 0.05,
            "{marker}"
        );
        marked.push(version);
    }
    marked.sort_unstable();
    assert_eq!(marked, openings);
    let closed = browser.eval("document.querySelectorAll('g[data-alert=closed]').length");
    assert_eq!(closed, json!(CYCLES));
    // The movement table, newest first, with actor, correlation id and reason.
    let first_row = browser.eval(
        "Array.from(document.querySelector('#movements tbody tr').children, c => c.textContent)",
    );
    let newest = entries.last().unwrap();
    assert_eq!(first_row[0], json!(newest["version"].to_string()));
    assert_eq!(first_row[8], json!("console-admin"));
    assert_eq!(first_row[9], newest["correlation_id"]);
    let reasons = browser.eval(
        "Array.from(document.querySelectorAll('#movements tbody tr'), r => r.children[10].textContent)",
    );
    assert!(reasons
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "customer cancelled"));
    let held = browser.eval(
        "Array.from(document.querySelectorAll('#reservations tbody tr'), r => r.dataset.reservation).sort()",
    );
    assert_eq!(held, json!(["hold-1", "hold-2"]));
    browser.screenshot(&shots.join("sku.png"));

    // At phone width nothing but the tables' own scroll areas is wider than the screen.
    browser.viewport(390, 844, true);
    let fits = browser.wait_for(
        "document.documentElement.scrollWidth <= window.innerWidth",
        "the SKU page fits a phone's width",
    );
    assert_eq!(fits, json!(true));
    browser.screenshot(&shots.join("sku-phone.png"));
    browser.viewport(1280, 800, false);

    // An as-of state from a row of the table.
    let chosen = &entries[entries.len() - 10];
    let version = chosen["version"].as_u64().unwrap();
    browser.click(&format!("#movements tr[data-version='{version}'] a"));
    let on_hand = browser.wait_for(
        "(() => { const d = document.querySelector('#as-of dd[data-field=on_hand]'); \
         return d && d.textContent; })()",
        "the as-of state is shown",
    );
    assert_eq!(on_hand, json!(chosen["on_hand_after"].to_string()));
    for field in ["reserved", "available", "reorder_point"] {
        let shown = browser.eval(&format!(
            "document.querySelector('#as-of dd[data-field={field}]').textContent"
        ));
        assert_eq!(
            shown,
            json!(chosen[format!("{field}_after")].to_string()),
            "{field}"
        );
    }
    let shown_version =
        browser.eval("document.querySelector('#as-of dd[data-field=version]').textContent");
    assert_eq!(shown_version, json!(version.to_string()));
    let movement = browser.eval("document.getElementById('as-of-movement').textContent");
    assert!(movement
        .as_str()
        .unwrap()
        .contains(chosen["correlation_id"].as_str().unwrap()));
    browser.screenshot(&shots.join("as-of.png"));

    // Zoom to a time range: only the entries recorded in it are drawn.
    let from = chosen_time(&entries[100]);
    let to = chosen_time(&entries[200]);
    let expected = recorded_between(&entries, from, to);
    browser.eval(&format!("location.hash = '#/sku/{SKU}'; true"));
    browser.wait_for("document.getElementById('zoom-from')", "the zoom form");
    browser.type_into("#zoom-from", entries[100]["recorded_at"].as_str().unwrap());
    browser.type_into("#zoom-to", entries[200]["recorded_at"].as_str().unwrap());
    browser.press("Enter");
    let zoomed = browser.wait_for(
        &format!(
            "(() => {{ const s = document.querySelector('svg.timeline'); \
             return s && location.hash.includes('from=') && Number(s.dataset.points) !== {} \
             ? Number(s.dataset.points) : null; }})()",
            entries.len()
        ),
        "the zoomed timeline",
    );
    assert_eq!(zoomed, json!(expected));

    // Back to the whole history, then zoom by dragging the mouse across the chart from 20 %
    // to 60 % of the plot's width: the range asked for is that part of the time axis, and
    // only the entries recorded in it are drawn.
    let whole_history = format!(
        "(() => {{ const s = document.querySelector('svg.timeline'); \
         return s && !location.hash.includes('from=') && \
         Number(s.dataset.points) === {n} ? {n} : null; }})()",
        n = entries.len()
    );
    browser.click("#zoom-reset");
    browser.wait_for(&whole_history, "the whole history again");
    let surface = numbers(&browser.eval(
        "(() => { const s = document.querySelector('svg.timeline .zoom-surface'); \
         s.scrollIntoView({block: 'center'}); const r = s.getBoundingClientRect(); \
         return [r.left, r.top, r.width, r.height]; })()",
    ));
    let [left, top, width, height] = surface[..] else {
        panic!("the zoom surface's box: {surface:?}")
    };
    let y = top + height / 2.0;
    browser.drag((left + width * 0.2, y), (left + width * 0.6, y), 12);
    let dragged = browser.wait_for(
        &format!(
            "(() => {{ const s = document.querySelector('svg.timeline'); \
             if (!s || !location.hash.includes('from=') || Number(s.dataset.points) === {}) \
               return null; \
             const q = new URLSearchParams(location.hash.split('?')[1]); \
             return [Number(s.dataset.points), q.get('from'), q.get('to'), \
               document.querySelector('polyline[data-series=on_hand_after]').points.length]; }})()",
            entries.len()
        ),
        "the dragged range drawn",
    );
    let points = dragged[0].as_u64().unwrap() as usize;
    let from: DateTime<Utc> = dragged[1].as_str().unwrap().parse().unwrap();
    let to: DateTime<Utc> = dragged[2].as_str().unwrap().parse().unwrap();
    let (first, last) = (
        chosen_time(&entries[0]),
        chosen_time(entries.last().unwrap()),
    );
    let span = (last - first).num_milliseconds() as f64;
    let fraction = |t: DateTime<Utc>| (t - first).num_milliseconds() as f64 / span;
    assert!(
        (fraction(from) - 0.2).abs() < 0.02 && (fraction(to) - 0.6).abs() < 0.02,
        "dragged 20 %–60 %, asked for {from}–{to} of {first}–{last}"
    );
    let expected = recorded_between(&entries, from, to);
    assert!(
        0 < expected && expected < entries.len(),
        "{expected} entries in the range"
    );
    assert_eq!(
        points, expected,
        "one vertex per entry in the dragged range"
    );
    assert_eq!(dragged[3], json!(expected));
    browser.screenshot(&shots.join("sku-dragged.png"));
    browser.click("#zoom-reset");
    browser.wait_for(&whole_history, "the whole history after the reset");

    // The low-stock list names the SKU, which ends below its reorder point.
    browser.eval("location.hash = '#/low-stock'; true");
    let low = browser.wait_for(
        "(() => { const rows = document.querySelectorAll('#low-stock-table tbody tr'); \
         return rows.length ? Array.from(rows, r => r.dataset.sku) : null; })()",
        "the low-stock list",
    );
    assert_eq!(low, json!([SKU]));
    browser.screenshot(&shots.join("low-stock.png"));

    // Keyboard: from the top of the page, Tab reaches the skip link, every page of the
    // navigation, and the search field.
    // (A fresh load starts the focus order at the top; the token stays for the tab.)
    browser.eval("location.hash = '#/find'; window.beforeReload = true; true");
    browser.call("Page.reload", json!({}));
    browser.wait_for(
        "!window.beforeReload && document.getElementById('prefix') && \
         !document.getElementById('session').hidden",
        "the search page, still signed in",
    );
    let mut reached = Vec::new();
    for _ in 0..12 {
        browser.press("Tab");
        let focused = browser.eval(
            "(() => { const e = document.activeElement; \
             return e.id || e.getAttribute('href') || e.tagName; })()",
        );
        reached.push(focused.as_str().unwrap_or_default().to_owned());
    }
    for expected in [
        "skip",
        "#/find",
        "#/low-stock",
        "#/projections",
        "#/audit",
        "prefix",
    ] {
        assert!(
            reached.iter().any(|r| r == expected),
            "Tab never reached {expected}: {reached:?}"
        );
    }

    // The audit page shows the anchor GET /v1/anchor reports (no event is appended between
    // the two, so both are of the same log).
    browser.eval("location.hash = '#/audit'; true");
    let shown = browser.wait_for(
        "(() => { const d = document.querySelector('#anchor dd[data-field=merkle_root]'); \
         if (!d) return null; \
         const f = (name) => document.querySelector(`#anchor dd[data-field=${name}]`).textContent; \
         return [f('merkle_root'), f('log_position'), f('streams'), f('events'), f('format'), \
           document.querySelector('#anchor dd[data-field=taken_at] time').getAttribute('datetime'), \
           JSON.parse(document.getElementById('anchor-json').textContent)]; })()",
        "the anchor",
    );
    let (status, anchor) = api.get("/v1/anchor", AUDITOR_TOKEN).await;
    assert_eq!(status, 200, "{anchor}");
    let position = &anchor["log_position"];
    assert_eq!(shown[0], anchor["merkle_root"]);
    assert_eq!(
        shown[1],
        json!(format!("{}/{}", position["commit"], position["prepare"]))
    );
    assert_eq!(shown[2], json!(anchor["streams"].to_string()));
    assert_eq!(shown[3], json!(anchor["events"].to_string()));
    assert_eq!(shown[4], anchor["format"]);
    assert_eq!(
        shown[6]["taken_at"], shown[5],
        "the time shown is the anchor's"
    );
    let mut page_anchor = shown[6].clone();
    let mut api_anchor = anchor.clone();
    for body in [&mut page_anchor, &mut api_anchor] {
        body.as_object_mut().unwrap().remove("taken_at");
    }
    assert_eq!(page_anchor, api_anchor, "the JSON to keep is the API's");
    let streams = anchor["streams"].as_u64().unwrap();
    assert_eq!(streams, 3, "{SKU}, {NEIGHBOUR} and {STRANGER}");
    browser.screenshot(&shots.join("audit.png"));
    // From the keyboard: Enter on the button takes a new anchor, and the focus stays on it.
    browser.eval(
        "window.firstTakenAt = document.querySelector('#anchor dd[data-field=taken_at] time')\
         .getAttribute('datetime'); document.getElementById('anchor-again').focus(); true",
    );
    browser.press("Enter");
    let again = browser.wait_for(
        "(() => { const t = document.querySelector('#anchor dd[data-field=taken_at] time'); \
         return t && t.getAttribute('datetime') !== window.firstTakenAt && \
           document.activeElement.id === 'anchor-again' && \
           document.querySelector('#anchor dd[data-field=merkle_root]').textContent; })()",
        "a new anchor, the focus on its button",
    );
    assert_eq!(again, anchor["merkle_root"], "the log has not changed");

    // A token without the audit role: the balances show, the history says why it does not.
    browser.click("#forget");
    sign_in(&mut browser, CLIENT_TOKEN);
    browser.eval(&format!("location.hash = '#/sku/{SKU}'; true"));
    let refused = browser.wait_for(
        "(() => { const p = document.querySelector('#timeline [data-problem=forbidden]'); \
         return p && document.querySelector('#balances dd[data-field=on_hand]') && p.textContent; })()",
        "the 403 message",
    );
    let refused = refused.as_str().unwrap();
    assert!(refused.contains("audit role"), "{refused}");
    assert!(
        refused.contains("the client role may not do this"),
        "{refused}"
    );
    let announced = browser.eval("document.getElementById('messages').textContent");
    assert!(announced.as_str().unwrap().contains("audit role"));
    browser.screenshot(&shots.join("sku-forbidden.png"));
    // The audit page, likewise: the anchor needs the audit role.
    browser.eval("location.hash = '#/audit'; true");
    let refused = browser.wait_for(
        "(() => { const p = document.querySelector('#anchor-now [data-problem=forbidden]'); \
         return p && p.textContent; })()",
        "the audit page's 403 message",
    );
    let refused = refused.as_str().unwrap();
    assert!(refused.contains("audit role"), "{refused}");
    assert!(
        browser
            .eval("document.getElementById('anchor') === null")
            .as_bool()
            .unwrap(),
        "no anchor is shown"
    );
    browser.screenshot(&shots.join("audit-forbidden.png"));

    // The token never reached an address, and the page raised no error (a script or style
    // the policy refused would be one).
    let href = browser.eval("location.href");
    for token in [ADMIN_TOKEN, AUDITOR_TOKEN, CLIENT_TOKEN] {
        assert!(!href.as_str().unwrap().contains(token));
    }
    assert!(browser.errors.is_empty(), "{:?}", browser.errors);
    assert!(requests > 250);
    drop(browser);
    let _ = std::fs::remove_dir_all(dir);
}

/// How many of `entries` were recorded in [from, to).
fn recorded_between(entries: &[Value], from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
    entries
        .iter()
        .filter(|e| (from..to).contains(&chosen_time(e)))
        .count()
}

fn chosen_time(entry: &Value) -> DateTime<Utc> {
    entry["recorded_at"]
        .as_str()
        .unwrap()
        .parse()
        .expect("recorded_at is RFC 3339")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_projections_page_shows_a_stopped_projector_falling_behind() {
    // Every projector runs in the process but the movement ledger's.
    let (api, _database) = start_api(&[
        "--projectors",
        "stock_levels,reservations,low_stock_alerts,locations",
    ])
    .await;
    const EVENTS: u64 = 12;
    for i in 0..EVENTS {
        api.command(
            reqwest::Method::POST,
            "/v1/skus/LAG-1/replenishments",
            json!({"quantity": 1}),
            &format!("lag-{i}"),
        )
        .await;
    }
    let statuses = api
        .wait_for("/v1/projections", |rows| {
            rows.as_array().unwrap().iter().any(|p| {
                p["name"] == "stock_levels" && p["lag_events"] == 0 && p["running"] == true
            })
        })
        .await;
    let stopped = statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "stock_movements")
        .expect("the movement ledger is listed")
        .clone();
    assert_eq!(stopped["running"], false);
    assert_eq!(stopped["lag_events"], EVENTS, "{stopped}");

    let dir = browser_dir("projections");
    let mut browser = Browser::launch(&dir);
    browser.navigate(&api.process.url("/console#/projections"));
    sign_in(&mut browser, CLIENT_TOKEN);
    let row = browser.wait_for(
        "(() => { const r = document.querySelector('#projections tr[data-projection=stock_movements]'); \
         return r && [r.dataset.running, Number(r.dataset.lagEvents), r.textContent]; })()",
        "the stopped projection's row",
    );
    assert_eq!(row[0], "false");
    assert_eq!(row[1], json!(EVENTS));
    assert!(row[2].as_str().unwrap().contains("not running"), "{row}");
    let running = browser.eval(
        "document.querySelector('#projections tr[data-projection=stock_levels]').dataset.running",
    );
    assert_eq!(running, "true");
    // The lag chart grows by a sample every couple of seconds and keeps them.
    let samples = browser.wait_for(
        "(() => { const s = document.querySelector('figure[data-projection=stock_movements] svg'); \
         return s && Number(s.dataset.samples) >= 3 ? Number(s.dataset.samples) : null; })()",
        "three lag samples of the stopped projection",
    );
    let points = browser.eval(
        "document.querySelector('figure[data-projection=stock_movements] polyline').points.numberOfItems",
    );
    assert!(points.as_u64() >= samples.as_u64(), "{points} {samples}");
    browser.screenshot(&screenshots().join("projections.png"));
    assert!(browser.errors.is_empty(), "{:?}", browser.errors);
    drop(browser);
    let _ = std::fs::remove_dir_all(dir);
}
