//! Sampling for `sending_queue.overflow: sample`: traces are filtered span by
//! span, keeping a span when its trace id hashes below the kept fraction (so a
//! trace is kept or dropped whole, on every shard and in every batch); metrics
//! and logs are kept or dropped as whole batches, an exact share of them.
//!
//! Trace filtering works on the wire format: the filtered request is a list
//! of slices of the received body (kept spans, untouched resource and scope
//! entries, their header fields), plus new length headers only for the
//! `ResourceSpans` / `ScopeSpans` entries that lost spans.

use std::cell::Cell;

use bytes::{Bytes, BytesMut};

use crate::{
    payload::Payload,
    signal::Signal,
    wire::{put_len_header, Fields, WireError},
};

/// The hash threshold below which a trace id is kept, for a percentage in 0..=100.
pub fn trace_threshold(percentage: f64) -> u64 {
    let f = (percentage / 100.0).clamp(0.0, 1.0);
    if f >= 1.0 {
        u64::MAX
    } else {
        (f * 18_446_744_073_709_551_616.0) as u64
    }
}

/// A well-mixed 64-bit hash of a trace id (FNV-1a, then a splitmix64 finaliser
/// so that ids with structure, not only random ones, spread evenly).
pub fn trace_hash(id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Whether spans of trace `id` are kept at `threshold`.
#[inline]
pub fn keep_trace(id: &[u8], threshold: u64) -> bool {
    threshold == u64::MAX || trace_hash(id) < threshold
}

/// The result of filtering one trace request body.
#[derive(Debug, Default)]
pub struct Filtered {
    /// Pieces whose concatenation is the filtered request.
    pub pieces: Vec<Bytes>,
    pub kept: u64,
    pub dropped: u64,
}

/// The trace id of the span at `body[s..e]` (empty if absent).
fn span_trace_id(body: &[u8], s: usize, e: usize) -> Result<&[u8], WireError> {
    for f in Fields::new(body, s, e) {
        let f = f?;
        if f.number == 1 {
            if let Some((a, b)) = f.value.range() {
                return Ok(&body[a..b]);
            }
        }
    }
    Ok(&[])
}

fn header(field: u32, len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(11);
    put_len_header(&mut out, field, len);
    out.freeze()
}

/// Keeps the spans of `body` (an `ExportTraceServiceRequest`) whose trace id
/// is kept at `threshold`.
pub fn filter_traces(body: &Bytes, threshold: u64) -> Result<Filtered, WireError> {
    let mut out = Filtered::default();
    for rf in Fields::all(body) {
        let rf = rf?;
        let Some((rs, re)) = rf.value.range().filter(|_| rf.number == 1) else {
            // Not a resource entry: keep as is.
            out.pieces.push(body.slice(rf.start..rf.end));
            continue;
        };
        // Resource entry: header fields and filtered scopes.
        let mut r_header = Vec::new();
        let mut scopes: Vec<Vec<Bytes>> = Vec::new();
        let (mut r_kept, mut r_dropped) = (0u64, 0u64);
        for sf in Fields::new(body, rs, re) {
            let sf = sf?;
            let Some((ss, se)) = sf.value.range().filter(|_| sf.number == 2) else {
                r_header.push(body.slice(sf.start..sf.end));
                continue;
            };
            let mut s_header = Vec::new();
            let mut spans = Vec::new();
            let (mut kept, mut dropped) = (0u64, 0u64);
            for pf in Fields::new(body, ss, se) {
                let pf = pf?;
                match pf.value.range().filter(|_| pf.number == 2) {
                    Some((ps, pe)) => {
                        if keep_trace(span_trace_id(body, ps, pe)?, threshold) {
                            spans.push(body.slice(pf.start..pf.end));
                            kept += 1;
                        } else {
                            dropped += 1;
                        }
                    }
                    None => s_header.push(body.slice(pf.start..pf.end)),
                }
            }
            r_kept += kept;
            r_dropped += dropped;
            if kept == 0 {
                continue;
            }
            if dropped == 0 {
                scopes.push(vec![body.slice(sf.start..sf.end)]);
            } else {
                let len: usize = s_header.iter().chain(&spans).map(Bytes::len).sum();
                let mut v = Vec::with_capacity(1 + s_header.len() + spans.len());
                v.push(header(2, len));
                v.extend(s_header);
                v.extend(spans);
                scopes.push(v);
            }
        }
        out.kept += r_kept;
        out.dropped += r_dropped;
        if r_kept == 0 {
            continue;
        }
        if r_dropped == 0 {
            out.pieces.push(body.slice(rf.start..rf.end));
            continue;
        }
        let len: usize = r_header.iter().chain(scopes.iter().flatten()).map(Bytes::len).sum();
        out.pieces.push(header(1, len));
        out.pieces.extend(r_header);
        out.pieces.extend(scopes.into_iter().flatten());
    }
    Ok(out)
}

/// Per-exporter sampling state for `overflow: sample`.
#[derive(Debug)]
pub struct Sampler {
    percentage: f64,
    threshold: u64,
    /// Credit for whole-batch sampling: a batch is kept each time it reaches 1.
    credit: Cell<f64>,
}

impl Sampler {
    pub fn new(percentage: f64) -> Self {
        Sampler {
            percentage: percentage.clamp(0.0, 100.0),
            threshold: trace_threshold(percentage),
            credit: Cell::new(0.0),
        }
    }

    /// Whether the next whole batch is kept: exactly `percentage`% of batches
    /// over time, spread evenly.
    pub fn keep_batch(&self) -> bool {
        let c = self.credit.get() + self.percentage / 100.0;
        if c >= 1.0 - 1e-9 {
            self.credit.set(c - 1.0);
            true
        } else {
            self.credit.set(c);
            false
        }
    }

    /// Samples one batch: traces by trace id, other signals whole. Returns the
    /// kept part (`None` if nothing is kept) and the number of items dropped.
    pub fn sample(&self, signal: Signal, payload: Payload) -> (Option<Payload>, u64) {
        if signal != Signal::Traces {
            return if self.keep_batch() {
                (Some(payload), 0)
            } else {
                (None, payload.items)
            };
        }
        // Chunk by chunk as whole entries (a request may be the frames it
        // arrived in).
        let payload = crate::wire::rope::align(payload);
        let mut kept = Payload::new();
        let mut dropped = 0;
        for chunk in &payload.chunks {
            match filter_traces(chunk, self.threshold) {
                Ok(f) => {
                    dropped += f.dropped;
                    let n = f.pieces.len();
                    for (i, p) in f.pieces.into_iter().enumerate() {
                        kept.push(p, if i + 1 == n { f.kept } else { 0 });
                    }
                }
                Err(e) => {
                    // Bodies were validated on receipt; keep the chunk rather
                    // than lose it if this ever happens.
                    tracing::error!(error = %e, "trace sampling failed; chunk kept");
                    return (Some(payload), 0);
                }
            }
        }
        // Items were counted on receipt; keep the totals consistent.
        let kept_items = payload.items.saturating_sub(dropped);
        kept.items = kept_items;
        if kept_items == 0 {
            (None, payload.items)
        } else {
            (Some(kept), dropped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        trace::v1::{ResourceSpans, ScopeSpans, Span},
        ExportTraceServiceRequest,
    };
    use prost::Message;

    fn tid(i: u64) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v[8..].copy_from_slice(&i.to_be_bytes());
        v
    }

    fn request(resources: u64, scopes: u64, spans: u64) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: (0..resources)
                .map(|r| ResourceSpans {
                    schema_url: format!("r{r}"),
                    scope_spans: (0..scopes)
                        .map(|s| ScopeSpans {
                            schema_url: format!("s{s}"),
                            spans: (0..spans)
                                .map(|i| Span {
                                    trace_id: tid((r * 1000 + s * 100 + i) % 37).into(),
                                    name: format!("{r}-{s}-{i}"),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn expected(req: &ExportTraceServiceRequest, threshold: u64) -> ExportTraceServiceRequest {
        let mut r = req.clone();
        for rs in &mut r.resource_spans {
            for ss in &mut rs.scope_spans {
                ss.spans.retain(|s| keep_trace(&s.trace_id, threshold));
            }
            rs.scope_spans.retain(|s| !s.spans.is_empty());
        }
        r.resource_spans.retain(|r| !r.scope_spans.is_empty());
        r
    }

    #[test]
    fn filter_matches_a_decoded_filter() {
        let req = request(3, 2, 20);
        let body = Bytes::from(req.encode_to_vec());
        for pct in [0.0, 10.0, 50.0, 90.0, 100.0] {
            let t = trace_threshold(pct);
            let f = filter_traces(&body, t).unwrap();
            let joined: Vec<u8> = f.pieces.iter().flat_map(|b| b.iter().copied()).collect();
            let got = ExportTraceServiceRequest::decode(&joined[..]).unwrap();
            let want = expected(&req, t);
            assert_eq!(got, want, "pct {pct}");
            let n: u64 = want
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len() as u64)
                .sum();
            assert_eq!(f.kept, n);
            assert_eq!(f.kept + f.dropped, 120);
        }
        // Untouched entries are slices of the original body, not copies.
        let all = filter_traces(&body, u64::MAX).unwrap();
        assert_eq!(all.pieces.len(), 3);
        assert!(all.pieces.iter().all(|p| body.as_ptr_range().contains(&p.as_ptr())));
    }

    #[test]
    fn fraction_of_random_trace_ids() {
        let t = trace_threshold(30.0);
        let mut x = 0x1234_5678u64;
        let kept = (0..20_000)
            .filter(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                keep_trace(&x.to_le_bytes(), t)
            })
            .count();
        assert!((5_600..=6_400).contains(&kept), "{kept}");
        // Sequential (structured) ids spread too.
        let kept = (0..20_000u64).filter(|&i| keep_trace(&tid(i), t)).count();
        assert!((5_600..=6_400).contains(&kept), "{kept}");
    }

    #[test]
    fn whole_batches_exact_share() {
        let s = Sampler::new(25.0);
        let kept = (0..400).filter(|_| s.keep_batch()).count();
        assert_eq!(kept, 100);
        let none = Sampler::new(0.0);
        assert!((0..100).all(|_| !none.keep_batch()));
        let all = Sampler::new(100.0);
        assert!((0..100).all(|_| all.keep_batch()));
    }

    #[test]
    fn sample_payload_counts() {
        let req = request(2, 2, 10);
        let body = Bytes::from(req.encode_to_vec());
        let mut p = Payload::from_body(body.clone(), 40);
        p.push(body, 40);
        let s = Sampler::new(50.0);
        let (kept, dropped) = s.sample(Signal::Traces, p);
        let kept = kept.unwrap();
        assert_eq!(kept.items + dropped, 80);
        let decoded = ExportTraceServiceRequest::decode(kept.to_bytes()).unwrap();
        let n: u64 = decoded
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        assert_eq!(n, kept.items);
        assert_eq!(kept.len, kept.to_bytes().len());
    }
}
