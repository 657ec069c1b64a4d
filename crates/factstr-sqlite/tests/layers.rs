//! The crate's modules depend one way: each uses only the modules before it
//! in [`MODULES`] (a writer module only the writer modules before it in
//! [`WRITER_MODULES`]), so no import cycle can form. Unit tests
//! (`#[cfg(test)]` modules) may use anything. docs/design.md shows the same
//! order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

/// The crate's modules, bottom first: errors, options, SQL text, payload
/// index documents, the row codec, the 0.5.x migration, opening files;
/// choosing and reading candidates, reads, read connections, durable
/// streams, the writer; the dispatcher's view of the log, the store, the
/// store operations.
const MODULES: [&str; 15] = [
    "error",
    "options",
    "sql",
    "index",
    "rows",
    "legacy",
    "schema",
    "plan",
    "read",
    "readers",
    "durable",
    "writer",
    "committed_log",
    "store",
    "operations",
];

/// The writer's modules, bottom first: pending cursors, the transaction
/// guards, requests, one group's transaction (`writer/mod.rs` is on top).
const WRITER_MODULES: [&str; 4] = ["cursors", "guard", "request", "transaction"];

fn source(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(relative)
}

/// The modules `file` declares (`mod name;`), in order.
fn declared_modules(file: &Path) -> Vec<String> {
    let text = without_unit_tests(&fs::read_to_string(file).unwrap());
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            line.strip_prefix("mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .and_then(|rest| rest.strip_suffix(';'))
                .map(str::to_owned)
        })
        .collect()
}

/// `text` without comments and without its `#[cfg(test)]` modules.
fn without_unit_tests(text: &str) -> String {
    let text: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut kept = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("#[cfg(test)]") {
        kept.push_str(&rest[..start]);
        let after = &rest[start..];
        let item_end = after.find([';', '{']).unwrap();
        if after.as_bytes()[item_end] == b';' {
            rest = &after[item_end + 1..];
            continue;
        }
        let mut depth = 0;
        let mut end = item_end;
        for (offset, character) in after[item_end..].char_indices() {
            match character {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = item_end + offset + 1;
                break;
            }
        }
        rest = &after[end..];
    }
    kept.push_str(rest);
    kept
}

/// The first path segments named after `prefix` (`crate::`, `super::`)
/// in `text`, braces of `use` lists included.
fn used_after(text: &str, prefix: &str) -> Vec<String> {
    let mut used = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(prefix) {
        let preceded_by_identifier = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|character| character.is_alphanumeric() || character == '_');
        rest = &rest[start + prefix.len()..];
        if preceded_by_identifier {
            continue;
        }
        if let Some(list) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            for character in list.chars() {
                match character {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        used.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                item.push(character);
            }
            used.push(first_segment(&item));
        } else {
            used.push(first_segment(rest));
        }
    }
    used.retain(|name| !name.is_empty());
    used
}

fn first_segment(path: &str) -> String {
    path.trim_start()
        .chars()
        .take_while(|character| character.is_alphanumeric() || *character == '_')
        .collect()
}

fn file_of(folder: &str, module: &str) -> PathBuf {
    let file = source(&format!("{folder}{module}.rs"));
    if file.exists() {
        file
    } else {
        source(&format!("{folder}{module}/mod.rs"))
    }
}

/// Checks that every module of `order` (declared in `folder`) uses, after
/// `prefix`, only modules declared before it.
fn assert_layered(folder: &str, order: &[&str], prefix: &str) -> usize {
    let mut checked = 0;
    for (position, module) in order.iter().enumerate() {
        let text = without_unit_tests(&fs::read_to_string(file_of(folder, module)).unwrap());
        for used in used_after(&text, prefix) {
            let Some(used_position) = order.iter().position(|name| **name == used) else {
                // Not a module (a re-exported type, `self`).
                continue;
            };
            assert!(
                used_position < position,
                "{folder}{module} uses {prefix}{used}, which is declared after it"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn each_module_uses_only_the_modules_below_it() {
    let mut declared = declared_modules(&source("lib.rs"));
    declared.sort();
    let mut listed = MODULES.map(str::to_owned).to_vec();
    listed.sort();
    assert_eq!(
        declared, listed,
        "src/lib.rs declares other modules than MODULES"
    );
    assert!(assert_layered("", &MODULES, "crate::") > 20);

    let mut declared = declared_modules(&source("writer/mod.rs"));
    declared.sort();
    assert_eq!(
        declared, WRITER_MODULES,
        "src/writer/mod.rs declares other modules"
    );
    assert!(assert_layered("writer/", &WRITER_MODULES, "super::") > 3);
    // The writer's parts never reach back into the writer's handle.
    for module in WRITER_MODULES {
        let text = without_unit_tests(&fs::read_to_string(file_of("writer/", module)).unwrap());
        for used in used_after(&text, "super::") {
            assert!(
                WRITER_MODULES.contains(&used.as_str()),
                "writer/{module} uses super::{used}, an item of writer/mod.rs"
            );
        }
    }
}

#[test]
fn the_checker_sees_uses_in_lists_and_paths() {
    let text = "use crate::{a, b::{c, d}};\nfn f() { crate::e::g(); x_crate::h(); }\n\
                #[cfg(test)]\nmod tests { use crate::z; }";
    assert_eq!(
        used_after(&without_unit_tests(text), "crate::"),
        ["a", "b", "e"]
    );
}
