//! Small shared pieces: the error type, a growable bit set for sequence numbers, latency
//! percentiles, and readings from `/proc` (resident memory and CPU time of a process).

use std::path::Path;
use std::process::Command;

/// Every failure of the load generator, boxed (no panics, no `anyhow`).
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from a message.
pub fn fail(message: impl Into<String>) -> Error {
    message.into().into()
}

/// Largest sequence number accepted into a [`BitSet`] (guards against a corrupted payload
/// making us allocate a huge set).
pub const MAX_SEQ: u64 = 1 << 32;

/// A set of sequence numbers, one bit each.
#[derive(Debug, Default, Clone)]
pub struct BitSet {
    words: Vec<u64>,
    count: u64,
}

impl BitSet {
    /// Insert `i`; false if it was already present or out of range.
    pub fn insert(&mut self, i: u64) -> bool {
        if i >= MAX_SEQ {
            return false;
        }
        let word = (i / 64) as usize;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let bit = 1u64 << (i % 64);
        match self.words.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                self.count += 1;
                true
            }
            _ => false,
        }
    }

    /// Whether `i` is a member.
    pub fn contains(&self, i: u64) -> bool {
        usize::try_from(i / 64)
            .ok()
            .and_then(|w| self.words.get(w))
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// Number of members.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Members of `self` that are not in `other`.
    pub fn count_missing_from(&self, other: &BitSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.words.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }

    /// Add every member of `other`; returns how many were already present.
    pub fn union_with(&mut self, other: &BitSet) -> u64 {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        let mut overlap = 0u64;
        for (mine, theirs) in self.words.iter_mut().zip(other.words.iter()) {
            overlap += u64::from((*mine & *theirs).count_ones());
            *mine |= *theirs;
        }
        self.count = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
        overlap
    }
}

/// Latency summary in milliseconds from samples in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Percentiles {
    /// Exact percentiles (nearest rank) of `samples_us`, which is sorted in place.
    pub fn of(samples_us: &mut [u32]) -> Self {
        samples_us.sort_unstable();
        let n = samples_us.len();
        if n == 0 {
            return Self::default();
        }
        let at = |q: f64| -> f64 {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            f64::from(samples_us.get(rank - 1).copied().unwrap_or(0)) / 1000.0
        };
        let sum: u64 = samples_us.iter().map(|&v| u64::from(v)).sum();
        Self {
            count: n,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
            mean_ms: sum as f64 / n as f64 / 1000.0,
        }
    }

    /// As JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.count,
            "p50_ms": round3(self.p50_ms),
            "p90_ms": round3(self.p90_ms),
            "p99_ms": round3(self.p99_ms),
            "p999_ms": round3(self.p999_ms),
            "max_ms": round3(self.max_ms),
            "mean_ms": round3(self.mean_ms),
        })
    }
}

/// Round to three decimals (for printing and JSON).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Round to one decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A `kB` field (`VmRSS`, `VmHWM`, ...) of `/proc/<pid>/status`.
pub fn status_kb(pid: &str, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(Path::new("/proc").join(pid).join("status"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(field) {
            if let Some(value) = rest.strip_prefix(':') {
                let number = value.split_whitespace().next().unwrap_or("");
                return Ok(number.parse()?);
            }
        }
    }
    Err(fail(format!("/proc/{pid}/status has no {field}")))
}

/// User plus system CPU time of a process, in clock ticks (`/proc/<pid>/stat` fields 14, 15).
pub fn cpu_ticks(pid: &str) -> Result<u64> {
    let text = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat"))?;
    // The command name may contain spaces; fields after it are separated by single spaces.
    let after = text
        .rfind(')')
        .and_then(|i| text.get(i + 1..))
        .ok_or_else(|| fail("unexpected /proc stat format"))?;
    let mut fields = after.split_whitespace();
    // After ")": state is field 3, so utime (14) is the 12th and stime (15) the 13th.
    let utime: u64 = fields.nth(11).unwrap_or("").parse()?;
    let stime: u64 = fields.next().unwrap_or("").parse()?;
    Ok(utime + stime)
}

/// Services whose CPU a run reports beside the relay's (the shared store and the doorbell).
pub const SERVICES: [&str; 2] = ["postgres", "nats-server"];

/// CPU time, in clock ticks, of all processes named each of `names` (`/proc/<pid>/comm`),
/// by name; processes that vanish while being read are skipped.
pub fn named_cpu_ticks(names: &[&str]) -> std::collections::BTreeMap<String, u64> {
    let mut out: std::collections::BTreeMap<String, u64> =
        names.iter().map(|n| ((*n).to_owned(), 0)).collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if let Some(total) = out.get_mut(comm.trim()) {
            *total += cpu_ticks(pid).unwrap_or(0);
        }
    }
    out
}

/// Busy CPU time of the whole machine, in clock ticks (`/proc/stat`: user, nice, system,
/// steal; interrupt and softirq time, much of it our own loopback traffic, is left out), to
/// tell how much CPU other processes took during a run.
pub fn machine_busy_ticks() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| fail("no cpu line in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    Ok(get(0) + get(1) + get(2) + get(7))
}

/// Median and largest time, in ms, of `rounds` 4 KiB write + fsync in `dir` (how fast the
/// disk under the relay's database commits right now).
pub fn fsync_probe(dir: &Path, rounds: usize) -> Result<(f64, f64)> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0u8; 4096];
    let mut times: Vec<f64> = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let t = std::time::Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    let max = times.last().copied().unwrap_or(0.0);
    Ok((median, max))
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if that fails).
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .unwrap_or(100)
}

/// A short description of the machine: CPU model, core count, memory, kernel.
pub fn machine_description() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb = status_meminfo("MemTotal").unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    serde_json::json!({
        "cpu": model,
        "cores": cores,
        "memory_gib": round1(mem_kb as f64 / 1024.0 / 1024.0),
        "kernel": kernel,
    })
}

fn status_meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_counts_and_differences() {
        let mut a = BitSet::default();
        assert!(a.insert(0));
        assert!(a.insert(65));
        assert!(!a.insert(65));
        assert!(!a.insert(MAX_SEQ));
        assert!(a.contains(65) && a.contains(0) && !a.contains(64) && !a.contains(1 << 40));
        assert_eq!(a.len(), 2);
        let mut b = BitSet::default();
        b.insert(65);
        assert_eq!(a.count_missing_from(&b), 1);
        assert_eq!(b.count_missing_from(&a), 0);
        assert_eq!(b.union_with(&a), 1);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        assert_eq!(Percentiles::of(&mut []).count, 0);
    }

    #[test]
    fn proc_readings_of_self() {
        assert!(status_kb("self", "VmRSS").unwrap() > 0);
        let _ = cpu_ticks("self").unwrap();
        let _ = machine_busy_ticks().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (median, max) = fsync_probe(dir.path(), 3).unwrap();
        assert!(median <= max);
    }
}
