//! Reading a compose file the way compose does, shared by the single-node and cluster tests.

use serde_norway::Value;
use std::collections::BTreeSet;

pub fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("the compose file has no {name} service"))
}

/// A service's environment with YAML merge keys (`<<:`) applied, as compose applies them.
pub fn environment(service: &Value) -> Vec<(String, String)> {
    let Some(mapping) = service["environment"].as_mapping() else {
        return Vec::new();
    };
    let mut variables = Vec::new();
    for (name, value) in mapping {
        if name.as_str() == Some("<<") {
            variables.extend(environment(&Value::Mapping(
                [(Value::from("environment"), value.clone())]
                    .into_iter()
                    .collect(),
            )));
            continue;
        }
        let value = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            other => panic!("unexpected value {other:?}"),
        };
        let name = name.as_str().expect("names are text").to_owned();
        variables.retain(|(n, _)| *n != name);
        variables.push((name, value));
    }
    variables
}

pub fn variable(service: &Value, name: &str) -> String {
    environment(service)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not set"))
        .1
}

/// The services a service waits for, in either of compose's two forms.
pub fn depends_on(service: &Value) -> BTreeSet<String> {
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
