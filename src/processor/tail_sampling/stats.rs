//! The tail sampler's counters on one shard, and their Prometheus rendering
//! with the Collector's names (`otelcol_processor_tail_sampling_*`) plus
//! sluice's own ring and routing figures (`sluice_tail_sampling_*`).

use std::fmt;

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

use crate::telemetry::{Counter, Gauge, Histogram, ShardStats};

/// Late span age bounds, in milliseconds (exposed in seconds).
pub const LATE_AGE_BOUNDS_MS: [u64; 10] = [10, 50, 100, 500, 1_000, 5_000, 10_000, 30_000, 60_000, 300_000];

/// One tail sampler's counters on one shard (written only by that shard).
#[derive(Debug, Default)]
pub struct TailStats {
    pub processor: String,
    pub policies: Vec<String>,
    /// Per policy: traces it answered not sampled `[0]` / sampled `[1]`.
    pub sampled: Vec<[Counter; 2]>,
    /// Final decisions: not sampled `[0]` / sampled `[1]`.
    pub global: [Counter; 2],
    /// Traces decided before their `decision_wait` because the table was full.
    pub too_early: Counter,
    pub on_memory: Gauge,
    pub buffered_bytes: Gauge,
    /// Spans of already decided traces: dropped `[0]` / kept `[1]`.
    pub late_spans: [Counter; 2],
    pub late_age: Histogram<11>,
    /// Spans this shard sent to the shards owning their traces.
    pub routed_spans: Counter,
    /// Requests refused because a ring was full.
    pub ring_full: Counter,
    /// Depth of ring `this shard → b`, at the last push.
    pub ring_depth: Vec<Gauge>,
}

impl TailStats {
    pub fn new(processor: &str, policies: &[String], shards: usize) -> TailStats {
        TailStats {
            processor: processor.to_string(),
            policies: policies.to_vec(),
            sampled: policies.iter().map(|_| Default::default()).collect(),
            ring_depth: (0..shards).map(|_| Gauge::default()).collect(),
            ..Default::default()
        }
    }
}

type Labels = Vec<(&'static str, String)>;

fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: Vec<(Labels, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        match ty {
            MetricType::Gauge => ConstGauge::new(v as i64).encode(m.encode_family(&labels)?)?,
            _ => ConstCounter::new(v).encode(m.encode_family(&labels)?)?,
        }
    }
    Ok(())
}

/// Encodes every tail sampler's figures, summed over shards.
pub fn encode(enc: &mut DescriptorEncoder, shards: &[ShardStats]) -> fmt::Result {
    let Some(first) = shards.first() else { return Ok(()) };
    if first.tail.is_empty() {
        return Ok(());
    }
    let sum = |i: usize, f: &dyn Fn(&TailStats) -> u64| -> u64 { shards.iter().map(|s| f(&s.tail[i])).sum() };
    let pl = |t: &TailStats| vec![("processor", t.processor.clone())];
    let (mut per_policy, mut global, mut early, mut mem, mut bytes, mut late, mut routed, mut full, mut depth) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, t) in first.tail.iter().enumerate() {
        for (p, name) in t.policies.iter().enumerate() {
            for (s, label) in [(1usize, "true"), (0, "false")] {
                let mut l = pl(t);
                l.push(("policy", name.clone()));
                l.push(("sampled", label.into()));
                per_policy.push((l, sum(i, &|x| x.sampled[p][s].get())));
            }
        }
        for (s, label) in [(1usize, "true"), (0, "false")] {
            let mut l = pl(t);
            l.push(("sampled", label.into()));
            global.push((l.clone(), sum(i, &|x| x.global[s].get())));
            late.push((l, sum(i, &|x| x.late_spans[s].get())));
        }
        early.push((pl(t), sum(i, &|x| x.too_early.get())));
        mem.push((pl(t), sum(i, &|x| x.on_memory.get())));
        bytes.push((pl(t), sum(i, &|x| x.buffered_bytes.get())));
        routed.push((pl(t), sum(i, &|x| x.routed_spans.get())));
        full.push((pl(t), sum(i, &|x| x.ring_full.get())));
        for (a, sh) in shards.iter().enumerate() {
            for (b, g) in sh.tail[i].ring_depth.iter().enumerate() {
                if a != b {
                    let mut l = pl(t);
                    l.push(("from", a.to_string()));
                    l.push(("to", b.to_string()));
                    depth.push((l, g.get()));
                }
            }
        }
    }
    let p = "otelcol_processor_tail_sampling_";
    family(
        enc,
        &format!("{p}count_traces_sampled"),
        "Count of traces that were sampled or not per sampling policy",
        MetricType::Counter,
        per_policy,
    )?;
    family(
        enc,
        &format!("{p}global_count_traces_sampled"),
        "Global count of traces that were sampled or not by at least one policy",
        MetricType::Counter,
        global,
    )?;
    family(
        enc,
        &format!("{p}sampling_trace_dropped_too_early"),
        "Count of traces that needed to be decided before the configured wait time",
        MetricType::Counter,
        early,
    )?;
    family(
        enc,
        &format!("{p}sampling_traces_on_memory"),
        "Tracks the number of traces currently on memory",
        MetricType::Gauge,
        mem,
    )?;
    {
        let name = format!("{p}sampling_late_span_age");
        let mut m = enc.encode_descriptor(
            &name,
            "Time delta between when the sampling decision was taken and when a late span arrived [seconds]",
            None,
            MetricType::Histogram,
        )?;
        for (i, t) in first.tail.iter().enumerate() {
            let mut counts = [0u64; 11];
            let (mut s, mut n) = (0u64, 0u64);
            for sh in shards {
                let h = &sh.tail[i].late_age;
                for (c, b) in counts.iter_mut().zip(h.buckets.iter()) {
                    *c += b.get();
                }
                s += h.sum.get();
                n += h.count.get();
            }
            let buckets: Vec<(f64, u64)> = counts
                .iter()
                .enumerate()
                .map(|(j, &c)| (LATE_AGE_BOUNDS_MS.get(j).map_or(f64::MAX, |&b| b as f64 / 1000.0), c))
                .collect();
            let labels = pl(t);
            m.encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(s as f64 / 1000.0, n, &buckets, None)?;
        }
    }
    family(
        enc,
        "sluice_tail_sampling_buffered_bytes",
        "Bytes of spans buffered by the tail sampler, waiting for their decision",
        MetricType::Gauge,
        bytes,
    )?;
    family(
        enc,
        "sluice_tail_sampling_late_spans",
        "Spans that arrived after their trace was decided, by the decision they followed",
        MetricType::Counter,
        late,
    )?;
    family(
        enc,
        "sluice_tail_sampling_routed_spans",
        "Spans sent to the shard owning their trace",
        MetricType::Counter,
        routed,
    )?;
    family(
        enc,
        "sluice_tail_sampling_ring_full",
        "Requests refused (retryably) because a ring to another shard was full",
        MetricType::Counter,
        full,
    )?;
    family(
        enc,
        "sluice_tail_sampling_ring_depth",
        "Messages waiting in the ring from one shard to another",
        MetricType::Gauge,
        depth,
    )
}
