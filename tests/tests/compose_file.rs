//! The compose file checked against the code: every environment variable it sets for a ledger
//! binary is one that binary reads, the ports agree, and every service the binaries need is
//! there and started before them.
//!
//! The binaries' variable lists and defaults come from their own command-line definitions
//! (clap), so they cannot drift from what the binaries read.

use serde_norway::Value;
use std::collections::BTreeSet;

const COMPOSE_FILE: &str = include_str!("../../compose/docker-compose.yml");
const DOCKERFILE: &str = include_str!("../../compose/Dockerfile");
const PROMETHEUS_CONFIG: &str = include_str!("../../compose/prometheus.yml");
const DASHBOARD: &str = include_str!("../../compose/grafana/dashboards/ledger.json");
const DATASOURCES: &str =
    include_str!("../../compose/grafana/provisioning/datasources/datasources.yml");
const API_TELEMETRY_SOURCE: &str = include_str!("../../api/src/telemetry.rs");
const API_COMMANDS_SOURCE: &str = include_str!("../../api/src/routes/commands.rs");
const PROJECTOR_RUNTIME_SOURCE: &str = include_str!("../../projections/src/runtime.rs");

/// The port the API listens on by default and in compose.
const API_PORT: u16 = 8080;

/// The port EventStoreDB/KurrentDB serves gRPC on.
const EVENTSTORE_PORT: u16 = 2113;

/// Services the production topology needs besides the two ledger binaries.
const SUPPORT_SERVICES: &[&str] = &["eventstore", "postgres", "prometheus", "grafana", "jaeger"];

fn compose() -> Value {
    serde_norway::from_str(COMPOSE_FILE).expect("the compose file is valid YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("the compose file has no {name} service"))
}

fn environment(service: &Value) -> Vec<(String, String)> {
    let Some(mapping) = service["environment"].as_mapping() else {
        return Vec::new();
    };
    mapping
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                other => panic!("unexpected value {other:?}"),
            };
            (name.as_str().expect("names are text").to_owned(), value)
        })
        .collect()
}

fn variable(service: &Value, name: &str) -> String {
    environment(service)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not set"))
        .1
}

fn depends_on(service: &Value) -> BTreeSet<String> {
    match &service["depends_on"] {
        Value::Sequence(names) => names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
        Value::Mapping(names) => names
            .keys()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// (host, port) of a URL such as `esdb://eventstore:2113?tls=false` or
/// `postgres://user:password@postgres:5432/ledger`.
fn host_and_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").expect("a URL has a scheme").1;
    // The credentials may hold compose substitutions such as `${VAR:?message}`; the host
    // follows the last `@`.
    let after_credentials = rest.rsplit_once('@').map_or(rest, |(_, tail)| tail);
    let host_port = after_credentials
        .split(['/', '?'])
        .next()
        .expect("a URL has an authority");
    let (host, port) = host_port.rsplit_once(':').expect("the URL names a port");
    (host.to_owned(), port.parse().expect("the port is a number"))
}

#[test]
fn every_variable_set_for_a_ledger_binary_is_one_it_reads() {
    let compose = compose();
    for (name, read) in [
        ("api", ledger_api::config::environment_variables()),
        (
            "projector",
            ledger_projections::cli::environment_variables(),
        ),
    ] {
        let set = environment(service(&compose, name));
        assert!(!set.is_empty(), "the {name} service sets no variables");
        for (variable, _) in set {
            assert!(
                read.contains(&variable),
                "compose sets {variable} for {name}, which reads only {read:?}"
            );
        }
    }
}

#[test]
fn the_api_listens_where_compose_and_prometheus_expect_it() {
    let command = <ledger_api::config::Config as clap::CommandFactory>::command();
    let listen_default = command
        .get_arguments()
        .find(|argument| argument.get_id() == "listen")
        .expect("the API has a --listen flag")
        .get_default_values()
        .to_vec();
    assert_eq!(
        listen_default,
        [format!("127.0.0.1:{API_PORT}")],
        "the API's default listen port is {API_PORT}"
    );
    let compose = compose();
    let api = service(&compose, "api");
    let listen = variable(api, "LEDGER_LISTEN");
    assert_eq!(
        listen,
        format!("0.0.0.0:{API_PORT}"),
        "inside a container the API listens on every interface"
    );
    let published: Vec<&str> = api["ports"]
        .as_sequence()
        .expect("the API publishes its port")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        published
            .iter()
            .any(|p| p.ends_with(&format!(":{API_PORT}"))),
        "{published:?}"
    );
    assert!(DOCKERFILE.contains(&format!("EXPOSE {API_PORT}")));
    let prometheus: Value = serde_norway::from_str(PROMETHEUS_CONFIG).unwrap();
    let job = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|job| job["job_name"].as_str() == Some("ledger-api"))
        .expect("Prometheus scrapes the API");
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    assert_eq!(
        job["static_configs"][0]["targets"][0].as_str(),
        Some(format!("api:{API_PORT}").as_str())
    );
}

