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
}

impl ExporterStats {
    /// Items enqueued but neither sent nor failed yet.
    pub fn outstanding(&self, s: Signal) -> u64 {
        self.enqueued
            .get(s)
            .saturating_sub(self.sent.get(s) + self.send_failed.get(s))
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
}

impl Stats {
    /// Builds one `ShardStats` per shard with the given receiver (id,
    /// transport) pairs and exporter ids.
    pub fn new(shards: usize, receivers: &[(String, &'static str)], exporters: &[String]) -> Stats {
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
                ..Default::default()
            })
            .collect();
        Stats { shards: Arc::new(v) }
    }
}
