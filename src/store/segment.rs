//! The on-disk record format shared by the local store and the spool, as pure
//! functions over byte buffers: `encode_record`, `decode_record`, and
//! `SegmentScanner`, which walks a whole segment image, resynchronising after
//! corrupt records and recognising torn tails and zero padding.
//!
//! A record is
//! `[u32 LE len][u32 LE crc32][u8 version=1][u8 signal][u32 LE items][u32 LE uncompressed len][lz4 block]`,
//! where `len` counts every byte after the crc word and the crc covers exactly those bytes.
//!
//! Reading is bounded: a record may declare at most [`MAX_UNCOMPRESSED_LEN`]
//! bytes of body (larger is corrupt, refused before anything is allocated),
//! and the resync scan after a corrupt stretch is linear in the segment size:
//! candidates are filtered by cheap header checks (including that the LZ4
//! block can start the way every valid block does), and the bytes hashed for
//! candidates whose checksum then fails are capped at [`RESYNC_HASH_FACTOR`]
//! times the segment size.

use bytes::Bytes;

use crate::payload::Payload;
use crate::signal::Signal;

/// Record format version written in every record.
pub const VERSION: u8 = 1;
/// Bytes before the part covered by `len`: the len and crc words.
pub const PREFIX_LEN: usize = 8;
/// Bytes of the covered header: version, signal, items, uncompressed len.
pub const HEADER_LEN: usize = 10;
/// Largest `len` accepted; anything larger is treated as corruption.
pub const MAX_RECORD_LEN: usize = 256 << 20;
/// Largest uncompressed body one record may hold (and declare). Writers
/// refuse (or split) larger payloads; readers treat a larger declared size as
/// corruption without allocating, so reading a record never takes more than
/// this much memory for its body. Tied to the largest record sluice writes:
/// the same bound as the compressed size.
pub const MAX_UNCOMPRESSED_LEN: usize = MAX_RECORD_LEN;
/// The resync scan hashes at most this many times the segment's size for
/// candidate records whose checksum turns out wrong (a crafted segment full of
/// plausible headers). Genuine records after such a stretch may then be
/// reported as part of it; the scan stays linear.
pub const RESYNC_HASH_FACTOR: usize = 4;

/// One decoded record: a whole `Export*ServiceRequest` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub signal: Signal,
    /// Spans, data points or log records, as counted when the record was written.
    pub items: u64,
    /// The uncompressed, encoded protobuf request.
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not enough bytes for the record the buffer starts with (a torn tail).
    #[error("record truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    /// The bytes do not form a valid record.
    #[error("{0}")]
    Corrupt(String),
    /// A payload that cannot be stored in one record.
    #[error("payload too large for one record: {0}")]
    TooLarge(String),
}

/// Append one record holding `payload` to `out`; returns the bytes appended.
/// Multi-chunk payloads are concatenated in a temporary buffer first; use
/// [`encode_record_with`] to reuse one.
pub fn encode_record(signal: Signal, payload: &Payload, out: &mut Vec<u8>) -> Result<usize, RecordError> {
    let mut scratch = Vec::new();
    encode_record_with(signal, payload, out, &mut scratch)
}

