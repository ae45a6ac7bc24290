//! What the OTLP exporter clients share: their settings, the outcome of one
//! export (`ExportOk` / `ExportError`, with the OTLP retry classification),
//! the request body that streams a `Payload`'s chunks without concatenating
//! them, TCP connect, and the partial-success decoder for export responses.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use thiserror::Error;

use crate::{
    compression::Compression,
    grpc::Code,
    net::hyper_io::HyperStream,
    wire::{Fields, Value},
};

/// Largest export response body read (responses are tiny; this bounds a
/// misbehaving backend).
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// How an OTLP client reaches its backend.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// `host:port` to connect to (gRPC).
    pub addr: String,
    /// Full `http://` URL per signal (OTLP/HTTP), indexed by `Signal::index()`.
    pub urls: [String; 3],
    /// How request bodies are compressed.
    pub compression: Compression,
    /// Extra request headers (e.g. authorization).
    pub headers: Vec<(String, String)>,
    /// A bearer token file whose current token replaces the header's value.
    pub token_file: Option<crate::extension::bearertokenauth::BearerTokenConfig>,
    /// Deadline for one whole export (connect included); zero = none.
    pub timeout: Duration,
    /// Idle connections kept (OTLP/HTTP).
    pub max_conns: usize,
    /// TLS for the connections (`otlp`: all; `otlphttp`: its `https://`
    /// URLs). `None`: plaintext. `Some(Err)`: the TLS settings could not be
    /// loaded; every export fails with that message.
    pub tls: Option<Result<crate::tls::client::Connector, String>>,
}

/// A backend accepted the export; `rejected_items` come from its partial success.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportOk {
    pub rejected_items: u64,
    pub message: Option<String>,
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("export timed out")]
    Timeout,
    #[error("gRPC status {code:?}: {message}")]
    Grpc {
        code: Code,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("HTTP status {status}: {message}")]
    Http {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The export cannot be sent as configured or as given (bad endpoint URL or
    /// header, oversized message); retrying cannot help.
    #[error("export cannot be sent: {0}")]
    Invalid(String),
}

impl ExportError {
    /// Whether the OTLP spec says the export may be retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExportError::Connect(_) | ExportError::Transport(_) | ExportError::Timeout => true,
            ExportError::Grpc { code, retry_after, .. } => match code {
                Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::OutOfRange
                | Code::Unavailable
                | Code::DataLoss => true,
                // Only when the server says when to come back (RetryInfo).
                Code::ResourceExhausted => retry_after.is_some(),
                _ => false,
            },
            ExportError::Http { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            ExportError::Invalid(_) => false,
        }
    }

    /// The server's retry hint (gRPC RetryInfo or HTTP `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExportError::Grpc { retry_after, .. } | ExportError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ExportError::Connect(_) => "connect",
            ExportError::Transport(_) => "transport",
            ExportError::Timeout => "timeout",
            ExportError::Invalid(_) => "invalid",
            ExportError::Grpc { code, .. } => match code {
                Code::Ok => "grpc_ok",
                Code::Cancelled => "grpc_cancelled",
                Code::Unknown => "grpc_unknown",
                Code::InvalidArgument => "grpc_invalid_argument",
                Code::DeadlineExceeded => "grpc_deadline_exceeded",
                Code::NotFound => "grpc_not_found",
                Code::AlreadyExists => "grpc_already_exists",
                Code::PermissionDenied => "grpc_permission_denied",
                Code::ResourceExhausted => "grpc_resource_exhausted",
                Code::FailedPrecondition => "grpc_failed_precondition",
                Code::Aborted => "grpc_aborted",
                Code::OutOfRange => "grpc_out_of_range",
                Code::Unimplemented => "grpc_unimplemented",
                Code::Internal => "grpc_internal",
                Code::Unavailable => "grpc_unavailable",
                Code::DataLoss => "grpc_data_loss",
                Code::Unauthenticated => "grpc_unauthenticated",
            },
            ExportError::Http { status, .. } => match status {
                400 => "http_400",
                401 => "http_401",
                403 => "http_403",
                404 => "http_404",
                413 => "http_413",
                429 => "http_429",
                500 => "http_500",
                502 => "http_502",
                503 => "http_503",
                504 => "http_504",
                400..=499 => "http_4xx",
                500..=599 => "http_5xx",
                _ => "http_other",
            },
        }
    }
}

pub use super::chunk_body::ChunkBody;

