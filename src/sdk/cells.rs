//! The native record ring: each record stored as 64-byte cells (a head cell,
//! then one cell per two attributes) instead of in a slot as large as the
//! largest record.
//!
//! Why: a producer that outruns its shard writes its ring at memory speed
//! (a ring that holds a second of records is larger than the caches), so what
//! recording costs there is the cache lines each record writes. A `Native`
//! value is 240 bytes whatever it holds, not aligned to cache lines: every
//! record wrote four or five lines. A span with one or two attributes takes
//! two cells here (two whole lines), one with three or four attributes three,
//! a log record with none one.
//!
//! Strings in the native API are `&'static str`, so a cell keeps each one's
//! address and length and the shard rebuilds the reference ([`static_str`]);
//! cells are written only by [`encode`] and read only by [`decode`], both
//! private to this file, which is what makes that sound.
//!
//! The ring's pages are touched when it is created (a thread's first record),
//! so recording never takes a page fault; a ring holds `max_queue_size`
//! records of the largest shape (192 bytes each).
//!
//! `max_queue_size` counts records, not cells: the ring has room for that
//! many records of the largest shape, and the producer also keeps how many
//! records it pushed, the shard how many it took. Each side publishes its
//! count in an atomic of its own cache line that the other reads only when it
//! needs it (the producer when its own count says the ring may hold
//! `capacity` records, or at a high-water check; the shard when asked how
//! many records wait), so the overflow policies see the same record counts
//! as with a slot per record.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use super::record::{AttrValue, Attrs, LogRecord, Native, Span, SpanKind, StatusCode, MAX_ATTRS};

/// A record's head, or two of its attributes.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Cell([u64; 8]);

/// Cells a record takes at most: its head and one per two attributes.
const MAX_CELLS: usize = 1 + MAX_ATTRS.div_ceil(2);

/// In a head's word 7, above the attribute count: the record is a log record.
const LOG: u64 = 0x80;

// Attribute value kinds in a pair's word 1, above the key's length.
const STR: u64 = 0;
const I64: u64 = 1;
const F64: u64 = 2;
const BOOL: u64 = 3;

/// One side's count, alone on its cache line (the other side reads it).
#[derive(Default)]
#[repr(align(64))]
struct Count(AtomicU64);

/// Records pushed (written by the producer) and taken (by the shard).
#[derive(Default)]
struct Counts {
    pushed: Count,
    taken: Count,
}

/// The application thread's end.
pub struct Producer {
    ring: rtrb::Producer<Cell>,
    counts: Arc<Counts>,
    /// Records the ring may hold.
    capacity: u64,
    pushed: u64,
    /// The shard's count as last read.
    taken_seen: u64,
}

/// The shard's end.
pub struct Consumer {
    ring: rtrb::Consumer<Cell>,
    counts: Arc<Counts>,
    taken: u64,
}

/// A ring with room for `capacity` records of any shape.
pub fn ring(capacity: usize) -> (Producer, Consumer) {
    let capacity = capacity.max(1);
    let (mut p, c) = rtrb::RingBuffer::new(capacity * MAX_CELLS);
    // Touch every page of the ring now (written, not committed: nothing
    // becomes readable), so that no record pays a page fault the first time
    // the ring goes round.
    if let Ok(mut chunk) = p.write_chunk_uninit(capacity * MAX_CELLS) {
        let (first, second) = chunk.as_mut_slices();
        for slot in first.iter_mut().chain(second) {
            slot.write(Cell([0; 8]));
        }
    }
    let counts = Arc::new(Counts::default());
    (
        Producer {
            ring: p,
            counts: counts.clone(),
            capacity: capacity as u64,
            pushed: 0,
            taken_seen: 0,
        },
        Consumer {
            ring: c,
            counts,
            taken: 0,
        },
    )
}

