//! Accepting connections for `hush web` within bounds: any local user can connect to the port
//! (no token is needed to open a TCP connection), so idle or slow (slowloris) connections
//! must not pile up until the process runs out of file descriptors, which would also break
//! its relay connection. At most [`MAX_CONNECTIONS`] are open at once (one more is closed as
//! soon as it is accepted), and a connection that has not sent a complete request head
//! within [`HEADER_READ_TIMEOUT`] (also between keep-alive requests) is closed.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::LABEL;

/// TCP connections open at once (page loads, and the sockets: at most
/// [`super::http::MAX_SOCKETS`] of them). Far below the usual limit of 1,024 descriptors.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send a request head (and may stay idle between
/// requests) before it is closed.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serve `router` on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, router: Router) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut warned = false;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // Over the cap: closed at once, so it holds no descriptor.
            drop(stream);
            if !warned {
                eprintln!("{LABEL}: more than {MAX_CONNECTIONS} connections open; closing new ones until some end");
                warned = true;
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            // The permit lives in the stream, so it is held as long as the connection is,
            // also after an upgrade to a WebSocket.
            let io = TokioIo::new(Counted {
                stream,
                _permit: permit,
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(io, service)
                .with_upgrades();
            // A failed connection concerns only its client.
            let _ = connection.await;
        });
    }
}

/// A TCP stream that holds one of the [`MAX_CONNECTIONS`] places until dropped.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
