//! The receiver side of TLS: builds the rustls server config for a listener
//! (certificate, mTLS client verifier, versions, suites, ALPN `h2` and
//! `http/1.1`), and accepts each connection on the shard that owns it. A
//! failed handshake is classified (`TlsFailure`), counted in
//! `sluice_tls_handshake_failures_total{receiver, transport, reason}` and
//! logged at most once per `LOG_EVERY` per listener.
//!
//! The config in use sits in a `RefCell<Arc<_>>` owned by the shard: the
//! shard's reload task (`reload`) swaps it; connections already open keep the
//! config they started with. Nothing here is shared with other shards.

use std::{
    cell::{Cell, RefCell},
    io,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use rustls::{server::WebPkiClientVerifier, CertificateError, ServerConfig};

use super::{
    config::TlsServerConfig,
    material::{self, section_error},
    stream::Stream,
};
use crate::{config::ConfigError, telemetry::Stats};

/// A client gets this long from connecting to a finished handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshake failures are logged at most this often per listener (with a count).
const LOG_EVERY: Duration = Duration::from_secs(10);
/// What a plaintext HTTP/1 client gets on a TLS port (as Go servers answer).
const PLAINTEXT_REPLY: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: 46\r\n\r\nClient sent an HTTP request to a TLS endpoint.\n";
/// How long, and how much, a plaintext client's request is read after the reply.
const DRAIN_FOR: Duration = Duration::from_secs(1);
const DRAIN_BYTES: usize = 64 << 10;
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why a handshake failed (label `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The client spoke plaintext (HTTP/1, h2c, anything not TLS).
    NotTls,
    /// mTLS: the client presented no certificate.
    NoClientCertificate,
    /// The client's certificate is not signed by `client_ca_file`.
    UnknownCa,
    /// The client's certificate is expired.
    ExpiredCertificate,
    /// The client's certificate is otherwise unacceptable.
    BadCertificate,
    /// The client aborted with an alert (e.g. it does not trust our certificate).
    ClientAlert,
    /// No common version, cipher suite or application protocol.
    ProtocolMismatch,
    /// No finished handshake within `HANDSHAKE_TIMEOUT`.
    Timeout,
    /// The connection closed or failed mid-handshake.
    Aborted,
    /// Anything else (malformed messages, ...).
    Other,
}

impl TlsFailure {
    pub const COUNT: usize = 10;
    pub const ALL: [TlsFailure; TlsFailure::COUNT] = [
        TlsFailure::NotTls,
        TlsFailure::NoClientCertificate,
        TlsFailure::UnknownCa,
        TlsFailure::ExpiredCertificate,
        TlsFailure::BadCertificate,
        TlsFailure::ClientAlert,
        TlsFailure::ProtocolMismatch,
        TlsFailure::Timeout,
        TlsFailure::Aborted,
        TlsFailure::Other,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            TlsFailure::NotTls => "not_tls",
            TlsFailure::NoClientCertificate => "no_client_certificate",
            TlsFailure::UnknownCa => "unknown_ca",
            TlsFailure::ExpiredCertificate => "expired_certificate",
            TlsFailure::BadCertificate => "bad_certificate",
            TlsFailure::ClientAlert => "client_alert",
            TlsFailure::ProtocolMismatch => "protocol_mismatch",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Aborted => "aborted",
            TlsFailure::Other => "other",
        }
    }

    /// Classifies a failed handshake's error.
    pub fn of(e: &io::Error) -> TlsFailure {
        use rustls::Error as E;
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(E::NoCertificatesPresented) => TlsFailure::NoClientCertificate,
            Some(E::InvalidCertificate(CertificateError::UnknownIssuer)) => TlsFailure::UnknownCa,
            Some(E::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. })) => {
                TlsFailure::ExpiredCertificate
            }
            Some(E::InvalidCertificate(_)) => TlsFailure::BadCertificate,
            Some(E::AlertReceived(_)) => TlsFailure::ClientAlert,
            Some(E::PeerIncompatible(_) | E::NoApplicationProtocol) => TlsFailure::ProtocolMismatch,
            Some(_) => TlsFailure::Other,
            None => TlsFailure::Aborted,
        }
    }
}

/// The bytes a server config is built from; reloads compare them to skip
/// rebuilding when nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMaterial {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// Reads the certificate, key and client CA. With `previous` and without
/// `client_ca_file_reload`, the client CA read at start is kept.
pub fn read_material(c: &TlsServerConfig, previous: Option<&ServerMaterial>) -> Result<ServerMaterial, ConfigError> {
    let (Some(cert), Some(key)) = (&c.common.cert, &c.common.key) else {
        return Err(section_error(
            &c.common,
            "a TLS receiver needs `cert_file` and `key_file`",
        ));
    };
    let client_ca = match (&c.client_ca, previous) {
        (None, _) => None,
        (Some(_), Some(p)) if !c.client_ca_file_reload => p.client_ca.clone(),
        (Some(ca), _) => Some(material::read(ca)?),
    };
    Ok(ServerMaterial {
        cert: material::read(cert)?,
        key: material::read(key)?,
        client_ca,
    })
}

/// Builds the rustls server config from `m`.
pub fn build(c: &TlsServerConfig, m: &ServerMaterial) -> Result<Arc<ServerConfig>, ConfigError> {
    let (Some(cert_src), Some(key_src)) = (&c.common.cert, &c.common.key) else {
        return Err(section_error(
            &c.common,
            "a TLS receiver needs `cert_file` and `key_file`",
        ));
    };
    let certs = material::certs(cert_src, &m.cert)?;
    let key = material::key(key_src, &m.key)?;
    let provider = material::provider(&c.common);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&material::versions(&c.common))
        .map_err(|e| section_error(&c.common, format!("unusable versions / cipher suites: {e}")))?;
    let builder = match (&c.client_ca, &m.client_ca) {
        (Some(src), Some(bytes)) => {
            let roots = material::roots(src, bytes)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| src.error(format!("cannot verify clients with it: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| key_src.error(format!("does not go with the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Where a listener counts its handshake failures.
#[derive(Clone, Debug)]
pub struct FailureCounts {
    pub stats: Stats,
    pub shard: usize,
    /// The receiver transport's index in the shard's `receivers`.
    pub index: usize,
}

/// A TLS listener's state on one shard.
pub struct Acceptor {
    settings: TlsServerConfig,
    config: RefCell<Arc<ServerConfig>>,
    material: RefCell<ServerMaterial>,
    counts: FailureCounts,
    /// Failures since the last log line, and when that was.
    unlogged: Cell<u64>,
    logged_at: Cell<Option<Instant>>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("tls", &self.settings.common.path)
            .finish()
    }
}

impl Acceptor {
    /// Reads the certificates and builds the config; with a
    /// `reload_interval`, starts the shard's reload task for it.
    pub fn start(settings: TlsServerConfig, counts: FailureCounts) -> Result<Rc<Acceptor>, ConfigError> {
        let m = read_material(&settings, None)?;
        let config = build(&settings, &m)?;
        let interval = settings.common.reload_interval;
        let a = Rc::new(Acceptor {
            settings,
            config: RefCell::new(config),
            material: RefCell::new(m),
            counts,
            unlogged: Cell::new(0),
            logged_at: Cell::new(None),
        });
        if !interval.is_zero() {
            super::reload::spawn(Rc::downgrade(&a), interval);
        }
        Ok(a)
    }

    pub fn settings(&self) -> &TlsServerConfig {
        &self.settings
    }

    /// Re-reads the files; swaps in a new config when they changed.
    /// `Ok(true)`: swapped.
    pub fn reload(&self) -> Result<bool, ConfigError> {
        let m = read_material(&self.settings, Some(&self.material.borrow()))?;
        if m == *self.material.borrow() {
            return Ok(false);
        }
        let config = build(&self.settings, &m)?;
        *self.config.borrow_mut() = config;
        *self.material.borrow_mut() = m;
        Ok(true)
    }

    /// Runs the handshake on `tcp`. `None`: the connection is refused (and
    /// counted, unless it closed without sending a byte).
    pub async fn accept(&self, tcp: TcpStream) -> Option<Stream> {
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr().ok();
        let outcome = futures_lite::future::or(self.handshake(tcp), async {
            glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
            Err(Some((TlsFailure::Timeout, "no finished handshake in time".to_string())))
        })
        .await;
        match outcome {
            Ok(s) => Some(s),
            Err(None) => None,
            Err(Some((reason, why))) => {
                self.failed(reason, peer, &why);
                None
            }
        }
    }

    async fn handshake(&self, mut tcp: TcpStream) -> Result<Stream, Option<(TlsFailure, String)>> {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) => return Err(None),
            Ok(_) => {}
            Err(e) => return Err(Some((TlsFailure::Aborted, e.to_string()))),
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            if first[0].is_ascii_uppercase() {
                let _ = tcp.write_all(PLAINTEXT_REPLY).await;
                let _ = tcp.flush().await;
                // Closing with the request unread would reset the connection
                // before the client reads the reply: finish writing, then read
                // (a bounded amount, for a bounded time) until the client closes.
                let _ = tcp.shutdown(std::net::Shutdown::Write).await;
                futures_lite::future::or(drain(&mut tcp), glommio::timer::sleep(DRAIN_FOR)).await;
            }
            return Err(Some((TlsFailure::NotTls, "the client sent plaintext".to_string())));
        }
        let config = self.config.borrow().clone();
        match futures_rustls::TlsAcceptor::from(config).accept(tcp).await {
            Ok(s) => Ok(Stream::Server(Box::new(s))),
            Err(e) => Err(Some((TlsFailure::of(&e), e.to_string()))),
        }
    }

    fn failed(&self, reason: TlsFailure, peer: Option<std::net::SocketAddr>, why: &str) {
        let c = &self.counts;
        if let Some(r) = c.stats.shards.get(c.shard).and_then(|s| s.receivers.get(c.index)) {
            r.tls_handshake_failures[reason as usize].add(1);
        }
        let n = self.unlogged.get() + 1;
        let now = Instant::now();
        if self.logged_at.get().is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.unlogged.set(n);
            return;
        }
        self.unlogged.set(0);
        self.logged_at.set(Some(now));
        let peer = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
        tracing::warn!(
            tls = %self.settings.common.path,
            failures = n,
            reason = reason.name(),
            %peer,
            error = %why,
            "TLS handshake failed (counted in sluice_tls_handshake_failures_total; logged at most every 10s)"
        );
    }
}

/// Reads and discards what the peer sends, up to `DRAIN_BYTES` or its close.
async fn drain(tcp: &mut TcpStream) {
    use futures_lite::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < DRAIN_BYTES {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// Accepts `tcp` with `tls` when set, else serves it as plaintext.
pub async fn accept(tls: Option<&Acceptor>, tcp: TcpStream) -> Option<Stream> {
    match tls {
        Some(a) => a.accept(tcp).await,
        None => Some(Stream::Plain(crate::net::hyper_io::HyperStream::new(tcp))),
    }
}
