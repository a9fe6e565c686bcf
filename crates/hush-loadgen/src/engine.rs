//! The traffic engine shared by every scenario and by the baseline: per connection, a writer
//! task (optional Subscribe, then paced or flat-out pipelined sends within a window of
//! unanswered requests, plus the acks the reader hands it) and a reader task (replies and
//! deliveries: latency, duplicate and loss bookkeeping, batched acks). A coordinator starts
//! the send phase once everyone is subscribed, waits out the drain, and stops everything.
//!
//! Envelope layout: see [`crate::envelope`].
//! Request ids carry their kind in the top two bits: sends use the sequence number itself.
//!
//! Multi-node runs give each client a [`Redial`]: when its connection drops (its node was
//! killed), the reader reconnects with the same identity to the next live node and hands the
//! new sending half to the writer, which subscribes again and re-sends every send that had no
//! reply yet (same sequence number and send time); acks the relay did not confirm go again.
//! Deliveries are classified by the relay's message id: a second delivery of an id whose ack
//! the relay confirmed is `redelivered_after_ack` (must be 0); of an id not yet confirmed,
//! `redelivered_unacked` (legitimate after a reconnect); a second stored copy of a send the
//! sender re-sent is a `resent_duplicate` (legitimate: the first copy may have been committed
//! before the node died, unacknowledged).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hush_proto::relay::{Delivery, GroupId, Reply, Request, ServerMessage, MAX_ACK_IDS};
use hush_proto::IdentityKeyPair;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::conn::{connect_relay, split_relay, Rx, Tx};
use crate::envelope::{is_group_control, read_header, write_header, HEADER_LEN};
use crate::relay::{Killer, Nodes, Probe, Snapshot};
use crate::util::{fail, BitSet, Percentiles, Result};

const KIND_MASK: u64 = 3 << 62;
const KIND_SEND: u64 = 0;
const KIND_ACK: u64 = 1 << 62;
const KIND_SUB: u64 = 2 << 62;

/// How long readers may take, after the stop signal, to get their last acks answered.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long to wait for every connection's Subscribe to be answered.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(120);
/// A paced send later than this behind its schedule counts as late.
const LATE_NS: u64 = 5_000_000;
/// Delay between "everyone is ready" and the first send.
const START_DELAY: Duration = Duration::from_millis(100);
/// Longest time a dropped client spends getting back on (all attempts together).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two reconnection attempts.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(50);

/// What to expect to be delivered before the drain ends.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Everything the relay stored during this run (recipients are connected).
    Stored,
    /// A known number of messages (stored earlier, recipients connect now).
    Count(u64),
    /// Everything the relay stored during this run, this many times (group fan-out).
    Fanout(u64),
}

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Envelope size in bytes (at least [`HEADER_LEN`], one more for group messages).
    pub size: usize,
    /// Length of the send phase.
    pub duration: Duration,
    /// Start of the send phase excluded from rates and latencies.
    pub warmup: Duration,
    /// Sends per second per sender; 0 = as fast as the window allows.
    pub rate_per_sender: f64,
    /// Most unanswered sends per connection.
    pub window: usize,
    /// Most ids per ack (at most 1000).
    pub ack_batch: usize,
    /// Longest time a delivery waits for its ack to be sent.
    pub ack_interval: Duration,
    /// Longest wait, after the send phase, for replies and stragglers.
    pub drain: Duration,
    /// What must arrive before the drain ends early.
    pub expect: Expect,
    /// Group mode: envelopes carry the group kind byte, and deliveries of commits and
    /// Welcomes (set-up traffic) are acked but not counted.
    pub group: bool,
}

/// Where a client's sends go.
#[derive(Debug, Clone)]
pub enum Target {
    /// `Send` to this identity key.
    Direct([u8; 32]),
    /// `GroupSend` to this group.
    Group(GroupId),
}

/// How a client gets back on after its connection drops: the same identity, to the next
/// live node.
#[derive(Clone)]
pub struct Redial {
    /// The run's nodes.
    pub nodes: Arc<Nodes>,
    /// Every client's identity.
    pub ids: Arc<Vec<IdentityKeyPair>>,
    /// This client's position in `ids`.
    pub identity: usize,
    /// The node it is connected to now.
    pub node: usize,
}

/// One connection's role and transport.
pub struct Client {
    /// Index, embedded in every envelope it sends.
    pub index: u32,
    /// Where its sends go (none: it only receives).
    pub send_to: Option<Target>,
    /// Whether it subscribes (receives deliveries).
    pub subscribe: bool,
    /// Receiving half.
    pub rx: Rx,
    /// Sending half.
    pub tx: Tx,
    /// How to reconnect when the connection drops (none: a drop ends the client).
    pub redial: Option<Redial>,
}

/// A node to SIGKILL this long after the send phase starts.
pub struct KillPlan {
    /// Delay from the start of the send phase.
    pub after: Duration,
    /// The node.
    pub killer: Killer,
}

