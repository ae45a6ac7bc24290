//! The exporter side of TLS: a rustls client config built from an exporter's
//! `tls` section (trust: `ca_file`/`ca_pem`, else the machine's roots;
//! `cert_file`/`key_file` for mTLS; `insecure_skip_verify`;
//! `server_name_override`; versions and suites) and the handshake over a
//! glommio socket on the exporting shard.

use std::sync::Arc;

use glommio::net::TcpStream;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{
    config::TlsClientConfig,
    material::{self, section_error},
    stream::Stream,
};
use crate::config::ConfigError;

/// ALPN for gRPC exporters.
pub const ALPN_H2: &[&[u8]] = &[b"h2"];
/// ALPN for OTLP/HTTP exporters.
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// How an exporter opens TLS connections.
#[derive(Clone)]
pub struct Connector {
    config: Arc<ClientConfig>,
    /// `server_name_override`, else the endpoint's host is used.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .field("alpn", &self.config.alpn_protocols)
            .finish()
    }
}

impl Connector {
    /// Reads the trust roots and client certificate and builds the config.
    pub fn new(c: &TlsClientConfig, alpn: &[&[u8]]) -> Result<Connector, ConfigError> {
        let common = &c.common;
        let provider = material::provider(common);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&material::versions(common))
            .map_err(|e| section_error(common, format!("unusable versions / cipher suites: {e}")))?;
        let builder = if c.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
        } else {
            let roots = match &common.ca {
                Some(src) => {
                    let mut roots = material::roots(src, &material::read(src)?)?;
                    if common.include_system_ca_certs_pool {
                        let system = material::system_roots().map_err(|m| section_error(common, m))?;
                        roots.roots.extend(system.roots);
                    }
                    roots
                }
                None => material::system_roots().map_err(|m| section_error(common, m))?,
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match (&common.cert, &common.key) {
            (Some(cert), Some(key)) => {
                let certs = material::certs(cert, &material::read(cert)?)?;
                let k = material::key(key, &material::read(key)?)?;
                builder
                    .with_client_auth_cert(certs, k)
                    .map_err(|e| key.error(format!("does not go with the certificate: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let server_name = match &c.server_name_override {
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|_| section_error(common, format!("invalid server_name_override `{n}`")))?,
            ),
            None => None,
        };
        Ok(Connector {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Runs the client handshake on `tcp` for `host` (the endpoint's host,
    /// unless `server_name_override` is set).
    pub async fn handshake(&self, tcp: TcpStream, host: &str) -> Result<Stream, String> {
        let _ = tcp.set_nodelay(true);
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let h = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(h.to_string()).map_err(|_| format!("`{h}` is not a valid TLS server name"))?
            }
        };
        futures_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map(|s| Stream::Client(Box::new(s)))
            .map_err(|e| format!("TLS handshake: {e}"))
    }
}

/// `insecure_skip_verify`: any certificate is accepted; the handshake
/// signatures are still checked (the peer holds the certificate's key).
#[derive(Debug)]
struct AnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
