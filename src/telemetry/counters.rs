//! Per-shard counters. Each value has exactly one writer, its shard, which
//! updates it with a relaxed load + store (no locked read-modify-write, no
//! cache-line sharing with other shards); the scrape side only reads. All
//! shards' values are summed at scrape time.

use std::sync::{
    atomic::{AtomicU64, Ordering::Relaxed},
    Arc,
};

use crate::signal::Signal;

/// A monotonically increasing count with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        // Single writer: a plain load + store is exact and avoids a locked RMW.
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down, with a single writer.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One counter per signal.
#[derive(Debug, Default)]
pub struct PerSignal(pub [Counter; 3]);

impl PerSignal {
    #[inline]
    pub fn add(&self, s: Signal, n: u64) {
        self.0[s.index()].add(n);
    }

    #[inline]
    pub fn get(&self, s: Signal) -> u64 {
        self.0[s.index()].get()
    }
}

/// Counters of one receiver transport on one shard.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    /// Receiver id, e.g. `otlp` or `otlp/2`.
    pub receiver: String,
    /// `grpc` or `http`.
    pub transport: &'static str,
    pub accepted: PerSignal,
    pub refused: PerSignal,
    pub requests: Counter,
    /// Failed TLS handshakes, by `TlsFailure` (index = position in `TlsFailure::ALL`).
    pub tls_handshake_failures: [Counter; crate::tls::server::TlsFailure::COUNT],
}

/// Why items were discarded (label `reason` of `sluice_dropped_items_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// `overflow: drop_new`: the queue was full, the new batch was discarded.
    DropNew,
    /// `overflow: drop_oldest`: the oldest queued batch was evicted for a new one.
    DropOldest,
    /// `overflow: sample`: not kept by sampling above the high-water mark.
    Sample,
    /// Shed by the memory limiter above its hard limit.
    MemoryLimit,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::DropNew,
        DropReason::DropOldest,
        DropReason::Sample,
        DropReason::MemoryLimit,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::DropNew => "drop_new",
            DropReason::DropOldest => "drop_oldest",
            DropReason::Sample => "sample",
            DropReason::MemoryLimit => "memory_limit",
        }
    }
}

/// A histogram with fixed bucket bounds, one writer. `N` buckets: one per
/// bound plus the +Inf bucket (`N` must be `bounds.len() + 1`). Buckets are
/// plain (not cumulative) counts; the scrape side accumulates.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    pub buckets: [Counter; N],
    /// Sum of observed values, in the observed unit.
    pub sum: Counter,
    pub count: Counter,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| Counter::default()),
            sum: Counter::default(),
            count: Counter::default(),
        }
    }
}

impl<const N: usize> Histogram<N> {
    /// Records `v` into the first bucket whose bound is >= `v`.
    #[inline]
    pub fn observe(&self, bounds: &[u64], v: u64) {
        let i = bounds.partition_point(|&b| b < v).min(N - 1);
        self.buckets[i].add(1);
        self.sum.add(v);
        self.count.add(1);
    }
}

/// Export latency bucket bounds, in microseconds.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000,
];
/// Export latency histogram (microseconds).
pub type LatencyHistogram = Histogram<15>;

/// Batch size bucket bounds, in items (the Collector's defaults).
pub const BATCH_SIZE_BOUNDS: [u64; 22] = [
    10, 25, 50, 75, 100, 250, 500, 750, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 20000, 30000,
    50000, 100000,
];
/// Batch size histogram (items).
pub type BatchSizeHistogram = Histogram<23>;

/// One batch processor's counters on one shard.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Processor id, e.g. `batch`.
    pub processor: String,
    pub send_size: BatchSizeHistogram,
}

/// One filter processor's counters on one shard.
#[derive(Debug, Default)]
pub struct FilterStats {
    /// Processor id, e.g. `filter/ingest`.
    pub processor: String,
    /// Spans, data points and log records dropped.
    pub filtered: PerSignal,
}

/// One probabilistic_sampler's decisions on one shard: per signal (traces,
/// logs), per `Policy` (index), not sampled / sampled.
#[derive(Debug, Default)]
pub struct SamplerStats {
    pub processor: String,
    pub traces: [[Counter; 2]; 5],
    pub logs: [[Counter; 2]; 5],
}

