//! The fast pass over a message's fields: each field's number and byte
//! range, found by reading tags and lengths only.
//!
//! Why beside [`Fields`]: the general walker hands out a [`Field`] (its
//! decoded value) for every field, as validation and splitting need. A
//! processor reading a span's name or one attribute only needs to know where
//! fields are, for every item of every request; this pass skips each value
//! by its wire type and calls back with offsets, about twice as fast. It
//! stops where the general walker would report an error (so a lookup over
//! malformed bytes sees the same fields), and hands a group (never in OTLP)
//! to the general walker.
//!
//! [`Field`]: super::Field

use super::{read_varint, Fields};

/// One pass over the fields of `msg`, calling `each(number, start, end)`
/// with each field's tag offset and end, skipping values by wire type
/// without building a [`Field`](super::Field) for each (this runs for every item a
/// processor reads). Malformed bytes end the pass where the general walker
/// would stop; a group (never in OTLP) hands over to the general walker.
#[inline]
pub fn tags(msg: &[u8], mut each: impl FnMut(u32, usize, usize)) {
    tags_in(msg, 0, msg.len(), |n, s, _, e| {
        each(n, s, e);
        true
    })
}

/// [`tags`] over the fields of `msg[start..end]`, calling
/// `each(number, start, value, end)` where `value` is where a
/// length-delimited field's bytes start (`None` for scalars); stops early
/// when `each` answers false.
#[inline]
pub fn tags_in(msg: &[u8], start: usize, end: usize, mut each: impl FnMut(u32, usize, Option<usize>, usize) -> bool) {
    let msg = &msg[..end];
    let mut pos = start;
    while pos < end {
        let start = pos;
        let Ok(key) = read_varint(msg, &mut pos) else {
            return;
        };
        let n = (key >> 3) as u32;
        let mut value = None;
        let next = match key & 7 {
            0 => match read_varint(msg, &mut pos) {
                Ok(_) => pos,
                Err(_) => return,
            },
            1 => pos + 8,
            2 => match read_varint(msg, &mut pos) {
                Ok(len) if len <= (end - pos) as u64 => {
                    value = Some(pos);
                    pos + len as usize
                }
                _ => return,
            },
            5 => pos + 4,
            _ => return tags_general(msg, start, &mut each),
        };
        if next > end || n == 0 {
            return;
        }
        pos = next;
        if !each(n, start, value, next) {
            return;
        }
    }
}

#[cold]
fn tags_general(msg: &[u8], start: usize, each: &mut impl FnMut(u32, usize, Option<usize>, usize) -> bool) {
    for f in Fields::new(msg, start, msg.len()) {
        let Ok(f) = f else { return };
        if !each(f.number, f.start, f.value.range().map(|(s, _)| s), f.end) {
            return;
        }
    }
}
