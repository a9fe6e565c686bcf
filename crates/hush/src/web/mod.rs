//! `hush web`: the local web UI. This process keeps the profile, every key and every
//! operation (the one [`Client`]); the browser is only the screen, talking the same JSON-RPC
//! as `hush rpc` over a WebSocket (docs/RPC.md).
//!
//! The server listens on loopback by default (a free port) and guards itself against the
//! browser's neighbours: a fresh random token in the URL's fragment (never sent in a page
//! request, so never in a Referer or a log) is required by the socket, which also checks
//! `Origin`, and every request's `Host` must name this server (against DNS rebinding). See
//! [`http`] for the checks, [`owner`] for the task that owns the client.
//!
//! stdout line 1 is exactly the URL (scripts and tests read it); everything else goes to
//! stderr.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hush_client::Client;
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::output::out;
use crate::rpc::dispatch::Dispatcher;

mod assets;
mod conn;
mod http;
mod owner;

/// Prefix of diagnostics on stderr.
const LABEL: &str = "hush web";
/// Requests (and socket openings/closings) queued ahead of the owner task.
const INBOX: usize = 256;
/// How long the redirect file that opens the browser lives: long enough for a browser that
/// is slow to start to read it.
const REDIRECT_LIFETIME: Duration = Duration::from_secs(20);

/// `hush web`'s options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Where to listen; `None` is `127.0.0.1:0` (a free port on loopback).
    pub listen: Option<SocketAddr>,
    /// Open the browser on the URL.
    pub open: bool,
}

/// Serve the web UI until Ctrl-C or SIGTERM, then flush the outbox and exit 0.
pub async fn run(
    client: &mut Client,
    profile_dir: &Path,
    options: Options,
) -> Result<ExitCode, String> {
    let explicit = options.listen;
    let listen = explicit.unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    check_listen(listen)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    if !addr.ip().is_loopback() {
        eprintln!("{LABEL}: WARNING: listening on {addr}, which is NOT loopback. Anyone who can reach this address and learns the URL controls this profile: reads every conversation and sends as you. The traffic is plain HTTP (no TLS): the token and all messages cross the network readable. Use only on a network you fully trust.");
    }
    let token = token()?;
    let url = Zeroizing::new(format!("http://{addr}/#token={}", token.as_str()));
    let hosts = allowed_hosts(addr, explicit);
    let hello = crate::rpc::dispatch::hello_notification(&instance()?, client.name());

    let (inbox_tx, inbox_rx) = mpsc::channel(INBOX);
    let state = http::AppState::new(token.as_bytes(), hosts, hello.to_string(), inbox_tx.clone());
    let server = tokio::spawn(conn::serve(listener, http::router(state)));
    tokio::spawn(owner::forward_shutdown(inbox_tx));

    out!("{}", url.as_str())?;
    eprintln!(
        "{LABEL}: serving {} at http://{addr}/ (open the URL printed above; Ctrl-C to stop)",
        crate::sanitize::line(client.name())
    );
    // The redirect file is deleted when its task ends (or is aborted below).
    let redirect = if options.open {
        open_browser(profile_dir, &url)
    } else {
        None
    };

    let mut core = Dispatcher::new(client, LABEL)?;
    owner::serve(&mut core, inbox_rx).await;
    server.abort();
    if let Some(task) = redirect {
        task.abort();
    }

    // As `hush rpc` at EOF: whatever is still queued gets one more chance (it stays committed
    // in the profile either way).
    let flushed = core.client.flush_outbox().await;
    if let Some(e) = flushed.error {
        eprintln!(
            "{LABEL}: could not flush the outbox ({}); it will be sent by the next command that connects",
            crate::sanitize::line(&e.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuse an every-interface address (`0.0.0.0`, `::`): a browser on the network would name
/// the server by one of the machine's addresses, which the `Host` check (against DNS
/// rebinding) cannot know, so the page could never load there; listening on every
/// interface would only expose the port. One interface's address works.
fn check_listen(listen: SocketAddr) -> Result<(), String> {
    if listen.ip().is_unspecified() {
        return Err(format!(
            "cannot listen on {listen}: an every-interface address cannot be checked against the Host a browser sends; give one interface's address (e.g. --listen 192.168.1.20:{port}), or leave --listen out for loopback",
            port = listen.port()
        ));
    }
    Ok(())
}

/// 32 bytes from the OS RNG, in hex: the capability to use this server.
fn token() -> Result<Zeroizing<String>, String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng
        .try_fill_bytes(bytes.as_mut_slice())
        .map_err(|e| format!("cannot read the OS random number generator: {e}"))?;
    Ok(Zeroizing::new(hex::encode(bytes.as_slice())))
}

/// 16 bytes from the OS RNG, in hex: this run's identity, sent first on every socket (the
/// `hello` notification). Not a secret (every token holder sees it), only unpredictable, so
/// another process that takes the port after this one stops cannot present it.
fn instance() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| format!("cannot read the OS random number generator: {e}"))?;
    Ok(hex::encode(bytes))
}

/// The `Host` values that name this server: the loopback spellings with the real port, and
/// the explicit listen address. Anything else is a foreign name resolving here (DNS
/// rebinding) and is refused.
fn allowed_hosts(addr: SocketAddr, explicit: Option<SocketAddr>) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    if explicit.is_some() {
        hosts.push(addr.to_string());
    }
    hosts
}