impl Producer {
    /// Pushes the record `make` builds; when the ring already holds
    /// `capacity` records, hands it back instead.
    /// (The refused record comes back by value, as rtrb's `push` returns it.)
    #[inline]
    #[allow(clippy::result_large_err)]
    pub fn push_with(&mut self, make: impl FnOnce() -> Native) -> Result<(), Native> {
        if self.pushed - self.taken_seen >= self.capacity {
            self.taken_seen = self.counts.taken.0.load(Ordering::Acquire);
            if self.pushed - self.taken_seen >= self.capacity {
                return Err(make());
            }
        }
        let record = make();
        let n = cells_for(&record);
        // Room for `capacity` records of `MAX_CELLS` cells, and fewer than
        // that are in: this cannot fail, but hand the record back if it did.
        let Ok(mut chunk) = self.ring.write_chunk_uninit(n) else {
            return Err(record);
        };
        let (first, second) = chunk.as_mut_slices();
        encode(&record, |i, cell| match first.get_mut(i) {
            Some(slot) => {
                slot.write(cell);
            }
            None => {
                second[i - first.len()].write(cell);
            }
        });
        // SAFETY: the chunk has `n` slots over the two slices, and `encode`
        // wrote each of them (it puts cells 0..cells_for(record)).
        unsafe { chunk.commit_all() };
        self.pushed += 1;
        self.counts.pushed.0.store(self.pushed, Ordering::Release);
        Ok(())
    }

    /// Records in the ring (reads the shard's count).
    pub fn used(&self) -> usize {
        (self.pushed - self.counts.taken.0.load(Ordering::Acquire)) as usize
    }
}

impl Consumer {
    /// The oldest record, if any.
    pub fn pop(&mut self) -> Option<Native> {
        let head = {
            let chunk = self.ring.read_chunk(1).ok()?;
            chunk.as_slices().0[0]
        };
        let n = 1 + attr_count(&head).div_ceil(2);
        // A record's cells are committed together, so all of them are in.
        let chunk = self.ring.read_chunk(n).ok()?;
        let (first, second) = chunk.as_slices();
        let mut cells = [head; MAX_CELLS];
        for (to, from) in cells.iter_mut().zip(first.iter().chain(second)) {
            *to = *from;
        }
        chunk.commit_all();
        self.taken += 1;
        self.counts.taken.0.store(self.taken, Ordering::Release);
        Some(decode(&cells[..n]))
    }

    /// Records waiting.
    pub fn slots(&self) -> usize {
        (self.counts.pushed.0.load(Ordering::Acquire) - self.taken) as usize
    }

    /// The producer's thread is gone.
    pub fn is_abandoned(&self) -> bool {
        self.ring.is_abandoned()
    }
}

/// A string as its address (provenance exposed) and length; a string longer
/// than 4 GiB, which the length field cannot hold, is stored empty.
fn put_str(s: &'static str) -> (u64, u64) {
    let s = if u32::try_from(s.len()).is_ok() { s } else { "" };
    (s.as_ptr().expose_provenance() as u64, s.len() as u64)
}

/// The string `put_str` stored.
///
/// # Safety
/// `addr` and `len` must come from `put_str` in this process.
unsafe fn static_str(addr: u64, len: u64) -> &'static str {
    let ptr = std::ptr::with_exposed_provenance::<u8>(addr as usize);
    // SAFETY: `put_str` took them from a `&'static str` (exposing its
    // provenance), which stays valid, UTF-8 and unchanged for the program's
    // life; `len` fits the original length exactly.
    unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr, len as usize)) }
}

fn put_value(v: AttrValue) -> (u64, u64, u64) {
    match v {
        AttrValue::Str(s) => {
            let (addr, len) = put_str(s);
            (STR, addr, len)
        }
        AttrValue::I64(i) => (I64, i as u64, 0),
        AttrValue::F64(f) => (F64, f.to_bits(), 0),
        AttrValue::Bool(b) => (BOOL, u64::from(b), 0),
    }
}

/// The attributes of a record.
fn attrs_of(record: &Native) -> &Attrs {
    match record {
        Native::Span(s) => &s.attrs,
        Native::Log(l) => &l.attrs,
    }
}

/// Cells `record` takes: its head and one per two attributes.
#[inline]
fn cells_for(record: &Native) -> usize {
    1 + attrs_of(record).as_slice().len().div_ceil(2)
}

/// One attribute as the four words of half a cell.
#[inline(always)]
fn pair(key: &'static str, value: AttrValue) -> [u64; 4] {
    let (key, key_len) = put_str(key);
    let (kind, v, v_len) = put_value(value);
    [key, key_len | kind << 32, v, v_len]
}

