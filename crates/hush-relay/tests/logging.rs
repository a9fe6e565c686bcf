//! The real `hush-relay` process's log lines as an operator's tools read them: no colour codes
//! when stderr is a file (systemd, `2>relay.log`, a container runtime), and one JSON object per
//! line with `--log-format json` or `log_format = "json"` in the config file, the flag winning.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

/// Run `relay` through a client's connect, register and ping (debug lines with fields) and a
/// graceful stop, then return everything it wrote to stderr.
async fn log_of_a_short_run(mut relay: Relay) -> String {
    let mut alice = User::new(&relay, "alice").await;
    ping(&mut alice.conn).await;
    drop(alice);
    relay.sigterm();
    let status = relay.wait_exit(T).await.expect("relay exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let log = relay.log_text();
    assert!(
        log.contains("shutdown complete"),
        "the run was not fully logged:\n{log}"
    );
    log
}

/// Every non-empty line as a JSON object with a `level` and a `fields` object holding the
/// `message`; panics naming the first line that is not.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            assert!(value["level"].is_string(), "no level: {line}");
            assert!(value["fields"].is_object(), "no fields: {line}");
            assert!(value["fields"]["message"].is_string(), "no message: {line}");
            value
        })
        .collect()
}

#[tokio::test]
async fn text_logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path()).await;
    let log = log_of_a_short_run(relay).await;
    assert!(
        log.contains("client authenticated"),
        "expected debug lines:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape in a log that is not a terminal:\n{log:?}"
    );
    assert!(
        !log.trim_start().starts_with('{'),
        "text is the default format:\n{log}"
    );
}

#[tokio::test]
async fn log_format_json_flag_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with_args(dir.path(), None, &["--log-format", "json"]).await;
    let log = log_of_a_short_run(relay).await;
    let lines = json_lines(&log);
    let authenticated = lines
        .iter()
        .find(|l| l["fields"]["message"] == "client authenticated")
        .unwrap_or_else(|| panic!("no authentication line:\n{log}"));
    assert_eq!(authenticated["level"], "DEBUG");
    assert!(
        authenticated["fields"]["peer"].is_string(),
        "the event's fields are JSON fields: {authenticated}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "shutdown complete" && l["level"] == "INFO"),
        "{log}"
    );
}

#[tokio::test]
async fn log_format_in_the_config_file_applies_and_the_flag_wins() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(dir.path(), Some("log_format = \"json\"\n"), false).await;
    let log = log_of_a_short_run(relay).await;
    assert!(!json_lines(&log).is_empty());

    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with_args(
        dir.path(),
        Some("log_format = \"json\"\n"),
        &["--log-format", "text"],
    )
    .await;
    let log = log_of_a_short_run(relay).await;
    assert!(
        log.lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "--log-format text must override the file:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "{log:?}");
}
