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
///
/// Nearly every field of an OTLP item has a one-byte key (numbers 1-15) and,
/// when length-delimited, a length below 16 KiB: those are read by a tight
/// loop ([`short_fields`]); from the first field that is not, [`general`]
/// goes on, so the fields handed out are exactly those it would find.
#[inline]
pub fn tags_in(msg: &[u8], start: usize, end: usize, mut each: impl FnMut(u32, usize, Option<usize>, usize) -> bool) {
    if let Some(pos) = short_fields(msg, start, end, &mut each) {
        if pos < end {
            general(msg, pos, end, &mut each);
        }
    }
}

/// The fields of `msg[start..end]` with one-byte keys, up to the first
/// other one: where it stopped, or `None` when `each` stopped it. A walker
/// that must report malformed bytes (as [`Fields`] does) goes on from where
/// this stopped with its own pass: every field this hands out is one that
/// pass would have read the same way.
#[inline(always)]
pub fn short_fields(
    msg: &[u8],
    start: usize,
    end: usize,
    each: &mut impl FnMut(u32, usize, Option<usize>, usize) -> bool,
) -> Option<usize> {
    let msg = &msg[..end];
    let mut pos = start;
    while pos < end {
        let key = msg[pos];
        let v = pos + 1;
        let (value, next) = match key & 7 {
            // Field 0, a longer key (number 16 and up), or a group.
            _ if !(8..0x80).contains(&key) => break,
            0 => match msg
                .get(v..end.min(v + 9))
                .and_then(|b| b.iter().position(|&x| x < 0x80))
            {
                Some(i) => (None, v + i + 1),
                None => break,
            },
            1 => (None, v + 8),
            2 => match (msg.get(v), msg.get(v + 1)) {
                (Some(&b), _) if b < 0x80 => (Some(v + 1), v + 1 + usize::from(b)),
                (Some(&b0), Some(&b1)) if b1 < 0x80 => {
                    (Some(v + 2), v + 2 + (usize::from(b0 & 0x7f) | usize::from(b1) << 7))
                }
                _ => break,
            },
            5 => (None, v + 4),
            _ => break,
        };
        if next > end {
            break;
        }
        if !each(u32::from(key >> 3), pos, value, next) {
            return None;
        }
        pos = next;
    }
    Some(pos)
}

/// The general pass: any key, any varint, stopping where the general walker
/// would report an error.
fn general(msg: &[u8], start: usize, end: usize, each: &mut impl FnMut(u32, usize, Option<usize>, usize) -> bool) {
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
            _ => return tags_general(msg, start, each),
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

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::{
        common::v1::{any_value::Value as V, AnyValue, KeyValue},
        logs::v1::LogRecord,
        trace::v1::{span::Event, Span, Status},
    };

    fn kv(k: &str, v: V) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    /// A field as `tags_in` hands it out: number, start, value start, end.
    type Found = (u32, usize, Option<usize>, usize);

    /// Every field `tags_in` hands out, with where it stopped when `each`
    /// stops after `stop` fields; by the tight loop and by the general pass.
    fn both(m: &[u8], start: usize, stop: usize) -> [Vec<Found>; 2] {
        let mut fast = Vec::new();
        tags_in(m, start, m.len(), |n, s, v, e| {
            fast.push((n, s, v, e));
            fast.len() < stop
        });
        let mut slow = Vec::new();
        general(m, start, m.len(), &mut |n, s, v, e| {
            slow.push((n, s, v, e));
            slow.len() < stop
        });
        [fast, slow]
    }

    /// The tight loop finds exactly the fields the general pass finds, for
    /// items with one-, two- and three-byte lengths and ten-byte varints,
    /// and for every edit of every byte of a span (malformed lengths, long
    /// keys, groups, field 0, cut short).
    #[test]
    fn short_fields_are_the_general_pass() {
        let span = Span {
            trace_id: vec![1; 16].into(),
            span_id: vec![2; 8].into(),
            name: "GET /x".into(),
            kind: 2,
            start_time_unix_nano: 1 << 60,
            end_time_unix_nano: (1 << 60) + 5,
            attributes: vec![kv("a", V::StringValue("x".repeat(200))), kv("n", V::IntValue(-1))],
            events: vec![Event {
                name: "e".into(),
                ..Default::default()
            }],
            status: Some(Status {
                code: 2,
                message: "m".into(),
            }),
            ..Default::default()
        };
        let log = LogRecord {
            time_unix_nano: 7,
            severity_number: -3,
            body: Some(AnyValue {
                value: Some(V::StringValue("b".repeat(20_000))),
            }),
            flags: 1,
            ..Default::default()
        };
        for base in [span.encode_to_vec(), log.encode_to_vec()] {
            let [fast, slow] = both(&base, 0, usize::MAX);
            assert_eq!(fast, slow);
            assert!(fast.len() >= 4);
        }
        let small = Span {
            name: "n".into(),
            attributes: vec![kv("s", V::StringValue("v".repeat(130))), kv("n", V::IntValue(-1))],
            status: Some(Status {
                code: 2,
                message: "m".into(),
            }),
            ..Default::default()
        };
        let mut base = small.encode_to_vec();
        base.extend_from_slice(&[0x4a, 0x03, 0x0a, 0x01, b'z']);
        let mut edits = vec![base.clone()];
        for i in 0..base.len() {
            for x in [
                0x00u8, 0x01, 0x07, 0x08, 0x0b, 0x0c, 0x10, 0x4a, 0x7f, 0x80, 0x81, 0xff, 0x0a, 0x12, 0x85,
            ] {
                let mut m = base.clone();
                m[i] = x;
                edits.push(m);
            }
            let mut m = base.clone();
            m.remove(i);
            edits.push(m);
        }
        for m in edits {
            for (start, stop) in [(0, usize::MAX), (3, usize::MAX), (0, 2), (3, 1)] {
                let [fast, slow] = both(&m, start, stop);
                assert_eq!(fast, slow, "{m:02x?} from {start}, stopping after {stop}");
            }
        }
    }
}
