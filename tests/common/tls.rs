//! TLS test material and peers: CAs and certificates made with rcgen when a
//! test runs (never committed), written as PEM files; a TLS OTLP/gRPC
//! backend (tonic) that can require client certificates; a TLS OTLP/HTTP
//! backend (tokio-rustls + hyper); and a TLS HTTP client (tokio-rustls +
//! hyper) that reports how its handshake and requests went.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use super::free_port;

/// A certificate authority.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub pem: String,
}

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// The certificate's DER (to compare with what a peer presented).
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let pem = cert.pem();
        Ca { cert, key, pem }
    }

    /// A certificate for `localhost` and 127.0.0.1 (server and client use).
    pub fn leaf(&self, cn: &str) -> Leaf {
        self.issue(cn, &["localhost", "127.0.0.1"], false)
    }

    /// A certificate for the names `sans` only.
    pub fn leaf_for(&self, cn: &str, sans: &[&str]) -> Leaf {
        self.issue(cn, sans, false)
    }

    /// Like `leaf`, valid only during 2020.
    pub fn expired_leaf(&self, cn: &str) -> Leaf {
        self.issue(cn, &["localhost", "127.0.0.1"], true)
    }

    fn issue(&self, cn: &str, sans: &[&str], expired: bool) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// `text` as a YAML block scalar (`|`) for a key indented by `indent` spaces.
pub fn yaml_block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent + 2);
    let lines: Vec<String> = text.lines().map(|l| format!("{pad}{l}")).collect();
    format!("|\n{}", lines.join("\n"))
}

/// Writes `text` to `dir/name` atomically (write, then rename over).
pub fn write_pem(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client config trusting `ca_pem`, presenting `identity` if given,
/// offering `alpn`.
pub fn client_config(ca_pem: &str, identity: Option<&Leaf>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    client_config_versions(ca_pem, identity, alpn, rustls::DEFAULT_VERSIONS)
}

/// Like `client_config`, speaking only `versions`.
pub fn client_config_versions(
    ca_pem: &str,
    identity: Option<&Leaf>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    client_config_with(ca_pem, identity, alpn, versions, provider())
}

/// A TLS 1.2 client offering only the cipher suite named `suite` (rustls' name).
pub fn client_config_tls12_suite(ca_pem: &str, identity: Option<&Leaf>, suite: &str) -> Arc<rustls::ClientConfig> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.retain(|s| s.suite().as_str() == Some(suite));
    assert_eq!(p.cipher_suites.len(), 1, "no suite {suite}");
    client_config_with(
        ca_pem,
        identity,
        &[b"http/1.1"],
        &[&rustls::version::TLS12],
        Arc::new(p),
    )
}

fn client_config_with(
    ca_pem: &str,
    identity: Option<&Leaf>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some(l) => b
            .with_client_auth_cert(
                vec![l.der()],
                PrivateKeyDer::from_pem_slice(l.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// One TLS HTTP/1.1 connection (keep-alive) to a sluice receiver.
pub struct TlsHttpConn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The certificate the server presented.
    pub server_cert: CertificateDer<'static>,
    /// The ALPN protocol agreed on.
    pub alpn: Option<Vec<u8>>,
    addr: SocketAddr,
}

impl TlsHttpConn {
    /// Connects and completes the TLS handshake (client side). With TLS 1.3
    /// a server that refuses the client's certificate says so only on the
    /// first read, so a refusal may show in `post` instead.
    pub async fn connect(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Result<TlsHttpConn, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
        )
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
        let (_, conn) = tls.get_ref();
        let server_cert = conn.peer_certificates().expect("server certificate")[0]
            .clone()
            .into_owned();
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let (send, driver) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = driver.await;
        });
        Ok(TlsHttpConn {
            send,
            server_cert,
            alpn,
            addr,
        })
    }

    /// POSTs an OTLP/HTTP protobuf body; returns the status.
    pub async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<u16, String> {
        let req = hyper::Request::builder()
            .method("POST")
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send
            .ready()
            .await
            .map_err(|e| format!("connection not ready: {e}"))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.send.send_request(req))
            .await
            .map_err(|_| "request timed out".to_string())?
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        Ok(status)
    }
}

/// Connects, then POSTs `body` to `path`: the whole exchange's outcome.
pub async fn tls_post(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
    body: Vec<u8>,
) -> Result<u16, String> {
    TlsHttpConn::connect(addr, cfg).await?.post(path, body).await
}

/// A TLS OTLP/gRPC backend (traces) on a free port; with `client_ca`, it
/// requires client certificates signed by it (mTLS).
pub struct TlsGrpcBackend {
    pub port: u16,
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone)]
struct Recorder(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Recorder {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl TlsGrpcBackend {
    pub async fn start(identity: &Leaf, client_ca: Option<&str>) -> TlsGrpcBackend {
        let port = free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            &identity.cert_pem,
            &identity.key_pem,
        ));
        if let Some(ca) = client_ca {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        let traces = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(
                TraceServiceServer::new(Recorder(traces.clone()))
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            );
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        TlsGrpcBackend {
            port,
            traces,
            stop: Some(tx),
        }
    }

    pub fn traces(&self) -> Vec<ExportTraceServiceRequest> {
        self.traces.lock().unwrap().clone()
    }

    /// Span names received, sorted.
    pub fn span_names(&self) -> Vec<String> {
        span_names(&self.traces())
    }
}

impl Drop for TlsGrpcBackend {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn span_names(reqs: &[ExportTraceServiceRequest]) -> Vec<String> {
    let mut names: Vec<String> = reqs
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.name.clone())
        .collect();
    names.sort();
    names
}

/// A TLS OTLP/HTTP backend (traces, HTTP/1.1) on a free port.
pub struct TlsHttpBackend {
    pub port: u16,
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsHttpBackend {
    pub async fn start(identity: &Leaf, client_ca: Option<&str>) -> TlsHttpBackend {
        Self::start_with_versions(identity, client_ca, rustls::DEFAULT_VERSIONS).await
    }

    /// A backend speaking only `versions`.
    pub async fn start_with_versions(
        identity: &Leaf,
        client_ca: Option<&str>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> TlsHttpBackend {
        let port = free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(v)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(
                vec![identity.der()],
                PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let traces = Arc::new(Mutex::new(Vec::new()));
        let rec = traces.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, rec) = (acceptor.clone(), rec.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let rec = rec.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let gz = req
                                .headers()
                                .get("content-encoding")
                                .is_some_and(|v| v.as_bytes() == b"gzip");
                            let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec());
                            let status = match (path.as_str(), body) {
                                ("/v1/traces", Ok(b)) => {
                                    let b = if gz { super::gunzip(&b) } else { b };
                                    match ExportTraceServiceRequest::decode(&b[..]) {
                                        Ok(r) => {
                                            rec.lock().unwrap().push(r);
                                            200
                                        }
                                        Err(_) => 400,
                                    }
                                }
                                ("/v1/traces", Err(_)) => 400,
                                _ => 404,
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsHttpBackend { port, traces, task }
    }

    pub fn span_names(&self) -> Vec<String> {
        span_names(&self.traces.lock().unwrap())
    }
}

impl Drop for TlsHttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
