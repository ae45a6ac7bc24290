//! `deflate` and `zlib`: both names mean the zlib container (RFC 1950) in the
//! Collector and in gRPC. Some HTTP clients send a raw deflate stream
//! (RFC 1951) for `Content-Encoding: deflate`; a body without a valid zlib
//! header is read as raw deflate.

use std::io::Write;

use bytes::Bytes;

use super::{capped::read_capped, CompressionError};

/// Whether `data` starts with a zlib header: method 8 (deflate), a window of at
/// most 32 KiB, and the header checksum (RFC 1950 section 2.2).
fn has_zlib_header(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Decompresses a zlib (or raw deflate) body, capped at `limit` bytes.
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    if has_zlib_header(data) {
        read_capped(flate2::read::ZlibDecoder::new(data), limit, data.len() * 4, "zlib")
    } else {
        read_capped(
            flate2::read::DeflateDecoder::new(data),
            limit,
            data.len() * 4,
            "deflate",
        )
    }
}

/// Compresses the concatenation of `chunks` into a zlib stream (fast level).
pub fn compress(chunks: &[Bytes]) -> Bytes {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut enc = flate2::write::ZlibEncoder::new(Vec::with_capacity(total / 4 + 64), flate2::Compression::fast());
    for c in chunks {
        let _ = enc.write_all(c);
    }
    Bytes::from(enc.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_and_raw_deflate() {
        let data = Bytes::from(vec![3u8; 5000]);
        let z = compress(std::slice::from_ref(&data));
        assert!(has_zlib_header(&z));
        assert_eq!(decompress(&z, 5000).unwrap(), data);
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&data).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(decompress(&raw, 5000).unwrap(), data);
        assert!(matches!(decompress(&z, 4999), Err(CompressionError::TooLarge(4999))));
    }
}