impl SamplerStats {
    pub fn record(&self, signal: Signal, d: &crate::processor::probabilistic_sampler::Decisions) {
        let rows = match signal {
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
            Signal::Metrics => return,
        };
        for (row, counts) in rows.iter().zip(&d.counts) {
            row[0].add(counts[0]);
            row[1].add(counts[1]);
        }
    }
}

/// Counters of one exporter on one shard.
#[derive(Debug, Default)]
pub struct ExporterStats {
    pub exporter: String,
    /// Items handed to the sending queue.
    pub enqueued: PerSignal,
    pub sent: PerSignal,
    pub send_failed: PerSignal,
    pub enqueue_failed: PerSignal,
    /// Batches waiting in the sending queue.
    pub queue_size: Gauge,
    pub queue_capacity: Gauge,
    /// Connections opened to the backend.
    pub connects: Counter,
    /// Export attempts that failed and will be retried.
    pub retries: Counter,
    /// Items discarded, by `DropReason` (index = position in `DropReason::ALL`).
    pub dropped: [PerSignal; 4],
    /// Items removed from the queue after they were enqueued (drop_oldest
    /// evictions, memory-limit shedding); part of `dropped`.
    pub evicted: PerSignal,
    /// Bytes of the batches waiting in the sending queue.
    pub queue_bytes: Gauge,
    /// Duration of each export attempt (request sent to answer or error).
    pub latency: LatencyHistogram,
    /// Batches the backend refused for good (not retryable).
    pub permanent_errors: Counter,
    /// Circuit breaker state: 0 closed, 1 open, 2 half-open.
    pub circuit_state: Gauge,
    /// Persistent queue: encoded bytes on disk, and records not yet exported.
    pub spool_bytes: Gauge,
    pub spool_records: Gauge,
    /// Persistent queue records skipped because they failed their checks.
    pub spool_corrupt: Counter,
}

/// Everything one shard counts.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub shard: usize,
    pub receivers: Vec<ReceiverStats>,
    pub exporters: Vec<ExporterStats>,
    /// Items dropped during shutdown because the deadline passed.
    pub shutdown_dropped: PerSignal,
    /// Batch processors, in `Stats::build` order.
    pub batches: Vec<BatchStats>,
    /// Filter processors, in `Stats::with_processors` order.
    pub filters: Vec<FilterStats>,
    /// Probabilistic samplers, in `Stats::with_processors` order.
    pub samplers: Vec<SamplerStats>,
    /// Tail samplers, in `Stats::with_tail_samplers` order.
    pub tail: Vec<crate::processor::tail_sampling::stats::TailStats>,
    /// Bytes this shard holds in batches and sending queues, published at the
    /// memory limiter's check_interval.
    pub held_bytes: Gauge,
    /// Client connections of the shard's receivers.
    pub conns: ConnStats,
}

/// Client connections of one shard's receivers (written per connection, not per request).
#[derive(Debug, Default)]
pub struct ConnStats {
    pub open: Gauge,
    /// Closed at once: the shard was at `max_connections`.
    pub refused: Counter,
    /// Closed by the connection watchdog, by `CloseReason`.
    pub closed: [Counter; 4],
    /// Failed `accept` calls (e.g. out of file descriptors).
    pub accept_errors: Counter,
}

/// Process-wide figures, each written by one thread (the memory monitor, or
/// the main thread for `phase`).
#[derive(Debug, Default)]
pub struct ProcessStats {
    /// 0 starting, 1 running, 2 stopping (written by `shard::run`).
    pub phase: Gauge,
    /// Whether a memory limiter is configured (1) or not (0).
    pub limiter_enabled: Gauge,
    /// Memory limiter verdict: 0 ok, 1 above the soft limit, 2 above the hard limit.
    pub limiter_state: Gauge,
    /// The memory figure the last verdict was based on, bytes.
    pub limiter_used: Gauge,
    pub limiter_soft: Gauge,
    pub limiter_hard: Gauge,
}

impl ProcessStats {
    pub const STARTING: u64 = 0;
    pub const RUNNING: u64 = 1;
    pub const STOPPING: u64 = 2;
}

impl ExporterStats {
    /// Items enqueued but neither sent, failed nor evicted yet (queued or in flight).
    pub fn outstanding(&self, s: Signal) -> u64 {
        self.enqueued
            .get(s)
            .saturating_sub(self.sent.get(s) + self.send_failed.get(s) + self.evicted.get(s))
    }

