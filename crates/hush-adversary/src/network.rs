//! A frame-aware man in the middle on loopback: it accepts client connections, opens one to the
//! relay for each, parses `u32be length ‖ payload` frames in both directions and applies a
//! switchable [`Action`] to frames after the Noise handshake. Every byte the endpoints emit is
//! recorded per connection, in order.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Noise XK: the client sends messages 1 and 3, the relay message 2. (A key query is one
/// empty frame each way, also left alone.)
const HANDSHAKE_FRAMES_C2R: usize = 2;
const HANDSHAKE_FRAMES_R2C: usize = 1;
const LEN_PREFIX: usize = 4;
/// Frames larger than this cannot be valid (the Noise message limit); they pass unparsed.
const MAX_FRAME: usize = 65_535;

/// Which way a frame travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a client to the relay.
    ClientToRelay,
    /// From the relay to a client.
    RelayToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ClientToRelay => 0,
            Direction::RelayToClient => 1,
        }
    }
}

/// What to do with a selected frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Forward unchanged.
    Pass,
    /// Flip bit `bit` (modulo the payload's bit length) of the payload, then forward.
    FlipBit {
        /// Bit index into the payload.
        bit: usize,
    },
    /// Forward the length prefix and at most `keep` payload bytes (always fewer than the
    /// whole payload), then close the connection both ways.
    Truncate {
        /// Payload bytes kept.
        keep: usize,
    },
    /// Forward the frame, then send the same frame again (a replay of a delivered frame).
    Replay,
    /// Do not forward the frame.
    Drop,
    /// Hold the frame (and everything behind it in this direction) for a while, then forward.
    Delay(Duration),
    /// Hold the frame until the next one in this direction arrives, forward that one first,
    /// then the held one (a swap of two consecutive frames). If nothing follows within
    /// `max_hold`, the held frame is forwarded alone (nothing to swap with).
    Reorder {
        /// How long to wait for a frame to swap with.
        max_hold: Duration,
    },
}

/// Which post-handshake frames of a direction an action applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// The next `n` frames, then the direction goes back to passing.
    Next(usize),
    /// Every `k`-th frame (the k-th, 2k-th, …) from now on.
    EveryKth(usize),
    /// Every frame from now on.
    Always,
}

/// Everything one proxied connection carried, in order.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    /// Chunks as the endpoints emitted them, tagged with their direction, in arrival order.
    pub chunks: Vec<(Direction, Vec<u8>)>,
}

