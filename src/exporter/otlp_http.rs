//! The OTLP/HTTP exporter client (binary protobuf over HTTP/1.1 keep-alive):
//! a small per-shard pool of idle connections, one request in flight per
//! connection, bodies streamed from the payload's chunks (or their
//! compression: gzip by default, zstd, snappy, zlib or deflate).
//! Responses: 2xx carries an optional partial success; other statuses carry an
//! optional `google.rpc.Status` and `Retry-After`.

use std::{
    cell::{Cell, RefCell},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use hyper::client::conn::http1;

use crate::{
    compression::Compression,
    exporter::client::{
        connect, parse_partial_success, read_body, user_headers, with_timeout, ChunkBody, ClientSettings, ExportError,
        ExportOk, MAX_RESPONSE_BYTES,
    },
    extension::bearertokenauth::ClientToken,
    grpc,
    payload::Payload,
    signal::Signal,
};

type H1Sender = http1::SendRequest<ChunkBody>;

/// Where one signal's requests go.
#[derive(Clone, Debug)]
struct Target {
    /// `host:port` to connect to.
    connect: String,
    /// An `https://` URL: connect with TLS.
    tls: bool,
    /// Value of the `Host` header.
    host: HeaderValue,
    /// Origin-form request target (path and query).
    path: Uri,
}

fn parse_target(url: &str) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("endpoint {url:?}: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(format!(
                "endpoint {url:?}: scheme {other} is not supported (http or https)"
            ))
        }
        None => return Err(format!("endpoint {url:?}: expected an https:// or http:// URL")),
    };
    let auth = uri.authority().ok_or_else(|| format!("endpoint {url:?}: no host"))?;
    if auth.as_str().contains('@') {
        return Err(format!("endpoint {url:?}: user info is not supported"));
    }
    let connect = format!(
        "{}:{}",
        auth.host(),
        auth.port_u16().unwrap_or(if tls { 443 } else { 80 })
    );
    let host = HeaderValue::from_str(auth.as_str()).map_err(|e| format!("endpoint {url:?}: {e}"))?;
    let path = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse::<Uri>()
        .map_err(|e| format!("endpoint {url:?}: {e}"))?;
    Ok(Target {
        connect,
        tls,
        host,
        path,
    })
}

/// The `Retry-After` delay (RFC 9110 §10.2.3): delta-seconds or an HTTP-date.
/// Any number of seconds is accepted (more than `u64::MAX` reads as
/// `Duration::MAX`; the retry policy caps it), a date in the past is zero, and
/// anything else (negative numbers, garbage) is no hint.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    parse_retry_after(h.get(header::RETRY_AFTER)?.to_str().ok()?, std::time::SystemTime::now())
}

fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(v.parse::<u64>().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The message of an error response: its `google.rpc.Status` message when the
/// body is one, else the (truncated) body text, else the status reason.
fn error_message(status: StatusCode, body: &[u8]) -> (String, Option<Duration>) {
    if let Ok(s) = <grpc::rpc::Status as prost::Message>::decode(body) {
        if !s.message.is_empty() {
            return (s.message.clone(), grpc::rpc::retry_delay(&s));
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(256)]);
    let text = text.trim();
    if !text.is_empty() && !text.contains('\u{fffd}') {
        return (text.to_string(), None);
    }
    (status.canonical_reason().unwrap_or("error").to_string(), None)
}

/// An OTLP/HTTP exporter for one shard.
pub struct HttpExporter {
    compression: Compression,
    timeout: Duration,
    max_idle: usize,
    headers: Result<HeaderMap, String>,
    token: Option<ClientToken>,
    targets: [Result<Target, String>; 3],
    /// For the `https://` targets.
    tls: Option<Result<crate::tls::client::Connector, String>>,
    /// Idle keep-alive connections per connect address and TLS.
    idle: RefCell<Vec<((String, bool), H1Sender)>>,
    connects: Cell<u64>,
}

impl HttpExporter {
    /// Prepares the exporter; nothing connects until the first export.
    pub fn new(settings: ClientSettings) -> Self {
        HttpExporter {
            compression: settings.compression,
            timeout: settings.timeout,
            max_idle: settings.max_conns.max(1),
            headers: user_headers(&settings.headers).map_err(|e| e.to_string()),
            token: settings.token_file.as_ref().and_then(ClientToken::new),
            targets: std::array::from_fn(|i| parse_target(&settings.urls[i])),
            tls: settings.tls,
            idle: RefCell::new(Vec::new()),
            connects: Cell::new(0),
        }
    }

    /// Connection attempts made so far.
    pub fn connects(&self) -> u64 {
        self.connects.get()
    }

    /// Sends one payload and interprets the OTLP/HTTP response.
    pub async fn export(&self, signal: Signal, payload: &Payload) -> Result<ExportOk, ExportError> {
        let headers = self.headers.as_ref().map_err(|e| ExportError::Invalid(e.clone()))?;
        let target = self.targets[signal.index()]
            .as_ref()
            .map_err(|e| ExportError::Invalid(e.clone()))?;
        let chunks = if self.compression == Compression::None {
            payload.chunks.clone()
        } else {
            vec![self.compression.compress(&payload.chunks)]
        };
        with_timeout(self.timeout, async {
            // A pooled connection may have been closed by the server while idle;
            // if it fails before any response, retry once on a fresh one.
            let (mut send, reused) = self.checkout(target).await?;
            let resp = match send.send_request(self.request(target, headers, &chunks)).await {
                Ok(r) => r,
                Err(e) if reused && (e.is_canceled() || e.is_incomplete_message() || e.is_closed()) => {
                    tracing::debug!(error = %e, "pooled connection was closed; reconnecting");
                    send = self.connect(target).await?;
                    send.send_request(self.request(target, headers, &chunks))
                        .await
                        .map_err(|e| ExportError::Transport(e.to_string()))?
                }
                Err(e) => return Err(ExportError::Transport(e.to_string())),
            };
            let (parts, body) = resp.into_parts();
            let (data, _) = read_body(body, MAX_RESPONSE_BYTES).await?;
            // The exchange is complete: the connection can serve the next one.
            self.checkin(target, send);
            let codec = parts
                .headers
                .get(header::CONTENT_ENCODING)
                .and_then(|v| Compression::from_token(v.as_bytes()))
                .unwrap_or(Compression::None);
            let data = if codec != Compression::None {
                codec
                    .decompress(&data, MAX_RESPONSE_BYTES)
                    .map_err(|e| ExportError::Http {
                        status: parts.status.as_u16(),
                        message: format!("response body: {e}"),
                        retry_after: None,
                    })?
            } else {
                data
            };
            if parts.status.is_success() {
                return Ok(parse_partial_success(&data).unwrap_or_else(|e| {
                    tracing::warn!(%signal, error = %e, "unreadable OTLP/HTTP export response");
                    ExportOk::default()
                }));
            }
            let (message, hint) = error_message(parts.status, &data);
            Err(ExportError::Http {
                status: parts.status.as_u16(),
                message,
                retry_after: retry_after(&parts.headers).or(hint),
            })
        })
        .await
    }

    fn request(&self, target: &Target, headers: &HeaderMap, chunks: &[Bytes]) -> Request<ChunkBody> {
        let mut req = Request::new(ChunkBody::gathered(None, chunks.to_vec()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = target.path.clone();
        let h = req.headers_mut();
        h.insert(header::HOST, target.host.clone());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(token) = self.compression.token() {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
        }
        for (k, v) in headers {
            h.append(k, v.clone());
        }
        if let Some(t) = &self.token {
            t.apply(h);
        }
        req
    }

    /// An idle connection to `target` that is still open, or a new one.
    async fn checkout(&self, target: &Target) -> Result<(H1Sender, bool), ExportError> {
        loop {
            let found = {
                let mut idle = self.idle.borrow_mut();
                idle.iter()
                    .rposition(|((a, tls), _)| *a == target.connect && *tls == target.tls)
                    .map(|i| idle.swap_remove(i).1)
            };
            let Some(mut send) = found else { break };
            if !send.is_closed() && send.ready().await.is_ok() {
                return Ok((send, true));
            }
        }
        Ok((self.connect(target).await?, false))
    }

    fn checkin(&self, target: &Target, send: H1Sender) {
        let mut idle = self.idle.borrow_mut();
        if !send.is_closed() && idle.len() < self.max_idle {
            idle.push(((target.connect.clone(), target.tls), send));
        }
    }

    async fn connect(&self, target: &Target) -> Result<H1Sender, ExportError> {
        self.connects.set(self.connects.get() + 1);
        let addr = &target.connect;
        let tls = match (target.tls, &self.tls) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => {
                return Err(ExportError::Invalid(format!(
                    "{addr}: an https:// endpoint needs TLS settings"
                )))
            }
        };
        let io = connect(addr, tls).await?;
        let (send, conn) = http1::Builder::new()
            .handshake::<_, ChunkBody>(io)
            .await
            .map_err(|e| ExportError::Connect(format!("{addr}: {e}")))?;
        let peer = addr.to_string();
        glommio::spawn_local(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "OTLP/HTTP exporter connection ended with an error");
            }
        })
        .detach();
        Ok(send)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use http::Response;

    use super::*;
    use crate::{
        exporter::client::test_server::{run, Received, TestServer},
        net::body::ResponseBody,
    };

    fn settings(base: &str, gzip: bool) -> ClientSettings {
        ClientSettings {
            addr: String::new(),
            urls: Signal::ALL.map(|s| format!("{base}{}?x=1", s.http_path())),
            compression: if gzip { Compression::Gzip } else { Compression::None },
            headers: vec![("x-tenant".into(), "a".into())],
            token_file: None,
            timeout: Duration::from_secs(5),
            max_conns: 2,
            tls: None,
        }
    }

    fn payload() -> Payload {
        let mut p = Payload::new();
        p.push(Bytes::from_static(&[0x0a, 0x02, 0x08, 0x01]), 1);
        p.push(Bytes::from_static(&[0x0a, 0x01, 0x00]), 2);
        p
    }

    fn handler(r: &Received) -> Response<ResponseBody> {
        let path = r.uri.path();
        if path == Signal::Traces.http_path() {
            // partial_success { rejected = 2, error_message = "dup" }
            Response::builder()
                .header("content-type", "application/x-protobuf")
                .body(ResponseBody::data(
                    &[0x0a, 0x07, 0x08, 0x02, 0x12, 0x03, b'd', b'u', b'p'][..],
                ))
                .unwrap()
        } else if path == Signal::Metrics.http_path() {
            Response::builder()
                .status(429)
                .header("retry-after", "7")
                .body(ResponseBody::empty())
                .unwrap()
        } else {
            let st = grpc::rpc::status(grpc::Code::InvalidArgument, "bad logs", None);
            Response::builder()
                .status(400)
                .header("content-type", "application/x-protobuf")
                .body(ResponseBody::data(prost::Message::encode_to_vec(&st)))
                .unwrap()
        }
    }

    #[test]
    fn retry_after_forms() {
        use std::time::UNIX_EPOCH;
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let p = |v| parse_retry_after(v, now);
        assert_eq!(p("7"), Some(Duration::from_secs(7)));
        assert_eq!(p(" 0 "), Some(Duration::ZERO));
        assert_eq!(p("18446744073709551615"), Some(Duration::from_secs(u64::MAX)));
        assert_eq!(p("99999999999999999999999999"), Some(Duration::MAX));
        assert_eq!(p("Sun, 06 Nov 1994 08:50:07 GMT"), Some(Duration::from_secs(30)));
        assert_eq!(p("Sun, 06 Nov 1994 08:49:07 GMT"), Some(Duration::ZERO));
        assert!(p("Fri, 31 Dec 9999 23:59:59 GMT").unwrap() > Duration::from_secs(200 * 365 * 86400));
        assert_eq!(p("-5"), None);
        assert_eq!(p("soon"), None);
        assert_eq!(p(""), None);
    }

    #[test]
    fn statuses_and_body() {
        run(|| async {
            let srv = TestServer::start(Rc::new(handler));
            let base = format!("http://{}", srv.addr);
            let ex = HttpExporter::new(settings(&base, false));
            assert_eq!(ex.connects(), 0);
            let p = payload();
            let ok = ex.export(Signal::Traces, &p).await.unwrap();
            assert_eq!(ok.rejected_items, 2);
            assert_eq!(ok.message.as_deref(), Some("dup"));
            let got = srv.received.borrow()[0].clone();
            assert_eq!(got.version, http::Version::HTTP_11);
            assert_eq!(got.uri, "/v1/traces?x=1");
            assert_eq!(got.headers["host"], srv.addr.to_string().as_str());
            assert_eq!(got.headers["content-type"], "application/x-protobuf");
            assert_eq!(got.headers["content-length"], p.len.to_string().as_str());
            assert_eq!(got.headers["x-tenant"], "a");
            assert!(got.headers.get("content-encoding").is_none());
            assert_eq!(got.body(), p.to_bytes());

            let e = ex.export(Signal::Metrics, &p).await.unwrap_err();
            assert!(e.is_retryable(), "{e}");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
            assert_eq!(e.kind(), "http_429");

            let e = ex.export(Signal::Logs, &p).await.unwrap_err();
            assert!(!e.is_retryable());
            assert!(
                matches!(&e, ExportError::Http { status: 400, message, .. } if message == "bad logs"),
                "{e}"
            );
            // Keep-alive: all three went over one connection.
            assert_eq!(ex.connects(), 1);
            assert_eq!(srv.accepted.get(), 1);
        });
    }

    #[test]
    fn gzip_body() {
        run(|| async {
            let srv = TestServer::start(Rc::new(handler));
            let ex = HttpExporter::new(settings(&format!("http://{}", srv.addr), true));
            let p = payload();
            ex.export(Signal::Traces, &p).await.unwrap();
            let got = srv.received.borrow()[0].clone();
            assert_eq!(got.headers["content-encoding"], "gzip");
            assert_eq!(crate::compression::gunzip(&got.body(), 1 << 20).unwrap(), p.to_bytes());
        });
    }

    #[test]
    fn pool_reconnects_and_bounds() {
        run(|| async {
            let srv = TestServer::start(Rc::new(handler));
            let ex = HttpExporter::new(settings(&format!("http://{}", srv.addr), false));
            let p = payload();
            ex.export(Signal::Traces, &p).await.unwrap();
            srv.close_connections();
            glommio::timer::sleep(Duration::from_millis(50)).await;
            // The idle connection died: a new one is opened transparently.
            ex.export(Signal::Traces, &p).await.unwrap();
            assert_eq!(ex.connects(), 2);
            // Three concurrent exports need three connections; two stay idle.
            let (a, (b, c)) = futures_lite::future::zip(
                ex.export(Signal::Traces, &p),
                futures_lite::future::zip(ex.export(Signal::Traces, &p), ex.export(Signal::Traces, &p)),
            )
            .await;
            a.unwrap();
            b.unwrap();
            c.unwrap();
            assert_eq!(ex.connects(), 4);
            assert_eq!(ex.idle.borrow().len(), 2);
        });
    }

    #[test]
    fn bad_endpoints_and_refused() {
        run(|| async {
            let ex = HttpExporter::new(settings("https://example.com", false));
            let e = ex.export(Signal::Traces, &payload()).await.unwrap_err();
            assert!(matches!(e, ExportError::Invalid(_)) && !e.is_retryable(), "{e}");
            let ex = HttpExporter::new(settings("localhost:4318", false));
            assert!(matches!(
                ex.export(Signal::Logs, &payload()).await,
                Err(ExportError::Invalid(_))
            ));
            let addr = glommio::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let ex = HttpExporter::new(settings(&format!("http://{addr}"), false));
            let e = ex.export(Signal::Traces, &payload()).await.unwrap_err();
            assert!(matches!(e, ExportError::Connect(_)) && e.is_retryable(), "{e}");
            assert_eq!(ex.connects(), 1);
        });
    }

    #[test]
    fn target_parsing() {
        let t = parse_target("http://collector:4318/v1/traces").unwrap();
        assert_eq!(t.connect, "collector:4318");
        assert_eq!(t.host, "collector:4318");
        assert_eq!(t.path, "/v1/traces");
        assert_eq!(parse_target("http://h").unwrap().connect, "h:80");
        assert!(parse_target("ftp://h/x").is_err());
        let t = parse_target("https://collector/v1/logs").unwrap();
        assert_eq!((t.connect.as_str(), t.tls), ("collector:443", true));
        assert!(parse_target("http://u:p@h/x").is_err());
        assert!(parse_target("not a url").is_err());
    }
}
