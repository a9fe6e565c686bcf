//! The `frame_reader` target: `hush_net::FrameReader` over an in-memory stream that hands out
//! bytes in chunks of a fuzzer-chosen size, checked against a straightforward reference parser.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hush_net::{FrameReader, NetError, MAX_FRAME_LEN};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Runtime;

thread_local! {
    static RUNTIME: Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("current-thread runtime");
}

/// An in-memory reader that returns at most `chunk` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.data.len().min(self.chunk).min(buf.remaining());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}

/// What the reference parser expects after the last frame.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Clean,
    Truncated,
    TooLarge { len: usize, max: usize },
}

fn reference(mut stream: &[u8], max: usize) -> (Vec<Vec<u8>>, End) {
    let mut frames = Vec::new();
    loop {
        if stream.is_empty() {
            return (frames, End::Clean);
        }
        if stream.len() < 4 {
            return (frames, End::Truncated);
        }
        let len = u32::from_be_bytes(stream[..4].try_into().unwrap()) as usize;
        if len > max {
            return (frames, End::TooLarge { len, max });
        }
        if stream.len() < 4 + len {
            return (frames, End::Truncated);
        }
        frames.push(stream[4..4 + len].to_vec());
        stream = &stream[4 + len..];
    }
}

/// `control(2) ‖ stream`: `control[0]` sets the read chunk size (0 = 16 KiB), `control[1]` the
/// reader's maximum (below 128: the default; otherwise `control[1] × 4`). Every frame, and the
/// way the stream ends (clean, truncated, too large), must match the reference parser.
pub fn frame_reader(data: &[u8]) {
    let [c0, c1, stream @ ..] = data else {
        return;
    };
    let chunk = if *c0 == 0 {
        16 * 1024
    } else {
        usize::from(*c0)
    };
    let max = if *c1 < 128 {
        MAX_FRAME_LEN
    } else {
        usize::from(*c1) * 4
    };
    let (expected, end) = reference(stream, max);
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let mut reader = FrameReader::with_max(
                Chunked {
                    data: stream,
                    chunk,
                },
                max,
            );
            let mut got = Vec::new();
            let result = loop {
                match reader.read_frame().await {
                    Ok(Some(frame)) => {
                        assert!(frame.len() <= max, "frame above the maximum");
                        got.push(frame);
                        assert!(got.len() <= expected.len(), "more frames than sent");
                    }
                    Ok(None) => break End::Clean,
                    Err(NetError::Truncated) => break End::Truncated,
                    Err(NetError::FrameTooLarge { len, max }) => break End::TooLarge { len, max },
                    Err(other) => panic!("unexpected frame error: {other}"),
                }
            };
            assert_eq!(got, expected, "frames differ from the reference parser");
            assert_eq!(result, end, "stream end differs from the reference parser");
        });
    });
}
