//! A body held as several chunks (the frames it arrived in, or the pieces an
//! edit emitted), read by position over the whole body without joining, and
//! [`align`]: regrouping a payload's chunks so that each holds whole
//! top-level entries, for the walkers that work chunk by chunk.
//!
//! A received request stays the frames it came in: validation reads across
//! them (`validate::validate_chunks`), the batch appends them and exporters
//! write them out as they are. The processors, `split` and the store cut a
//! payload entry by entry within one chunk; before they run, `align` joins
//! the chunks that an entry crosses, and only those (a payload whose chunks
//! already end at entry boundaries, as every batch of single-frame requests
//! does, is returned as it is).

use std::cell::Cell;

use bytes::Bytes;

use super::{read_varint, WireError};
use crate::payload::{join, Payload};

/// The chunks of one body with their offsets in it.
pub struct Rope<'a> {
    chunks: &'a [Bytes],
    /// `starts[i]`: offset of chunk `i`; a last entry holds the body's length.
    starts: Vec<usize>,
    /// The chunk the last lookup found: walks move forward, so the next
    /// lookup is nearly always in it.
    last: Cell<usize>,
}

impl<'a> Rope<'a> {
    pub fn new(chunks: &'a [Bytes]) -> Self {
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut at = 0;
        for c in chunks {
            starts.push(at);
            at += c.len();
        }
        starts.push(at);
        Rope {
            chunks,
            starts,
            last: Cell::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.starts[self.chunks.len()]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset of each chunk, then the body's length.
    pub fn starts(&self) -> &[usize] {
        &self.starts
    }

    /// The chunk holding body offset `pos` (< len): its index.
    #[inline]
    fn chunk_at(&self, pos: usize) -> usize {
        let i = self.last.get();
        if self.starts[i] <= pos && pos < self.starts[i + 1] {
            return i;
        }
        // Chunks may be empty: the last start ≤ pos is that of a chunk holding it.
        let i = self.starts.partition_point(|&s| s <= pos) - 1;
        self.last.set(i);
        i
    }

    /// Reads a varint at `*pos`, within `end`, as `read_varint` does over the
    /// joined body cut at `end` (the same error kinds; offsets may differ).
    pub fn varint(&self, pos: &mut usize, end: usize) -> Result<u64, WireError> {
        if *pos >= end {
            return Err(WireError::Truncated(*pos));
        }
        let i = self.chunk_at(*pos);
        let base = self.starts[i];
        let chunk = &self.chunks[i][..(end - base).min(self.chunks[i].len())];
        let mut p = *pos - base;
        if chunk.len() - p >= 10 {
            let v = read_varint(chunk, &mut p)?;
            *pos = base + p;
            return Ok(v);
        }
        // Near a cut: at most ten bytes gathered.
        let mut tmp = [0u8; 10];
        let n = (end - *pos).min(10);
        self.copy(*pos, &mut tmp[..n]);
        let mut p = 0;
        let v = read_varint(&tmp[..n], &mut p)?;
        *pos += p;
        Ok(v)
    }

    /// Copies the body's bytes from `pos` into `out` (all within the body).
    pub fn copy(&self, mut pos: usize, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let i = self.chunk_at(pos);
            let from = &self.chunks[i][pos - self.starts[i]..];
            let n = from.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&from[..n]);
            done += n;
            pos += n;
        }
    }

    /// The chunk that holds all of `s..e` (non-empty), with its offset.
    pub fn within(&self, s: usize, e: usize) -> Option<(&'a [u8], usize)> {
        let i = self.chunk_at(s);
        (e <= self.starts[i + 1]).then(|| (&self.chunks[i][..], self.starts[i]))
    }

