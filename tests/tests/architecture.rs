//! The architecture, checked: the crate graph the README draws is the one cargo resolves, the
//! domain crate stays free of runtime and storage crates, and no two modules of one crate
//! import each other (directly or round a longer loop).
//!
//! These are tests rather than review notes because each rule has been broken before without
//! anyone noticing: a snapshot module that reached into the Postgres plumbing, a projection
//! trait and its registry importing each other through seven files.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates the domain must never depend on, directly or through another crate: it decides and
/// folds, it does not wait, store or talk to a network.
const FORBIDDEN_IN_DOMAIN: &[&str] = &[
    "tokio",
    "tokio-postgres",
    "deadpool-postgres",
    "deadpool",
    "tonic",
    "prost",
    "kurrentdb",
    "axum",
    "hyper",
    "reqwest",
    "tracing",
    "metrics",
];

/// Where the README's crate table starts and ends.
const GRAPH_START: &str = "<!-- crate-graph:start -->";
const GRAPH_END: &str = "<!-- crate-graph:end -->";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_owned()
}

/// `cargo metadata` for the whole workspace, with the resolved dependency graph.
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        // Only this platform's dependencies: the others need not be downloaded to be checked.
        .args(["--filter-platform", env!("LEDGER_TESTS_TARGET")])
        .current_dir(workspace_root())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// Package name by package id, for every package in the graph.
fn names(metadata: &Value) -> BTreeMap<String, String> {
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id").to_owned(),
                p["name"].as_str().expect("name").to_owned(),
            )
        })
        .collect()
}

/// The normal (not dev, not build) dependencies of each package id.
fn normal_dependencies(metadata: &Value) -> BTreeMap<String, Vec<String>> {
    metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .map(|node| {
            let dependencies = node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .expect("dep_kinds")
                        .iter()
                        .any(|kind| kind["kind"].is_null())
                })
                .map(|dep| dep["pkg"].as_str().expect("pkg").to_owned())
                .collect();
            (node["id"].as_str().expect("id").to_owned(), dependencies)
        })
        .collect()
}

fn package_id(metadata: &Value, name: &str) -> String {
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name}"))["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

#[test]
fn the_domain_depends_on_no_runtime_storage_or_network_crate() {
    let metadata = metadata();
    let names = names(&metadata);
    let dependencies = normal_dependencies(&metadata);
    let mut seen = BTreeSet::new();
    let mut queue = vec![package_id(&metadata, "ledger-domain")];
    while let Some(id) = queue.pop() {
        for dependency in &dependencies[&id] {
            if seen.insert(dependency.clone()) {
                queue.push(dependency.clone());
            }
        }
    }
    let reached: BTreeSet<&str> = seen.iter().map(|id| names[id].as_str()).collect();
    let forbidden: Vec<&&str> = FORBIDDEN_IN_DOMAIN
        .iter()
        .filter(|name| reached.contains(**name))
        .collect();
    assert!(
        forbidden.is_empty(),
        "ledger-domain reaches {forbidden:?}; everything it reaches: {reached:?}"
    );
}

/// The README's table: crate name → the workspace crates it depends on.
fn readme_graph() -> BTreeMap<String, BTreeSet<String>> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    let start = readme
        .find(GRAPH_START)
        .expect("the README marks its crate table");
    let end = readme
        .find(GRAPH_END)
        .expect("the README marks its crate table's end");
    let mut graph = BTreeMap::new();
    for line in readme[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `crate` | path | depends on | what |
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let name = cells[1].trim_matches('`').to_owned();
        let depends_on = cells[3]
            .split(',')
            .map(|d| d.trim().trim_matches('`').to_owned())
            .filter(|d| !d.is_empty() && d != "—")
            .collect();
        graph.insert(name, depends_on);
    }
    graph
}

#[test]
fn the_crate_graph_in_the_readme_is_the_one_cargo_resolves() {
    let metadata = metadata();
    let names = names(&metadata);
    let dependencies = normal_dependencies(&metadata);
    let members: BTreeSet<String> = metadata["workspace_members"]
        .as_array()
        .expect("workspace members")
        .iter()
        .map(|id| names[id.as_str().expect("id")].clone())
        .collect();
    let mut resolved = BTreeMap::new();
    for id in metadata["workspace_members"].as_array().expect("members") {
        let id = id.as_str().expect("id");
        let depends_on: BTreeSet<String> = dependencies[id]
            .iter()
            .map(|d| names[d].clone())
            .filter(|name| members.contains(name))
            .collect();
        resolved.insert(names[id].clone(), depends_on);
    }
    assert_eq!(
        readme_graph(),
        resolved,
        "the README's crate table (between {GRAPH_START} and {GRAPH_END}) must list every \
         workspace crate with exactly the workspace crates it depends on"
    );
}

