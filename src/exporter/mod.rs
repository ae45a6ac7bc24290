//! Exporters: each shard runs its own instance of every configured exporter,
//! fed through that exporter's sending queue (`queue`), with its own backend
//! connection (`otlp_grpc`, `otlp_http`), store writer (`file`), or sink
//! (`debug`, `nop`). The consumer loop here applies `retry_on_failure` and
//! counts what was sent and what failed.

pub mod chunk_body;
pub mod circuit_breaker;
pub mod client;

pub mod consumer;
pub mod debug;
pub mod file;
pub mod loadbalancing;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod queue;
pub mod retry;

pub use consumer::*;
