//! zstd (RFC 8878). The decoder's window is capped at the size limit (rounded
//! up to a power of two, between 1 KiB and 128 MiB): a frame that asks for a
//! larger window, or declares more content than the limit, is refused from its
//! header before anything is allocated, so a crafted header cannot make
//! sluice reserve more than the limit. (Go's streaming zstd writer declares an
//! 8 MiB window: an OTLP/HTTP limit below 8 MiB refuses such bodies.)

use std::io::Write;

use bytes::Bytes;

use super::{capped::read_capped, CompressionError};

/// Level used for exports: zstd's fast default.
const LEVEL: i32 = 1;

/// The largest window (log2) a frame may ask for under `limit`.
fn window_log_max(limit: usize) -> u32 {
    let l = limit.max(1).next_power_of_two().trailing_zeros();
    l.clamp(10, 27)
}

/// The first frame's declared (window size, content size), from its header
/// (RFC 8878 section 3.1.1.1); `None` if `data` does not start with one.
fn frame_sizes(data: &[u8]) -> Option<(u64, Option<u64>)> {
    let rest = data.strip_prefix(&[0x28, 0xb5, 0x2f, 0xfd])?;
    let fhd = *rest.first()?;
    let single_segment = fhd & 0x20 != 0;
    let dict_len = [0, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = match fhd >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut at = 1;
    let window = if single_segment {
        None
    } else {
        let wd = *rest.get(at)?;
        at += 1;
        let base = 1u64 << (10 + u32::from(wd >> 3));
        Some(base + base / 8 * u64::from(wd & 7))
    };
    at += dict_len;
    let fcs = rest.get(at..at + fcs_len)?;
    let mut content = None;
    if fcs_len > 0 {
        let mut v = [0u8; 8];
        v[..fcs_len].copy_from_slice(fcs);
        let n = u64::from_le_bytes(v) + if fcs_len == 2 { 256 } else { 0 };
        content = Some(n);
    }
    // A single-segment frame's window is its content size.
    Some((window.or(content)?, content))
}

/// Decompresses every frame in `data`, capped at `limit` bytes. A first frame
/// that declares more content than the limit, or a window larger than the
/// limit allows, is refused from its header alone.
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    if let Some((window, content)) = frame_sizes(data) {
        if content.is_some_and(|c| c > limit as u64) || window > 1u64 << window_log_max(limit) {
            return Err(CompressionError::TooLarge(limit));
        }
    }
    let mut dec =
        zstd::stream::read::Decoder::with_buffer(data).map_err(|e| CompressionError::Invalid("zstd", e.to_string()))?;
    dec.window_log_max(window_log_max(limit))
        .map_err(|e| CompressionError::Invalid("zstd", e.to_string()))?;
    read_capped(dec, limit, data.len() * 4, "zstd")
}

/// Compresses the concatenation of `chunks` into one zstd frame.
pub fn compress(chunks: &[Bytes]) -> Bytes {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let out = Vec::with_capacity(total / 4 + 64);
    let Ok(mut enc) = zstd::stream::write::Encoder::new(out, LEVEL) else {
        return Bytes::new();
    };
    // The size is known: it goes in the frame header and bounds the window.
    let _ = enc.set_pledged_src_size(Some(total as u64));
    let _ = enc.include_contentsize(true);
    for c in chunks {
        let _ = enc.write_all(c);
    }
    Bytes::from(enc.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_cap() {
        let data = Bytes::from(vec![9u8; 100_000]);
        let z = compress(&[data.slice(..50_000), data.slice(50_000..)]);
        assert_eq!(decompress(&z, 100_000).unwrap(), data);
        assert!(matches!(
            decompress(&z, 99_999),
            Err(CompressionError::TooLarge(99_999))
        ));
        assert!(matches!(
            decompress(b"nope", 100),
            Err(CompressionError::Invalid("zstd", _))
        ));
    }

    fn small_frame() -> [u8; 9] {
        [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x01, 0x00, 0x00]
    }

    #[test]
    fn a_frame_asking_for_a_huge_window_is_refused() {
        // Frame header: magic, descriptor with no content size and not single
        // segment, window descriptor exponent 21 (2^31 bytes), then an empty
        // raw last block.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, (21 << 3), 0x01, 0x00, 0x00];
        assert_eq!(frame_sizes(&frame), Some((1 << 31, None)));
        assert!(matches!(
            decompress(&frame, 1 << 20),
            Err(CompressionError::TooLarge(_))
        ));
        // The decoder's own cap holds for frames after the first.
        let mut two = small_frame().to_vec();
        two.extend_from_slice(&frame);
        assert!(decompress(&two, 1 << 20).is_err());
        // The same frame with a small window decodes (to nothing).
        assert_eq!(decompress(&small_frame(), 1 << 20).unwrap(), b"");
        // A frame from `compress` declares its content size.
        let z = compress(&[Bytes::from(vec![1u8; 5000])]);
        assert_eq!(frame_sizes(&z).map(|s| s.1), Some(Some(5000)));
        assert!(matches!(decompress(&z, 4999), Err(CompressionError::TooLarge(4999))));
    }
}