/// Counters shared by all tasks of a run.
struct Shared {
    base: Instant,
    window_start_ns: AtomicU64,
    window_end_ns: AtomicU64,
    sent: AtomicU64,
    sent_in_window: AtomicU64,
    senders_done: AtomicU64,
    replies: AtomicU64,
    stored: AtomicU64,
    stored_in_window: AtomicU64,
    delivered: AtomicU64,
    delivered_unique: AtomicU64,
    delivered_in_window: AtomicU64,
    duplicates: AtomicU64,
    subscribed: AtomicU64,
    max_lag_ns: AtomicU64,
    late_sends: AtomicU64,
    /// When the kill happened (ns since `base`), `u64::MAX` before.
    kill_ns: AtomicU64,
    delivered_after_kill: AtomicU64,
    delivered_after_reconnect: AtomicU64,
    reconnects: AtomicU64,
    reconnect_failures: AtomicU64,
    max_reconnect_ns: AtomicU64,
    resubscribed: AtomicU64,
    resends: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            window_start_ns: AtomicU64::new(u64::MAX),
            window_end_ns: AtomicU64::new(u64::MAX),
            sent: AtomicU64::new(0),
            sent_in_window: AtomicU64::new(0),
            senders_done: AtomicU64::new(0),
            replies: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            stored_in_window: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            delivered_unique: AtomicU64::new(0),
            delivered_in_window: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            subscribed: AtomicU64::new(0),
            max_lag_ns: AtomicU64::new(0),
            late_sends: AtomicU64::new(0),
            kill_ns: AtomicU64::new(u64::MAX),
            delivered_after_kill: AtomicU64::new(0),
            delivered_after_reconnect: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            reconnect_failures: AtomicU64::new(0),
            max_reconnect_ns: AtomicU64::new(0),
            resubscribed: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    fn ns_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    fn in_window(&self, ns: u64) -> bool {
        ns >= self.window_start_ns.load(Ordering::Relaxed)
            && ns < self.window_end_ns.load(Ordering::Relaxed)
    }

    fn error(&self, label: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(label.to_owned()).or_insert(0) += 1;
        }
    }
}

/// Per-connection state shared by its writer and reader.
#[derive(Default)]
struct ConnState {
    sent: AtomicU64,
    sending_done: AtomicBool,
    /// Set by the reader when the connection drops, cleared by the writer once it has the
    /// new connection: no new sends meanwhile.
    disconnected: AtomicBool,
    /// Whether sends without a reply are tracked (reconnecting clients only).
    track_inflight: bool,
    /// Sends without a reply yet: sequence number -> send time (ns), for re-sending.
    inflight: Mutex<BTreeMap<u64, u64>>,
}

/// Messages from a connection's reader to its writer.
enum Ctl {
    /// A frame to send (an ack).
    Frame(Vec<u8>),
    /// The connection dropped and this is the new one's sending half.
    Reconnected(Tx),
}

/// What one connection's writer did.
#[derive(Debug, Default)]
struct WriterReport {
    index: u32,
    /// Sequence numbers sent again after a reconnect.
    resent: BitSet,
}

/// What one connection's reader saw.
#[derive(Debug, Default)]
struct ConnReport {
    index: u32,
    stored: BitSet,
    received: BTreeMap<u32, BitSet>,
    latencies_us: Vec<u32>,
    misrouted: u64,
    malformed: u64,
    control: u64,
    acked: u64,
    timed_out: bool,
    closed_early: bool,
    /// Relay message ids delivered -> whether the relay confirmed their ack.
    ids: HashMap<u64, bool>,
    /// (sender, seq) delivered again under a different message id (a second stored copy).
    copy_dups: Vec<(u32, u64)>,
    redelivered_after_ack: u64,
    redelivered_unacked: u64,
    /// How many times this connection was re-established.
    generation: u32,
}

/// The outcome of one run.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Connections.
    pub clients: usize,
    /// Of which send.
    pub senders: usize,
    /// Measurement window (send phase minus warm-up), seconds.
    pub window_secs: f64,
    /// Sends written.
    pub sent: u64,
    /// Sends written inside the window.
    pub sent_in_window: u64,
    /// Replies to sends.
    pub replies: u64,
    /// `Stored` replies.
    pub stored: u64,
    /// `Stored` replies received inside the window.
    pub stored_in_window: u64,
    /// Deliveries, duplicates included.
    pub delivered: u64,
    /// Distinct (sender, seq) delivered.
    pub delivered_unique: u64,
    /// Deliveries received inside the window.
    pub delivered_in_window: u64,
    /// Deliveries of a (sender, seq) already seen by its receiver.
    pub duplicates: u64,
    /// Messages the relay reported deleted by our acks.
    pub acked: u64,
    /// Error replies, by label.
    pub errors: BTreeMap<String, u64>,
    /// Whether everything expected arrived before the drain timeout.
    pub drained: bool,
    /// Seconds from the run's launch (first Subscribe) to the send phase's start.
    pub start_secs: f64,
    /// Seconds from launch to the end of the drain.
    pub drained_secs: f64,
    /// Seconds from the end of the send phase to the end of the drain.
    pub drain_secs: f64,
    /// End-to-end latencies of messages sent inside the window.
    pub latency: Percentiles,
    /// Stored sequence numbers, by sender index.
    pub stored_sets: BTreeMap<u32, BitSet>,
    /// Delivered sequence numbers, by sender index.
    pub received_sets: BTreeMap<u32, BitSet>,
    /// Delivered sequence numbers by receiver index, then by sender index (group losses).
    pub received_by: BTreeMap<u32, BTreeMap<u32, BitSet>>,
    /// Group commits and Welcomes delivered (set-up traffic, acked, not counted above).
    pub control_deliveries: u64,
    /// Snapshot at the start of the window.
    pub snap_start: Snapshot,
    /// Snapshot at the end of the window.
    pub snap_end: Snapshot,
    /// Deliveries from a sender other than the expected partner.
    pub misrouted: u64,
    /// Deliveries whose envelope did not parse.
    pub malformed: u64,
    /// Connections that did not finish within the stop grace period.
    pub timed_out_connections: u64,
    /// Connections the peer closed before the stop signal.
    pub closed_connections: u64,
    /// Largest delay of a paced send behind its schedule, ms.
    pub max_send_lag_ms: f64,
    /// Paced sends more than 5 ms behind schedule.
    pub late_sends: u64,
    /// Deliveries of a message id whose ack the relay had confirmed (must be 0).
    pub redelivered_after_ack: u64,
    /// Deliveries of a message id delivered before but not (confirmed) acked: after a
    /// reconnect, legitimate.
    pub redelivered_unacked: u64,
    /// Second stored copies (new message id) of a send its sender re-sent after a reconnect.
    pub resent_duplicates: u64,
    /// Second stored copies of a send that was never re-sent (the relay stored one send
    /// twice: must be 0).
    pub unexplained_duplicates: u64,
    /// Sends written again after a reconnect.
    pub resends: u64,
    /// Connections re-established after a drop.
    pub reconnects: u64,
    /// Connections that could not be re-established in time.
    pub reconnect_failures: u64,
    /// Longest time from noticing a drop to being connected again, ms.
    pub max_reconnect_ms: f64,
    /// Subscribe requests answered on re-established connections.
    pub resubscribed: u64,
    /// Seconds into the send phase at which a node was killed.
    pub killed_at_s: Option<f64>,
    /// Deliveries received after the kill.
    pub delivered_after_kill: u64,
    /// Deliveries received on re-established connections.
    pub delivered_after_reconnect: u64,
}

