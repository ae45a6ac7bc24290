//! The `tail_sampling` processor: whole traces decided on the one shard that
//! owns them, as the Collector's `tail_sampling` decides them.
//!
//! ```yaml
//! processors:
//!   tail_sampling:
//!     decision_wait: 10s
//!     num_traces: 100000
//!     decision_cache: {sampled_cache_size: 100000, non_sampled_cache_size: 100000}
//!     policies:
//!       - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
//!       - {name: slow, type: latency, latency: {threshold_ms: 2000}}
//!       - {name: rest, type: probabilistic, probabilistic: {sampling_percentage: 10}}
//! ```
//!
//! Routing: the spans of one trace arrive on different connections, so on
//! different shards. The receiving shard reads each span's trace id on the
//! wire, slices the request per trace (`wire::partition::by_key`: envelopes
//! re-framed, all parts written into one buffer allocated once) and pushes
//! the parts other shards own onto lock-free SPSC rings ([`mesh`]), so a
//! span is copied once on its way into the buffer. A full ring refuses the
//! whole request retryably before any of it is taken.
//!
//! Buffering ([`buffer`]): the owner keeps each part with the facts its
//! policies need ([`policy`]), gathered in one walk of the part when it
//! arrives. A trace is decided `decision_wait` after its first span, or early
//! (counted in `sampling_trace_dropped_too_early`) when the shard holds more
//! than its share of `num_traces` or of the byte budget. A kept trace leaves
//! as one request body of its own (its slices joined: a copy of the kept
//! spans, so nothing downstream holds the dropped ones alive), its spans the
//! bytes they arrived in. Spans arriving after the
//! decision follow it (decision cache). With one shard there are no rings.
//!
//! Limits: a trace is decided on one node (put a trace-aware load balancer in
//! front of several); traces are keyed by a 64-bit fold of their id;
//! `rate_limiting` is shared evenly by the shards.

pub mod buffer;
pub mod config;
pub mod mesh;
pub mod policy;
pub mod recycle;
pub mod stats;