/// Writes `record`'s `cells_for(record)` cells through `put(index, cell)`:
/// each cell is built whole and stored once, straight into the ring.
#[inline(always)]
fn encode(record: &Native, mut put: impl FnMut(usize, Cell)) {
    let trace_words = |t: &[u8; 16]| {
        let mut a = [0; 8];
        let mut b = [0; 8];
        a.copy_from_slice(&t[..8]);
        b.copy_from_slice(&t[8..]);
        (u64::from_ne_bytes(a), u64::from_ne_bytes(b))
    };
    let head = match record {
        Native::Span(s) => {
            let (name, name_len) = put_str(s.name);
            let (t0, t1) = trace_words(&s.trace_id);
            [
                t0,
                t1,
                u64::from_ne_bytes(s.span_id),
                u64::from_ne_bytes(s.parent_span_id),
                s.start_unix_nanos,
                s.end_unix_nanos,
                name,
                name_len
                    | u64::from(s.kind as u8) << 32
                    | u64::from(s.status as u8) << 40
                    | (s.attrs.as_slice().len() as u64) << 48
                    | u64::from(s.attrs.dropped() as u8) << 56,
            ]
        }
        Native::Log(l) => {
            let (body, body_len) = put_str(l.body);
            let (t0, t1) = trace_words(&l.trace_id);
            [
                t0,
                t1,
                u64::from_ne_bytes(l.span_id),
                l.time_unix_nanos,
                body,
                0,
                0,
                body_len
                    | u64::from(l.severity) << 40
                    | ((l.attrs.as_slice().len() as u64) | LOG) << 48
                    | u64::from(l.attrs.dropped() as u8) << 56,
            ]
        }
    };
    put(0, Cell(head));
    for (i, two) in attrs_of(record).as_slice().chunks(2).enumerate() {
        let a = pair(two[0].0, two[0].1);
        let b = two.get(1).map_or([0; 4], |&(k, v)| pair(k, v));
        put(1 + i, Cell([a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]));
    }
}

fn attr_count(head: &Cell) -> usize {
    ((head.0[7] >> 48) & 0x7) as usize
}

