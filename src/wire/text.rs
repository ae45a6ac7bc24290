//! UTF-8 checks for the short strings OTLP is made of (names, attribute
//! keys and values), shared by receive-time validation and the views
//! processors read fields through.
//!
//! Why not only `std::str::from_utf8`: its setup (alignment, a byte loop
//! until a word boundary) costs more than the whole check on a 10-byte
//! ASCII name, and nearly every string is that. ASCII is checked a word at a
//! time first, the general validator runs only on the rest.

/// Whether `b` is UTF-8: ASCII a word at a time first (keys, names and most
/// values are short and ASCII, where the general validator's setup costs
/// more than the check).
#[inline(always)]
pub fn utf8(b: &[u8]) -> bool {
    ascii(b) || std::str::from_utf8(b).is_ok()
}

/// Whether every byte of `b` is below 0x80: whole words, the tail as one
/// more (overlapping) word, so a short key costs two or three loads and no
/// byte loop.
#[inline(always)]
pub fn ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = b.len();
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0x80; 8]));
    if n >= 8 {
        // The last word covers the tail, so the loop stops short of it.
        let mut acc = word(n - 8);
        let mut i = 0;
        while i + 8 < n {
            acc |= word(i);
            i += 8;
        }
        acc & HIGH == 0
    } else if n >= 4 {
        let half = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0x80; 4]));
        (half(0) | half(n - 4)) & HIGH as u32 == 0
    } else {
        b.iter().fold(0u8, |acc, &x| acc | x) < 0x80
    }
}

/// `b` as a `&str` when it is UTF-8 (the ASCII check first).
#[inline(always)]
pub fn as_str(b: &[u8]) -> Option<&str> {
    if ascii(b) {
        // SAFETY: every byte is below 0x80, and ASCII is UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_std() {
        let mut cases: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), "é".into(), b"\xff".to_vec()];
        for n in 0..40 {
            let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            cases.push(base.clone());
            for i in 0..n {
                for x in [0x7fu8, 0x80, 0xc3, 0xff] {
                    let mut m = base.clone();
                    m[i] = x;
                    cases.push(m);
                }
            }
        }
        for c in cases {
            let std = std::str::from_utf8(&c).ok();
            assert_eq!(as_str(&c), std, "{c:02x?}");
            assert_eq!(utf8(&c), std.is_some(), "{c:02x?}");
            assert_eq!(ascii(&c), c.iter().all(|&b| b < 0x80), "{c:02x?}");
        }
    }
}
