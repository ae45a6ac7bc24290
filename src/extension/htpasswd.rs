//! htpasswd entries and the password hashes the Collector's `basicauth`
//! accepts (it uses go-htpasswd's default systems): bcrypt (`$2a$`, `$2b$`,
//! `$2y$`), MD5-crypt (`$1$`) and Apache's APR1 (`$apr1$`), SHA-crypt
//! (`$5$` SHA-256, `$6$` SHA-512), `{SHA}` (base64 SHA-1), `{SSHA}` (salted
//! SHA-1) and, for anything else, plain text. Every comparison of a computed
//! hash with the stored one is constant-time.

use base64::Engine;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HtpasswdError {
    #[error("line {0}: expected `user:hash`")]
    NoColon(usize),
    #[error("line {0}: the user name is empty")]
    NoUser(usize),
    #[error("line {0}: {1}")]
    BadHash(usize, String),
}

/// A stored password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordHash {
    Bcrypt(String),
    /// `$1$` or `$apr1$`: magic, salt and the full stored string.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        full: String,
    },
    ShaCrypt(String),
    /// `{SHA}`: the SHA-1 digest.
    Sha([u8; 20]),
    /// `{SSHA}`: SHA-1 digest of password + salt, and the salt.
    Ssha([u8; 20], Vec<u8>),
    /// Plain text, kept as its SHA-256 so comparisons are length-blind.
    Plain([u8; 32]),
}

impl PasswordHash {
    /// Classifies a stored hash as go-htpasswd does (plain text last).
    pub fn parse(h: &str) -> Result<PasswordHash, String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        if h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$") || h.starts_with("$2x$") {
            return Ok(PasswordHash::Bcrypt(h.to_string()));
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = h.strip_prefix(magic) {
                let (salt, _) = rest
                    .split_once('$')
                    .ok_or_else(|| format!("`{magic}` hash without `$` after its salt"))?;
                return Ok(PasswordHash::Md5Crypt {
                    magic: if magic == "$1$" { "$1$" } else { "$apr1$" },
                    salt: salt.chars().take(8).collect(),
                    full: h.to_string(),
                });
            }
        }
        if h.starts_with("$5$") || h.starts_with("$6$") {
            return Ok(PasswordHash::ShaCrypt(h.to_string()));
        }
        if let Some(rest) = h.strip_prefix("{SHA}") {
            let d = b64
                .decode(rest)
                .map_err(|e| format!("{{SHA}} hash is not base64: {e}"))?;
            let d: [u8; 20] = d.try_into().map_err(|_| "{SHA} hash is not 20 bytes".to_string())?;
            return Ok(PasswordHash::Sha(d));
        }
        if let Some(rest) = h.strip_prefix("{SSHA}") {
            let d = b64
                .decode(rest)
                .map_err(|e| format!("{{SSHA}} hash is not base64: {e}"))?;
            if d.len() < 20 {
                return Err("{SSHA} hash is shorter than 20 bytes".to_string());
            }
            let (digest, salt) = d.split_at(20);
            return Ok(PasswordHash::Ssha(digest.try_into().unwrap_or([0; 20]), salt.to_vec()));
        }
        Ok(PasswordHash::Plain(Sha256::digest(h.as_bytes()).into()))
    }

    /// Whether checking this hash costs enough CPU (bcrypt, the crypt
    /// families) to be run off the shard.
    pub fn is_slow(&self) -> bool {
        matches!(
            self,
            PasswordHash::Bcrypt(_) | PasswordHash::Md5Crypt { .. } | PasswordHash::ShaCrypt(_)
        )
    }

    /// Whether `password` matches.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::Md5Crypt { magic, salt, full } => bool::from(
                md5_crypt(password, salt.as_bytes(), magic)
                    .as_bytes()
                    .ct_eq(full.as_bytes()),
            ),
            PasswordHash::ShaCrypt(h) => match std::str::from_utf8(password) {
                Ok(p) if h.starts_with("$5$") => sha_crypt::sha256_check(p, h).is_ok(),
                Ok(p) => sha_crypt::sha512_check(p, h).is_ok(),
                Err(_) => false,
            },
            PasswordHash::Sha(d) => bool::from(Sha1::digest(password).as_slice().ct_eq(d)),
            PasswordHash::Ssha(d, salt) => {
                let mut h = Sha1::new();
                h.update(password);
                h.update(salt);
                bool::from(h.finalize().as_slice().ct_eq(d))
            }
            PasswordHash::Plain(d) => bool::from(Sha256::digest(password).as_slice().ct_eq(d)),
        }
    }
}

