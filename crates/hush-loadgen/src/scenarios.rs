//! The scenarios: `online` (pairs of subscribed clients exchanging messages, optionally
//! repeated through the bare TCP baseline), `offline` (senders fill the mailboxes of absent
//! recipients, who then connect and drain them), and `idle` (many authenticated, subscribed
//! connections that do nothing). Each starts its own relay and prints human-readable lines;
//! the caller prints the returned JSON as the final line.
//!
//! `online` and `offline` run on `--nodes N` relays sharing one store: client 2k sits on node
//! k mod N and client 2k+1 on node (k+1) mod N, so with N > 1 every message crosses nodes.
//! `online --kill-node SECS` SIGKILLs the last node that far into the send phase; its clients
//! reconnect to the next live node (see [`crate::engine`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_proto::relay::{Reply, Request};
use hush_proto::IdentityKeyPair;
use rand_core::OsRng;
use serde_json::{json, Value};

use crate::baseline;
use crate::conn::{connect_all, connect_plain, connect_relay, split_relay, Rx, Tx};
use crate::engine::{self, Client, Expect, KillPlan, Plan, Redial, RunReport, Target};
use crate::envelope::HEADER_LEN;
use crate::relay::{scrape, Cluster, Memory, NodeEnd, Nodes, Probe, RelayOptions, RelayProcess};
use crate::util::{clock_ticks_per_sec, fail, round1, round3, status_kb, Result};

/// Options shared by every scenario.
#[derive(Debug, Clone)]
pub struct Common {
    /// How to start the relay.
    pub relay: RelayOptions,
    /// Most connection set-ups in flight.
    pub concurrency: usize,
    /// Relay nodes (`online` and `offline`; the others use one).
    pub nodes: usize,
}

/// The node of client `i` among `n`: client 2k on node k mod n, 2k+1 on node (k+1) mod n,
/// so that with n > 1 the two ends of every pair sit on different nodes.
pub fn node_of(i: usize, n: usize) -> usize {
    let n = n.max(1);
    let k = i / 2;
    if i.is_multiple_of(2) {
        k % n
    } else {
        (k + 1) % n
    }
}

/// Parameters of the traffic scenarios.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// Connections.
    pub clients: usize,
    /// Envelope size in bytes.
    pub size: usize,
    /// Send phase, seconds.
    pub duration: f64,
    /// Warm-up excluded from figures, seconds.
    pub warmup: f64,
    /// Aggregate target sends per second; 0 = flat out.
    pub rate: f64,
    /// Most unanswered sends per connection.
    pub window: usize,
    /// Most ids per ack.
    pub ack_batch: usize,
    /// Longest wait before acking, milliseconds.
    pub ack_interval_ms: u64,
    /// Longest wait for stragglers after the send phase, seconds.
    pub drain: f64,
    /// Only even clients send (to the next odd one); otherwise both directions.
    pub one_way: bool,
}

impl Traffic {
    fn check(&self) -> Result<()> {
        if self.clients < 2 || !self.clients.is_multiple_of(2) {
            return Err(fail("--clients must be an even number of at least 2"));
        }
        if self.size < HEADER_LEN || self.size > hush_proto::envelope::MAX_ENVELOPE_LEN {
            return Err(fail(format!(
                "--size must be between {HEADER_LEN} and {}",
                hush_proto::envelope::MAX_ENVELOPE_LEN
            )));
        }
        for (name, v) in [
            ("--duration", self.duration),
            ("--warmup", self.warmup),
            ("--rate", self.rate),
            ("--drain", self.drain),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(fail(format!("{name} must be a non-negative number")));
            }
        }
        if self.duration > 3600.0 || self.drain > 3600.0 {
            return Err(fail("--duration and --drain are limited to an hour"));
        }
        Ok(())
    }

    fn plan(&self, senders: usize, expect: Expect) -> Plan {
        Plan {
            size: self.size,
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup.min(self.duration)),
            rate_per_sender: if self.rate > 0.0 {
                self.rate / senders.max(1) as f64
            } else {
                0.0
            },
            window: self.window.max(1),
            ack_batch: self.ack_batch,
            ack_interval: Duration::from_millis(self.ack_interval_ms),
            drain: Duration::from_secs_f64(self.drain),
            expect,
            group: false,
        }
    }

    fn params_json(&self) -> Value {
        json!({
            "clients": self.clients,
            "size_bytes": self.size,
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "target_rate": self.rate,
            "window": self.window,
            "ack_batch": self.ack_batch,
            "ack_interval_ms": self.ack_interval_ms,
            "drain_s": self.drain,
            "direction": if self.one_way { "one-way" } else { "both" },
        })
    }
}

