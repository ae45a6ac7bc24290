//! Processors that sit between receivers and exporters in a pipeline.

pub mod batch;
pub mod filter;
pub mod memory_limiter;
pub mod ottl;
pub mod probabilistic_sampler;
pub mod sampling;
