//! The `memory_limiter` processor (Collector semantics). One process-wide
//! monitor thread measures memory every `check_interval` (the process's RSS,
//! or the bytes the shards report holding if that is larger) and publishes a
//! verdict: ok, above the soft limit (`limit - spike_limit`), or above the
//! hard limit. Each shard reads the verdict at the same interval into a
//! `Cell` (`ShardGate::tick`), publishes its own held-bytes figure into its
//! own slot, and the receive path reads only the `Cell`: above the soft limit
//! new data is refused with a retryable answer (gRPC RESOURCE_EXHAUSTED with
//! RetryInfo, HTTP 429 with Retry-After); above the hard limit the shard also
//! sheds its queued in-memory batches (never spooled data), counted as
//! dropped with reason `memory_limit`, and returns freed memory to the OS.
//!
//! Between checks a shard also refuses once its own growth since the last
//! check, scaled by the number of shards, would cross the soft limit, so a
//! burst cannot overshoot by more than one request per shard.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use thiserror::Error;

use crate::{
    config::{Config, MemoryLimiterConfig, ProcessorConfig},
    telemetry::{prometheus::process_rss, Stats},
};

#[derive(Debug, Error)]
pub enum MemoryLimiterError {
    #[error(
        "memory_limiter: limit_percentage needs the total memory of the machine or cgroup, which could not be read"
    )]
    NoTotalMemory,
    #[error("memory_limiter: cannot start the monitor thread: {0}")]
    Spawn(std::io::Error),
}

/// The monitor's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok = 0,
    /// Above the soft limit: refuse new data.
    Soft = 1,
    /// Above the hard limit: refuse and shed queued data.
    Hard = 2,
}

impl Verdict {
    fn from_u64(v: u64) -> Verdict {
        match v {
            0 => Verdict::Ok,
            1 => Verdict::Soft,
            _ => Verdict::Hard,
        }
    }
}

/// The limits in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub soft: u64,
    pub hard: u64,
    pub check_interval: Duration,
}

const MIB: u64 = 1024 * 1024;

impl Limits {
    /// From the config; `total` is the machine's or cgroup's memory, needed
    /// for `limit_percentage`.
    pub fn from_config(c: &MemoryLimiterConfig, total: Option<u64>) -> Result<Limits, MemoryLimiterError> {
        let (hard, spike) = if c.limit_mib > 0 {
            // The config bounds both (16 TiB); saturate regardless.
            (c.limit_mib.saturating_mul(MIB), c.spike_limit_mib.saturating_mul(MIB))
        } else {
            let total = total.ok_or(MemoryLimiterError::NoTotalMemory)?;
            (
                total / 100 * u64::from(c.limit_percentage),
                total / 100 * u64::from(c.spike_limit_percentage),
            )
        };
        Ok(Limits {
            soft: hard.saturating_sub(spike),
            hard,
            check_interval: c.check_interval.max(Duration::from_millis(1)),
        })
    }

    pub fn verdict(&self, used: u64) -> Verdict {
        if used >= self.hard {
            Verdict::Hard
        } else if used >= self.soft {
            Verdict::Soft
        } else {
            Verdict::Ok
        }
    }
}

/// The memory_limiter processor used by any pipeline (the first one, if
/// pipelines name different ones: there is one monitor per process).
pub fn config_of(config: &Config) -> Option<MemoryLimiterConfig> {
    config.service.pipelines.iter().find_map(|p| {
        p.processors.iter().find_map(|id| match config.processors.get(id) {
            Some(ProcessorConfig::MemoryLimiter(m)) => Some(m.clone()),
            _ => None,
        })
    })
}

/// Whether a pipeline has a memory_limiter processor.
pub fn pipeline_limited(config: &Config, processors: &[crate::config::ComponentId]) -> bool {
    processors
        .iter()
        .any(|id| matches!(config.processors.get(id), Some(ProcessorConfig::MemoryLimiter(_))))
}

/// A byte count from a cgroup file, `None` for `max` or unreadable.
fn cgroup_limit(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    // cgroup v1 reports "no limit" as a huge page-rounded number.
    (v < (1u64 << 60)).then_some(v)
}

