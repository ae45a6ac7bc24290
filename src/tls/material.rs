//! Certificates, private keys and trust roots read from PEM (a file or the
//! text inline in the config), and the rustls crypto provider (ring) and
//! protocol versions a `tls` section asks for. Every error names the key
//! (and line) the PEM came from.

use std::sync::Arc;

use rustls::{crypto::CryptoProvider, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use super::config::{Pem, PemSource, TlsCommon, TlsVersion, CIPHER_SUITES};
use crate::config::ConfigError;

/// The bytes of a PEM source (files are read now).
pub fn read(p: &Pem) -> Result<Vec<u8>, ConfigError> {
    match &p.source {
        PemSource::Inline(text) => Ok(text.as_bytes().to_vec()),
        PemSource::File(path) => {
            std::fs::read(path).map_err(|e| p.error(format!("cannot read `{}`: {e}", path.display())))
        }
    }
}

/// Where a PEM came from, for messages: the file, or "the inline PEM".
fn origin(p: &Pem) -> String {
    match &p.source {
        PemSource::File(path) => format!("`{}`", path.display()),
        PemSource::Inline(_) => "the inline PEM".to_string(),
    }
}

/// The certificates (a chain, leaf first) in `bytes`.
pub fn certs(p: &Pem, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| p.error(format!("{} is not valid PEM: {e}", origin(p))))?;
    if certs.is_empty() {
        return Err(p.error(format!("{} holds no `BEGIN CERTIFICATE` block", origin(p))));
    }
    Ok(certs)
}

/// The private key (PKCS#8, PKCS#1 or SEC1) in `bytes`.
pub fn key(p: &Pem, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| p.error(format!("{} holds no usable private key: {e}", origin(p))))
}

/// A trust store from the certificates in `bytes`.
pub fn roots(p: &Pem, bytes: &[u8]) -> Result<RootCertStore, ConfigError> {
    let mut store = RootCertStore::empty();
    for c in certs(p, bytes)? {
        store
            .add(c)
            .map_err(|e| p.error(format!("{}: not a usable CA certificate: {e}", origin(p))))?;
    }
    Ok(store)
}

/// The machine's trust roots (the system bundle; `SSL_CERT_FILE` /
/// `SSL_CERT_DIR` override it, as for OpenSSL).
pub fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), ToString::to_string);
        return Err(format!(
            "no system CA certificates could be read ({why}); set `ca_file`, or install the system CA bundle"
        ));
    }
    Ok(store)
}

/// The ring provider, its suites narrowed to `cipher_suites` when set. As in
/// Go, the list governs TLS 1.2; TLS 1.3 suites stay unless some are listed.
pub fn provider(c: &TlsCommon) -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    if !c.cipher_suites.is_empty() {
        let wanted: Vec<&str> = c
            .cipher_suites
            .iter()
            .filter_map(|(go, _)| CIPHER_SUITES.iter().find(|(g, _)| g == go).map(|(_, r)| *r))
            .collect();
        let any13 = wanted.iter().any(|n| n.starts_with("TLS13_"));
        p.cipher_suites.retain(|s| {
            let name = s.suite().as_str().unwrap_or_default();
            let is13 = name.starts_with("TLS13_");
            (is13 && !any13) || wanted.contains(&name)
        });
    }
    Arc::new(p)
}

/// The protocol versions between `min_version` and `max_version`.
pub fn versions(c: &TlsCommon) -> Vec<&'static SupportedProtocolVersion> {
    let mut v = Vec::new();
    if c.min_version <= TlsVersion::V12 && c.max_version >= TlsVersion::V12 {
        v.push(&rustls::version::TLS12);
    }
    if c.max_version >= TlsVersion::V13 {
        v.push(&rustls::version::TLS13);
    }
    v
}

/// An error about the `tls` section itself (not one of its PEMs).
pub fn section_error(c: &TlsCommon, message: impl Into<String>) -> ConfigError {
    ConfigError::new(&c.path, c.line, message)
}
