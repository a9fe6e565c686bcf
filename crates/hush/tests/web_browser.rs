//! `hush web` in a real browser: the real `hush-relay` binary, real profiles, real `hush web`
//! processes and Debian's Chromium driven by playwright-core (crates/hush/tests/web/). The
//! scenarios live in `web/scenarios.mjs`; this test owns every process and acts on them when
//! the script asks over a line protocol on its stdout/stdin (stop the relay, restart it on the
//! same address, give a name a new identity), so that nothing outlives the test.
//!
//! Without node, Chromium or `node_modules/playwright-core` it prints one line and passes,
//! unless `HUSH_REQUIRE_BROWSER=1` (as `.ci/run` sets), where a missing browser is a failure.
//! `HUSH_WEB_SCREENSHOTS=DIR` writes screenshots of the main views into DIR (relative: to the
//! workspace root, e.g. `docs/screenshots`). The figures (`web figure: ...` lines) show with
//! `cargo test -p hush --test web_browser -- --nocapture`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

mod common;
use common::{relay_binary, RelayProcess};

const HUSH: &str = env!("CARGO_BIN_EXE_hush");
const PASS: &str = "web test passphrase";
const SKIP: &str = "skipped: browser tests need Chromium and playwright-core (apt-get install chromium; npm ci --prefix crates/hush/tests/web), or run .ci/run";
/// Backstop for the whole browser run (the script bounds each scenario itself; a run takes
/// well under two minutes).
const DEADLINE: Duration = Duration::from_secs(240);
/// How long `hush web` may take to print its URL, and to exit after SIGTERM.
const WAIT: Duration = Duration::from_secs(30);
/// Lines of the script's stdout that ask this test to act (harness.mjs).
const CONTROL_PREFIX: &str = "@@hush-control ";

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("web")
}

/// `HUSH_CHROMIUM`, else `chromium` on PATH (Debian's `/usr/bin/chromium`).
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HUSH_CHROMIUM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
}

/// What is missing to run the browser tests, if anything.
fn missing_prerequisites() -> Vec<&'static str> {
    let mut missing = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    if !node.is_ok_and(|o| o.status.success()) {
        missing.push("node");
    }
    if chromium().is_none() {
        missing.push("Chromium (HUSH_CHROMIUM or chromium on PATH)");
    }
    if !web_dir()
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push("crates/hush/tests/web/node_modules/playwright-core");
    }
    missing
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn hush(profile: &Path) -> Command {
    let mut command = Command::new(HUSH);
    command
        .arg("--profile")
        .arg(profile)
        .env("HUSH_PASSPHRASE", PASS)
        .stdin(Stdio::null());
    command
}

/// `hush init` a new profile for `name` on the relay.
async fn init(profile: PathBuf, name: String, relay: SocketAddr) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let out = hush(&profile)
            .args(["init", "--name", &name, "--relay", &relay.to_string()])
            .output()
            .map_err(|e| format!("run hush init: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "hush init {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    })
    .await
    .unwrap()
}

/// A running `hush web --no-open`; killed when dropped.
struct WebProcess {
    child: Child,
    log: PathBuf,
}

impl WebProcess {
    /// Start it on `profile` and read the URL from stdout line 1. Returns it with the spawn
    /// time and the time the URL came (ms since the epoch, for the script's figures).
    fn start(profile: &Path, log: PathBuf) -> Result<(Self, String, u128, u128), String> {
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let spawned_at = now_ms();
        let mut child = hush(profile)
            .args(["web", "--no-open", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|e| format!("start hush web: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Line 1 is the URL; the rest of stdout (nothing, by contract) is drained so that the
        // pipe stays open for as long as the process lives.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let web = Self { child, log };
        let line = match rx.recv_timeout(WAIT) {
            Ok(Ok(line)) => line,
            _ => return Err(format!("hush web printed no URL line:\n{}", web.log_tail())),
        };
        let url_at = now_ms();
        let url = line.trim_end_matches(['\r', '\n']).to_owned();
        check_url(&url)
            .map_err(|e| format!("stdout line 1 of hush web is not the URL: {e}: {line:?}"))?;
        Ok((web, url, spawned_at, url_at))
    }

    /// SIGTERM, as a user stopping it would; SIGKILL if it has not exited after `WAIT`.
    fn stop(mut self) -> Result<(), String> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().map_err(|e| e.to_string())?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "hush web did not exit within {WAIT:?} of SIGTERM:\n{}",
            self.log_tail()
        ))
    }

    fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for WebProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log file, for a failure message.
fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The contract: stdout line 1 is exactly `http://127.0.0.1:PORT/#token=HEX` (64 hex digits).
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .ok_or("not http://127.0.0.1:PORT")?;
    let (port, token) = rest.split_once("/#token=").ok_or("no /#token=")?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or("no port")?;
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the token is not 64 hex digits".to_owned());
    }
    Ok(())
}

/// The processes of one run, all under one temporary directory.
struct World {
    root: PathBuf,
    relay_dir: PathBuf,
    relay_addr: SocketAddr,
    relay: Option<RelayProcess>,
    /// The profile each name currently uses (a new identity gets a new directory).
    profiles: HashMap<String, PathBuf>,
    webs: HashMap<String, WebProcess>,
    started: usize,
}

impl World {
    /// Carry out one control request from the script; the answer goes back as a JSON line.
    async fn handle(&mut self, request: &Value) -> Result<Value, String> {
        let name = request["name"].as_str().unwrap_or_default().to_owned();
        match request["cmd"].as_str().unwrap_or_default() {
            "start-web" => {
                if self.webs.contains_key(&name) {
                    return Err(format!("hush web for {name} is already running"));
                }
                let profile = self
                    .profiles
                    .get(&name)
                    .ok_or(format!("no profile {name}"))?
                    .clone();
                self.started += 1;
                let log = self.root.join(format!("web-{}-{name}.log", self.started));
                let (web, url, spawned_at, url_at) =
                    tokio::task::spawn_blocking(move || WebProcess::start(&profile, log))
                        .await
                        .unwrap()?;
                self.webs.insert(name, web);
                Ok(
                    json!({"url": url, "spawned_at_ms": spawned_at as u64, "url_at_ms": url_at as u64}),
                )
            }
            "stop-web" => {
                let web = self
                    .webs
                    .remove(&name)
                    .ok_or(format!("hush web for {name} is not running"))?;
                tokio::task::spawn_blocking(move || web.stop())
                    .await
                    .unwrap()?;
                Ok(json!({}))
            }
            "stop-relay" => {
                let relay = self.relay.take().ok_or("the relay is not running")?;
                relay.shutdown().await;
                Ok(json!({}))
            }
            "start-relay" => {
                if self.relay.is_some() {
                    return Err("the relay is already running".to_owned());
                }
                // The same address and data: the clients know only this address and key.
                let relay = RelayProcess::start(&self.relay_dir, self.relay_addr).await;
                self.relay = Some(relay);
                Ok(json!({}))
            }
            "new-identity" => {
                // A user who lost their keys: the operator frees the name (the relay may run)
                // and a new profile registers it.
                if self.webs.contains_key(&name) {
                    return Err(format!("stop {name}'s hush web first"));
                }
                let out = Command::new(relay_binary())
                    .arg("free-name")
                    .arg("--data")
                    .arg(&self.relay_dir)
                    .arg(&name)
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "hush-relay free-name {name}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                self.started += 1;
                let profile = self.root.join(format!("{name}-{}", self.started));
                init(profile.clone(), name.clone(), self.relay_addr).await?;
                self.profiles.insert(name, profile);
                Ok(json!({}))
            }
            other => Err(format!("unknown control command {other:?}")),
        }
    }

