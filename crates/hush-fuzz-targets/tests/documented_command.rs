//! The fuzz command docs/THREAT_MODEL.md gives must work as written on a fresh clone: every
//! target of the cargo-fuzz harness is a `TARGETS` entry with a source file, and the corpus and
//! seed directories the command names exist (cargo-fuzz refuses a corpus directory that does
//! not). Whether it *builds* needs a nightly toolchain; `.ci/run` checks that when one exists.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hush_fuzz_targets::TARGETS;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `[[bin]]` names of fuzz/Cargo.toml.
fn harness_targets() -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    let mut names = BTreeSet::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(value) = line.strip_prefix("name = ") {
                names.insert(value.trim_matches('"').to_owned());
            }
        }
    }
    names
}

#[test]
fn the_documented_fuzz_command_names_directories_that_exist_for_every_target() {
    let doc = std::fs::read_to_string(repo().join("docs/THREAT_MODEL.md")).unwrap();
    let command = doc
        .lines()
        .find(|l| l.starts_with("cargo +nightly fuzz run <target>"))
        .expect("THREAT_MODEL.md shows the fuzz command");
    let dirs: Vec<&str> = command
        .split_whitespace()
        .filter(|w| w.contains("<target>") && w.contains('/'))
        .collect();
    assert_eq!(dirs.len(), 2, "corpus and seed directories: {command}");

    let harness = harness_targets();
    let entry_points: BTreeSet<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(harness, entry_points, "fuzz/Cargo.toml and TARGETS differ");
    for target in &harness {
        assert!(
            repo()
                .join(format!("fuzz/fuzz_targets/{target}.rs"))
                .is_file(),
            "{target}: no source file"
        );
        for dir in &dirs {
            let path = repo().join(dir.replace("<target>", target));
            assert!(path.is_dir(), "{target}: {} does not exist", path.display());
        }
    }
}