impl RunReport {
    /// Stored but never delivered, and delivered without a `Stored` reply, across all senders.
    pub fn losses_against(&self, received: &BTreeMap<u32, BitSet>) -> (u64, u64) {
        let empty = BitSet::default();
        let lost = self
            .stored_sets
            .iter()
            .map(|(i, s)| s.count_missing_from(received.get(i).unwrap_or(&empty)))
            .sum();
        let unconfirmed = received
            .iter()
            .map(|(i, r)| r.count_missing_from(self.stored_sets.get(i).unwrap_or(&empty)))
            .sum();
        (lost, unconfirmed)
    }

    /// Group losses and unconfirmed deliveries: every stored message of a sender in
    /// `members` must reach every other member once.
    pub fn group_losses(&self, members: &[u32]) -> (u64, u64) {
        let empty_set = BitSet::default();
        let empty_map = BTreeMap::new();
        let (mut lost, mut unconfirmed) = (0, 0);
        for &r in members {
            let got = self.received_by.get(&r).unwrap_or(&empty_map);
            for (s, stored) in self.stored_sets.iter().filter(|(s, _)| **s != r) {
                lost += stored.count_missing_from(got.get(s).unwrap_or(&empty_set));
            }
            for (s, set) in got {
                unconfirmed +=
                    set.count_missing_from(self.stored_sets.get(s).unwrap_or(&empty_set));
            }
        }
        (lost, unconfirmed)
    }

    /// Relay CPU use during the window, all nodes together, as a share of one core (1.0 =
    /// one core busy).
    pub fn relay_cpu_cores(&self, ticks_per_sec: u64) -> f64 {
        cores(
            &self.snap_start,
            &self.snap_end,
            self.relay_ticks(),
            ticks_per_sec,
        )
    }

    /// CPU ticks of each node during the window (0 for a node unreadable at either edge).
    fn node_ticks(&self) -> Vec<u64> {
        let end = &self.snap_end.node_cpu_ticks;
        self.snap_start
            .node_cpu_ticks
            .iter()
            .enumerate()
            .map(|(i, start)| match (start, end.get(i).copied().flatten()) {
                (Some(a), Some(b)) => b.saturating_sub(*a),
                _ => 0,
            })
            .collect()
    }

    fn relay_ticks(&self) -> u64 {
        self.node_ticks().iter().sum()
    }

    /// Each node's CPU use during the window, in cores. A node killed during the window
    /// reads as the CPU it used until the kill, spread over the whole window, when its
    /// figures are still readable, else 0.
    pub fn node_cpu_cores(&self, ticks_per_sec: u64) -> Vec<f64> {
        self.node_ticks()
            .into_iter()
            .map(|t| cores(&self.snap_start, &self.snap_end, t, ticks_per_sec))
            .collect()
    }

    /// This process's CPU use during the window, as a share of one core.
    pub fn self_cpu_cores(&self, ticks_per_sec: u64) -> f64 {
        cores(
            &self.snap_start,
            &self.snap_end,
            self.snap_end
                .self_cpu_ticks
                .saturating_sub(self.snap_start.self_cpu_ticks),
            ticks_per_sec,
        )
    }

    /// CPU used by everything else on the machine during the window (other processes,
    /// kernel threads), as a share of one core: non-zero means the figures are disturbed.
    pub fn other_cpu_cores(&self, ticks_per_sec: u64) -> f64 {
        let machine = self
            .snap_end
            .machine_cpu_ticks
            .saturating_sub(self.snap_start.machine_cpu_ticks);
        let ours = self.relay_ticks()
            + self
                .snap_end
                .self_cpu_ticks
                .saturating_sub(self.snap_start.self_cpu_ticks);
        cores(
            &self.snap_start,
            &self.snap_end,
            machine.saturating_sub(ours),
            ticks_per_sec,
        )
    }

    /// CPU of each service process name (PostgreSQL backends, nats-server) during the
    /// window, in cores (part of [`RunReport::other_cpu_cores`]).
    pub fn service_cpu_cores(&self, ticks_per_sec: u64) -> BTreeMap<String, f64> {
        self.snap_end
            .service_cpu_ticks
            .iter()
            .map(|(name, end)| {
                let start = self
                    .snap_start
                    .service_cpu_ticks
                    .get(name)
                    .copied()
                    .unwrap_or(*end);
                (
                    name.clone(),
                    cores(
                        &self.snap_start,
                        &self.snap_end,
                        end.saturating_sub(start),
                        ticks_per_sec,
                    ),
                )
            })
            .collect()
    }

