//! The HTTP side of `hush web`: four routes, the security headers on every response, and the
//! checks that keep other web pages and other local users out.
//!
//! - `Host` must name this server ([`AppState::hosts`]) on every request: a page on a foreign
//!   name that resolves to 127.0.0.1 (DNS rebinding) would otherwise be same-origin with us.
//! - The socket needs the run's token (compared in constant time) and, when the client is a
//!   browser (it sends `Origin`), our own origin: another site cannot open it from a visitor's
//!   browser. Both are checked before the upgrade, so a refused client gets a plain 403.
//! - The static page needs neither: it holds no data.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

use super::assets;
use super::owner::{Frame, Inbound, Outbound};
use crate::rpc::MAX_LINE;

/// Sockets open at once (tabs); one more is refused with 503.
pub(crate) const MAX_SOCKETS: usize = 16;
/// A message this long closes the socket (tungstenite's limit, so memory stays bounded);
/// one between [`MAX_LINE`] and this is answered with -32600 and the socket goes on.
const HARD_MAX: usize = 4 * MAX_LINE;
/// Frames queued towards one socket; a tab that lets this fill is closed, never waited on.
pub(crate) const OUTBOUND: usize = 256;
/// A socket write that takes longer than this (a stuck tab) closes the socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    /// The token's hex digits, as the socket URL carries them.
    token: Vec<u8>,
    /// The accepted `Host` values.
    hosts: Vec<String>,
    /// The `hello` notification, the first frame of every socket.
    hello: String,
    inbox: mpsc::Sender<Inbound>,
    sockets: AtomicUsize,
    next_id: AtomicU64,
}

impl AppState {
    pub(crate) fn new(
        token: &[u8],
        hosts: Vec<String>,
        hello: String,
        inbox: mpsc::Sender<Inbound>,
    ) -> Self {
        Self(Arc::new(Shared {
            token: token.to_vec(),
            hosts,
            hello,
            inbox,
            sockets: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }))
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.0.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    fn token_matches(&self, given: &[u8]) -> bool {
        // Lengths are public (always 64); the bytes are compared in constant time.
        given.len() == self.0.token.len() && bool::from(given.ct_eq(&self.0.token))
    }
}

/// The routes, behind [`guard`].
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/api/ws", get(socket))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Every request: the `Host` check; every response (refusals, 404s and the upgrade
/// included): the security headers.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let mut response = match host {
        Some(host) if !state.host_allowed(host) => {
            refuse(StatusCode::FORBIDDEN, "forbidden: unknown Host\n")
        }
        None => refuse(StatusCode::FORBIDDEN, "forbidden: unknown Host\n"),
        Some(_) if !fetch_allowed(request.uri(), request.headers()) => {
            refuse(StatusCode::FORBIDDEN, "forbidden: cross-site request\n")
        }
        Some(_) => next.run(request).await,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        // Another site may not embed our files (a `<script src>` probe that tells it hush
        // runs here) nor keep a handle on a window of ours that it opened.
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The browser's `Sec-Fetch-*` metadata allows the request: absent (not a browser, or an old
/// one), from our own origin or typed by the user (`same-origin`, `none`), or a top-level
/// navigation to `/` (a link to the page from elsewhere). Any other request another site
/// makes (an embedded script, style or image, a fetch) is refused, so it cannot even learn
/// that hush runs on this port. The socket also checks `Origin`.
fn fetch_allowed(uri: &Uri, headers: &HeaderMap) -> bool {
    let value = |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok());
    match value("sec-fetch-site") {
        Some(site)
            if site.eq_ignore_ascii_case("cross-site")
                || site.eq_ignore_ascii_case("same-site") =>
        {
            uri.path() == "/"
                && value("sec-fetch-mode").is_some_and(|m| m.eq_ignore_ascii_case("navigate"))
                && value("sec-fetch-dest").is_some_and(|d| d.eq_ignore_ascii_case("document"))
        }
        _ => true,
    }
}

/// A plain-text refusal.
fn refuse(status: StatusCode, text: &'static str) -> Response {
    (status, typed("text/plain; charset=utf-8", text)).into_response()
}

fn typed(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
}

async fn index() -> impl IntoResponse {
    typed("text/html; charset=utf-8", assets::INDEX_HTML)
}

async fn app_js() -> impl IntoResponse {
    typed("text/javascript; charset=utf-8", assets::APP_JS)
}

async fn app_css() -> impl IntoResponse {
    typed("text/css; charset=utf-8", assets::APP_CSS)
}

async fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, "not found\n")
}

