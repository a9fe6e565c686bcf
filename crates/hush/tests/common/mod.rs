//! The real `hush-relay` binary as a child process, for the end-to-end tests of `hush`.
//!
//! `cargo test --workspace` (the README's test command) builds the binary next to `hush`
//! before any test runs; under `cargo test -p hush` it is built here on first use.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod rpc_proc;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the relay may take to print its address, and to exit after SIGTERM.
const WAIT: Duration = Duration::from_secs(30);

/// A running `hush-relay` process; killed when dropped.
pub struct RelayProcess {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The line it printed at start naming its key (`relay public key: HEX`), as an operator
    /// would read it.
    pub key_line: String,
}

impl RelayProcess {
    /// Start the relay on `data`, listening on `listen` (port 0: any free port).
    pub async fn start(data: &Path, listen: SocketAddr) -> Self {
        Self::start_with_config(data, listen, None).await
    }

    /// Start the relay with a TOML config file (written to `DATA/relay.toml`), e.g. to set a
    /// tiny mailbox quota.
    pub async fn start_with_config(data: &Path, listen: SocketAddr, toml: Option<&str>) -> Self {
        let data = data.to_owned();
        let toml = toml.map(str::to_owned);
        tokio::task::spawn_blocking(move || Self::start_blocking(&data, listen, toml.as_deref()))
            .await
            .unwrap()
    }

    fn start_blocking(data: &Path, listen: SocketAddr, toml: Option<&str>) -> Self {
        std::fs::create_dir_all(data).unwrap();
        let log = std::fs::File::create(data.join("relay-test.log")).unwrap();
        let mut command = Command::new(relay_binary());
        if let Some(toml) = toml {
            let path = data.join("relay.toml");
            std::fs::write(&path, toml).unwrap();
            command.arg("--config").arg(path);
        }
        let mut child = command
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--data")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start hush-relay");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (key_tx, key_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("hush-relay listening on ") {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().unwrap());
                }
                if line.starts_with("relay public key: ") {
                    let _ = key_tx.send(line);
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            let log = std::fs::read_to_string(data.join("relay-test.log")).unwrap_or_default();
            panic!("hush-relay did not start:\n{log}")
        });
        let key_line = key_rx
            .recv_timeout(WAIT)
            .expect("hush-relay printed no key line");
        Self {
            child: Some(child),
            addr,
            key_line,
        }
    }

    /// SIGTERM, as an operator stopping it would, and wait for a clean exit.
    pub async fn shutdown(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .unwrap();
            assert!(status.success(), "kill -TERM failed");
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "hush-relay exited with {status}");
                    return;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("hush-relay did not exit after SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap();
    }
}

impl RelayProcess {
    /// Run `hush-relay free-name --data DATA NAME` (the operator command) beside this relay.
    pub fn free_name(&self, data: &Path, name: &str) -> std::process::Output {
        Command::new(relay_binary())
            .arg("free-name")
            .arg("--data")
            .arg(data)
            .arg(name)
            .output()
            .expect("run hush-relay free-name")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `target/<profile>/hush-relay`, beside the `hush` binary under test.
pub fn relay_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let binary = Path::new(env!("CARGO_BIN_EXE_hush"))
            .with_file_name(format!("hush-relay{}", std::env::consts::EXE_SUFFIX));
        if !binary.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = Command::new(cargo);
            build.args(["build", "-p", "hush-relay", "--bin", "hush-relay"]);
            if binary.parent().and_then(Path::file_name) == Some("release".as_ref()) {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build -p hush-relay");
            assert!(status.success(), "cargo build -p hush-relay failed");
        }
        assert!(
            binary.exists(),
            "no hush-relay binary at {}",
            binary.display()
        );
        binary
    })
}
