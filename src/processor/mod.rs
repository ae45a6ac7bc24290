//! Processors that sit between receivers and exporters in a pipeline.

pub mod actions;
pub mod attributes;
pub mod batch;
pub mod filter;
pub mod memory_limiter;
pub mod ottl;
pub mod probabilistic_sampler;
pub mod resource;
pub mod resourcedetection;
pub mod sampling;
pub mod tail_sampling;