pub(crate) fn identities(n: usize) -> Arc<Vec<IdentityKeyPair>> {
    Arc::new(
        (0..n)
            .map(|_| IdentityKeyPair::generate(&mut OsRng))
            .collect(),
    )
}

fn key(ids: &[IdentityKeyPair], i: usize) -> Result<[u8; 32]> {
    ids.get(i)
        .map(|id| *id.public_key().as_bytes())
        .ok_or_else(|| fail("no such client"))
}

/// Connect `indices` to their nodes ([`node_of`]), registering `u<i>` when asked, split.
async fn connect_relay_clients(
    nodes: &Arc<Nodes>,
    ids: &Arc<Vec<IdentityKeyPair>>,
    indices: &[usize],
    register: bool,
    concurrency: usize,
) -> Result<Vec<(usize, Rx, Tx)>> {
    let indices = Arc::new(indices.to_vec());
    connect_all(indices.len(), concurrency, |k| {
        let ids = Arc::clone(ids);
        let indices = Arc::clone(&indices);
        let nodes = Arc::clone(nodes);
        async move {
            let i = *indices.get(k).ok_or_else(|| fail("no such client"))?;
            let id = ids.get(i).ok_or_else(|| fail("no such client"))?;
            let name = register.then(|| format!("u{i}"));
            let addr = nodes.addr(node_of(i, nodes.len()))?;
            let conn = connect_relay(addr, nodes.key, id, name).await?;
            let (rx, tx) = split_relay(conn);
            Ok((i, rx, tx))
        }
    })
    .await
}

pub(crate) fn mb(kb: u64) -> f64 {
    round1(kb as f64 / 1024.0)
}

pub(crate) fn fsync_json(relay: &RelayProcess) -> Value {
    json!({
        "median_ms": round3(relay.fsync_ms.0),
        "max_ms": round3(relay.fsync_ms.1),
    })
}

pub(crate) fn memory_json(m: &Memory) -> Value {
    json!({
        "rss_mb": mb(m.rss_kb),
        "sampled_peak_rss_mb": mb(m.sampled_peak_rss_kb),
        "vmhwm_mb": mb(m.hwm_kb),
    })
}

