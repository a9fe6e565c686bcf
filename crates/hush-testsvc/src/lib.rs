//! Test-only access to the services that the shared-store tests need: PostgreSQL and NATS.
//!
//! Only ever a dev-dependency. Everything here is synchronous and usable from a plain `#[test]`
//! and from inside a Tokio runtime (the PostgreSQL work runs on a thread of its own, so the sync
//! `postgres` client never starts its runtime inside the caller's).
//!
//! - [`postgres()`]: a fresh database `hush_t_<pid>_<hex>` on the server named by
//!   `HUSH_TEST_POSTGRES` (default [`POSTGRES_DEFAULT`]), dropped (`WITH (FORCE)`) on Drop.
//! - [`nats()`]: checks that the NATS server named by `HUSH_TEST_NATS` (default
//!   [`NATS_DEFAULT`]) answers, and hands out a unique subject prefix.
//! - [`NatsServer`]: a private `nats-server` child on a free port that a test may stop and restart.
//! - [`PrivatePostgres`]: a private PostgreSQL cluster (initdb + pg_ctl in a temp dir) that a
//!   test may stop and restart.
//!
//! When a service is missing, each entry point prints ONE line to stderr starting `skipped:`
//! (what is needed, how to run it) and returns `None`, so the test returns early. With
//! `HUSH_REQUIRE_SERVICES=1` (CI) it panics instead, naming what is missing.

// A test helper: panicking with a clear message is how a required service that is missing, or a
// private server that will not come back, fails the test that asked for it.
#![allow(clippy::panic)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The admin URL used when `HUSH_TEST_POSTGRES` is unset.
pub const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The NATS URL used when `HUSH_TEST_NATS` is unset.
pub const NATS_DEFAULT: &str = "nats://127.0.0.1:4222";

const POSTGRES_ENV: &str = "HUSH_TEST_POSTGRES";
const NATS_ENV: &str = "HUSH_TEST_NATS";
const REQUIRE_ENV: &str = "HUSH_REQUIRE_SERVICES";

/// How long a connection attempt or a server start may take before the service counts as absent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// True when `HUSH_REQUIRE_SERVICES=1`: a missing service fails the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1")
}

/// The one place that decides between skipping and failing.
/// `needs`: what is missing; `how`: how to provide it; `reason`: what went wrong.
fn unavailable<T>(needs: &str, how: &str, reason: &str) -> Option<T> {
    let reason = one_line(reason);
    if services_required() {
        panic!("{REQUIRE_ENV}=1 but this test cannot run: needs {needs}: {reason}; {how}");
    }
    // One write, so that the line stays whole among other tests' output; straight to the
    // stderr handle, because the test harness captures `eprint!` of a passing test and the
    // user would never see why it passed.
    let line =
        format!("skipped: needs {needs}: {reason}; {how}; {REQUIRE_ENV}=1 makes this fail\n");
    // Once per missing service and test binary: a suite of 45 store tests says it once.
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let first = SAID.lock().map_or(true, |mut said| {
        let first = !said.iter().any(|n| n == needs);
        if first {
            said.push(needs.to_owned());
        }
        first
    });
    if first {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
    None
}

/// An error with its chain of sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `hush_t_<pid>_<16 hex digits>`: unique per call, across processes and runs.
pub fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("hush_t_{}_{:016x}", std::process::id(), h.finish())
}

/// A URL with any password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// `url` with its database name replaced by `db` (query parameters kept).
fn with_dbname(url: &str, db: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let query = tail.find('?').map_or("", |i| tail.get(i..).unwrap_or(""));
    Some(format!("{scheme}://{authority}/{db}{query}"))
}

/// Runs `f` on a thread of its own, so the sync `postgres` client (which drives a Tokio runtime
/// of its own) works even when the caller is inside a runtime.
fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match std::thread::spawn(f).join() {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e),
    }
}

fn pg_connect(url: &str) -> Result<postgres::Client, String> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| format!("bad URL {}: {e}", redact_url(url)))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config
        .connect(postgres::NoTls)
        .map_err(|e| format!("cannot connect to {}: {}", redact_url(url), chain(&e)))
}