/// The `token` query parameter (hex digits need no decoding).
fn query_token(uri: &Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// `Origin` absent (not a browser), or exactly `http://` + the (already checked) `Host`.
fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(origin), Some(host)) => origin
            .strip_prefix("http://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// `GET /api/ws?token=HEX`: the JSON-RPC socket.
async fn socket(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token_ok = query_token(&uri).is_some_and(|t| state.token_matches(t.as_bytes()));
    if !token_ok {
        return refuse(StatusCode::FORBIDDEN, "forbidden: missing or wrong token\n");
    }
    if !origin_allowed(&headers) {
        return refuse(StatusCode::FORBIDDEN, "forbidden: foreign Origin\n");
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(slot) = Slot::take(&state) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open sockets: close a tab\n",
        );
    };
    upgrade
        .max_message_size(HARD_MAX)
        .max_frame_size(HARD_MAX)
        .on_upgrade(move |ws| run_socket(ws, state, slot))
}

/// One of the [`MAX_SOCKETS`] places, given back when dropped (socket closed, or the
/// upgrade failed).
struct Slot(AppState);

impl Slot {
    fn take(state: &AppState) -> Option<Self> {
        let counter = &state.0.sockets;
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_SOCKETS).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(state.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0 .0.sockets.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Relay frames between one socket and the owner task until either side closes. The owner
/// answers in order on `out`; dropping its sender closes the socket. The `hello` goes out
/// first, before the owner knows the socket, so nothing can precede it.
///
/// A frame that carries a message is reported back ([`Inbound::Written`]) once written, and
/// only then does the owner count the message as emitted. A closing socket first stops
/// accepting frames, then reports its closure: whatever was queued but not written is given
/// back, for the next subscriber or the next run.
async fn run_socket(mut ws: WebSocket, state: AppState, _slot: Slot) {
    let hello = Message::Text(state.0.hello.clone().into());
    if !matches!(
        tokio::time::timeout(SEND_TIMEOUT, ws.send(hello)).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let id = state.0.next_id.fetch_add(1, Ordering::Relaxed);
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(OUTBOUND);
    let inbox = state.0.inbox.clone();
    if inbox.send(Inbound::Open { id, tx: out_tx }).await.is_err() {
        return;
    }
    loop {
        // Both are cancel-safe: a frame is either received whole or still in the socket.
        tokio::select! {
            out = out_rx.recv() => {
                let Some(out) = out else { break };
                let sent = tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Text(out.text.into()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
                if let Some(seq) = out.seq {
                    if inbox.send(Inbound::Written { id, seq }).await.is_err() {
                        break;
                    }
                }
            }
            frame = ws.recv() => {
                let frame = match frame {
                    Some(Ok(Message::Text(text))) if text.len() > MAX_LINE => Frame::TooLong(text.len()),
                    Some(Ok(Message::Text(text))) => Frame::Text(text.as_str().to_owned()),
                    Some(Ok(Message::Binary(_))) => Frame::Binary,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if inbox.send(Inbound::Request { id, frame }).await.is_err() {
                    break;
                }
            }
        }
    }
    // Take nothing more (the owner's next frame for us fails at once), then say so; what is
    // still queued is dropped unwritten and, for messages, handed out again.
    out_rx.close();
    // The owner may already have forgotten this socket (it closed it); that is fine.
    let _ = inbox.send(Inbound::Closed { id }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_query() {
        let uri: Uri = "/api/ws?a=1&token=abc&b=2".parse().unwrap();
        assert_eq!(query_token(&uri), Some("abc"));
        let uri: Uri = "/api/ws".parse().unwrap();
        assert_eq!(query_token(&uri), None);
    }

    #[test]
    fn other_sites_may_only_navigate_to_the_page() {
        let root: Uri = "/".parse().unwrap();
        let script: Uri = "/app.js".parse().unwrap();
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            headers
        };
        assert!(fetch_allowed(&script, &HeaderMap::new()), "not a browser");
        let ours = with(&[
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-dest", "script"),
        ]);
        assert!(fetch_allowed(&script, &ours));
        let typed = with(&[("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate")]);
        assert!(fetch_allowed(&root, &typed));
        for site in ["cross-site", "same-site"] {
            let probe = with(&[
                ("sec-fetch-site", site),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "script"),
            ]);
            assert!(!fetch_allowed(&script, &probe), "{site}");
            assert!(!fetch_allowed(&root, &probe), "{site}");
            let link = with(&[
                ("sec-fetch-site", site),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ]);
            assert!(fetch_allowed(&root, &link), "{site}");
            assert!(!fetch_allowed(&script, &link), "{site}");
            let framed = with(&[
                ("sec-fetch-site", site),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "iframe"),
            ]);
            assert!(!fetch_allowed(&root, &framed), "{site}");
        }
    }

    #[test]
    fn origin_must_be_our_host_over_http() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        assert!(origin_allowed(&headers), "no Origin: not a browser");
        for (origin, ok) in [
            ("http://127.0.0.1:8000", true),
            ("https://127.0.0.1:8000", false),
            ("http://127.0.0.1:8001", false),
            ("http://evil.example", false),
            ("null", false),
        ] {
            headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
            assert_eq!(origin_allowed(&headers), ok, "{origin}");
        }
    }
}
