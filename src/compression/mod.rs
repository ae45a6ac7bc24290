//! Request and export body compression: `gzip`, `zstd`, `snappy` (framed or
//! block), `deflate`/`zlib`, one codec per file. Every decompressor is capped
//! at the size limit (`capped`), so a small bomb cannot exhaust memory; the
//! names are the ones the Collector uses in `compression:`, `Content-Encoding`
//! and `grpc-encoding`.

mod capped;
pub mod gzip;
pub mod snappy;
pub mod zlib;
pub mod zstd;

use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CompressionError {
    #[error("invalid {0} data: {1}")]
    Invalid(&'static str, String),
    #[error("decompressed body exceeds the limit of {0} bytes")]
    TooLarge(usize),
}

/// A body's compression: an exporter's `compression` setting, or what a
/// request's `Content-Encoding` / `grpc-encoding` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    #[default]
    Gzip,
    Zstd,
    /// `snappy`: framed on export (as the Collector); framed or block on receive.
    Snappy,
    /// `x-snappy-framed` (OTLP/HTTP only): always framed.
    SnappyFramed,
    Zlib,
    Deflate,
}

/// What the gRPC receiver and exporter announce in `grpc-accept-encoding`.
pub const GRPC_ACCEPT_ENCODING: &str = "gzip,zstd,snappy,deflate,zlib";

/// What `compression:` accepts, for error messages.
pub const CONFIG_NAMES: &str = "gzip, zstd, snappy, x-snappy-framed, zlib, deflate or none";

impl Compression {
    /// The codec for a `compression:` value (`""` and `none` mean none).
    pub fn from_config(name: &str) -> Option<Compression> {
        Some(match name {
            "" | "none" => Compression::None,
            other => Self::from_token(other.as_bytes())?,
        })
    }

    /// The codec a `Content-Encoding` or `grpc-encoding` token names
    /// (ASCII case-insensitive); `identity` (or nothing) is `None`.
    pub fn from_token(token: &[u8]) -> Option<Compression> {
        let t = token.trim_ascii();
        let is = |s: &str| t.eq_ignore_ascii_case(s.as_bytes());
        Some(if t.is_empty() || is("identity") {
            Compression::None
        } else if is("gzip") || is("x-gzip") {
            Compression::Gzip
        } else if is("zstd") {
            Compression::Zstd
        } else if is("snappy") {
            Compression::Snappy
        } else if is("x-snappy-framed") {
            Compression::SnappyFramed
        } else if is("zlib") {
            Compression::Zlib
        } else if is("deflate") {
            Compression::Deflate
        } else {
            return None;
        })
    }

    /// The header token for this codec (`None` has none).
    pub fn token(self) -> Option<&'static str> {
        Some(match self {
            Compression::None => return None,
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Snappy => "snappy",
            Compression::SnappyFramed => "x-snappy-framed",
            Compression::Zlib => "zlib",
            Compression::Deflate => "deflate",
        })
    }

    /// Decompresses `data`, failing once the output would exceed `limit` bytes.
    pub fn decompress(self, data: &[u8], limit: usize) -> Result<Bytes, CompressionError> {
        let out = match self {
            Compression::None => {
                if data.len() > limit {
                    return Err(CompressionError::TooLarge(limit));
                }
                return Ok(Bytes::copy_from_slice(data));
            }
            Compression::Gzip => gzip::decompress(data, limit)?,
            Compression::Zstd => zstd::decompress(data, limit)?,
            Compression::Snappy => snappy::decompress_any(data, limit)?,
            Compression::SnappyFramed => snappy::decompress_framed(data, limit)?,
            Compression::Zlib | Compression::Deflate => zlib::decompress(data, limit)?,
        };
        Ok(Bytes::from(out))
    }

    /// Compresses the concatenation of `chunks` (`None` concatenates).
    pub fn compress(self, chunks: &[Bytes]) -> Bytes {
        match self {
            Compression::None => chunks.concat().into(),
            Compression::Gzip => gzip::compress(chunks),
            Compression::Zstd => zstd::compress(chunks),
            Compression::Snappy | Compression::SnappyFramed => snappy::compress_framed(chunks),
            Compression::Zlib | Compression::Deflate => zlib::compress(chunks),
        }
    }
}

/// Decompresses gzip `data`, capped at `limit` bytes.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Bytes, CompressionError> {
    gzip::decompress(data, limit).map(Bytes::from)
}

/// Compresses the concatenation of `chunks` with gzip (fast level).
pub fn gzip(chunks: &[Bytes]) -> Bytes {
    gzip::compress(chunks)
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
    fn every_codec_round_trips_and_is_capped() {
        let data = Bytes::from(vec![7u8; 10_000]);
        for c in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Snappy,
            Compression::SnappyFramed,
            Compression::Zlib,
            Compression::Deflate,
        ] {
            let z = c.compress(&[data.slice(..3000), data.slice(3000..)]);
            assert_eq!(c.decompress(&z, 10_000).unwrap(), data, "{c:?}");
            assert!(
                matches!(c.decompress(&z, 9_999), Err(CompressionError::TooLarge(9_999))),
                "{c:?}"
            );
            assert!(c.decompress(b"not compressed", 100).is_err(), "{c:?}");
            assert_eq!(Compression::from_token(c.token().unwrap().as_bytes()), Some(c));
        }
    }

    #[test]
    fn names() {
        assert_eq!(Compression::from_config(""), Some(Compression::None));
        assert_eq!(Compression::from_config("none"), Some(Compression::None));
        assert_eq!(Compression::from_token(b"GZIP"), Some(Compression::Gzip));
        assert_eq!(Compression::from_token(b"identity"), Some(Compression::None));
        assert_eq!(Compression::from_config("lz4"), None);
        assert_eq!(Compression::from_config("br"), None);
    }
}
