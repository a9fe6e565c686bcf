//! `hush-loadgen`: drive a freshly started `hush-relay` child process over loopback and report
//! throughput, end-to-end latency, losses, duplicates, relay CPU and memory. Scenarios:
//! `online` (with `--baseline`, the same traffic through a bare TCP forwarder too), `offline`,
//! `idle` and `group` (one group's fan-out). Human-readable lines go to stdout; the last line is one JSON object with every
//! figure. Only loopback addresses are used and every phase is bounded in time.
//!
//! `--nodes N --store postgres://... --nats nats://...` runs `online` and `offline` on N relay
//! children sharing one store, one static key and (with a prefix unique to the run) one NATS
//! doorbell subject; `online --kill-node SECS` SIGKILLs the last node mid-run.

mod baseline;
mod conn;
mod engine;
mod envelope;
mod group;
mod relay;
mod scenarios;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::relay::RelayOptions;
use crate::scenarios::{Common, Traffic};
use crate::util::Result;

/// Load generator for the hush relay.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// The relay binary (default: `hush-relay` next to this executable).
    #[arg(long, global = true)]
    relay_bin: Option<PathBuf>,
    /// Directory in which the relay's temporary data directory is created (default: the
    /// system temp dir). Use a directory on the disk you want to measure.
    #[arg(long, global = true)]
    data_parent: Option<PathBuf>,
    /// Extra relay config line `key=value` (repeatable), e.g. `--relay-set max_batch=512`.
    #[arg(long = "relay-set", global = true)]
    relay_set: Vec<String>,
    /// Most connection set-ups (TCP + Noise + Hello) in flight at once.
    #[arg(long, global = true, default_value_t = 64)]
    connect_concurrency: usize,
    /// Tokio worker threads of the load generator (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Relay nodes to start (`online` and `offline`): they share node 0's static key and the
    /// same config lines; more than one needs a shared store (`--store postgres://...`).
    #[arg(long, global = true, default_value_t = 1)]
    nodes: usize,
    /// The relays' store: `sqlite` (each node its own file) or a `postgres://` URL (shared).
    /// Short for `--relay-set store=URL`.
    #[arg(long, global = true)]
    store: Option<String>,
    /// NATS server for the nodes' doorbell (`nats://host:port`); the run gets its own
    /// `nats_prefix`. Short for `--relay-set nats=URL --relay-set nats_prefix=<unique>`.
    #[arg(long, global = true)]
    nats: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Subscribed clients in pairs (2k <-> 2k+1) exchanging messages.
    Online {
        #[command(flatten)]
        traffic: TrafficArgs,
        /// Only even clients send (2k -> 2k+1) instead of both directions.
        #[arg(long)]
        one_way: bool,
        /// Also run the same traffic through a bare TCP forwarder and print the ratio.
        #[arg(long)]
        baseline: bool,
        /// Longest wait for stragglers after the send phase, seconds.
        #[arg(long, default_value_t = 20.0)]
        drain: f64,
        /// SIGKILL the last node (never node 0) this many seconds into the send phase; its
        /// clients reconnect to the next live node and re-send what had no reply.
        #[arg(long, value_name = "SECS")]
        kill_node: Option<f64>,
    },
    /// Even clients send to odd ones that are offline; then the recipients drain.
    Offline {
        #[command(flatten)]
        traffic: TrafficArgs,
        /// Longest wait for the recipients to drain their mailboxes, seconds.
        #[arg(long, default_value_t = 120.0)]
        drain: f64,
    },
    /// One group: members 1.. are added by member 0, senders send GroupSend, every other
    /// member receives and acks (relay fan-out).
    Group {
        /// Group members (each its own connection).
        #[arg(long, default_value_t = 100)]
        members: usize,
        /// Who sends: member 0 only, or every member (paced senders take turns).
        #[arg(long, value_enum, default_value_t = group::Senders::One)]
        senders: group::Senders,
        /// Envelope size in bytes (a group envelope: version and kind bytes included).
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Send phase, seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// First seconds of the send phase excluded from rates and latencies.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Aggregate target group sends per second; 0 = flat out (limited by the window).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Most unanswered GroupSends per sending connection.
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Most message ids per ack (at most 1000).
        #[arg(long, default_value_t = 1000)]
        ack_batch: usize,
        /// Longest time, in ms, a delivery waits before its ack is sent.
        #[arg(long, default_value_t = 200)]
        ack_interval_ms: u64,
        /// Longest wait for stragglers after the send phase, seconds.
        #[arg(long, default_value_t = 20.0)]
        drain: f64,
    },
    /// Many authenticated, subscribed connections that stay idle.
    Idle {
        /// Connections to open.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds to hold them open before measuring.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
    },
}

#[derive(Args, Debug)]
struct TrafficArgs {
    /// Client connections (even).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Envelope size in bytes, version byte included.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Send phase, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// First seconds of the send phase excluded from rates and latencies.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Aggregate target sends per second; 0 = flat out (limited by the window).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Most unanswered sends per connection.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Most message ids per ack (at most 1000).
    #[arg(long, default_value_t = 1000)]
    ack_batch: usize,
    /// Longest time, in ms, a delivery waits before its ack is sent (acks go out when
    /// `--ack-batch` ids are pending or this much time has passed, whichever comes first).
    #[arg(long, default_value_t = 200)]
    ack_interval_ms: u64,
}

