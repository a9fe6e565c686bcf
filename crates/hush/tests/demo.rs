//! `hush demo` as a user runs it: a real process, no setup. It must exit 0 with a PASS row for
//! every property, and a sabotaged check (`HUSH_DEMO_SABOTAGE=integrity`, which skips the
//! tampering) must turn its row to FAIL and the exit status non-zero, so a broken property
//! cannot hide behind a green summary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::process::{Command, Stdio};

const HUSH: &str = env!("CARGO_BIN_EXE_hush");

const PROPERTIES: [&str; 10] = [
    "Authentication",
    "Availability",
    "Integrity",
    "Replay",
    "Groups",
    "Man in the middle",
    "Confidentiality",
    "Forward secrecy",
    "Post-compromise security",
    "Post-quantum (record now, decrypt later)",
];

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn demo(sabotage: Option<&str>) -> Run {
    let mut cmd = Command::new(HUSH);
    cmd.arg("demo")
        .env_remove("HUSH_DEMO_SABOTAGE")
        .env_remove("HUSH_PASSPHRASE")
        .stdin(Stdio::null());
    if let Some(what) = sabotage {
        cmd.env("HUSH_DEMO_SABOTAGE", what);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Property -> "PASS" / "FAIL", from the summary table.
fn summary(stdout: &str) -> HashMap<&'static str, String> {
    let table = stdout
        .split("== summary ==")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary table in:\n{stdout}"));
    let mut rows = HashMap::new();
    for line in table.lines() {
        for property in PROPERTIES {
            if let Some(rest) = line.trim_start().strip_prefix(property) {
                if rest.starts_with(' ') {
                    let result = rest.split_whitespace().next().unwrap_or_default();
                    assert!(
                        rows.insert(property, result.to_owned()).is_none(),
                        "{property} listed twice"
                    );
                }
            }
        }
    }
    rows
}

#[test]
fn the_demo_shows_every_property_passing_and_exits_zero() {
    let run = demo(None);
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let rows = summary(&run.stdout);
    for property in PROPERTIES {
        assert_eq!(
            rows.get(property).map(String::as_str),
            Some("PASS"),
            "{property}:\n{}",
            run.stdout
        );
    }
    // The evidence is printed, not only the verdicts.
    for evidence in [
        "equal: no one has substituted a key between them",
        "rejected an envelope from alice",
        "result: 0 hit(s)",
        "KEY CHANGED event for bob",
        "refuses it and says so (Rejected: forged sender",
        "and reports it: Rejected: duplicate",
        "refused (ClientError::KeyChanged)",
        "CAN decrypt \"Sent after the theft",
        "cannot decrypt (duplicate",
        "hush-v1 first message: CAN decrypt \"Recorded in 2026",
        "hush-v2 first message: cannot decrypt",
        // Groups: the removed member, the new member, the forged add (both ways).
        "the message again, after it: cannot open it (we are not a member",
        "dave's client: Rejected: refused a message in group #team: message from epoch",
        "her client refuses it before making any commit (key package refused",
        "relay DB: nothing was sent",
        "bob's client: Rejected: refused a commit in group #team",
    ] {
        assert!(run.stdout.contains(evidence), "{evidence}:\n{}", run.stdout);
    }
}

#[test]
fn a_sabotaged_integrity_check_fails_its_row_and_the_exit_status() {
    let run = demo(Some("integrity"));
    assert_ne!(run.code, Some(0), "stdout:\n{}", run.stdout);
    let rows = summary(&run.stdout);
    assert_eq!(
        rows.get("Integrity").map(String::as_str),
        Some("FAIL"),
        "{}",
        run.stdout
    );
    for property in PROPERTIES.iter().filter(|p| **p != "Integrity") {
        assert_eq!(
            rows.get(property).map(String::as_str),
            Some("PASS"),
            "{property}:\n{}",
            run.stdout
        );
    }
}