/// A fresh, empty database for one test; dropped (`DROP DATABASE .. WITH (FORCE)`) on Drop.
#[derive(Debug)]
pub struct PgTestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgTestDb {
    /// The URL of the new database (the admin URL with its database name replaced).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name, `hush_t_<pid>_<hex>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admin URL it was created through.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Creates a fresh database through `admin_url` (a URL naming a database the user may
    /// connect to, as a role allowed to `CREATE DATABASE`).
    pub fn create(admin_url: &str) -> Result<PgTestDb, String> {
        let admin_url = admin_url.to_owned();
        off_runtime(move || {
            let name = unique_name();
            let url = with_dbname(&admin_url, &name)
                .ok_or_else(|| format!("not a postgres:// URL: {}", redact_url(&admin_url)))?;
            let mut client = pg_connect(&admin_url)?;
            // `name` is [a-z0-9_] only: safe to quote as an identifier.
            client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .map_err(|e| format!("CREATE DATABASE {name}: {}", chain(&e)))?;
            Ok(PgTestDb {
                admin_url,
                name,
                url,
            })
        })
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let result = off_runtime(move || -> Result<(), String> {
            let mut client = pg_connect(&admin_url)?;
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .map_err(|e| chain(&e))
        });
        if let Err(e) = result {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

/// A fresh database on the server named by `HUSH_TEST_POSTGRES` (default [`POSTGRES_DEFAULT`]).
///
/// `None` after printing the one-line `skipped:` message when the server cannot be reached;
/// panics instead when `HUSH_REQUIRE_SERVICES=1`.
pub fn postgres() -> Option<PgTestDb> {
    let admin = std::env::var(POSTGRES_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| POSTGRES_DEFAULT.to_owned());
    match PgTestDb::create(&admin) {
        Ok(db) => Some(db),
        Err(e) => unavailable(
            &format!("PostgreSQL ({POSTGRES_ENV}, default {POSTGRES_DEFAULT})"),
            &format!(
                "start it, or set {POSTGRES_ENV} to an admin URL (a role that may CREATE DATABASE)"
            ),
            &e,
        ),
    }
}

/// The first `host:port` of a `nats://[user[:pass]@]host[:port][,more]` URL.
fn nats_host_port(url: &str) -> Option<String> {
    let first = url.split(',').next()?.trim();
    let rest = first.split_once("://").map_or(first, |(_, r)| r);
    let rest = rest.split(['/', '?']).next()?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if host.is_empty() {
        return None;
    }
    let has_port = if host.starts_with('[') {
        host.contains("]:")
    } else {
        host.contains(':')
    };
    Some(if has_port {
        host.to_owned()
    } else {
        format!("{host}:4222")
    })
}

/// Connects to a NATS server and reads its `INFO` line.
fn nats_probe(url: &str) -> Result<(), String> {
    let hp = nats_host_port(url).ok_or_else(|| format!("not a NATS URL: {}", redact_url(url)))?;
    let addrs: Vec<SocketAddr> = hp
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hp}: {e}"))?
        .collect();
    let mut last = format!("no address for {hp}");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                let _ = stream.set_read_timeout(Some(CONNECT_TIMEOUT));
                let mut line = String::new();
                match BufReader::new(stream).read_line(&mut line) {
                    Ok(_) if line.starts_with("INFO ") => return Ok(()),
                    Ok(_) => last = format!("{addr} is not a NATS server (no INFO line)"),
                    Err(e) => last = format!("{addr}: no INFO line: {e}"),
                }
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// A reachable NATS server and a subject prefix of this test's own.
#[derive(Debug, Clone)]
pub struct NatsTest {
    url: String,
    prefix: String,
}

impl NatsTest {
    /// The server's URL (`HUSH_TEST_NATS` or [`NATS_DEFAULT`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A subject prefix unique to this call, `hush_t_<pid>_<hex>`.
    pub fn subject_prefix(&self) -> &str {
        &self.prefix
    }
}

/// The NATS server named by `HUSH_TEST_NATS` (default [`NATS_DEFAULT`]) with a fresh prefix.
///
/// `None` after printing the one-line `skipped:` message when it cannot be reached; panics
/// instead when `HUSH_REQUIRE_SERVICES=1`.
pub fn nats() -> Option<NatsTest> {
    let url = std::env::var(NATS_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| NATS_DEFAULT.to_owned());
    match nats_probe(&url) {
        Ok(()) => Some(NatsTest {
            url,
            prefix: unique_name(),
        }),
        Err(e) => unavailable(
            &format!("NATS ({NATS_ENV}, default {NATS_DEFAULT})"),
            &format!("start nats-server, or set {NATS_ENV} to its URL"),
            &e,
        ),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `ready` every 50 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn find_nats_server() -> Option<PathBuf> {
    let fixed = Path::new("/usr/sbin/nats-server");
    if fixed.is_file() {
        return Some(fixed.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// A private `nats-server` child on 127.0.0.1 and a free port, killed on Drop.
///
/// For tests of what happens while NATS is down: [`stop`](Self::stop) it, then
/// [`restart`](Self::restart) it on the same port so clients can reconnect.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    url: String,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a private server. `None` (after the `skipped:` line) when there is no
    /// `nats-server` (/usr/sbin/nats-server or on PATH) or it does not start; panics instead
    /// when `HUSH_REQUIRE_SERVICES=1`.
    pub fn start() -> Option<NatsServer> {
        let needs = "nats-server (/usr/sbin/nats-server or on PATH)";
        let how = "install it (apt-get install nats-server)";
        let Some(binary) = find_nats_server() else {
            return unavailable(needs, how, "no nats-server binary found");
        };
        let port = match free_port() {
            Ok(p) => p,
            Err(e) => return unavailable(needs, how, &format!("no free port: {e}")),
        };
        let mut server = NatsServer {
            binary,
            port,
            url: format!("nats://127.0.0.1:{port}"),
            child: None,
        };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(e) => unavailable(needs, how, &e),
        }
    }

    /// `nats://127.0.0.1:<port>`; the same across restarts.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True while the child runs (between start/restart and stop).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL) and waits for it to exit; a no-op when stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs) and waits until
    /// it answers. Panics when it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("nats-server restart on port {} failed: {e}", self.port);
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let url = self.url.clone();
        let mut exited = None;
        let up = wait_until(START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            nats_probe(&url).is_ok()
        });
        if let Some(status) = exited {
            return Err(format!("nats-server exited at start: {status}"));
        }
        if !up {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "nats-server did not answer on {url} within {START_TIMEOUT:?}"
            ));
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `bin` directory of the highest PostgreSQL version under /usr/lib/postgresql.
fn find_pg_bin() -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(version) = name
            .split('.')
            .map(str::parse::<u32>)
            .collect::<Result<Vec<u32>, _>>()
        else {
            continue;
        };
        let bin = entry.path().join("bin");
        if !bin.join("initdb").is_file() || !bin.join("pg_ctl").is_file() {
            continue;
        }
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A private PostgreSQL cluster: initdb into a temp dir, `pg_ctl start` on 127.0.0.1 and a free
/// port (socket in the temp dir, `fsync` on). Drop stops it and deletes the dir.
///
/// For tests of what happens while PostgreSQL is down: [`stop`](Self::stop) (fast shutdown),
/// then [`restart`](Self::restart) on the same port and data.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl PrivatePostgres {
    /// Creates and starts a cluster. `None` (after the `skipped:` line) when no PostgreSQL
    /// binaries are installed (/usr/lib/postgresql/<version>/bin) or the cluster does not start;
    /// panics instead when `HUSH_REQUIRE_SERVICES=1`.
    pub fn start() -> Option<PrivatePostgres> {
        let needs =
            "PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin: initdb, pg_ctl)";
        let how = "install them (apt-get install postgresql)";
        let Some(bin) = find_pg_bin() else {
            return unavailable(needs, how, "none found under /usr/lib/postgresql");
        };
        match Self::init(bin) {
            Ok(pg) => Some(pg),
            Err(e) => unavailable(needs, how, &e),
        }
    }

    fn init(bin: PathBuf) -> Result<PrivatePostgres, String> {
        let as_postgres = running_as_root();
        // initdb refuses to run as root: the cluster belongs to `postgres`, whose processes must
        // reach the dir, so it goes under /tmp (TMPDIR might be inside /root).
        let dir = if as_postgres {
            tempfile::Builder::new()
                .prefix("hush-pg-")
                .tempdir_in("/tmp")
        } else {
            tempfile::Builder::new().prefix("hush-pg-").tempdir()
        }
        .map_err(|e| format!("temp dir: {e}"))?;
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "chown postgres: {} failed ({status}); is there a user `postgres`?",
                    dir.path().display()
                ));
            }
        }
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let pg = PrivatePostgres {
            bin,
            dir,
            port,
            as_postgres,
            running: false,
        };
        // --no-sync only skips initdb's own final fsync of the new files; the server runs with
        // fsync on (the default), as in production.
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let mut pg = pg;
        pg.pg_start()?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a PostgreSQL binary (as `postgres` when we are root); Err carries its output.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed ({}): {} {}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn pg_start(&mut self) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let result = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                opts.as_ref(),
                "start".as_ref(),
            ],
        );
        match result {
            Ok(()) => {
                self.running = true;
                Ok(())
            }
            Err(e) => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                Err(format!("{e}; server log: {}", tail.join(" | ")))
            }
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres` (trust auth); the same across restarts.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True while the server runs (between start/restart and stop).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// A fresh database on this cluster, dropped on Drop (if the cluster still runs then).
    pub fn create_db(&self) -> PgTestDb {
        match PgTestDb::create(&self.admin_url()) {
            Ok(db) => db,
            Err(e) => panic!("private PostgreSQL: {e}"),
        }
    }

    /// `pg_ctl stop -m fast`: disconnects every client and shuts down cleanly. A no-op when
    /// stopped; panics when pg_ctl fails.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        if let Err(e) = self.pg_stop() {
            panic!("private PostgreSQL stop failed: {e}");
        }
    }

    fn pg_stop(&mut self) -> Result<(), String> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "stop".as_ref(),
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// Starts the server again on the same port and data (stopping it first if it runs) and
    /// waits until it accepts connections. Panics when it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.pg_start() {
            panic!("private PostgreSQL restart failed: {e}");
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            if let Err(e) = self.pg_stop() {
                eprintln!("warning: private PostgreSQL stop failed: {e}");
            }
        }
        // The TempDir removes the cluster's files (we are root, or their owner).
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbname_replaced_and_query_kept() {
        assert_eq!(
            with_dbname("postgres://postgres@127.0.0.1:5432/postgres", "x").as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/x")
        );
        assert_eq!(
            with_dbname("postgres://u:p@h/db?sslmode=disable", "x").as_deref(),
            Some("postgres://u:p@h/x?sslmode=disable")
        );
        assert_eq!(
            with_dbname("postgresql://h:1", "x").as_deref(),
            Some("postgresql://h:1/x")
        );
        assert_eq!(with_dbname("host=h dbname=d", "x"), None);
    }

    #[test]
    fn passwords_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn nats_urls() {
        assert_eq!(
            nats_host_port("nats://127.0.0.1:4222").as_deref(),
            Some("127.0.0.1:4222")
        );
        assert_eq!(
            nats_host_port("nats://u:p@host").as_deref(),
            Some("host:4222")
        );
        assert_eq!(
            nats_host_port("nats://a:1,nats://b:2").as_deref(),
            Some("a:1")
        );
    }

    #[test]
    fn names_are_unique_and_safe() {
        let a = unique_name();
        let b = unique_name();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("hush_t_{}_", std::process::id())));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }
}
