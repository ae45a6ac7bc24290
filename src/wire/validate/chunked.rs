//! The validate-and-count walk over a body held as several chunks (the HTTP/2
//! DATA frames it arrived in), without joining them.
//!
//! gRPC clients send a request in frames of at most 16 KiB, so a 100-span
//! request arrives in two or more pieces and a 512-span batch in eight.
//! Joining them costs a copy of every byte; keeping them costs nothing
//! downstream (a payload is already a list of chunks written out with
//! vectored writes). Only this walk needs to see across the cuts.
//!
//! How: the request's envelopes (the request, its resource entries, their
//! scope entries) are the only messages large enough to cross many chunks,
//! and the only ones walked here, with positions over the whole body. Any
//! other field is handed to the single-buffer checker of `validate`: as the
//! chunk's own slice when it lies within one chunk (nearly all do), or as a
//! copy of just that field when it straddles a cut (about one span per
//! frame). The result equals the single-buffer walk's over the joined body.
//!
//! What this walk does not handle it leaves to the single-buffer walk over a
//! joined copy: any malformed body (so every error and its byte offset are
//! exactly the single-buffer walk's), groups at envelope level, and bodies in
//! one chunk.

use bytes::Bytes;

use super::{scope, split_key, string, sub, sub_n, validate_counted, Counted, Counts, F, I32, I64, LEN, LIMIT, VARINT};
use crate::{
    signal::Signal,
    wire::{rope::Rope, WireError},
};

/// Validates a request held as `chunks` (concatenated, they are the body) and
/// counts its items, as `validate_counted` does over the joined body.
pub fn validate_chunks(signal: Signal, chunks: &[Bytes]) -> Result<Counts, WireError> {
    match chunks {
        [] => validate_counted(signal, &[]),
        [one] => validate_counted(signal, one),
        _ => {
            let rope = Rope::new(chunks);
            let walked = match signal {
                Signal::Traces => request(&rope, |buf, s, e, b| super::span(buf, s, e, b).map(|()| 1)),
                Signal::Metrics => request(&rope, super::metric),
                Signal::Logs => request(&rope, |buf, s, e, b| super::log_record(buf, s, e, b).map(|()| 1)),
            };
            match walked {
                Ok(c) => Ok(c),
                Err(Unsure) => validate_counted(signal, &crate::payload::join(chunks)),
            }
        }
    }
}

/// This walk cannot say: the single-buffer walk over the joined body decides.
#[derive(Debug)]
struct Unsure;

impl From<WireError> for Unsure {
    fn from(_: WireError) -> Self {
        Unsure
    }
}

type Walked<T> = Result<T, Unsure>;

/// Runs a single-buffer check on the value of field `f` (positions over the
/// body): in place when it lies within one chunk, else on a copy of it.
fn check<T>(rope: &Rope<'_>, f: &F, check: impl FnOnce(&[u8], &F) -> Result<T, WireError>) -> Walked<T> {
    if f.wt != LEN || f.s == f.e {
        let moved = F { s: 0, e: 0, ..*f };
        return Ok(check(&[], &moved)?);
    }
    if let Some((chunk, base)) = rope.within(f.s, f.e) {
        let moved = F {
            s: f.s - base,
            e: f.e - base,
            at: f.at.saturating_sub(base),
            ..*f
        };
        return Ok(check(chunk, &moved)?);
    }
    let mut copy = vec![0u8; f.e - f.s];
    rope.copy(f.s, &mut copy);
    let moved = F {
        s: 0,
        e: copy.len(),
        at: 0,
        ..*f
    };
    Ok(check(&copy, &moved)?)
}

/// Walks the fields of the envelope at body offsets `s..e` as `validate`'s
/// `walk` does, handing each to `known` with positions over the body.
fn walk(rope: &Rope<'_>, s: usize, e: usize, budget: u32, mut known: impl FnMut(F) -> Walked<bool>) -> Walked<()> {
    let mut pos = s;
    while pos < e {
        let at = pos;
        let (number, wt) = split_key(rope.varint(&mut pos, e)?, at)?;
        let (mut vs, mut ve) = (0, 0);
        match wt {
            VARINT => {
                rope.varint(&mut pos, e)?;
            }
            I64 | I32 => {
                let n = if wt == I64 { 8 } else { 4 };
                if e - pos < n {
                    return Err(Unsure);
                }
                pos += n;
            }
            LEN => {
                let len = rope.varint(&mut pos, e)?;
                if len > (e - pos) as u64 {
                    return Err(Unsure);
                }
                vs = pos;
                pos += len as usize;
                ve = pos;
            }
            // Groups (unknown fields only) and invalid wire types: rare
            // enough to leave to the single-buffer walk.
            _ => return Err(Unsure),
        }
        let f = F {
            number,
            wt,
            at,
            s: vs,
            e: ve,
        };
        // An unknown field is skipped, as `validate::unknown` does for
        // anything but a group, once the budget allows one.
        if !known(f)? && budget == 0 {
            return Err(Unsure);
        }
    }
    Ok(())
}

