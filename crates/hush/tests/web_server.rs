//! `hush web` end to end: the real `hush-relay`, real profiles, real `hush web --no-open`
//! processes, and a WebSocket client (or raw HTTP over TCP) playing the browser, or a hostile
//! page: the token, Origin and Host checks, the security headers, the shared JSON-RPC over the
//! socket, bad frames, and the relay state the page shows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod common;
use common::RelayProcess;

/// Bound on every wait, so a hung process fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);
const PASS: &str = "web test passphrase";
const HUSH: &str = env!("CARGO_BIN_EXE_hush");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn init(profile: &Path, name: &str, relay: SocketAddr) {
    let output = timeout(
        WAIT,
        Command::new(HUSH)
            .arg("--profile")
            .arg(profile)
            .args(["init", "--name", name, "--relay", &relay.to_string()])
            .env("HUSH_PASSPHRASE", PASS)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("hush init timed out")
    .unwrap();
    assert!(
        output.status.success(),
        "hush init {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A relay and two registered profiles.
struct World {
    tmp: tempfile::TempDir,
    relay: Option<RelayProcess>,
    addr: SocketAddr,
    alice: PathBuf,
    bob: PathBuf,
}

impl World {
    fn relay_data(&self) -> PathBuf {
        self.tmp.path().join("relay")
    }
}

async fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let relay =
        RelayProcess::start(&tmp.path().join("relay"), "127.0.0.1:0".parse().unwrap()).await;
    let addr = relay.addr;
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    init(&alice, "alice", addr).await;
    init(&bob, "bob", addr).await;
    World {
        tmp,
        relay: Some(relay),
        addr,
        alice,
        bob,
    }
}

/// A running `hush web --no-open`.
struct WebProc {
    child: Child,
    port: u16,
    token: String,
    /// Its stderr, line by line.
    stderr: mpsc::UnboundedReceiver<String>,
}

impl WebProc {
    /// Start it and read the URL from stdout line 1.
    async fn spawn(profile: &Path, name: &str) -> Self {
        Self::spawn_with(profile, name, &[]).await
    }

    /// Start it with extra arguments.
    async fn spawn_with(profile: &Path, name: &str, args: &[&str]) -> Self {
        let mut child = Command::new(HUSH)
            .arg("--profile")
            .arg(profile)
            .args(["web", "--no-open"])
            .args(args)
            .env("HUSH_PASSPHRASE", PASS)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let label = name.to_owned();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                eprintln!("[{label} web stderr] {line}");
                let _ = tx.send(line);
            }
        });
        let url = timeout(WAIT, stdout.next_line())
            .await
            .expect("hush web printed no URL")
            .unwrap()
            .expect("hush web closed stdout without a URL");
        // Nothing else ever comes on stdout; keep the pipe drained all the same.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let rest = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("stdout line 1 is not a URL: {url:?}"));
        // The port follows the last colon of the host (an IPv6 host has more).
        let (host, fragment) = rest
            .split_once('/')
            .unwrap_or_else(|| panic!("no path in {url:?}"));
        let (_, port) = host
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("no port in {url:?}"));
        let rest = format!("{port}/{fragment}");
        let (port, token) = rest
            .split_once("/#token=")
            .unwrap_or_else(|| panic!("no token fragment in {url:?}"));
        assert_eq!(token.len(), 64, "{url}");
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{url}");
        Self {
            child,
            port: port.parse().unwrap(),
            token: token.to_owned(),
            stderr: rx,
        }
    }

    /// Wait until stderr shows a line containing `needle`.
    async fn stderr_contains(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = timeout_at(deadline, self.stderr.recv())
                .await
                .unwrap_or_else(|_| panic!("no stderr line with {needle:?}"))
                .unwrap_or_else(|| panic!("stderr closed before a line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn origin(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Open the socket with `token`, `Host` and `Origin` (None: left out) as given.
    async fn open(
        &self,
        token: Option<&str>,
        host: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tungstenite::Error> {
        let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
        let mut request = format!("ws://127.0.0.1:{}/api/ws{query}", self.port)
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert("host", HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert("origin", HeaderValue::from_str(origin).unwrap());
        }
        let (ws, response) = timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("socket handshake timed out")?;
        assert_eq!(response.status(), 101);
        let mut ws = Ws {
            ws,
            notifications: VecDeque::new(),
            next_id: 1,
            hello: Value::Null,
        };
        // The first frame, before anything is asked: who this server is.
        let hello = ws.next(Instant::now() + WAIT).await;
        assert_eq!(
            hello["method"], "hello",
            "the first frame is not a hello: {hello}"
        );
        let instance = hello["params"]["instance"].as_str().unwrap();
        assert_eq!(instance.len(), 32, "{hello}");
        assert!(instance.bytes().all(|b| b.is_ascii_hexdigit()), "{hello}");
        ws.hello = hello["params"].clone();
        Ok(ws)
    }

    /// A socket as the page opens it: right token, our Origin.
    async fn socket(&self) -> Ws {
        self.open(Some(&self.token), &self.host(), Some(&self.origin()))
            .await
            .expect("the page's own socket was refused")
    }

    /// SIGTERM, as Ctrl-C would, and the exit status.
    async fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        timeout(WAIT, self.child.wait())
            .await
            .expect("hush web did not exit after SIGTERM")
            .unwrap()
    }
}

/// The HTTP status a refused handshake got.
fn refused_status(result: Result<Ws, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("the socket was opened"),
    }
}

/// A WebSocket client speaking JSON-RPC, as the page does.
struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Notifications read while looking for a response.
    notifications: VecDeque<Value>,
    next_id: u64,
    /// The params of the `hello` the server sent first.
    hello: Value,
}