    /// Offsets where the body's top-level fields start, then its length.
    fn field_edges(&self) -> Result<Vec<usize>, WireError> {
        let end = self.len();
        let mut edges = vec![0];
        let mut pos = 0;
        while pos < end {
            let key = self.varint(&mut pos, end)?;
            let next = match key & 7 {
                0 => {
                    self.varint(&mut pos, end)?;
                    pos
                }
                1 => pos + 8,
                2 => {
                    let len = self.varint(&mut pos, end)?;
                    pos.saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
                }
                5 => pos + 4,
                _ => {
                    return Err(WireError::WireType {
                        field: (key >> 3) as u32,
                        wire_type: (key & 7) as u8,
                        at: pos,
                    })
                }
            };
            if next > end {
                return Err(WireError::Truncated(end));
            }
            pos = next;
            edges.push(pos);
        }
        Ok(edges)
    }
}

/// `payload` with its chunks regrouped so that each holds whole top-level
/// entries: the chunks an entry crosses are joined (one copy of those
/// chunks), the others stay as they are. A body that does not parse into
/// top-level fields is joined whole (its walkers then report the error).
pub fn align(payload: Payload) -> Payload {
    if payload.chunks.len() <= 1 {
        return payload;
    }
    let rope = Rope::new(&payload.chunks);
    let Ok(edges) = rope.field_edges() else {
        let one = join(&payload.chunks);
        return Payload::from_body(one, payload.items);
    };
    // A chunk boundary is a cut where an entry ends.
    let starts = rope.starts();
    let mut cuts = Vec::with_capacity(starts.len());
    let mut e = edges.iter().peekable();
    for (i, &s) in starts.iter().enumerate().skip(1) {
        while e.next_if(|&&x| x < s).is_some() {}
        if e.peek() == Some(&&s) || i == starts.len() - 1 {
            cuts.push(i);
        }
    }
    if cuts.len() == payload.chunks.len() {
        return payload;
    }
    let mut out = Payload::new();
    let mut from = 0;
    for to in cuts {
        out.push(join(&payload.chunks[from..to]), 0);
        from = to;
    }
    out.items = payload.items;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        bench::workload,
        signal::Signal,
        wire::{fixtures::cut, Fields},
    };

    fn whole_entries(chunk: &[u8]) -> bool {
        Fields::all(chunk).all(|f| f.is_ok_and(|f| f.number == 1))
    }

    /// Three requests of two resource entries each, one after the other, cut
    /// at every offset pair: aligned chunks are whole entries, their
    /// concatenation is the body, and a chunk that was whole is not copied.
    #[test]
    fn aligned_chunks_hold_whole_entries() {
        let body: Vec<u8> = workload::requests(Signal::Traces, 3, 3, 5).concat();
        let n = body.len();
        let step = (n / 40).max(1);
        for a in (0..n).step_by(step) {
            for b in (a..n).step_by(step) {
                let chunks = cut(&body, &[a, b]);
                let p = align(Payload::from_chunks(chunks.clone(), 9));
                assert_eq!(p.items, 9);
                assert_eq!(p.len, n);
                assert_eq!(p.to_bytes(), body, "cut at {a}, {b}");
                assert!(p.chunks.iter().all(|c| whole_entries(c)), "cut at {a}, {b}");
                for c in &p.chunks {
                    if let Some(same) = chunks.iter().find(|x| x[..] == c[..]) {
                        // Kept as it was: the same allocation.
                        if whole_entries(same) {
                            assert!(chunks.iter().any(|x| x.as_ptr() == c.as_ptr()));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn chunks_cut_at_entry_edges_stay_as_they_are() {
        let reqs = workload::requests(Signal::Logs, 4, 3, 9);
        let p = Payload::from_chunks(reqs.clone(), 12);
        let ptrs: Vec<_> = p.chunks.iter().map(|c| c.as_ptr()).collect();
        let a = align(p);
        assert_eq!(a.chunks.iter().map(|c| c.as_ptr()).collect::<Vec<_>>(), ptrs);
    }

    #[test]
    fn garbage_is_joined_whole() {
        let p = align(Payload::from_chunks(
            vec![Bytes::from_static(b"\x0a\x7f"), Bytes::from_static(b"ab")],
            1,
        ));
        assert_eq!(p.chunks, [Bytes::from_static(b"\x0a\x7fab")]);
    }
}
