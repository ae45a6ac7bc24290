//! The `basicauth` extension (the Collector's keys). As a server
//! authenticator (`htpasswd.file` and/or `htpasswd.inline`; inline entries
//! override the file's) it checks `Authorization: Basic base64(user:pass)`
//! against the htpasswd entries; as a client authenticator (`client_auth`:
//! `username`/`password` or `username_file`/`password_file`) it adds that
//! header. Slow hashes (bcrypt, the crypt families) are checked on glommio's
//! blocking pool, not on the shard, and each shard remembers the SHA-256 of
//! the last password that matched per user, so a client pays the hash once,
//! not on every request. Files are read when sluice starts.

use std::{cell::RefCell, collections::HashMap, path::Path};

use base64::Engine;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    authenticator::AuthError,
    htpasswd::{self, PasswordHash},
};
use crate::config::{node::Node, section::Section, ConfigError};

/// `extensions.basicauth[/name]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BasicAuthConfig {
    /// Server side: users and their stored hashes (empty: not a server authenticator).
    pub users: Vec<(String, PasswordHash)>,
    /// Client side: (username, password).
    pub client: Option<(String, String)>,
}

fn read_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(Path::new(path)).map_err(|e| format!("cannot read `{path}`: {e}"))
}

/// Reads the extension's settings; htpasswd and credential files are read now.
pub fn config(node: &Node, path: &str, line: usize) -> Result<BasicAuthConfig, ConfigError> {
    let s = Section::open(node, path, line, &["htpasswd", "client_auth"], &[])?;
    let mut users = Vec::new();
    let has_server = s.get("htpasswd").is_some();
    if has_server {
        let h = s.section("htpasswd", &["file", "inline"], &[])?;
        let mut any = false;
        if let Some(f) = h.string("file")?.filter(|f| !f.is_empty()) {
            let text = read_file(&f).map_err(|m| h.error("file", m))?;
            users = htpasswd::parse(&text).map_err(|e| h.error("file", format!("`{f}` {e}")))?;
            any = true;
        }
        if let Some(inline) = h.string("inline")?.filter(|t| !t.trim().is_empty()) {
            for (u, hash) in htpasswd::parse(&inline).map_err(|e| h.error("inline", e.to_string()))? {
                users.retain(|(x, _)| *x != u);
                users.push((u, hash));
            }
            any = true;
        }
        if !any {
            return Err(s.error("htpasswd", "one of `file` or `inline` is required"));
        }
    }
    let client = if s.get("client_auth").is_some() {
        if has_server {
            return Err(s.error(
                "client_auth",
                "set either `htpasswd` (server) or `client_auth` (client), not both",
            ));
        }
        let c = s.section(
            "client_auth",
            &["username", "password", "username_file", "password_file"],
            &["aws_secrets_manager"],
        )?;
        let from = |key: &str, file_key: &str| -> Result<String, ConfigError> {
            match c.string(file_key)?.filter(|f| !f.is_empty()) {
                Some(f) => Ok(read_file(&f).map_err(|m| c.error(file_key, m))?.trim().to_string()),
                None => Ok(c.string(key)?.unwrap_or_default()),
            }
        };
        let username = from("username", "username_file")?;
        let password = from("password", "password_file")?;
        if username.contains(':') {
            return Err(c.error("username", "must not contain `:`"));
        }
        Some((username, password))
    } else {
        None
    };
    if !has_server && client.is_none() {
        return Err(ConfigError::new(
            path,
            line,
            "one of `htpasswd` (server) or `client_auth` (client) is required",
        ));
    }
    Ok(BasicAuthConfig { users, client })
}

/// The `Authorization` value a client sends.
pub fn client_header((user, pass): &(String, String)) -> (String, String) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    ("authorization".to_string(), format!("Basic {b64}"))
}

/// One shard's server-side checker.
pub struct BasicServer {
    users: HashMap<String, PasswordHash>,
    /// Per user: SHA-256 of the last password that matched.
    verified: RefCell<HashMap<String, [u8; 32]>>,
}

/// (user, password) from an `Authorization: Basic ...` value.
fn parse_basic(v: &[u8]) -> Result<(String, Vec<u8>), AuthError> {
    const PREFIX: &[u8] = b"basic ";
    if v.len() < PREFIX.len() || !v[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return Err(AuthError::Malformed("expected the Basic scheme"));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v[PREFIX.len()..].trim_ascii())
        .map_err(|_| AuthError::Malformed("credentials are not base64"))?;
    let colon = raw
        .iter()
        .position(|&b| b == b':')
        .ok_or(AuthError::Malformed("credentials lack `user:password`"))?;
    let user = String::from_utf8_lossy(&raw[..colon]).into_owned();
    Ok((user, raw[colon + 1..].to_vec()))
}

impl BasicServer {
    pub fn new(c: &BasicAuthConfig) -> BasicServer {
        BasicServer {
            users: c.users.iter().cloned().collect(),
            verified: RefCell::new(HashMap::new()),
        }
    }

    /// Checks a request's headers.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let Some(v) = headers.get(http::header::AUTHORIZATION) else {
            return Err(AuthError::Missing("authorization".to_string()));
        };
        let (user, password) = parse_basic(v.as_bytes())?;
        let Some(hash) = self.users.get(&user) else {
            return Err(AuthError::Invalid);
        };
        let digest: [u8; 32] = Sha256::digest(&password).into();
        if let Some(d) = self.verified.borrow().get(&user) {
            if bool::from(d.ct_eq(&digest)) {
                return Ok(());
            }
        }
        let ok = if hash.is_slow() {
            let h = hash.clone();
            glommio::executor().spawn_blocking(move || h.verify(&password)).await
        } else {
            hash.verify(&password)
        };
        if !ok {
            return Err(AuthError::Invalid);
        }
        self.verified.borrow_mut().insert(user, digest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_parsing() {
        assert_eq!(
            parse_basic(b"Basic dXNlcjpwYTpzcw==").unwrap(),
            ("user".to_string(), b"pa:ss".to_vec())
        );
        assert_eq!(parse_basic(b"basic dXNlcjpwYTpzcw==").unwrap().0, "user".to_string());
        assert!(parse_basic(b"Bearer x").is_err());
        assert!(parse_basic(b"Basic !!!").is_err());
        assert!(parse_basic(b"Basic dXNlcg==").is_err());
        let (_, v) = client_header(&("user".into(), "pa:ss".into()));
        assert_eq!(v, "Basic dXNlcjpwYTpzcw==");
    }
}