    /// Mean group-commit batch size during the window (relay metrics), 0 if unknown.
    pub fn mean_commit_batch(&self) -> f64 {
        let batches = self.snap_end.metric("hush_commit_batches_total")
            - self.snap_start.metric("hush_commit_batches_total");
        let ops = self.snap_end.metric("hush_commit_ops_total")
            - self.snap_start.metric("hush_commit_ops_total");
        if batches > 0.0 {
            ops / batches
        } else {
            0.0
        }
    }

    /// Group commits per second during the window, 0 if unknown.
    pub fn commits_per_sec(&self) -> f64 {
        let batches = self.snap_end.metric("hush_commit_batches_total")
            - self.snap_start.metric("hush_commit_batches_total");
        if self.window_secs > 0.0 {
            batches / self.window_secs
        } else {
            0.0
        }
    }
}

fn cores(start: &Snapshot, end: &Snapshot, ticks: u64, ticks_per_sec: u64) -> f64 {
    match (start.at, end.at) {
        (Some(a), Some(b)) if b > a && ticks_per_sec > 0 => {
            ticks as f64 / ticks_per_sec as f64 / b.duration_since(a).as_secs_f64()
        }
        _ => 0.0,
    }
}

/// Wait until `at`, then for a window slot; `None` once `end` passes first.
async fn send_slot(at: Instant, end: Instant, window: &Semaphore) -> Option<Instant> {
    if at >= end {
        return None;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(end.into()) => None,
        permit = async {
            tokio::time::sleep_until(at.into()).await;
            window.acquire().await
        } => match permit {
            Ok(p) => {
                p.forget();
                Some(at)
            }
            Err(_) => None,
        },
    }
}

struct WriterArgs {
    tx: Tx,
    index: u32,
    send_to: Option<Target>,
    subscribe: bool,
    /// Whether a failed write waits for the reader's new connection instead of ending.
    reconnects: bool,
    /// Position among senders, to stagger paced senders evenly.
    phase: f64,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    window: Arc<Semaphore>,
    ctl: mpsc::UnboundedReceiver<Ctl>,
    go: watch::Receiver<Option<Instant>>,
}

/// The request carrying one send.
fn send_request(to: &Target, envelope: &[u8], seq: u64) -> Vec<u8> {
    match to {
        Target::Group(group_id) => Request::GroupSend {
            group_id: group_id.clone(),
            envelope: envelope.to_vec(),
        },
        Target::Direct(recipient) => Request::Send {
            recipient: *recipient,
            envelope: envelope.to_vec(),
        },
    }
    .encode(KIND_SEND | seq)
}

/// A writer's current connection: after a failed write (reconnecting clients only) frames
/// are dropped until the reader hands over a new one.
struct Link {
    tx: Tx,
    dead: bool,
    reconnects: bool,
}