/// Open the browser without putting the token on a command line (other local users can read
/// argv): a 0600 file in the profile directory redirects to the URL, and the browser opens
/// that file. The file is deleted after [`REDIRECT_LIFETIME`] or when `hush web` ends,
/// whichever comes first. Failing to open is not fatal: the URL is on stdout.
fn open_browser(profile_dir: &Path, url: &str) -> Option<tokio::task::JoinHandle<()>> {
    let file = match redirect_file(profile_dir, url) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("{LABEL}: cannot write the file that opens the browser ({e}); open the URL yourself");
            return None;
        }
    };
    if let Err(e) = open::that_detached(file.path()) {
        eprintln!("{LABEL}: cannot open a browser ({e}); open the URL yourself");
        return None;
    }
    Some(tokio::spawn(async move {
        tokio::time::sleep(REDIRECT_LIFETIME).await;
        drop(file);
    }))
}

/// The 0600 HTML file in `dir` that sends the browser to `url` (deleted when dropped).
fn redirect_file(dir: &Path, url: &str) -> std::io::Result<tempfile::NamedTempFile> {
    // tempfile creates the file with mode 0600 (on Unix) and a random name.
    let mut file = tempfile::Builder::new()
        .prefix(".hush-web-")
        .suffix(".html")
        .tempfile_in(dir)?;
    // The URL is ours: digits, hex, and `:/.[]#=`; nothing to escape in HTML.
    let page = Zeroizing::new(format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"refresh\" content=\"0;url={url}\">\n<title>hush web</title>\n<p><a href=\"{url}\">Open hush</a></p>\n"
    ));
    std::io::Write::write_all(&mut file, page.as_bytes())?;
    std::io::Write::flush(&mut file)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_64_hex_digits() {
        let a = token().unwrap();
        let b = token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn instances_are_fresh_32_hex_digits() {
        let a = instance().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, instance().unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn the_redirect_file_is_private_and_points_at_the_url() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let url = "http://127.0.0.1:8123/#token=00ff";
        let file = redirect_file(dir.path(), url).unwrap();
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let page = std::fs::read_to_string(file.path()).unwrap();
        assert!(page.contains(&format!("content=\"0;url={url}\"")), "{page}");
        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists(), "the redirect file outlived its handle");
    }

    #[test]
    fn an_every_interface_address_is_refused() {
        for any in ["0.0.0.0:8123", "[::]:0"] {
            let e = check_listen(any.parse().unwrap()).unwrap_err();
            assert!(e.contains("one interface's address"), "{e}");
        }
        for one in ["127.0.0.1:0", "192.0.2.7:9000", "[::1]:80"] {
            assert!(check_listen(one.parse().unwrap()).is_ok(), "{one}");
        }
    }

    #[test]
    fn hosts_are_the_loopback_names_and_the_explicit_address() {
        let addr: SocketAddr = "127.0.0.1:8123".parse().unwrap();
        assert_eq!(
            allowed_hosts(addr, None),
            ["127.0.0.1:8123", "localhost:8123", "[::1]:8123"]
        );
        let lan: SocketAddr = "192.0.2.7:9000".parse().unwrap();
        assert!(allowed_hosts(lan, Some(lan)).contains(&"192.0.2.7:9000".to_owned()));
    }
}
