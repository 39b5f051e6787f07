//! The module graph stays one-way: reads every file under `src/`, collects the `crate::<module>`
//! paths (and the binary's `regauth::<module>` paths) that lead from one top-level module to
//! another, and fails on a cycle, naming it with the file and line of each edge. It also checks
//! the layering `docs/architecture.md` describes: the bottom modules import only each other,
//! and only the roots read `config`.
//!
//! `server` is both the root (`server/mod.rs` builds the service from the settings) and home
//! of the listener's parts (`server::tls`, `server::proxy`, `server::shutdown`,
//! `server::settings`, `server::hangup`) that `http` and `config` use; so each of its
//! submodules is a node of its own, and `server` alone stands for `server/mod.rs`.
//!
//! Comments are skipped (a doc link is no dependency); `test_support` (test-only fixtures) is
//! left out.

// Helpers outside #[test] functions fail by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules whose submodules are nodes of their own.
const SPLIT: &[&str] = &["server"];
/// Modules that are test fixtures, not part of the graph.
const IGNORED: &[&str] = &["test_support"];
/// The bottom layer: these import nothing of the crate but each other.
const BOTTOM: &[&str] = &["clock", "echo", "fs", "matching", "support", "telemetry"];
/// The only modules that may read `config` (`cli` is the binary's command line).
const READ_CONFIG: &[&str] = &["server", "cli"];

/// An edge's origin: `file:line`.
type Site = String;
/// from → to → where.
type Graph = BTreeMap<String, BTreeMap<String, Vec<Site>>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules: `src/NAME.rs` and `src/NAME/`, with the binary's `cli`.
fn top_level(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_stem()?.to_str()?.to_owned();
            (p.is_dir() || p.extension().is_some_and(|e| e == "rs")).then_some(name)
        })
        .filter(|name| name != "lib" && name != "main")
        .collect()
}

/// The submodules of the [`SPLIT`] modules, as `top::sub`.
fn split_submodules(root: &Path) -> BTreeSet<String> {
    SPLIT
        .iter()
        .flat_map(|top| {
            let dir = root.join(top);
            top_level(&dir)
                .into_iter()
                .filter(|sub| sub != "mod")
                .map(move |sub| format!("{top}::{sub}"))
        })
        .collect()
}

/// The node a path below a top-level module belongs to: `top`, or `top::sub` when `sub` is a
/// submodule of a [`SPLIT`] module (`rest` is what follows `top::`, or the file's path inside
/// `top`'s folder).
fn node(top: &str, rest: &[&str], split: &BTreeSet<String>) -> String {
    match rest.first().map(|sub| format!("{top}::{sub}")) {
        Some(sub) if split.contains(&sub) => sub,
        _ => top.to_owned(),
    }
}

/// The node a file belongs to (`src/server/tls/tests.rs` → `server::tls`).
fn file_node(root: &Path, file: &Path, split: &BTreeSet<String>) -> String {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
    let top = if parts[0] == "main" { "cli" } else { parts[0] };
    node(top, &parts[1..], split)
}

/// Every path `PREFIX::top::rest` in `code` (comments already removed), as the node it names.
fn named_nodes(
    code: &str,
    prefix: &str,
    tops: &BTreeSet<String>,
    split: &BTreeSet<String>,
) -> Vec<String> {
    let needle = format!("{prefix}::");
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = code[at..].find(&needle) {
        let start = at + i;
        at = start + needle.len();
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path: Vec<&str> = code[at..]
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(top) = path.first().filter(|t| tops.contains(**t)) {
            found.push(node(top, &path[1..], split));
        }
    }
    found
}

/// The graph of `root` (a `src/` directory).
fn graph(root: &Path) -> Graph {
    let tops = top_level(root);
    let split = split_submodules(root);
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let mut graph = Graph::new();
    for file in files {
        let from = file_node(root, &file, &split);
        if IGNORED.iter().any(|i| from == *i) {
            continue;
        }
        let in_binary = from == "cli";
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let prefix = if in_binary { "regauth" } else { "crate" };
            for to in named_nodes(code, prefix, &tops, &split) {
                if to == from || IGNORED.contains(&to.as_str()) {
                    continue;
                }
                let site = format!("{}:{}", file.strip_prefix(root).unwrap().display(), n + 1);
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .push(site);
            }
        }
    }
    graph
}

