//! `Payload`: an OTLP export request held as encoded `Bytes` chunks, never decoded.
//!
//! A received request is kept as the frames it arrived in (HTTP/2 DATA
//! frames of up to 16 KiB from gRPC clients): a chunk may end anywhere,
//! even inside a field, and only the concatenation of all chunks is
//! guaranteed to be a request. Because protobuf concatenation is merge, that
//! concatenation is a valid export request: a batch is built by appending
//! received bodies (refcounted slices of the receive buffers) and written
//! out with vectored writes, with no copy and no re-encode. The walkers that
//! work chunk by chunk (processors, `split`, the store's record cutting)
//! first regroup the chunks at entry boundaries (`wire::rope::align`),
//! joining only the chunks an entry crosses.

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

    /// A request held as `chunks` (empty ones left out) holding `items` items.
    pub fn from_chunks(chunks: Vec<Bytes>, items: u64) -> Self {
        let mut p = Payload::new();
        for c in chunks {
            p.push(c, 0);
        }
        p.items = items;
        p
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
        join(&self.chunks)
    }
}

/// Copies the first bytes of the body made of `parts` into `out`; returns
/// how many there were (fewer than `out` holds when the body is shorter).
pub fn copy_prefix<'a>(parts: impl IntoIterator<Item = &'a [u8]>, out: &mut [u8]) -> usize {
    let mut done = 0;
    for c in parts {
        let n = c.len().min(out.len() - done);
        out[done..done + n].copy_from_slice(&c[..n]);
        done += n;
        if done == out.len() {
            break;
        }
    }
    done
}

/// `chunks` as one contiguous buffer (copies unless there is a single chunk).
pub fn join(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        _ => {
            let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in chunks {
                out.extend_from_slice(c);
            }
            out.freeze()
        }
    }
}

/// A payload on its way through a shard's pipeline, tagged with its signal.
#[derive(Clone, Debug)]
pub struct SignalPayload {
    pub signal: Signal,
    pub payload: Payload,
}
