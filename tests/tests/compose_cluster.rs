//! The three-node cluster profile (`compose/cluster.yml`) checked against the code, as
//! `compose_file.rs` checks the single-node file: the ledger binaries read every variable it
//! sets, the nodes form one secure cluster, the ledger is configured for it (gossip seeds,
//! TLS, the leader preferred, credentials from the environment), and nothing listens beyond
//! the loopback interface.

mod compose_support;

use compose_support::{depends_on, environment, service, variable};
use serde_norway::Value;
use std::collections::BTreeSet;

const CLUSTER_FILE: &str = include_str!("../../compose/cluster.yml");

/// The cluster's nodes, as the ledger's connection string must list them.
const NODES: [&str; 3] = ["eventstore-1", "eventstore-2", "eventstore-3"];

/// The port every node serves gRPC (and gossip) on inside the compose network.
const NODE_PORT: u16 = 2113;

fn cluster() -> Value {
    serde_norway::from_str(CLUSTER_FILE).expect("the cluster file is valid YAML")
}

#[test]
fn every_variable_the_cluster_profile_sets_for_a_ledger_binary_is_one_it_reads() {
    let compose = cluster();
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
                "the cluster sets {variable} for {name}, which reads only {read:?}"
            );
        }
    }
}

#[test]
fn the_cluster_profile_runs_three_secure_nodes_seeded_with_each_other() {
    let compose = cluster();
    for node in NODES {
        let service = service(&compose, node);
        assert_eq!(variable(service, "KURRENTDB_CLUSTER_SIZE"), "3");
        assert!(
            environment(service)
                .iter()
                .all(|(n, v)| n != "KURRENTDB_INSECURE" || v == "false"),
            "{node} must not run insecure"
        );
        for certificate in [
            "KURRENTDB_CERTIFICATE_FILE",
            "KURRENTDB_CERTIFICATE_PRIVATE_KEY_FILE",
            "KURRENTDB_TRUSTED_ROOT_CERTIFICATES_PATH",
        ] {
            assert!(variable(service, certificate).starts_with("/certs/"));
        }
        let seeds: BTreeSet<String> = variable(service, "KURRENTDB_GOSSIP_SEED")
            .split(',')
            .map(str::to_owned)
            .collect();
        let others: BTreeSet<String> = NODES
            .iter()
            .filter(|other| **other != node)
            .map(|other| format!("{other}:{NODE_PORT}"))
            .collect();
        assert_eq!(seeds, others, "{node} is seeded with the other two nodes");
        assert!(
            variable(service, "KURRENTDB_DEFAULT_ADMIN_PASSWORD").starts_with("${"),
            "{node}'s admin password comes from the environment"
        );
    }
}

#[test]
fn the_ledger_connects_to_the_cluster_over_tls_as_a_user_preferring_the_leader() {
    let compose = cluster();
    for name in ["api", "projector"] {
        let service = service(&compose, name);
        let url = variable(service, "EVENTSTORE_URL");
        let (hosts, query) = url
            .strip_prefix("esdb://")
            .and_then(|rest| rest.split_once('?'))
            .expect("an esdb:// URL with settings");
        let listed: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        let expected: Vec<String> = NODES.iter().map(|n| format!("{n}:{NODE_PORT}")).collect();
        assert_eq!(listed, expected, "{name} lists every node as a gossip seed");
        let settings: BTreeSet<&str> = query.split('&').collect();
        assert!(settings.contains("tls=true"), "{url}");
        assert!(settings.contains("nodePreference=leader"), "{url}");
        assert!(
            settings.iter().any(|s| s.starts_with("tlsCAFile=/certs/")),
            "{url}"
        );
        assert!(!variable(service, "EVENTSTORE_USERNAME").is_empty());
        assert!(
            variable(service, "EVENTSTORE_PASSWORD").starts_with("${"),
            "{name}'s event store password comes from the environment"
        );
        let needed: BTreeSet<String> = NODES
            .iter()
            .map(|n| (*n).to_owned())
            .chain(["postgres".to_owned()])
            .collect();
        assert!(
            depends_on(service).is_superset(&needed),
            "{name} starts after every node and PostgreSQL"
        );
    }
}

#[test]
fn the_cluster_profile_publishes_ports_on_the_loopback_interface_only() {
    let compose = cluster();
    let services = compose["services"].as_mapping().expect("services");
    for (name, service) in services {
        let Some(ports) = service["ports"].as_sequence() else {
            continue;
        };
        for port in ports {
            let port = port.as_str().expect("ports are written as text");
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name:?} publishes {port} beyond the loopback interface"
            );
        }
    }
}