/// Print and summarise one traffic run.
pub(crate) fn traffic_summary(
    label: &str,
    r: &RunReport,
    lost: u64,
    unconfirmed: u64,
    tps: u64,
) -> Value {
    let per_sec = |n: u64| {
        if r.window_secs > 0.0 {
            n as f64 / r.window_secs
        } else {
            0.0
        }
    };
    let offered = per_sec(r.sent_in_window);
    let stored = per_sec(r.stored_in_window);
    let delivered = per_sec(r.delivered_in_window);
    let l = &r.latency;
    println!(
        "[{label}] offered {:.0} msgs/s, stored {:.0} msgs/s, delivered {:.0} msgs/s (over {:.1} s)",
        offered, stored, delivered, r.window_secs
    );
    println!(
        "[{label}] latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  ({} samples)",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    );
    println!(
        "[{label}] sent {} stored {} delivered {} (unique {}), losses {lost}, duplicates {}, \
         unconfirmed {unconfirmed}, errors {:?}, drained {} in {:.2} s",
        r.sent,
        r.stored,
        r.delivered,
        r.delivered_unique,
        r.duplicates,
        r.errors,
        r.drained,
        r.drain_secs
    );
    if r.snap_end.relay_cpu_ticks > 0 {
        println!(
            "[{label}] CPU during window: relay {:.2} cores, loadgen {:.2} cores; group commit: {:.0}/s, mean batch {:.1}",
            r.relay_cpu_cores(tps),
            r.self_cpu_cores(tps),
            r.commits_per_sec(),
            r.mean_commit_batch()
        );
    } else {
        println!(
            "[{label}] CPU during window: loadgen (clients and forwarder) {:.2} cores",
            r.self_cpu_cores(tps)
        );
    }
    let other = r.other_cpu_cores(tps);
    let services = r.service_cpu_cores(tps);
    let service_total: f64 = services.values().sum();
    let rest = (other - service_total).max(0.0);
    println!(
        "[{label}] other processes and kernel threads used {other:.2} cores during the window \
         (PostgreSQL {:.2}, nats-server {:.2}, the rest {rest:.2}){}",
        services.get("postgres").copied().unwrap_or(0.0),
        services.get("nats-server").copied().unwrap_or(0.0),
        if rest > 0.15 {
            " (figures DISTURBED by other load)"
        } else {
            ""
        }
    );
    if r.max_send_lag_ms > 0.0 {
        println!(
            "[{label}] pacing: max send lag behind schedule {:.2} ms, {} sends > 5 ms late",
            r.max_send_lag_ms, r.late_sends
        );
    }
    if r.reconnects > 0 || r.reconnect_failures > 0 || r.killed_at_s.is_some() {
        println!(
            "[{label}] fail-over: {} reconnects ({} failed, slowest {:.1} ms), {} resubscribed, \
             {} sends re-sent; delivered after the kill {}, on re-established connections {}",
            r.reconnects,
            r.reconnect_failures,
            r.max_reconnect_ms,
            r.resubscribed,
            r.resends,
            r.delivered_after_kill,
            r.delivered_after_reconnect
        );
    }
    println!(
        "[{label}] guarantees: acked-but-lost {lost} (must be 0), redelivered after a confirmed ack {} \
         (must be 0), unexplained second copies {} (must be 0); legitimate: re-sent copies {}, \
         redeliveries of unacked ids {}",
        r.redelivered_after_ack, r.unexplained_duplicates, r.resent_duplicates, r.redelivered_unacked
    );
    let mut summary = json!({
        "connections": r.clients,
        "senders": r.senders,
        "subscribe_s": round3(r.start_secs),
        "offered_msgs_per_s": round1(offered),
        "stored_msgs_per_s": round1(stored),
        "delivered_msgs_per_s": round1(delivered),
        "window_s": round3(r.window_secs),
        "latency": l.json(),
        "sent": r.sent,
        "stored": r.stored,
        "delivered": r.delivered,
        "delivered_unique": r.delivered_unique,
        "losses": lost,
        "duplicates": r.duplicates,
        "unconfirmed_deliveries": unconfirmed,
        "misrouted": r.misrouted,
        "malformed": r.malformed,
        "errors": r.errors,
        "acked": r.acked,
        "drained": r.drained,
        "drain_s": round3(r.drain_secs),
        "timed_out_connections": r.timed_out_connections,
        "closed_connections": r.closed_connections,
        "relay_cpu_cores": round3(r.relay_cpu_cores(tps)),
        "loadgen_cpu_cores": round3(r.self_cpu_cores(tps)),
        "other_cpu_cores": round3(other),
        "service_cpu_cores": services.iter().map(|(k, v)| (k.clone(), json!(round3(*v)))).collect::<serde_json::Map<_, _>>(),
        "unrelated_cpu_cores": round3(rest),
        "commits_per_s": round1(r.commits_per_sec()),
        "mean_commit_batch": round1(r.mean_commit_batch()),
        "max_send_lag_ms": round3(r.max_send_lag_ms),
        "late_sends": r.late_sends,
    });
    let guarantees = json!({
        "lost_acked": lost,
        "redelivered_after_ack": r.redelivered_after_ack,
        "resent_duplicates": r.resent_duplicates,
        "redelivered_unacked": r.redelivered_unacked,
        "unexplained_duplicates": r.unexplained_duplicates,
        "resends": r.resends,
        "reconnects": r.reconnects,
        "reconnect_failures": r.reconnect_failures,
        "max_reconnect_ms": round3(r.max_reconnect_ms),
        "resubscribed": r.resubscribed,
        "killed_at_s": r.killed_at_s.map(round3),
        "delivered_after_kill": r.delivered_after_kill,
        "delivered_after_reconnect": r.delivered_after_reconnect,
    });
    if let (Some(obj), Value::Object(more)) = (summary.as_object_mut(), guarantees) {
        obj.extend(more);
    }
    // Multi-node relays: the doorbell and re-check counters over the window, all nodes.
    let delta = |name: &str| r.snap_end.metric(name) - r.snap_start.metric(name);
    if r.snap_end
        .metrics
        .contains_key("hush_doorbells_published_total")
    {
        let bells = json!({
            "published": delta("hush_doorbells_published_total"),
            "publish_errors": delta("hush_doorbell_publish_errors_total"),
            "received": delta("hush_doorbells_received_total"),
            "wakeups": delta("hush_doorbell_wakeups_total"),
            "mailbox_rechecks": delta("hush_mailbox_rechecks_total"),
            "store_errors": delta("hush_store_errors_total"),
        });
        println!("[{label}] doorbell over the window (all nodes): {bells}");
        if let Some(obj) = summary.as_object_mut() {
            obj.insert("doorbell".into(), bells);
        }
    }
    summary
}

