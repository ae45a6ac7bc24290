//! zstd (RFC 8878). The decoder's window is capped at the size limit (rounded
//! up to a power of two, between 1 KiB and 128 MiB): a frame that asks for a
//! larger window is refused before its window is allocated, so a crafted
//! header cannot make sluice reserve more than the limit.

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

/// Decompresses every frame in `data`, capped at `limit` bytes.
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
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

    #[test]
    fn a_frame_asking_for_a_huge_window_is_refused() {
        // Frame header: magic, descriptor with no content size and not single
        // segment, window descriptor exponent 21 (2^31 bytes), then an empty
        // raw last block.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, (21 << 3), 0x01, 0x00, 0x00];
        assert!(matches!(
            decompress(&frame, 1 << 20),
            Err(CompressionError::Invalid("zstd", _))
        ));
        // The same frame with a small window decodes (to nothing).
        let small = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x01, 0x00, 0x00];
        assert_eq!(decompress(&small, 1 << 20).unwrap(), b"");
    }
}