impl Transcript {
    /// All bytes one direction carried, concatenated.
    pub fn bytes(&self, direction: Direction) -> Vec<u8> {
        self.chunks
            .iter()
            .filter(|(d, _)| *d == direction)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
struct Rule {
    action: Action,
    count: Count,
    seen: usize,
    applied: usize,
}

#[derive(Default)]
struct Shared {
    rules: [Option<Rule>; 2],
    applied: [usize; 2],
    transcripts: Vec<Arc<Mutex<Transcript>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The action for the next post-handshake frame in `direction`.
    fn decide(&mut self, direction: Direction) -> Action {
        let i = direction.index();
        let Some(slot) = self.rules.get_mut(i) else {
            return Action::Pass;
        };
        let Some(rule) = slot.as_mut() else {
            return Action::Pass;
        };
        rule.seen += 1;
        let hit = match rule.count {
            Count::Next(n) => rule.applied < n,
            Count::EveryKth(k) => k > 0 && rule.seen % k == 0,
            Count::Always => true,
        };
        if !hit {
            return Action::Pass;
        }
        rule.applied += 1;
        let action = rule.action;
        if matches!(rule.count, Count::Next(n) if rule.applied >= n) {
            *slot = None;
        }
        if action != Action::Pass {
            if let Some(total) = self.applied.get_mut(i) {
                *total += 1;
            }
        }
        action
    }
}

/// A running attacker. Dropping it stops accepting; connections already proxied end when
/// either side closes.
pub struct NetworkAttacker {
    shared: Arc<Mutex<Shared>>,
    accept: JoinHandle<()>,
}

impl Drop for NetworkAttacker {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl NetworkAttacker {
    /// Listen on an ephemeral loopback port and forward every connection to `relay`.
    /// Returns the attacker and the address clients should use instead of the relay's.
    pub async fn start(relay: SocketAddr) -> std::io::Result<(NetworkAttacker, SocketAddr)> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let accept_shared = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = Arc::clone(&accept_shared);
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(relay).await else {
                        return;
                    };
                    proxy(client, upstream, shared).await;
                });
            }
        });
        Ok((NetworkAttacker { shared, accept }, addr))
    }

    /// Apply `action` to `count` post-handshake frames travelling in `direction` (replacing
    /// any earlier setting for that direction).
    pub fn set(&self, direction: Direction, action: Action, count: Count) {
        let mut shared = lock(&self.shared);
        if let Some(slot) = shared.rules.get_mut(direction.index()) {
            *slot = Some(Rule {
                action,
                count,
                seen: 0,
                applied: 0,
            });
        }
    }

    /// Stop attacking both directions: everything passes from now on.
    pub fn pass_all(&self) {
        let mut shared = lock(&self.shared);
        shared.rules = [None, None];
    }

    /// How many frames an action other than `Pass` was applied to, in `direction`.
    pub fn applied(&self, direction: Direction) -> usize {
        lock(&self.shared)
            .applied
            .get(direction.index())
            .copied()
            .unwrap_or(0)
    }

    /// How many client connections have been proxied so far.
    pub fn connections(&self) -> usize {
        lock(&self.shared).transcripts.len()
    }

    /// Every connection's transcript, in the order the connections were accepted.
    pub fn transcripts(&self) -> Vec<Transcript> {
        let handles = lock(&self.shared).transcripts.clone();
        handles.iter().map(|t| lock(t).clone()).collect()
    }

    /// Every byte recorded in both directions: connection after connection, each in order.
    pub fn recorded(&self) -> Vec<u8> {
        self.transcripts()
            .iter()
            .flat_map(|t| t.chunks.iter().flat_map(|(_, b)| b.iter().copied()))
            .collect()
    }
}

async fn proxy(client: TcpStream, upstream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let transcript = Arc::new(Mutex::new(Transcript::default()));
    lock(&shared).transcripts.push(Arc::clone(&transcript));
    let (client_read, client_write) = client.into_split();
    let (relay_read, relay_write) = upstream.into_split();
    let (kill, killed) = watch::channel(false);
    let kill = Arc::new(kill);
    let c2r = tokio::spawn(pump(
        client_read,
        relay_write,
        Direction::ClientToRelay,
        Arc::clone(&shared),
        Arc::clone(&transcript),
        Arc::clone(&kill),
        killed.clone(),
    ));
    let r2c = tokio::spawn(pump(
        relay_read,
        client_write,
        Direction::RelayToClient,
        shared,
        transcript,
        kill,
        killed,
    ));
    let _ = tokio::join!(c2r, r2c);
}

enum Flow {
    Continue,
    Close,
}

struct Pump {
    dst: OwnedWriteHalf,
    direction: Direction,
    shared: Arc<Mutex<Shared>>,
    handshake_left: usize,
    held: Option<Vec<u8>>,
    held_until: tokio::time::Instant,
}

impl Pump {
    async fn write(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(LEN_PREFIX + payload.len());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        self.dst.write_all(&out).await
    }

    async fn release_held(&mut self) -> std::io::Result<()> {
        if let Some(held) = self.held.take() {
            self.write(&held).await?;
        }
        Ok(())
    }

