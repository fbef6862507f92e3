//! The compose file checked against the code: every environment variable it sets for a ledger
//! binary is one that binary reads, the ports agree, and every service the binaries need is
//! there and started before them. And checked for safety: the event store, PostgreSQL and the
//! brokers (RabbitMQ, NATS) run with TLS and passwords that the ledger's connections use and
//! verify, only the host's
//! loopback interface gets ports, secrets come only from required variables, and the image
//! build is sent no local data.
//!
//! The binaries' variable lists and defaults come from their own command-line definitions
//! (clap), so they cannot drift from what the binaries read.

mod compose_support;

use compose_support::{depends_on, environment, service, variable};
use ledger_tests::dashboard;
use serde_norway::Value;
use std::collections::BTreeSet;

const COMPOSE_FILE: &str = include_str!("../../compose/docker-compose.yml");
const DOCKERFILE: &str = include_str!("../../compose/Dockerfile");
const PROMETHEUS_CONFIG: &str = include_str!("../../compose/prometheus.yml");
const ENVIRONMENT_EXAMPLE: &str = include_str!("../../compose/.env.example");
const PG_HBA: &str = include_str!("../../compose/postgres/pg_hba.conf");
const RABBITMQ_CONFIG: &str = include_str!("../../compose/rabbitmq/rabbitmq.conf");
const NATS_CONFIG: &str = include_str!("../../compose/nats/nats.conf");
const CERTIFICATE_GENERATOR: &str = include_str!("../../compose/generate-certificates.sh");
const DATASOURCES: &str =
    include_str!("../../compose/grafana/provisioning/datasources/datasources.yml");

/// The port the API listens on by default and in compose.
const API_PORT: u16 = 8080;

/// The port EventStoreDB/KurrentDB serves gRPC on.
const EVENTSTORE_PORT: u16 = 2113;

/// Services the production topology needs besides the two ledger binaries.
const SUPPORT_SERVICES: &[&str] = &[
    "certificates",
    "eventstore",
    "postgres",
    "rabbitmq",
    "nats",
    "prometheus",
    "grafana",
    "jaeger",
];

/// The only address a port may be published on: the host's loopback interface. Anything
/// reachable from elsewhere goes through a proxy the operator puts in front deliberately.
const PUBLISH_ADDRESS: &str = "127.0.0.1";

/// Where the certificates volume is mounted in every service that uses it.
const CERTIFICATES_MOUNT: &str = "/certs";

/// The CA every client checks the servers' certificates against.
const CA_FILE: &str = "/certs/ca/ca.crt";

/// Paths the image build must never be sent: build output, local data, history, secrets.
const NEVER_SENT_TO_THE_BUILD: &[&str] = &[
    "target/release/ledger-api",
    "target/debug/deps/ledger_api.d",
    "tests/bench/target/debug/bench",
    ".ledger-data/pgdata/PG_VERSION",
    "api/.ledger-data/postmaster.pid",
    ".git",
    ".git/HEAD",
    "compose/.env",
    "bench-results.json",
];

/// Paths the image build needs (`cargo build --locked` of every member).
const SENT_TO_THE_BUILD: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "api/src/main.rs",
    "ledger-core/postgres/migrations",
    "projections/Cargo.toml",
    "replay-tool/src/main.rs",
    "schemas/README.md",
    "tests/Cargo.toml",
    "tests/kurrent-double/proto",
    "tests/bench/Cargo.toml",
    "compose/Dockerfile",
];

