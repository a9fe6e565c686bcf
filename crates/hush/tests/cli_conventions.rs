//! End-to-end tests of what users of a command-line tool expect from `hush` and `hush-relay`:
//! the relay key pinned on first use is shown (as ssh does), shell completions and man pages,
//! `--version` naming the protocol profiles, and quiet exits on a closed stdout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{relay_binary, RelayProcess};

const HUSH: &str = env!("CARGO_BIN_EXE_hush");
const PASS: &str = "test passphrase";

fn hush(profile: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(HUSH);
    cmd.arg("--profile")
        .arg(profile)
        .args(args)
        .env("HUSH_PASSPHRASE", PASS)
        .stdin(Stdio::null());
    cmd
}

async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Run `cmd` with stdout a pipe whose read end is already closed, as after `| head -1` has
/// read its line: the first write fails with EPIPE. A shell holds the command back until the
/// read end is gone (`std::io::pipe` is newer than the MSRV).
async fn output_into_closed_pipe(cmd: Command) -> Output {
    output_into_closed_pipe_with_input(cmd, b"").await
}

/// [`output_into_closed_pipe`], with `input` on the command's stdin.
async fn output_into_closed_pipe_with_input(cmd: Command, input: &'static [u8]) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut held = Command::new("sh");
        held.arg("-c")
            .arg(r#"read -r _ && exec "$0" "$@""#)
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .envs(
                cmd.get_envs()
                    .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = held.spawn().unwrap();
        drop(child.stdout.take());
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.write_all(input).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn init(root: &Path, relay: &RelayProcess, name: &str, extra: &[&str]) -> (PathBuf, Output) {
    let profile = root.join(name);
    let addr = relay.addr.to_string();
    let mut args = vec!["init", "--name", name, "--relay", addr.as_str()];
    args.extend_from_slice(extra);
    let o = output(hush(&profile, &args)).await;
    assert!(o.status.success(), "init {name}: {}", stderr(&o));
    (profile, o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_shows_the_relay_key_it_trusted_on_first_use_and_whoami_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let relay =
        RelayProcess::start(&tmp.path().join("relay"), "127.0.0.1:0".parse().unwrap()).await;
    // The operator's view: the line hush-relay printed at start, and DATA/relay.pub.
    let key_hex = relay.key_line.strip_prefix("relay public key: ").unwrap();
    let published = std::fs::read_to_string(tmp.path().join("relay/relay.pub")).unwrap();
    assert_eq!(published.trim(), key_hex);

    let (alice, o) = init(tmp.path(), &relay, "alice", &[]).await;
    let out = stdout(&o);
    assert!(out.contains(&relay.key_line), "init printed:\n{out}");
    assert!(out.contains("trusted on first use"), "init printed:\n{out}");
    assert!(out.contains("relay.pub"), "no way to compare it:\n{out}");

    let o = output(hush(&alice, &["whoami"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&relay.key_line),
        "whoami printed:\n{}",
        stdout(&o)
    );

    // A key given with --relay-key was not trusted blindly: init says so.
    let (_, o) = init(tmp.path(), &relay, "bob", &["--relay-key", key_hex]).await;
    let out = stdout(&o);
    assert!(out.contains(&relay.key_line), "init printed:\n{out}");
    assert!(
        !out.contains("trusted on first use"),
        "init printed:\n{out}"
    );
    relay.shutdown().await;
}

/// `hush` and `hush-relay`, with the subcommands each must name.
fn binaries() -> [(&'static Path, &'static [&'static str]); 2] {
    [
        (
            Path::new(HUSH),
            &[
                "init", "whoami", "relays", "send", "recv", "history", "verify", "rpc", "web",
            ],
        ),
        (relay_binary(), &["free-name"]),
    ]
}

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    for (binary, subcommands) in binaries() {
        for shell in ["bash", "zsh", "fish"] {
            let o = Command::new(binary)
                .args(["completions", shell])
                .output()
                .unwrap();
            let what = format!("{} completions {shell}", binary.display());
            assert!(o.status.success(), "{what}: {}", stderr(&o));
            let script = stdout(&o);
            for sub in subcommands {
                assert!(script.contains(sub), "{what} does not mention {sub}");
            }
            assert!(script.contains("completions"), "{what} omits itself");
        }
    }
}

#[test]
fn the_man_page_is_roff_naming_the_subcommands() {
    for (binary, subcommands) in binaries() {
        let o = Command::new(binary).arg("man").output().unwrap();
        let what = format!("{} man", binary.display());
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let page = stdout(&o);
        let name = binary.file_stem().unwrap().to_str().unwrap();
        assert!(
            page.lines()
                .any(|l| l.starts_with(".TH ") && l.contains(name)),
            "{what} is not a man page titled {name}:\n{page}"
        );
        for sub in subcommands {
            // roff writes a hyphen as `\-`.
            let roff = sub.replace('-', "\\-");
            assert!(page.contains(&roff), "{what} does not name {sub}");
        }
    }
}

#[test]
fn version_names_the_protocol_profiles_spoken() {
    for (binary, _) in binaries() {
        let o = Command::new(binary).arg("--version").output().unwrap();
        assert!(o.status.success());
        let out = stdout(&o);
        assert!(
            out.contains(hush_proto::PROFILE),
            "{} --version: {out}",
            binary.display()
        );
    }
}

/// Exit status of a command whose stdout was closed by its reader: 128 + SIGPIPE, what a
/// shell reports for a Unix tool stopped by a closed pipe.
const CLOSED_STDOUT: i32 = 141;

fn assert_quiet_exit(o: &Output, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(CLOSED_STDOUT),
        "{what} on a closed stdout: {}, stderr: {}",
        o.status,
        stderr(o)
    );
    assert!(stderr(o).trim().is_empty(), "{what} printed: {}", stderr(o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_each_printing_command_quietly_and_keeps_state() {
    let tmp = tempfile::tempdir().unwrap();
    let relay =
        RelayProcess::start(&tmp.path().join("relay"), "127.0.0.1:0".parse().unwrap()).await;
    let (alice, _) = init(tmp.path(), &relay, "alice", &[]).await;
    let (bob, _) = init(tmp.path(), &relay, "bob", &[]).await;
    for text in ["one", "two", "three"] {
        let o = output(hush(&alice, &["send", "bob", text])).await;
        assert!(o.status.success(), "{}", stderr(&o));
    }

    // `hush recv --json | consumer-that-stops`: receiving stops at the first line that cannot
    // be written; nothing is lost. What was committed stays in history, and the next `recv`
    // writes it (it was never written out) before the rest, still waiting on the relay.
    let o = output_into_closed_pipe(hush(&bob, &["recv", "--json"])).await;
    assert_quiet_exit(&o, "recv --json");
    let o = output(hush(&bob, &["history", "alice", "--json"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let texts = |o: &Output| -> Vec<String> {
        stdout(o)
            .lines()
            .filter_map(|l| {
                let v = serde_json::from_str::<serde_json::Value>(l).unwrap();
                v["text"].as_str().map(str::to_owned)
            })
            .collect()
    };
    assert_eq!(texts(&o), ["one"]);
    let o = output(hush(&bob, &["recv", "--json"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(texts(&o), ["one", "two", "three"]);

    for args in [
        &["history", "alice", "--json"][..],
        &["history", "alice"],
        &["contacts", "--json"],
        &["whoami"],
        &["relays"],
        &["verify", "alice"],
        &["send", "alice", "a reply"],
    ] {
        let o = output_into_closed_pipe(hush(&bob, args)).await;
        assert_quiet_exit(&o, &args.join(" "));
    }
    // The reply was committed and sent although `send` could not say so.
    let o = output(hush(&alice, &["recv", "--json"])).await;
    assert!(stdout(&o).contains("a reply"), "{}", stdout(&o));

    // The demo runs to its end (removing its temporary files) and then exits quietly.
    let o = output_into_closed_pipe(hush(&bob, &["demo"])).await;
    assert_quiet_exit(&o, "demo");

    for args in [&["completions", "bash"][..], &["man"], &["--help"]] {
        let o = output_into_closed_pipe(hush(&bob, args)).await;
        assert_ne!(o.status.code(), Some(101), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_stdout_is_closed_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("relay");
    // Its address cannot be read from the closed stdout: pick a free port first.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut relay = Command::new("sh")
        .arg("-c")
        .arg(r#"read -r _ && exec "$0" "$@""#)
        .arg(relay_binary())
        .args(["--listen", addr.as_str(), "--data"])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(relay.stdout.take());
    let mut stdin = relay.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    // Serving once it answers a whole init (its start lines hit the closed pipe before that).
    let profile = tmp.path().join("alice");
    let mut last = String::new();
    let mut registered = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(relay.try_wait().unwrap().is_none(), "hush-relay exited");
        let o = output(hush(
            &profile,
            &["init", "--name", "alice", "--relay", &addr],
        ))
        .await;
        if o.status.success() {
            registered = true;
            break;
        }
        last = stderr(&o);
    }
    assert!(registered, "init never succeeded: {last}");
    assert!(relay.try_wait().unwrap().is_none(), "hush-relay exited");
    relay.kill().unwrap();
    relay.wait().unwrap();
}

/// `hush rpc | consumer-that-stops`: the first reply meets a closed pipe, and rpc ends as the
/// other commands do (141, no error line), not with "cannot write to stdout" and status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_on_a_closed_stdout_exits_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let relay =
        RelayProcess::start(&tmp.path().join("relay"), "127.0.0.1:0".parse().unwrap()).await;
    let (bob, _) = init(tmp.path(), &relay, "bob", &[]).await;
    let o = output_into_closed_pipe_with_input(
        hush(&bob, &["rpc"]),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"whoami\"}\n",
    )
    .await;
    assert_eq!(o.status.code(), Some(CLOSED_STDOUT), "{}", stderr(&o));
    assert!(!stderr(&o).contains("cannot write"), "{}", stderr(&o));
    relay.shutdown().await;
}
