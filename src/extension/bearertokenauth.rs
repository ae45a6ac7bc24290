//! The `bearertokenauth` extension (the Collector's keys: `token`, `tokens`,
//! `filename`, `scheme`, `header`). As a server authenticator it accepts a
//! request whose `header` (default `Authorization`) is exactly
//! `"<scheme> <token>"` for one of the tokens (or the bare token when `scheme`
//! is empty), comparing SHA-256 digests in constant time so neither the
//! content nor the length of a token leaks through timing. With `filename`
//! the tokens (one per line) are re-read when the file changes: each shard
//! looks at the file's modification stamp at most once a second, on the
//! requests it serves, and keeps the last good tokens while the file is
//! unreadable or empty. As a client authenticator it adds the header with the
//! first token, following the file the same way.

use std::{
    cell::{Cell, RefCell},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::authenticator::AuthError;
use crate::config::{node::Node, section::Section, ConfigError};

/// How often a shard looks at a token file for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// `extensions.bearertokenauth[/name]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BearerTokenConfig {
    /// Lower-case header name.
    pub header: String,
    pub scheme: String,
    /// The tokens (from `token`, `tokens` or the file, read at load).
    pub tokens: Vec<String>,
    pub filename: Option<PathBuf>,
}

/// Reads the extension's settings; a `filename` is read now, so a missing or
/// empty file is a configuration error.
pub fn config(node: &Node, path: &str, line: usize) -> Result<BearerTokenConfig, ConfigError> {
    let s = Section::open(
        node,
        path,
        line,
        &["token", "tokens", "filename", "scheme", "header"],
        &[],
    )?;
    let token = s.string("token")?.filter(|t| !t.is_empty());
    let tokens: Vec<String> = s
        .strings("tokens")?
        .unwrap_or_default()
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| !t.is_empty())
        .collect();
    let filename = s.string("filename")?.filter(|f| !f.is_empty()).map(PathBuf::from);
    if token.is_some() && !tokens.is_empty() {
        return Err(s.error("tokens", "set either `token` or `tokens`, not both"));
    }
    let header = s.string("header")?.unwrap_or_else(|| "authorization".to_string());
    if HeaderName::from_bytes(header.as_bytes()).is_err() {
        return Err(s.error("header", format!("`{header}` is not a valid HTTP header name")));
    }
    let scheme = s.string("scheme")?.unwrap_or_else(|| "Bearer".to_string());
    let tokens = match &filename {
        // As in the Collector, the file wins over `token`.
        Some(f) => read_tokens(f).map_err(|m| s.error("filename", m))?,
        None => match token {
            Some(t) => vec![t],
            None if !tokens.is_empty() => tokens,
            None => {
                return Err(ConfigError::new(
                    path,
                    line,
                    "one of `token`, `tokens` or `filename` is required",
                ))
            }
        },
    };
    for t in &tokens {
        if http::HeaderValue::from_str(&expected_value(&scheme, t)).is_err() {
            return Err(ConfigError::new(
                path,
                line,
                "a token holds characters an HTTP header cannot carry",
            ));
        }
    }
    Ok(BearerTokenConfig {
        header: header.to_ascii_lowercase(),
        scheme,
        tokens,
        filename,
    })
}

/// The tokens of a token file: one per line, surrounding blanks trimmed.
pub fn read_tokens(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if tokens.is_empty() {
        return Err(format!("`{}` holds no token", path.display()));
    }
    Ok(tokens)
}

/// The header value a token is sent as.
pub fn expected_value(scheme: &str, token: &str) -> String {
    if scheme.is_empty() {
        token.to_string()
    } else {
        format!("{scheme} {token}")
    }
}

/// The header a client sends: (name, value) with the first token.
pub fn client_header(c: &BearerTokenConfig) -> (String, String) {
    let token = c.tokens.first().map(String::as_str).unwrap_or_default();
    (c.header.clone(), expected_value(&c.scheme, token))
}

/// What identifies a version of the token file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// A watched token file: looked at once a second at most, re-read when its
/// stamp changes; a failing read keeps what was read before.
struct TokenFile {
    path: PathBuf,
    stamp: Cell<Option<Stamp>>,
    next_check: Cell<Instant>,
    failing: Cell<bool>,
}

impl TokenFile {
    fn new(path: &Path) -> TokenFile {
        TokenFile {
            path: path.to_path_buf(),
            stamp: Cell::new(stamp(path)),
            next_check: Cell::new(Instant::now() + RELOAD_CHECK),
            failing: Cell::new(false),
        }
    }

