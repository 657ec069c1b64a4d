//! The release plumbing stays consistent, as far as it can be checked
//! offline (docs/releasing.md describes it): release-plz.toml uses only keys
//! release-plz knows and names only crates of this workspace; the published
//! crates share one version line and carry their licenses; the npm packages
//! carry the Rust crates' version (scripts/sync-npm-versions keeps them so);
//! every platform package has its napi target and its build in the publish
//! matrix; the workflows use only the runners docs/releasing.md lists; CI
//! tests the PostgreSQL versions the docs name and the declared minimum Rust.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

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
const PUBLISHED: [&str; 5] = [
    "factstr",
    "factstr-memory",
    "factstr-sqlite",
    "factstr-postgres",
    "factstr-cli",
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

fn read(relative: &str) -> String {
    fs::read_to_string(root().join(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

fn json(relative: &str) -> serde_json::Value {
    serde_json::from_str(&read(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// The platform packages: the folder names under factstr-node/npm/.
fn platform_folders() -> BTreeSet<String> {
    fs::read_dir(root().join("factstr-node/npm"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// napi-rs's platform name of a Rust target triple (`linux-x64-gnu`, ...).
fn platform_of(target: &str) -> String {
    let parts: Vec<&str> = target.split('-').collect();
    let arch = match parts[0] {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => panic!("no npm cpu name for {other} ({target})"),
    };
    match parts[1..] {
        ["unknown", "linux", abi] => format!("linux-{arch}-{abi}"),
        ["apple", "darwin"] => format!("darwin-{arch}"),
        ["pc", "windows", "msvc"] => format!("win32-{arch}-msvc"),
        _ => panic!("no npm platform name for {target}"),
    }
}

/// `key: value` entries of a workflow's lines, in order, quotes removed
/// (enough for the flat YAML the workflows here use).
fn workflow_values(workflow: &str, key: &str) -> Vec<String> {
    workflow
        .lines()
        .map(|line| line.trim().trim_start_matches("- ").trim())
        .filter_map(|line| line.strip_prefix(&format!("{key}:")))
        .map(|value| value.trim().trim_matches(['\'', '"']).to_owned())
        .collect()
}

fn workflows() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(root().join(".github/workflows"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    files
}

#[test]
fn npm_packages_carry_the_rust_version() {
    let version = workspace_version();
    let main = json("factstr-node/package.json");
    assert_eq!(
        main["version"],
        version.as_str(),
        "factstr-node/package.json"
    );
    let optional = main["optionalDependencies"].as_object().unwrap();
    for (name, wanted) in optional {
        assert_eq!(wanted, version.as_str(), "optionalDependencies[{name}]");
    }
    for platform in platform_folders() {
        let package = json(&format!("factstr-node/npm/{platform}/package.json"));
        assert_eq!(package["version"], version.as_str(), "npm/{platform}");
    }
    let lock = json("factstr-node/package-lock.json");
    assert_eq!(lock["version"], version.as_str(), "package-lock.json");
    assert_eq!(lock["packages"][""]["version"], version.as_str());
    assert_eq!(
        lock["packages"][""]["optionalDependencies"],
        main["optionalDependencies"]
    );
}

#[test]
fn every_platform_package_has_its_target_dependency_and_publish_build() {
    let main = json("factstr-node/package.json");
    let platforms = platform_folders();
    assert_eq!(platforms.len(), 8, "{platforms:?}");

    let targets: BTreeSet<String> = main["napi"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|target| platform_of(target.as_str().unwrap()))
        .collect();
    assert_eq!(targets, platforms, "napi.targets");

    let optional: BTreeSet<String> = main["optionalDependencies"]
        .as_object()
        .unwrap()
        .keys()
        .map(|name| {
            name.strip_prefix("@factstr/factstr-node-")
                .unwrap_or_else(|| panic!("optionalDependencies has {name}"))
                .to_owned()
        })
        .collect();
    assert_eq!(optional, platforms, "optionalDependencies");

    let publish = read(".github/workflows/publish-node.yml");
    let built = workflow_values(&publish, "platform");
    let built_targets = workflow_values(&publish, "target");
    assert_eq!(built.len(), built_targets.len());
    for (platform, target) in built.iter().zip(&built_targets) {
        assert_eq!(&platform_of(target), platform, "publish-node.yml matrix");
    }
    let built: BTreeSet<String> = built.into_iter().collect();
    assert_eq!(
        built, platforms,
        "publish-node.yml builds every platform package"
    );
    assert!(
        publish.contains("fail-fast: false"),
        "one failing platform must not cancel the others"
    );

    let readme = read("factstr-node/README.md");
    for platform in &platforms {
        assert!(
            readme.contains(platform.as_str()),
            "factstr-node/README.md does not name {platform}"
        );
        let package = json(&format!("factstr-node/npm/{platform}/package.json"));
        assert_eq!(package["name"], format!("@factstr/factstr-node-{platform}"));
        let binary = format!("factstr-node.{platform}.node");
        assert_eq!(package["main"], binary.as_str());
        let files = package["files"].as_array().unwrap();
        for file in [binary.as_str(), "LICENSE-MIT", "LICENSE-APACHE"] {
            assert!(
                files.iter().any(|listed| listed == file),
                "npm/{platform} files lack {file}"
            );
        }
        let mut parts = platform.split('-');
        let (os, cpu, abi) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
        assert_eq!(package["os"], serde_json::json!([os]), "npm/{platform}");
        assert_eq!(package["cpu"], serde_json::json!([cpu]), "npm/{platform}");
        let libc = match abi {
            Some("gnu") => serde_json::json!(["glibc"]),
            Some("musl") => serde_json::json!(["musl"]),
            _ => serde_json::Value::Null,
        };
        assert_eq!(package["libc"], libc, "npm/{platform}");
    }
}

#[test]
fn glibc_builds_use_the_cross_toolchain_and_are_checked_against_the_baseline() {
    let publish = read(".github/workflows/publish-node.yml");
    let lines: Vec<&str> = publish.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        if let Some(platform) = line.trim().strip_prefix("- platform: ")
            && platform.ends_with("-gnu")
        {
            let entry: String = lines[index..]
                .iter()
                .take_while(|next| !next.trim().is_empty())
                .take(6)
                .copied()
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                entry.contains("build: --use-napi-cross"),
                "{platform}:\n{entry}"
            );
            assert!(entry.contains("glibc: true"), "{platform}:\n{entry}");
        }
    }
    assert!(
        publish.contains("scripts/check-glibc-baseline factstr-node.${{ matrix.platform }}.node")
    );
    assert!(read("scripts/check-glibc-baseline").contains("baseline=\"${GLIBC_BASELINE:-2.17}\""));
    assert!(read("scripts/test-node").contains("../scripts/check-glibc-baseline"));
}

/// The runner labels docs/releasing.md lists under "## Runners".
fn supported_runners() -> BTreeSet<String> {
    let releasing = read("docs/releasing.md");
    let section = releasing
        .split("\n## ")
        .find(|section| section.starts_with("Runners\n"))
        .expect("docs/releasing.md has a Runners section");
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(label, _)| label.to_owned())
        .collect()
}

#[test]
fn workflows_use_only_the_documented_runners() {
    let supported = supported_runners();
    assert!(supported.len() >= 4, "{supported:?}");
    for retired in ["macos-13", "macos-12", "ubuntu-20.04", "windows-2019"] {
        assert!(
            !supported.contains(retired),
            "{retired} is retired by GitHub"
        );
    }
    let mut used = BTreeSet::new();
    for (file, text) in workflows() {
        for key in ["runs-on", "runner"] {
            for label in workflow_values(&text, key) {
                if label.starts_with("${{") {
                    continue; // a matrix entry, checked as `runner:`
                }
                assert!(
                    supported.contains(&label),
                    "{file} uses the runner `{label}`, not listed in docs/releasing.md"
                );
                used.insert(label);
            }
        }
    }
    assert_eq!(
        used, supported,
        "docs/releasing.md lists runners no workflow uses"
    );
}

#[test]
fn release_workflows_use_a_token_that_starts_follow_up_workflows() {
    let release = read(".github/workflows/release-rust.yml");
    assert!(
        !release.contains("secrets.GITHUB_TOKEN"),
        "pushes, tags and PRs made with GITHUB_TOKEN start no workflow"
    );
    assert!(release.contains("actions/create-github-app-token"));
    assert_eq!(
        workflow_values(&release, "GITHUB_TOKEN"),
        vec!["${{ steps.token.outputs.token }}"; 2]
    );
    assert_eq!(
        workflow_values(&release, "token"),
        vec!["${{ steps.token.outputs.token }}"; 2],
        "checkout persists the App token for release-plz's git pushes"
    );
    assert!(
        release.contains("scripts/sync-npm-versions\n"),
        "the release PR syncs npm versions"
    );
    assert!(release.contains("scripts/sync-npm-versions --check"));

    let releasing = read("docs/releasing.md");
    for name in [
        "RELEASE_APP_ID",
        "RELEASE_APP_PRIVATE_KEY",
        "CARGO_REGISTRY_TOKEN",
        "NPM_TOKEN",
    ] {
        assert!(
            releasing.contains(name),
            "docs/releasing.md does not document {name}"
        );
    }
    assert!(
        release.contains("vars.RELEASE_APP_ID")
            && release.contains("secrets.RELEASE_APP_PRIVATE_KEY")
    );

    let publish = read(".github/workflows/publish-node.yml");
    assert!(publish.contains("tags: ['factstr-v*']"));
    assert!(
        publish.contains("workflow_dispatch"),
        "a stopped publish can be run by hand"
    );
    assert!(publish.contains("run: ../scripts/publish-npm"));
    let publish_npm = read("scripts/publish-npm");
    assert!(
        publish_npm.contains("npm view \"$name@$version\" version"),
        "versions npm already has are skipped, so a publish can run again"
    );
}

#[test]
fn sync_npm_versions_moves_every_npm_version_to_the_crates_version() {
    let scratch = tempfile::tempdir().unwrap();
    let copy = |relative: &str| {
        let to = scratch.path().join(relative);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(root().join(relative), to).unwrap();
    };
    copy("Cargo.toml");
    copy("factstr-node/package.json");
    copy("factstr-node/package-lock.json");
    for platform in platform_folders() {
        copy(&format!("factstr-node/npm/{platform}/package.json"));
    }
    let sync = |arguments: &[&str]| {
        std::process::Command::new("node")
            .arg(root().join("scripts/sync-npm-versions"))
            .args(arguments)
            .arg(scratch.path())
            .output()
            .expect("scripts/sync-npm-versions needs Node.js")
    };
    assert!(
        sync(&["--check"]).status.success(),
        "the repository's versions agree"
    );

    // What release-plz does in a release PR: a new workspace version.
    let manifest = scratch.path().join("Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    let old = format!("version = \"{}\"", workspace_version());
    assert!(text.contains(&old));
    fs::write(&manifest, text.replacen(&old, "version = \"9.8.7\"", 1)).unwrap();

    let stale = sync(&["--check"]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("not at version 9.8.7"));
    let synced = sync(&[]);
    assert!(
        synced.status.success(),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    assert!(sync(&["--check"]).status.success());

    let read_copy = |relative: &str| -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(scratch.path().join(relative)).unwrap()).unwrap()
    };
    let main = read_copy("factstr-node/package.json");
    assert_eq!(main["version"], "9.8.7");
    for (name, version) in main["optionalDependencies"].as_object().unwrap() {
        assert_eq!(version, "9.8.7", "{name}");
    }
    for platform in platform_folders() {
        assert_eq!(
            read_copy(&format!("factstr-node/npm/{platform}/package.json"))["version"],
            "9.8.7"
        );
    }
    let lock = read_copy("factstr-node/package-lock.json");
    assert_eq!(lock["version"], "9.8.7");
    assert_eq!(
        lock["packages"][""]["optionalDependencies"],
        main["optionalDependencies"]
    );
    // Nothing else changed: the dev dependencies keep their ranges.
    let original = json("factstr-node/package.json");
    assert_eq!(main["devDependencies"], original["devDependencies"]);
}

#[test]
fn packages_carry_both_licenses() {
    let mit = read("LICENSE-MIT");
    let apache = read("LICENSE-APACHE");
    let mut folders: Vec<String> = PUBLISHED
        .iter()
        .map(|name| format!("crates/{name}"))
        .collect();
    folders.push("factstr-node".to_owned());
    folders.extend(
        platform_folders()
            .into_iter()
            .map(|platform| format!("factstr-node/npm/{platform}")),
    );
    for folder in &folders {
        assert_eq!(
            read(&format!("{folder}/LICENSE-MIT")),
            mit,
            "{folder}/LICENSE-MIT"
        );
        assert_eq!(
            read(&format!("{folder}/LICENSE-APACHE")),
            apache,
            "{folder}/LICENSE-APACHE"
        );
    }
    for name in PUBLISHED {
        let manifest = read(&format!("crates/{name}/Cargo.toml"));
        assert!(
            manifest
                .contains(r#"include = ["/src", "/README.md", "/LICENSE-MIT", "/LICENSE-APACHE"]"#),
            "{name} packs its sources, README and licenses, and no tests needing unpublished crates"
        );
    }
    let files = json("factstr-node/package.json")["files"].clone();
    for file in ["LICENSE-MIT", "LICENSE-APACHE"] {
        assert!(
            files
                .as_array()
                .unwrap()
                .iter()
                .any(|listed| listed == file),
            "{file}"
        );
    }
}

#[test]
fn crate_readmes_link_the_docs_with_absolute_urls() {
    for name in PUBLISHED {
        let readme = read(&format!("crates/{name}/README.md"));
        for (index, _) in readme.match_indices("docs/") {
            let before = &readme[..index];
            let page: String = readme[index..]
                .chars()
                .take_while(|c| !matches!(c, ']' | ')' | '`' | ' ' | '\n'))
                .collect();
            let absolute = format!("https://github.com/factstr/factstr/blob/main/{page}");
            let linked = before.ends_with("https://github.com/factstr/factstr/blob/main/")
                || (before.ends_with('[')
                    && readme[index + page.len()..].starts_with(&format!("]({absolute})")));
            assert!(
                linked,
                "{name}/README.md names {page} without a link that works on crates.io"
            );
        }
        for (index, _) in readme.match_indices("](") {
            let target = &readme[index + 2..];
            assert!(
                target.starts_with("https://") || target.starts_with('#'),
                "{name}/README.md has a relative link: {}",
                &target[..target.find(')').unwrap_or(target.len())]
            );
        }
    }
}

#[test]
fn ci_runs_the_declared_rust_the_documented_postgres_versions_and_macos() {
    let ci = read(".github/workflows/ci.yml");
    assert!(
        ci.contains("run: bash .ci/run"),
        "the main job runs .ci/run"
    );
    assert!(
        read(".ci/run").contains("\nscripts/test\n"),
        ".ci/run runs scripts/test"
    );
    assert!(
        read("README.md").contains("```sh\nscripts/test\n```"),
        "the README shows scripts/test"
    );

    // The minimum Rust: read from Cargo.toml by the job itself.
    assert!(ci.contains("  msrv:"));
    assert!(ci.contains(r#"sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml"#));
    assert!(ci.contains("toolchain: ${{ steps.msrv.outputs.version }}"));
    assert!(ci.contains("cargo test --locked --workspace"));
    assert!(read("Cargo.toml").contains("\nrust-version = \""));

    // macOS: the memory and SQLite stores.
    assert!(ci.contains("runs-on: macos-15"));
    assert!(ci.contains("-p factstr-memory -p factstr-sqlite"));

    // PostgreSQL: the matrix is exactly the versions the docs say are tested.
    let matrix_line = ci
        .lines()
        .find_map(|line| line.trim().strip_prefix("postgres: ["))
        .expect("a postgres matrix in ci.yml");
    let matrix: BTreeSet<String> = matrix_line
        .trim_end_matches(']')
        .split(',')
        .map(|version| version.trim().trim_matches(['\'', '"']).to_owned())
        .collect();
    assert!(matrix.contains("15") && matrix.contains("17"), "{matrix:?}");
    let mut named = BTreeSet::new();
    let mut documents: Vec<String> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path().to_string_lossy().into_owned())
        .collect();
    documents.push(root().join("README.md").to_string_lossy().into_owned());
    documents.push(
        root()
            .join("crates/factstr-postgres/README.md")
            .to_string_lossy()
            .into_owned(),
    );
    for document in documents {
        let text = fs::read_to_string(&document).unwrap().replace('\n', " ");
        for marker in [
            "tested against PostgreSQL ",
            "PostgreSQL server (tested on ",
        ] {
            for (index, _) in text.match_indices(marker) {
                let rest = &text[index + marker.len()..];
                let words = rest.split([' ', ',', ')', ';', '.']).take(5);
                for word in words
                    .filter(|word| word.chars().all(|c| c.is_ascii_digit()) && !word.is_empty())
                {
                    assert!(
                        matrix.contains(word),
                        "{document} names PostgreSQL {word}, CI does not test it"
                    );
                    named.insert(word.to_owned());
                }
            }
        }
    }
    assert_eq!(
        named, matrix,
        "the docs name the PostgreSQL versions CI tests"
    );
}
