//! sluice: a thread-per-core, io_uring OpenTelemetry ingest engine.
//!
//! A request's path: a shard's SO_REUSEPORT listener accepts it (hyper on
//! glommio), the receiver unframes it and walks the protobuf wire format
//! (`wire`) to count items without decoding, the pipeline hands the body, as a
//! refcounted `Bytes` slice, to the batch processor, full batches go through the
//! shard's SPSC ring to its exporters, which write them out with vectored
//! writes. Nothing on this path is shared between shards.

pub mod bench;
pub mod clock;
pub mod compression;
pub mod config;
pub mod exporter;
pub mod extension;
pub mod grpc;
pub mod kafka;
pub mod net;
pub mod otlp_json;
pub mod payload;
pub mod pipeline;
pub mod processor;
pub mod proto;
pub mod receiver;
#[cfg(feature = "sdk")]
pub mod sdk;
pub mod shard;
pub mod shutdown;
pub mod signal;
pub mod spool;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod wire;
