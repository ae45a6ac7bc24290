//! The OTLP/gRPC exporter client: one h2c connection per shard, shared by all
//! concurrent exports (streams multiplexed), opened lazily and reopened after
//! it fails, one attempt at a time. Request bodies stream the payload's chunks
//! behind the 5-byte gRPC prefix; `read_grpc_response` turns a response
//! (status in trailers, or in headers for trailers-only replies) into a
//! `GrpcReply` and is public for other gRPC clients (the load generator).

use std::{
    cell::{Cell, RefCell},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::{body::Incoming, client::conn::http2};

use crate::{
    compression::{self, Compression},
    exporter::client::{
        connect, parse_partial_success, read_body, user_headers, with_timeout, ChunkBody, ClientSettings, ExportError,
        ExportOk, MAX_RESPONSE_BYTES,
    },
    extension::bearertokenauth::ClientToken,
    grpc::{self, Code},
    net::{hyper_io::ShardExecutor, timer::GlommioTimer},
    payload::Payload,
    signal::Signal,
};

/// The request side of an h2c connection.
pub type H2Sender = http2::SendRequest<ChunkBody>;

/// HTTP/2 flow-control windows: large enough that a batch never waits for
/// WINDOW_UPDATEs from a healthy backend.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest frame we accept from the server.
const MAX_FRAME: u32 = 1 << 20;

/// A gRPC response: its status and its (unframed, decompressed) message.
#[derive(Clone, Debug)]
pub struct GrpcReply {
    pub code: Code,
    /// `grpc-message`, percent-decoded (or the status details' message).
    pub message: String,
    /// RetryInfo from `grpc-status-details-bin`.
    pub retry_after: Option<Duration>,
    /// The response message; empty for error statuses.
    pub body: Bytes,
}

/// Connects to `addr` (with TLS when `tls` is set) and performs the HTTP/2
/// handshake; the connection is driven by a task on the current shard, which
/// ends when the connection closes.
pub async fn connect_h2(
    addr: &str,
    tls: Option<&Result<crate::tls::client::Connector, String>>,
) -> Result<H2Sender, ExportError> {
    let io = connect(addr, tls).await?;
    let mut builder = http2::Builder::new(ShardExecutor);
    builder
        .timer(GlommioTimer)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buf_size(1 << 20)
        .keep_alive_interval(None);
    let (send, conn) = builder
        .handshake::<_, ChunkBody>(io)
        .await
        .map_err(|e| ExportError::Connect(format!("{addr}: HTTP/2 handshake: {e}")))?;
    let peer = addr.to_string();
    glommio::spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!(peer = %peer, error = %e, "gRPC exporter connection ended with an error");
        }
    })
    .detach();
    Ok(send)
}

/// A gRPC request body for `chunks`: the prefix frame, then each chunk (or the
/// compression of all of them, with the compressed flag set).
pub fn grpc_body(chunks: &[Bytes], codec: Compression) -> Result<ChunkBody, ExportError> {
    let (compressed, chunks) = if codec == Compression::None {
        (false, chunks.to_vec())
    } else {
        (true, vec![codec.compress(chunks)])
    };
    let len: usize = chunks.iter().map(Bytes::len).sum();
    if len > u32::MAX as usize {
        return Err(ExportError::Invalid(format!(
            "gRPC message of {len} bytes exceeds 4 GiB"
        )));
    }
    let prefix = Bytes::copy_from_slice(&grpc::prefix(compressed, len));
    Ok(ChunkBody::gathered(Some(prefix), chunks))
}

/// A unary gRPC POST to `uri` (absolute: `http://host:port/pkg.Service/Method`).
pub fn grpc_request<B>(uri: Uri, headers: &HeaderMap, codec: Compression, timeout: Duration, body: B) -> Request<B> {
    let mut req = Request::new(body);
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
    );
    h.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static(compression::GRPC_ACCEPT_ENCODING),
    );
    if let Some(token) = codec.token() {
        h.insert("grpc-encoding", HeaderValue::from_static(token));
    }
    if !timeout.is_zero() {
        // grpc-timeout allows at most 8 digits.
        let ms = timeout.as_millis().min(99_999_999);
        if let Ok(v) = HeaderValue::from_str(&format!("{ms}m")) {
            h.insert("grpc-timeout", v);
        }
    }
    for (k, v) in headers {
        h.append(k, v.clone());
    }
    req
}