/// Per-node CPU (over the window) and memory lines and JSON, plus the sum of the memory
/// figures over the nodes.
fn nodes_summary(
    label: &str,
    table: &[(u32, SocketAddr, usize)],
    ends: &[NodeEnd],
    cpu: &[f64],
) -> (Value, Memory) {
    let mut total = Memory::default();
    let mut nodes = Vec::with_capacity(ends.len());
    for (i, end) in ends.iter().enumerate() {
        let (pid, addr, clients) =
            table
                .get(i)
                .copied()
                .unwrap_or((0, SocketAddr::from(([0, 0, 0, 0], 0)), 0));
        let cores = cpu.get(i).copied().unwrap_or(0.0);
        let m = &end.memory;
        total.rss_kb += m.rss_kb;
        total.sampled_peak_rss_kb += m.sampled_peak_rss_kb;
        total.hwm_kb += m.hwm_kb;
        if ends.len() > 1 {
            println!(
                "[{label}] node {i} (pid {pid}, {clients} clients): CPU {cores:.2} cores during the window, \
                 peak RSS {:.1} MB (VmHWM {:.1} MB), {}",
                mb(m.sampled_peak_rss_kb),
                mb(m.hwm_kb),
                if end.killed {
                    "killed".to_owned()
                } else {
                    format!("graceful exit {}", end.graceful)
                }
            );
        }
        nodes.push(json!({
            "index": i,
            "pid": pid,
            "addr": addr.to_string(),
            "clients": clients,
            "cpu_cores": round3(cores),
            "memory": memory_json(m),
            "graceful_exit": end.graceful,
            "killed": end.killed,
        }));
    }
    (Value::Array(nodes), total)
}

/// (pid, address, clients placed there) of every node.
fn node_table(cluster: &Cluster, clients: &[usize]) -> Vec<(u32, SocketAddr, usize)> {
    let n = cluster.nodes.len();
    cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(k, node)| {
            (
                node.pid,
                node.addr,
                clients.iter().filter(|&&i| node_of(i, n) == k).count(),
            )
        })
        .collect()
}

/// Start the run's nodes and print where they listen.
fn start_cluster(common: &Common, label: &str) -> Result<Cluster> {
    let cluster = Cluster::start(&common.relay, common.nodes.max(1))?;
    if cluster.nodes.len() > 1 {
        for (i, node) in cluster.nodes.iter().enumerate() {
            println!("[{label}] node {i}: pid {} on {}", node.pid, node.addr);
        }
        println!(
            "[{label}] {} nodes share one static key and one store; client 2k is on node k mod {n}, \
             2k+1 on node (k+1) mod {n}: every message crosses nodes",
            cluster.nodes.len(),
            n = cluster.nodes.len()
        );
    }
    Ok(cluster)
}

fn partner(i: u32) -> Option<u32> {
    Some(i ^ 1)
}

/// Build the online roles: pairs (2k, 2k+1) send to each other (or only 2k -> 2k+1).
fn online_clients(
    conns: Vec<(usize, Rx, Tx)>,
    key_of: impl Fn(usize) -> Result<[u8; 32]>,
    redial_of: impl Fn(usize) -> Option<Redial>,
    one_way: bool,
) -> Result<Vec<Client>> {
    conns
        .into_iter()
        .map(|(i, rx, tx)| {
            let sends = !one_way || i % 2 == 0;
            Ok(Client {
                index: u32::try_from(i)?,
                send_to: if sends {
                    Some(Target::Direct(key_of(i ^ 1)?))
                } else {
                    None
                },
                subscribe: true,
                rx,
                tx,
                redial: redial_of(i),
            })
        })
        .collect()
}

