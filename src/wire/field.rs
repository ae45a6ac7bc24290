//! The protobuf wire format's primitives, as every walker in `wire` uses
//! them: varints, field keys, one field's value as a byte range of the
//! walked buffer, and [`Fields`], the iterator over a message's fields that
//! skips length-delimited values without reading them.

use bytes::BufMut;

use super::WireError;

/// A field's value as found on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// Byte range of a length-delimited value within the walked buffer.
    Len(usize, usize),
    /// Byte range of a group's fields (between its start and end tags). OTLP
    /// has no groups: only unknown fields are groups, which prost skips.
    Group(usize, usize),
}

impl Value {
    /// The byte range of a length-delimited value; `None` for scalars.
    #[inline]
    pub fn range(self) -> Option<(usize, usize)> {
        match self {
            Value::Len(s, e) => Some((s, e)),
            _ => None,
        }
    }
}

/// One field: number, value, and the byte offset where its tag starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    pub value: Value,
    pub start: usize,
    pub end: usize,
}

/// Reads a varint at `*pos`, advancing it.
#[inline(always)]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    // Tags, lengths of small messages and small integers: one byte; a span's
    // length and field 16's tag: two.
    let p = *pos;
    if let Some(&b) = buf.get(p) {
        if b < 0x80 {
            *pos = p + 1;
            return Ok(u64::from(b));
        }
        if let Some(&c) = buf.get(p + 1) {
            if c < 0x80 {
                *pos = p + 2;
                return Ok(u64::from(b & 0x7f) | u64::from(c) << 7);
            }
        }
    }
    read_varint_slow(buf, pos)
}

#[inline(never)]
fn read_varint_slow(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut result = 0u64;
    let mut shift = 0u32;
    loop {
        let Some(&b) = buf.get(*pos) else {
            return Err(WireError::Truncated(*pos));
        };
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err(WireError::Varint(start));
        }
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(result);
        }
        shift += 7;
        if shift > 63 {
            return Err(WireError::Varint(start));
        }
    }
}

/// Number of bytes `v` takes as a varint.
#[inline]
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Writes `v` as a varint (into a `BytesMut`, or a `&mut [u8]` window).
#[inline]
pub fn put_varint(out: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Writes the tag and length prefix of a length-delimited field.
#[inline]
pub fn put_len_header(out: &mut impl BufMut, field: u32, len: usize) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, len as u64);
}

/// Iterates the fields of one message occupying `buf[start..end]`.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8], start: usize, end: usize) -> Self {
        Fields {
            buf: &buf[..end],
            pos: start,
            end,
        }
    }

    pub fn all(buf: &'a [u8]) -> Self {
        Fields::new(buf, 0, buf.len())
    }

    #[inline]
    fn read(&mut self) -> Result<Field, WireError> {
        let start = self.pos;
        let key = read_varint(self.buf, &mut self.pos)?;
        let number = (key >> 3) as u32;
        let wire_type = (key & 7) as u8;
        if number == 0 {
            return Err(WireError::FieldZero(start));
        }
        let value = match wire_type {
            0 => Value::Varint(read_varint(self.buf, &mut self.pos)?),
            1 => {
                let b = self
                    .buf
                    .get(self.pos..self.pos + 8)
                    .ok_or(WireError::Truncated(self.end))?;
                self.pos += 8;
                Value::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            2 => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let s = self.pos;
                if len > (self.end - s) as u64 {
                    return Err(WireError::Truncated(self.end));
                }
                self.pos = s + len as usize;
                Value::Len(s, self.pos)
            }
            3 => {
                let s = self.pos;
                let e = skip_group(self.buf, &mut self.pos, self.end, number)?;
                Value::Group(s, e)
            }
            5 => {
                let b = self
                    .buf
                    .get(self.pos..self.pos + 4)
                    .ok_or(WireError::Truncated(self.end))?;
                self.pos += 4;
                Value::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            }
            _ => {
                return Err(WireError::WireType {
                    field: number,
                    wire_type,
                    at: start,
                })
            }
        };
        Ok(Field {
            number,
            value,
            start,
            end: self.pos,
        })
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let r = self.read();
        if r.is_err() {
            self.pos = self.end;
        }
        Some(r)
    }
}

/// Skips the fields of a group whose start tag (field `number`) ended at
/// `*pos`, nested groups included, up to and past its end tag; returns where
/// the end tag starts. Iterative, so nesting depth costs no stack.
fn skip_group(buf: &[u8], pos: &mut usize, end: usize, number: u32) -> Result<usize, WireError> {
    let mut open = vec![number];
    loop {
        if *pos >= end {
            return Err(WireError::Truncated(end));
        }
        let at = *pos;
        let key = read_varint(buf, pos)?;
        let n = (key >> 3) as u32;
        if n == 0 {
            return Err(WireError::FieldZero(at));
        }
        match key & 7 {
            0 => {
                read_varint(buf, pos)?;
            }
            1 | 5 => {
                let w = if key & 7 == 1 { 8 } else { 4 };
                if end - *pos < w {
                    return Err(WireError::Truncated(end));
                }
                *pos += w;
            }
            2 => {
                let len = read_varint(buf, pos)?;
                if len > (end - *pos) as u64 {
                    return Err(WireError::Truncated(end));
                }
                *pos += len as usize;
            }
            3 => open.push(n),
            4 => {
                if open.pop() != Some(n) {
                    return Err(WireError::EndGroup { at });
                }
                if open.is_empty() {
                    return Ok(at);
                }
            }
            wt => {
                return Err(WireError::WireType {
                    field: n,
                    wire_type: wt as u8,
                    at,
                })
            }
        }
    }
}

/// The byte range of a field that must be a message (length-delimited).
#[inline]
pub(crate) fn message_range(f: &Field) -> Result<(usize, usize), WireError> {
    match f.value {
        Value::Len(s, e) => Ok((s, e)),
        _ => Err(WireError::NotMessage {
            field: f.number,
            at: f.start,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut b = bytes::BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(read_varint(&b, &mut pos).unwrap(), v);
            assert_eq!(pos, b.len());
        }
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), Err(WireError::Truncated(2)));
        let mut pos = 0;
        assert!(read_varint(&[0xff; 11], &mut pos).is_err());
        // Every two-byte encoding (the fast path), canonical or not, at an
        // offset, and cut after its first byte.
        for b in 0x80..=0xffu8 {
            for c in 0..0x80u8 {
                let mut pos = 1;
                assert_eq!(
                    read_varint(&[9, b, c, 9], &mut pos),
                    Ok(u64::from(b & 0x7f) | u64::from(c) << 7)
                );
                assert_eq!(pos, 3);
                let mut pos = 1;
                assert_eq!(read_varint(&[9, b], &mut pos), Err(WireError::Truncated(2)));
            }
        }
    }
}
