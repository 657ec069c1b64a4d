//! The crate's modules stay in layers that point one way: each module uses
//! only modules of its own layer or below, and no two modules use each
//! other, directly or through others. Read from the sources: a reference
//! `crate::x` (or `super::x` in a submodule, or a `mod x;` declaration)
//! makes the module depend on `x`. The map is in docs/design.md.

// Test code: it unwraps and prints the graph.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module of the crate (but the root), by layer, lowest first.
const LAYERS: [(&str, &[&str]); 3] = [
    (
        "bottom",
        &[
            "bridge",
            "connect",
            "error",
            "legacy",
            "news",
            "options",
            "prepare",
            "rows",
            "schema",
            "where_clause",
        ],
    ),
    (
        "middle",
        &[
            "durable",
            "listen",
            "publish",
            "read",
            "writer",
            "writer::snapshot",
            "writer::transaction",
        ],
    ),
    ("top", &["committed_log", "operations", "start", "store"]),
];

#[test]
fn modules_depend_only_on_their_layer_and_below_without_cycles() {
    let graph = module_graph();
    let layer_of = |module: &str| {
        LAYERS
            .iter()
            .position(|(_, modules)| modules.contains(&module))
            .unwrap_or_else(|| panic!("module {module} is in no layer of tests/layers.rs"))
    };
    for (module, dependencies) in &graph {
        println!("{module} -> {}", join(dependencies));
        for dependency in dependencies {
            assert!(
                layer_of(dependency) <= layer_of(module),
                "{module} ({}) uses {dependency} ({}), a higher layer",
                LAYERS[layer_of(module)].0,
                LAYERS[layer_of(dependency)].0,
            );
        }
    }
    let listed: BTreeSet<&str> = LAYERS
        .iter()
        .flat_map(|(_, modules)| modules.iter().copied())
        .collect();
    let found: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    assert_eq!(
        listed, found,
        "tests/layers.rs lists other modules than src/ has"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("modules use each other: {}", cycle.join(" -> "));
    }
}

/// Each module of `src/` (but the root) and the modules it uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&source);
    let modules: BTreeMap<String, PathBuf> = files
        .into_iter()
        .filter_map(|file| module_name(&source, &file).map(|name| (name, file)))
        .collect();
    modules
        .iter()
        .map(|(module, file)| {
            let text = std::fs::read_to_string(file).unwrap();
            let dependencies = dependencies(module, &text, &modules)
                .into_iter()
                .filter(|dependency| dependency != module)
                .collect();
            (module.clone(), dependencies)
        })
        .collect()
}

fn rust_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files
}

/// `writer/mod.rs` is `writer`, `writer/snapshot.rs` is `writer::snapshot`;
/// `lib.rs` is the root, `None`.
fn module_name(source: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(source).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    let name = parts.join("::");
    (name != "lib").then_some(name)
}

/// The modules `text`, the source of `module`, refers to. Comments and the
/// unit tests at the end of the file do not count.
fn dependencies(module: &str, text: &str, modules: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let parent = module.rsplit_once("::").map(|(parent, _)| parent);
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        if let Some(child) = line
            .strip_prefix("mod ")
            .or_else(|| line.strip_prefix("pub(crate) mod "))
            .and_then(|rest| rest.strip_suffix(';'))
        {
            found.insert(format!("{module}::{child}"));
        }
        for (prefix, base) in [
            ("crate::", None),
            ("super::", parent),
            ("self::", Some(module)),
        ] {
            for (start, _) in line.match_indices(prefix) {
                let preceded_by_path = line[..start].ends_with(|character: char| {
                    character.is_alphanumeric() || character == '_' || character == ':'
                });
                if preceded_by_path || (prefix != "crate::" && base.is_none()) {
                    continue;
                }
                let path: Vec<&str> = line[start + prefix.len()..]
                    .split("::")
                    .map(|part| {
                        part.trim_end_matches(|character: char| {
                            !(character.is_alphanumeric() || character == '_')
                        })
                    })
                    .take_while(|part| {
                        !part.is_empty()
                            && part
                                .chars()
                                .all(|character| character.is_ascii_lowercase() || character == '_')
                    })
                    .collect();
                if let Some(target) = resolve(base, &path, modules) {
                    found.insert(target);
                }
            }
        }
    }
    found
}

/// The longest module named by `path` below `base` (the crate root when
/// `None`).
fn resolve(
    base: Option<&str>,
    path: &[&str],
    modules: &BTreeMap<String, PathBuf>,
) -> Option<String> {
    (1..=path.len()).rev().find_map(|length| {
        let mut parts: Vec<&str> = base.into_iter().collect();
        parts.extend(&path[..length]);
        let name = parts.join("::");
        modules.contains_key(&name).then_some(name)
    })
}

/// A cycle of the graph, if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        finished: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|on_path| on_path == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if finished.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for dependency in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(dependency, graph, finished, path) {
                return Some(cycle);
            }
        }
        path.pop();
        finished.insert(module.to_owned());
        None
    }
    let mut finished = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut finished, &mut Vec::new()))
}

fn join(modules: &BTreeSet<String>) -> String {
    modules.iter().cloned().collect::<Vec<_>>().join(", ")
}
