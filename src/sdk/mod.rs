//! `sluice::sdk`: collection inside the application (cargo feature `sdk`).
//!
//! Instrumentation must never block or slow the thread it runs on, nor make
//! it wait on the network. The usual SDK design guards one queue with a lock
//! and exports from whichever thread fills a batch; this one gives every
//! recording thread its own SPSC ring (`ring`), so recording is a thread-local
//! lookup and a ring push: no lock, no allocation, no syscall while the ring
//! has room. One glommio shard thread (`shard`) polls all rings, batches,
//! encodes OTLP protobuf (`encode`) and exports with the same exporter code as
//! `sluice run` (retry, circuit breaker, sending queue, compression). What
//! happens when a ring is full is the `overflow` policy.
//!
//! ```ignore
//! let collector = sluice::sdk::Collector::builder()
//!     .endpoint("http://127.0.0.1:4317")
//!     .start()?;
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
//!     .with_span_processor(collector.span_processor())
//!     .build();
//! // ... record ...
//! collector.shutdown()?;
//! ```

pub mod builder;
mod cells;
pub mod collector;
pub mod encode;
pub mod overflow;
pub mod processor;
pub mod record;
pub mod ring;
pub mod self_metrics;
pub mod shard;

pub use builder::{Builder, Protocol};
pub use collector::{Collector, Recorder, SdkError};
pub use overflow::{Overflow, RejectReason, Rejected};
pub use processor::{RingLogProcessor, RingSpanProcessor};
pub use record::{now_unix_nanos, AttrValue, Attrs, LogRecord, Span, SpanKind, StatusCode};
pub use self_metrics::SdkStats;
pub use shard::FlushReport;