    /// Everything the processes logged, for a failure.
    fn logs(&self) -> String {
        let mut out = format!(
            "--- relay log (tail)\n{}\n",
            tail(&self.relay_dir.join("relay-test.log"))
        );
        let mut entries: Vec<_> = std::fs::read_dir(&self.root)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for path in entries
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
        {
            out.push_str(&format!("--- {} (tail)\n{}\n", path.display(), tail(path)));
        }
        out
    }
}

enum Line {
    Out(String),
    Err(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_a_real_browser() {
    let missing = missing_prerequisites();
    if !missing.is_empty() {
        if std::env::var("HUSH_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!(
                "HUSH_REQUIRE_BROWSER=1 but missing: {}\n{SKIP}",
                missing.join(", ")
            );
        }
        // Straight to the stdout handle: the harness captures `println!` of a passing test.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), format!("{SKIP}\n").as_bytes());
        return;
    }
    let chromium = chromium().unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let relay_dir = root.join("relay");
    let relay = RelayProcess::start(&relay_dir, "127.0.0.1:0".parse().unwrap()).await;
    let relay_addr = relay.addr;
    let mut world = World {
        root: root.clone(),
        relay_dir,
        relay_addr,
        relay: Some(relay),
        profiles: HashMap::new(),
        webs: HashMap::new(),
        started: 0,
    };
    for name in ["alice", "bob"] {
        let profile = root.join(name);
        init(profile.clone(), name.to_owned(), relay_addr)
            .await
            .unwrap();
        world.profiles.insert(name.to_owned(), profile);
    }

    let mut node = tokio::process::Command::new("node");
    node.arg("scenarios.mjs")
        .current_dir(web_dir())
        .env("HUSH_CHROMIUM", &chromium);
    // The script runs in tests/web; a relative screenshot directory means the workspace's.
    if let Some(dir) = std::env::var_os("HUSH_WEB_SCREENSHOTS").filter(|d| !d.is_empty()) {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        node.env("HUSH_WEB_SCREENSHOTS", workspace.join(dir));
    }
    let mut node = node
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut stdin = node.stdin.take().unwrap();
    // Both output streams into one channel, printed here (on the test's thread, so that the
    // test harness captures them like any test output).
    let (tx, mut rx) = mpsc::unbounded_channel();
    let out = node.stdout.take().unwrap();
    let err = node.stderr.take().unwrap();
    let tx_out = tx.clone();
    tokio::spawn(async move {
        let mut lines = AsyncBufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx_out.send(Line::Out(line));
        }
    });
    tokio::spawn(async move {
        let mut lines = AsyncBufReader::new(err).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(Line::Err(line));
        }
    });

    let deadline = Instant::now() + DEADLINE;
    loop {
        let line = match timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => {
                let _ = node.kill().await;
                panic!(
                    "the browser scenarios did not finish within {DEADLINE:?}\n{}",
                    world.logs()
                );
            }
        };
        match line {
            Line::Err(line) => eprintln!("{line}"),
            Line::Out(line) => {
                let Some(request) = line.strip_prefix(CONTROL_PREFIX) else {
                    println!("{line}");
                    continue;
                };
                let request: Value = serde_json::from_str(request).unwrap();
                let answer = match world.handle(&request).await {
                    Ok(result) => json!({"id": request["id"], "result": result}),
                    Err(error) => {
                        println!("control {request}: {error}");
                        json!({"id": request["id"], "error": error})
                    }
                };
                // A script that already exited cannot read it; its status says why below.
                let _ = stdin.write_all(format!("{answer}\n").as_bytes()).await;
                let _ = stdin.flush().await;
            }
        }
    }
    let status = timeout_at(deadline, node.wait())
        .await
        .expect("node did not exit")
        .unwrap();
    if !status.success() {
        panic!(
            "browser scenarios failed ({status}); see the lines above\n{}",
            world.logs()
        );
    }
    for (_, web) in world.webs.drain() {
        drop(web);
    }
    if let Some(relay) = world.relay.take() {
        relay.shutdown().await;
    }
}