    /// Counts `n` discarded items of `s` for `reason`.
    #[inline]
    pub fn drop_items(&self, reason: DropReason, s: Signal, n: u64) {
        self.dropped[reason as usize].add(s, n);
    }
}

impl ShardStats {
    pub fn receiver(&self, receiver: &str, transport: &str) -> Option<usize> {
        self.receivers
            .iter()
            .position(|r| r.receiver == receiver && r.transport == transport)
    }

    pub fn exporter(&self, exporter: &str) -> Option<usize> {
        self.exporters.iter().position(|e| e.exporter == exporter)
    }
}

/// All shards' stats, shared with the scrape endpoint.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub shards: Arc<Vec<ShardStats>>,
    pub process: Arc<ProcessStats>,
}

impl Stats {
    /// Builds one `ShardStats` per shard with the given receiver (id,
    /// transport) pairs and exporter ids.
    pub fn new(shards: usize, receivers: &[(String, &'static str)], exporters: &[String]) -> Stats {
        Self::build(shards, receivers, exporters, &[])
    }

    /// Like `new`, with batch processor ids for their histograms.
    pub fn build(
        shards: usize,
        receivers: &[(String, &'static str)],
        exporters: &[String],
        batches: &[String],
    ) -> Stats {
        let v = (0..shards)
            .map(|shard| ShardStats {
                shard,
                receivers: receivers
                    .iter()
                    .map(|(r, t)| ReceiverStats {
                        receiver: r.clone(),
                        transport: t,
                        ..Default::default()
                    })
                    .collect(),
                exporters: exporters
                    .iter()
                    .map(|e| ExporterStats {
                        exporter: e.clone(),
                        ..Default::default()
                    })
                    .collect(),
                batches: batches
                    .iter()
                    .map(|b| BatchStats {
                        processor: b.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        Stats {
            shards: Arc::new(v),
            process: Arc::default(),
        }
    }

    /// Adds counters for the filter processors `filters` and the samplers
    /// `samplers` (before the stats are shared with any shard or the scrape
    /// endpoint).
    pub fn with_processors(mut self, filters: &[String], samplers: &[String]) -> Stats {
        let shards = Arc::get_mut(&mut self.shards).expect("stats not shared yet");
        for sh in shards.iter_mut() {
            sh.filters = filters
                .iter()
                .map(|id| FilterStats {
                    processor: id.clone(),
                    ..Default::default()
                })
                .collect();
            sh.samplers = samplers
                .iter()
                .map(|id| SamplerStats {
                    processor: id.clone(),
                    ..Default::default()
                })
                .collect();
        }
        self
    }
}

impl Stats {
    /// Adds counters for the tail samplers `(id, policy names)` (before the
    /// stats are shared).
    pub fn with_tail_samplers(mut self, samplers: &[(String, Vec<String>)]) -> Stats {
        let shards = Arc::get_mut(&mut self.shards).expect("stats not shared yet");
        let n = shards.len();
        for sh in shards.iter_mut() {
            sh.tail = samplers
                .iter()
                .map(|(id, policies)| crate::processor::tail_sampling::stats::TailStats::new(id, policies, n))
                .collect();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets() {
        let h = Histogram::<4>::default();
        let bounds = [10, 20, 30];
        for v in [0, 10, 11, 20, 25, 31, 1000] {
            h.observe(&bounds, v);
        }
        let got: Vec<u64> = h.buckets.iter().map(Counter::get).collect();
        assert_eq!(got, vec![2, 2, 1, 2]);
        assert_eq!(h.count.get(), 7);
        assert_eq!(h.sum.get(), 1097);
    }

    #[test]
    fn outstanding_excludes_evicted() {
        let e = ExporterStats::default();
        e.enqueued.add(Signal::Logs, 10);
        e.sent.add(Signal::Logs, 3);
        e.evicted.add(Signal::Logs, 2);
        e.drop_items(DropReason::DropOldest, Signal::Logs, 2);
        assert_eq!(e.outstanding(Signal::Logs), 5);
        assert_eq!(e.dropped[DropReason::DropOldest as usize].get(Signal::Logs), 2);
    }
}