fn kind(b: u8) -> SpanKind {
    match b {
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}

fn status(b: u8) -> StatusCode {
    match b {
        1 => StatusCode::Ok,
        2 => StatusCode::Error,
        _ => StatusCode::Unset,
    }
}

/// The record `encode` wrote as `cells`.
fn decode(cells: &[Cell]) -> Native {
    let w = &cells[0].0;
    let mut attrs = Attrs::new();
    for i in 0..attr_count(&cells[0]) {
        let p = &cells[1 + i / 2].0[(i % 2) * 4..(i % 2) * 4 + 4];
        // SAFETY: `encode` wrote both strings with `put_str`.
        let key = unsafe { static_str(p[0], p[1] & 0xffff_ffff) };
        let value = match p[1] >> 32 {
            // SAFETY: as above.
            STR => AttrValue::Str(unsafe { static_str(p[2], p[3]) }),
            I64 => AttrValue::I64(p[2] as i64),
            F64 => AttrValue::F64(f64::from_bits(p[2])),
            _ => AttrValue::Bool(p[2] != 0),
        };
        attrs = attrs.with(key, value);
    }
    let attrs = attrs.with_dropped((w[7] >> 56) as u8);
    let mut trace_id = [0; 16];
    trace_id[..8].copy_from_slice(&w[0].to_ne_bytes());
    trace_id[8..].copy_from_slice(&w[1].to_ne_bytes());
    let len = w[7] & 0xffff_ffff;
    if (w[7] >> 48) & LOG != 0 {
        Native::Log(LogRecord {
            time_unix_nanos: w[3],
            severity: (w[7] >> 40) as u8,
            // SAFETY: `encode` wrote the body with `put_str`.
            body: unsafe { static_str(w[4], len) },
            trace_id,
            span_id: w[2].to_ne_bytes(),
            attrs,
        })
    } else {
        Native::Span(Span {
            trace_id,
            span_id: w[2].to_ne_bytes(),
            parent_span_id: w[3].to_ne_bytes(),
            // SAFETY: `encode` wrote the name with `put_str`.
            name: unsafe { static_str(w[6], len) },
            kind: kind((w[7] >> 32) as u8),
            start_unix_nanos: w[4],
            end_unix_nanos: w[5],
            status: status((w[7] >> 40) as u8),
            attrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(n_attrs: usize, seq: u64) -> Native {
        let values = [
            AttrValue::Str("a value"),
            AttrValue::I64(-7 - seq as i64),
            AttrValue::F64(2.5),
            AttrValue::Bool(true),
            AttrValue::Str(""),
        ];
        let keys = ["k0", "k1", "a longer key", "", "k4"];
        let mut attrs = Attrs::new();
        for i in 0..n_attrs {
            attrs = attrs.with(keys[i], values[i]);
        }
        Native::Span(Span {
            trace_id: std::array::from_fn(|i| i as u8 ^ seq as u8),
            span_id: seq.to_be_bytes(),
            parent_span_id: [9; 8],
            name: "a span",
            kind: SpanKind::Client,
            start_unix_nanos: seq,
            end_unix_nanos: u64::MAX - seq,
            status: StatusCode::Error,
            attrs,
        })
    }

    fn log(n_attrs: usize, seq: u64) -> Native {
        let mut attrs = Attrs::new();
        for _ in 0..n_attrs {
            attrs = attrs.with("key", AttrValue::I64(seq as i64));
        }
        Native::Log(LogRecord {
            time_unix_nanos: seq,
            severity: 17,
            body: "a body ✓",
            trace_id: [seq as u8; 16],
            span_id: [3; 8],
            attrs,
        })
    }

    fn same(a: &Native, b: &Native) -> bool {
        match (a, b) {
            (Native::Span(a), Native::Span(b)) => a == b,
            (Native::Log(a), Native::Log(b)) => a == b,
            _ => false,
        }
    }

    #[test]
    fn records_of_every_shape_come_back_as_they_went_in_across_the_wrap() {
        // A capacity that is not a multiple of any record's cells, pushed and
        // taken in uneven turns, so records straddle the ring's end.
        let (mut p, mut c) = ring(5);
        let mut sent = std::collections::VecDeque::new();
        let mut seq = 0u64;
        for round in 0..200 {
            for _ in 0..(round % 5) + 1 {
                seq += 1;
                let n = (seq % (MAX_ATTRS as u64 + 2)) as usize;
                let r = if seq % 3 == 0 { log(n, seq) } else { span(n, seq) };
                match p.push_with(|| r) {
                    Ok(()) => sent.push_back(r),
                    Err(back) => {
                        assert!(same(&back, &r));
                        assert_eq!(sent.len(), 5, "refused below capacity");
                    }
                }
                assert_eq!(p.used(), sent.len());
                assert_eq!(c.slots(), sent.len());
            }
            for _ in 0..(round % 3) + 1 {
                match (c.pop(), sent.pop_front()) {
                    (Some(got), Some(want)) => assert!(same(&got, &want)),
                    (None, None) => {}
                    (got, want) => panic!("{:?} vs {:?}", got.is_some(), want.is_some()),
                }
            }
        }
    }

    #[test]
    fn dropped_counts_and_every_value_kind_survive() {
        let mut attrs = Attrs::new();
        for i in 0..MAX_ATTRS + 3 {
            attrs = attrs.with("k", AttrValue::I64(i as i64));
        }
        let r = Native::Span(Span {
            name: "x",
            attrs,
            ..Default::default()
        });
        let (mut p, mut c) = ring(1);
        assert!(p.push_with(|| r).is_ok());
        assert!(p.push_with(|| r).is_err(), "one record of room");
        let got = c.pop().unwrap();
        assert!(same(&got, &r));
        let Native::Span(s) = got else { unreachable!() };
        assert_eq!(s.attrs.dropped(), 3);
        assert!(c.pop().is_none());
        assert!(p.push_with(|| r).is_ok(), "room again once taken");
    }

    #[test]
    fn a_span_with_two_attributes_takes_two_cache_lines() {
        assert_eq!(std::mem::size_of::<Cell>(), 64);
        for (r, n) in [(span(2, 1), 2), (span(4, 1), 3), (log(0, 1), 1), (log(3, 1), 3)] {
            assert_eq!(cells_for(&r), n);
            let mut put = Vec::new();
            encode(&r, |i, _| put.push(i));
            assert_eq!(put, (0..n).collect::<Vec<_>>());
        }
    }
}