/// Scenario `online`; `kill_after`: SIGKILL the last node this many seconds into the send
/// phase.
pub async fn online(
    common: &Common,
    t: &Traffic,
    baseline_too: bool,
    kill_after: Option<f64>,
) -> Result<Value> {
    t.check()?;
    let n = common.nodes.max(1);
    if let Some(k) = kill_after {
        if n < 2 {
            return Err(fail("--kill-node needs --nodes 2 or more"));
        }
        if !k.is_finite() || k <= 0.0 || k >= t.duration {
            return Err(fail(
                "--kill-node must be inside the send phase (0 < SECS < --duration)",
            ));
        }
    }
    let tps = clock_ticks_per_sec();
    let ids = identities(t.clients);
    let cluster = start_cluster(common, "relay")?;
    let relay = cluster.first()?;
    println!(
        "[relay] pid {} on {}; {} clients, {} B messages, {} s (+{} s warm-up excluded), rate {}, window {}",
        relay.pid,
        relay.addr,
        t.clients,
        t.size,
        t.duration,
        t.warmup,
        if t.rate > 0.0 { format!("{} msgs/s", t.rate) } else { "flat out".into() },
        t.window
    );
    let fsync = fsync_json(relay);
    let nodes = Arc::clone(&cluster.shared);
    let started = Instant::now();
    let all: Vec<usize> = (0..t.clients).collect();
    let conns = connect_relay_clients(&nodes, &ids, &all, true, common.concurrency).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    println!(
        "[relay] connected and registered {} clients in {connect_secs:.2} s",
        t.clients
    );
    let redial_of = |i: usize| {
        (n > 1).then(|| Redial {
            nodes: Arc::clone(&nodes),
            ids: Arc::clone(&ids),
            identity: i,
            node: node_of(i, n),
        })
    };
    let clients = online_clients(conns, |i| key(&ids, i), redial_of, t.one_way)?;
    let senders = clients.iter().filter(|c| c.send_to.is_some()).count();
    let kill = match kill_after {
        Some(k) => Some(KillPlan {
            after: Duration::from_secs_f64(k),
            killer: cluster.killer(n - 1)?,
        }),
        None => None,
    };
    let report = engine::run_with(
        clients,
        t.plan(senders, Expect::Stored),
        &partner,
        &cluster.probe(),
        kill,
    )
    .await;
    let table = node_table(&cluster, &all);
    let ends = cluster.stop()?;
    let report = report?;
    let (lost, unconfirmed) = report.losses_against(&report.received_sets);
    let mut relay_json = traffic_summary("relay", &report, lost, unconfirmed, tps);
    let (nodes_json, memory) = nodes_summary("relay", &table, &ends, &report.node_cpu_cores(tps));
    let graceful = ends.iter().all(|e| e.graceful || e.killed);
    println!(
        "[relay] memory{}: peak RSS {:.1} MB (VmHWM {:.1} MB); graceful exit {graceful}",
        if n > 1 { " (all nodes)" } else { "" },
        mb(memory.sampled_peak_rss_kb),
        mb(memory.hwm_kb)
    );
    if let Some(obj) = relay_json.as_object_mut() {
        obj.insert("memory".into(), memory_json(&memory));
        obj.insert("connect_s".into(), json!(round3(connect_secs)));
        obj.insert("fsync_before_run".into(), fsync);
        obj.insert("graceful_exit".into(), json!(graceful));
        obj.insert("nodes".into(), nodes_json);
        obj.insert("cross_node".into(), json!(n > 1));
        obj.insert(
            "killed_node".into(),
            json!(kill_after.is_some().then_some(n - 1)),
        );
    }
    let mut out = json!({
        "scenario": "online",
        "params": t.params_json(),
        "nodes": n,
        "senders": senders,
        "relay": relay_json,
    });
    if let Some(obj) = out.pointer_mut("/params").and_then(Value::as_object_mut) {
        obj.insert("kill_node_s".into(), json!(kill_after));
    }
    if baseline_too {
        let base = baseline_run(common, t, tps).await?;
        let ratio = match (
            out.pointer("/relay/delivered_msgs_per_s")
                .and_then(Value::as_f64),
            base.pointer("/delivered_msgs_per_s")
                .and_then(Value::as_f64),
        ) {
            (Some(r), Some(b)) if b > 0.0 => r / b,
            _ => 0.0,
        };
        println!("[ratio] relay/baseline delivered msgs/s = {ratio:.3}");
        if let Some(obj) = out.as_object_mut() {
            obj.insert("baseline".into(), base);
            obj.insert(
                "ratio_delivered_relay_to_baseline".into(),
                json!(round3(ratio)),
            );
        }
    }
    Ok(out)
}

async fn baseline_run(common: &Common, t: &Traffic, tps: u64) -> Result<Value> {
    let forwarder = baseline::start().await?;
    println!("[baseline] bare TCP forwarder on {}", forwarder.addr);
    let addr = forwarder.addr;
    let conns = connect_all(t.clients, common.concurrency, |i| async move {
        let (rx, tx) = connect_plain(addr, u32::try_from(i)?).await?;
        Ok((i, rx, tx))
    })
    .await?;
    let clients = online_clients(
        conns,
        |i| Ok(baseline::key_of(u32::try_from(i)?)),
        |_| None,
        t.one_way,
    )?;
    let senders = clients.iter().filter(|c| c.send_to.is_some()).count();
    let report = engine::run(
        clients,
        t.plan(senders, Expect::Stored),
        &partner,
        &Probe::default(),
    )
    .await?;
    drop(forwarder);
    let (lost, unconfirmed) = report.losses_against(&report.received_sets);
    Ok(traffic_summary("baseline", &report, lost, unconfirmed, tps))
}