// ---------------------------------------------------------------------------------------------
// Module imports
// ---------------------------------------------------------------------------------------------

/// A module's path inside its crate: `[]` is the crate root, `["store", "postgres"]` is
/// `crate::store::postgres`.
type ModulePath = Vec<String>;

/// Every module of the library (or binary) rooted at `root_file`, with its source file.
fn modules(source_dir: &Path, root_file: &str) -> BTreeMap<ModulePath, PathBuf> {
    let mut found = BTreeMap::new();
    found.insert(Vec::new(), source_dir.join(root_file));
    collect_modules(source_dir, &mut Vec::new(), &mut found);
    found
}

fn collect_modules(dir: &Path, prefix: &mut ModulePath, found: &mut BTreeMap<ModulePath, PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        if path.is_dir() {
            if prefix.is_empty() && name == "bin" {
                continue; // each file there is a crate of its own
            }
            prefix.push(name);
            if path.join("mod.rs").is_file() {
                found.insert(prefix.clone(), path.join("mod.rs"));
            }
            collect_modules(&path, prefix, found);
            prefix.pop();
        } else if path.extension().is_some_and(|e| e == "rs")
            && !matches!(name.as_str(), "lib" | "main" | "mod")
        {
            let mut module = prefix.clone();
            module.push(name);
            found.insert(module, path);
        }
    }
}

/// The text of a source file without its line comments (doc links are not imports).
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("source file");
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths written after `crate::`, `super::` or `self::` in `code`, resolved against `module`
/// to absolute paths inside the crate (brace groups expanded).
fn referenced_paths(code: &str, module: &ModulePath, is_mod_file: bool) -> Vec<ModulePath> {
    let bytes = code.as_bytes();
    let mut paths = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if !code.is_char_boundary(at) {
            at += 1;
            continue;
        }
        let rest = &code[at..];
        let starts_word = at == 0
            || !(bytes[at - 1].is_ascii_alphanumeric()
                || bytes[at - 1] == b'_'
                || bytes[at - 1] == b':');
        if !starts_word {
            at += 1;
            continue;
        }
        let (mut base, skip) = if rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if rest.starts_with("super::") || rest.starts_with("self::") {
            // In `foo.rs` (module foo), `self` is foo and `super` its parent; the same holds for
            // `foo/mod.rs`, so `is_mod_file` does not change the meaning, only where files live.
            let _ = is_mod_file;
            let mut base = module.clone();
            let mut skip = 0;
            let mut tail = rest;
            loop {
                if tail.starts_with("super::") {
                    base.pop();
                    skip += "super::".len();
                    tail = &tail["super::".len()..];
                } else if tail.starts_with("self::") {
                    skip += "self::".len();
                    tail = &tail["self::".len()..];
                } else {
                    break;
                }
            }
            (base, skip)
        } else {
            at += 1;
            continue;
        };
        let mut cursor = at + skip;
        for tail in parse_tree(code, &mut cursor) {
            let mut path = base.clone();
            path.extend(tail);
            paths.push(path);
        }
        base.clear();
        at = cursor.max(at + 1);
    }
    paths
}

/// Parses `a::b::C`, `a::{b, c::D}` or `{a, b}` starting at `cursor`; returns every path.
fn parse_tree(code: &str, cursor: &mut usize) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let skip_space = |cursor: &mut usize| {
        while *cursor < bytes.len() && bytes[*cursor].is_ascii_whitespace() {
            *cursor += 1;
        }
    };
    skip_space(cursor);
    if *cursor < bytes.len() && bytes[*cursor] == b'{' {
        *cursor += 1;
        let mut paths = Vec::new();
        loop {
            skip_space(cursor);
            if *cursor >= bytes.len() {
                return paths;
            }
            if bytes[*cursor] == b'}' {
                *cursor += 1;
                return paths;
            }
            if bytes[*cursor] == b',' {
                *cursor += 1;
                continue;
            }
            let before = *cursor;
            paths.extend(parse_tree(code, cursor));
            if *cursor == before {
                *cursor += 1; // `*` or another token we do not follow
            }
        }
    }
    let start = *cursor;
    while *cursor < bytes.len()
        && (bytes[*cursor].is_ascii_alphanumeric() || bytes[*cursor] == b'_')
    {
        *cursor += 1;
    }
    if *cursor == start {
        return Vec::new();
    }
    let segment = code[start..*cursor].to_owned();
    if code[*cursor..].starts_with("::") {
        *cursor += 2;
        let tails = parse_tree(code, cursor);
        if tails.is_empty() {
            return vec![vec![segment]];
        }
        return tails
            .into_iter()
            .map(|mut tail| {
                tail.insert(0, segment.clone());
                tail
            })
            .collect();
    }
    vec![vec![segment]]
}