/// Opens a TCP connection to `addr` (`host:port`) ready for hyper. Name
/// resolution uses the system resolver (blocking; endpoints are usually IPs).
pub async fn connect_tcp(addr: &str) -> Result<HyperStream, ExportError> {
    let sock = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(|e| ExportError::Connect(format!("{addr}: {e}")))?
        .next()
        .ok_or_else(|| ExportError::Connect(format!("{addr}: name resolves to no address")))?;
    let stream = glommio::net::TcpStream::connect(sock)
        .await
        .map_err(|e| ExportError::Connect(format!("{addr}: {e}")))?;
    Ok(HyperStream::new(stream))
}

/// Opens a connection to `addr` (`host:port`), with a TLS handshake when
/// `tls` is set (the server name is `addr`'s host unless overridden).
pub async fn connect(
    addr: &str,
    tls: Option<&Result<crate::tls::client::Connector, String>>,
) -> Result<crate::tls::Stream, ExportError> {
    match tls {
        None => Ok(crate::tls::Stream::Plain(connect_tcp(addr).await?)),
        Some(Err(m)) => Err(ExportError::Invalid(m.clone())),
        Some(Ok(c)) => {
            let tcp = connect_tcp(addr).await?.into_inner();
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            c.handshake(tcp, host)
                .await
                .map_err(|m| ExportError::Connect(format!("{addr}: {m}")))
        }
    }
}

/// Builds the user headers once, refusing names or values HTTP cannot carry.
pub fn user_headers(headers: &[(String, String)]) -> Result<HeaderMap, ExportError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| ExportError::Invalid(format!("invalid header name {k:?}")))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| ExportError::Invalid(format!("invalid value for header {k}")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Reads the partial success of an `Export{Trace,Metrics,Logs}ServiceResponse`:
/// field 1 `partial_success` { 1: rejected items (int64), 2: error_message }.
/// All three signals share this layout. An empty response means full success.
pub fn parse_partial_success(body: &[u8]) -> Result<ExportOk, crate::wire::WireError> {
    let mut ok = ExportOk::default();
    for f in Fields::all(body) {
        let f = f?;
        let (1, Value::Len(s, e)) = (f.number, f.value) else {
            continue;
        };
        for g in Fields::new(body, s, e) {
            let g = g?;
            match (g.number, g.value) {
                (1, Value::Varint(v)) => ok.rejected_items = (v as i64).max(0) as u64,
                (2, Value::Len(a, b)) => {
                    let m = String::from_utf8_lossy(&body[a..b]).into_owned();
                    ok.message = (!m.is_empty()).then_some(m);
                }
                _ => {}
            }
        }
    }
    Ok(ok)
}

/// Reads a whole response body of at most `limit` bytes, with its trailers.
/// A body arriving in one frame is returned without copying.
pub async fn read_body(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<(Bytes, Option<HeaderMap>), ExportError> {
    use http_body_util::BodyExt;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<bytes::BytesMut> = None;
    let mut trailers = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ExportError::Transport(format!("reading the response: {e}")))?;
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(f) => {
                if let Ok(t) = f.into_trailers() {
                    trailers = Some(t);
                }
                continue;
            }
        };
        total += data.len();
        if total > limit {
            return Err(ExportError::Transport(format!("response body exceeds {limit} bytes")));
        }
        match (&first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut b = bytes::BytesMut::with_capacity(f.len() + data.len());
                b.extend_from_slice(f);
                b.extend_from_slice(&data);
                rest = Some(b);
            }
            (Some(_), Some(b)) => b.extend_from_slice(&data),
        }
    }
    let data = match (first, rest) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    };
    Ok((data, trailers))
}