#[test]
fn every_service_the_binaries_need_is_present_and_started_before_them() {
    let compose = compose();
    for name in SUPPORT_SERVICES {
        service(&compose, name);
    }
    for name in ["api", "projector"] {
        let binary = service(&compose, name);
        let (eventstore_host, eventstore_port) = host_and_port(&variable(binary, "EVENTSTORE_URL"));
        assert_eq!(
            (eventstore_host.as_str(), eventstore_port),
            ("eventstore", EVENTSTORE_PORT)
        );
        assert!(
            variable(binary, "EVENTSTORE_URL").contains("tls="),
            "the adapter requires the connection string to state TLS"
        );
        let (database_host, _) = host_and_port(&variable(binary, "DATABASE_URL"));
        assert_eq!(database_host, "postgres");
        let needs = depends_on(binary);
        for dependency in ["eventstore", "postgres"] {
            assert!(
                needs.contains(dependency),
                "{name} must start after {dependency}"
            );
        }
    }
    assert_eq!(
        variable(service(&compose, "api"), "LEDGER_PROJECTORS"),
        "false",
        "projections run in the separate projector service"
    );
    assert_eq!(
        variable(service(&compose, "jaeger"), "COLLECTOR_OTLP_ENABLED"),
        "true",
        "the tracing backend receives OTLP"
    );
}

#[test]
fn the_image_builds_every_binary_the_services_run() {
    let compose = compose();
    let mut commands = BTreeSet::new();
    for (name, definition) in compose["services"].as_mapping().unwrap() {
        if let Some(command) = definition["command"].as_sequence() {
            let binary = command[0].as_str().unwrap().to_owned();
            assert_eq!(
                definition["image"].as_str(),
                Some("inventory-ledger:latest"),
                "{name:?} runs a ledger binary from the ledger image"
            );
            commands.insert(binary);
        }
    }
    assert_eq!(
        commands,
        BTreeSet::from(["ledger-api".to_owned(), "ledger-projector".to_owned()])
    );
    for binary in ["ledger-api", "ledger-projector", "ledger-replay"] {
        assert!(
            DOCKERFILE.contains(&format!("--bin {binary}")),
            "the Dockerfile builds {binary}"
        );
    }
}

#[test]
fn the_dashboard_shows_metrics_the_binaries_export() {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let panels = dashboard["panels"]
        .as_array()
        .expect("the dashboard has panels");
    let titles: BTreeSet<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for title in [
        "Reserve rate",
        "Reserve latency",
        "Conflicts",
        "Projection lag",
        "Open low-stock alerts",
    ] {
        assert!(titles.contains(title), "no {title} panel in {titles:?}");
    }
    let exported = [
        API_TELEMETRY_SOURCE,
        API_COMMANDS_SOURCE,
        PROJECTOR_RUNTIME_SOURCE,
    ]
    .concat();
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let Some(expression) = target["expr"].as_str() else {
                continue;
            };
            let metrics = expression
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("ledger_"))
                .map(|word| word.trim_end_matches("_bucket"));
            for metric in metrics {
                assert!(
                    exported.contains(metric),
                    "{metric} is not exported by any binary"
                );
            }
        }
    }
    let datasources: Value = serde_norway::from_str(DATASOURCES).unwrap();
    let uids: BTreeSet<&str> = datasources["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|d| d["uid"].as_str())
        .collect();
    for panel in panels {
        let uid = panel["datasource"]["uid"].as_str().unwrap();
        assert!(
            uids.contains(uid),
            "panel data source {uid} is not provisioned"
        );
    }
}