/// Scenario `offline`: even clients send to the next odd one, which is not connected; then
/// the recipients connect, drain and ack.
pub async fn offline(common: &Common, t: &Traffic) -> Result<Value> {
    t.check()?;
    let tps = clock_ticks_per_sec();
    let ids = identities(t.clients);
    let cluster = start_cluster(common, "offline")?;
    let result = offline_inner(common, t, &ids, &cluster, tps).await;
    let fsync = fsync_json(cluster.first()?);
    let all: Vec<usize> = (0..t.clients).collect();
    let table = node_table(&cluster, &all);
    let ends = cluster.stop()?;
    let (mut out, cpu) = result?;
    let (nodes_json, memory) = nodes_summary("offline", &table, &ends, &cpu);
    let graceful = ends.iter().all(|e| e.graceful);
    println!(
        "[offline] relay memory{}: peak RSS {:.1} MB (VmHWM {:.1} MB); graceful exit {graceful}",
        if ends.len() > 1 { " (all nodes)" } else { "" },
        mb(memory.sampled_peak_rss_kb),
        mb(memory.hwm_kb)
    );
    if let Some(obj) = out.as_object_mut() {
        obj.insert("memory".into(), memory_json(&memory));
        obj.insert("graceful_exit".into(), json!(graceful));
        obj.insert("fsync_before_run".into(), fsync);
        obj.insert("nodes".into(), json!(ends.len()));
        obj.insert("node_figures".into(), nodes_json);
    }
    Ok(out)
}

