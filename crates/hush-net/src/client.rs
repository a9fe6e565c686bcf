//! A minimal relay client: connect, authenticate (Noise XK + a signed Hello), then send
//! requests and receive replies and deliveries. Requests are answered in order per connection,
//! so `request` waits for its own reply and queues any deliveries that arrive meanwhile.

use std::collections::VecDeque;
use std::time::Duration;

use hush_proto::relay::{auth_message, Delivery, Reply, Request, ServerMessage};
use hush_proto::IdentityKeyPair;
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::noise::{client_handshake, NoiseReader, NoiseWriter};
use crate::NetError;

/// An authenticated connection to a relay.
pub struct Connection {
    reader: NoiseReader,
    writer: NoiseWriter,
    next_request_id: u64,
    deliveries: VecDeque<Delivery>,
    /// The name the relay has for us, from its Welcome.
    pub registered_name: Option<String>,
}

/// Connect to `addr`, run Noise XK against the pinned `relay_key`, and authenticate as
/// `identity`. Everything must finish within `timeout`.
pub async fn connect(
    addr: impl ToSocketAddrs,
    relay_key: &[u8; 32],
    identity: &IdentityKeyPair,
    timeout: Duration,
) -> Result<Connection, NetError> {
    tokio::time::timeout(timeout, async {
        let stream = TcpStream::connect(addr).await?;
        let local = identity.x25519_secret_bytes();
        let (reader, writer, hash) = client_handshake(stream, &local, relay_key).await?;
        let mut conn = Connection {
            reader,
            writer,
            next_request_id: 1,
            deliveries: VecDeque::new(),
            registered_name: None,
        };
        let hello = Request::Hello {
            identity_key: identity.public_key(),
            signature: identity.sign(&auth_message(&hash)),
        };
        match conn.request(&hello).await? {
            Reply::Welcome { name } => conn.registered_name = name,
            _ => return Err(NetError::UnexpectedReply),
        }
        Ok(conn)
    })
    .await
    .map_err(|_| NetError::Timeout)?
}

impl Connection {
    /// Send a request and wait for its reply; deliveries arriving first are queued.
    pub async fn request(&mut self, request: &Request) -> Result<Reply, NetError> {
        let id = self.send_request(request).await?;
        loop {
            match self.recv_message().await? {
                ServerMessage::Response { request_id, result } if request_id == id => {
                    return Ok(result?);
                }
                ServerMessage::Response { .. } => return Err(NetError::UnexpectedReply),
                ServerMessage::Deliver(d) => self.deliveries.push_back(d),
            }
        }
    }

    /// Send a request without waiting (pipelining); returns its id.
    pub async fn send_request(&mut self, request: &Request) -> Result<u64, NetError> {
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.writer.send(&request.encode(id)).await?;
        Ok(id)
    }

    /// The next message from the relay (reply or delivery), skipping the delivery queue.
    pub async fn recv_message(&mut self) -> Result<ServerMessage, NetError> {
        let bytes = self.reader.recv().await?.ok_or(NetError::Closed)?;
        Ok(ServerMessage::decode(&bytes)?)
    }

    /// The next delivery: queued ones first, then from the wire, waiting at most `wait`.
    /// `Ok(None)` when nothing arrived in time.
    pub async fn next_delivery(&mut self, wait: Duration) -> Result<Option<Delivery>, NetError> {
        if let Some(d) = self.deliveries.pop_front() {
            return Ok(Some(d));
        }
        let message = match tokio::time::timeout(wait, self.recv_message()).await {
            Err(_) => return Ok(None),
            Ok(message) => message?,
        };
        match message {
            ServerMessage::Deliver(d) => Ok(Some(d)),
            ServerMessage::Response { .. } => Err(NetError::UnexpectedReply),
        }
    }

    /// Split into halves for concurrent use (e.g. a load generator).
    pub fn into_split(self) -> (NoiseReader, NoiseWriter) {
        (self.reader, self.writer)
    }
}