/// A cycle, as its edges `a -> b (file:line, ...); b -> ... -> a (...)`, if there is one.
fn find_cycle(graph: &Graph) -> Option<String> {
    fn visit(
        graph: &Graph,
        at: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == at) {
            let mut cycle = path[i..].to_vec();
            cycle.push(at.to_owned());
            return Some(cycle);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_owned());
        for next in graph.get(at).into_iter().flat_map(|e| e.keys()) {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(at.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for start in graph.keys() {
        if let Some(cycle) = visit(graph, start, &mut Vec::new(), &mut done) {
            let edges: Vec<String> = cycle
                .windows(2)
                .map(|pair| {
                    let sites = &graph[&pair[0]][&pair[1]];
                    let more = if sites.len() > 3 { ", ..." } else { "" };
                    let first: Vec<&str> = sites.iter().take(3).map(String::as_str).collect();
                    format!("{} -> {} ({}{more})", pair[0], pair[1], first.join(", "))
                })
                .collect();
            return Some(edges.join("; "));
        }
    }
    None
}

/// Edges that break the layering, as `from -> to (file:line)`.
fn layering_violations(graph: &Graph) -> Vec<String> {
    let mut wrong = Vec::new();
    for (from, edges) in graph {
        let top = from.split("::").next().unwrap_or(from);
        for (to, sites) in edges {
            let bottom_reaches_up =
                BOTTOM.contains(&top) && !BOTTOM.contains(&to.split("::").next().unwrap_or(to));
            let reads_config = to == "config" && !READ_CONFIG.contains(&from.as_str());
            let uses_a_root = to == "server" || to == "cli";
            let root_caller = from == "server" || from == "cli";
            if bottom_reaches_up || reads_config || (uses_a_root && !root_caller) {
                wrong.push(format!("{from} -> {to} ({})", sites[0]));
            }
        }
    }
    wrong
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = graph(&src());
    assert!(
        graph.contains_key("server") && graph.contains_key("cli"),
        "the graph was not read: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("the modules import each other in a circle: {cycle}");
    }
}

#[test]
fn the_bottom_stays_at_the_bottom_and_only_the_roots_read_config() {
    let wrong = layering_violations(&graph(&src()));
    assert!(
        wrong.is_empty(),
        "edges against the layering (bottom: {BOTTOM:?}; config read only by {READ_CONFIG:?}; the roots server and cli used by no one):\n{}",
        wrong.join("\n")
    );
}

/// The checker itself: a small tree with a cycle through a split module, and a bottom module
/// that reaches up.
#[test]
fn a_cycle_and_a_wrong_edge_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "pub mod clock;\npub mod config;\npub mod server;\n",
    );
    write("clock.rs", "// crate::config in a comment is no edge\n");
    write("config/mod.rs", "use crate::server::tls::TlsFiles;\n");
    write("server/mod.rs", "use crate::config::Validated;\n");
    write("server/tls.rs", "use crate::clock::Clock;\n");
    write("main.rs", "mod cli;\n");
    write(
        "cli/mod.rs",
        "use regauth::server::Application;\nuse regauth::server::tls;\n",
    );
    let good = graph(root);
    assert_eq!(find_cycle(&good), None, "{good:?}");
    let cli: Vec<&String> = good["cli"].keys().collect();
    assert_eq!(
        cli,
        ["server", "server::tls"],
        "an item of server/mod.rs is server's"
    );
    assert!(layering_violations(&good).is_empty(), "{good:?}");

    write("server/tls.rs", "use crate::config::Validated;\n");
    write("clock.rs", "pub fn now() { crate::server::tls::x() }\n");
    let bad = graph(root);
    let cycle = find_cycle(&bad).expect("a cycle");
    assert!(
        cycle.contains("config -> server::tls (config/mod.rs:1)")
            && cycle.contains("server::tls -> config (server/tls.rs:1)"),
        "{cycle}"
    );
    let wrong = layering_violations(&bad);
    assert!(
        wrong.contains(&"server::tls -> config (server/tls.rs:1)".to_owned())
            && wrong.contains(&"clock -> server::tls (clock.rs:1)".to_owned()),
        "{wrong:?}"
    );
}