impl TrafficArgs {
    fn traffic(&self, drain: f64, one_way: bool) -> Traffic {
        Traffic {
            clients: self.clients,
            size: self.size,
            duration: self.duration,
            warmup: self.warmup,
            rate: self.rate,
            window: self.window,
            ack_batch: self.ack_batch,
            ack_interval_ms: self.ack_interval_ms,
            drain,
            one_way,
        }
    }
}

/// Most relay nodes one run may start.
const MAX_NODES: usize = 16;

/// The relay config lines of a run: `--store`/`--nats` first (with a `nats_prefix` unique to
/// this run), then the user's `--relay-set` lines, which win.
fn relay_lines(cli: &Cli) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(store) = &cli.store {
        lines.push(format!("store={store}"));
    }
    if let Some(nats) = &cli.nats {
        lines.push(format!("nats={nats}"));
        lines.push(format!(
            "nats_prefix=hush_lg_{}_{}",
            std::process::id(),
            hex::encode(rand_core::RngCore::next_u64(&mut rand_core::OsRng).to_be_bytes())
        ));
    }
    lines.extend(cli.relay_set.iter().cloned());
    lines
}

/// The value of the last `key=value` line for `key`.
fn line_value<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .rev()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// A config line for printing: a URL's password replaced by `***`.
fn redact(line: &str) -> String {
    let Some((scheme, rest)) = line.split_once("://") else {
        return line.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => line.to_owned(),
        },
        None => line.to_owned(),
    }
}

async fn run(cli: Cli, nofile: u64) -> Result<serde_json::Value> {
    let bin = match &cli.relay_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("hush-relay"),
    };
    let lines = relay_lines(&cli);
    let nodes = cli.nodes;
    if !(1..=MAX_NODES).contains(&nodes) {
        return Err(util::fail(format!(
            "--nodes must be between 1 and {MAX_NODES}"
        )));
    }
    let store = line_value(&lines, "store").unwrap_or("sqlite");
    let shared_store = store.starts_with("postgres://") || store.starts_with("postgresql://");
    if nodes > 1 {
        if !shared_store {
            return Err(util::fail(
                "--nodes > 1 needs a shared store: --store postgres://...",
            ));
        }
        if !matches!(
            cli.scenario,
            Scenario::Online { .. } | Scenario::Offline { .. }
        ) {
            return Err(util::fail("--nodes > 1 applies to online and offline only"));
        }
        if line_value(&lines, "nats").is_none() {
            println!(
                "[nodes] no --nats: cross-node deliveries wait for the mailbox re-check \
                 (mailbox_recheck_ms) instead of a doorbell"
            );
        }
    }
    let printable: Vec<String> = lines.iter().map(|l| redact(l)).collect();
    let common = Common {
        relay: RelayOptions {
            bin,
            data_parent: cli.data_parent.clone(),
            extra: lines,
        },
        concurrency: cli.connect_concurrency.max(1),
        nodes,
    };
    let mut out = match cli.scenario {
        Scenario::Online {
            traffic,
            one_way,
            baseline,
            drain,
            kill_node,
        } => {
            scenarios::online(
                &common,
                &traffic.traffic(drain, one_way),
                baseline,
                kill_node,
            )
            .await?
        }
        Scenario::Offline { traffic, drain } => {
            scenarios::offline(&common, &traffic.traffic(drain, true)).await?
        }
        Scenario::Group {
            members,
            senders,
            size,
            duration,
            warmup,
            rate,
            window,
            ack_batch,
            ack_interval_ms,
            drain,
        } => {
            let params = group::GroupParams {
                members,
                senders,
                size,
                duration,
                warmup,
                rate,
                window,
                ack_batch,
                ack_interval_ms,
                drain,
            };
            group::group(&common, &params).await?
        }
        Scenario::Idle { connections, hold } => {
            scenarios::idle(&common, connections, hold, nofile).await?
        }
    };
    if let Some(obj) = out.as_object_mut() {
        obj.insert("machine".into(), util::machine_description());
        obj.insert("relay_config_overrides".into(), json!(printable));
        obj.insert(
            "store".into(),
            json!(if shared_store { "postgres" } else { "sqlite" }),
        );
        obj.insert("rlimit_nofile".into(), json!(nofile));
    }
    Ok(out)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Raise the soft descriptor limit to the hard one; the relay child inherits it.
    let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("hush-loadgen: cannot raise RLIMIT_NOFILE: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = cli.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hush-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, nofile)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hush-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_the_last_line_wins() {
        assert_eq!(
            redact("store=postgres://hush:s3cret@db:5432/hush?sslmode=disable"),
            "store=postgres://hush:***@db:5432/hush?sslmode=disable"
        );
        assert_eq!(
            redact("store=postgres://postgres@127.0.0.1/x"),
            "store=postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(redact("max_batch=512"), "max_batch=512");
        let lines = vec![
            "store=sqlite".to_owned(),
            "store = \"postgres://a\"".to_owned(),
        ];
        assert_eq!(line_value(&lines, "store"), Some("postgres://a"));
        assert_eq!(line_value(&lines, "nats"), None);
    }
}
