//! Scenario `group`: relay fan-out. Members register, member 0 creates one group with
//! GroupCommit (epoch 0, adding everyone else; more commits only past the per-commit limit),
//! everyone subscribes (acking the commits and Welcomes waiting for them), then the senders
//! send GroupSend and every other member receives and acks. The relay never parses MLS, so
//! the commit, Welcome and messages are opaque but well-framed group envelopes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_proto::relay::group::MAX_MEMBERS_PER_COMMIT;
use hush_proto::relay::{GroupCommit, GroupId, Reply, Request};
use hush_proto::IdentityKeyPair;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};

use crate::conn::{connect_all, connect_relay, split_relay, CONNECT_TIMEOUT};
use crate::engine::{self, Client, Expect, Plan, Target};
use crate::envelope::{GROUP_KIND_COMMIT, GROUP_KIND_WELCOME, HEADER_LEN};
use crate::relay::RelayProcess;
use crate::scenarios::{fsync_json, identities, mb, memory_json, traffic_summary, Common};
use crate::util::{clock_ticks_per_sec, fail, round1, round3, Result};

/// Which members send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Senders {
    /// Member 0 sends everything.
    One,
    /// Every member sends, paced senders staggered evenly (in turn).
    All,
}

/// Parameters of the group scenario.
#[derive(Debug, Clone)]
pub struct GroupParams {
    /// Group members, each with its own connection.
    pub members: usize,
    /// Who sends.
    pub senders: Senders,
    /// Envelope size in bytes.
    pub size: usize,
    /// Send phase, seconds.
    pub duration: f64,
    /// Warm-up excluded from figures, seconds.
    pub warmup: f64,
    /// Aggregate target group sends per second; 0 = flat out.
    pub rate: f64,
    /// Most unanswered sends per sending connection.
    pub window: usize,
    /// Most ids per ack.
    pub ack_batch: usize,
    /// Longest wait before acking, milliseconds.
    pub ack_interval_ms: u64,
    /// Longest wait for stragglers after the send phase, seconds.
    pub drain: f64,
}

