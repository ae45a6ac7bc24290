//! snappy, in its two shapes. The framing format (stream identifier chunk
//! `ff 06 00 00 sNaPpY`, then CRC-checked chunks of at most 64 KiB) is what the
//! Collector sends for `compression: snappy` over gRPC and, by default, over
//! OTLP/HTTP; the block format (a varint length then the compressed data) is
//! what Prometheus remote write and other HTTP clients send as `snappy`. Like
//! the Collector's server, a `snappy` body is read as framed when it starts
//! with the stream identifier and as a block otherwise; `x-snappy-framed`
//! must be framed. Exports are framed, as the Collector's.

use std::io::Write;

use bytes::Bytes;

use super::{capped::read_capped, CompressionError};

/// The framing format's stream identifier chunk.
const STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// Whether `data` is a framed snappy stream.
pub fn is_framed(data: &[u8]) -> bool {
    data.starts_with(STREAM_IDENTIFIER)
}

/// Decompresses a framed stream, capped at `limit` bytes.
pub fn decompress_framed(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    if !is_framed(data) {
        return Err(CompressionError::Invalid(
            "snappy",
            "not a framed snappy stream (no stream identifier)".to_string(),
        ));
    }
    read_capped(snap::read::FrameDecoder::new(data), limit, data.len() * 2, "snappy")
}

/// Decompresses a block; its declared length is checked against `limit`
/// before anything is allocated.
pub fn decompress_block(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let len = snap::raw::decompress_len(data).map_err(|e| CompressionError::Invalid("snappy", e.to_string()))?;
    if len > limit {
        return Err(CompressionError::TooLarge(limit));
    }
    snap::raw::Decoder::new()
        .decompress_vec(data)
        .map_err(|e| CompressionError::Invalid("snappy", e.to_string()))
}

/// `Content-Encoding: snappy` / `grpc-encoding: snappy`: framed or block.
pub fn decompress_any(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    if is_framed(data) {
        decompress_framed(data, limit)
    } else {
        decompress_block(data, limit)
    }
}

/// Compresses the concatenation of `chunks` into a framed stream.
pub fn compress_framed(chunks: &[Bytes]) -> Bytes {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut enc = snap::write::FrameEncoder::new(Vec::with_capacity(total / 2 + 64));
    for c in chunks {
        let _ = enc.write_all(c);
    }
    Bytes::from(enc.into_inner().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_and_block() {
        let data = Bytes::from((0..200_000u32).map(|i| (i % 7) as u8).collect::<Vec<_>>());
        let framed = compress_framed(std::slice::from_ref(&data));
        assert!(is_framed(&framed));
        assert_eq!(decompress_any(&framed, data.len()).unwrap(), data);
        assert!(matches!(
            decompress_any(&framed, 1000),
            Err(CompressionError::TooLarge(1000))
        ));
        let block = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress_any(&block, data.len()).unwrap(), data);
        assert!(matches!(
            decompress_any(&block, 1000),
            Err(CompressionError::TooLarge(1000))
        ));
        assert!(decompress_framed(&block, data.len()).is_err());
        // A block claiming 4 GiB is refused by its header alone.
        assert!(matches!(
            decompress_block(&[0xff, 0xff, 0xff, 0xff, 0x0f], 1 << 20),
            Err(CompressionError::TooLarge(_))
        ));
    }
}