fn compose() -> Value {
    serde_norway::from_str(COMPOSE_FILE).expect("the compose file is valid YAML")
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
            if !binary.starts_with("ledger-") {
                continue;
            }
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

/// Every metric name the sources record: the string literal or the `METRIC_` constant named
/// by each `metrics::counter!` / `gauge!` / `histogram!` in the crates the binaries are built
/// from. (Where a test can start the binaries it checks the dashboard against a real scrape
/// instead: see the API's `dashboard` test and the projector's metrics test.)
fn recorded_metric_names() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    let mut folders: Vec<std::path::PathBuf> = ["api/src", "projections/src", "ledger-core"]
        .iter()
        .map(|folder| root.join(folder))
        .collect();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{folder:?}: {e}")) {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.ends_with("target") {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let source = files.concat();
    let literal = |text: &str| -> Option<String> {
        let text = text.trim_start().strip_prefix('"')?;
        Some(text[..text.find('"')?].to_owned())
    };
    let mut constants = std::collections::BTreeMap::new();
    for line in source.lines() {
        let Some(rest) = line.trim().strip_prefix("pub const METRIC_") else {
            continue;
        };
        if let Some((name, value)) = rest.split_once(": &str =") {
            constants.insert(format!("METRIC_{name}"), literal(value).unwrap());
        }
    }
    let mut names = BTreeSet::new();
    for kind in ["counter!(", "gauge!(", "histogram!("] {
        for (at, _) in source.match_indices(&format!("metrics::{kind}")) {
            let argument = &source[at + "metrics::".len() + kind.len()..];
            let name = literal(argument).or_else(|| {
                let identifier: String = argument
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                constants.get(&identifier).cloned()
            });
            names.insert(name.unwrap_or_else(|| {
                panic!(
                    "cannot tell the metric of metrics::{kind}{}",
                    &argument[..40]
                )
            }));
        }
    }
    names
}