impl GroupParams {
    fn check(&self) -> Result<()> {
        // Loss accounting keeps a set per (receiver, sender): bounded for every sender mode.
        if !(2..=10_000).contains(&self.members) {
            return Err(fail("--members must be between 2 and 10000"));
        }
        let min = HEADER_LEN + 1;
        if self.size < min || self.size > hush_proto::envelope::MAX_ENVELOPE_LEN {
            return Err(fail(format!(
                "--size must be between {min} and {}",
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

    fn sender_indices(&self) -> Vec<usize> {
        match self.senders {
            Senders::One => vec![0],
            Senders::All => (0..self.members).collect(),
        }
    }

    fn plan(&self, senders: usize) -> Plan {
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
            expect: Expect::Fanout(self.members as u64 - 1),
            group: true,
        }
    }

    fn params_json(&self) -> Value {
        json!({
            "members": self.members,
            "senders": match self.senders { Senders::One => "one", Senders::All => "all" },
            "size_bytes": self.size,
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "target_rate": self.rate,
            "window": self.window,
            "ack_batch": self.ack_batch,
            "ack_interval_ms": self.ack_interval_ms,
            "drain_s": self.drain,
        })
    }
}

/// An opaque group envelope of `kind` (the relay checks only the framing).
fn opaque_envelope(kind: u8, len: usize) -> Vec<u8> {
    let mut e = vec![0x01, kind];
    e.resize(len.max(3), 0);
    e
}

/// Scenario `group`.
pub async fn group(common: &Common, p: &GroupParams) -> Result<Value> {
    p.check()?;
    let tps = clock_ticks_per_sec();
    let ids = identities(p.members);
    // The relay's default member cap is 1 000; a bigger group needs it raised (the user's
    // own --relay-set lines still come last and win).
    let mut options = common.relay.clone();
    if p.members > 1000 {
        options
            .extra
            .insert(0, format!("max_group_members = {}", p.members));
    }
    let relay = RelayProcess::start(&options)?;
    let result = group_inner(common, p, &ids, &relay, tps).await;
    let fsync = fsync_json(&relay);
    let (memory, graceful) = relay.stop()?;
    let mut out = result?;
    println!(
        "[group] relay memory: peak RSS {:.1} MB (VmHWM {:.1} MB); graceful exit {graceful}",
        mb(memory.sampled_peak_rss_kb),
        mb(memory.hwm_kb)
    );
    if let Some(relay_json) = out.get_mut("relay").and_then(Value::as_object_mut) {
        relay_json.insert("memory".into(), memory_json(&memory));
        relay_json.insert("fsync_before_run".into(), fsync);
        relay_json.insert("graceful_exit".into(), json!(graceful));
    }
    Ok(out)
}

async fn group_inner(
    common: &Common,
    p: &GroupParams,
    ids: &Arc<Vec<IdentityKeyPair>>,
    relay: &RelayProcess,
    tps: u64,
) -> Result<Value> {
    let sender_indices = p.sender_indices();
    println!(
        "[group] relay pid {} on {}; {} members, senders {:?} ({}), {} B, {} s (+{} s warm-up excluded), rate {}, window {}",
        relay.pid,
        relay.addr,
        p.members,
        p.senders,
        sender_indices.len(),
        p.size,
        p.duration,
        p.warmup,
        if p.rate > 0.0 { format!("{} group sends/s", p.rate) } else { "flat out".into() },
        p.window
    );
    let started = Instant::now();
    let (addr, relay_key) = (relay.addr, relay.public_key);
    let mut conns = connect_all(p.members, common.concurrency, |i| {
        let ids = Arc::clone(ids);
        async move {
            let id = ids.get(i).ok_or_else(|| fail("no such member"))?;
            connect_relay(addr, relay_key, id, Some(format!("u{i}"))).await
        }
    })
    .await?;
    let connect_secs = started.elapsed().as_secs_f64();

    let mut gid = [0u8; 16];
    OsRng.fill_bytes(&mut gid);
    let group_id = GroupId::new(gid.to_vec())?;
    let others: Vec<[u8; 32]> = ids
        .iter()
        .skip(1)
        .map(|id| *id.public_key().as_bytes())
        .collect();
    let creator = conns.first_mut().ok_or_else(|| fail("no members"))?;
    let commit_started = Instant::now();
    let mut epoch = 0u64;
    for added in others.chunks(MAX_MEMBERS_PER_COMMIT) {
        let request = Request::GroupCommit(GroupCommit {
            group_id: group_id.clone(),
            epoch,
            added: added.to_vec(),
            removed: Vec::new(),
            commit: opaque_envelope(GROUP_KIND_COMMIT, 64),
            welcome: Some(opaque_envelope(GROUP_KIND_WELCOME, 256)),
        });
        let reply = tokio::time::timeout(CONNECT_TIMEOUT, creator.request(&request))
            .await
            .map_err(|_| fail("GroupCommit timed out"))??;
        match reply {
            Reply::CommitAccepted { epoch: e } if e == epoch + 1 => epoch = e,
            other => return Err(fail(format!("unexpected reply to GroupCommit: {other:?}"))),
        }
    }
    let commit_secs = commit_started.elapsed().as_secs_f64();
    println!(
        "[group] {} members connected and registered in {connect_secs:.2} s; group created with {epoch} commit(s) in {:.1} ms",
        p.members,
        commit_secs * 1000.0
    );

    let clients = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let (rx, tx) = split_relay(conn);
            Ok(Client {
                index: u32::try_from(i)?,
                send_to: sender_indices
                    .contains(&i)
                    .then(|| Target::Group(group_id.clone())),
                subscribe: true,
                rx,
                tx,
                redial: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let report = engine::run(
        clients,
        p.plan(sender_indices.len()),
        &|_| None,
        &relay.probe(),
    )
    .await?;
    let members: Vec<u32> = (0..p.members)
        .map(u32::try_from)
        .collect::<Result<_, _>>()?;
    let (lost, unconfirmed) = report.group_losses(&members);
    let mut relay_json = traffic_summary("group", &report, lost, unconfirmed, tps);
    let fanout = p.members as u64 - 1;
    let per_sec = |n: u64| {
        if report.window_secs > 0.0 {
            n as f64 / report.window_secs
        } else {
            0.0
        }
    };
    // The relay's own count, as a cross-check of what the members saw.
    let relay_rate = |metric: &str| {
        let d = report.snap_end.metric(metric) - report.snap_start.metric(metric);
        if report.window_secs > 0.0 {
            d / report.window_secs
        } else {
            0.0
        }
    };
    let relay_fan_out = relay_rate("hush_group_fan_out_total");
    let relay_stored = relay_rate("hush_group_messages_stored_total");
    let sends = per_sec(report.stored_in_window);
    let member_msgs = per_sec(report.delivered_in_window);
    println!(
        "[group] {sends:.0} group sends/s stored, {member_msgs:.0} member-messages/s delivered \
         (fan-out {fanout}); expected deliveries {}, seen {} (unique), set-up commits/Welcomes acked {}",
        report.stored.saturating_mul(fanout),
        report.delivered_unique,
        report.control_deliveries
    );
    println!(
        "[group] relay metrics over the window: {relay_stored:.0} group messages stored/s, \
         {relay_fan_out:.0} fan-out mailbox rows/s"
    );
    if let Some(obj) = relay_json.as_object_mut() {
        obj.insert("connect_s".into(), json!(round3(connect_secs)));
        obj.insert(
            "group_create_ms".into(),
            json!(round3(commit_secs * 1000.0)),
        );
        obj.insert("group_create_commits".into(), json!(epoch));
        obj.insert("fanout".into(), json!(fanout));
        obj.insert("group_sends_stored_per_s".into(), json!(round1(sends)));
        obj.insert(
            "delivered_member_msgs_per_s".into(),
            json!(round1(member_msgs)),
        );
        obj.insert(
            "expected_deliveries".into(),
            json!(report.stored.saturating_mul(fanout)),
        );
        obj.insert(
            "relay_group_messages_stored_per_s".into(),
            json!(round1(relay_stored)),
        );
        obj.insert(
            "relay_fan_out_rows_per_s".into(),
            json!(round1(relay_fan_out)),
        );
        obj.insert(
            "setup_deliveries_acked".into(),
            json!(report.control_deliveries),
        );
    }
    Ok(json!({
        "scenario": "group",
        "params": p.params_json(),
        "senders": sender_indices.len(),
        "relay": relay_json,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_envelopes_are_framed() {
        assert_eq!(opaque_envelope(GROUP_KIND_COMMIT, 64)[..2], [0x01, 0x04]);
        assert_eq!(opaque_envelope(GROUP_KIND_WELCOME, 1).len(), 3);
    }

    #[test]
    fn params_are_checked() {
        let ok = GroupParams {
            members: 100,
            senders: Senders::One,
            size: 256,
            duration: 10.0,
            warmup: 1.0,
            rate: 0.0,
            window: 64,
            ack_batch: 1000,
            ack_interval_ms: 200,
            drain: 20.0,
        };
        assert!(ok.check().is_ok());
        assert!(GroupParams {
            members: 1,
            ..ok.clone()
        }
        .check()
        .is_err());
        assert!(GroupParams {
            size: HEADER_LEN,
            ..ok.clone()
        }
        .check()
        .is_err());
        assert!(GroupParams {
            duration: -1.0,
            ..ok.clone()
        }
        .check()
        .is_err());
        assert!(GroupParams {
            rate: f64::NAN,
            ..ok
        }
        .check()
        .is_err());
    }
}