impl Ws {
    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next JSON text frame.
    async fn next(&mut self, deadline: Instant) -> Value {
        loop {
            let frame = timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("socket closed")
                .expect("socket error");
            match frame {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    assert_eq!(value["jsonrpc"], "2.0", "{value}");
                    return value;
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next response; notifications on the way are kept.
    async fn response(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.next(deadline).await;
            if value.get("method").is_some() {
                self.notifications.push_back(value);
            } else {
                return value;
            }
        }
    }

    /// A call's whole response.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_text(request.to_string()).await;
        let response = self.response().await;
        assert_eq!(response["id"], id, "{response}");
        response
    }

    /// A successful call's result.
    async fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(response.get("error").is_none(), "{method}: {response}");
        response["result"].clone()
    }

    /// The params of the next notification named `method` (others are kept).
    async fn notification(&mut self, method: &str) -> Value {
        if let Some(i) = self
            .notifications
            .iter()
            .position(|n| n["method"] == method)
        {
            return self.notifications.remove(i).unwrap()["params"].clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.next(deadline).await;
            assert!(value.get("method").is_some(), "unexpected response {value}");
            if value["method"] == method {
                return value["params"].clone();
            }
            self.notifications.push_back(value);
        }
    }

    /// Wait until the relay state satisfies `ok`: `status` now, then its notifications.
    async fn status_until(&mut self, ok: impl Fn(&Value) -> bool) -> Value {
        let mut status = self.result("status", json!({})).await;
        while !ok(&status) {
            status = self.notification("status").await;
        }
        status
    }
}

/// One raw HTTP/1.1 GET: status, headers (names lowercased) and body.
async fn get(port: u16, path: &str, host: &str) -> (u16, Vec<(String, String)>, String) {
    get_with(port, path, host, &[]).await
}

/// [`get`] with extra request headers.
async fn get_with(
    port: u16,
    path: &str,
    host: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    get_at(
        std::net::Ipv4Addr::LOCALHOST.into(),
        port,
        path,
        host,
        extra,
    )
    .await
}