use std::{
    cell::RefCell,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use thiserror::Error;

pub use config::{config, TailSamplingConfig};

use self::{
    buffer::{Known, Table, Trace},
    mesh::{Links, Routed},
    policy::{span_facts, Decision, Policies},
    stats::{TailStats, LATE_AGE_BOUNDS_MS},
};
use crate::{
    payload::Payload,
    wire::{
        partition::{by_key, each_item, Layout, Part},
        view::Kind,
        WireError,
    },
};

#[derive(Debug, Error)]
pub enum TailError {
    #[error("tail_sampling {processor}: the ring to shard {shard} is full; retry later")]
    RingFull { processor: String, shard: usize },
    #[error("tail_sampling {0}: {1}")]
    Wire(String, #[source] WireError),
}

/// What a tail sampler gives back of a request: spans of already decided
/// (kept) traces and of traces decided early, which go on down the pipeline.
#[derive(Debug, Default)]
pub struct Taken {
    pub chunks: Vec<Bytes>,
    pub spans: u64,
}

/// The most kept bytes joined into one body by [`Taken::sealed`] (larger
/// measured no faster), from [`recycle`]'s free lists.
const SEALED_BODY: usize = recycle::MAX;

impl Taken {
    /// The kept slices joined into request bodies of their own, up to
    /// [`SEALED_BODY`] each (request bodies concatenate: their entries are one
    /// repeated field). A slice shares its buffer with the other traces of
    /// its request (`Layout::Shared`), so the kept spans leave as a copy and a
    /// slow exporter's queue holds them alone, not the dropped ones beside.
    /// Measured on the two-shard pipeline (~40% of traces kept): leaving without a copy
    /// gave 1.4-1.5 M spans per CPU-second, a copy per kept trace 1.0 M
    /// (glibc's malloc, with seconds of request buffers held, pays for every
    /// mid-sized allocation), a copy per call in bodies of 64 KiB 1.02-1.13 M,
    /// in recycled bodies ([`recycle`]) 1.09-1.19 M.
    /// The copy stays: without it a queue for a backend that is down holds up
    /// to 1 / (kept fraction) times the bytes it accounts (ten at 10%).
    fn sealed(mut self) -> Taken {
        if self.chunks.is_empty() {
            return self;
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.chunks.len() {
            let mut n = 0;
            let mut j = i;
            while j < self.chunks.len() && (j == i || n + self.chunks[j].len() <= SEALED_BODY) {
                n += self.chunks[j].len();
                j += 1;
            }
            out.push(recycle::body(n, |body| {
                for c in &self.chunks[i..j] {
                    body.extend_from_slice(c);
                }
            }));
            i = j;
        }
        self.chunks = out;
        self
    }
}

struct State {
    table: Table,
    policies: Policies,
    links: Links,
    per_policy: Vec<Option<Decision>>,
}

/// A tail sampler on one shard, for one pipeline.
pub struct TailSampler {
    pub id: String,
    /// Index in `ShardStats::tail`.
    pub stats_at: usize,
    shard: usize,
    shards: usize,
    wait: Duration,
    state: RefCell<State>,
    /// Kept spans already processed that found no room in a queue yet.
    deferred: RefCell<Vec<Payload>>,
}

/// The default byte budget of a node without a memory limiter.
const DEFAULT_BUFFER_MIB: u64 = 512;

impl TailSampler {
    /// `soft_limit`: the memory limiter's soft limit, if one is configured
    /// (half of it is the default byte budget).
    pub fn new(
        id: &str,
        c: &TailSamplingConfig,
        shard: usize,
        shards: usize,
        stats_at: usize,
        soft_limit: Option<u64>,
    ) -> TailSampler {
        let n = shards.max(1) as u64;
        let node_bytes = match (c.max_buffered_mib, soft_limit) {
            (Some(m), _) => m << 20,
            (None, Some(s)) => s / 2,
            (None, None) => DEFAULT_BUFFER_MIB << 20,
        };
        let cache = |v: u64| if v == 0 { c.num_traces } else { v }.div_ceil(n) as usize;
        TailSampler {
            id: id.to_string(),
            stats_at,
            shard,
            shards,
            wait: c.decision_wait,
            state: RefCell::new(State {
                table: Table::new(
                    c.num_traces.div_ceil(n) as usize,
                    (node_bytes / n) as usize,
                    cache(c.sampled_cache_size),
                    cache(c.non_sampled_cache_size),
                    (c.expected_new_traces_per_sec * c.decision_wait.as_secs().max(1)).div_ceil(n) as usize,
                ),
                policies: Policies::new(&c.policies, c.sample_on_first_match, shards),
                links: Links::default(),
                per_policy: Vec::new(),
            }),
            deferred: RefCell::new(Vec::new()),
        }
    }

    /// Hands this shard its ends of the sampler's rings.
    pub fn set_links(&self, links: Links) {
        self.state.borrow_mut().links = links;
    }

    /// How often the owner drains its rings and decides (wake-ups batched).
    pub fn tick(&self) -> Duration {
        (self.wait / 8).clamp(Duration::from_millis(1), Duration::from_millis(10))
    }

    pub fn buffered_bytes(&self) -> u64 {
        let d: u64 = self.deferred.borrow().iter().map(|p| p.len as u64).sum();
        self.state.borrow().table.bytes() as u64 + d
    }

    pub fn buffered_spans(&self) -> u64 {
        let d: u64 = self.deferred.borrow().iter().map(|p| p.items).sum();
        self.state.borrow().table.spans() + d
    }

    /// Takes the spans of a request (`chunks`, whole request bodies): those
    /// of traces other shards own go onto their rings, this shard's are
    /// buffered. All or nothing: a full ring refuses before anything is taken.
    pub fn take(&self, chunks: &[Bytes], st: &TailStats, now: Instant) -> Result<Taken, TailError> {
        let mut out = Taken::default();
        // A busy shard drains what other shards sent it on its request path
        // too, so its rings do not wait for the tick.
        self.drain(st, now, &mut out)?;
        for p in self.route(chunks, st)? {
            self.absorb(p, st, now, &mut out)?;
        }
        self.enforce_bounds(st, now, &mut out);
        Ok(out.sealed())
    }

    /// Slices a request per trace (one copy: the parts are what the owner
    /// buffers) and pushes the parts other shards own onto their rings (all
    /// or nothing); returns this shard's parts.
    pub fn route(&self, chunks: &[Bytes], st: &TailStats) -> Result<Vec<Part>, TailError> {
        let shards = self.shards;
        let mut local: Vec<Part> = Vec::new();
        let mut remote: Vec<Routed> = (0..shards)
            .map(|_| Routed {
                parts: Vec::new(),
                spans: 0,
            })
            .collect();
        for c in chunks {
            let parts = by_key(c, Kind::Span, Layout::Shared, &mut |item| {
                mesh::key(trace_id(item.item))
            })
            .map_err(|e| TailError::Wire(self.id.clone(), e))?;
            for p in parts {
                let owner = mesh::owner_of_key(p.key, shards);
                if p.leaves == 0 {
                    continue;
                } else if owner == self.shard {
                    local.push(p);
                } else {
                    remote[owner].spans += p.leaves;
                    remote[owner].parts.push(p);
                }
            }
        }
        if shards <= 1 {
            return Ok(local);
        }
        {
            let mut s = self.state.borrow_mut();
            let links = &mut s.links;
            for (b, r) in remote.iter().enumerate() {
                if r.parts.is_empty() {
                    continue;
                }
                let room = links.to.get(b).and_then(|p| p.as_ref()).is_some_and(|p| p.slots() > 0);
                if !room {
                    st.ring_full.add(1);
                    return Err(TailError::RingFull {
                        processor: self.id.clone(),
                        shard: b,
                    });
                }
            }
            for (b, r) in remote.into_iter().enumerate() {
                if r.parts.is_empty() {
                    continue;
                }
                let Some(p) = links.to.get_mut(b).and_then(|p| p.as_mut()) else {
                    continue;
                };
                let spans = r.spans;
                // Room was checked above and this shard is the only producer.
                if p.push(r).is_ok() {
                    st.routed_spans.add(spans);
                }
                st.ring_depth[b].set((p.buffer().capacity() - p.slots()) as u64);
            }
        }
        Ok(local)
    }

    /// Buffers one part (the spans of one trace key) owned by this shard,
    /// gathering its policies' facts; spans of a decided trace follow the
    /// decision (kept ones into `out`).
    fn absorb(&self, part: Part, st: &TailStats, now: Instant, out: &mut Taken) -> Result<(), TailError> {
        let mut s = self.state.borrow_mut();
        let State { table, policies, .. } = &mut *s;
        let wire = |e| TailError::Wire(self.id.clone(), e);
        let Part { key, body, leaves } = part;
        match table.known(key) {
            Known::Pending => {
                let mut id = [0u8; 16];
                let mut n = 0;
                each_item(&body, Kind::Span, &mut |item| {
                    let t = trace_id(item.item);
                    n = t.len().min(16);
                    id[..n].copy_from_slice(&t[..n]);
                    false
                })
                .map_err(wire)?;
                let facts = table.facts(key, &id[..n], now);
                each_item(&body, Kind::Span, &mut |item| {
                    policies.observe(facts, item, &span_facts(item.item));
                    true
                })
                .map_err(wire)?;
                table.add_slice(key, body, leaves);
            }
            Known::Sampled(at) | Known::NotSampled(at) => {
                let kept = matches!(table.known(key), Known::Sampled(_));
                st.late_spans[kept as usize].add(leaves);
                let age = now.saturating_duration_since(at).as_millis() as u64;
                for _ in 0..leaves {
                    st.late_age.observe(&LATE_AGE_BOUNDS_MS, age);
                }
                if kept {
                    out.chunks.push(body);
                    out.spans += leaves;
                }
            }
        }
        Ok(())
    }

    /// Decides the oldest traces early while the table is over its bounds.
    fn enforce_bounds(&self, st: &TailStats, now: Instant, out: &mut Taken) {
        let second = unix_second();
        loop {
            let popped = {
                let mut s = self.state.borrow_mut();
                if !s.table.over() {
                    break;
                }
                s.table.pop_oldest(None)
            };
            let Some((k, t)) = popped else { break };
            st.too_early.add(1);
            self.decide(k, t, second, st, now, out);
        }
        self.publish(st);
    }

    /// Decides trace `k`; `second`: the Unix second now (rate limiting).
    fn decide(&self, k: u64, t: Trace, second: u64, st: &TailStats, now: Instant, out: &mut Taken) {
        let mut s = self.state.borrow_mut();
        let State {
            table,
            policies,
            per_policy,
            ..
        } = &mut *s;
        let keep = policies.decide(&t.id, &t.facts, second, per_policy);
        for (i, d) in per_policy.iter().enumerate() {
            if let (Some(d), Some(c)) = (d, st.sampled.get(i)) {
                c[d.sampled() as usize].add(1);
            }
        }
        st.global[keep as usize].add(1);
        table.remember(k, keep, now);
        if keep {
            out.spans += t.facts.spans;
            out.chunks.extend(t.first.into_iter().chain(t.more));
        }
    }

    /// The owner's periodic work: drains the inbound rings, then decides the
    /// traces whose `decision_wait` has passed (every trace when `all`, at
    /// shutdown). Returns the kept spans, to go on down the pipeline.
    pub fn run(&self, st: &TailStats, now: Instant, all: bool) -> Result<Taken, TailError> {
        let mut out = Taken::default();
        self.drain(st, now, &mut out)?;
        self.enforce_bounds(st, now, &mut out);
        let cutoff = now.checked_sub(self.wait);
        let second = unix_second();
        loop {
            let popped = {
                let mut s = self.state.borrow_mut();
                match (all, cutoff) {
                    (true, _) => s.table.pop_oldest(None),
                    (false, Some(c)) => s.table.pop_oldest(Some(c)),
                    (false, None) => None,
                }
            };
            let Some((k, t)) = popped else { break };
            self.decide(k, t, second, st, now, &mut out);
        }
        self.publish(st);
        Ok(out.sealed())
    }

    /// Buffers whatever the other shards have pushed to this one (never
    /// waits: an empty ring is left at once).
    fn drain(&self, st: &TailStats, now: Instant, out: &mut Taken) -> Result<(), TailError> {
        let mut inbound: Vec<Routed> = Vec::new();
        {
            let mut s = self.state.borrow_mut();
            for c in s.links.from.iter_mut().flatten() {
                while let Ok(m) = c.pop() {
                    inbound.push(m);
                }
            }
        }
        for p in inbound.into_iter().flat_map(|m| m.parts) {
            self.absorb(p, st, now, out)?;
        }
        Ok(())
    }

    fn publish(&self, st: &TailStats) {
        let s = self.state.borrow();
        st.on_memory.set(s.table.len() as u64);
        st.buffered_bytes.set(s.table.bytes() as u64);
    }

    /// Keeps processed kept spans that found no room in a sending queue.
    pub fn defer(&self, p: Payload) {
        self.deferred.borrow_mut().push(p);
    }

    /// What was deferred, to try again.
    pub fn take_deferred(&self) -> Vec<Payload> {
        std::mem::take(&mut *self.deferred.borrow_mut())
    }
}

fn unix_second() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A span's trace id (field 1), read without walking the rest of the span.
pub fn trace_id(span: &[u8]) -> &[u8] {
    for f in crate::wire::Fields::all(span) {
        let Ok(f) = f else { break };
        if let (1, crate::wire::Value::Len(s, e)) = (f.number, f.value) {
            return &span[s..e];
        }
    }
    &[]
}

/// Every tail sampler of `config`, one per (traces pipeline, processor), in
/// pipeline order: each gets its own rings.
pub fn instances(config: &crate::config::Config) -> Vec<(String, TailSamplingConfig)> {
    let mut out = Vec::new();
    for p in &config.service.pipelines {
        if p.signal != crate::signal::Signal::Traces {
            continue;
        }
        for id in &p.processors {
            if let Some(crate::config::ProcessorConfig::TailSampling(c)) = config.processors.get(id) {
                out.push((id.to_string(), c.clone()));
            }
        }
    }
    out
}

/// The tail samplers' ids with their policy names, each id once (stats).
pub fn stats_ids(config: &crate::config::Config) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (id, c) in instances(config) {
        if !out.iter().any(|(i, _)| *i == id) {
            out.push((id, c.policies.iter().map(|p| p.name.clone()).collect()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::wire::fixtures::traces;

    fn settings(wait: &str) -> TailSamplingConfig {
        let yaml = format!(
            "receivers: {{otlp: {{protocols: {{grpc: {{}}}}}}}}
processors:
  tail_sampling:
    decision_wait: {wait}
    policies: [{{name: all, type: always_sample}}]
exporters: {{nop: {{}}}}
service: {{pipelines: {{traces: {{receivers: [otlp], processors: [tail_sampling], exporters: [nop]}}}}}}
"
        );
        instances(&crate::config::load_str(&yaml).unwrap()).remove(0).1
    }

    #[test]
    fn a_full_ring_refuses_before_taking_anything() {
        let st = TailStats::new("t", &["all".into()], 2);
        let s0 = TailSampler::new("t", &settings("10s"), 0, 2, 0, None);
        let mut m = mesh::mesh(2, 2);
        let mut far = m[1].from[0].take().unwrap();
        s0.set_links(std::mem::take(&mut m[0]));
        // 12 spans with distinct trace ids: both shards own some.
        let body = Bytes::from(traces(2, 2, 3).encode_to_vec());
        let now = Instant::now();
        s0.take(std::slice::from_ref(&body), &st, now).unwrap();
        s0.take(std::slice::from_ref(&body), &st, now).unwrap();
        let (traces_before, spans_before) = (s0.state.borrow().table.len(), s0.buffered_spans());
        let routed = st.routed_spans.get();
        let e = s0.take(std::slice::from_ref(&body), &st, now).unwrap_err();
        assert!(matches!(e, TailError::RingFull { shard: 1, .. }), "{e}");
        assert_eq!(st.ring_full.get(), 1);
        assert_eq!(s0.state.borrow().table.len(), traces_before);
        assert_eq!(s0.buffered_spans(), spans_before);
        assert_eq!(st.routed_spans.get(), routed);
        assert_eq!(st.ring_depth[1].get(), 2);
        // Once the owner drained, the same request goes through.
        while far.pop().is_ok() {}
        s0.take(std::slice::from_ref(&body), &st, now).unwrap();
        assert_eq!(s0.buffered_spans() + st.routed_spans.get(), 36);
    }

    #[test]
    fn kept_spans_leave_joined_in_bodies_of_their_own() {
        use crate::proto::ExportTraceServiceRequest;
        let small = Bytes::from(traces(1, 1, 4).encode_to_vec());
        let big = Bytes::from([0x0a, 0x00].repeat(SEALED_BODY)); // empty resource entries
        let mut chunks = vec![small.clone(); 3];
        chunks.push(big.clone());
        chunks.push(small.clone());
        let out = Taken { chunks, spans: 16 }.sealed();
        assert_eq!(out.spans, 16);
        let lens: Vec<usize> = out.chunks.iter().map(Bytes::len).collect();
        assert_eq!(lens, vec![3 * small.len(), big.len(), small.len()]);
        let joined = ExportTraceServiceRequest::decode(out.chunks[0].clone()).unwrap();
        assert_eq!(joined.resource_spans.len(), 3);
        assert_eq!(
            joined
                .resource_spans
                .iter()
                .map(|r| r.scope_spans[0].spans.len())
                .sum::<usize>(),
            12
        );
        // A copy: nothing of the slices' buffers is held.
        assert!(out
            .chunks
            .iter()
            .all(|c| c.as_ptr() != small.as_ptr() && c.as_ptr() != big.as_ptr()));
    }

    #[test]
    fn one_shard_keeps_a_trace_whole_and_late_spans_follow() {
        let st = TailStats::new("t", &["all".into()], 1);
        let s = TailSampler::new("t", &settings("1s"), 0, 1, 0, None);
        let body = Bytes::from(traces(1, 1, 4).encode_to_vec());
        let t0 = Instant::now();
        assert_eq!(s.take(std::slice::from_ref(&body), &st, t0).unwrap().spans, 0);
        assert_eq!(s.run(&st, t0, false).unwrap().spans, 0, "not due yet");
        let out = s.run(&st, t0 + Duration::from_secs(2), false).unwrap();
        assert_eq!(out.spans, 4);
        assert_eq!(st.global[1].get(), 4);
        // The same spans again: late, kept at once.
        let late = s
            .take(std::slice::from_ref(&body), &st, t0 + Duration::from_secs(3))
            .unwrap();
        assert_eq!(late.spans, 4);
        assert_eq!(st.late_spans[1].get(), 4);
    }
}