/// [`encode_record`] with a caller-owned scratch buffer for joining chunks.
pub fn encode_record_with(
    signal: Signal,
    payload: &Payload,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<usize, RecordError> {
    let items = u32::try_from(payload.items)
        .map_err(|_| RecordError::TooLarge(format!("{} items exceed the u32 item count", payload.items)))?;
    if payload.len > MAX_UNCOMPRESSED_LEN {
        return Err(RecordError::TooLarge(format!(
            "{} bytes exceed the {MAX_UNCOMPRESSED_LEN}-byte limit",
            payload.len
        )));
    }
    let input: &[u8] = match payload.chunks.len() {
        0 => &[],
        1 => &payload.chunks[0],
        _ => {
            scratch.clear();
            for c in &payload.chunks {
                scratch.extend_from_slice(c);
            }
            scratch
        }
    };
    if input.len() > MAX_UNCOMPRESSED_LEN {
        return Err(RecordError::TooLarge(format!(
            "{} bytes exceed the {MAX_UNCOMPRESSED_LEN}-byte limit",
            input.len()
        )));
    }
    let start = out.len();
    let body_at = start + PREFIX_LEN + HEADER_LEN;
    out.resize(body_at + lz4_flex::block::get_maximum_output_size(input.len()), 0);
    let compressed = match lz4_flex::block::compress_into(input, &mut out[body_at..]) {
        Ok(n) => n,
        Err(e) => {
            out.truncate(start);
            return Err(RecordError::TooLarge(format!("lz4 compression failed: {e}")));
        }
    };
    let len = HEADER_LEN + compressed;
    if len > MAX_RECORD_LEN {
        out.truncate(start);
        return Err(RecordError::TooLarge(format!(
            "compressed record of {len} bytes exceeds the {MAX_RECORD_LEN}-byte limit"
        )));
    }
    out.truncate(body_at + compressed);
    let rec = &mut out[start..];
    rec[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    rec[8] = VERSION;
    rec[9] = signal.code();
    rec[10..14].copy_from_slice(&items.to_le_bytes());
    rec[14..18].copy_from_slice(&(input.len() as u32).to_le_bytes());
    let crc = crc32fast::hash(&rec[PREFIX_LEN..]);
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(PREFIX_LEN + len)
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Why a record's header (or the start of its LZ4 block) is not plausible.
/// Plain data, so that the resync scan rejects candidates without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    LenTooLarge(usize),
    LenTooSmall(usize),
    Version(u8),
    Signal(u8),
    UlenTooLarge(usize),
    Ratio { clen: usize, ulen: usize },
    Lz4Empty,
    Lz4Literals,
    Lz4Sequence,
    Lz4Offset(usize),
    Truncated { needed: usize, available: usize },
}

impl Fault {
    fn into_error(self) -> RecordError {
        let m = match self {
            Fault::Truncated { needed, available } => return RecordError::Truncated { needed, available },
            Fault::LenTooLarge(len) => format!("record length {len} exceeds {MAX_RECORD_LEN}"),
            Fault::LenTooSmall(len) => format!("record length {len} is shorter than its header"),
            Fault::Version(v) => format!("unknown record version {v}"),
            Fault::Signal(c) => format!("unknown signal code {c}"),
            Fault::UlenTooLarge(ulen) => {
                format!("declared uncompressed length {ulen} exceeds {MAX_UNCOMPRESSED_LEN}")
            }
            Fault::Ratio { clen, ulen } => format!("compressed length {clen} cannot hold {ulen} uncompressed bytes"),
            Fault::Lz4Empty => "lz4 block is empty".into(),
            Fault::Lz4Literals => "lz4 literals run past the block".into(),
            Fault::Lz4Sequence => "lz4 first sequence runs past the block".into(),
            Fault::Lz4Offset(o) => format!("lz4 first match offset {o} points before the start of the body"),
        };
        RecordError::Corrupt(m)
    }
}

/// Whether `block` can be the start of a valid LZ4 block: its first sequence's
/// literals fit, and it either ends the block or its match refers back into
/// those literals (the first match of any valid block does).
fn lz4_start_ok(block: &[u8]) -> Result<(), Fault> {
    let Some(&token) = block.first() else {
        return Err(Fault::Lz4Empty);
    };
    let mut at = 1;
    let mut literals = (token >> 4) as usize;
    if literals == 15 {
        loop {
            let Some(&b) = block.get(at) else {
                return Err(Fault::Lz4Literals);
            };
            at += 1;
            literals += b as usize;
            if literals > block.len() {
                return Err(Fault::Lz4Literals);
            }
            if b != 255 {
                break;
            }
        }
    }
    let after = at + literals;
    if after == block.len() {
        return Ok(());
    }
    if after + 2 > block.len() {
        return Err(Fault::Lz4Sequence);
    }
    let offset = u16::from_le_bytes([block[after], block[after + 1]]) as usize;
    if offset == 0 || offset > literals {
        return Err(Fault::Lz4Offset(offset));
    }
    Ok(())
}

/// The header checks of [`check_header`], without building messages.
fn header_fault(buf: &[u8]) -> Result<usize, Fault> {
    if buf.len() < PREFIX_LEN {
        return Err(Fault::Truncated {
            needed: PREFIX_LEN,
            available: buf.len(),
        });
    }
    let len = le32(&buf[0..4]) as usize;
    if len > MAX_RECORD_LEN {
        return Err(Fault::LenTooLarge(len));
    }
    if len < HEADER_LEN {
        return Err(Fault::LenTooSmall(len));
    }
    // Cheap header checks before the crc, so a resync scan rarely hashes.
    if buf.len() >= PREFIX_LEN + 2 {
        if buf[8] != VERSION {
            return Err(Fault::Version(buf[8]));
        }
        if !(1..=3).contains(&buf[9]) {
            return Err(Fault::Signal(buf[9]));
        }
    }
    if buf.len() >= PREFIX_LEN + HEADER_LEN {
        let ulen = le32(&buf[14..18]) as usize;
        if ulen > MAX_UNCOMPRESSED_LEN {
            return Err(Fault::UlenTooLarge(ulen));
        }
        // LZ4 expands at most 255-fold and never grows input by more than
        // the encoder's worst case.
        let clen = len - HEADER_LEN;
        if ulen > clen.saturating_mul(256) + 64 || clen > lz4_flex::block::get_maximum_output_size(ulen) {
            return Err(Fault::Ratio { clen, ulen });
        }
    }
    let total = PREFIX_LEN + len;
    if buf.len() < total {
        return Err(Fault::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    lz4_start_ok(&buf[PREFIX_LEN + HEADER_LEN..total])?;
    Ok(total)
}

/// Checks the record at the start of `buf` without hashing or decompressing it:
/// its length, version, signal and declared sizes, and that its LZ4 block
/// starts like a valid one. Returns the bytes the record occupies.
pub fn check_header(buf: &[u8]) -> Result<usize, RecordError> {
    header_fault(buf).map_err(Fault::into_error)
}

/// Whether the crc word of the record `rec` (exactly its bytes) matches.
fn crc_check(rec: &[u8]) -> Result<(), RecordError> {
    let stored_crc = le32(&rec[4..8]);
    let crc = crc32fast::hash(&rec[PREFIX_LEN..]);
    if crc != stored_crc {
        return Err(RecordError::Corrupt(format!(
            "crc mismatch (stored {stored_crc:08x}, computed {crc:08x})"
        )));
    }
    Ok(())
}

/// [`check_header`] and the crc, without decompressing: returns the bytes the
/// record occupies and its signal and item count.
pub fn check_record(buf: &[u8]) -> Result<(usize, Signal, u64), RecordError> {
    let total = check_header(buf)?;
    crc_check(&buf[..total])?;
    let signal =
        Signal::from_code(buf[9]).ok_or_else(|| RecordError::Corrupt(format!("unknown signal code {}", buf[9])))?;
    Ok((total, signal, le32(&buf[10..14]) as u64))
}

/// Decode the record at the start of `buf`; returns it and the bytes it occupies.
pub fn decode_record(buf: &[u8]) -> Result<(Record, usize), RecordError> {
    let (total, _, _) = check_record(buf)?;
    Ok((decompress(&buf[..total])?, total))
}

/// Decompresses the record that is exactly `rec`, already checked by
/// [`check_record`] (so its declared size is at most the cap).
fn decompress(rec: &[u8]) -> Result<Record, RecordError> {
    let signal =
        Signal::from_code(rec[9]).ok_or_else(|| RecordError::Corrupt(format!("unknown signal code {}", rec[9])))?;
    let items = le32(&rec[10..14]) as u64;
    let ulen = le32(&rec[14..18]) as usize;
    let mut body = vec![0u8; ulen];
    let n = lz4_flex::block::decompress_into(&rec[PREFIX_LEN + HEADER_LEN..], &mut body)
        .map_err(|e| RecordError::Corrupt(format!("lz4 decompression failed: {e}")))?;
    if n != ulen {
        return Err(RecordError::Corrupt(format!(
            "body decompressed to {n} bytes, header says {ulen}"
        )));
    }
    Ok(Record {
        signal,
        items,
        body: Bytes::from(body),
    })
}

/// What a scan of one segment image finds, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentEvent {
    Record {
        offset: u64,
        record: Record,
    },
    /// Bytes at `offset` that are not a valid record; the scan resumed at the
    /// next offset where a record decodes.
    Corrupt {
        offset: u64,
        reason: String,
    },
    /// An incomplete record at the end of the segment (a write torn by a crash).
    TruncatedTail {
        offset: u64,
        bytes: u64,
    },
}

/// What [`SegmentScanner::next_checked`] finds: like [`SegmentEvent`], but a
/// record is only checked (header and crc), not decompressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckedEvent {
    Record { offset: u64, len: u64, items: u64 },
    Corrupt { offset: u64, reason: String },
    TruncatedTail { offset: u64, bytes: u64 },
}

/// Iterates over the records of a segment image (borrowed or owned). Zero
/// bytes at the end are padding and end the scan silently.
pub struct SegmentScanner<B> {
    buf: B,
    pos: usize,
    /// One past the last non-zero byte: from here on the image is padding.
    data_end: usize,
    /// Bytes the resync may still hash for candidates whose crc fails.
    hash_budget: usize,
}

impl<B: AsRef<[u8]>> SegmentScanner<B> {
    pub fn new(buf: B) -> Self {
        let b = buf.as_ref();
        let data_end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
        let hash_budget = b.len().saturating_mul(RESYNC_HASH_FACTOR);
        SegmentScanner {
            buf,
            pos: 0,
            data_end,
            hash_budget,
        }
    }

    /// Offset of the next byte to scan.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// First offset at or after `from` where a record passes its header
    /// checks and crc. Linear: each offset costs a few byte comparisons unless
    /// it passes them, and failed crc work is capped by `hash_budget`.
    fn resync(&mut self, from: usize) -> Option<usize> {
        let buf = self.buf.as_ref();
        let last = buf.len().checked_sub(PREFIX_LEN + HEADER_LEN)?;
        let max_len_hi = (MAX_RECORD_LEN >> 24) as u8;
        for p in from..=last {
            // Quick filter on the bytes every record has, before the full checks.
            if buf[p + 8] != VERSION || buf[p + 3] > max_len_hi || !(1..=3).contains(&buf[p + 9]) {
                continue;
            }
            // A first LZ4 token without literals can only be the empty block
            // (a match cannot refer before the body's start).
            if buf.get(p + PREFIX_LEN + HEADER_LEN).is_some_and(|&t| t < 0x10)
                && le32(&buf[p..p + 4]) as usize != HEADER_LEN + 1
            {
                continue;
            }
            let Ok(total) = header_fault(&buf[p..]) else {
                continue;
            };
            let hashed = total - PREFIX_LEN;
            if hashed > self.hash_budget {
                continue;
            }
            if crc_check(&buf[p..p + total]).is_ok() {
                return Some(p);
            }
            self.hash_budget -= hashed;
        }
        None
    }

    /// The length of the frame at `pos` if its length word is in range and
    /// its crc matches (hashing counted against the resync budget).
    fn intact_len(&mut self, pos: usize) -> Option<usize> {
        let buf = &self.buf.as_ref()[pos..];
        if buf.len() < PREFIX_LEN {
            return None;
        }
        let len = le32(&buf[0..4]) as usize;
        if !(HEADER_LEN..=MAX_RECORD_LEN).contains(&len) || PREFIX_LEN + len > buf.len() || len > self.hash_budget {
            return None;
        }
        if crc_check(&buf[..PREFIX_LEN + len]).is_ok() {
            return Some(PREFIX_LEN + len);
        }
        self.hash_budget -= len;
        None
    }

    /// The next event, checking records (header and crc) without
    /// decompressing them.
    pub fn next_checked(&mut self) -> Option<CheckedEvent> {
        let pos = self.pos;
        let len = self.buf.as_ref().len();
        if pos >= len {
            return None;
        }
        let rest = &self.buf.as_ref()[pos..];
        let (err, crc_failed) = match header_fault(rest) {
            Ok(total) => match crc_check(&rest[..total]) {
                Ok(()) => {
                    self.pos += total;
                    return Some(CheckedEvent::Record {
                        offset: pos as u64,
                        len: total as u64,
                        items: le32(&rest[10..14]) as u64,
                    });
                }
                Err(e) => (e, true),
            },
            Err(f) => (f.into_error(), false),
        };
        if pos >= self.data_end {
            self.pos = len;
            return None;
        }
        if !crc_failed && !matches!(err, RecordError::Truncated { .. }) {
            // A frame whose crc holds is intact; only its contents are
            // refused (a declared size over the cap, say): skip exactly it.
            if let Some(total) = self.intact_len(pos) {
                self.pos = pos + total;
                return Some(CheckedEvent::Corrupt {
                    offset: pos as u64,
                    reason: err.to_string(),
                });
            }
        }
        let next = self.resync(pos + 1);
        self.pos = next.unwrap_or(len);
        Some(match (err, next) {
            (RecordError::Truncated { .. }, None) => CheckedEvent::TruncatedTail {
                offset: pos as u64,
                bytes: (len - pos) as u64,
            },
            (RecordError::Truncated { needed, .. }, Some(_)) => CheckedEvent::Corrupt {
                offset: pos as u64,
                reason: format!("record length {needed} runs past the end of the segment"),
            },
            (e, _) => CheckedEvent::Corrupt {
                offset: pos as u64,
                reason: e.to_string(),
            },
        })
    }
}

impl<B: AsRef<[u8]>> Iterator for SegmentScanner<B> {
    type Item = SegmentEvent;

    fn next(&mut self) -> Option<SegmentEvent> {
        Some(match self.next_checked()? {
            CheckedEvent::Record { offset, len, .. } => {
                let at = offset as usize;
                match decompress(&self.buf.as_ref()[at..at + len as usize]) {
                    Ok(record) => SegmentEvent::Record { offset, record },
                    Err(e) => SegmentEvent::Corrupt {
                        offset,
                        reason: e.to_string(),
                    },
                }
            }
            CheckedEvent::Corrupt { offset, reason } => SegmentEvent::Corrupt { offset, reason },
            CheckedEvent::TruncatedTail { offset, bytes } => SegmentEvent::TruncatedTail { offset, bytes },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(chunks: &[&[u8]], items: u64) -> Payload {
        let mut p = Payload::new();
        for (i, c) in chunks.iter().enumerate() {
            p.push(Bytes::copy_from_slice(c), if i == 0 { items } else { 0 });
        }
        p
    }

    fn body(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(seed) ^ (i / 7) as u8).collect()
    }

    #[test]
    fn roundtrip_single_multi_and_empty() {
        let a = body(1000, 3);
        let b = body(333, 5);
        let mut out = Vec::new();
        let n1 = encode_record(Signal::Traces, &payload(&[&a], 7), &mut out).unwrap();
        let n2 = encode_record(Signal::Metrics, &payload(&[&a, &b], 9), &mut out).unwrap();
        let n3 = encode_record(Signal::Logs, &Payload::new(), &mut out).unwrap();
        assert_eq!(out.len(), n1 + n2 + n3);

        let (r1, c1) = decode_record(&out).unwrap();
        assert_eq!(c1, n1);
        assert_eq!((r1.signal, r1.items, &r1.body[..]), (Signal::Traces, 7, &a[..]));
        let (r2, c2) = decode_record(&out[n1..]).unwrap();
        assert_eq!(c2, n2);
        let joined = [a.clone(), b.clone()].concat();
        assert_eq!((r2.signal, r2.items, &r2.body[..]), (Signal::Metrics, 9, &joined[..]));
        let (r3, c3) = decode_record(&out[n1 + n2..]).unwrap();
        assert_eq!(c3, n3);
        assert_eq!((r3.signal, r3.items, r3.body.len()), (Signal::Logs, 0, 0));
    }

    #[test]
    fn header_layout() {
        let mut out = Vec::new();
        encode_record(Signal::Logs, &payload(&[b"hello"], 2), &mut out).unwrap();
        let len = le32(&out[0..4]) as usize;
        assert_eq!(len + PREFIX_LEN, out.len());
        assert_eq!(le32(&out[4..8]), crc32fast::hash(&out[8..]));
        assert_eq!(out[8], VERSION);
        assert_eq!(out[9], Signal::Logs.code());
        assert_eq!(le32(&out[10..14]), 2);
        assert_eq!(le32(&out[14..18]), 5);
        assert_eq!(lz4_flex::block::decompress(&out[18..], 5).unwrap(), b"hello");
    }

    #[test]
    fn truncated_vs_corrupt() {
        let mut out = Vec::new();
        encode_record(Signal::Traces, &payload(&[&body(200, 11)], 1), &mut out).unwrap();
        for cut in 0..out.len() {
            assert!(
                matches!(decode_record(&out[..cut]), Err(RecordError::Truncated { .. })),
                "cut at {cut}"
            );
        }
        let mut bad = out.clone();
        *bad.last_mut().unwrap() ^= 0x40;
        assert!(matches!(decode_record(&bad), Err(RecordError::Corrupt(m)) if m.contains("crc")));
        let mut bad = out.clone();
        bad[8] = 2;
        assert!(matches!(decode_record(&bad), Err(RecordError::Corrupt(m)) if m.contains("version")));
        let mut bad = out.clone();
        bad[9] = 9;
        assert!(matches!(decode_record(&bad), Err(RecordError::Corrupt(m)) if m.contains("signal")));
        let mut bad = out.clone();
        bad[0..4].copy_from_slice(&(300u32 << 20).to_le_bytes());
        assert!(matches!(decode_record(&bad), Err(RecordError::Corrupt(m)) if m.contains("exceeds")));
    }

    #[test]
    fn bad_lz4_with_valid_crc_is_corrupt() {
        let mut rec = vec![0u8; PREFIX_LEN + HEADER_LEN];
        rec[8] = VERSION;
        rec[9] = Signal::Traces.code();
        rec[14..18].copy_from_slice(&100u32.to_le_bytes());
        rec.extend_from_slice(&[0xff, 0xff, 0xff]);
        let len = (rec.len() - PREFIX_LEN) as u32;
        rec[0..4].copy_from_slice(&len.to_le_bytes());
        let crc = crc32fast::hash(&rec[8..]);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode_record(&rec), Err(RecordError::Corrupt(m)) if m.contains("lz4")));
    }

    fn three_records() -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for (i, s) in Signal::ALL.into_iter().enumerate() {
            offsets.push(out.len());
            encode_record(s, &payload(&[&body(500 + i * 10, 3 + i as u8)], i as u64 + 1), &mut out).unwrap();
        }
        (out, offsets)
    }

    #[test]
    fn scanner_any_flipped_byte_loses_only_that_record() {
        let (clean, offsets) = three_records();
        // Flip every byte of the middle record in turn, including its len word.
        for at in offsets[1]..offsets[2] {
            let mut buf = clean.clone();
            buf[at] ^= 0x5a;
            let ev: Vec<_> = SegmentScanner::new(&buf).collect();
            assert_eq!(ev.len(), 3, "flip at {at}: {ev:?}");
            assert!(matches!(&ev[0], SegmentEvent::Record { offset: 0, record } if record.signal == Signal::Traces));
            assert!(
                matches!(&ev[1], SegmentEvent::Corrupt { offset, .. } if *offset == offsets[1] as u64),
                "flip at {at}: {:?}",
                ev[1]
            );
            assert!(matches!(&ev[2], SegmentEvent::Record { offset, record }
                if *offset == offsets[2] as u64 && record.signal == Signal::Logs && record.items == 3));
        }
    }

    #[test]
    fn scanner_torn_tail_and_padding() {
        let (clean, offsets) = three_records();
        let cut = offsets[2] + 20;
        let ev: Vec<_> = SegmentScanner::new(&clean[..cut]).collect();
        assert_eq!(ev.len(), 3);
        assert_eq!(
            ev[2],
            SegmentEvent::TruncatedTail {
                offset: offsets[2] as u64,
                bytes: 20
            }
        );

        let mut padded = clean.clone();
        padded.resize(clean.len() + 4000, 0);
        let ev: Vec<_> = SegmentScanner::new(&padded).collect();
        assert_eq!(ev.len(), 3);
        assert!(ev.iter().all(|e| matches!(e, SegmentEvent::Record { .. })));

        assert_eq!(SegmentScanner::new(&[]).count(), 0);
        assert_eq!(SegmentScanner::new(&[0u8; 3]).count(), 0);
    }

    #[test]
    fn declared_size_over_the_cap_is_corrupt_and_skipped_whole() {
        let mut rec = vec![0u8; PREFIX_LEN + HEADER_LEN];
        rec[8] = VERSION;
        rec[9] = Signal::Traces.code();
        rec[14..18].copy_from_slice(&((MAX_UNCOMPRESSED_LEN + 1) as u32).to_le_bytes());
        rec.extend_from_slice(&[0x1f, 0, 1, 0]);
        rec.extend(std::iter::repeat_n(255u8, (MAX_UNCOMPRESSED_LEN >> 8) + 16));
        rec.extend_from_slice(&[0, 0x50, 0, 0, 0, 0, 0]);
        let len = (rec.len() - PREFIX_LEN) as u32;
        rec[0..4].copy_from_slice(&len.to_le_bytes());
        let crc = crc32fast::hash(&rec[8..]);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(
            matches!(decode_record(&rec), Err(RecordError::Corrupt(m)) if m.contains("declared uncompressed length"))
        );
        let (good, _) = three_records();
        let buf = [rec.clone(), rec.clone(), good].concat();
        let ev: Vec<_> = SegmentScanner::new(&buf).collect();
        assert_eq!(ev.len(), 5, "{ev:?}");
        assert!(matches!(&ev[1], SegmentEvent::Corrupt { offset, .. } if *offset == rec.len() as u64));
        assert!(ev[2..].iter().all(|e| matches!(e, SegmentEvent::Record { .. })));
    }

    #[test]
    fn resync_over_plausible_headers_is_linear() {
        // Every offset of 0x01 bytes reads as a version-1 record of 16 MiB.
        let (good, _) = three_records();
        let mut buf = vec![0x01u8; 20 << 20];
        buf.extend_from_slice(&good);
        let ev: Vec<_> = SegmentScanner::new(&buf).collect();
        assert_eq!(ev.len(), 4, "{:?}", &ev[..1]);
        assert!(matches!(&ev[0], SegmentEvent::Corrupt { offset: 0, .. }));
        assert!(ev[1..].iter().all(|e| matches!(e, SegmentEvent::Record { .. })));
        // Headers that pass every cheap check cost at most the hash budget.
        let mut s = SegmentScanner::new(&buf);
        s.hash_budget = 0;
        assert_eq!(s.resync(1), None);
    }

    #[test]
    fn scanner_garbage_is_corrupt_not_panic() {
        let garbage: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let ev: Vec<_> = SegmentScanner::new(&garbage).collect();
        assert!(!ev.is_empty());
        assert!(ev.iter().all(|e| !matches!(e, SegmentEvent::Record { .. })));
    }
}
