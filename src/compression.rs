//! gzip for request and export bodies, with a cap on decompressed size so a
//! small bomb cannot exhaust memory.

use std::io::{Read, Write};

use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CompressionError {
    #[error("invalid gzip data: {0}")]
    Invalid(std::io::Error),
    #[error("decompressed body exceeds the limit of {0} bytes")]
    TooLarge(usize),
}

/// Decompresses gzip `data` (every member of a multi-member stream, as Go's
/// reader does), failing once the output would exceed `limit` bytes.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Bytes, CompressionError> {
    let mut out = Vec::with_capacity((data.len() * 4).min(limit.saturating_add(1)));
    let mut dec = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    dec.read_to_end(&mut out).map_err(CompressionError::Invalid)?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge(limit));
    }
    // The output is charged to the in-flight budget by its length: give back
    // what the doubling growth left unused.
    if out.capacity() - out.len() > out.len() / 8 {
        out.shrink_to_fit();
    }
    Ok(Bytes::from(out))
}

/// Compresses the concatenation of `chunks` with gzip (fast level: export path).
pub fn gzip(chunks: &[Bytes]) -> Bytes {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(total / 4 + 64), flate2::Compression::fast());
    for c in chunks {
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(c);
    }
    Bytes::from(enc.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_member_of_a_multi_member_stream() {
        let mut data = gzip(&[Bytes::from_static(b"first ")]).to_vec();
        data.extend_from_slice(&gzip(&[Bytes::from_static(b"second")]));
        assert_eq!(&gunzip(&data, 100).unwrap()[..], b"first second");
        assert!(matches!(gunzip(&data, 8), Err(CompressionError::TooLarge(8))));
    }

    #[test]
    fn round_trip_and_cap() {
        let data = Bytes::from(vec![7u8; 10_000]);
        let z = gzip(std::slice::from_ref(&data));
        assert_eq!(gunzip(&z, 10_000).unwrap(), data);
        assert!(matches!(gunzip(&z, 9_999), Err(CompressionError::TooLarge(9_999))));
        assert!(matches!(gunzip(b"not gzip", 100), Err(CompressionError::Invalid(_))));
    }
}
