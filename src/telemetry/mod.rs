//! sluice's own telemetry: per-shard counters (written only by their shard,
//! read at scrape time) and the Prometheus `/metrics` endpoint that merges them.

pub mod counters;
pub mod prometheus;

pub use counters::{
    BatchStats, ConnStats, Counter, DropReason, ExporterStats, Gauge, Histogram, ProcessStats, ReceiverStats,
    ShardStats, Stats,
};