/// Sends one unary request on `send` and reads its reply.
pub async fn unary<B>(send: &mut http2::SendRequest<B>, req: Request<B>) -> Result<GrpcReply, ExportError>
where
    B: http_body::Body + 'static,
{
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| ExportError::Transport(e.to_string()))?;
    read_grpc_response(resp).await
}

/// The gRPC status for a non-200 HTTP response (gRPC's HTTP-to-status mapping).
fn code_for_http_status(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// Status, message and retry hint from a header block carrying `grpc-status`.
fn status_from(h: &HeaderMap) -> Option<(Code, String, Option<Duration>)> {
    let raw = h.get("grpc-status")?;
    let code = std::str::from_utf8(raw.as_bytes())
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or(Code::Unknown, Code::from_u32);
    let mut message = h
        .get("grpc-message")
        .map(|v| grpc::decode_message(v.as_bytes()))
        .unwrap_or_default();
    let details = h
        .get("grpc-status-details-bin")
        .and_then(|v| grpc::parse_status_details(v.as_bytes()));
    let retry_after = details.as_ref().and_then(grpc::rpc::retry_delay);
    if message.is_empty() {
        if let Some(d) = details {
            message = d.message;
        }
    }
    Some((code, message, retry_after))
}

fn internal(message: String) -> GrpcReply {
    GrpcReply {
        code: Code::Internal,
        message,
        retry_after: None,
        body: Bytes::new(),
    }
}

/// Reads a unary gRPC response. A response that is not valid gRPC (non-200
/// HTTP status, missing status, malformed message) becomes a reply with the
/// status gRPC prescribes for it; only I/O failures are errors.
pub async fn read_grpc_response(resp: Response<Incoming>) -> Result<GrpcReply, ExportError> {
    let (parts, body) = resp.into_parts();
    if parts.status != StatusCode::OK {
        return Ok(GrpcReply {
            code: code_for_http_status(parts.status),
            message: format!("HTTP status {} from a gRPC server", parts.status),
            retry_after: None,
            body: Bytes::new(),
        });
    }
    if let Some((code, message, retry_after)) = status_from(&parts.headers) {
        // Trailers-only response: nothing else follows.
        return Ok(GrpcReply {
            code,
            message,
            retry_after,
            body: Bytes::new(),
        });
    }
    let (data, trailers) = read_body(body, MAX_RESPONSE_BYTES + grpc::PREFIX_LEN).await?;
    let Some((code, message, retry_after)) = trailers.as_ref().and_then(status_from) else {
        return Ok(internal("response ended without a grpc-status".into()));
    };
    if code != Code::Ok || data.is_empty() {
        return Ok(GrpcReply {
            code,
            message,
            retry_after,
            body: Bytes::new(),
        });
    }
    let (compressed, msg) = match grpc::unframe(vec![data], MAX_RESPONSE_BYTES) {
        Ok((c, m)) => (c, crate::payload::join(&m)),
        Err(e) => return Ok(internal(format!("malformed response message: {e}"))),
    };
    let msg = if compressed {
        let codec = parts
            .headers
            .get("grpc-encoding")
            .and_then(|v| Compression::from_token(v.as_bytes()))
            .filter(|c| *c != Compression::None);
        let Some(codec) = codec else {
            return Ok(internal("compressed response without a supported grpc-encoding".into()));
        };
        match codec.decompress(&msg, MAX_RESPONSE_BYTES) {
            Ok(m) => m,
            Err(e) => return Ok(internal(format!("response message: {e}"))),
        }
    } else {
        msg
    };
    Ok(GrpcReply {
        code,
        message,
        retry_after,
        body: msg,
    })
}

/// An OTLP/gRPC exporter for one shard.
pub struct GrpcExporter {
    addr: String,
    compression: Compression,
    timeout: Duration,
    headers: Result<HeaderMap, String>,
    token: Option<ClientToken>,
    uris: [Result<Uri, String>; 3],
    tls: Option<Result<crate::tls::client::Connector, String>>,
    /// The live connection and the attempt number that opened it.
    conn: RefCell<Option<(u64, H2Sender)>>,
    /// Held while connecting: one attempt at a time.
    connect_lock: glommio::sync::Semaphore,
    /// Attempts started / finished; why the last finished one failed.
    started: Cell<u64>,
    finished: Cell<u64>,
    last_failure: RefCell<Option<String>>,
}

impl GrpcExporter {
    /// Prepares the exporter; nothing connects until the first export.
    pub fn new(settings: ClientSettings) -> Self {
        let addr = settings.addr;
        let scheme = if settings.tls.is_some() { "https" } else { "http" };
        let uris = Signal::ALL.map(|s| {
            format!("{scheme}://{addr}{}", s.grpc_path())
                .parse::<Uri>()
                .map_err(|e| format!("endpoint {addr:?}: {e}"))
        });
        GrpcExporter {
            compression: settings.compression,
            timeout: settings.timeout,
            headers: user_headers(&settings.headers).map_err(|e| e.to_string()),
            token: settings.token_file.as_ref().and_then(ClientToken::new),
            uris,
            addr,
            tls: settings.tls,
            conn: RefCell::new(None),
            connect_lock: glommio::sync::Semaphore::new(1),
            started: Cell::new(0),
            finished: Cell::new(0),
            last_failure: RefCell::new(None),
        }
    }

    /// Connection attempts made so far.
    pub fn connects(&self) -> u64 {
        self.started.get()
    }

    /// Sends one payload and interprets the OTLP response.
    pub async fn export(&self, signal: Signal, payload: &Payload) -> Result<ExportOk, ExportError> {
        let headers = self.headers.as_ref().map_err(|e| ExportError::Invalid(e.clone()))?;
        let uri = self.uris[signal.index()].clone().map_err(ExportError::Invalid)?;
        let body = grpc_body(&payload.chunks, self.compression)?;
        let mut req = grpc_request(uri, headers, self.compression, self.timeout, body);
        if let Some(t) = &self.token {
            t.apply(req.headers_mut());
        }
        let reply = with_timeout(self.timeout, async {
            let (id, mut send) = self.sender().await?;
            let r = unary(&mut send, req).await;
            if matches!(r, Err(ExportError::Transport(_))) {
                self.drop_conn(id);
            }
            r
        })
        .await?;
        if reply.code != Code::Ok {
            return Err(ExportError::Grpc {
                code: reply.code,
                message: reply.message,
                retry_after: reply.retry_after,
            });
        }
        match parse_partial_success(&reply.body) {
            Ok(ok) => Ok(ok),
            Err(e) => {
                // The backend accepted the data; only its report is unreadable.
                tracing::warn!(addr = %self.addr, %signal, error = %e, "unreadable OTLP export response");
                Ok(ExportOk::default())
            }
        }
    }

    /// The live connection, if any (a closed one is forgotten).
    fn live(&self) -> Option<(u64, H2Sender)> {
        let mut conn = self.conn.borrow_mut();
        match &*conn {
            Some((id, s)) if !s.is_closed() => Some((*id, s.clone())),
            Some(_) => {
                *conn = None;
                None
            }
            None => None,
        }
    }

    fn drop_conn(&self, id: u64) {
        let mut conn = self.conn.borrow_mut();
        if conn.as_ref().is_some_and(|(c, _)| *c == id) {
            *conn = None;
        }
    }

    /// The connection to send on, connecting if needed. Callers arriving while
    /// an attempt is under way wait for it and share its outcome.
    async fn sender(&self) -> Result<(u64, H2Sender), ExportError> {
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let seen = self.finished.get();
        let _permit = self
            .connect_lock
            .acquire_permit(1)
            .await
            .map_err(|e| ExportError::Connect(e.to_string()))?;
        if let Some(c) = self.live() {
            return Ok(c);
        }
        if self.finished.get() != seen {
            if let Some(why) = self.last_failure.borrow().clone() {
                return Err(ExportError::Connect(why));
            }
        }
        let id = self.started.get() + 1;
        self.started.set(id);
        let result = connect_h2(&self.addr, self.tls.as_ref()).await;
        self.finished.set(self.finished.get() + 1);
        match result {
            Ok(send) => {
                *self.last_failure.borrow_mut() = None;
                *self.conn.borrow_mut() = Some((id, send.clone()));
                tracing::debug!(addr = %self.addr, "gRPC exporter connected");
                Ok((id, send))
            }
            Err(e) => {
                let why = match &e {
                    ExportError::Connect(m) => m.clone(),
                    other => other.to_string(),
                };
                *self.last_failure.borrow_mut() = Some(why);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use http::{HeaderMap, Response};

    use super::*;
    use crate::{
        exporter::client::test_server::{run, Received, TestServer},
        net::body::ResponseBody,
    };

    fn settings(addr: String, gzip: bool) -> ClientSettings {
        ClientSettings {
            addr,
            urls: Default::default(),
            compression: if gzip { Compression::Gzip } else { Compression::None },
            headers: vec![("authorization".into(), "Bearer t".into())],
            token_file: None,
            timeout: Duration::from_secs(5),
            max_conns: 2,
            tls: None,
        }
    }

    /// A gRPC OK reply carrying `msg` (an encoded export response).
    fn ok_reply(msg: &[u8]) -> Response<ResponseBody> {
        let mut body = grpc::prefix(false, msg.len()).to_vec();
        body.extend_from_slice(msg);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", Code::Ok.as_header());
        Response::builder()
            .header("content-type", "application/grpc")
            .body(ResponseBody::with_trailers(Bytes::from(body), trailers))
            .unwrap()
    }

    /// A trailers-only error reply.
    fn error_reply(code: Code, msg: &str, retry: Option<Duration>) -> Response<ResponseBody> {
        let mut b = Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", code.as_header())
            .header("grpc-message", grpc::encode_message(msg));
        if retry.is_some() {
            b = b.header("grpc-status-details-bin", grpc::status_details_bin(code, msg, retry));
        }
        b.body(ResponseBody::empty()).unwrap()
    }

    fn two_chunks() -> Payload {
        let mut p = Payload::new();
        // Two ResourceSpans entries (field 1), each a tiny message.
        p.push(Bytes::from_static(&[0x0a, 0x02, 0x08, 0x01]), 1);
        p.push(Bytes::from_static(&[0x0a, 0x03, 0x08, 0x02, 0x00]), 1);
        p
    }

    #[test]
    fn chunks_arrive_framed_with_grpc_headers() {
        run(|| async {
            let srv = TestServer::start(Rc::new(|_: &Received| ok_reply(&[])));
            let ex = GrpcExporter::new(settings(srv.addr.to_string(), false));
            assert_eq!(ex.connects(), 0, "new() must not connect");
            let p = two_chunks();
            let ok = ex.export(Signal::Traces, &p).await.unwrap();
            assert_eq!(ok, ExportOk::default());
            let got = srv.received.borrow()[0].clone();
            assert_eq!(got.version, http::Version::HTTP_2);
            assert_eq!(got.uri.path(), Signal::Traces.grpc_path());
            assert_eq!(got.headers["content-type"], "application/grpc");
            assert_eq!(got.headers["te"], "trailers");
            assert_eq!(got.headers["authorization"], "Bearer t");
            assert!(got.headers.get("grpc-encoding").is_none());
            let mut expect = grpc::prefix(false, p.len).to_vec();
            expect.extend_from_slice(&p.to_bytes());
            assert_eq!(got.body(), expect);
            // Concurrent exports share the one connection.
            let (a, b) = futures_lite::future::zip(ex.export(Signal::Logs, &p), ex.export(Signal::Metrics, &p)).await;
            a.unwrap();
            b.unwrap();
            assert_eq!(ex.connects(), 1);
            assert_eq!(srv.accepted.get(), 1);
            let paths: Vec<String> = srv.received.borrow().iter().map(|r| r.uri.path().to_string()).collect();
            assert!(paths.contains(&Signal::Logs.grpc_path().to_string()));
            assert!(paths.contains(&Signal::Metrics.grpc_path().to_string()));
        });
    }

    #[test]
    fn gzip_sets_flag_and_encoding() {
        run(|| async {
            let srv = TestServer::start(Rc::new(|_: &Received| ok_reply(&[])));
            let ex = GrpcExporter::new(settings(srv.addr.to_string(), true));
            let p = two_chunks();
            ex.export(Signal::Traces, &p).await.unwrap();
            let got = srv.received.borrow()[0].clone();
            assert_eq!(got.headers["grpc-encoding"], "gzip");
            let body = Bytes::from(got.body());
            let (compressed, msg) = grpc::unframe(vec![body], 1 << 20).unwrap();
            assert!(compressed);
            assert_eq!(compression::gunzip(&msg.concat(), 1 << 20).unwrap(), p.to_bytes());
        });
    }

    #[test]
    fn status_codes_classified() {
        run(|| async {
            let srv = TestServer::start(Rc::new(|r: &Received| match r.uri.path() {
                p if p == Signal::Traces.grpc_path() => error_reply(Code::Unavailable, "busy 100%", None),
                p if p == Signal::Metrics.grpc_path() => error_reply(Code::InvalidArgument, "bad data", None),
                _ => error_reply(Code::ResourceExhausted, "slow down", Some(Duration::from_millis(1500))),
            }));
            let ex = GrpcExporter::new(settings(srv.addr.to_string(), false));
            let p = two_chunks();
            let e = ex.export(Signal::Traces, &p).await.unwrap_err();
            assert!(e.is_retryable());
            assert_eq!(e.kind(), "grpc_unavailable");
            assert!(
                matches!(&e, ExportError::Grpc { message, .. } if message == "busy 100%"),
                "{e}"
            );
            let e = ex.export(Signal::Metrics, &p).await.unwrap_err();
            assert!(!e.is_retryable());
            assert_eq!(e.kind(), "grpc_invalid_argument");
            let e = ex.export(Signal::Logs, &p).await.unwrap_err();
            assert!(e.is_retryable());
            assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
            // Errors from the server are not transport failures: one connection.
            assert_eq!(ex.connects(), 1);
        });
    }

    #[test]
    fn resource_exhausted_without_retry_info_is_permanent() {
        run(|| async {
            let srv = TestServer::start(Rc::new(|_: &Received| {
                error_reply(Code::ResourceExhausted, "quota", None)
            }));
            let ex = GrpcExporter::new(settings(srv.addr.to_string(), false));
            let e = ex.export(Signal::Traces, &two_chunks()).await.unwrap_err();
            assert!(!e.is_retryable());
            assert_eq!(e.retry_after(), None);
        });
    }

    #[test]
    fn partial_success_parsed() {
        run(|| async {
            // partial_success { rejected_spans = 1, error_message = "dup" }
            let msg = [0x0a, 0x07, 0x08, 0x01, 0x12, 0x03, b'd', b'u', b'p'];
            let srv = TestServer::start(Rc::new(move |_: &Received| ok_reply(&msg)));
            let ex = GrpcExporter::new(settings(srv.addr.to_string(), false));
            let ok = ex.export(Signal::Traces, &two_chunks()).await.unwrap();
            assert_eq!(ok.rejected_items, 1);
            assert_eq!(ok.message.as_deref(), Some("dup"));
        });
    }

    #[test]
    fn connection_refused_is_a_retryable_connect_error() {
        run(|| async {
            // Bind then drop to get a port nobody listens on.
            let addr = {
                let l = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap()
            };
            let ex = GrpcExporter::new(settings(addr.to_string(), false));
            let e = ex.export(Signal::Traces, &two_chunks()).await.unwrap_err();
            assert!(matches!(e, ExportError::Connect(_)), "{e}");
            assert!(e.is_retryable());
            assert_eq!(e.kind(), "connect");
            assert_eq!(ex.connects(), 1);
            // Concurrent callers share one attempt instead of storming.
            let p = two_chunks();
            let (a, b) = futures_lite::future::zip(ex.export(Signal::Traces, &p), ex.export(Signal::Logs, &p)).await;
            assert!(matches!(a, Err(ExportError::Connect(_))));
            assert!(matches!(b, Err(ExportError::Connect(_))));
            assert_eq!(ex.connects(), 2);
            let bad = GrpcExporter::new(settings("no-such-host.invalid:4317".into(), false));
            assert!(matches!(
                bad.export(Signal::Traces, &p).await,
                Err(ExportError::Connect(_))
            ));
        });
    }

    #[test]
    fn reconnects_after_the_server_closes_the_connection() {
        run(|| async {
            let srv = TestServer::start(Rc::new(|_: &Received| ok_reply(&[])));
            let ex = GrpcExporter::new(settings(srv.addr.to_string(), false));
            let p = two_chunks();
            ex.export(Signal::Traces, &p).await.unwrap();
            assert_eq!(ex.connects(), 1);
            srv.close_connections();
            glommio::timer::sleep(Duration::from_millis(50)).await;
            ex.export(Signal::Traces, &p).await.unwrap();
            assert_eq!(ex.connects(), 2);
            assert_eq!(srv.accepted.get(), 2);
        });
    }

    #[test]
    fn timeout_and_bad_headers() {
        run(|| async {
            // A listener that accepts but never answers.
            let l = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let _hold = glommio::spawn_local(async move {
                let mut held = Vec::new();
                while let Ok(s) = l.accept().await {
                    held.push(s);
                }
            });
            let mut s = settings(addr.to_string(), false);
            s.timeout = Duration::from_millis(100);
            let ex = GrpcExporter::new(s);
            let e = ex.export(Signal::Traces, &two_chunks()).await.unwrap_err();
            assert!(matches!(e, ExportError::Timeout), "{e}");
            let mut s = settings(addr.to_string(), false);
            s.headers = vec![("bad header".into(), "x".into())];
            let e = GrpcExporter::new(s)
                .export(Signal::Traces, &two_chunks())
                .await
                .unwrap_err();
            assert!(matches!(e, ExportError::Invalid(_)) && !e.is_retryable(), "{e}");
        });
    }
}
