//! Helpers shared by the process-level relay tests: run the real `hush-relay` binary on a
//! temporary data directory, talk to it over real sockets as honest or hostile clients, scrape
//! its metrics, and put a frame-aware TCP proxy in front of it to tamper with a client's bytes.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hush_net::frame::write_frame;
use hush_net::{Connection, FrameReader, NetError, NoiseReader, NoiseWriter};
use hush_proto::relay::{register_message, Delivery, ErrorCode, Reply, Request, ServerMessage};
use hush_proto::{IdentityKeyPair, IdentityPublicKey, LocalPrekeys, OneTimePrekey};
use rand_core::OsRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Generous per-step timeout: the machine running the tests may be busy compiling.
pub const T: Duration = Duration::from_secs(10);

/// The relay binary built by cargo for these tests.
pub const RELAY_BIN: &str = env!("CARGO_BIN_EXE_hush-relay");

/// A running `hush-relay` process. Dropping it kills the process (also when a test panics),
/// and a panicking test prints the tail of the relay's log.
pub struct Relay {
    child: Option<Child>,
    /// Where clients connect (the port changes on every start).
    pub addr: SocketAddr,
    /// The relay's static public key, as printed on stdout.
    pub key: [u8; 32],
    /// The metrics endpoint, when started with metrics.
    pub metrics: Option<SocketAddr>,
    /// The data directory (key and database), kept across restarts.
    pub data: PathBuf,
    config: Option<PathBuf>,
    with_metrics: bool,
    extra_args: Vec<String>,
    log: PathBuf,
}

impl Relay {
    /// Start a relay on `data` with default settings.
    pub async fn start(data: &Path) -> Relay {
        Self::start_with(data, None, false).await
    }

    /// Start a relay on `data` with an optional TOML config and optional metrics endpoint.
    pub async fn start_with(data: &Path, config_toml: Option<&str>, with_metrics: bool) -> Relay {
        Self::start_full(data, config_toml, with_metrics, &[]).await
    }

    /// Start a relay on `data` with an optional TOML config and more command-line flags
    /// (after `--listen`, `--data` and `--config`, so a flag here can override the file).
    pub async fn start_with_args(data: &Path, config_toml: Option<&str>, args: &[&str]) -> Relay {
        Self::start_full(data, config_toml, false, args).await
    }

    /// Start a relay on `data` with an optional TOML config, an optional metrics endpoint and
    /// more command-line flags.
    pub async fn start_full(
        data: &Path,
        config_toml: Option<&str>,
        with_metrics: bool,
        args: &[&str],
    ) -> Relay {
        let data = data.to_owned();
        let config = config_toml.map(|text| {
            let path = data.join("relay-test.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let log = data.join("relay-test.log");
        let mut relay = Relay {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            key: [0; 32],
            metrics: None,
            data,
            config,
            with_metrics,
            extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
            log,
        };
        relay.spawn().await;
        relay
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "relay already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(RELAY_BIN);
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(&self.data)
            .env("HUSH_LOG", "info,hush_relay=debug")
            // The relay decides colour itself; a NO_COLOR in the test's environment would
            // hide whether it does.
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        if self.with_metrics {
            cmd.arg("--metrics").arg("127.0.0.1:0");
        }
        cmd.args(&self.extra_args);
        let mut child = cmd.spawn().expect("start hush-relay");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);

        // A thread keeps draining stdout; the first lines tell us where the relay listens.
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addr = None;
        let mut key = None;
        let mut metrics = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while addr.is_none() || key.is_none() || (self.with_metrics && metrics.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("hush-relay exited during start:\n{}", self.log_text()),
                Err(_) => panic!("hush-relay did not start in time:\n{}", self.log_text()),
            };
            if let Some(rest) = line.strip_prefix("hush-relay listening on ") {
                addr = Some(rest.trim().parse::<SocketAddr>().unwrap());
            } else if let Some(rest) = line.strip_prefix("relay public key: ") {
                let bytes = hex::decode(rest.trim()).unwrap();
                key = Some(<[u8; 32]>::try_from(bytes.as_slice()).unwrap());
            } else if let Some(rest) = line.strip_prefix("metrics on http://") {
                let rest = rest.trim().trim_end_matches("/metrics");
                metrics = Some(rest.parse::<SocketAddr>().unwrap());
            }
        }
        self.addr = addr.unwrap();
        self.key = key.unwrap();
        self.metrics = metrics;
    }

    /// The process id of the running relay.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("relay running").id()
    }