/// Parses htpasswd text: `user:hash` lines; blank lines and `#` comments are
/// skipped. A later line for the same user replaces an earlier one.
pub fn parse(text: &str) -> Result<Vec<(String, PasswordHash)>, HtpasswdError> {
    let mut out: Vec<(String, PasswordHash)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line.split_once(':').ok_or(HtpasswdError::NoColon(n))?;
        if user.is_empty() {
            return Err(HtpasswdError::NoUser(n));
        }
        let hash = PasswordHash::parse(hash).map_err(|m| HtpasswdError::BadHash(n, m))?;
        out.retain(|(u, _)| u != user);
        out.push((user.to_string(), hash));
    }
    Ok(out)
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// MD5-crypt (Poul-Henning Kamp's algorithm; `$apr1$` differs only in its
/// magic string). Returns the full `magic salt $ hash` string.
pub fn md5_crypt(password: &[u8], salt: &[u8], magic: &str) -> String {
    let salt = &salt[..salt.len().min(8)];
    let alt = {
        let mut h = Md5::new();
        h.update(password);
        h.update(salt);
        h.update(password);
        h.finalize()
    };
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic.as_bytes());
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 != 0 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for r in 0..1000 {
        let mut c = Md5::new();
        if r & 1 != 0 {
            c.update(password);
        } else {
            c.update(fin.as_slice());
        }
        if r % 3 != 0 {
            c.update(salt);
        }
        if r % 7 != 0 {
            c.update(password);
        }
        if r & 1 != 0 {
            c.update(fin.as_slice());
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(magic);
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        to64(
            (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]),
            4,
        );
    }
    to64(u32::from(fin[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl passwd` and Python's hashlib / bcrypt.
    const FILE: &str = "\
# comment
apr:$apr1$r31....$dhPoAZvhBuMYasixWNQuZ.
md5:$1$saltsalt$cCPENxTVtU4kpnV2ngztX0
s256:$5$saltsalt$.digiXwxhvYVrb/FNdOQ9wLEnyeJBxCYdWqgAfv1Q14
s512:$6$saltsalt$awCebqku9CrpKdT5uV6Y81ajkFzqoFolpAr4Ug.zIKXmfkMmOBquFLhmvEyr.2GYgTDY5xDLx/KvF8ezwi7cF/
sha:{SHA}z0jT3TdveclVlHs5WCpg5cPeIe8=
ssha:{SSHA}N9MLVq4QO0KnTwqHMu1rwiVKXONOYUNsMTIzNA==
bc:$2y$04$9JXjrpjEMF7UBl7NhZ4uGO5Gfc2ouBjZLdnmWzIekLaAj6znv5dpW
plain:plainpass
";

    #[test]
    fn every_format_verifies() {
        let users = parse(FILE).unwrap();
        let pw = [
            ("apr", "apr1pass"),
            ("md5", "md5pass"),
            ("s256", "sha256pass"),
            ("s512", "sha512pass"),
            ("sha", "shapass"),
            ("ssha", "sshapass"),
            ("bc", "bcryptpass"),
            ("plain", "plainpass"),
        ];
        assert_eq!(users.len(), pw.len());
        for (user, pass) in pw {
            let h = &users.iter().find(|(u, _)| u == user).unwrap().1;
            assert!(h.verify(pass.as_bytes()), "{user}");
            assert!(!h.verify(b"wrong"), "{user}");
            assert!(!h.verify(format!("{pass}x").as_bytes()), "{user}");
        }
    }

    #[test]
    fn bad_lines_and_overrides() {
        assert_eq!(parse("nocolon").unwrap_err(), HtpasswdError::NoColon(1));
        assert_eq!(parse("\n:x").unwrap_err(), HtpasswdError::NoUser(2));
        assert!(matches!(parse("u:{SHA}!!").unwrap_err(), HtpasswdError::BadHash(1, _)));
        let u = parse("a:one\na:two").unwrap();
        assert_eq!(u.len(), 1);
        assert!(u[0].1.verify(b"two"));
    }
}
