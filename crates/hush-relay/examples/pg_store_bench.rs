//! Throughput of the PostgreSQL relay store through the public `Store` API: durable `Enqueue`
//! batches to offline recipients, then `Ack` batches deleting them again, then batches mixing
//! both (online traffic: every other op acks a message stored by an earlier batch).
//!
//! ```text
//! cargo run -p hush-relay --example pg_store_bench [-- BATCHES OPS RECIPIENTS BYTES]
//! ```
//!
//! Defaults: 50 batches of 500 Enqueue ops of 256 B to 1000 recipients. Creates a scratch
//! database `hush_bench_<pid>` via the admin URL in `HUSH_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drops it afterwards (with
//! `HUSH_BENCH_KEEP=1`: keeps it, with the enqueued messages, for inspection).

use std::collections::VecDeque;
use std::error::Error;
use std::time::{Duration, Instant};

use hush_relay::store::postgres::PostgresStore;
use hush_relay::store::{Store, WriteOp, WriteResult};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (batches, ops, recipients, bytes) = (arg(0, 50), arg(1, 500), arg(2, 1000), arg(3, 256));

    let admin_url =
        std::env::var("HUSH_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)?;
    let name = format!("hush_bench_{}", std::process::id());
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) if admin_url.contains("://") => format!("{base}/{name}"),
        _ => format!("{admin_url} dbname={name}"),
    };
    let keep = std::env::var_os("HUSH_BENCH_KEEP").is_some();
    let result = run(&url, batches, ops, recipients, bytes, keep);
    if keep {
        println!("kept database {name}");
    } else {
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    }
    result
}

fn identity(n: usize) -> [u8; 32] {
    let mut id = [1u8; 32];
    for (byte, n) in id.iter_mut().zip((n as u64).to_le_bytes()) {
        *byte = n;
    }
    id
}

fn run(
    url: &str,
    batches: usize,
    ops: usize,
    recipients: usize,
    bytes: usize,
    keep: bool,
) -> Result<(), Box<dyn Error>> {
    let store = PostgresStore::connect(url)?;
    let envelope = vec![0x5A; bytes];
    let mut stored = Vec::with_capacity(batches * ops);
    let mut latencies = Vec::with_capacity(batches);
    let started = Instant::now();
    for b in 0..batches {
        let batch: Vec<WriteOp> = (0..ops)
            .map(|i| {
                let n = b * ops + i;
                WriteOp::Enqueue {
                    recipient: identity(n % recipients.max(1)),
                    sender: identity(1_000_000 + n % 97),
                    envelope: envelope.clone(),
                    received_at_ms: 1_700_000_000_000,
                    max_messages: u32::MAX,
                    max_bytes: u64::MAX,
                    max_total_bytes: u64::MAX,
                    max_sender_bytes: u64::MAX,
                }
            })
            .collect();
        let t = Instant::now();
        let results = store.apply(&batch)?;
        latencies.push(t.elapsed());
        for (op, result) in batch.iter().zip(results) {
            match (op, result) {
                (WriteOp::Enqueue { recipient, .. }, WriteResult::Stored(id)) => {
                    stored.push((*recipient, id));
                }
                (_, other) => return Err(format!("unexpected result {other:?}").into()),
            }
        }
    }
    let enqueue_secs = started.elapsed().as_secs_f64();
    let total = batches * ops;
    report("enqueue", total, enqueue_secs, &mut latencies);
    if keep {
        return Ok(());
    }

    // Ack them again: one Ack op per message (a client acking one delivery), same batch size.
    let mut latencies = Vec::with_capacity(batches);
    let started = Instant::now();
    for chunk in stored.chunks(ops.max(1)) {
        let batch: Vec<WriteOp> = chunk
            .iter()
            .map(|(recipient, id)| WriteOp::Ack {
                recipient: *recipient,
                ids: vec![*id],
            })
            .collect();
        let t = Instant::now();
        store.apply(&batch)?;
        latencies.push(t.elapsed());
    }
    report(
        "ack",
        stored.len(),
        started.elapsed().as_secs_f64(),
        &mut latencies,
    );
    let totals = store.totals()?;
    if totals.messages != 0 {
        return Err(format!("{} messages left after acking all", totals.messages).into());
    }
    mixed(&store, batches, ops, recipients, &envelope)
}

/// Online traffic: every other op of a batch acks the oldest message still stored (from an
/// earlier batch), the others enqueue new ones.
fn mixed(
    store: &PostgresStore,
    batches: usize,
    ops: usize,
    recipients: usize,
    envelope: &[u8],
) -> Result<(), Box<dyn Error>> {
    let mut backlog: VecDeque<([u8; 32], u64)> = VecDeque::new();
    let mut latencies = Vec::with_capacity(batches);
    let mut done = 0usize;
    let started = Instant::now();
    for b in 0..batches {
        let mut batch = Vec::with_capacity(ops);
        for i in 0..ops {
            let oldest = if i % 2 == 1 {
                backlog.pop_front()
            } else {
                None
            };
            batch.push(match oldest {
                Some((recipient, id)) => WriteOp::Ack {
                    recipient,
                    ids: vec![id],
                },
                None => {
                    let n = b * ops + i;
                    WriteOp::Enqueue {
                        recipient: identity(n % recipients.max(1)),
                        sender: identity(1_000_000 + n % 97),
                        envelope: envelope.to_vec(),
                        received_at_ms: 1_700_000_000_000,
                        max_messages: u32::MAX,
                        max_bytes: u64::MAX,
                        max_total_bytes: u64::MAX,
                        max_sender_bytes: u64::MAX,
                    }
                }
            });
        }
        let t = Instant::now();
        let results = store.apply(&batch)?;
        latencies.push(t.elapsed());
        done += batch.len();
        for (op, result) in batch.iter().zip(results) {
            match (op, result) {
                (WriteOp::Enqueue { recipient, .. }, WriteResult::Stored(id)) => {
                    backlog.push_back((*recipient, id));
                }
                (WriteOp::Ack { .. }, WriteResult::Acked(1)) => {}
                (_, other) => return Err(format!("unexpected result {other:?}").into()),
            }
        }
    }
    report(
        "mixed",
        done,
        started.elapsed().as_secs_f64(),
        &mut latencies,
    );
    let stored = store.totals()?.messages;
    if stored != backlog.len() as u64 {
        return Err(format!("{stored} messages stored, {} expected", backlog.len()).into());
    }
    Ok(())
}

fn report(what: &str, ops: usize, secs: f64, latencies: &mut [Duration]) {
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{what}: {ops} ops in {secs:.2} s = {:.0} ops/s; batch latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ops as f64 / secs,
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
}
