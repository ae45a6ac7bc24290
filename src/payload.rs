//! `Payload`: an OTLP export request held as encoded `Bytes` chunks, never decoded.
//!
//! As received and batched, each chunk is a run of complete, encoded top-level
//! entries (field 1: `ResourceSpans` / `ResourceMetrics` / `ResourceLogs`) of an
//! `Export{Trace,Metrics,Logs}ServiceRequest`; after trace sampling a chunk may
//! be a piece of an entry (a re-encoded length header, then slices of the kept
//! spans), so only the concatenation of all chunks is guaranteed to be a
//! request. Because protobuf concatenation is merge, that concatenation is a
//! valid export request: a
//! batch is built by appending received request bodies (refcounted slices of the
//! receive buffers) and written out with vectored writes, with no re-encode.

use bytes::{Bytes, BytesMut};

use crate::signal::Signal;

#[derive(Clone, Debug, Default)]
pub struct Payload {
    /// Encoded chunks; their concatenation is an `Export*ServiceRequest`.
    pub chunks: Vec<Bytes>,
    /// Spans, metric data points or log records in all chunks.
    pub items: u64,
    /// Total encoded length of all chunks.
    pub len: usize,
}

impl Payload {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_body(body: Bytes, items: u64) -> Self {
        let len = body.len();
        let chunks = if len == 0 { Vec::new() } else { vec![body] };
        Payload { chunks, items, len }
    }

    pub fn is_empty(&self) -> bool {
        self.items == 0 && self.len == 0
    }

    /// Append one encoded chunk holding `items` items.
    pub fn push(&mut self, chunk: Bytes, items: u64) {
        self.items += items;
        self.len += chunk.len();
        if !chunk.is_empty() {
            self.chunks.push(chunk);
        }
    }

    /// Append all of `other`.
    pub fn append(&mut self, other: Payload) {
        self.items += other.items;
        self.len += other.len;
        self.chunks.extend(other.chunks);
    }

    /// The request as one contiguous buffer (copies unless there is a single chunk).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks[0].clone(),
            _ => {
                let mut out = BytesMut::with_capacity(self.len);
                for c in &self.chunks {
                    out.extend_from_slice(c);
                }
                out.freeze()
            }
        }
    }
}

/// A payload on its way through a shard's pipeline, tagged with its signal.
#[derive(Clone, Debug)]
pub struct SignalPayload {
    pub signal: Signal,
    pub payload: Payload,
}