/// Runs `fut` under `timeout` (zero = no limit).
pub async fn with_timeout<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, ExportError>>,
) -> Result<T, ExportError> {
    if timeout.is_zero() {
        return fut.await;
    }
    futures_lite::future::or(fut, async {
        crate::clock::sleep(timeout).await;
        Err(ExportError::Timeout)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classification() {
        let g = |code, retry_after| ExportError::Grpc {
            code,
            message: String::new(),
            retry_after,
        };
        assert!(g(Code::Unavailable, None).is_retryable());
        assert!(g(Code::DataLoss, None).is_retryable());
        assert!(!g(Code::InvalidArgument, None).is_retryable());
        assert!(!g(Code::ResourceExhausted, None).is_retryable());
        assert!(g(Code::ResourceExhausted, Some(Duration::from_secs(1))).is_retryable());
        assert_eq!(g(Code::Unavailable, None).kind(), "grpc_unavailable");
        let h = |status| ExportError::Http {
            status,
            message: String::new(),
            retry_after: None,
        };
        for s in [429, 502, 503, 504] {
            assert!(h(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 404, 413, 500, 501] {
            assert!(!h(s).is_retryable(), "{s}");
        }
        assert_eq!(h(418).kind(), "http_4xx");
        assert!(ExportError::Timeout.is_retryable());
        assert!(ExportError::Connect("x".into()).is_retryable());
        assert!(!ExportError::Invalid("x".into()).is_retryable());
    }

    #[test]
    fn partial_success_decoding() {
        // partial_success { rejected = 3, error_message = "bad" }
        let body = [0x0a, 0x07, 0x08, 0x03, 0x12, 0x03, b'b', b'a', b'd'];
        let ok = parse_partial_success(&body).unwrap();
        assert_eq!(ok.rejected_items, 3);
        assert_eq!(ok.message.as_deref(), Some("bad"));
        assert_eq!(parse_partial_success(&[]).unwrap(), ExportOk::default());
        assert!(parse_partial_success(&[0x0a, 0x09, 0x08]).is_err());
    }

    #[test]
    fn bad_headers_refused() {
        assert!(user_headers(&[("a b".into(), "v".into())]).is_err());
        assert!(user_headers(&[("x".into(), "v\n".into())]).is_err());
        assert_eq!(user_headers(&[("x-k".into(), "v".into())]).unwrap()["x-k"], "v");
    }
}

/// A real HTTP server (HTTP/1.1 and h2c) on 127.0.0.1 for the client tests,
/// recording every request it receives.
#[cfg(test)]
pub(crate) mod test_server {
    use std::{
        cell::{Cell, RefCell},
        convert::Infallible,
        net::SocketAddr,
        rc::Rc,
    };

    use bytes::Bytes;
    use glommio::{net::TcpListener, Task};
    use http::{HeaderMap, Request, Response, Uri, Version};
    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper_util::server::conn::auto;

    use crate::net::{
        body::ResponseBody,
        hyper_io::{HyperStream, ShardExecutor},
    };

    #[derive(Clone, Debug)]
    pub struct Received {
        pub uri: Uri,
        pub version: Version,
        pub headers: HeaderMap,
        /// Data frames as received.
        pub frames: Vec<Bytes>,
    }

    impl Received {
        pub fn body(&self) -> Vec<u8> {
            self.frames.concat()
        }
    }

    pub type Handler = Rc<dyn Fn(&Received) -> Response<ResponseBody>>;

    pub struct TestServer {
        pub addr: SocketAddr,
        pub received: Rc<RefCell<Vec<Received>>>,
        pub accepted: Rc<Cell<u64>>,
        conns: Rc<RefCell<Vec<Task<()>>>>,
        _accept: Task<()>,
    }

    impl TestServer {
        pub fn start(handler: Handler) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let received = Rc::new(RefCell::new(Vec::new()));
            let accepted = Rc::new(Cell::new(0));
            let conns: Rc<RefCell<Vec<Task<()>>>> = Rc::new(RefCell::new(Vec::new()));
            let (r, a, c) = (received.clone(), accepted.clone(), conns.clone());
            let accept = glommio::spawn_local(async move {
                while let Ok(stream) = listener.accept().await {
                    a.set(a.get() + 1);
                    let (r, handler) = (r.clone(), handler.clone());
                    let task = glommio::spawn_local(async move {
                        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let (r, handler) = (r.clone(), handler.clone());
                            async move {
                                let (parts, mut body) = req.into_parts();
                                let mut frames = Vec::new();
                                while let Some(Ok(f)) = body.frame().await {
                                    if let Ok(d) = f.into_data() {
                                        frames.push(d);
                                    }
                                }
                                let rec = Received {
                                    uri: parts.uri,
                                    version: parts.version,
                                    headers: parts.headers,
                                    frames,
                                };
                                let resp = handler(&rec);
                                r.borrow_mut().push(rec);
                                Ok::<_, Infallible>(resp)
                            }
                        });
                        let _ = auto::Builder::new(ShardExecutor)
                            .serve_connection(HyperStream::new(stream), svc)
                            .await;
                    });
                    c.borrow_mut().push(task);
                }
            });
            TestServer {
                addr,
                received,
                accepted,
                conns,
                _accept: accept,
            }
        }

        /// Drops every open connection (the sockets close).
        pub fn close_connections(&self) {
            self.conns.borrow_mut().clear();
        }
    }

    /// Runs `f` on a fresh glommio executor with a small io memory.
    pub fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }
}
