//! Noise `XK_25519_ChaChaPoly_SHA256` over framed TCP. After the handshake the transport is
//! split into a reader and a writer half, each with its own nonce counter, so one task can read
//! while another writes.

use std::sync::Arc;

use hush_proto::relay::{NOISE_PATTERN, NOISE_PROLOGUE};
use snow::params::NoiseParams;
use snow::StatelessTransportState;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::frame::{write_frame, FrameReader, MAX_FRAME_LEN};
use crate::NetError;

/// Largest handshake frame accepted: the XK messages are 48, 48 and 64 bytes.
const MAX_HANDSHAKE_FRAME: usize = 256;
/// Noise authentication tag length.
pub const TAG_LEN: usize = 16;
/// Largest plaintext in one transport message.
pub const MAX_PLAINTEXT: usize = MAX_FRAME_LEN - TAG_LEN;

fn params() -> Result<NoiseParams, NetError> {
    NOISE_PATTERN
        .parse()
        .map_err(|e: snow::Error| NetError::Noise(e.to_string()))
}

/// The receiving half of an established Noise channel.
pub struct NoiseReader {
    frames: FrameReader<OwnedReadHalf>,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
}

impl NoiseReader {
    /// The next decrypted message, or `None` when the peer closed cleanly. Cancel-safe.
    /// A message that fails to decrypt (tampered, replayed, reordered) is an error: the
    /// caller closes the connection.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, NetError> {
        let Some(frame) = self.frames.read_frame().await? else {
            return Ok(None);
        };
        let mut out = vec![0u8; frame.len()];
        let n = self.transport.read_message(self.nonce, &frame, &mut out)?;
        self.nonce += 1;
        out.truncate(n);
        Ok(Some(out))
    }
}

/// The sending half of an established Noise channel.
pub struct NoiseWriter {
    inner: OwnedWriteHalf,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
}

impl NoiseWriter {
    /// Encrypt and send one message (at most [`MAX_PLAINTEXT`] bytes).
    pub async fn send(&mut self, plaintext: &[u8]) -> Result<(), NetError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(NetError::FrameTooLarge {
                len: plaintext.len() + TAG_LEN,
                max: MAX_FRAME_LEN,
            });
        }
        let mut out = vec![0u8; plaintext.len() + TAG_LEN];
        let n = self
            .transport
            .write_message(self.nonce, plaintext, &mut out)?;
        self.nonce += 1;
        write_frame(&mut self.inner, out.get(..n).unwrap_or_default()).await
    }

    /// Encrypt several messages and send them in one write: a busy connection pays one
    /// system call and one packet for a burst of replies and deliveries.
    pub async fn send_many(&mut self, plaintexts: &[Vec<u8>]) -> Result<(), NetError> {
        use tokio::io::AsyncWriteExt;
        let total: usize = plaintexts.iter().map(|p| 4 + p.len() + TAG_LEN).sum();
        let mut out = Vec::with_capacity(total);
        for plaintext in plaintexts {
            if plaintext.len() > MAX_PLAINTEXT {
                return Err(NetError::FrameTooLarge {
                    len: plaintext.len() + TAG_LEN,
                    max: MAX_FRAME_LEN,
                });
            }
            let start = out.len();
            out.resize(start + 4 + plaintext.len() + TAG_LEN, 0);
            let body = out.get_mut(start + 4..).unwrap_or_default();
            let n = self.transport.write_message(self.nonce, plaintext, body)?;
            self.nonce += 1;
            out.truncate(start + 4 + n);
            if let Some(prefix) = out.get_mut(start..start + 4) {
                prefix.copy_from_slice(&(n as u32).to_be_bytes());
            }
        }
        self.inner.write_all(&out).await?;
        Ok(())
    }

    /// Close the sending direction.
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        use tokio::io::AsyncWriteExt;
        self.inner.shutdown().await?;
        Ok(())
    }
}

fn split(
    hs: snow::HandshakeState,
    frames: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
) -> Result<(NoiseReader, NoiseWriter, [u8; 32]), NetError> {
    let mut hash = [0u8; 32];
    if hs.get_handshake_hash().len() != hash.len() {
        return Err(NetError::Noise("unexpected handshake hash length".into()));
    }
    hash.copy_from_slice(hs.get_handshake_hash());
    let transport = Arc::new(hs.into_stateless_transport_mode()?);
    let mut frames = frames;
    frames.set_max(MAX_FRAME_LEN);
    Ok((
        NoiseReader {
            frames,
            transport: Arc::clone(&transport),
            nonce: 0,
        },
        NoiseWriter {
            inner: writer,
            transport,
            nonce: 0,
        },
        hash,
    ))
}

