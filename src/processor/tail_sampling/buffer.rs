//! The traces one shard owns and has not decided yet, and the decisions it
//! remembers for spans that arrive late.
//!
//! A trace is kept as the slices of the requests that carried its spans
//! (each slice a whole request body holding only this trace's spans, cut by
//! `wire::partition::by_key`) plus its [`Facts`]. Traces are held in arrival
//! order of their first span, so the ones whose `decision_wait` has passed,
//! and the oldest one when the table is full (by trace count or by bytes),
//! are at the front. Decided trace keys go to two bounded FIFO caches
//! (sampled, not sampled); a span of a trace found there follows the
//! decision at once.

use std::{collections::VecDeque, time::Instant};

use bytes::Bytes;

use super::policy::Facts;

/// Keyed by the 64-bit trace key: a seeded fast hash (SipHash cost a visible
/// share of the owner's CPU; the seed keeps crafted trace ids from colliding).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Bytes a buffered trace costs beyond its slices: the table entry, the
/// arrival-order entry and the slice vector's first allocation.
pub const TRACE_OVERHEAD: usize = 160;
/// Bytes a slice costs beyond its data (the `Bytes` handle and its
/// allocation header).
pub const SLICE_OVERHEAD: usize = 48;

/// One buffered trace.
#[derive(Debug)]
pub struct Trace {
    pub id: [u8; 16],
    /// The first slice (most traces arrive in one request), then the rest:
    /// no vector allocated for a trace of one slice.
    pub first: Option<Bytes>,
    pub more: Vec<Bytes>,
    /// Accounted bytes (slices plus overheads).
    pub bytes: usize,
    pub facts: Facts,
}

/// A bounded FIFO set of decided trace keys with the time of the decision.
#[derive(Debug, Default)]
struct Cache {
    when: HashMap<u64, Instant>,
    order: VecDeque<u64>,
    cap: usize,
}

impl Cache {
    fn new(cap: usize) -> Cache {
        Cache {
            when: HashMap::default(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn insert(&mut self, k: u64, at: Instant) {
        if self.cap == 0 {
            return;
        }
        if self.when.insert(k, at).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.when.remove(&old);
            }
        }
    }
}

/// What happened before to the trace of an arriving span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// Not decided yet (buffered or new).
    Pending,
    Sampled(Instant),
    NotSampled(Instant),
}

/// One shard's undecided traces and remembered decisions.
#[derive(Debug)]
pub struct Table {
    traces: HashMap<u64, Trace>,
    order: VecDeque<(u64, Instant)>,
    bytes: usize,
    spans: u64,
    pub max_traces: usize,
    pub max_bytes: usize,
    sampled: Cache,
    not_sampled: Cache,
}

impl Table {
    pub fn new(
        max_traces: usize,
        max_bytes: usize,
        sampled_cache: usize,
        not_sampled_cache: usize,
        expect: usize,
    ) -> Table {
        Table {
            traces: HashMap::with_capacity_and_hasher(expect.min(max_traces), Default::default()),
            order: VecDeque::with_capacity(expect.min(max_traces)),
            bytes: 0,
            spans: 0,
            max_traces: max_traces.max(1),
            max_bytes: max_bytes.max(1),
            sampled: Cache::new(sampled_cache),
            not_sampled: Cache::new(not_sampled_cache),
        }
    }

    pub fn len(&self) -> usize {
        self.traces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Spans buffered.
    pub fn spans(&self) -> u64 {
        self.spans
    }

    /// Whether the trace `k` was decided (and is still remembered).
    pub fn known(&self, k: u64) -> Known {
        if let Some(&t) = self.sampled.when.get(&k) {
            Known::Sampled(t)
        } else if let Some(&t) = self.not_sampled.when.get(&k) {
            Known::NotSampled(t)
        } else {
            Known::Pending
        }
    }

    /// The facts of trace `k`, creating the trace (arrived `now`) if new.
    pub fn facts(&mut self, k: u64, id: &[u8], now: Instant) -> &mut Facts {
        let t = self.traces.entry(k).or_insert_with(|| {
            self.order.push_back((k, now));
            self.bytes += TRACE_OVERHEAD;
            let mut tid = [0u8; 16];
            let n = id.len().min(16);
            tid[..n].copy_from_slice(&id[..n]);
            Trace {
                id: tid,
                first: None,
                more: Vec::new(),
                bytes: TRACE_OVERHEAD,
                facts: Facts::default(),
            }
        });
        &mut t.facts
    }

    /// Adds a slice of `spans` spans to trace `k` (created by `facts`).
    pub fn add_slice(&mut self, k: u64, slice: Bytes, spans: u64) {
        if let Some(t) = self.traces.get_mut(&k) {
            let b = slice.len() + SLICE_OVERHEAD;
            t.bytes += b;
            self.bytes += b;
            self.spans += spans;
            if t.first.is_none() {
                t.first = Some(slice);
            } else {
                t.more.push(slice);
            }
        }
    }

    /// Whether the table holds more than it may (traces or bytes).
    pub fn over(&self) -> bool {
        self.traces.len() > self.max_traces || self.bytes > self.max_bytes
    }

    /// Takes the oldest trace if it arrived at or before `cutoff` (`None`:
    /// whatever its age).
    pub fn pop_oldest(&mut self, cutoff: Option<Instant>) -> Option<(u64, Trace)> {
        loop {
            let &(k, at) = self.order.front()?;
            if cutoff.is_some_and(|c| at > c) {
                return None;
            }
            self.order.pop_front();
            if let Some(t) = self.traces.remove(&k) {
                self.bytes -= t.bytes;
                self.spans -= t.facts.spans.min(self.spans);
                return Some((k, t));
            }
        }
    }

    /// Remembers a decision taken `at`.
    pub fn remember(&mut self, k: u64, sampled: bool, at: Instant) {
        if sampled {
            self.sampled.insert(k, at);
        } else {
            self.not_sampled.insert(k, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_first_and_bytes_accounted() {
        let now = Instant::now();
        let mut t = Table::new(2, 1 << 20, 4, 4, 0);
        for k in 1..=3u64 {
            t.facts(k, &[k as u8; 16], now).spans = 1;
            t.add_slice(k, Bytes::from(vec![0u8; 100]), 1);
        }
        assert!(t.over());
        assert_eq!(t.bytes(), 3 * (TRACE_OVERHEAD + 100 + SLICE_OVERHEAD));
        let (k, tr) = t.pop_oldest(None).unwrap();
        assert_eq!((k, tr.id[0]), (1, 1));
        assert!(!t.over());
        assert_eq!(t.spans(), 2);
        t.remember(k, true, now);
        assert_eq!(t.known(1), Known::Sampled(now));
        assert_eq!(t.known(2), Known::Pending);
    }

    #[test]
    fn caches_forget_the_oldest_decision() {
        let now = Instant::now();
        let mut t = Table::new(10, 1 << 20, 2, 2, 0);
        for k in 0..3 {
            t.remember(k, false, now);
        }
        assert_eq!(t.known(0), Known::Pending);
        assert_eq!(t.known(2), Known::NotSampled(now));
    }
}
