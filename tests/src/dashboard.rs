//! The Grafana dashboard read the way Prometheus reads it: the metric names each panel's
//! PromQL queries, and the metric names a `/metrics` exposition exports, so tests can check
//! one against the other — against a real scrape of the binaries wherever a test can start
//! them (nothing then can drift), and against the names the sources record elsewhere.

use serde_json::Value;
use std::collections::BTreeSet;

/// The dashboard compose provisions into Grafana.
pub const DASHBOARD: &str = include_str!("../../compose/grafana/dashboards/ledger.json");

/// The prefix every metric of the ledger carries; PromQL functions and label names never do.
pub const METRIC_PREFIX: &str = "ledger_";

/// Suffixes the Prometheus exposition adds to a histogram's or a summary's name.
pub const SERIES_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

/// What the dashboard must show, each as (what, a metric the panel queries, a fragment its
/// query must hold to show that and not something else under the same metric).
pub const REQUIRED_PANELS: &[(&str, &str, &str)] = &[
    ("request rate", "ledger_http_requests_total", "rate("),
    (
        "request latency",
        "ledger_http_request_duration_seconds_bucket",
        "histogram_quantile",
    ),
    ("commit batch size", "ledger_group_commit_appends", ""),
    ("projection lag", "ledger_projection_lag_seconds", ""),
    ("publisher lag", "ledger_projection_lag_seconds", "publish_"),
    ("rate-limit refusals", "ledger_rate_limited_total", "rate("),
];

/// One panel: its title and each PromQL expression with the metric names it uses.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub queries: Vec<Query>,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub expression: String,
    pub metrics: BTreeSet<String>,
}

/// The dashboard's panels, rows' nested panels included.
pub fn panels() -> Vec<Panel> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut found = Vec::new();
    collect(&dashboard["panels"], &mut found);
    found
}

fn collect(panels: &Value, found: &mut Vec<Panel>) {
    for panel in panels.as_array().expect("panels is a list") {
        if panel["panels"].is_array() {
            collect(&panel["panels"], found);
        }
        let queries = panel["targets"]
            .as_array()
            .map(|targets| {
                targets
                    .iter()
                    .filter_map(|target| target["expr"].as_str())
                    .map(|expression| Query {
                        expression: expression.to_owned(),
                        metrics: metric_names(expression),
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.push(Panel {
            title: panel["title"].as_str().unwrap_or_default().to_owned(),
            queries,
        });
    }
}

/// The ledger metric names a PromQL expression selects (quoted label values left out, so a
/// value that happens to start with the prefix is not taken for a metric).
pub fn metric_names(expression: &str) -> BTreeSet<String> {
    let mut unquoted = String::new();
    let mut quote = None;
    for c in expression.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => unquoted.push(c),
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with(METRIC_PREFIX))
        .map(str::to_owned)
        .collect()
}

/// Every series name in a Prometheus text exposition (`# HELP` / `# TYPE` lines left out):
/// histograms appear as `_bucket`, `_sum` and `_count`, summaries as the name, `_sum` and
/// `_count`.
pub fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The value of the series `name{labels}` whose labels include every `label="value"` given,
/// when the exposition has exactly one such series.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut matching = exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split(['{', ' ']).next() == Some(name))
        .filter(|line| {
            labels
                .iter()
                .all(|(label, value)| line.contains(&format!("{label}=\"{value}\"")))
        });
    let line = matching.next()?;
    if matching.next().is_some() {
        return None;
    }
    line.rsplit(' ').next()?.parse().ok()
}

/// The name without the exposition's histogram or summary suffix.
pub fn base_name(series: &str) -> &str {
    SERIES_SUFFIXES
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
}

/// Panics naming every (panel, metric) of the dashboard that `exported` lacks.
pub fn assert_every_panel_metric_is_in(exported: &BTreeSet<String>, source: &str) {
    let mut missing = Vec::new();
    for panel in panels() {
        for query in &panel.queries {
            for metric in &query.metrics {
                if !exported.contains(metric) {
                    missing.push(format!("{}: {metric}", panel.title));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "dashboard metrics {source} does not export: {missing:?}\nit exports: {exported:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_skip_functions_labels_and_quoted_values() {
        let names = metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(ledger_a_seconds_bucket{route=\"ledger_x\"}[5m]))) / ledger_b",
        );
        assert_eq!(
            names,
            BTreeSet::from(["ledger_a_seconds_bucket".to_owned(), "ledger_b".to_owned()])
        );
    }

    #[test]
    fn exported_names_and_samples_come_from_series_lines() {
        let text =
            "# TYPE ledger_c counter\nledger_c{p=\"a\"} 3\nledger_c{p=\"b\"} 4\nledger_h_count 2\n";
        assert_eq!(
            exported_names(text),
            BTreeSet::from(["ledger_c".to_owned(), "ledger_h_count".to_owned()])
        );
        assert_eq!(sample(text, "ledger_c", &[("p", "b")]), Some(4.0));
        assert_eq!(sample(text, "ledger_c", &[]), None, "two series match");
        assert_eq!(base_name("ledger_h_count"), "ledger_h");
    }
}