    /// The file's tokens if it changed since the last look.
    fn poll(&self) -> Option<Vec<String>> {
        let now = Instant::now();
        if now < self.next_check.get() {
            return None;
        }
        self.next_check.set(now + RELOAD_CHECK);
        let current = stamp(&self.path);
        if current.is_some() && current == self.stamp.get() {
            return None;
        }
        match read_tokens(&self.path) {
            Ok(tokens) => {
                self.stamp.set(current);
                if self.failing.replace(false) {
                    tracing::info!(file = %self.path.display(), "bearer token file readable again");
                }
                tracing::debug!(file = %self.path.display(), tokens = tokens.len(), "bearer token file re-read");
                Some(tokens)
            }
            Err(e) => {
                // Logged once per failing spell; the last good tokens stay.
                if !self.failing.replace(true) {
                    tracing::warn!(error = %e, "bearer token file unusable; keeping the previous tokens");
                }
                None
            }
        }
    }
}

/// One shard's server-side checker.
pub struct BearerServer {
    header: HeaderName,
    scheme: String,
    /// SHA-256 of each accepted header value.
    digests: RefCell<Vec<[u8; 32]>>,
    file: Option<TokenFile>,
}

fn digests(scheme: &str, tokens: &[String]) -> Vec<[u8; 32]> {
    tokens
        .iter()
        .map(|t| Sha256::digest(expected_value(scheme, t).as_bytes()).into())
        .collect()
}

impl BearerServer {
    pub fn new(c: &BearerTokenConfig) -> BearerServer {
        BearerServer {
            header: HeaderName::from_bytes(c.header.as_bytes()).unwrap_or(http::header::AUTHORIZATION),
            scheme: c.scheme.clone(),
            digests: RefCell::new(digests(&c.scheme, &c.tokens)),
            file: c.filename.as_deref().map(TokenFile::new),
        }
    }

    /// Re-reads the token file if it changed (looked at once a second at most).
    fn refresh(&self) {
        if let Some(tokens) = self.file.as_ref().and_then(TokenFile::poll) {
            *self.digests.borrow_mut() = digests(&self.scheme, &tokens);
        }
    }

    /// Checks a request's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        self.refresh();
        let Some(v) = headers.get(&self.header) else {
            return Err(AuthError::Missing(self.header.to_string()));
        };
        let d: [u8; 32] = Sha256::digest(v.as_bytes()).into();
        let mut ok = subtle::Choice::from(0);
        for e in self.digests.borrow().iter() {
            ok |= d.ct_eq(e);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

/// An exporter's token from a `filename`, kept current: the header it sets
/// follows the file as the server side does.
pub struct ClientToken {
    header: HeaderName,
    scheme: String,
    value: RefCell<HeaderValue>,
    file: TokenFile,
}

impl ClientToken {
    /// `None` unless the extension reads its token from a file.
    pub fn new(c: &BearerTokenConfig) -> Option<ClientToken> {
        let (name, value) = client_header(c);
        Some(ClientToken {
            header: HeaderName::from_bytes(name.as_bytes()).ok()?,
            scheme: c.scheme.clone(),
            value: RefCell::new(HeaderValue::from_str(&value).ok()?),
            file: TokenFile::new(c.filename.as_deref()?),
        })
    }

    /// Sets the current token on a request's headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(tokens) = self.file.poll() {
            let first = tokens.first().map(String::as_str).unwrap_or_default();
            match HeaderValue::from_str(&expected_value(&self.scheme, first)) {
                Ok(v) => *self.value.borrow_mut() = v,
                Err(_) => {
                    tracing::warn!("the new bearer token holds characters a header cannot carry; keeping the old one")
                }
            }
        }
        headers.insert(self.header.clone(), self.value.borrow().clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn exact_scheme_and_token() {
        let c = BearerTokenConfig {
            header: "authorization".into(),
            scheme: "Bearer".into(),
            tokens: vec!["abc".into(), "def".into()],
            filename: None,
        };
        let s = BearerServer::new(&c);
        assert!(s.check(&headers("Bearer abc")).is_ok());
        assert!(s.check(&headers("Bearer def")).is_ok());
        assert!(matches!(s.check(&headers("Bearer abd")), Err(AuthError::Invalid)));
        assert!(matches!(s.check(&headers("bearer abc")), Err(AuthError::Invalid)));
        assert!(matches!(s.check(&headers("abc")), Err(AuthError::Invalid)));
        assert!(matches!(s.check(&HeaderMap::new()), Err(AuthError::Missing(_))));
        let bare = BearerServer::new(&BearerTokenConfig {
            scheme: String::new(),
            ..c
        });
        assert!(bare.check(&headers("abc")).is_ok());
    }
}
