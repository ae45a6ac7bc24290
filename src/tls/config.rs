//! The Collector's `tls` settings (its `configtls` package) as sluice reads
//! them: the server side under `receivers.otlp.protocols.{grpc,http}.tls`,
//! the client side under `exporters.{otlp,otlphttp}.tls`. Only the keys and
//! values are checked here; certificate files are read when sluice starts
//! (`tls::check`), so `sluice validate` works on a machine without them.
//! Each PEM source keeps its dotted key and line for the errors then.

use std::{path::PathBuf, time::Duration};

use crate::config::{
    section::{list, Section},
    ConfigError,
};

/// Where a PEM block comes from, and the key that named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pem {
    pub source: PemSource,
    /// Dotted key path (e.g. `receivers.otlp.protocols.grpc.tls.cert_file`).
    pub key: String,
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    Inline(String),
}

impl Pem {
    /// An error about this source, rendered as config errors are.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.key, self.line, message)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V12,
    V13,
}

impl TlsVersion {
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::V12 => "1.2",
            TlsVersion::V13 => "1.3",
        }
    }
}

/// What servers and clients share (the Collector's `configtls.Config`).
#[derive(Clone, Debug, PartialEq)]
pub struct TlsCommon {
    /// `ca_file` / `ca_pem`: a client verifies the server with it (a server
    /// ignores it, as the Collector does; `client_ca_file` is the server's).
    pub ca: Option<Pem>,
    pub cert: Option<Pem>,
    pub key: Option<Pem>,
    /// Also trust the machine's roots when `ca_file` is set.
    pub include_system_ca_certs_pool: bool,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// The Collector's (Go's) cipher suite names; empty = rustls' defaults.
    pub cipher_suites: Vec<(String, usize)>,
    /// Re-read the certificate files this often; zero = never.
    pub reload_interval: Duration,
    /// Dotted path and line of the `tls` section, for messages.
    pub path: String,
    pub line: usize,
}

/// `receivers.otlp.protocols.*.tls`.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsServerConfig {
    pub common: TlsCommon,
    /// Clients must present a certificate signed by one of these (mTLS).
    pub client_ca: Option<Pem>,
    /// Re-read `client_ca_file` when the certificates are reloaded.
    pub client_ca_file_reload: bool,
}

/// `exporters.*.tls`.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsClientConfig {
    pub common: TlsCommon,
    /// Plaintext for a bare `host:port` gRPC endpoint.
    pub insecure: bool,
    /// Accept any server certificate (the handshake still checks signatures).
    pub insecure_skip_verify: bool,
    /// The name the server certificate is checked against (and sent as SNI).
    pub server_name_override: Option<String>,
}

const COMMON_KEYS: &[&str] = &[
    "ca_file",
    "ca_pem",
    "cert_file",
    "cert_pem",
    "key_file",
    "key_pem",
    "include_system_ca_certs_pool",
    "min_version",
    "max_version",
    "cipher_suites",
    "reload_interval",
];
const SERVER_KEYS: &[&str] = &["client_ca_file", "client_ca_file_reload"];
const CLIENT_KEYS: &[&str] = &["insecure", "insecure_skip_verify", "server_name_override"];
const UNSUPPORTED: &[&str] = &["curve_preferences", "tpm"];

