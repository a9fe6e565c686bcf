//! contrib/systemd/hush-relay.service agrees with the relay it starts: the command line parses,
//! the stop signal is the one the relay handles gracefully with time left for it, the file
//! limit covers the default connection cap, and the hardening an operator expects is there.
//! Where `systemd-analyze` exists, it verifies the unit too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const RELAY_BIN: &str = env!("CARGO_BIN_EXE_hush-relay");

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd/hush-relay.service")
}

/// `[Section] Key` → every value given (systemd allows a key more than once).
fn parse_unit(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line: {line}"));
        keys.entry(format!("{section} {}", key.trim()))
            .or_default()
            .push(value.trim().to_owned());
    }
    keys
}

fn one<'a>(unit: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match unit.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{key}: expected one value, found {other:?}"),
    }
}

/// A systemd time span in whole seconds ("30", "30s", "1min").
fn seconds(span: &str) -> u64 {
    if let Some(min) = span.strip_suffix("min") {
        return min.trim().parse::<u64>().unwrap() * 60;
    }
    span.trim_end_matches('s').trim().parse().unwrap()
}

#[test]
fn the_unit_starts_the_relay_with_flags_it_accepts() {
    let unit = parse_unit(&std::fs::read_to_string(unit_path()).unwrap());
    let exec = one(&unit, "Service ExecStart");
    let mut words = exec.split_whitespace();
    let program = words.next().unwrap();
    assert!(program.ends_with("/hush-relay"), "{exec}");
    let args: Vec<&str> = words.collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--data", "/var/lib/hush-relay"]),
        "the data directory must be the StateDirectory: {exec}"
    );
    assert_eq!(one(&unit, "Service StateDirectory"), "hush-relay");
    // The flags parse: `completions` exits before reading the config or the data directory.
    let o = Command::new(RELAY_BIN)
        .args(&args)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "hush-relay refuses the unit's flags {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn the_unit_stops_the_relay_gracefully_and_leaves_it_time_to() {
    let unit = parse_unit(&std::fs::read_to_string(unit_path()).unwrap());
    // main.rs shuts down gracefully on SIGTERM (and SIGINT) only.
    assert_eq!(one(&unit, "Service KillSignal"), "SIGTERM");
    let stop = seconds(one(&unit, "Service TimeoutStopSec"));
    let grace = hush_relay::server::SHUTDOWN_GRACE.as_secs();
    assert!(
        stop >= grace + 10,
        "TimeoutStopSec={stop}s leaves the relay no time past its {grace}s grace to commit"
    );
    assert_eq!(one(&unit, "Service Restart"), "on-failure");
    let files: u64 = one(&unit, "Service LimitNOFILE").parse().unwrap();
    let connections = hush_relay::Config::default().max_connections as u64;
    assert!(
        files > connections,
        "LimitNOFILE={files} is below the default max_connections={connections}"
    );
}

#[test]
fn the_unit_runs_the_relay_unprivileged_and_confined() {
    let unit = parse_unit(&std::fs::read_to_string(unit_path()).unwrap());
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(one(&unit, &format!("Service {key}")), value, "{key}");
    }
    let families = one(&unit, "Service RestrictAddressFamilies");
    assert!(families.contains("AF_INET") && families.contains("AF_INET6"));
    assert!(!families.contains("AF_NETLINK") && !families.contains("AF_PACKET"));
    let filters = &unit["Service SystemCallFilter"];
    assert!(
        filters.iter().any(|f| f == "@system-service"),
        "{filters:?}"
    );
}

#[test]
fn systemd_analyze_verifies_the_unit_where_it_exists() {
    let Ok(o) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: no systemd-analyze here (the unit's keys are checked above)");
        return;
    };
    assert!(o.status.success());
    // `verify` wants the ExecStart binary to exist: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(unit_path())
        .unwrap()
        .replace("/usr/local/bin/hush-relay", RELAY_BIN);
    let unit = dir.path().join("hush-relay.service");
    std::fs::write(&unit, text).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    // Other units installed on the machine may draw warnings of their own: only ours count.
    assert!(
        o.status.success() && !stderr.contains("hush-relay.service"),
        "systemd-analyze verify: {}\n{stderr}",
        o.status
    );
}
