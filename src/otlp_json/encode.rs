//! protobuf → OTLP/JSON: walks the wire bytes of a request with the schema
//! table and writes the proto3 JSON mapping with OTLP's exceptions, without a
//! prost decode: enum values the vendored proto does not name print as their
//! numbers, non-finite doubles as "NaN" / "Infinity" / "-Infinity", doubles
//! in their shortest round-trip form, trace and span ids as lowercase hex,
//! 64-bit integers as decimal strings, bytes as base64. Fields appear in the
//! schema's order; fields at their default value are omitted (as the mapping
//! says) unless they have presence (messages, `optional`, oneof members).
//! Unknown fields are dropped: proto3 JSON has no way to carry them.
//!
//! Wire semantics are those of a protobuf decoder: the last occurrence of a
//! singular scalar wins, occurrences of a singular message merge, packed and
//! unpacked elements of a repeated scalar concatenate, and of a oneof's
//! members the last one on the wire is the one set.

use std::fmt::Write as _;

use base64::Engine;

use super::schema::{Card, Field, Msg, Ty, I32, I64, LEN, VARINT};
use super::JsonError;
use crate::wire::read_varint;

/// Deeper than any valid request (the validator bounds nesting well below).
const MAX_DEPTH: u32 = 200;

/// Renders the protobuf message `pb` of type `root` as one line of JSON.
pub fn render(root: &'static Msg, pb: &[u8]) -> Result<String, JsonError> {
    let mut out = String::with_capacity(pb.len() * 2 + 2);
    message(&mut out, root, pb, 0)?;
    Ok(out)
}

type Res<T = ()> = Result<T, JsonError>;

/// One field as found on the wire.
#[derive(Clone, Copy)]
struct WireField {
    number: u32,
    wt: u8,
    /// Varint, fixed64 or fixed32 value.
    int: u64,
    /// Contents of a length-delimited field.
    s: usize,
    e: usize,
}

fn bad(at: usize, reason: &'static str) -> JsonError {
    JsonError::Protobuf { at, reason }
}

/// Iterates over the top-level fields of `buf`, skipping groups.
fn each_field(buf: &[u8], mut f: impl FnMut(WireField) -> Res) -> Res {
    let mut pos = 0;
    while pos < buf.len() {
        let at = pos;
        let key = read_varint(buf, &mut pos).map_err(|_| bad(at, "malformed field key"))?;
        let number = u32::try_from(key >> 3).map_err(|_| bad(at, "field number out of range"))?;
        let wt = (key & 7) as u8;
        let mut field = WireField {
            number,
            wt,
            int: 0,
            s: 0,
            e: 0,
        };
        match wt {
            VARINT => field.int = read_varint(buf, &mut pos).map_err(|_| bad(at, "malformed varint"))?,
            I64 => {
                let b = buf.get(pos..pos + 8).ok_or_else(|| bad(at, "truncated fixed64"))?;
                field.int = u64::from_le_bytes(b.try_into().unwrap_or_default());
                pos += 8;
            }
            I32 => {
                let b = buf.get(pos..pos + 4).ok_or_else(|| bad(at, "truncated fixed32"))?;
                field.int = u64::from(u32::from_le_bytes(b.try_into().unwrap_or_default()));
                pos += 4;
            }
            LEN => {
                let len = read_varint(buf, &mut pos).map_err(|_| bad(at, "malformed length"))?;
                if len > (buf.len() - pos) as u64 {
                    return Err(bad(at, "truncated length-delimited field"));
                }
                field.s = pos;
                pos += len as usize;
                field.e = pos;
            }
            3 => {
                skip_group(buf, &mut pos, number).map_err(|_| bad(at, "malformed group"))?;
                continue;
            }
            _ => return Err(bad(at, "invalid wire type")),
        }
        f(field)?;
    }
    Ok(())
}