    /// Whether the process still runs (it has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILL the relay (no chance to clean up) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the relay again on the same data directory and config (after a kill or exit).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Send SIGTERM (what `systemctl stop` or `docker stop` does).
    pub fn sigterm(&self) {
        let pid = self.pid();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Wait at most `within` for the process to exit; returns its status, or `None` if it was
    /// still running (it is then killed).
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("relay running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the relay has logged (stderr) so far, across restarts.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// The public key the relay wrote to its data directory.
    pub fn pub_file(&self) -> String {
        std::fs::read_to_string(self.data.join("relay.pub")).unwrap()
    }

    /// The current Prometheus exposition.
    pub async fn scrape(&self) -> Metrics {
        scrape(self.metrics.expect("relay started with metrics")).await
    }

    /// Wait until `check` holds for the scraped metrics, or panic after `within`.
    pub async fn wait_metrics(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + within;
        loop {
            let m = self.scrape().await;
            if check(&m) {
                return m;
            }
            if Instant::now() >= deadline {
                panic!("metrics never showed {what}:\n{}", m.0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!("--- hush-relay log (tail) ---\n{tail}\n--- end of relay log ---");
        }
    }
}

/// A scraped metrics page.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of an unlabelled sample, 0 when absent.
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim().parse::<f64>().unwrap() as u64)
            .unwrap_or(0)
    }

    /// `hush_rejects_total{reason="..."}`, 0 when absent.
    pub fn rejects(&self, reason: &str) -> u64 {
        self.get(&format!("hush_rejects_total{{reason=\"{reason}\"}}"))
    }
}

/// GET the metrics page.
pub async fn scrape(addr: SocketAddr) -> Metrics {
    let mut stream = tokio::time::timeout(T, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(T, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(response).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "metrics answered {text}");
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    Metrics(body)
}

/// A fresh identity.
pub fn identity() -> IdentityKeyPair {
    IdentityKeyPair::generate(&mut OsRng)
}

/// The identity key bytes a `Send` addresses.
pub fn addr_of(id: &IdentityKeyPair) -> [u8; 32] {
    *id.public_key().as_bytes()
}

/// Connect and authenticate as `id`.
pub async fn connect(relay: &Relay, id: &IdentityKeyPair) -> Connection {
    hush_net::connect(relay.addr, &relay.key, id, T)
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}"))
}

/// Register `name` for the connected identity.
pub async fn register(conn: &mut Connection, id: &IdentityKeyPair, name: &str) {
    let reply = conn
        .request(&Request::Register {
            name: name.into(),
            signature: id.sign(&register_message(name)),
        })
        .await
        .unwrap();
    assert_eq!(reply, Reply::Registered);
}

/// Publish a signed prekey and `count` one-time prekeys; returns what was published.
pub async fn publish(
    conn: &mut Connection,
    id: &IdentityKeyPair,
    count: usize,
) -> (LocalPrekeys, Vec<OneTimePrekey>) {
    let mut prekeys = LocalPrekeys::new(&mut OsRng, id, 1_700_000_000);
    let one_time = prekeys.generate_one_time(&mut OsRng, count);
    let reply = conn
        .request(&Request::PublishPrekeys {
            signed_prekey: prekeys.current_signed().unwrap(),
            one_time: one_time.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        reply,
        Reply::PrekeysStored {
            one_time_remaining: count as u32
        }
    );
    (prekeys, one_time)
}

/// A registered user with published prekeys and an open connection.
pub struct User {
    /// The identity.
    pub id: IdentityKeyPair,
    /// Its name.
    pub name: String,
    /// An authenticated connection.
    pub conn: Connection,
}

impl User {
    /// Register `name` with a new identity and publish 5 one-time prekeys.
    pub async fn new(relay: &Relay, name: &str) -> User {
        let id = identity();
        let mut conn = connect(relay, &id).await;
        register(&mut conn, &id, name).await;
        publish(&mut conn, &id, 5).await;
        User {
            id,
            name: name.into(),
            conn,
        }
    }

    /// The identity key bytes others send to.
    pub fn addr(&self) -> [u8; 32] {
        addr_of(&self.id)
    }

    /// The public identity key.
    pub fn public(&self) -> IdentityPublicKey {
        self.id.public_key()
    }

    /// A new, additional connection for this identity.
    pub async fn reconnect(&mut self, relay: &Relay) {
        self.conn = connect(relay, &self.id).await;
        assert_eq!(
            self.conn.registered_name.as_deref(),
            Some(self.name.as_str())
        );
    }
}

/// A syntactically valid hush-v1 envelope (the relay checks only the version byte) carrying
/// `tag` so tests can tell envelopes apart.
pub fn envelope(tag: &[u8]) -> Vec<u8> {
    let mut e = vec![hush_proto::envelope::ENVELOPE_VERSION, 0x02];
    e.extend_from_slice(tag);
    e
}

/// An envelope of exactly `len` bytes starting with `tag`.
pub fn envelope_of_len(tag: &[u8], len: usize) -> Vec<u8> {
    let mut e = envelope(tag);
    assert!(e.len() <= len);
    e.resize(len, 0xAB);
    e
}

/// Send and expect `Stored`; returns the relay message id.
pub async fn send(conn: &mut Connection, to: [u8; 32], envelope: Vec<u8>) -> u64 {
    match conn
        .request(&Request::Send {
            recipient: to,
            envelope,
        })
        .await
    {
        Ok(Reply::Stored { id }) => id,
        other => panic!("send not stored: {other:?}"),
    }
}

/// The error code of a refused request (panics if it succeeded or failed otherwise).
pub fn code(result: Result<Reply, NetError>) -> ErrorCode {
    match result {
        Err(NetError::Relay(e)) => e.code,
        other => panic!("expected a typed relay error, got {other:?}"),
    }
}

/// A Ping round trip within a few seconds.
pub async fn ping(conn: &mut Connection) {
    let reply = tokio::time::timeout(Duration::from_secs(5), conn.request(&Request::Ping))
        .await
        .expect("ping timed out")
        .expect("ping failed");
    assert_eq!(reply, Reply::Pong);
}

/// Subscribe.
pub async fn subscribe(conn: &mut Connection) {
    assert_eq!(
        conn.request(&Request::Subscribe).await.unwrap(),
        Reply::Subscribed
    );
}

/// Ack `ids`; returns how many the relay removed.
pub async fn ack(conn: &mut Connection, ids: Vec<u64>) -> u32 {
    match conn.request(&Request::Ack { ids }).await.unwrap() {
        Reply::Acked { removed } => removed,
        other => panic!("unexpected ack reply {other:?}"),
    }
}

/// Exactly `n` deliveries (panics if they do not come within `within`).
pub async fn take(conn: &mut Connection, n: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.next_delivery(left).await.unwrap() {
            Some(d) => out.push(d),
            None => panic!("only {} of {n} deliveries arrived", out.len()),
        }
    }
    out
}

/// Deliveries until none arrives for `quiet`.
pub async fn drain(conn: &mut Connection, quiet: Duration) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Some(d) = conn.next_delivery(quiet).await.unwrap() {
        out.push(d);
    }
    out
}