/// The offline run; also returns each node's CPU (cores) during the sending window.
async fn offline_inner(
    common: &Common,
    t: &Traffic,
    ids: &Arc<Vec<IdentityKeyPair>>,
    cluster: &Cluster,
    tps: u64,
) -> Result<(Value, Vec<f64>)> {
    let relay = cluster.first()?;
    let nodes = &cluster.shared;
    let senders: Vec<usize> = (0..t.clients).step_by(2).collect();
    let recipients: Vec<usize> = (1..t.clients).step_by(2).collect();
    println!(
        "[offline] relay pid {} on {}; {} senders -> {} offline recipients, {} B, {} s (+{} s warm-up excluded), rate {}",
        relay.pid,
        relay.addr,
        senders.len(),
        recipients.len(),
        t.size,
        t.duration,
        t.warmup,
        if t.rate > 0.0 { format!("{} msgs/s", t.rate) } else { "flat out".into() },
    );
    // Recipients register, then go away.
    let registered =
        connect_relay_clients(nodes, ids, &recipients, true, common.concurrency).await?;
    drop(registered);
    let conns = connect_relay_clients(nodes, ids, &senders, false, common.concurrency).await?;
    let clients = conns
        .into_iter()
        .map(|(i, rx, tx)| {
            Ok(Client {
                index: u32::try_from(i)?,
                send_to: Some(Target::Direct(key(ids, i ^ 1)?)),
                subscribe: false,
                rx,
                tx,
                redial: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let sending = engine::run(
        clients,
        t.plan(senders.len(), Expect::Count(0)),
        &|_| None,
        &cluster.probe(),
    )
    .await?;
    let stored_rate = if sending.window_secs > 0.0 {
        sending.stored_in_window as f64 / sending.window_secs
    } else {
        0.0
    };
    println!(
        "[offline] stored {:.0} msgs/s durably (Stored replies in {:.1} s); {} sent, {} stored, errors {:?}",
        stored_rate, sending.window_secs, sending.sent, sending.stored, sending.errors
    );
    let services = sending.service_cpu_cores(tps);
    println!(
        "[offline] CPU during window: relay {:.2} cores, loadgen {:.2} cores, others {:.2} cores \
         (PostgreSQL {:.2}, nats-server {:.2}); group commit {:.0}/s, mean batch {:.1}",
        sending.relay_cpu_cores(tps),
        sending.self_cpu_cores(tps),
        sending.other_cpu_cores(tps),
        services.get("postgres").copied().unwrap_or(0.0),
        services.get("nats-server").copied().unwrap_or(0.0),
        sending.commits_per_sec(),
        sending.mean_commit_batch()
    );
    let queued = match relay.metrics_addr {
        Some(addr) => scrape(addr)
            .await
            .ok()
            .and_then(|m| m.get("hush_mailbox_messages").copied()),
        None => None,
    };
    println!("[offline] relay mailboxes hold {queued:?} messages; recipients connect");

    let conns = connect_relay_clients(nodes, ids, &recipients, false, common.concurrency).await?;
    let clients = conns
        .into_iter()
        .map(|(i, rx, tx)| {
            Ok(Client {
                index: u32::try_from(i)?,
                send_to: None,
                subscribe: true,
                rx,
                tx,
                redial: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let drain_plan = Plan {
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        ..t.plan(1, Expect::Count(sending.stored))
    };
    let draining = engine::run(clients, drain_plan, &partner, &cluster.probe()).await?;
    let (lost, unconfirmed) = sending.losses_against(&draining.received_sets);
    let drain_rate = if draining.drained_secs > 0.0 {
        draining.delivered_unique as f64 / draining.drained_secs
    } else {
        0.0
    };
    let left = match relay.metrics_addr {
        Some(addr) => scrape(addr)
            .await
            .ok()
            .and_then(|m| m.get("hush_mailbox_messages").copied()),
        None => None,
    };
    println!(
        "[offline] drained {} of {} stored in {:.2} s ({:.0} msgs/s): losses {lost}, duplicates {}, \
         unconfirmed {unconfirmed}, acked {}, mailboxes now hold {left:?}",
        draining.delivered_unique,
        sending.stored,
        draining.drained_secs,
        drain_rate,
        draining.duplicates,
        draining.acked,
    );
    let cpu = sending.node_cpu_cores(tps);
    Ok((
        json!({
            "scenario": "offline",
            "params": t.params_json(),
            "senders": senders.len(),
            "recipients": recipients.len(),
            "stored_msgs_per_s": round1(stored_rate),
            "offered_msgs_per_s": round1(if sending.window_secs > 0.0 { sending.sent_in_window as f64 / sending.window_secs } else { 0.0 }),
            "sent": sending.sent,
            "stored": sending.stored,
            "send_errors": sending.errors,
            "relay_cpu_cores": round3(sending.relay_cpu_cores(tps)),
            "loadgen_cpu_cores": round3(sending.self_cpu_cores(tps)),
            "other_cpu_cores": round3(sending.other_cpu_cores(tps)),
        "service_cpu_cores": services.iter().map(|(k, v)| (k.clone(), json!(round3(*v)))).collect::<serde_json::Map<_, _>>(),
            "commits_per_s": round1(sending.commits_per_sec()),
            "mean_commit_batch": round1(sending.mean_commit_batch()),
            "mailbox_messages_after_send": queued,
            "drain": {
                "delivered_unique": draining.delivered_unique,
                "delivered": draining.delivered,
                "seconds": round3(draining.drained_secs),
                "msgs_per_s": round1(drain_rate),
                "drained": draining.drained,
                "acked": draining.acked,
                "errors": draining.errors,
            },
            "mailbox_messages_after_drain": left,
            "losses": lost,
            "duplicates": draining.duplicates,
            "unconfirmed_deliveries": unconfirmed,
            "lost_acked": lost,
            "redelivered_after_ack": draining.redelivered_after_ack,
        }),
        cpu,
    ))
}

/// Scenario `idle`: `connections` authenticated, subscribed connections held for `hold`.
pub async fn idle(common: &Common, connections: usize, hold: f64, nofile: u64) -> Result<Value> {
    if !hold.is_finite() || !(0.0..=3600.0).contains(&hold) {
        return Err(fail("--hold must be between 0 and 3600 seconds"));
    }
    // Sockets here, the relay's sockets (it inherits our limit), plus headroom.
    let needed = connections as u64 + 512;
    if nofile < needed {
        return Err(fail(format!(
            "RLIMIT_NOFILE is {nofile} but {connections} connections need about {needed}; \
             raise the hard limit (ulimit -Hn)"
        )));
    }
    let ids = identities(connections);
    let relay = RelayProcess::start(&common.relay)?;
    let result = idle_inner(common, connections, hold, &ids, &relay).await;
    let fsync = fsync_json(&relay);
    let (memory, graceful) = relay.stop()?;
    let mut out = result?;
    println!(
        "[idle] relay peak RSS {:.1} MB (VmHWM {:.1} MB); graceful exit {graceful}",
        mb(memory.sampled_peak_rss_kb),
        mb(memory.hwm_kb)
    );
    if let Some(obj) = out.as_object_mut() {
        obj.insert("memory".into(), memory_json(&memory));
        obj.insert("graceful_exit".into(), json!(graceful));
        obj.insert("fsync_before_run".into(), fsync);
    }
    Ok(out)
}

async fn idle_inner(
    common: &Common,
    connections: usize,
    hold: f64,
    ids: &Arc<Vec<IdentityKeyPair>>,
    relay: &RelayProcess,
) -> Result<Value> {
    let before = relay.memory();
    println!(
        "[idle] relay pid {} on {}, RSS {:.1} MB before; opening {connections} connections ({} at a time)",
        relay.pid,
        relay.addr,
        mb(before.rss_kb),
        common.concurrency
    );
    let (addr, relay_key) = (relay.addr, relay.public_key);
    let started = Instant::now();
    let conns = connect_all(connections, common.concurrency, |i| {
        let ids = Arc::clone(ids);
        async move {
            let id = ids.get(i).ok_or_else(|| fail("no such client"))?;
            let mut conn = connect_relay(addr, relay_key, id, None).await?;
            let reply = tokio::time::timeout(
                crate::conn::CONNECT_TIMEOUT,
                conn.request(&Request::Subscribe),
            )
            .await
            .map_err(|_| fail("subscribe timed out"))??;
            if reply != Reply::Subscribed {
                return Err(fail(format!("unexpected reply to Subscribe: {reply:?}")));
            }
            Ok(conn)
        }
    })
    .await?;
    let connect_secs = started.elapsed().as_secs_f64();
    let after_connect = relay.memory();
    println!(
        "[idle] {connections} authenticated and subscribed in {connect_secs:.2} s ({:.0}/s); relay RSS {:.1} MB",
        connections as f64 / connect_secs.max(1e-9),
        mb(after_connect.rss_kb)
    );
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let held = relay.memory();
    let open = match relay.metrics_addr {
        Some(a) => scrape(a)
            .await
            .ok()
            .and_then(|m| m.get("hush_connections_open").copied()),
        None => None,
    };
    // Every connection still answers after the hold.
    let mut pings = tokio::task::JoinSet::new();
    for mut conn in conns {
        pings.spawn(async move {
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(60), conn.request(&Request::Ping)).await,
                Ok(Ok(Reply::Pong))
            );
            (ok, conn)
        });
    }
    let mut alive = 0usize;
    let mut kept = Vec::with_capacity(connections);
    while let Some(joined) = pings.join_next().await {
        let (ok, conn) = joined?;
        alive += usize::from(ok);
        kept.push(conn);
    }
    let per_conn_kb = held.rss_kb.saturating_sub(before.rss_kb) as f64 / connections.max(1) as f64;
    println!(
        "[idle] after {hold} s: relay RSS {:.1} MB (VmHWM {:.1} MB), {:.1} kB per connection; \
         relay reports {open:?} open; {alive}/{connections} answered a ping",
        mb(held.rss_kb),
        mb(held.hwm_kb),
        per_conn_kb
    );
    let loadgen_rss = status_kb("self", "VmRSS").unwrap_or(0);
    drop(kept);
    Ok(json!({
        "scenario": "idle",
        "connections": connections,
        "connect_concurrency": common.concurrency,
        "connect_s": round3(connect_secs),
        "connects_per_s": round1(connections as f64 / connect_secs.max(1e-9)),
        "hold_s": hold,
        "relay_rss_before_mb": mb(before.rss_kb),
        "relay_rss_connected_mb": mb(after_connect.rss_kb),
        "relay_rss_held_mb": mb(held.rss_kb),
        "relay_vmhwm_held_mb": mb(held.hwm_kb),
        "relay_kb_per_connection": round1(per_conn_kb),
        "relay_connections_open": open,
        "answered_ping": alive,
        "loadgen_rss_mb": mb(loadgen_rss),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_sit_on_different_nodes() {
        for n in 2..6 {
            for k in 0..50 {
                let (a, b) = (node_of(2 * k, n), node_of(2 * k + 1, n));
                assert_ne!(a, b, "pair {k} on {n} nodes");
                assert!(a < n && b < n);
            }
            // Every node gets clients.
            let used: std::collections::BTreeSet<usize> =
                (0..2 * n).map(|i| node_of(i, n)).collect();
            assert_eq!(used.len(), n);
        }
        assert!((0..10).all(|i| node_of(i, 1) == 0));
    }
}
