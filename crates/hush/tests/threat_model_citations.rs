//! docs/THREAT_MODEL.md names, for every threat, the test that shows its mitigation. A renamed
//! or deleted test would leave a claim without evidence while the table still reads as proof,
//! so every citation is resolved here against the source tree: the named function must exist in
//! the named crate and file, and that file must hold tests.
//!
//! Citation forms: `crate::file::test` (a file in `src/` or `tests/`), `crate::file::tests::test`
//! (a unit-test module), `crate::file::*` (a whole file), `file::test` (under a heading that names
//! the crate; any crate's file of that name), and a bare `test_name` following a full citation in
//! the same table cell (same crate and file). Whether a cited test *shows* what its
//! row claims is a reviewer's judgement; this test keeps the names honest.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn crate_names(root: &Path) -> BTreeSet<String> {
    fs::read_dir(root.join("crates"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The files of `krate` that a citation's module segment `module` can name: `src/module.rs`,
/// `src/module/*.rs`, `tests/module.rs`, `benches/module.rs`.
fn files_for(root: &Path, krate: &str, module: &str) -> Vec<PathBuf> {
    let base = root.join("crates").join(krate);
    let mut all = Vec::new();
    rust_files(&base, &mut all);
    all.into_iter()
        .filter(|p| {
            let rel = p.strip_prefix(&base).unwrap();
            let parts: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let stem = rel.file_stem().unwrap().to_string_lossy();
            stem == module || parts.iter().any(|p| p == module)
        })
        .collect()
}

fn defines_test(file: &Path, name: &str) -> bool {
    let text = fs::read_to_string(file).unwrap_or_default();
    let holds_tests =
        text.contains("#[test]") || text.contains("tokio::test") || text.contains("proptest!");
    let defined = text.match_indices(&format!("fn {name}")).any(|(at, m)| {
        !text[at + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    });
    holds_tests && (name == "*" || defined)
}

/// Every backticked span of the document, with the table cell (or paragraph) it sits in.
fn cited_spans(doc: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for (number, line) in doc.lines().enumerate() {
        for cell in line.split('|') {
            let spans: Vec<String> = cell
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s.trim().to_owned())
                .collect();
            if !spans.is_empty() {
                out.push((number + 1, spans));
            }
        }
    }
    out
}

fn is_test_name(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.matches('_').count() >= 3
}

#[test]
fn every_test_the_threat_model_cites_exists_where_it_says() {
    let root = repo_root();
    let doc = fs::read_to_string(root.join("docs/THREAT_MODEL.md")).unwrap();
    let crates = crate_names(&root);
    let mut checked = 0;
    let mut broken = Vec::new();
    for (line, spans) in cited_spans(&doc) {
        // Bare names inherit the crate and file of the previous full citation in the cell.
        let mut context: Option<(Option<String>, String)> = None;
        for span in spans {
            let segments: Vec<&str> = span.split("::").collect();
            let last = *segments.last().unwrap();
            let names_test = is_test_name(last) || last == "*";
            let (krate, module, name) = if segments.len() >= 2 && names_test {
                if crates.contains(segments[0]) && segments.len() >= 3 {
                    (Some(segments[0].to_owned()), segments[1].to_owned(), last)
                } else if !crates.contains(segments[0]) {
                    // `file::test` (the crate is named by the table's heading): any crate.
                    (None, segments[0].to_owned(), last)
                } else {
                    continue;
                }
            } else if segments.len() == 1 && is_test_name(&span) {
                match &context {
                    Some((k, m)) => (k.clone(), m.clone(), span.as_str()),
                    None => {
                        // A bare name with no full citation before it: anywhere in the tree.
                        let mut all = Vec::new();
                        rust_files(&root.join("crates"), &mut all);
                        checked += 1;
                        if !all.iter().any(|f| defines_test(f, &span)) {
                            broken.push(format!("line {line}: `{span}` is defined nowhere"));
                        }
                        continue;
                    }
                }
            } else {
                continue;
            };
            context = Some((krate.clone(), module.clone()));
            checked += 1;
            let files: Vec<PathBuf> = match &krate {
                Some(k) => files_for(&root, k, &module),
                None => crates
                    .iter()
                    .flat_map(|k| files_for(&root, k, &module))
                    .collect(),
            };
            if !files.iter().any(|f| defines_test(f, name)) {
                broken.push(format!(
                    "line {line}: `{span}`: no test `{name}` in a file `{module}` of {}",
                    krate.as_deref().unwrap_or("any crate")
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "the parser found only {checked} citations; has the table format changed?"
    );
    assert!(
        broken.is_empty(),
        "THREAT_MODEL.md cites tests that do not exist:\n{}",
        broken.join("\n")
    );
}