/// Skips a group's fields up to its matching end tag.
fn skip_group(buf: &[u8], pos: &mut usize, number: u32) -> Result<(), ()> {
    let mut open = vec![number];
    while let Some(&top) = open.last() {
        let key = read_varint(buf, pos).map_err(|_| ())?;
        let (n, wt) = ((key >> 3) as u32, (key & 7) as u8);
        match wt {
            VARINT => {
                read_varint(buf, pos).map_err(|_| ())?;
            }
            I64 => *pos += 8,
            I32 => *pos += 4,
            LEN => {
                let len = read_varint(buf, pos).map_err(|_| ())?;
                *pos = pos.checked_add(usize::try_from(len).map_err(|_| ())?).ok_or(())?;
            }
            3 => open.push(n),
            4 if n == top => {
                open.pop();
            }
            _ => return Err(()),
        }
        if *pos > buf.len() {
            return Err(());
        }
    }
    Ok(())
}

fn message(out: &mut String, m: &'static Msg, buf: &[u8], depth: u32) -> Res {
    if depth > MAX_DEPTH {
        return Err(bad(0, "message nesting too deep"));
    }
    // Check wire types and find which oneof member is set (the last on the wire).
    let mut oneof_winner = 0u32;
    each_field(buf, |w| {
        if let Some(f) = m.by_number(w.number) {
            let ok = w.wt == f.ty.wire_type() || (f.card == Card::Repeated && f.ty.packable() && w.wt == LEN);
            if !ok {
                return Err(bad(w.s, "a known field has the wrong wire type"));
            }
            if let Card::Oneof(_) = f.card {
                oneof_winner = w.number;
            }
        }
        Ok(())
    })?;
    out.push('{');
    let mut first = true;
    for f in m.fields {
        if matches!(f.card, Card::Oneof(_)) && f.number != oneof_winner {
            continue;
        }
        let mark = out.len();
        if !first {
            out.push(',');
        }
        out.push('"');
        out.push_str(f.json);
        out.push_str("\":");
        let wrote = field(out, f, buf, depth)?;
        if wrote {
            first = false;
        } else {
            out.truncate(mark);
        }
    }
    out.push('}');
    Ok(())
}

/// Writes the value of `f` found in message `buf`; returns false (having
/// written nothing useful) when the field is absent or at its default.
fn field(out: &mut String, f: &'static Field, buf: &[u8], depth: u32) -> Res<bool> {
    if f.card == Card::Repeated {
        let mut n = 0usize;
        out.push('[');
        each_field(buf, |w| {
            if w.number != f.number {
                return Ok(());
            }
            if f.ty.packable() && w.wt == LEN {
                let mut pos = w.s;
                while pos < w.e {
                    let at = pos;
                    let v = match f.ty.wire_type() {
                        VARINT => read_varint(&buf[..w.e], &mut pos).map_err(|_| bad(at, "malformed packed varint"))?,
                        I64 => {
                            let b = buf.get(pos..pos + 8).filter(|_| pos + 8 <= w.e);
                            let b = b.ok_or_else(|| bad(at, "packed field does not hold whole elements"))?;
                            pos += 8;
                            u64::from_le_bytes(b.try_into().unwrap_or_default())
                        }
                        _ => {
                            let b = buf.get(pos..pos + 4).filter(|_| pos + 4 <= w.e);
                            let b = b.ok_or_else(|| bad(at, "packed field does not hold whole elements"))?;
                            pos += 4;
                            u64::from(u32::from_le_bytes(b.try_into().unwrap_or_default()))
                        }
                    };
                    if n > 0 {
                        out.push(',');
                    }
                    n += 1;
                    scalar(out, f.ty, v);
                }
                return Ok(());
            }
            if n > 0 {
                out.push(',');
            }
            n += 1;
            value(out, f.ty, buf, w, depth)
        })?;
        out.push(']');
        return Ok(n > 0);
    }
    // Singular: the last occurrence wins; occurrences of a message merge.
    let mut last: Option<WireField> = None;
    let mut merged: Option<Vec<u8>> = None;
    each_field(buf, |w| {
        if w.number == f.number {
            if let (Ty::Msg(_), Some(prev)) = (f.ty, last) {
                let m = merged.get_or_insert_with(|| buf[prev.s..prev.e].to_vec());
                m.extend_from_slice(&buf[w.s..w.e]);
            }
            last = Some(w);
        }
        Ok(())
    })?;
    let Some(w) = last else { return Ok(false) };
    if let Some(bytes) = merged {
        let Ty::Msg(sub) = f.ty else {
            unreachable!("only messages merge")
        };
        message(out, sub, &bytes, depth + 1)?;
        return Ok(true);
    }
    if f.card == Card::Single && is_default(f.ty, w) {
        return Ok(false);
    }
    value(out, f.ty, buf, w, depth)?;
    Ok(true)
}