/// `MemTotal` from /proc/meminfo text, bytes.
fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The memory available to this process: the cgroup limit if one is set
/// (v2 `memory.max`, v1 `memory.limit_in_bytes`), else the machine's MemTotal.
pub fn total_memory() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in cgroup.lines() {
        // v2: "0::/path"; v1 memory controller: "N:memory:/path".
        let mut parts = line.splitn(3, ':');
        let (_, ctrl, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let file = if ctrl.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else if ctrl.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else {
            continue;
        };
        for f in [file.as_str(), "/sys/fs/cgroup/memory.max"] {
            if let Some(v) = std::fs::read_to_string(f).ok().as_deref().and_then(cgroup_limit) {
                return Some(v);
            }
        }
    }
    meminfo_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// Returns freed heap memory to the OS (glibc keeps it otherwise).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free
    // memory; it is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Starts the monitor thread; it runs until `stop` is set.
pub fn spawn_monitor(
    limits: Limits,
    stats: Stats,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, MemoryLimiterError> {
    let p = &stats.process;
    p.limiter_enabled.set(1);
    p.limiter_soft.set(limits.soft);
    p.limiter_hard.set(limits.hard);
    std::thread::Builder::new()
        .name("sluice-memory".into())
        .spawn(move || {
            let mut last = Verdict::Ok;
            while !stop.load(Ordering::Relaxed) {
                let held: u64 = stats.shards.iter().map(|s| s.held_bytes.get()).sum();
                let mut used = process_rss().unwrap_or(0).max(held);
                if limits.verdict(used) != Verdict::Ok && held < limits.soft / 2 {
                    // Mostly freed memory the allocator still holds: give it back first.
                    trim();
                    used = process_rss().unwrap_or(0).max(held);
                }
                let v = limits.verdict(used);
                let p = &stats.process;
                p.limiter_used.set(used);
                p.limiter_state.set(v as u64);
                if v != last {
                    match v {
                        Verdict::Ok => tracing::info!(
                            used_mib = used / MIB,
                            "memory back below the soft limit; accepting data"
                        ),
                        Verdict::Soft => tracing::warn!(
                            used_mib = used / MIB,
                            soft_mib = limits.soft / MIB,
                            "memory above the soft limit; refusing data"
                        ),
                        Verdict::Hard => tracing::warn!(
                            used_mib = used / MIB,
                            hard_mib = limits.hard / MIB,
                            "memory above the hard limit; refusing data and shedding queued batches"
                        ),
                    }
                    last = v;
                }
                std::thread::sleep(limits.check_interval);
            }
        })
        .map_err(MemoryLimiterError::Spawn)
}

/// A shard's view of the verdict, refreshed by `tick` at check_interval.
#[derive(Debug)]
pub struct ShardGate {
    pub limits: Limits,
    shards: u64,
    state: Cell<Verdict>,
    /// The monitor's figure and this shard's held bytes at the last tick.
    base_used: Cell<u64>,
    base_held: Cell<u64>,
}

impl ShardGate {
    pub fn new(limits: Limits, shards: usize) -> Self {
        ShardGate {
            limits,
            shards: shards.max(1) as u64,
            state: Cell::new(Verdict::Ok),
            base_used: Cell::new(0),
            base_held: Cell::new(0),
        }
    }

    /// Whether new data is refused, given the bytes this shard holds now.
    #[inline]
    pub fn refusing(&self, held_now: u64) -> bool {
        if self.state.get() != Verdict::Ok {
            return true;
        }
        let growth = held_now.saturating_sub(self.base_held.get()) * self.shards;
        self.base_used.get() + growth >= self.limits.soft
    }

    /// At check_interval: publishes this shard's held bytes, reads the verdict.
    pub fn tick(&self, stats: &Stats, shard: usize, held_now: u64) -> Verdict {
        stats.shards[shard].held_bytes.set(held_now);
        let p = &stats.process;
        let v = Verdict::from_u64(p.limiter_state.get());
        self.state.set(v);
        self.base_used.set(p.limiter_used.get());
        self.base_held.set(held_now);
        v
    }

    pub fn verdict(&self) -> Verdict {
        self.state.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(limit: u64, spike: u64) -> MemoryLimiterConfig {
        MemoryLimiterConfig {
            limit_mib: limit,
            spike_limit_mib: spike,
            ..Default::default()
        }
    }

    #[test]
    fn limits_and_verdicts() {
        let l = Limits::from_config(&cfg(200, 50), None).unwrap();
        assert_eq!((l.soft, l.hard), (150 * MIB, 200 * MIB));
        assert_eq!(l.verdict(149 * MIB), Verdict::Ok);
        assert_eq!(l.verdict(150 * MIB), Verdict::Soft);
        assert_eq!(l.verdict(200 * MIB), Verdict::Hard);
        let pct = MemoryLimiterConfig {
            limit_percentage: 50,
            spike_limit_percentage: 10,
            ..Default::default()
        };
        let l = Limits::from_config(&pct, Some(1000 * MIB)).unwrap();
        assert_eq!((l.soft, l.hard), (400 * MIB, 500 * MIB));
        assert!(Limits::from_config(&pct, None).is_err());
    }

    #[test]
    fn cgroup_and_meminfo_parsing() {
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("536870912\n"), Some(512 * MIB));
        assert_eq!(cgroup_limit("9223372036854771712"), None);
        assert_eq!(
            meminfo_total("MemTotal:       16318412 kB\nMemFree: 1 kB\n"),
            Some(16318412 * 1024)
        );
        assert!(total_memory().is_some_and(|t| t > 0));
    }

    #[test]
    fn gate_reads_the_verdict_and_guards_growth() {
        let stats = Stats::new(2, &[], &[]);
        let limits = Limits::from_config(&cfg(200, 50), None).unwrap();
        let g = ShardGate::new(limits, 2);
        stats.process.limiter_used.set(100 * MIB);
        assert_eq!(g.tick(&stats, 1, 10 * MIB), Verdict::Ok);
        assert_eq!(stats.shards[1].held_bytes.get(), 10 * MIB);
        assert!(!g.refusing(20 * MIB));
        // 2 shards x 25 MiB of growth reaches the 150 MiB soft limit.
        assert!(g.refusing(35 * MIB));
        stats.process.limiter_state.set(Verdict::Soft as u64);
        assert!(!g.refusing(10 * MIB), "read only at tick");
        assert_eq!(g.tick(&stats, 1, 10 * MIB), Verdict::Soft);
        assert!(g.refusing(0));
    }
}