#[test]
fn the_dashboard_shows_what_operators_need_with_metrics_the_code_records() {
    let panels = dashboard::panels();
    let titles: BTreeSet<&str> = panels.iter().map(|p| p.title.as_str()).collect();
    for title in [
        "Reserve rate",
        "Reserve latency",
        "Conflicts",
        "Projection lag",
        "Open low-stock alerts",
    ] {
        assert!(titles.contains(title), "no {title} panel in {titles:?}");
    }
    for (what, metric, fragment) in dashboard::REQUIRED_PANELS {
        assert!(
            panels.iter().flat_map(|p| &p.queries).any(|query| {
                query.metrics.contains(*metric) && query.expression.contains(fragment)
            }),
            "no panel shows {what} ({metric} with {fragment:?})"
        );
    }
    let recorded = recorded_metric_names();
    for required in [
        "ledger_http_requests_total",
        "ledger_projection_lag_seconds",
        "ledger_group_commit_appends",
        "ledger_rate_limited_total",
    ] {
        assert!(recorded.contains(required), "the scan missed {required}");
    }
    for panel in &panels {
        for query in &panel.queries {
            for metric in &query.metrics {
                let base = dashboard::base_name(metric);
                assert!(
                    recorded.contains(metric) || recorded.contains(base),
                    "{}: {metric} is recorded nowhere in the code ({recorded:?})",
                    panel.title
                );
                if metric.ends_with("_bucket") {
                    assert!(
                        base.ends_with("_seconds"),
                        "{}: only _seconds histograms get buckets; {base} is a summary",
                        panel.title
                    );
                }
            }
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(dashboard::DASHBOARD).expect("the dashboard is JSON");
    let datasources: Value = serde_norway::from_str(DATASOURCES).unwrap();
    let uids: BTreeSet<&str> = datasources["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|d| d["uid"].as_str())
        .collect();
    for panel in dashboard["panels"].as_array().unwrap() {
        let uid = panel["datasource"]["uid"].as_str().unwrap();
        assert!(
            uids.contains(uid),
            "panel data source {uid} is not provisioned"
        );
    }
}

#[test]
fn prometheus_scrapes_the_projector_where_it_serves_metrics() {
    let compose = compose();
    let projector = service(&compose, "projector");
    let listen = variable(projector, "LEDGER_PROJECTOR_METRICS_LISTEN");
    let port = ledger_projections::metrics_listener::METRICS_PORT;
    assert_eq!(
        listen,
        format!("0.0.0.0:{port}"),
        "inside a container the projector serves metrics on every interface"
    );
    let exposed: Vec<String> = projector["expose"]
        .as_sequence()
        .expect("the projector names its metrics port")
        .iter()
        .map(|p| {
            p.as_str()
                .map_or_else(|| p.as_u64().unwrap().to_string(), str::to_owned)
        })
        .collect();
    assert_eq!(exposed, [port.to_string()]);
    let prometheus: Value = serde_norway::from_str(PROMETHEUS_CONFIG).unwrap();
    let job = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|job| job["job_name"].as_str() == Some("ledger-projector"))
        .expect("Prometheus scrapes the projector");
    assert_eq!(
        job["metrics_path"].as_str(),
        Some(ledger_projections::metrics_listener::METRICS_PATH)
    );
    assert_eq!(
        job["static_configs"][0]["targets"][0].as_str(),
        Some(format!("projector:{port}").as_str())
    );
    assert!(
        depends_on(service(&compose, "prometheus")).contains("projector"),
        "Prometheus starts after the projector"
    );
}

/// The query parameters of a URL, names lowercased (the event store client ignores case).
fn query_parameters(url: &str) -> Vec<(String, String)> {
    // The credentials may hold `${VAR:?message}`, whose `?` is not the query's.
    let after_credentials = url.rsplit_once('@').map_or(url, |(_, tail)| tail);
    let query = after_credentials
        .split_once('?')
        .map_or("", |(_, query)| query);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect()
}

fn parameter(url: &str, name: &str) -> Option<String> {
    query_parameters(url)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value)
}

/// The user and password of a URL, when it has them.
fn credentials(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://")?.1;
    let (userinfo, _) = rest.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The name of a required compose variable when `text` is exactly `${NAME:?message}`.
fn required_variable(text: &str) -> Option<String> {
    let inner = text.strip_prefix("${")?.strip_suffix('}')?;
    let (name, message) = inner.split_once(":?")?;
    let is_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    (is_name && !message.trim().is_empty() && !message.contains('}')).then(|| name.to_owned())
}

/// The container paths a service mounts (`source:target[:mode]` entries).
fn mount_targets(service: &Value) -> Vec<String> {
    service["volumes"]
        .as_sequence()
        .map(|volumes| {
            volumes
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|volume| volume.split(':').nth(1).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn mounts_certificates(service: &Value) -> bool {
    service["volumes"].as_sequence().is_some_and(|volumes| {
        volumes
            .iter()
            .filter_map(Value::as_str)
            .any(|volume| volume == format!("certificates:{CERTIFICATES_MOUNT}:ro"))
    })
}

fn starts_after_the_certificates(service: &Value) -> bool {
    service["depends_on"]["certificates"]["condition"].as_str()
        == Some("service_completed_successfully")
}

#[test]
fn nothing_in_the_topology_runs_insecure() {
    let compose = compose();
    for (name, definition) in compose["services"].as_mapping().unwrap() {
        for (variable, value) in environment(definition) {
            assert!(
                !variable.to_ascii_uppercase().contains("INSECURE"),
                "{name:?} sets {variable}={value}"
            );
        }
    }
    assert!(
        !COMPOSE_FILE.to_ascii_uppercase().contains("INSECURE"),
        "the compose file mentions an insecure mode"
    );
}

#[test]
fn the_event_store_runs_with_tls_and_passwords_and_allows_nobody_anonymous() {
    let compose = compose();
    let eventstore = service(&compose, "eventstore");
    assert!(mounts_certificates(eventstore));
    assert!(starts_after_the_certificates(eventstore));
    for (name, expected) in [
        ("KURRENTDB_CERTIFICATE_FILE", "/certs/eventstore/node.crt"),
        (
            "KURRENTDB_CERTIFICATE_PRIVATE_KEY_FILE",
            "/certs/eventstore/node.key",
        ),
        ("KURRENTDB_TRUSTED_ROOT_CERTIFICATES_PATH", "/certs/ca"),
        ("KURRENTDB_ALLOW_ANONYMOUS_ENDPOINT_ACCESS", "false"),
        ("KURRENTDB_ALLOW_ANONYMOUS_STREAM_ACCESS", "false"),
    ] {
        assert_eq!(variable(eventstore, name), expected, "{name}");
    }
    for password in [
        "KURRENTDB_DEFAULT_ADMIN_PASSWORD",
        "KURRENTDB_DEFAULT_OPS_PASSWORD",
    ] {
        assert!(
            required_variable(&variable(eventstore, password)).is_some(),
            "{password} comes from a required variable"
        );
    }
    // The generator issues the files the server is configured with, for the name the
    // ledger connects to.
    for needed in [
        "issue eventstore node ",
        "DNS:eventstore",
        "\"$out/ca/ca.crt\"",
    ] {
        assert!(
            CERTIFICATE_GENERATOR.contains(needed),
            "the generator lacks {needed}"
        );
    }
    let health = eventstore["healthcheck"]["test"][1].as_str().unwrap();
    assert!(
        health.contains("https://") && health.contains(CA_FILE),
        "{health}"
    );
}

#[test]
fn the_ledger_connects_to_the_event_store_over_tls_as_its_admin() {
    let compose = compose();
    let admin_password = required_variable(&variable(
        service(&compose, "eventstore"),
        "KURRENTDB_DEFAULT_ADMIN_PASSWORD",
    ))
    .unwrap();
    for name in ["api", "projector"] {
        let binary = service(&compose, name);
        let url = variable(binary, "EVENTSTORE_URL");
        assert_eq!(
            parameter(&url, "tls").as_deref(),
            Some("true"),
            "{name}: {url}"
        );
        assert_eq!(
            parameter(&url, "tlscafile").as_deref(),
            Some(CA_FILE),
            "{name} checks the server's certificate against the CA: {url}"
        );
        assert_ne!(
            parameter(&url, "tlsverifycert").as_deref(),
            Some("false"),
            "{url}"
        );
        let (user, password) = credentials(&url).expect("the URL carries credentials");
        assert_eq!(user, "admin");
        assert_eq!(
            required_variable(&password),
            Some(admin_password.clone()),
            "{name} connects with the password the server was given"
        );
        assert!(mounts_certificates(binary), "{name} mounts the CA");
        assert!(
            mount_targets(binary).contains(&CERTIFICATES_MOUNT.to_owned()),
            "{name}"
        );
    }
}

#[test]
fn postgres_accepts_only_tls_and_every_client_verifies_its_certificate() {
    let compose = compose();
    let postgres = service(&compose, "postgres");
    assert!(mounts_certificates(postgres));
    assert!(starts_after_the_certificates(postgres));
    let command: Vec<&str> = postgres["command"]
        .as_sequence()
        .expect("postgres is started with its settings")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for setting in [
        "ssl=on",
        "ssl_cert_file=/certs/postgres/server.crt",
        "ssl_key_file=/certs/postgres/server.key",
        "hba_file=/etc/postgresql/pg_hba.conf",
    ] {
        assert!(command.contains(&setting), "{setting} in {command:?}");
    }
    assert!(mount_targets(postgres).contains(&"/etc/postgresql/pg_hba.conf".to_owned()));
    let rules: Vec<Vec<&str>> = PG_HBA
        .lines()
        .map(|line| line.split('#').next().unwrap().split_whitespace().collect())
        .filter(|fields: &Vec<&str>| !fields.is_empty())
        .collect();
    for rule in &rules {
        match rule[0] {
            "local" => {}
            "hostssl" => assert_ne!(rule.last(), Some(&"trust"), "{rule:?}"),
            other => panic!("pg_hba.conf allows {other} connections: {rule:?}"),
        }
    }
    assert!(rules.iter().any(|rule| rule[0] == "hostssl"));
    assert!(
        CERTIFICATE_GENERATOR.contains("issue postgres server ")
            && CERTIFICATE_GENERATOR.contains("DNS:postgres")
    );
    for name in ["api", "projector"] {
        let url = variable(service(&compose, name), "DATABASE_URL");
        assert_eq!(parameter(&url, "sslmode").as_deref(), Some("verify-full"));
        assert_eq!(parameter(&url, "sslrootcert").as_deref(), Some(CA_FILE));
        // The adapter reads the URL as compose writes it.
        let (rest, tls) =
            ledger_postgres::TlsSettings::split_url(&url).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tls.mode, ledger_postgres::TlsMode::VerifyFull);
        rest.parse::<tokio_postgres::Config>()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let datasources: Value = serde_norway::from_str(DATASOURCES).unwrap();
    let read_models = datasources["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|d| d["uid"].as_str() == Some("ledger-postgres"))
        .unwrap();
    assert_eq!(
        read_models["jsonData"]["sslmode"].as_str(),
        Some("verify-full")
    );
    assert_eq!(
        read_models["jsonData"]["sslRootCertFile"].as_str(),
        Some(CA_FILE)
    );
    assert!(mounts_certificates(service(&compose, "grafana")));
}

/// The (key, value) settings of a RabbitMQ `rabbitmq.conf`, comments left out.
fn rabbitmq_settings() -> Vec<(String, String)> {
    RABBITMQ_CONFIG
        .lines()
        .map(|line| line.split('#').next().unwrap().trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (key, value) = line.split_once('=').expect("key = value lines");
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

#[test]
fn the_brokers_accept_only_tls_with_passwords_and_the_ledger_verifies_their_certificates() {
    let compose = compose();
    for name in ["rabbitmq", "nats"] {
        let broker = service(&compose, name);
        assert!(
            mounts_certificates(broker),
            "{name} mounts the certificates"
        );
        assert!(
            starts_after_the_certificates(broker),
            "{name} waits for them"
        );
        assert!(
            broker["ports"].as_sequence().is_none_or(|p| p.is_empty()),
            "{name} is reachable from the services' network only"
        );
        assert!(
            CERTIFICATE_GENERATOR.contains(&format!("issue {name} server {name} "))
                && CERTIFICATE_GENERATOR.contains(&format!("DNS:{name},")),
            "the certificates service issues {name}'s certificate"
        );
    }

    // RabbitMQ: no plain listener, TLS on 5671 with its certificate, a password user.
    let settings = rabbitmq_settings();
    let setting = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("rabbitmq.conf sets no {key}"))
    };
    assert_eq!(setting("listeners.tcp"), "none", "no plain AMQP listener");
    assert_eq!(setting("listeners.ssl.default"), "5671");
    assert_eq!(
        setting("ssl_options.certfile"),
        "/certs/rabbitmq/server.crt"
    );
    assert_eq!(setting("ssl_options.keyfile"), "/certs/rabbitmq/server.key");
    assert_eq!(
        setting("loopback_users.guest"),
        "true",
        "guest never logs in remotely"
    );
    let rabbitmq = service(&compose, "rabbitmq");
    assert!(mount_targets(rabbitmq)
        .iter()
        .any(|t| t.starts_with("/etc/rabbitmq/conf.d/")));
    assert_eq!(variable(rabbitmq, "RABBITMQ_DEFAULT_USER"), "ledger");
    assert!(required_variable(&variable(rabbitmq, "RABBITMQ_DEFAULT_PASS")).is_some());

    // NATS: TLS with its certificate, a password user, JetStream on.
    let nats = service(&compose, "nats");
    assert!(mount_targets(nats).contains(&"/etc/nats/nats.conf".to_owned()));
    for line in [
        "cert_file: \"/certs/nats/server.crt\"",
        "key_file: \"/certs/nats/server.key\"",
        "password: $NATS_PASSWORD",
        "jetstream {",
    ] {
        assert!(NATS_CONFIG.contains(line), "nats.conf: {line}");
    }
    assert!(required_variable(&variable(nats, "NATS_PASSWORD")).is_some());

    // The ledger publishes over TLS, as a password user, checking the CA; and waits for both.
    let api = service(&compose, "api");
    let rabbitmq_url = variable(api, "LEDGER_RABBITMQ_URL");
    assert!(rabbitmq_url.starts_with("amqps://"), "{rabbitmq_url}");
    assert_eq!(host_and_port(&rabbitmq_url), ("rabbitmq".to_owned(), 5671));
    assert_eq!(variable(api, "LEDGER_RABBITMQ_CA_FILE"), CA_FILE);
    let nats_url = variable(api, "LEDGER_NATS_URL");
    assert!(nats_url.starts_with("tls://"), "{nats_url}");
    assert_eq!(host_and_port(&nats_url), ("nats".to_owned(), 4222));
    assert_eq!(variable(api, "LEDGER_NATS_CA_FILE"), CA_FILE);
    for url in [&rabbitmq_url, &nats_url] {
        let (user, password) = credentials(url).expect("the URL carries a user");
        assert_eq!(user, "ledger");
        assert!(required_variable(&password).is_some());
    }
    let needs = depends_on(api);
    assert!(needs.contains("rabbitmq") && needs.contains("nats"));
    // It consumes the order flow's events from a queue on that same RabbitMQ (no URL of its
    // own: the consumer falls back to LEDGER_RABBITMQ_URL, and to its CA file).
    assert_eq!(
        variable(api, "LEDGER_ORDERS_RABBITMQ_QUEUE"),
        "inventory.orders"
    );
    assert!(environment(api)
        .iter()
        .all(|(name, _)| name != "LEDGER_ORDERS_RABBITMQ_URL"));
}

#[test]
fn every_published_port_is_bound_to_the_loopback_interface() {
    let compose = compose();
    let mut published = 0;
    for (name, definition) in compose["services"].as_mapping().unwrap() {
        let Some(ports) = definition["ports"].as_sequence() else {
            continue;
        };
        for port in ports {
            let host_address = match port {
                Value::String(text) => {
                    let parts: Vec<&str> = text.split(':').collect();
                    assert_eq!(
                        parts.len(),
                        3,
                        "{name:?} publishes {text} without an address"
                    );
                    parts[0].to_owned()
                }
                Value::Mapping(_) => port["host_ip"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name:?} publishes {port:?} without host_ip"))
                    .to_owned(),
                other => panic!("{name:?} publishes {other:?}"),
            };
            assert_eq!(host_address, PUBLISH_ADDRESS, "{name:?}: {port:?}");
            published += 1;
        }
    }
    assert!(published > 0, "operators reach the API and the consoles");
    for internal in ["postgres", "certificates", "projector"] {
        assert!(
            service(&compose, internal)["ports"].is_null(),
            "{internal} publishes nothing"
        );
    }
    let jaeger: Vec<&str> = service(&compose, "jaeger")["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        jaeger,
        [format!("{PUBLISH_ADDRESS}:16686:16686")],
        "only the tracing UI"
    );
}

#[test]
fn secrets_come_only_from_required_environment_variables() {
    // Every substitution in the file is required: none falls back to a default value.
    let mut required = BTreeSet::new();
    let mut rest = COMPOSE_FILE;
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("a closed substitution") + start + 1;
        let substitution = &rest[start..end];
        let name = required_variable(substitution)
            .unwrap_or_else(|| panic!("{substitution} is not a required variable"));
        required.insert(name);
        rest = &rest[end..];
    }
    let unescaped = COMPOSE_FILE.replace("$$", "");
    assert_eq!(
        unescaped.matches('$').count(),
        unescaped.matches("${").count(),
        "every substitution is braced (and so checked above)"
    );
    // Every variable whose name says secret holds one substitution and nothing else, and
    // every URL's password is one.
    let compose = compose();
    for (name, definition) in compose["services"].as_mapping().unwrap() {
        for (variable, value) in environment(definition) {
            let secret = ["PASSWORD", "SECRET", "TOKENS"]
                .iter()
                .any(|word| variable.contains(word));
            if secret {
                assert!(
                    required_variable(&value).is_some(),
                    "{name:?} sets {variable} to {value:?}, not a required variable"
                );
            }
            if let Some((_, password)) =
                value.contains("://").then(|| credentials(&value)).flatten()
            {
                assert!(
                    required_variable(&password).is_some(),
                    "{name:?}: the password in {variable} is not a required variable"
                );
            }
        }
    }
    assert!(
        required.contains("KURRENTDB_ADMIN_PASSWORD") && required.contains("POSTGRES_PASSWORD")
    );
    // The example environment lists exactly these, each left empty to be filled in.
    let example: BTreeSet<String> = ENVIRONMENT_EXAMPLE
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.split_once('=').expect("NAME=value lines");
            assert_eq!(value, "", "the example holds no secret: {line}");
            name.to_owned()
        })
        .collect();
    assert_eq!(example, required);
}

/// Whether `.dockerignore` keeps `path` (relative to the build context) out of the build:
/// the last pattern that matches it or one of its parent folders decides; `!` re-includes.
fn ignored_by(patterns: &[String], path: &str) -> bool {
    let components: Vec<&str> = path.split('/').collect();
    let mut ignored = false;
    for pattern in patterns {
        let (include, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern.as_str()),
        };
        let pattern: Vec<&str> = pattern
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .collect();
        let matches = (1..=components.len()).any(|length| glob(&pattern, &components[..length]));
        if matches {
            ignored = !include;
        }
    }
    ignored
}

/// Path glob over components: `**` spans any number of them, `*` and `?` stay inside one.
fn glob(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| glob(rest, &path[skip..])),
        Some((first, rest)) => {
            !path.is_empty()
                && component_glob(first.as_bytes(), path[0].as_bytes())
                && glob(rest, &path[1..])
        }
    }
}