/// A connection used byte-by-byte: arbitrary plaintexts inside an authenticated channel.
pub struct Raw {
    /// Receiving half.
    pub reader: NoiseReader,
    /// Sending half.
    pub writer: NoiseWriter,
}

impl Raw {
    /// Authenticate as `id`, then take the channel apart.
    pub async fn connect(relay: &Relay, id: &IdentityKeyPair) -> Raw {
        let (reader, writer) = connect(relay, id).await.into_split();
        Raw { reader, writer }
    }

    /// Send raw plaintext bytes and return the next reply (deliveries are skipped).
    pub async fn exchange(&mut self, bytes: &[u8]) -> (u64, Result<Reply, ErrorCode>) {
        self.writer.send(bytes).await.unwrap();
        loop {
            let frame = tokio::time::timeout(T, self.reader.recv())
                .await
                .expect("no reply")
                .unwrap()
                .expect("closed instead of replying");
            match ServerMessage::decode(&frame).unwrap() {
                ServerMessage::Response { request_id, result } => {
                    return (request_id, result.map_err(|e| e.code))
                }
                ServerMessage::Deliver(_) => continue,
            }
        }
    }

    /// Whether the relay closes the channel within `within` (no more replies).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        matches!(
            tokio::time::timeout(within, self.reader.recv()).await,
            Ok(Ok(None)) | Ok(Err(_))
        )
    }
}

