//! Protobuf wire-format walking for OTLP export requests, without decoding.
//!
//! The hot path never builds prost messages: a received body is checked for
//! well-formedness down to each span / data point / log record's own fields
//! (tags, wire types, lengths in bounds) and its items are counted, all by
//! skipping over length-delimited fields. Batches are then built from slices
//! of the original body (see `payload`), and `split` cuts an over-large
//! payload at resource, scope or item boundaries, re-framing only the few
//! enclosing headers that change.
//!
//! Layout walked (field numbers): request `1: Resource{Spans,Metrics,Logs}`;
//! resource entry `2: Scope*`; scope entry `2: spans | metrics | log_records`;
//! a metric's data is one of `5 gauge, 7 sum, 9 histogram,
//! 10 exponential_histogram, 11 summary`, each holding `1: data_points`.
//!
//! The parts: [`field`] (varints, keys, the field iterator), [`tags`] (the
//! fast pass that only locates fields, for lookups), [`text`] (UTF-8 checks
//! of short strings), [`scan`] (the receive-time validate-and-count walk),
//! [`validate`] (the schema-aware check that refuses what a prost decode
//! refuses), [`split`] (cutting a payload at entry boundaries), [`view`]
//! (zero-copy reads of one item's fields for processors), [`edit`] (dropping
//! and rewriting items and attributes by emitting new slices), [`partition`]
//! (slicing a request by a key of its items, e.g. a trace id), [`rope`]
//! (reading a body held as the several frames it arrived in, and regrouping
//! a payload's chunks at entry boundaries for the walkers that work chunk by
//! chunk).

pub mod edit;
mod error;
pub mod field;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod partition;
pub mod rope;
pub mod scan;
pub mod split;
pub mod tags;
pub mod text;
pub mod validate;
pub mod view;

pub use error::WireError;
pub use field::{put_len_header, put_varint, read_varint, varint_len, Field, Fields, Value};
pub use scan::{resources_only, scan, scan_chunks, Scan};
pub use split::split;