fn component_glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            component_glob(&pattern[1..], name)
                || (!name.is_empty() && component_glob(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => component_glob(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => component_glob(&pattern[1..], &name[1..]),
        _ => false,
    }
}

#[test]
fn the_image_build_is_sent_the_sources_and_no_local_data() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(".dockerignore"))
        .expect("a .dockerignore beside the build context's root (the repository root)");
    let patterns: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for path in NEVER_SENT_TO_THE_BUILD {
        assert!(ignored_by(&patterns, path), "{path} is sent to the build");
    }
    for path in SENT_TO_THE_BUILD {
        assert!(
            !ignored_by(&patterns, path),
            "{path} is kept from the build"
        );
    }
    assert!(
        DOCKERFILE.contains("docker build -f compose/Dockerfile .")
            && DOCKERFILE.contains("COPY . ."),
        "the build context is the repository root, where .dockerignore applies"
    );
}

#[test]
fn the_dockerignore_matcher_follows_the_rules() {
    let patterns: Vec<String> = ["target", "**/secret*", "docs/", "!docs/keep.md"]
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(ignored_by(&patterns, "target/debug/x"));
    assert!(!ignored_by(&patterns, "api/target/x"));
    assert!(ignored_by(&patterns, "a/b/secret.txt"));
    assert!(ignored_by(&patterns, "docs/other.md"));
    assert!(!ignored_by(&patterns, "docs/keep.md"));
    assert!(!ignored_by(&patterns, "Cargo.toml"));
}
