//! The one read loop every decompressor uses: output grows by doubling but
//! never past the size limit (plus the one byte that proves it is exceeded),
//! so a bomb costs at most `limit` bytes of memory before it is refused.

use std::io::{ErrorKind, Read};

use super::CompressionError;

/// Reads all of `r`, failing with `TooLarge` once more than `limit` bytes come
/// out. `codec` names the format in errors; `guess` is the first allocation
/// (e.g. a few times the compressed size).
pub fn read_capped<R: Read>(
    mut r: R,
    limit: usize,
    guess: usize,
    codec: &'static str,
) -> Result<Vec<u8>, CompressionError> {
    let hard = limit.saturating_add(1);
    // `buf` is always initialised up to its length; `filled` bytes are output.
    let mut buf: Vec<u8> = vec![0; guess.max(64).min(hard)];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if filled >= hard {
                return Err(CompressionError::TooLarge(limit));
            }
            let grow = buf.len().min(hard - filled);
            buf.reserve_exact(grow);
            buf.resize(filled + grow, 0);
        }
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(CompressionError::Invalid(codec, e.to_string())),
        }
        if filled > limit {
            return Err(CompressionError::TooLarge(limit));
        }
    }
    buf.truncate(filled);
    // The output is charged to the in-flight budget by its length: give back
    // what the doubling growth left unused.
    if buf.capacity() - buf.len() > buf.len() / 8 {
        buf.shrink_to_fit();
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_grows_past_the_limit() {
        let data = vec![1u8; 10_000];
        let out = read_capped(&data[..], 10_000, 10, "t").unwrap();
        assert_eq!(out.len(), 10_000);
        let err = read_capped(std::io::repeat(0), 1000, 10, "t").unwrap_err();
        assert!(matches!(err, CompressionError::TooLarge(1000)));
    }
}
