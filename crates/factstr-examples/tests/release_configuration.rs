//! The release plumbing stays consistent: release-plz.toml uses only keys
//! release-plz knows and names only crates of this workspace, the published
//! crates share one version line, and the npm packages carry the Rust
//! crates' version.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Keys of release-plz's configuration schema (`.schema/latest.json` in the
/// release-plz repository), per section.
const WORKSPACE_KEYS: &[&str] = &[
    "allow_dirty",
    "changelog_config",
    "changelog_path",
    "changelog_update",
    "dependencies_update",
    "git_release_body",
    "git_release_draft",
    "git_release_enable",
    "git_release_latest",
    "git_release_name",
    "git_release_type",
    "git_tag_enable",
    "git_tag_name",
    "pr_draft",
    "pr_labels",
    "publish",
    "publish_allow_dirty",
    "publish_features",
    "publish_no_verify",
    "publish_timeout",
    "release",
    "release_always",
    "release_commits",
    "repo_url",
    "semver_check",
];
const PACKAGE_KEYS: &[&str] = &[
    "name",
    "changelog_include",
    "changelog_path",
    "changelog_update",
    "git_release_body",
    "git_release_draft",
    "git_release_enable",
    "git_release_latest",
    "git_release_name",
    "git_release_type",
    "git_tag_enable",
    "git_tag_name",
    "publish",
    "publish_allow_dirty",
    "publish_features",
    "publish_no_verify",
    "release",
    "semver_check",
    "version_group",
];
const PUBLISHED: [&str; 4] = [
    "factstr",
    "factstr-memory",
    "factstr-sqlite",
    "factstr-postgres",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

type Section = (String, BTreeMap<String, String>);

/// Sections of a TOML file written one `key = value` per line (as
/// release-plz.toml and the manifests here are).
fn sections(text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line
            .strip_prefix("[[")
            .and_then(|rest| rest.strip_suffix("]]"))
        {
            sections.push((header.to_owned(), BTreeMap::new()));
        } else if let Some(header) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            sections.push((header.to_owned(), BTreeMap::new()));
        } else if let Some((key, value)) = line.split_once('=')
            && let Some(section) = sections.last_mut()
        {
            section
                .1
                .insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    sections
}

fn unquoted(value: &str) -> &str {
    value.trim_matches('"')
}

/// The workspace's packages by name, with their manifests' text.
fn workspace_packages() -> BTreeMap<String, String> {
    let mut manifests: Vec<PathBuf> = fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("Cargo.toml"))
        .collect();
    manifests.push(root().join("factstr-node/Cargo.toml"));
    manifests
        .into_iter()
        .map(|manifest| {
            let text = fs::read_to_string(&manifest).unwrap();
            let name = sections(&text)
                .into_iter()
                .find(|(header, _)| header == "package")
                .and_then(|(_, entries)| entries.get("name").map(|name| unquoted(name).to_owned()))
                .unwrap_or_else(|| panic!("no package name in {}", manifest.display()));
            (name, text)
        })
        .collect()
}

fn workspace_version() -> String {
    let text = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let (_, entries) = sections(&text)
        .into_iter()
        .find(|(header, _)| header == "workspace.package")
        .unwrap();
    unquoted(&entries["version"]).to_owned()
}

#[test]
fn release_plz_uses_known_keys_and_existing_crates() {
    let text = fs::read_to_string(root().join("release-plz.toml")).unwrap();
    let packages = workspace_packages();
    let mut configured = BTreeSet::new();
    for (section, entries) in sections(&text) {
        let known = match section.as_str() {
            "workspace" => WORKSPACE_KEYS,
            "package" => PACKAGE_KEYS,
            other => panic!("release-plz.toml has an unknown section [{other}]"),
        };
        for key in entries.keys() {
            assert!(
                known.contains(&key.as_str()),
                "[{section}] has the unknown key `{key}`"
            );
        }
        if section != "package" {
            continue;
        }
        let name = unquoted(&entries["name"]).to_owned();
        assert!(
            packages.contains_key(&name),
            "release-plz.toml names `{name}`, not a workspace crate"
        );
        assert!(
            configured.insert(name.clone()),
            "`{name}` is configured twice"
        );
        if let Some(included) = entries.get("changelog_include") {
            for crate_name in included
                .trim_matches(['[', ']'])
                .split(',')
                .map(|name| unquoted(name.trim()))
            {
                assert!(
                    packages.contains_key(crate_name),
                    "changelog_include names `{crate_name}`"
                );
            }
        }
        if PUBLISHED.contains(&name.as_str()) {
            assert_eq!(
                entries.get("version_group").map(|group| unquoted(group)),
                Some("factstr"),
                "{name}"
            );
        } else {
            assert_eq!(
                entries.get("release").map(String::as_str),
                Some("false"),
                "{name} must not be released"
            );
            assert!(
                packages[&name].contains("publish = false"),
                "{name} needs publish = false in its Cargo.toml"
            );
        }
    }
    let every_crate: BTreeSet<String> = packages.keys().cloned().collect();
    assert_eq!(
        configured, every_crate,
        "every workspace crate is configured in release-plz.toml"
    );
}

#[test]
fn published_crates_share_the_workspace_version_and_carry_metadata() {
    let packages = workspace_packages();
    for name in PUBLISHED {
        let manifest = &packages[name];
        for inherited in [
            "version.workspace = true",
            "license.workspace = true",
            "repository.workspace = true",
        ] {
            assert!(manifest.contains(inherited), "{name} lacks `{inherited}`");
        }
        for field in [
            "description = ",
            "keywords = ",
            "categories = ",
            "readme = ",
        ] {
            assert!(manifest.contains(field), "{name} lacks `{field}`");
        }
        let readme = root().join("crates").join(name).join("README.md");
        assert!(readme.exists(), "{} is missing", readme.display());
    }
}

#[test]
fn npm_packages_carry_the_rust_version() {
    let version = workspace_version();
    let node = root().join("factstr-node");
    let main: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(node.join("package.json")).unwrap()).unwrap();
    assert_eq!(
        main["version"],
        version.as_str(),
        "factstr-node/package.json"
    );
    let optional = main["optionalDependencies"].as_object().unwrap();
    let platforms: Vec<PathBuf> = fs::read_dir(node.join("npm"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(platforms.len(), 5, "{platforms:?}");
    assert_eq!(optional.len(), 5);
    for platform in platforms {
        let package: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(platform.join("package.json")).unwrap())
                .unwrap();
        let name = package["name"].as_str().unwrap();
        assert_eq!(package["version"], version.as_str(), "{name}");
        assert_eq!(
            optional[name],
            version.as_str(),
            "optionalDependencies[{name}]"
        );
        let suffix = platform.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, format!("@factstr/factstr-node-{suffix}"));
        assert_eq!(package["main"], format!("factstr-node.{suffix}.node"));
    }
}