impl Link {
    async fn put(&mut self, frame: &[u8]) -> Result<()> {
        if self.dead {
            return Ok(());
        }
        match self.tx.send(frame).await {
            Ok(()) => Ok(()),
            Err(_) if self.reconnects => {
                self.dead = true;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

async fn writer(a: WriterArgs) -> Result<WriterReport> {
    let WriterArgs {
        tx,
        index,
        send_to,
        subscribe,
        reconnects,
        phase,
        plan,
        shared,
        state,
        window,
        mut ctl,
        mut go,
    } = a;
    let mut link = Link {
        tx,
        dead: false,
        reconnects,
    };
    let mut report = WriterReport {
        index,
        ..Default::default()
    };
    if subscribe {
        link.put(&Request::Subscribe.encode(KIND_SUB)).await?;
    }
    let interval =
        (plan.rate_per_sender > 0.0).then(|| Duration::from_secs_f64(1.0 / plan.rate_per_sender));
    let mut sending = send_to.is_some();
    if !sending {
        state.sending_done.store(true, Ordering::SeqCst);
    }
    let mut envelope = vec![0u8; plan.size.max(HEADER_LEN + usize::from(plan.group))];
    let mut seq = 0u64;
    let mut next_at: Option<Instant> = None;
    let mut go_open = true;
    loop {
        let start = *go.borrow_and_update();
        if let (Some(s), None) = (start, next_at) {
            next_at = Some(match interval {
                Some(iv) => s + iv.mul_f64(phase),
                None => s,
            });
        }
        let end = start.map(|s| s + plan.duration);
        let up = !link.dead && !state.disconnected.load(Ordering::SeqCst);
        tokio::select! {
            biased;
            message = ctl.recv() => match message {
                Some(Ctl::Frame(frame)) => link.put(&frame).await?,
                Some(Ctl::Reconnected(tx)) => {
                    link.tx = tx;
                    link.dead = false;
                    state.disconnected.store(false, Ordering::SeqCst);
                    if subscribe {
                        link.put(&Request::Subscribe.encode(KIND_SUB)).await?;
                    }
                    if let Some(to) = &send_to {
                        // Every send without a reply, again: same sequence number and send
                        // time (so latency includes the fail-over).
                        let again: Vec<(u64, u64)> = state
                            .inflight
                            .lock()
                            .map(|m| m.iter().map(|(s, t)| (*s, *t)).collect())
                            .unwrap_or_default();
                        for (s, ts) in again {
                            write_header(&mut envelope, plan.group, index, s, ts);
                            link.put(&send_request(to, &envelope, s)).await?;
                            report.resent.insert(s);
                            shared.resends.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                None => break,
            },
            changed = go.changed(), if start.is_none() && go_open => {
                if changed.is_err() {
                    go_open = false;
                }
            }
            slot = send_slot(next_at.unwrap_or_else(Instant::now), end.unwrap_or_else(Instant::now), &window),
                if sending && up && next_at.is_some() => match slot {
                None => {
                    sending = false;
                    state.sending_done.store(true, Ordering::SeqCst);
                    shared.senders_done.fetch_add(1, Ordering::SeqCst);
                }
                Some(scheduled) => {
                    let Some(to) = &send_to else { break };
                    let now_ns = shared.now_ns();
                    // Latency is timed from the actual send; how late paced sends were
                    // against their schedule is reported separately (a full window shows
                    // up there rather than being hidden).
                    if interval.is_some() {
                        let lag = now_ns.saturating_sub(shared.ns_at(scheduled));
                        shared.max_lag_ns.fetch_max(lag, Ordering::Relaxed);
                        if lag > LATE_NS {
                            shared.late_sends.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    write_header(&mut envelope, plan.group, index, seq, now_ns);
                    let request = send_request(to, &envelope, seq);
                    if state.track_inflight {
                        if let Ok(mut m) = state.inflight.lock() {
                            m.insert(seq, now_ns);
                        }
                    }
                    state.sent.fetch_add(1, Ordering::SeqCst);
                    shared.sent.fetch_add(1, Ordering::SeqCst);
                    if shared.in_window(now_ns) {
                        shared.sent_in_window.fetch_add(1, Ordering::Relaxed);
                    }
                    link.put(&request).await?;
                    seq += 1;
                    if let Some(iv) = interval {
                        next_at = Some(scheduled + iv);
                    }
                }
            },
        }
    }
    if sending {
        // Stopped before the send phase ended (the reader gave up).
        state.sending_done.store(true, Ordering::SeqCst);
        shared.senders_done.fetch_add(1, Ordering::SeqCst);
    }
    if !link.dead {
        link.tx.shutdown().await;
    }
    Ok(report)
}

struct ReaderArgs {
    rx: Rx,
    index: u32,
    expect_from: Option<u32>,
    redial: Option<Redial>,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    window: Arc<Semaphore>,
    ctl: mpsc::UnboundedSender<Ctl>,
    stop: watch::Receiver<bool>,
}

struct Acks {
    pending: Vec<u64>,
    /// Acks sent and not answered yet: request counter -> the ids they carry.
    outstanding: BTreeMap<u64, Vec<u64>>,
    counter: u64,
    /// Most ids per ack.
    batch: usize,
    /// When the oldest pending id arrived.
    oldest: Instant,
}

impl Acks {
    fn push(&mut self, id: u64) {
        if self.pending.is_empty() {
            self.oldest = Instant::now();
        }
        self.pending.push(id);
    }

    fn due(&self, interval: Duration) -> Instant {
        self.oldest + interval
    }

    fn flush(&mut self, ctl: &mpsc::UnboundedSender<Ctl>) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        for ids in pending.chunks(self.batch.max(1)) {
            self.counter += 1;
            let frame = Request::Ack { ids: ids.to_vec() }.encode(KIND_ACK | self.counter);
            ctl.send(Ctl::Frame(frame))
                .map_err(|_| fail("writer task ended"))?;
            self.outstanding.insert(self.counter, ids.to_vec());
        }
        Ok(())
    }

    /// After a reconnect: acks never answered go out again on the new connection.
    fn requeue(&mut self) {
        for (_, ids) in std::mem::take(&mut self.outstanding) {
            if self.pending.is_empty() {
                self.oldest = Instant::now();
            }
            self.pending.extend(ids);
        }
    }
}

/// Get back on with the same identity at the next live node, within [`RECONNECT_TIMEOUT`].
async fn reconnect(r: &mut Redial) -> Result<(Rx, Tx)> {
    let deadline = Instant::now() + RECONNECT_TIMEOUT;
    let identity = r
        .ids
        .get(r.identity)
        .ok_or_else(|| fail("no such client"))?;
    loop {
        let next = r
            .nodes
            .next_alive(r.node)
            .ok_or_else(|| fail("no live node"))?;
        let addr = r.nodes.addr(next)?;
        r.node = next;
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Ok(conn)) =
            tokio::time::timeout(left, connect_relay(addr, r.nodes.key, identity, None)).await
        {
            return Ok(split_relay(conn));
        }
        if Instant::now() + RECONNECT_BACKOFF >= deadline {
            return Err(fail("timed out"));
        }
        tokio::time::sleep(RECONNECT_BACKOFF).await;
    }
}

async fn reader(a: ReaderArgs) -> Result<ConnReport> {
    let ReaderArgs {
        mut rx,
        index,
        expect_from,
        mut redial,
        plan,
        shared,
        state,
        window,
        ctl,
        mut stop,
    } = a;
    let mut report = ConnReport {
        index,
        ..Default::default()
    };
    let ack_batch = plan.ack_batch.clamp(1, MAX_ACK_IDS);
    let ack_interval = plan.ack_interval.max(Duration::from_millis(1));
    let mut acks = Acks {
        pending: Vec::with_capacity(ack_batch),
        outstanding: BTreeMap::new(),
        counter: 0,
        batch: ack_batch,
        oldest: Instant::now(),
    };
    let mut replies = 0u64;
    let mut stop_deadline: Option<Instant> = None;
    loop {
        if let Some(deadline) = stop_deadline {
            let answered = state.sending_done.load(Ordering::SeqCst)
                && replies >= state.sent.load(Ordering::SeqCst);
            if answered && acks.pending.is_empty() && acks.outstanding.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                report.timed_out = true;
                break;
            }
        }
        tokio::select! {
            message = rx.recv() => {
                let bytes = match (message, redial.as_mut()) {
                    (Ok(Some(bytes)), _) => bytes,
                    (Ok(None), None) => {
                        report.closed_early = stop_deadline.is_none();
                        break;
                    }
                    (Err(e), None) => return Err(e.into()),
                    (_, Some(r)) => {
                        // The connection dropped (its node died): back on at another node.
                        state.disconnected.store(true, Ordering::SeqCst);
                        let began = Instant::now();
                        match reconnect(r).await {
                            Ok((new_rx, new_tx)) => {
                                rx = new_rx;
                                report.generation += 1;
                                shared.reconnects.fetch_add(1, Ordering::SeqCst);
                                shared.max_reconnect_ns.fetch_max(
                                    began.elapsed().as_nanos() as u64,
                                    Ordering::Relaxed,
                                );
                                ctl.send(Ctl::Reconnected(new_tx))
                                    .map_err(|_| fail("writer task ended"))?;
                                acks.requeue();
                                acks.flush(&ctl)?;
                                continue;
                            }
                            Err(e) => {
                                shared.reconnect_failures.fetch_add(1, Ordering::SeqCst);
                                shared.error(&format!("reconnect: {e}"));
                                report.closed_early = true;
                                break;
                            }
                        }
                    }
                };
                match ServerMessage::decode(&bytes)? {
                    ServerMessage::Deliver(d) => {
                        on_delivery(&d, expect_from, plan.group, &shared, &mut report);
                        acks.push(d.id);
                        if acks.pending.len() >= ack_batch {
                            acks.flush(&ctl)?;
                        }
                    }
                    ServerMessage::Response { request_id, result } => match request_id & KIND_MASK {
                        KIND_SEND => {
                            if state.track_inflight {
                                if let Ok(mut m) = state.inflight.lock() {
                                    m.remove(&request_id);
                                }
                            }
                            window.add_permits(1);
                            replies += 1;
                            shared.replies.fetch_add(1, Ordering::SeqCst);
                            match result {
                                Ok(Reply::Stored { .. }) => {
                                    report.stored.insert(request_id);
                                    shared.stored.fetch_add(1, Ordering::SeqCst);
                                    if shared.in_window(shared.now_ns()) {
                                        shared.stored_in_window.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                Ok(other) => shared.error(&format!("send: unexpected {other:?}")),
                                Err(e) => shared.error(&format!("send: {}", e.code.label())),
                            }
                        }
                        KIND_ACK => {
                            let ids = acks.outstanding.remove(&(request_id & !KIND_MASK));
                            match result {
                                Ok(Reply::Acked { removed }) => {
                                    report.acked += u64::from(removed);
                                    for id in ids.unwrap_or_default() {
                                        if let Some(confirmed) = report.ids.get_mut(&id) {
                                            *confirmed = true;
                                        }
                                    }
                                }
                                Ok(other) => shared.error(&format!("ack: unexpected {other:?}")),
                                Err(e) => shared.error(&format!("ack: {}", e.code.label())),
                            }
                        }
                        KIND_SUB => match result {
                            Ok(Reply::Subscribed) if report.generation > 0 => {
                                shared.resubscribed.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(Reply::Subscribed) => {
                                shared.subscribed.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(other) => shared.error(&format!("subscribe: unexpected {other:?}")),
                            Err(e) => shared.error(&format!("subscribe: {}", e.code.label())),
                        },
                        _ => shared.error("reply to an unknown request"),
                    },
                }
            }
            _ = stop.changed(), if stop_deadline.is_none() => {
                stop_deadline = Some(Instant::now() + STOP_GRACE);
                acks.flush(&ctl)?;
            }
            // Armed only while acks are pending, so idle connections cost no timer wake-ups.
            _ = tokio::time::sleep_until(acks.due(ack_interval).into()), if !acks.pending.is_empty() => {
                acks.flush(&ctl)?;
            }
        }
    }
    // Dropping `ctl` lets the writer finish and close its half.
    drop(ctl);
    Ok(report)
}

fn on_delivery(
    d: &Delivery,
    expect_from: Option<u32>,
    group: bool,
    shared: &Shared,
    report: &mut ConnReport,
) {
    if group && is_group_control(&d.envelope) {
        report.control += 1;
        return;
    }
    let now_ns = shared.now_ns();
    shared.delivered.fetch_add(1, Ordering::Relaxed);
    if shared.in_window(now_ns) {
        shared.delivered_in_window.fetch_add(1, Ordering::Relaxed);
    }
    if now_ns >= shared.kill_ns.load(Ordering::Relaxed) {
        shared.delivered_after_kill.fetch_add(1, Ordering::Relaxed);
    }
    if report.generation > 0 {
        shared
            .delivered_after_reconnect
            .fetch_add(1, Ordering::Relaxed);
    }
    // Whether this message id came before, and whether its ack was confirmed.
    let before = match report.ids.entry(d.id) {
        Entry::Occupied(e) => Some(*e.get()),
        Entry::Vacant(v) => {
            v.insert(false);
            None
        }
    };
    let Some((sender, seq, ts_ns)) = read_header(&d.envelope, group) else {
        report.malformed += 1;
        return;
    };
    if expect_from.is_some_and(|e| e != sender) {
        report.misrouted += 1;
    }
    if report.received.entry(sender).or_default().insert(seq) {
        shared.delivered_unique.fetch_add(1, Ordering::SeqCst);
    } else {
        shared.duplicates.fetch_add(1, Ordering::Relaxed);
        match before {
            Some(true) => report.redelivered_after_ack += 1,
            Some(false) => report.redelivered_unacked += 1,
            None => report.copy_dups.push((sender, seq)),
        }
    }
    if shared.in_window(ts_ns) {
        let us = now_ns.saturating_sub(ts_ns) / 1000;
        report
            .latencies_us
            .push(u32::try_from(us).unwrap_or(u32::MAX));
    }
}

/// A client's partner for loss accounting: who is expected to send to `index`.
pub type ExpectFrom = dyn Fn(u32) -> Option<u32> + Send + Sync;

/// Run `clients` through one send phase and drain; `probe` is sampled at the window's edges.
pub async fn run(
    clients: Vec<Client>,
    plan: Plan,
    expect_from: &ExpectFrom,
    probe: &Probe,
) -> Result<RunReport> {
    run_with(clients, plan, expect_from, probe, None).await
}

/// [`run`], SIGKILLing a node during the send phase when `kill` says so.
pub async fn run_with(
    clients: Vec<Client>,
    plan: Plan,
    expect_from: &ExpectFrom,
    probe: &Probe,
    kill: Option<KillPlan>,
) -> Result<RunReport> {
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared::new());
    let launched = Instant::now();
    let (go_tx, go_rx) = watch::channel(None::<Instant>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let total = clients.len();
    let senders = clients.iter().filter(|c| c.send_to.is_some()).count();
    let subscribers = clients.iter().filter(|c| c.subscribe).count() as u64;
    let mut writers: Vec<JoinHandle<Result<WriterReport>>> = Vec::with_capacity(total);
    let mut readers: Vec<JoinHandle<Result<ConnReport>>> = Vec::with_capacity(total);
    let mut ordinal = 0usize;
    for c in clients {
        let state = Arc::new(ConnState {
            track_inflight: c.redial.is_some(),
            ..Default::default()
        });
        let window = Arc::new(Semaphore::new(plan.window.max(1)));
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let phase = ordinal as f64 / senders.max(1) as f64;
        if c.send_to.is_some() {
            ordinal += 1;
        }
        writers.push(tokio::spawn(writer(WriterArgs {
            tx: c.tx,
            index: c.index,
            send_to: c.send_to,
            subscribe: c.subscribe,
            reconnects: c.redial.is_some(),
            phase,
            plan: Arc::clone(&plan),
            shared: Arc::clone(&shared),
            state: Arc::clone(&state),
            window: Arc::clone(&window),
            ctl: ctl_rx,
            go: go_rx.clone(),
        })));
        readers.push(tokio::spawn(reader(ReaderArgs {
            rx: c.rx,
            index: c.index,
            expect_from: expect_from(c.index),
            redial: c.redial,
            plan: Arc::clone(&plan),
            shared: Arc::clone(&shared),
            state,
            window,
            ctl: ctl_tx,
            stop: stop_rx.clone(),
        })));
    }

    let subscribe_deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
    while shared.subscribed.load(Ordering::SeqCst) < subscribers {
        if Instant::now() >= subscribe_deadline || readers.iter().any(|r| r.is_finished()) {
            let _ = stop_tx.send(true);
            return Err(fail(format!(
                "only {} of {subscribers} subscriptions answered",
                shared.subscribed.load(Ordering::SeqCst)
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let start = Instant::now() + START_DELAY;
    let end = start + plan.duration;
    let window_start = start + plan.warmup.min(plan.duration);
    shared
        .window_start_ns
        .store(shared.ns_at(window_start), Ordering::SeqCst);
    shared
        .window_end_ns
        .store(shared.ns_at(end), Ordering::SeqCst);
    let _ = go_tx.send(Some(start));
    let kill_task = kill.map(|k| {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            tokio::time::sleep_until((start + k.after).into()).await;
            let result = k.killer.kill();
            let at = start.elapsed().as_secs_f64();
            shared.kill_ns.store(shared.now_ns(), Ordering::SeqCst);
            match result {
                Ok(()) => println!(
                    "[kill] node {} (pid {}) SIGKILLed {at:.2} s into the send phase",
                    k.killer.index, k.killer.pid
                ),
                Err(e) => {
                    println!("[kill] node {}: {e}", k.killer.index);
                    shared.error("kill failed");
                }
            }
            at
        })
    });
    tokio::time::sleep_until(window_start.into()).await;
    let snap_start = probe.snapshot().await;
    tokio::time::sleep_until(end.into()).await;
    let snap_end = probe.snapshot().await;

    let drain_deadline = Instant::now() + plan.drain;
    let mut drained = false;
    loop {
        let expected = match plan.expect {
            Expect::Stored => shared.stored.load(Ordering::SeqCst),
            Expect::Count(n) => n,
            Expect::Fanout(k) => shared.stored.load(Ordering::SeqCst).saturating_mul(k),
        };
        let done_sending = shared.senders_done.load(Ordering::SeqCst) >= senders as u64
            && shared.replies.load(Ordering::SeqCst) >= shared.sent.load(Ordering::SeqCst);
        if done_sending && shared.delivered_unique.load(Ordering::SeqCst) >= expected {
            drained = true;
            break;
        }
        if Instant::now() >= drain_deadline || readers.iter().any(|r| r.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained_at = Instant::now();
    let _ = stop_tx.send(true);

    let mut report = RunReport {
        clients: total,
        senders,
        window_secs: end.saturating_duration_since(window_start).as_secs_f64(),
        drained,
        start_secs: start.saturating_duration_since(launched).as_secs_f64(),
        drained_secs: drained_at.saturating_duration_since(launched).as_secs_f64(),
        drain_secs: drained_at.saturating_duration_since(end).as_secs_f64(),
        snap_start,
        snap_end,
        ..Default::default()
    };
    let join_deadline = tokio::time::Instant::now() + STOP_GRACE + Duration::from_secs(5);
    let mut latencies = Vec::new();
    let mut copy_dups: Vec<(u32, u64)> = Vec::new();
    let mut first_error: Option<crate::util::Error> = None;
    for handle in readers {
        match tokio::time::timeout_at(join_deadline, handle).await {
            Ok(Ok(Ok(conn))) => {
                report.misrouted += conn.misrouted;
                report.malformed += conn.malformed;
                report.acked += conn.acked;
                report.control_deliveries += conn.control;
                report.timed_out_connections += u64::from(conn.timed_out);
                report.closed_connections += u64::from(conn.closed_early);
                report.redelivered_after_ack += conn.redelivered_after_ack;
                report.redelivered_unacked += conn.redelivered_unacked;
                copy_dups.extend_from_slice(&conn.copy_dups);
                latencies.extend_from_slice(&conn.latencies_us);
                if conn.stored.len() > 0 {
                    report.stored_sets.insert(conn.index, conn.stored);
                }
                for (sender, set) in &conn.received {
                    report
                        .received_sets
                        .entry(*sender)
                        .or_default()
                        .union_with(set);
                }
                report.received_by.insert(conn.index, conn.received);
            }
            Ok(Ok(Err(e))) => {
                first_error.get_or_insert(e);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e.into());
            }
            Err(_) => report.timed_out_connections += 1,
        }
    }
    let mut resent: BTreeMap<u32, BitSet> = BTreeMap::new();
    for handle in writers {
        match tokio::time::timeout_at(join_deadline, handle).await {
            Ok(Ok(Ok(w))) => {
                if w.resent.len() > 0 {
                    resent.insert(w.index, w.resent);
                }
            }
            Ok(Ok(Err(e))) => {
                first_error.get_or_insert(e);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e.into());
            }
            Err(_) => report.timed_out_connections += 1,
        }
    }
    if let Some(task) = kill_task {
        match tokio::time::timeout_at(join_deadline, task).await {
            Ok(Ok(at)) => report.killed_at_s = Some(at),
            _ => {
                first_error.get_or_insert(fail("the kill task did not finish"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(fail(format!("a connection failed: {e}")));
    }
    for (sender, seq) in copy_dups {
        if resent.get(&sender).is_some_and(|r| r.contains(seq)) {
            report.resent_duplicates += 1;
        } else {
            report.unexplained_duplicates += 1;
        }
    }
    report.latency = Percentiles::of(&mut latencies);
    report.sent = shared.sent.load(Ordering::SeqCst);
    report.sent_in_window = shared.sent_in_window.load(Ordering::SeqCst);
    report.replies = shared.replies.load(Ordering::SeqCst);
    report.stored = shared.stored.load(Ordering::SeqCst);
    report.stored_in_window = shared.stored_in_window.load(Ordering::SeqCst);
    report.delivered = shared.delivered.load(Ordering::SeqCst);
    report.delivered_unique = shared.delivered_unique.load(Ordering::SeqCst);
    report.delivered_in_window = shared.delivered_in_window.load(Ordering::SeqCst);
    report.duplicates = shared.duplicates.load(Ordering::SeqCst);
    report.max_send_lag_ms = shared.max_lag_ns.load(Ordering::SeqCst) as f64 / 1e6;
    report.late_sends = shared.late_sends.load(Ordering::SeqCst);
    report.resends = shared.resends.load(Ordering::SeqCst);
    report.reconnects = shared.reconnects.load(Ordering::SeqCst);
    report.reconnect_failures = shared.reconnect_failures.load(Ordering::SeqCst);
    report.max_reconnect_ms = shared.max_reconnect_ns.load(Ordering::SeqCst) as f64 / 1e6;
    report.resubscribed = shared.resubscribed.load(Ordering::SeqCst);
    report.delivered_after_kill = shared.delivered_after_kill.load(Ordering::SeqCst);
    report.delivered_after_reconnect = shared.delivered_after_reconnect.load(Ordering::SeqCst);
    report.errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_losses_are_counted_per_receiver() {
        let set = |v: &[u64]| {
            let mut b = BitSet::default();
            for &i in v {
                b.insert(i);
            }
            b
        };
        let mut r = RunReport::default();
        r.stored_sets.insert(0, set(&[0, 1, 2]));
        // Member 1 got everything; member 2 missed seq 1 (which member 1 got, so a union of
        // receivers would hide it) and got seq 7, never stored; the sender is not its own
        // recipient.
        r.received_by.insert(1, [(0, set(&[0, 1, 2]))].into());
        r.received_by.insert(2, [(0, set(&[0, 2, 7]))].into());
        assert_eq!(r.group_losses(&[0, 1, 2]), (1, 1));
        // A member that received nothing lost all three.
        assert_eq!(r.group_losses(&[0, 1, 2, 3]), (4, 1));
    }

    #[test]
    fn acks_go_in_batches_and_unanswered_ones_go_again_after_a_reconnect() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut acks = Acks {
            pending: Vec::new(),
            outstanding: BTreeMap::new(),
            counter: 0,
            batch: 2,
            oldest: Instant::now(),
        };
        for id in 10..15 {
            acks.push(id);
        }
        acks.flush(&tx).unwrap();
        // Five ids, at most two per ack: three acks, all outstanding.
        let mut frames = 0;
        while let Ok(Ctl::Frame(_)) = rx.try_recv() {
            frames += 1;
        }
        assert_eq!(frames, 3);
        assert_eq!(acks.outstanding.len(), 3);
        // The relay answered the first; the connection dropped before the others.
        assert_eq!(acks.outstanding.remove(&1), Some(vec![10, 11]));
        acks.requeue();
        assert!(acks.outstanding.is_empty());
        assert_eq!(acks.pending, vec![12, 13, 14]);
        acks.flush(&tx).unwrap();
        assert_eq!(
            acks.outstanding.keys().copied().collect::<Vec<_>>(),
            vec![4, 5]
        );
    }

    #[test]
    fn request_kinds_do_not_collide() {
        let seq = (1u64 << 40) + 5;
        assert_eq!(seq & KIND_MASK, KIND_SEND);
        assert_eq!((KIND_ACK | 9) & KIND_MASK, KIND_ACK);
        assert_eq!(KIND_SUB & KIND_MASK, KIND_SUB);
    }
}