/// A nested envelope (field `f`, whose message's fields get `budget - 1`):
/// walked here when it crosses a cut, else checked in place by `single`.
fn envelope(
    rope: &Rope<'_>,
    f: &F,
    budget: u32,
    roped: impl FnOnce(&Rope<'_>, usize, usize, u32) -> Walked<u64>,
    single: impl FnOnce(&[u8], usize, usize, u32) -> Counted,
) -> Walked<u64> {
    if f.wt != LEN || budget == 0 {
        return Err(Unsure);
    }
    if f.s == f.e {
        return Ok(single(&[], 0, 0, budget - 1)?);
    }
    match rope.within(f.s, f.e) {
        Some((chunk, base)) => Ok(single(chunk, f.s - base, f.e - base, budget - 1)?),
        None => roped(rope, f.s, f.e, budget - 1),
    }
}

fn request(rope: &Rope<'_>, leaf: impl Fn(&[u8], usize, usize, u32) -> Counted + Copy) -> Walked<Counts> {
    let mut c = Counts {
        only_resources: true,
        ..Counts::default()
    };
    walk(rope, 0, rope.len(), LIMIT, |f| {
        if f.number != 1 {
            c.only_resources = false;
            return Ok(false);
        }
        c.items += envelope(
            rope,
            &f,
            LIMIT,
            |rope, s, e, b| resource_entry(rope, s, e, b, leaf),
            |buf, s, e, b| super::resource_entry(buf, s, e, b, leaf),
        )?;
        c.resources += 1;
        Ok(true)
    })?;
    Ok(c)
}

/// `Resource{Spans,Metrics,Logs}` across cuts: 1 resource, 2 scope entries, 3 schema_url.
fn resource_entry(
    rope: &Rope<'_>,
    s: usize,
    e: usize,
    b: u32,
    leaf: impl Fn(&[u8], usize, usize, u32) -> Counted + Copy,
) -> Walked<u64> {
    let mut n = 0;
    walk(rope, s, e, b, |f| {
        match f.number {
            1 => check(rope, &f, |buf, f| sub(buf, f, b, super::resource))?,
            2 => {
                n += envelope(
                    rope,
                    &f,
                    b,
                    |rope, s, e, b| scope_entry(rope, s, e, b, leaf),
                    |buf, s, e, b| super::scope_entry(buf, s, e, b, leaf),
                )?
            }
            3 => check(rope, &f, string)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(n)
}

/// `Scope{Spans,Metrics,Logs}` across cuts: 1 scope, 2 leaves, 3 schema_url.
fn scope_entry(
    rope: &Rope<'_>,
    s: usize,
    e: usize,
    b: u32,
    leaf: impl Fn(&[u8], usize, usize, u32) -> Counted + Copy,
) -> Walked<u64> {
    let mut n = 0;
    walk(rope, s, e, b, |f| {
        match f.number {
            2 => n += check(rope, &f, |buf, f| sub_n(buf, f, b, leaf))?,
            1 => check(rope, &f, |buf, f| sub(buf, f, b, scope))?,
            3 => check(rope, &f, string)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::cut;

    fn bodies() -> Vec<(Signal, Vec<u8>)> {
        let mut all: Vec<(Signal, Vec<u8>)> = super::super::tests::rich().into_iter().collect();
        for signal in Signal::ALL {
            for body in crate::bench::workload::requests(signal, 4, 1, 3) {
                all.push((signal, body.to_vec()));
            }
        }
        all
    }

    /// Every body, cut once at every offset and twice at many pairs, walks to
    /// the single-buffer result (counts and verdict).
    #[test]
    fn cut_bodies_walk_as_the_joined_body() {
        for (signal, body) in bodies() {
            let whole = validate_counted(signal, &body);
            assert!(whole.is_ok());
            let n = body.len();

            for a in 0..=n {
                assert_eq!(validate_chunks(signal, &cut(&body, &[a])), whole, "{signal} cut at {a}");
            }
            let step = (n / 17).max(1);
            for a in (0..n).step_by(step) {
                for b in (a..n).step_by(step / 2 + 1) {
                    assert_eq!(
                        validate_chunks(signal, &cut(&body, &[a, b])),
                        whole,
                        "{signal} cut at {a}, {b}"
                    );
                }
            }
            // Every byte its own chunk.
            let cuts: Vec<usize> = (1..n).collect();
            assert_eq!(
                validate_chunks(signal, &cut(&body, &cuts)),
                whole,
                "{signal} cut everywhere"
            );
        }
    }

    /// The roped walk says yes only where the single-buffer walk does: every
    /// single-byte change of a body, cut in three, gets the same verdict.
    #[test]
    fn mutated_cut_bodies_get_the_joined_verdict() {
        for (signal, body) in bodies() {
            let n = body.len();
            let cuts = [n / 3, n / 3 + 1 + n / 5, 2 * n / 3];
            for i in 0..n {
                for v in [
                    0x00,
                    0x02,
                    0x0a,
                    0x12,
                    0x7f,
                    0x80,
                    0xff,
                    body[i] ^ 1,
                    body[i].wrapping_add(1),
                ] {
                    let mut m = body.clone();
                    m[i] = v;
                    let whole = validate_counted(signal, &m);
                    let roped = validate_chunks(signal, &cut(&m, &cuts));
                    assert_eq!(roped, whole, "{signal}: byte {i} set to {v:#x}");
                }
            }
        }
    }

    /// The in-place path handles a field that ends exactly at a cut, and
    /// empty chunks anywhere.
    #[test]
    fn empty_chunks_and_cuts_at_field_edges() {
        for (signal, body) in bodies() {
            let whole = validate_counted(signal, &body);
            let n = body.len();
            for a in (0..=n).step_by((n / 11).max(1)) {
                let mut chunks = cut(&body, &[a, a]);
                chunks.insert(0, Bytes::new());
                chunks.push(Bytes::new());
                assert_eq!(validate_chunks(signal, &chunks), whole, "{signal} empty chunks at {a}");
            }
        }
    }
}