    async fn frame(&mut self, mut payload: Vec<u8>) -> std::io::Result<Flow> {
        if self.handshake_left > 0 {
            self.handshake_left -= 1;
            self.write(&payload).await?;
            return Ok(Flow::Continue);
        }
        let action = lock(&self.shared).decide(self.direction);
        // A frame arriving while one is held completes a swap, whatever its own action.
        if self.held.is_some() {
            self.write(&payload).await?;
            self.release_held().await?;
            return Ok(Flow::Continue);
        }
        match action {
            Action::Pass => self.write(&payload).await?,
            Action::FlipBit { bit } => {
                let bits = payload.len() * 8;
                if bits > 0 {
                    let bit = bit % bits;
                    if let Some(byte) = payload.get_mut(bit / 8) {
                        *byte ^= 1 << (bit % 8);
                    }
                }
                self.write(&payload).await?;
            }
            Action::Truncate { keep } => {
                let keep = keep.min(payload.len().saturating_sub(1));
                let mut out = Vec::with_capacity(LEN_PREFIX + keep);
                out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                out.extend_from_slice(payload.get(..keep).unwrap_or_default());
                self.dst.write_all(&out).await?;
                return Ok(Flow::Close);
            }
            Action::Replay => {
                self.write(&payload).await?;
                self.write(&payload).await?;
            }
            Action::Drop => {}
            Action::Delay(d) => {
                tokio::time::sleep(d).await;
                self.write(&payload).await?;
            }
            Action::Reorder { max_hold } => {
                self.held = Some(payload);
                self.held_until = tokio::time::Instant::now() + max_hold;
            }
        }
        Ok(Flow::Continue)
    }
}

/// Parse one complete frame off the front of `buf`.
fn take_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let prefix: [u8; LEN_PREFIX] = buf.get(..LEN_PREFIX)?.try_into().ok()?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME || buf.len() < LEN_PREFIX + len {
        return None;
    }
    let frame = buf.get(LEN_PREFIX..LEN_PREFIX + len)?.to_vec();
    buf.drain(..LEN_PREFIX + len);
    Some(frame)
}

fn oversized(buf: &[u8]) -> bool {
    buf.get(..LEN_PREFIX)
        .and_then(|p| <[u8; LEN_PREFIX]>::try_from(p).ok())
        .is_some_and(|p| u32::from_be_bytes(p) as usize > MAX_FRAME)
}

async fn pump(
    mut src: OwnedReadHalf,
    dst: OwnedWriteHalf,
    direction: Direction,
    shared: Arc<Mutex<Shared>>,
    transcript: Arc<Mutex<Transcript>>,
    kill: Arc<watch::Sender<bool>>,
    mut killed: watch::Receiver<bool>,
) {
    let mut state = Pump {
        dst,
        direction,
        shared,
        handshake_left: match direction {
            Direction::ClientToRelay => HANDSHAKE_FRAMES_C2R,
            Direction::RelayToClient => HANDSHAKE_FRAMES_R2C,
        },
        held: None,
        held_until: tokio::time::Instant::now(),
    };
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    'outer: loop {
        if oversized(&buf) {
            // Not a frame we understand: pass the raw bytes through.
            if state.dst.write_all(&buf).await.is_err() {
                break;
            }
            buf.clear();
        }
        while let Some(frame) = take_frame(&mut buf) {
            match state.frame(frame).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => {
                    let _ = state.dst.shutdown().await;
                    let _ = kill.send(true);
                    break 'outer;
                }
                Err(_) => break 'outer,
            }
        }
        let held = state.held.is_some();
        tokio::select! {
            _ = killed.changed() => break,
            _ = tokio::time::sleep_until(state.held_until), if held => {
                if state.release_held().await.is_err() {
                    break;
                }
            }
            read = src.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        // The source closed: release what is held, pass any partial frame on.
                        let _ = state.release_held().await;
                        let _ = state.dst.write_all(&buf).await;
                        let _ = state.dst.shutdown().await;
                        break;
                    }
                    Ok(n) => n,
                };
                let bytes = chunk.get(..n).unwrap_or_default();
                lock(&transcript).chunks.push((direction, bytes.to_vec()));
                buf.extend_from_slice(bytes);
            }
        }
    }
    // Either direction ending for good ends the connection.
    let _ = kill.send(true);
}
