//! The `probabilistic_sampler` processor (head sampling) in the Collector's
//! `hash_seed` mode, on the wire.
//!
//! ```yaml
//! processors:
//!   probabilistic_sampler:
//!     sampling_percentage: 10      # 0..=100
//!     hash_seed: 22                # the same on every node that must agree
//!     fail_closed: true            # drop items the decision cannot be made for
//!     attribute_source: traceID    # logs: traceID (default) | record
//!     from_attribute: ""           # logs with attribute_source: record
//! ```
//!
//! The decision is the Collector's, bit for bit, so a fleet mixing sluice and
//! Collector nodes with one seed keeps the same traces: FNV-1a (32-bit) over
//! the seed's four bytes (little-endian) and then the 16 trace-id bytes; an
//! item is kept when `hash & 0x3FFF < ⌊sampling_percentage × 163.84⌋`. It
//! depends on the trace id alone, so every span of a trace gets the same
//! answer on every shard and node, whichever connection it came on.
//!
//! Spans: a `sampling.priority` attribute overrides, as in the Collector: 0
//! (int, double or numeric string) drops the span, a positive value keeps it.
//! A span without a trace id cannot be hashed: `fail_closed` drops it.
//! Logs: by the record's trace id when it has one (`attribute_source:
//! traceID`), or by the value of `from_attribute` (`attribute_source:
//! record`); a record with neither is sampled at random at the same rate.
//!
//! Counted as `otelcol_processor_probabilistic_sampler_count_traces_sampled`
//! and `..._count_logs_sampled`, labelled `policy` (`trace_id_hash`,
//! `sampling_priority`, `attribute`, `random`, `missing_randomness`) and
//! `sampled` (`true` / `false`).

use std::cell::Cell;

use bytes::Bytes;

use crate::{
    config::{node::Node, section::Section, ConfigError},
    processor::ottl::{Fields as _, Path, Value},
    signal::Signal,
    wire::edit,
    wire::view::{self, Item, Kind},
    wire::WireError,
};

/// Where log records take the bytes they are hashed by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttributeSource {
    #[default]
    TraceId,
    Record,
}

/// `processors.probabilistic_sampler[/name]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbabilisticSamplerConfig {
    pub sampling_percentage: f64,
    pub hash_seed: u32,
    pub fail_closed: bool,
    pub attribute_source: AttributeSource,
    pub from_attribute: String,
}

impl Default for ProbabilisticSamplerConfig {
    fn default() -> Self {
        ProbabilisticSamplerConfig {
            sampling_percentage: 0.0,
            hash_seed: 0,
            fail_closed: true,
            attribute_source: AttributeSource::TraceId,
            from_attribute: String::new(),
        }
    }
}

/// Reads a `probabilistic_sampler` config at `path`.
pub fn config(node: &Node, path: &str, line: usize) -> Result<ProbabilisticSamplerConfig, ConfigError> {
    let s = Section::open(
        node,
        path,
        line,
        &[
            "sampling_percentage",
            "hash_seed",
            "fail_closed",
            "attribute_source",
            "from_attribute",
            "mode",
        ],
        &["sampling_priority", "sampling_precision"],
    )?;
    let d = ProbabilisticSamplerConfig::default();
    if let Some(mode) = s.choice("mode", &["hash_seed", "proportional", "equalizing"])? {
        if mode != "hash_seed" {
            return Err(s.error(
                "mode",
                format!("`{mode}` is not yet supported by sluice (use `hash_seed`)"),
            ));
        }
    }
    let pct = s.float("sampling_percentage")?.unwrap_or(d.sampling_percentage);
    if !(0.0..=100.0).contains(&pct) {
        return Err(s.error("sampling_percentage", format!("must be between 0 and 100, found {pct}")));
    }
    let attribute_source = match s.choice("attribute_source", &["traceID", "record"])?.as_deref() {
        Some("record") => AttributeSource::Record,
        _ => AttributeSource::TraceId,
    };
    let from_attribute = s.string("from_attribute")?.unwrap_or_default();
    if attribute_source == AttributeSource::Record && from_attribute.is_empty() {
        return Err(s.error(
            "from_attribute",
            "must name an attribute when `attribute_source` is `record`",
        ));
    }
    Ok(ProbabilisticSamplerConfig {
        sampling_percentage: pct,
        hash_seed: s.uint("hash_seed")?.unwrap_or(d.hash_seed),
        fail_closed: s.bool("fail_closed")?.unwrap_or(d.fail_closed),
        attribute_source,
        from_attribute,
    })
}

/// FNV-1a, 32 bits, over the seed (4 bytes, little-endian) then `bytes`.
pub fn hash(seed: u32, bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The threshold `hash & 0x3FFF` must stay below for `percentage`.
pub fn threshold(percentage: f64) -> u32 {
    (percentage * 16384.0 / 100.0) as u32
}

/// Why an item was kept or dropped (the `policy` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    TraceIdHash,
    SamplingPriority,
    Attribute,
    Random,
    MissingRandomness,
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::TraceIdHash,
        Policy::SamplingPriority,
        Policy::Attribute,
        Policy::Random,
        Policy::MissingRandomness,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Policy::TraceIdHash => "trace_id_hash",
            Policy::SamplingPriority => "sampling_priority",
            Policy::Attribute => "attribute",
            Policy::Random => "random",
            Policy::MissingRandomness => "missing_randomness",
        }
    }
}

/// A sampler ready to run on one shard.
#[derive(Debug)]
pub struct ProbabilisticSampler {
    pub id: String,
    config: ProbabilisticSamplerConfig,
    threshold: u32,
    /// State of the generator for records without randomness (xorshift64).
    rng: Cell<u64>,
    /// `attributes["sampling.priority"]`, built once.
    priority: Path,
}

