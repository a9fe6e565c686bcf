//! A `hush rpc` child process driven over its stdin and stdout, for the end-to-end tests.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

/// The passphrase of every profile these tests make.
pub const PASS: &str = "rpc test passphrase";
/// Bound on every wait, so a hung process fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);
const HUSH: &str = env!("CARGO_BIN_EXE_hush");

/// A running `hush rpc`.
pub struct RpcProc {
    /// Label for messages.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its stdin (closed by `finish`).
    pub stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: mpsc::UnboundedReceiver<String>,
    /// Notifications read while looking for a response.
    pub notifications: VecDeque<Value>,
}

impl RpcProc {
    pub fn spawn(profile: &Path, name: &str) -> Self {
        let mut child = Command::new(HUSH)
            .arg("--profile")
            .arg(profile)
            .arg("rpc")
            .env("HUSH_PASSPHRASE", PASS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, rx) = mpsc::unbounded_channel();
        let label = name.to_owned();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                eprintln!("[{label} stderr] {line}");
                let _ = tx.send(line);
            }
        });
        Self {
            name: name.to_owned(),
            child,
            stdin,
            stdout,
            stderr: rx,
            notifications: VecDeque::new(),
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub async fn send_line(&mut self, line: &str) {
        self.send_bytes(line.as_bytes()).await;
    }

    /// The next stdout line, which must be one JSON-RPC 2.0 object.
    pub async fn next_line(&mut self, deadline: Instant) -> Value {
        let line = timeout_at(deadline, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: timed out waiting for output", self.name))
            .unwrap()
            .unwrap_or_else(|| panic!("{}: stdout closed", self.name));
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: stdout line is not JSON ({e}): {line:?}", self.name));
        assert_eq!(value["jsonrpc"], "2.0", "{line}");
        value
    }

    /// The next response; notifications seen on the way are kept.
    pub async fn response(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.next_line(deadline).await;
            if value.get("method").is_some() {
                self.notifications.push_back(value);
            } else {
                return value;
            }
        }
    }

    /// Send a request and return its response (checking the id).
    pub async fn call(&mut self, id: Value, method: &str, params: Value) -> Value {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_line(&request.to_string()).await;
        let response = self.response().await;
        assert_eq!(response["id"], id, "{response}");
        response
    }

    /// A successful call's result.
    pub async fn result(&mut self, id: u64, method: &str, params: Value) -> Value {
        let response = self.call(json!(id), method, params).await;
        assert!(response.get("error").is_none(), "{method}: {response}");
        response["result"].clone()
    }

    /// A failed call's error object, checking its code.
    pub async fn error(&mut self, id: u64, method: &str, params: Value, code: i64) -> Value {
        let response = self.call(json!(id), method, params).await;
        assert_eq!(response["error"]["code"], code, "{method}: {response}");
        assert!(response.get("result").is_none(), "{response}");
        response["error"].clone()
    }

    /// The params of the next notification named `method` (others are kept).
    pub async fn notification(&mut self, method: &str) -> Value {
        if let Some(i) = self
            .notifications
            .iter()
            .position(|n| n["method"] == method)
        {
            return self.notifications.remove(i).unwrap()["params"].clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.next_line(deadline).await;
            assert!(value.get("method").is_some(), "unexpected response {value}");
            if value["method"] == method {
                return value["params"].clone();
            }
            self.notifications.push_back(value);
        }
    }

    /// Wait until stderr shows a line containing `needle`.
    pub async fn stderr_contains(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = timeout_at(deadline, self.stderr.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: no stderr line with {needle:?}", self.name))
                .unwrap_or_else(|| panic!("{}: stderr closed", self.name));
            if line.contains(needle) {
                return;
            }
        }
    }

    /// Close stdin and wait for the exit; stdout must hold nothing more than notifications.
    pub async fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        while let Some(line) = timeout_at(deadline, self.stdout.next_line())
            .await
            .expect("rpc did not exit after EOF")
            .unwrap()
        {
            let value: Value = serde_json::from_str(&line).unwrap();
            assert!(value.get("method").is_some(), "unexpected output {line}");
        }
        timeout_at(deadline, self.child.wait())
            .await
            .expect("rpc did not exit after EOF")
            .unwrap()
    }
}