/// The longest prefix of `path` that names a module.
fn module_of(path: &[String], modules: &BTreeMap<ModulePath, PathBuf>) -> ModulePath {
    (0..=path.len())
        .rev()
        .map(|length| path[..length].to_vec())
        .find(|prefix| modules.contains_key(prefix))
        .unwrap_or_default()
}

/// Sibling edges: module `from` uses `to`; both are reduced to the children of their deepest
/// common ancestor, so `crate::store::postgres` using `crate::snapshot` is `store → snapshot`.
fn sibling_edge(from: &ModulePath, to: &ModulePath) -> Option<(ModulePath, String, String)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None; // a module using its ancestor or its descendant
    }
    Some((
        from[..common].to_vec(),
        from[common].clone(),
        to[common].clone(),
    ))
}

/// Cycles among the children of one parent module, each printed as `a → b → a`.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            found.push(cycle.join(" → "));
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, stack, done, found);
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, edges, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

fn module_cycles_of(source_dir: &Path, root_file: &str) -> Vec<String> {
    let modules = modules(source_dir, root_file);
    let mut edges: BTreeMap<ModulePath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let is_mod_file = file.ends_with("mod.rs");
        for path in referenced_paths(&code_of(file), module, is_mod_file) {
            let target = module_of(&path, &modules);
            if let Some((parent, from, to)) = sibling_edge(module, &target) {
                edges
                    .entry(parent)
                    .or_default()
                    .entry(from)
                    .or_default()
                    .insert(to);
            }
        }
    }
    edges
        .iter()
        .flat_map(|(parent, edges)| {
            cycles(edges).into_iter().map(move |cycle| {
                let parent = if parent.is_empty() {
                    "crate".to_owned()
                } else {
                    format!("crate::{}", parent.join("::"))
                };
                format!("{parent}: {cycle}")
            })
        })
        .collect()
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let metadata = metadata();
    let mut found = Vec::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let is_member = metadata["workspace_members"]
            .as_array()
            .expect("members")
            .contains(&package["id"]);
        if !is_member {
            continue;
        }
        let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest"));
        let source_dir = manifest.parent().expect("crate folder").join("src");
        for root in ["lib.rs", "main.rs"] {
            if source_dir.join(root).is_file() {
                for cycle in module_cycles_of(&source_dir, root) {
                    found.push(format!(
                        "{}: {cycle}",
                        package["name"].as_str().expect("name")
                    ));
                }
                break;
            }
        }
    }
    assert!(
        found.is_empty(),
        "module import cycles:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    // A checker that cannot fail proves nothing: plant a three-module loop and a clean module.
    let dir = std::env::temp_dir().join(format!("ledger-architecture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("inner")).unwrap();
    std::fs::write(
        dir.join("lib.rs"),
        "pub mod a; pub mod b; pub mod c; pub mod inner;",
    )
    .unwrap();
    std::fs::write(dir.join("a.rs"), "use crate::b::Thing;").unwrap();
    std::fs::write(dir.join("b.rs"), "use super::{c::{self, Other}};").unwrap();
    std::fs::write(
        dir.join("c.rs"),
        "fn f() { crate::a::g() } // crate::b::not_an_import",
    )
    .unwrap();
    std::fs::write(dir.join("inner/mod.rs"), "pub mod x; pub mod y;").unwrap();
    std::fs::write(dir.join("inner/x.rs"), "use super::y::Y; use crate::a::A;").unwrap();
    std::fs::write(dir.join("inner/y.rs"), "pub struct Y;").unwrap();
    let found = module_cycles_of(&dir, "lib.rs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(found, vec!["crate: a → b → c → a".to_owned()]);
}
