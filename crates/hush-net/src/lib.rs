//! # hush-net
//!
//! The transport shared by the relay and its clients: Noise `XK` (the client pins the relay's
//! static key; the relay learns the client's) over TCP, carried in length-prefixed frames with an
//! explicit maximum, and a small request/response client on top.
//!
//! Frames: `length u32be ‖ Noise message`, `length ≤ MAX_FRAME_LEN` (65 535, the Noise message
//! limit). A longer length closes the connection with [`NetError::FrameTooLarge`] before any of
//! it is buffered.

pub mod client;
pub mod frame;
pub mod noise;

pub use client::{connect, Connection};
pub use frame::{FrameReader, MAX_FRAME_LEN};
pub use noise::{accept, NoiseReader, NoiseWriter, ServerHandshake};

/// Transport failures. Each closes the connection; none is retried silently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Socket error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame longer than the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer closed the connection mid-frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The Noise handshake or a transport message failed (wrong key, tampering, replay).
    #[error("noise: {0}")]
    Noise(String),
    /// The operation did not finish in time.
    #[error("timed out")]
    Timeout,
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
    /// A relay-protocol message did not parse.
    #[error("protocol error: {0}")]
    Protocol(#[from] hush_proto::DecodeError),
    /// The relay answered with a typed error.
    #[error("relay refused: {0}")]
    Relay(#[from] hush_proto::relay::RelayError),
    /// The relay answered something that does not fit the request.
    #[error("unexpected reply from relay")]
    UnexpectedReply,
    /// The peer only asked for the relay's public key (not an error for the peer; the
    /// connection is done).
    #[error("relay key query answered")]
    KeyQuery,
    /// The relay's key is not the pinned one.
    #[error("relay key mismatch")]
    KeyMismatch,
}

impl From<snow::Error> for NetError {
    fn from(e: snow::Error) -> Self {
        NetError::Noise(e.to_string())
    }
}