/// Whether a singular proto3 field holds its type's default (and so is omitted).
fn is_default(ty: Ty, w: WireField) -> bool {
    match ty.wire_type() {
        LEN => w.s == w.e && !matches!(ty, Ty::Msg(_)),
        _ => w.int == 0,
    }
}

fn value(out: &mut String, ty: Ty, buf: &[u8], w: WireField, depth: u32) -> Res {
    let bytes = &buf[w.s..w.e];
    match ty {
        Ty::Msg(sub) => message(out, sub, bytes, depth + 1)?,
        Ty::Str => {
            let s = std::str::from_utf8(bytes).map_err(|_| bad(w.s, "a string field is not UTF-8"))?;
            string(out, s);
        }
        Ty::Bytes => {
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
            out.push('"');
        }
        Ty::Id(_) => {
            out.push('"');
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
            out.push('"');
        }
        _ => scalar(out, ty, w.int),
    }
    Ok(())
}

/// A scalar from its wire value (varint, or fixed bits).
fn scalar(out: &mut String, ty: Ty, v: u64) {
    let _ = match ty {
        Ty::Bool => write!(out, "{}", v != 0),
        Ty::Enum(_) | Ty::Int32 => write!(out, "{}", v as i32),
        Ty::Uint32 | Ty::Fixed32 => write!(out, "{}", v as u32),
        Ty::Sint32 => {
            let u = v as u32;
            write!(out, "{}", ((u >> 1) as i32) ^ -((u & 1) as i32))
        }
        Ty::Int64 | Ty::Sfixed64 => write!(out, "\"{}\"", v as i64),
        Ty::Uint64 | Ty::Fixed64 => write!(out, "\"{v}\""),
        Ty::Double => {
            double(out, f64::from_bits(v));
            Ok(())
        }
        Ty::Msg(_) | Ty::Str | Ty::Bytes | Ty::Id(_) => Ok(()),
    };
}

/// A double as proto3 JSON: shortest round-trip decimal, or a string for
/// the non-finite values.
pub(super) fn double(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v == f64::INFINITY {
        out.push_str("\"Infinity\"");
    } else if v == f64::NEG_INFINITY {
        out.push_str("\"-Infinity\"");
    } else {
        // `Debug` prints the shortest digits that parse back to the same
        // bits, with an exponent for very large or small magnitudes: valid
        // JSON numbers ("1.0", "-0.0", "1e300", "5e-324").
        let _ = write!(out, "{v:?}");
    }
}

/// A JSON string literal.
pub(super) fn string(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles() {
        let cases: [(f64, &str); 9] = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (1e300, "1e300"),
            (5e-324, "5e-324"),
            (11.100000000000001, "11.100000000000001"),
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"Infinity\""),
            (f64::NEG_INFINITY, "\"-Infinity\""),
            (123456789.0, "123456789.0"),
        ];
        for (v, s) in cases {
            let mut out = String::new();
            double(&mut out, v);
            assert_eq!(out, s);
        }
    }

    #[test]
    fn strings() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\u{1}é\u{7f}");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é\u007f""#);
    }
}