/// [`get_with`] to the server listening on `ip`.
async fn get_at(
    ip: std::net::IpAddr,
    port: u16,
    path: &str,
    host: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect((ip, port)).await.unwrap();
    let extra: String = extra.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("HTTP response timed out")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("no end of headers");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn assert_security_headers(headers: &[(String, String)], what: &str) {
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("cross-origin-resource-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        assert_eq!(header(headers, name), Some(value), "{what}: {name}");
    }
    let content_type = header(headers, "content-type").unwrap_or_default();
    assert!(
        content_type.ends_with("; charset=utf-8"),
        "{what}: content-type {content_type:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_needs_the_token_our_origin_and_our_host() {
    let w = world().await;
    let web = WebProc::spawn(&w.alice, "alice").await;
    let host = web.host();
    let origin = web.origin();
    let wrong = "0".repeat(64);

    // No token, a wrong one, a prefix of the right one: 403, no upgrade.
    assert_eq!(
        refused_status(web.open(None, &host, Some(&origin)).await),
        403
    );
    assert_eq!(
        refused_status(web.open(Some(&wrong), &host, Some(&origin)).await),
        403
    );
    assert_eq!(
        refused_status(web.open(Some(&web.token[..32]), &host, Some(&origin)).await),
        403
    );
    // The right token from a foreign page (a browser always sends Origin): 403.
    for foreign in [
        "http://evil.example",
        "https://127.0.0.1",
        "null",
        &format!("https://{host}"),
        &format!("http://127.0.0.1:{}", web.port + 1),
    ] {
        assert_eq!(
            refused_status(web.open(Some(&web.token), &host, Some(foreign)).await),
            403,
            "Origin {foreign}"
        );
    }
    // DNS rebinding: a foreign name resolving to 127.0.0.1, on the page and on the socket.
    let evil = format!("evil.example:{}", web.port);
    let (status, headers, _) = get(web.port, "/", &evil).await;
    assert_eq!(status, 403);
    assert_security_headers(&headers, "403 for a foreign Host");
    assert_eq!(
        refused_status(
            web.open(Some(&web.token), &evil, Some(&format!("http://{evil}")))
                .await
        ),
        403
    );

    // The page's own socket works, also under the other loopback names, and a program that
    // is not a browser may leave Origin out.
    let mut ws = web.socket().await;
    assert_eq!(ws.result("whoami", json!({})).await["name"], "alice");
    assert_eq!(ws.hello["name"], "alice");
    let instance = ws.hello["instance"].clone();
    let localhost = format!("localhost:{}", web.port);
    let mut ws = web
        .open(
            Some(&web.token),
            &localhost,
            Some(&format!("http://{localhost}")),
        )
        .await
        .unwrap();
    assert_eq!(ws.result("whoami", json!({})).await["name"], "alice");
    // Every socket of one run presents the same instance.
    assert_eq!(ws.hello["instance"], instance);
    let mut ws = web.open(Some(&web.token), &host, None).await.unwrap();
    assert_eq!(ws.result("whoami", json!({})).await["name"], "alice");
    assert_eq!(ws.hello["instance"], instance);

    // Ctrl-C / SIGTERM: a clean exit.
    assert!(web.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let w = world().await;
    let web = WebProc::spawn(&w.alice, "alice").await;
    let host = web.host();
    for (path, status, content_type) in [
        ("/", 200, "text/html; charset=utf-8"),
        ("/app.js", 200, "text/javascript; charset=utf-8"),
        ("/app.css", 200, "text/css; charset=utf-8"),
        ("/nothing-here", 404, "text/plain; charset=utf-8"),
        ("/index.html", 404, "text/plain; charset=utf-8"),
        ("/api/ws", 403, "text/plain; charset=utf-8"),
    ] {
        let (got, headers, body) = get(web.port, path, &host).await;
        assert_eq!(got, status, "{path}");
        assert_security_headers(&headers, path);
        assert_eq!(
            header(&headers, "content-type"),
            Some(content_type),
            "{path}"
        );
        if status == 200 {
            assert!(!body.is_empty(), "{path} is empty");
        }
    }
    // The page itself needs no token, and carries none.
    let (_, _, index) = get(web.port, "/", &host).await;
    assert!(!index.contains(&web.token));
    // `[::1]:PORT` names us too (the server listens on 127.0.0.1 only; the name is allowed).
    let (status, _, _) = get(web.port, "/", &format!("[::1]:{}", web.port)).await;
    assert_eq!(status, 200);

    // Another site may link to the page (a top-level navigation), but not embed or fetch
    // anything of ours: a `<script src>` probe gets 403 (with the headers all the same).
    let link = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-Dest", "document"),
    ];
    assert_eq!(get_with(web.port, "/", &host, &link).await.0, 200);
    for site in ["cross-site", "same-site"] {
        for (path, dest) in [
            ("/app.js", "script"),
            ("/app.css", "style"),
            ("/", "iframe"),
        ] {
            let probe = [
                ("Sec-Fetch-Site", site),
                ("Sec-Fetch-Mode", "no-cors"),
                ("Sec-Fetch-Dest", dest),
            ];
            let (status, headers, _) = get_with(web.port, path, &host, &probe).await;
            assert_eq!(status, 403, "{site} {path} as {dest}");
            assert_security_headers(&headers, "403 for a cross-site probe");
        }
    }
    // Our own page's requests pass.
    let ours = [
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-Mode", "no-cors"),
        ("Sec-Fetch-Dest", "script"),
    ];
    assert_eq!(get_with(web.port, "/app.js", &host, &ours).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_over_the_socket_sends_verifies_and_notifies() {
    let w = world().await;
    let alice_web = WebProc::spawn(&w.alice, "alice").await;
    let bob_web = WebProc::spawn(&w.bob, "bob").await;
    let mut bob = bob_web.socket().await;
    // A second tab of bob's that never subscribes gets no notification.
    let mut bob_idle = bob_web.socket().await;
    let subscribed = bob.result("subscribe", json!({})).await;
    assert_eq!(subscribed, json!({"subscribed": true, "dropped": 0}));

    let mut alice = alice_web.socket().await;
    alice.result("subscribe", json!({})).await;
    let me = alice.result("whoami", json!({})).await;
    assert_eq!(me["name"], "alice");
    assert_eq!(me["relays"], json!([w.addr.to_string()]), "{me}");
    assert_eq!(me["relay"], w.addr.to_string(), "{me}");
    let sent = alice
        .result(
            "send",
            json!({"to": "bob", "text": "hello over the socket"}),
        )
        .await;
    assert_eq!(sent["state"], "on relay", "{sent}");
    let message = bob.notification("message").await;
    assert_eq!(message["text"], "hello over the socket");
    assert_eq!(message["from"], "alice");
    let delivered = alice.notification("delivered").await;
    assert_eq!(delivered["ids"], json!([sent["id"]]));

    // Same API as stdio: errors, and `verify` with its QR code ready to draw.
    let response = alice.call("history", json!({"contact": "carol"})).await;
    assert_eq!(response["error"]["data"]["kind"], "no_such_contact");
    let response = alice.call("no_such_method", json!({})).await;
    assert_eq!(response["error"]["code"], -32601);
    let verify = alice.result("verify", json!({"contact": "bob"})).await;
    let size = verify["qr"]["size"].as_u64().unwrap() as usize;
    let rows = verify["qr"]["rows"].as_array().unwrap();
    assert!(size >= 21);
    assert_eq!(rows.len(), size);
    assert!(rows.iter().all(|r| {
        let r = r.as_str().unwrap();
        r.len() == size && r.bytes().all(|b| b == b'0' || b == b'1')
    }));
    assert_eq!(verify["safety_number"].as_str().unwrap().len(), 60);

    // Confirming a number that is not the current one (the key changed after it was shown)
    // confirms nothing.
    let stale = "1".repeat(60);
    let response = alice
        .call(
            "verify",
            json!({"contact": "bob", "confirm": true, "safety_number": stale}),
        )
        .await;
    assert_eq!(response["error"]["code"], -32000, "{response}");
    assert_eq!(
        response["error"]["data"]["kind"], "safety_number_changed",
        "{response}"
    );
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("changed since it was shown"),
        "{response}"
    );
    let contacts = alice.result("contacts", json!({})).await;
    assert_eq!(contacts[0]["verified"], false, "{contacts}");
    // The number as shown (grouped, with spaces and line breaks) confirms.
    let confirmed = alice
        .result(
            "verify",
            json!({"contact": "bob", "confirm": true, "safety_number": verify["grouped"]}),
        )
        .await;
    assert_eq!(confirmed["verified"], true, "{confirmed}");

    // `history` with `limit`: the newest only; 0 and too many are invalid params.
    let second = alice
        .result("send", json!({"to": "bob", "text": "the newest"}))
        .await;
    let newest = alice
        .result("history", json!({"contact": "bob", "limit": 1}))
        .await;
    assert_eq!(newest.as_array().unwrap().len(), 1, "{newest}");
    assert_eq!(newest[0]["id"], second["id"], "{newest}");
    let both = alice
        .result("history", json!({"contact": "bob", "limit": 10000}))
        .await;
    assert_eq!(both.as_array().unwrap().len(), 2, "{both}");
    assert_eq!(both[1]["text"], "the newest", "oldest first: {both}");
    for bad in [json!(0), json!(10001), json!(-1)] {
        let response = alice
            .call("history", json!({"contact": "bob", "limit": bad}))
            .await;
        assert_eq!(response["error"]["code"], -32602, "limit {bad}: {response}");
    }

    // The idle tab saw nothing but what it asked for.
    assert_eq!(bob_idle.result("whoami", json!({})).await["name"], "bob");
    assert!(
        bob_idle.notifications.is_empty(),
        "{:?}",
        bob_idle.notifications
    );
    let history = bob_idle
        .result("history", json!({"contact": "alice", "mark_read": true}))
        .await;
    assert_eq!(history[0]["text"], "hello over the socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_is_answered_with_an_error_and_the_socket_goes_on() {
    let w = world().await;
    let web = WebProc::spawn(&w.alice, "alice").await;
    let mut ws = web.socket().await;

    ws.send_text("this is not json".into()).await;
    let r = ws.response().await;
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert_eq!(r["id"], Value::Null);

    ws.send_text(format!("\"{}\"", "x".repeat(1 << 20))).await;
    let r = ws.response().await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("exceeds"),
        "{r}"
    );

    ws.ws
        .send(Message::binary(b"{\"jsonrpc\":\"2.0\"}".to_vec()))
        .await
        .unwrap();
    let r = ws.response().await;
    assert_eq!(r["error"]["code"], -32600, "{r}");

    ws.send_text(r#"[{"jsonrpc":"2.0","id":1,"method":"whoami"}]"#.into())
        .await;
    assert_eq!(ws.response().await["error"]["code"], -32600);

    // Still usable.
    assert_eq!(ws.result("whoami", json!({})).await["name"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_the_relay_going_away_and_coming_back() {
    let mut w = world().await;
    let web = WebProc::spawn(&w.alice, "alice").await;
    let mut ws = web.socket().await;
    ws.result("subscribe", json!({})).await;
    let status = ws.status_until(|s| s["connected"] == true).await;
    assert_eq!(status["name"], "alice");
    assert_eq!(status["queued"], 0);
    // A session with bob while the relay is there.
    let sent = ws
        .result("send", json!({"to": "bob", "text": "while up"}))
        .await;
    assert_eq!(sent["state"], "on relay", "{sent}");

    // The relay goes away: the page is told, and sends queue instead of failing.
    w.relay.take().unwrap().shutdown().await;
    let status = ws.notification("status").await;
    assert_eq!(status["connected"], false, "{status}");
    let sent = ws
        .result("send", json!({"to": "bob", "text": "while down"}))
        .await;
    assert_eq!(sent["state"], "queued", "{sent}");
    let status = ws
        .status_until(|s| s["queued"].as_u64().unwrap() >= 1)
        .await;
    assert_eq!(status["connected"], false, "{status}");
    // Requests are still answered at once.
    let started = Instant::now();
    assert_eq!(ws.result("whoami", json!({})).await["name"], "alice");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Back on the same address: connected, and the queue drains.
    w.relay = Some(RelayProcess::start(&w.relay_data(), w.addr).await);
    let status = ws
        .status_until(|s| s["connected"] == true && s["queued"] == 0)
        .await;
    assert_eq!(status["name"], "alice");
    let history = ws.result("history", json!({"contact": "bob"})).await;
    assert_eq!(history[1]["text"], "while down");
    assert_ne!(history[1]["state"], "queued", "{history}");
    let _ = &w.bob;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_came_before_any_subscribe_goes_to_the_first_subscriber_once() {
    let w = world().await;
    let alice_web = WebProc::spawn(&w.alice, "alice").await;
    let mut alice = alice_web.socket().await;
    alice.result("subscribe", json!({})).await;
    // Bob's hush web runs, with no page open.
    let bob_web = WebProc::spawn(&w.bob, "bob").await;
    let sent = alice
        .result("send", json!({"to": "bob", "text": "before the page"}))
        .await;
    // Bob's process took it (the receipt proves it) while no socket listened.
    assert_eq!(
        alice.notification("delivered").await["ids"],
        json!([sent["id"]])
    );

    // A tab that never subscribes does not take it; the first subscriber does, right after
    // its `subscribe` response.
    let mut idle = bob_web.socket().await;
    assert_eq!(idle.result("whoami", json!({})).await["name"], "bob");
    let mut bob = bob_web.socket().await;
    bob.send_text(json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe"}).to_string())
        .await;
    let deadline = Instant::now() + WAIT;
    let response = bob.next(deadline).await;
    assert_eq!(response["id"], 1, "the response comes first: {response}");
    let held = bob.next(deadline).await;
    assert_eq!(held["method"], "message", "{held}");
    assert_eq!(held["params"]["text"], "before the page");
    assert!(idle.notifications.is_empty(), "{:?}", idle.notifications);

    // Handed to a socket, it counts as emitted: the next run does not send it again (the
    // first message a new subscriber sees is the next one).
    let first_run = bob.hello["instance"].clone();
    assert!(bob_web.stop().await.success());
    let bob_web = WebProc::spawn(&w.bob, "bob").await;
    let mut bob = bob_web.socket().await;
    // Another run: another instance in its hello.
    assert_ne!(bob.hello["instance"], first_run);
    bob.result("subscribe", json!({})).await;
    alice
        .result("send", json!({"to": "bob", "text": "after the restart"}))
        .await;
    assert_eq!(
        bob.notification("message").await["text"],
        "after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_16_sockets_are_open_at_once() {
    let w = world().await;
    let web = WebProc::spawn(&w.alice, "alice").await;
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(web.socket().await);
    }
    let refused = web
        .open(Some(&web.token), &web.host(), Some(&web.origin()))
        .await;
    assert_eq!(refused_status(refused), 503);
    // The open ones all work.
    for ws in &mut open {
        assert_eq!(ws.result("whoami", json!({})).await["name"], "alice");
    }
    // Closing one frees its place (once the server has seen the close).
    let mut closing = open.pop().unwrap();
    closing.ws.close(None).await.unwrap();
    drop(closing);
    let deadline = Instant::now() + WAIT;
    loop {
        match web
            .open(Some(&web.token), &web.host(), Some(&web.origin()))
            .await
        {
            Ok(mut ws) => {
                assert_eq!(ws.result("whoami", json!({})).await["name"], "alice");
                break;
            }
            Err(tungstenite::Error::Http(r)) if r.status() == 503 => {
                assert!(
                    Instant::now() < deadline,
                    "the closed socket's place was never freed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// The address this machine would send from to a public address (no packet is sent: a UDP
/// `connect` only picks the route), if it is not loopback.
fn first_non_loopback_ipv4() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_beyond_loopback_warns_and_every_interface_is_refused() {
    let w = world().await;
    // Every interface: refused at startup, with a clear reason (the Host check could never
    // match what a browser on the network sends).
    for any in ["0.0.0.0:0", "[::]:0"] {
        let output = timeout(
            WAIT,
            Command::new(HUSH)
                .arg("--profile")
                .arg(&w.alice)
                .args(["web", "--no-open", "--listen", any])
                .env("HUSH_PASSPHRASE", PASS)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("hush web did not exit")
        .unwrap();
        assert!(!output.status.success(), "{any} was accepted");
        assert!(output.stdout.is_empty(), "a URL was printed for {any}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("one interface's address"),
            "{any}: {stderr}"
        );
    }
    // One non-loopback interface (when this machine has one): served, with the warning,
    // and the page loads under that address.
    if let Some(ip) = first_non_loopback_ipv4() {
        let listen = format!("{ip}:0");
        let mut web = WebProc::spawn_with(&w.alice, "alice", &["--listen", &listen]).await;
        let warning = web.stderr_contains("WARNING").await;
        assert!(warning.contains("NOT loopback"), "{warning}");
        let (status, _, _) = get_at(ip, web.port, "/", &format!("{ip}:{}", web.port), &[]).await;
        assert_eq!(status, 200);
    } else {
        eprintln!("no non-loopback IPv4 address here: the warning is not checked");
    }
    // An explicit loopback address says nothing of the kind.
    let mut quiet = WebProc::spawn_with(&w.bob, "bob", &["--listen", "127.0.0.1:0"]).await;
    let line = quiet.stderr_contains("serving").await;
    assert!(!line.contains("WARNING"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_bounded_and_time_out() {
    let w = world().await;
    let web = WebProc::spawn(&w.alice, "alice").await;
    // An open socket is a connection past its request head: it outlives the timeout below.
    let mut early = web.socket().await;
    assert_eq!(early.result("whoami", json!({})).await["name"], "alice");
    // 100 connections that never send a byte (a local user exhausting descriptors, or a
    // slowloris): beyond the cap of 64 they are closed at once.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(("127.0.0.1", web.port)).await.unwrap());
    }
    let mut closed = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(read) = timeout(Duration::from_millis(50), stream.read(&mut byte)).await {
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
            closed += 1;
        }
    }
    assert!(
        closed >= 36,
        "only {closed} of 100 idle connections were closed at once"
    );
    // The rest are closed when they have sent no request head for 10 s, and the page
    // answers again.
    let started = Instant::now();
    loop {
        let mut stream = TcpStream::connect(("127.0.0.1", web.port)).await.unwrap();
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            web.host()
        );
        let _ = stream.write_all(request.as_bytes()).await;
        let mut raw = Vec::new();
        let _ = timeout(Duration::from_secs(2), stream.read_to_end(&mut raw)).await;
        if raw.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the page never answered again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        let read = timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("an idle connection was never closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // A socket opens and answers as usual, and the one opened before the timeout still does.
    let mut ws = web.socket().await;
    assert_eq!(ws.result("whoami", json!({})).await["name"], "alice");
    assert_eq!(early.result("whoami", json!({})).await["name"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_queued_to_a_socket_that_dies_unwritten_goes_to_the_next_subscriber() {
    let w = world().await;
    let alice_web = WebProc::spawn(&w.alice, "alice").await;
    let mut alice = alice_web.socket().await;
    alice.result("subscribe", json!({})).await;
    let bob_web = WebProc::spawn(&w.bob, "bob").await;

    // A tab of bob's subscribes, then stops reading: big answers (an unknown method's name
    // comes back in the error) fill the connection, so the server's writes to it block.
    let mut stuck = bob_web.socket().await;
    stuck.result("subscribe", json!({})).await;
    let big = json!({"jsonrpc": "2.0", "id": 9, "method": "x".repeat(1_000_000)}).to_string();
    for _ in 0..8 {
        if timeout(Duration::from_secs(2), stuck.send_text(big.clone()))
            .await
            .is_err()
        {
            break;
        }
    }
    // A message arrives and is queued to that tab behind the blocked answers.
    let sent = alice
        .result("send", json!({"to": "bob", "text": "do not lose me"}))
        .await;
    assert_eq!(
        alice.notification("delivered").await["ids"],
        json!([sent["id"]])
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The tab dies (unread data: the connection is reset), the message never written to it.
    drop(stuck);

    // Queued is not written: the next subscriber gets it.
    let mut bob = bob_web.socket().await;
    bob.result("subscribe", json!({})).await;
    let message = timeout(Duration::from_secs(15), bob.notification("message"))
        .await
        .expect("the message queued to the dead socket was lost");
    assert_eq!(message["text"], "do not lose me");
}