async fn read_handshake(
    frames: &mut FrameReader<OwnedReadHalf>,
    hs: &mut snow::HandshakeState,
) -> Result<Vec<u8>, NetError> {
    let frame = frames.read_frame().await?.ok_or(NetError::Closed)?;
    let mut payload = vec![0u8; frame.len()];
    let n = hs.read_message(&frame, &mut payload)?;
    payload.truncate(n);
    Ok(payload)
}

async fn write_handshake(
    writer: &mut OwnedWriteHalf,
    hs: &mut snow::HandshakeState,
) -> Result<(), NetError> {
    let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
    let n = hs.write_message(&[], &mut buf)?;
    write_frame(writer, buf.get(..n).unwrap_or_default()).await
}

/// Client side: run XK with our static key against the pinned relay key. Returns the channel
/// halves and the handshake hash (signed by the client to bind its identity to this channel).
pub async fn client_handshake(
    stream: TcpStream,
    local_static: &[u8; 32],
    relay_static: &[u8; 32],
) -> Result<(NoiseReader, NoiseWriter, [u8; 32]), NetError> {
    let _ = stream.set_nodelay(true);
    let mut hs = snow::Builder::new(params()?)
        .local_private_key(local_static)?
        .remote_public_key(relay_static)?
        .prologue(NOISE_PROLOGUE)?
        .build_initiator()?;
    let (read, mut write) = stream.into_split();
    let mut frames = FrameReader::with_max(read, MAX_HANDSHAKE_FRAME);
    write_handshake(&mut write, &mut hs).await?;
    // A wrong relay key fails here: the relay cannot produce `ee`/`es` consistently.
    read_handshake(&mut frames, &mut hs)
        .await
        .map_err(|e| match e {
            // A relay with another static key cannot decrypt our first message and hangs up.
            NetError::Noise(_) | NetError::Closed | NetError::Truncated => NetError::KeyMismatch,
            other => other,
        })?;
    write_handshake(&mut write, &mut hs).await?;
    split(hs, frames, write)
}

/// What the relay learns from a completed handshake.
pub struct ServerHandshake {
    /// Receiving half.
    pub reader: NoiseReader,
    /// Sending half.
    pub writer: NoiseWriter,
    /// The client's static X25519 key (authenticated by the handshake).
    pub remote_static: [u8; 32],
    /// The handshake hash, which the client signs in its Hello.
    pub handshake_hash: [u8; 32],
}

/// Relay side: run XK as responder with the relay's static key.
pub async fn accept(
    stream: TcpStream,
    local_static: &[u8; 32],
) -> Result<ServerHandshake, NetError> {
    let _ = stream.set_nodelay(true);
    let mut hs = snow::Builder::new(params()?)
        .local_private_key(local_static)?
        .prologue(NOISE_PROLOGUE)?
        .build_responder()?;
    let (read, mut write) = stream.into_split();
    let mut frames = FrameReader::with_max(read, MAX_HANDSHAKE_FRAME);
    let first = frames.read_frame().await?.ok_or(NetError::Closed)?;
    if first.is_empty() {
        // An empty first frame asks for the relay's public key (trust on first use); answer
        // and close. It grants nothing: the key is public.
        write_frame(&mut write, &public_key(local_static)).await?;
        return Err(NetError::KeyQuery);
    }
    let mut payload = vec![0u8; first.len()];
    hs.read_message(&first, &mut payload)?;
    write_handshake(&mut write, &mut hs).await?;
    read_handshake(&mut frames, &mut hs).await?;
    let mut remote_static = [0u8; 32];
    match hs.get_remote_static() {
        Some(key) if key.len() == 32 => remote_static.copy_from_slice(key),
        _ => return Err(NetError::Noise("client static key missing".into())),
    }
    let (reader, writer, handshake_hash) = split(hs, frames, write)?;
    Ok(ServerHandshake {
        reader,
        writer,
        remote_static,
        handshake_hash,
    })
}

/// Ask a relay for its static public key (an empty first frame), for trust on first use.
/// The answer is unauthenticated: pin it, and refuse a different key later.
pub async fn fetch_relay_key(stream: TcpStream) -> Result<[u8; 32], NetError> {
    let (read, mut write) = stream.into_split();
    write_frame(&mut write, &[]).await?;
    let mut frames = FrameReader::with_max(read, MAX_HANDSHAKE_FRAME);
    let frame = frames.read_frame().await?.ok_or(NetError::Closed)?;
    frame
        .as_slice()
        .try_into()
        .map_err(|_| NetError::UnexpectedReply)
}

/// The X25519 public key for a static secret (the relay prints and pins this).
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    hush_proto::X25519Secret::from_bytes(*secret)
        .public_key()
        .as_bytes()
        .to_owned()
}
