//! Length-prefixed frames: `length u32be ‖ payload`, with an explicit maximum so that a peer
//! can make us buffer at most one maximal frame.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::NetError;

/// Largest frame payload: one Noise message (65 535 bytes, tag included).
pub const MAX_FRAME_LEN: usize = 65_535;
const LEN_PREFIX: usize = 4;
/// Bytes requested per read when the frame length is not known yet.
const READ_CHUNK: usize = 4096;
/// An empty buffer larger than this is released, so idle connections stay small.
const IDLE_BUFFER_MAX: usize = 16 * 1024;

/// Reads frames from a byte stream. `read_frame` is cancel-safe: bytes already read stay in the
/// buffer, so it can sit in a `select!` beside a shutdown signal.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wrap a reader with the default maximum.
    pub fn new(inner: R) -> Self {
        Self::with_max(inner, MAX_FRAME_LEN)
    }

    /// Wrap a reader with a smaller maximum (never above [`MAX_FRAME_LEN`]).
    pub fn with_max(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            max: max.min(MAX_FRAME_LEN),
        }
    }

    /// Change the maximum (never above [`MAX_FRAME_LEN`]).
    pub fn set_max(&mut self, max: usize) {
        self.max = max.min(MAX_FRAME_LEN);
    }

    /// The next frame, or `None` on a clean end of stream between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Vec<u8>>, NetError> {
        loop {
            if let Some(frame) = self.parse()? {
                // An idle connection should not keep a large buffer from one big frame.
                if self.buf.is_empty() && self.buf.capacity() > IDLE_BUFFER_MAX {
                    self.buf = Vec::new();
                }
                return Ok(Some(frame));
            }
            // Read straight into the buffer (no stack array held across the await), asking
            // for what the current frame still needs, within bounds.
            let wanted = match self.announced_len() {
                Some(len) => (LEN_PREFIX + len).saturating_sub(self.buf.len()),
                None => READ_CHUNK,
            };
            self.buf.reserve(wanted.clamp(LEN_PREFIX, READ_CHUNK * 4));
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(NetError::Truncated)
                };
            }
        }
    }

    fn announced_len(&self) -> Option<usize> {
        let prefix = self.buf.get(..LEN_PREFIX)?;
        let mut len_bytes = [0u8; LEN_PREFIX];
        len_bytes.copy_from_slice(prefix);
        Some(u32::from_be_bytes(len_bytes) as usize)
    }

    fn parse(&mut self) -> Result<Option<Vec<u8>>, NetError> {
        let Some(prefix) = self.buf.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; LEN_PREFIX];
        len_bytes.copy_from_slice(prefix);
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > self.max {
            return Err(NetError::FrameTooLarge { len, max: self.max });
        }
        if self.buf.len() < LEN_PREFIX + len {
            return Ok(None);
        }
        let frame = self
            .buf
            .get(LEN_PREFIX..LEN_PREFIX + len)
            .unwrap_or_default()
            .to_vec();
        self.buf.drain(..LEN_PREFIX + len);
        Ok(Some(frame))
    }
}

/// Write one frame (prefix and payload in a single write).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
) -> Result<(), NetError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(NetError::FrameTooLarge {
            len: payload.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let mut out = Vec::with_capacity(LEN_PREFIX + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    writer.write_all(&out).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_across_split_reads() {
        let (mut a, b) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            for len in [0usize, 1, 100, 5000] {
                write_frame(&mut a, &vec![len as u8; len]).await.unwrap();
            }
        });
        let mut reader = FrameReader::new(b);
        for len in [0usize, 1, 100, 5000] {
            assert_eq!(
                reader.read_frame().await.unwrap().unwrap(),
                vec![len as u8; len]
            );
        }
        writer.await.unwrap();
        assert!(reader.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_buffering() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        let mut reader = FrameReader::new(b);
        assert!(matches!(
            reader.read_frame().await,
            Err(NetError::FrameTooLarge {
                len: 65_536,
                max: MAX_FRAME_LEN
            })
        ));
    }

    #[tokio::test]
    async fn a_stream_ending_mid_frame_is_an_error() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&10u32.to_be_bytes()).await.unwrap();
        a.write_all(b"abc").await.unwrap();
        drop(a);
        let mut reader = FrameReader::new(b);
        assert!(matches!(
            reader.read_frame().await,
            Err(NetError::Truncated)
        ));
    }
}