/// The cipher suites the Collector accepts by name that rustls implements:
/// Go's name, rustls' name. TLS 1.3 suites are named as in Go.
pub const CIPHER_SUITES: &[(&str, &str)] = &[
    ("TLS_AES_128_GCM_SHA256", "TLS13_AES_128_GCM_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS13_AES_256_GCM_SHA384"),
    ("TLS_CHACHA20_POLY1305_SHA256", "TLS13_CHACHA20_POLY1305_SHA256"),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// Suites Go knows that rustls does not offer (CBC, RSA key exchange, RC4, 3DES).
fn known_insecure(name: &str) -> bool {
    name.starts_with("TLS_RSA_")
        || name.contains("_CBC_")
        || name.contains("_RC4_")
        || name.contains("3DES")
        || name.starts_with("TLS_ECDHE_") && name.ends_with("_CBC_SHA")
}

/// Reads `parent.tls` as a receiver's: `None` when the key is absent.
pub fn server(parent: &Section<'_>) -> Result<Option<TlsServerConfig>, ConfigError> {
    if parent.get("tls").is_none() {
        return Ok(None);
    }
    let keys: Vec<&str> = COMMON_KEYS.iter().chain(SERVER_KEYS).copied().collect();
    let s = parent.section("tls", &keys, UNSUPPORTED)?;
    let common = common(&s)?;
    if common.cert.is_none() || common.key.is_none() {
        let missing = if common.cert.is_none() { "cert_file" } else { "key_file" };
        return Err(s.error(
            missing,
            "a TLS receiver needs a certificate and its key: set `cert_file` and `key_file` (or `cert_pem` and `key_pem`)",
        ));
    }
    let client_ca = s.string("client_ca_file")?.map(|p| file(&s, "client_ca_file", p));
    let client_ca = match client_ca {
        Some(Err(e)) => return Err(e),
        Some(Ok(p)) => Some(p),
        None => None,
    };
    Ok(Some(TlsServerConfig {
        common,
        client_ca,
        client_ca_file_reload: s.bool("client_ca_file_reload")?.unwrap_or(false),
    }))
}

/// Reads `parent.tls` as an exporter's (absent = all defaults).
pub fn client(parent: &Section<'_>) -> Result<TlsClientConfig, ConfigError> {
    let keys: Vec<&str> = COMMON_KEYS.iter().chain(CLIENT_KEYS).copied().collect();
    let s = parent.section("tls", &keys, UNSUPPORTED)?;
    let common = common(&s)?;
    if common.cert.is_some() != common.key.is_some() {
        let missing = if common.cert.is_none() { "cert_file" } else { "key_file" };
        return Err(s.error(
            missing,
            "a client certificate needs its key: set both `cert_file` and `key_file` (or neither)",
        ));
    }
    if !common.reload_interval.is_zero() {
        return Err(s.error(
            "reload_interval",
            "is not yet supported by sluice on exporters (client certificates are read at start)",
        ));
    }
    let server_name_override = s.string("server_name_override")?.filter(|n| !n.is_empty());
    if let Some(n) = &server_name_override {
        if rustls_pki_types::ServerName::try_from(n.as_str()).is_err() {
            return Err(s.error(
                "server_name_override",
                format!("`{n}` is not a valid DNS name or IP address"),
            ));
        }
    }
    Ok(TlsClientConfig {
        common,
        insecure: s.bool("insecure")?.unwrap_or(false),
        insecure_skip_verify: s.bool("insecure_skip_verify")?.unwrap_or(false),
        server_name_override,
    })
}

fn file(s: &Section<'_>, key: &str, path: String) -> Result<Pem, ConfigError> {
    if path.trim().is_empty() {
        return Err(s.error(key, "must not be empty"));
    }
    Ok(Pem {
        source: PemSource::File(PathBuf::from(path)),
        key: s.child(key),
        line: s.key(key).map_or(s.line, |k| k.line),
    })
}

/// `<what>_file` or `<what>_pem`, not both.
fn pem(s: &Section<'_>, what: &str) -> Result<Option<Pem>, ConfigError> {
    let (fk, pk) = (format!("{what}_file"), format!("{what}_pem"));
    let f = s.string(&fk)?.filter(|v| !v.is_empty());
    let p = s.string(&pk)?.filter(|v| !v.is_empty());
    match (f, p) {
        (Some(_), Some(_)) => Err(s.error(&pk, format!("set either `{fk}` or `{pk}`, not both"))),
        (Some(path), None) => file(s, &fk, path).map(Some),
        (None, Some(text)) => Ok(Some(Pem {
            source: PemSource::Inline(text),
            key: s.child(&pk),
            line: s.key(&pk).map_or(s.line, |k| k.line),
        })),
        (None, None) => Ok(None),
    }
}

fn version(s: &Section<'_>, key: &str) -> Result<Option<TlsVersion>, ConfigError> {
    let Some(v) = s.string(key)? else {
        return Ok(None);
    };
    match v.trim() {
        "" => Ok(None),
        "1.2" => Ok(Some(TlsVersion::V12)),
        "1.3" => Ok(Some(TlsVersion::V13)),
        "1.0" | "1.1" => Err(s.error(
            key,
            format!("TLS {v} is not supported (insecure; sluice speaks TLS 1.2 and 1.3)"),
        )),
        other => Err(s.error(key, format!("unknown TLS version `{other}` (use `1.2` or `1.3`)"))),
    }
}

fn common(s: &Section<'_>) -> Result<TlsCommon, ConfigError> {
    let min_version = version(s, "min_version")?.unwrap_or(TlsVersion::V12);
    let max_version = version(s, "max_version")?.unwrap_or(TlsVersion::V13);
    if max_version < min_version {
        return Err(s.error(
            "max_version",
            format!(
                "must not be below min_version ({}), found {}",
                min_version.name(),
                max_version.name()
            ),
        ));
    }
    let cipher_suites = s.strings("cipher_suites")?.unwrap_or_default();
    for (name, line) in &cipher_suites {
        if CIPHER_SUITES.iter().any(|(go, _)| go == name) {
            continue;
        }
        let message = if known_insecure(name) {
            format!("cipher suite `{name}` is not offered by sluice (rustls has no CBC, RSA key exchange, RC4 or 3DES suites)")
        } else {
            let names: Vec<&str> = CIPHER_SUITES.iter().map(|(go, _)| *go).collect();
            format!("unknown cipher suite `{name}` (use {})", list(&names))
        };
        return Err(ConfigError::new(s.child("cipher_suites"), *line, message));
    }
    Ok(TlsCommon {
        ca: pem(s, "ca")?,
        cert: pem(s, "cert")?,
        key: pem(s, "key")?,
        include_system_ca_certs_pool: s.bool("include_system_ca_certs_pool")?.unwrap_or(false),
        min_version,
        max_version,
        cipher_suites,
        reload_interval: s.duration("reload_interval")?.unwrap_or(Duration::ZERO),
        path: s.path.clone(),
        line: s.line,
    })
}