/// Whether the relay closes a plain TCP connection within `within` (EOF or reset), reading
/// and discarding anything it sends first.
pub async fn tcp_closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A well-behaved user connected during an attack: it must not notice anything.
pub struct Bystander {
    /// The user.
    pub user: User,
    sent: u32,
}

impl Bystander {
    /// Register and subscribe a user named `name`.
    pub async fn new(relay: &Relay, name: &str) -> Bystander {
        let mut user = User::new(relay, name).await;
        subscribe(&mut user.conn).await;
        Bystander { user, sent: 0 }
    }

    /// Still fully served: a ping round trip, and a message to itself is stored, pushed live
    /// and acked.
    pub async fn check(&mut self) {
        ping(&mut self.user.conn).await;
        self.sent += 1;
        let tag = format!("bystander {}", self.sent);
        let to = self.user.addr();
        let id = send(&mut self.user.conn, to, envelope(tag.as_bytes())).await;
        let d = take(&mut self.user.conn, 1, Duration::from_secs(5)).await;
        assert_eq!(d[0].id, id);
        assert_eq!(d[0].envelope, envelope(tag.as_bytes()));
        assert_eq!(ack(&mut self.user.conn, vec![id]).await, 1);
    }
}

/// A relay with metrics and `config`, and a bystander already checked once.
pub async fn with_bystander(config: Option<&str>) -> (tempfile::TempDir, Relay, Bystander) {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(dir.path(), config, true).await;
    let mut bystander = Bystander::new(&relay, "bystander").await;
    bystander.check().await;
    (dir, relay, bystander)
}

/// What the proxy does to the client's bytes.
pub enum Tamper {
    /// Forward faithfully.
    None,
    /// Flip one bit in the middle of client→relay frame number `n` (0-based; frames 0 and 1
    /// are the handshake, 2 is the Hello, 3 the first request after it).
    FlipBitInFrame(usize),
}

/// A one-connection TCP proxy in front of the relay that parses the client→relay frames, so it
/// can corrupt one of them or inject raw bytes between them.
pub struct Proxy {
    /// Where the client should connect.
    pub addr: SocketAddr,
    inject: mpsc::UnboundedSender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listen on a fresh port; the first client is forwarded to `upstream`.
    pub async fn start(upstream: SocketAddr, tamper: Tamper) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (inject, mut injected) = mpsc::unbounded_channel::<Vec<u8>>();
        let task = tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let relay = TcpStream::connect(upstream).await.unwrap();
            let _ = client.set_nodelay(true);
            let _ = relay.set_nodelay(true);
            let (client_read, mut client_write) = client.into_split();
            let (mut relay_read, mut relay_write) = relay.into_split();
            let down = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut relay_read, &mut client_write).await;
                let _ = client_write.shutdown().await;
            });
            let mut frames = FrameReader::new(client_read);
            let mut index = 0usize;
            loop {
                tokio::select! {
                    frame = frames.read_frame() => {
                        let Ok(Some(mut frame)) = frame else { break };
                        if let Tamper::FlipBitInFrame(n) = tamper {
                            if n == index && !frame.is_empty() {
                                let mid = frame.len() / 2;
                                frame[mid] ^= 0x10;
                            }
                        }
                        index += 1;
                        if write_frame(&mut relay_write, &frame).await.is_err() {
                            break;
                        }
                    }
                    bytes = injected.recv() => {
                        let Some(bytes) = bytes else { break };
                        if relay_write.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = relay_write.shutdown().await;
            let _ = down.await;
        });
        Proxy { addr, inject, task }
    }

    /// Write raw bytes to the relay, between two client frames.
    pub fn inject(&self, bytes: Vec<u8>) {
        self.inject.send(bytes).unwrap();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A hex string for error messages.
pub fn short(bytes: &[u8]) -> String {
    hex::encode(&bytes[..bytes.len().min(8)])
}
