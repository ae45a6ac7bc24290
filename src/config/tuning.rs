//! The sluice-specific `tuning` section (shards, cores, pinning, shutdown
//! deadline, io_uring memory, in-flight request budget, body timeouts,
//! handshake timeout and connections per shard) and tuning files given with
//! `--tuning`.

use super::{node::Node, section::Section, ConfigError, TuningConfig};

const KEYS: &[&str] = &[
    "shards",
    "cores",
    "pin",
    "shutdown_timeout",
    "io_memory_kib",
    "inflight_budget_mib",
    "body_timeout",
    "body_deadline",
    "handshake_timeout",
    "max_connections",
];

/// Reads a `tuning` mapping at `path` (its key on `line`).
pub fn section(node: &Node, path: &str, line: usize) -> Result<TuningConfig, ConfigError> {
    let s = Section::open(node, path, line, KEYS, &[])?;
    let d = TuningConfig::default();
    let t = TuningConfig {
        shards: s.uint("shards")?,
        cores: s.uints("cores")?,
        pin: s.bool("pin")?.unwrap_or(d.pin),
        shutdown_timeout: s.duration("shutdown_timeout")?.unwrap_or(d.shutdown_timeout),
        io_memory_kib: s.uint("io_memory_kib")?,
        inflight_budget_mib: s.uint("inflight_budget_mib")?,
        body_timeout: s.duration("body_timeout")?.unwrap_or(d.body_timeout),
        body_deadline: s.duration("body_deadline")?.unwrap_or(d.body_deadline),
        handshake_timeout: s.duration("handshake_timeout")?.unwrap_or(d.handshake_timeout),
        max_connections: s.uint("max_connections")?,
    };
    if t.shards == Some(0) {
        return Err(s.error("shards", "must be at least 1"));
    }
    if let Some(cores) = &t.cores {
        if cores.is_empty() {
            return Err(s.error(
                "cores",
                "must list at least one CPU (or be left out to use the affinity mask)",
            ));
        }
        if let Some(n) = t.shards {
            if n > cores.len() {
                return Err(s.error(
                    "shards",
                    format!("{n} shards do not fit on the {} CPUs listed in `cores`", cores.len()),
                ));
            }
        }
    }
    if t.io_memory_kib == Some(0) {
        return Err(s.error("io_memory_kib", "must be at least 1 (or left out for the default)"));
    }
    if let Some(b) = t.inflight_budget_mib {
        if b == 0 || b > 1 << 20 {
            return Err(s.error(
                "inflight_budget_mib",
                "must be between 1 and 1048576 (1 TiB), or left out for the default",
            ));
        }
    }
    for (key, v) in [
        ("body_timeout", t.body_timeout),
        ("body_deadline", t.body_deadline),
        ("handshake_timeout", t.handshake_timeout),
    ] {
        if v.is_zero() {
            return Err(s.error(key, "must be more than 0s"));
        }
    }
    if t.max_connections == Some(0) {
        return Err(s.error("max_connections", "must be at least 1 (or left out for the default)"));
    }
    Ok(t)
}

/// A tuning file's document: the tuning keys at the top level, or a single
/// `tuning:` mapping.
pub fn file(root: &Node) -> Result<TuningConfig, ConfigError> {
    let top = Section::any(root, "", 1)?;
    match top.key("tuning") {
        Some(k) => {
            // With the `tuning:` form nothing else may be at the top level.
            Section::open(root, "", 1, &["tuning"], &[])?;
            match top.get("tuning") {
                Some(node) => section(node, "tuning", k.line),
                None => Ok(TuningConfig::default()),
            }
        }
        None => section(root, "", 1),
    }
}
