//! gzip (RFC 1952): every member of a multi-member stream is read, as Go's
//! reader does; exports use the fast level.

use std::io::Write;

use bytes::Bytes;

use super::{capped::read_capped, CompressionError};

/// Decompresses gzip `data`, failing once the output would exceed `limit` bytes.
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    read_capped(flate2::read::MultiGzDecoder::new(data), limit, data.len() * 4, "gzip")
}

/// Compresses the concatenation of `chunks`.
pub fn compress(chunks: &[Bytes]) -> Bytes {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(total / 4 + 64), flate2::Compression::fast());
    for c in chunks {
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(c);
    }
    Bytes::from(enc.finish().unwrap_or_default())
}
