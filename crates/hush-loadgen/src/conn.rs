//! Client connections: the two transports (Noise to the relay, plain frames to the baseline
//! forwarder) behind one reader/writer pair, and connection set-up with bounded concurrency.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hush_net::frame::{write_frame, FrameReader};
use hush_net::{NetError, NoiseReader, NoiseWriter};
use hush_proto::relay::{register_message, Reply, Request};
use hush_proto::IdentityKeyPair;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::util::{fail, Result};

/// Time allowed for one connection's TCP connect, handshake, Hello and registration.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// The receiving half of a client connection.
pub enum Rx {
    /// Noise channel to the relay.
    Noise(NoiseReader),
    /// Plain length-prefixed frames to the baseline forwarder.
    Plain(FrameReader<OwnedReadHalf>),
}

impl Rx {
    /// The next message, `None` on a clean close. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, NetError> {
        match self {
            Rx::Noise(r) => r.recv().await,
            Rx::Plain(r) => r.read_frame().await,
        }
    }
}

/// The sending half of a client connection.
pub enum Tx {
    /// Noise channel to the relay.
    Noise(NoiseWriter),
    /// Plain frames to the baseline forwarder.
    Plain(OwnedWriteHalf),
}

impl Tx {
    /// Send one message (one frame, one write).
    pub async fn send(&mut self, message: &[u8]) -> Result<(), NetError> {
        match self {
            Tx::Noise(w) => w.send(message).await,
            Tx::Plain(w) => write_frame(w, message).await,
        }
    }

    /// Close the sending direction.
    pub async fn shutdown(&mut self) {
        let _ = match self {
            Tx::Noise(w) => w.shutdown().await,
            Tx::Plain(w) => w.shutdown().await.map_err(NetError::from),
        };
    }
}

/// Connect to the relay as `identity` (Noise XK + Hello), optionally registering `name`.
pub async fn connect_relay(
    addr: SocketAddr,
    relay_key: [u8; 32],
    identity: &IdentityKeyPair,
    name: Option<String>,
) -> Result<hush_net::Connection> {
    let mut conn = hush_net::connect(addr, &relay_key, identity, CONNECT_TIMEOUT).await?;
    if let Some(name) = name {
        let request = Request::Register {
            signature: identity.sign(&register_message(&name)),
            name,
        };
        let reply = tokio::time::timeout(CONNECT_TIMEOUT, conn.request(&request))
            .await
            .map_err(|_| fail("registration timed out"))??;
        if reply != Reply::Registered {
            return Err(fail(format!("unexpected reply to Register: {reply:?}")));
        }
    }
    Ok(conn)
}

/// Split an authenticated relay connection into transport halves.
pub fn split_relay(conn: hush_net::Connection) -> (Rx, Tx) {
    let (r, w) = conn.into_split();
    (Rx::Noise(r), Tx::Noise(w))
}

/// Connect to the baseline forwarder as client `index` (the first frame names the index).
pub async fn connect_plain(addr: SocketAddr, index: u32) -> Result<(Rx, Tx)> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| fail("connect timed out"))??;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    write_frame(&mut write, &index.to_be_bytes()).await?;
    Ok((Rx::Plain(FrameReader::new(read)), Tx::Plain(write)))
}

/// Run `make(i)` for `i in 0..count` with at most `concurrency` in flight (so thousands of
/// handshakes do not overflow the listen backlog); results in index order, first error wins.
pub async fn connect_all<T, F, Fut>(count: usize, concurrency: usize, make: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    let mut tasks = JoinSet::new();
    let mut next = 0usize;
    let concurrency = concurrency.max(1);
    loop {
        while next < count && tasks.len() < concurrency {
            let fut = make(next);
            let i = next;
            tasks.spawn(async move { (i, fut.await) });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (i, result) = joined?;
        let value = result.map_err(|e| fail(format!("connection {i}: {e}")))?;
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(value);
        }
    }
    results
        .into_iter()
        .collect::<Option<Vec<T>>>()
        .ok_or_else(|| fail("a connection is missing"))
}