/// What one run decided, for the counters: (policy, kept) → items.
#[derive(Debug, Default)]
pub struct Decisions {
    pub counts: [[u64; 2]; 5],
}

impl Decisions {
    fn add(&mut self, p: Policy, kept: bool) {
        self.counts[p as usize][kept as usize] += 1;
    }
}

/// The outcome of sampling one request.
#[derive(Debug)]
pub struct Sampled {
    pub chunks: Vec<Bytes>,
    pub dropped: u64,
    pub decisions: Decisions,
}

impl ProbabilisticSampler {
    pub fn new(id: &str, config: &ProbabilisticSamplerConfig, shard: usize) -> Self {
        ProbabilisticSampler {
            id: id.to_string(),
            threshold: threshold(config.sampling_percentage),
            config: config.clone(),
            rng: Cell::new(0x9e37_79b9_7f4a_7c15 ^ ((shard as u64 + 1) << 32) ^ u64::from(config.hash_seed)),
            priority: Path::Attribute("sampling.priority".into()),
        }
    }

    /// Whether this processor changes requests of `signal` (metrics pass).
    pub fn touches(&self, signal: Signal) -> bool {
        signal != Signal::Metrics
    }

    fn by_hash(&self, bytes: &[u8]) -> bool {
        hash(self.config.hash_seed, bytes) & 0x3FFF < self.threshold
    }

    fn random(&self) -> bool {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        ((x >> 40) as u32) & 0x3FFF < self.threshold
    }

    fn decide_span(&self, item: &Item<'_>) -> (Policy, bool) {
        let priority = match item.get(&self.priority) {
            Value::Int(i) => Some(i as f64),
            Value::Double(d) => Some(d),
            Value::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        // 0 drops, a positive value keeps, anything else defers to the hash.
        if let Some(p) = priority.filter(|p| *p >= 0.0) {
            return (Policy::SamplingPriority, p > 0.0);
        }
        match view::bytes_of(item.item, 1).filter(|id| id.iter().any(|&b| b != 0)) {
            Some(id) => (Policy::TraceIdHash, self.by_hash(id)),
            None => (Policy::MissingRandomness, !self.config.fail_closed),
        }
    }

    fn decide_log(&self, item: &Item<'_>) -> (Policy, bool) {
        if self.config.attribute_source == AttributeSource::TraceId {
            if let Some(id) = view::bytes_of(item.item, 9).filter(|id| id.iter().any(|&b| b != 0)) {
                return (Policy::TraceIdHash, self.by_hash(id));
            }
        } else {
            // The attribute's value bytes as they are on the wire (a string's
            // text, an int's varint...).
            if let Some(v) = attribute_value_bytes(item.item, &self.config.from_attribute) {
                return (Policy::Attribute, self.by_hash(v));
            }
        }
        (Policy::Random, self.random())
    }

    /// Samples one request of `signal` held as `chunks`.
    pub fn apply(&self, signal: Signal, chunks: &[Bytes]) -> Result<Sampled, WireError> {
        let kind = match signal {
            Signal::Traces => Kind::Span,
            Signal::Logs => Kind::LogRecord,
            Signal::Metrics => {
                return Ok(Sampled {
                    chunks: chunks.to_vec(),
                    dropped: 0,
                    decisions: Decisions::default(),
                })
            }
        };
        let mut decisions = Decisions::default();
        let mut out = Vec::with_capacity(chunks.len());
        let mut dropped = 0;
        for chunk in chunks {
            let edited = edit::retain(chunk, kind, &mut |item| {
                let (policy, keep) = if kind == Kind::Span {
                    self.decide_span(item)
                } else {
                    self.decide_log(item)
                };
                decisions.add(policy, keep);
                keep
            })?;
            dropped += edited.dropped;
            out.extend(edited.pieces.into_iter().filter(|p| !p.is_empty()));
        }
        Ok(Sampled {
            chunks: out,
            dropped,
            decisions,
        })
    }
}

/// The encoded value (the `AnyValue`'s inner field) of attribute `key` of a
/// log record.
fn attribute_value_bytes<'a>(record: &'a [u8], key: &str) -> Option<&'a [u8]> {
    for f in crate::wire::Fields::all(record).flatten() {
        let (6, crate::wire::Value::Len(s, e)) = (f.number, f.value) else {
            continue;
        };
        let kv = &record[s..e];
        if view::bytes_of(kv, 1).unwrap_or_default() == key.as_bytes() {
            let any = view::bytes_of(kv, 2)?;
            // The one field of the AnyValue: its bytes after the tag.
            return match crate::wire::Fields::all(any).flatten().last()?.value {
                crate::wire::Value::Len(a, b) => Some(&any[a..b]),
                _ => Some(any),
            };
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        // FNV-1a 32 of "" and of "a" (published test vectors), with no seed
        // bytes: check the core against them by hashing without the seed.
        let fnv = |bytes: &[u8]| {
            let mut h: u32 = 0x811c_9dc5;
            for &b in bytes {
                h ^= u32::from(b);
                h = h.wrapping_mul(0x0100_0193);
            }
            h
        };
        assert_eq!(fnv(b""), 0x811c_9dc5);
        assert_eq!(fnv(b"a"), 0xe40c_292c);
        assert_eq!(fnv(b"foobar"), 0xbf9c_f968);
        assert_eq!(hash(0x0403_0201, b"xyz"), fnv(b"\x01\x02\x03\x04xyz"));
        assert_eq!(threshold(100.0), 16384);
        assert_eq!(threshold(10.0), 1638);
        assert_eq!(threshold(0.0), 0);
    }
}
