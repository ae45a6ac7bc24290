//! A backend that records every request exactly as it arrived (path,
//! headers, raw body bytes) over HTTP/1.1 or h2c, answering OTLP success
//! (gRPC: an empty framed message and `grpc-status: 0` trailers; HTTP: an
//! empty protobuf body). Tests read the headers sluice's exporters set
//! (`authorization`, `grpc-encoding`, `content-encoding`) and decode the
//! bodies with the codec crates themselves. Also: a raw gRPC call with any
//! headers, and the codecs' own encoders for building request bodies.
#![allow(dead_code)]

use std::{
    convert::Infallible,
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Captured {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap_or("").to_string())
    }
    pub fn is_grpc(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("application/grpc"))
    }
    /// The message: the gRPC frame's payload, or the HTTP body.
    pub fn message(&self) -> (bool, Vec<u8>) {
        if self.is_grpc() {
            assert!(self.body.len() >= 5, "short gRPC body");
            let len = u32::from_be_bytes(self.body[1..5].try_into().unwrap()) as usize;
            assert_eq!(len, self.body.len() - 5, "one gRPC frame");
            (self.body[0] == 1, self.body[5..].to_vec())
        } else {
            (self.header("content-encoding").is_some(), self.body.clone())
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The recording backend.
pub struct CaptureBackend {
    pub port: u16,
    got: Arc<Mutex<Vec<Captured>>>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

async fn answer(
    got: Arc<Mutex<Vec<Captured>>>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let grpc = parts
        .headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    got.lock().unwrap().push(Captured {
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        body,
    });
    if grpc {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = StreamBody::new(futures_lite::stream::iter(frames)).boxed();
        Ok(http::Response::builder()
            .header("content-type", "application/grpc")
            .body(body)
            .unwrap())
    } else {
        Ok(http::Response::builder()
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap())
    }
}

impl CaptureBackend {
    pub async fn start() -> CaptureBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let g = got.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = &mut rx => break,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { continue };
                let g = g.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(g.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        CaptureBackend {
            port,
            got,
            stop: Mutex::new(Some(tx)),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests within {timeout:?}, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for CaptureBackend {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

/// The result of a raw gRPC call.
#[derive(Debug)]
pub struct GrpcStatus {
    pub code: i32,
    pub message: String,
}

/// One unary gRPC call on a fresh h2c connection with extra `headers`;
/// `framed` is the whole request body (prefix included).
pub async fn grpc_call(addr: SocketAddr, path: &str, headers: &[(&str, &str)], framed: Vec<u8>) -> GrpcStatus {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = send
        .send_request(b.body(Full::new(Bytes::from(framed))).unwrap())
        .await
        .expect("gRPC response");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("gRPC body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let get = |name: &str| {
        parts
            .headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| v.to_str().unwrap_or("").to_string())
    };
    GrpcStatus {
        code: get("grpc-status").and_then(|s| s.parse().ok()).unwrap_or(-1),
        message: get("grpc-message").unwrap_or_default(),
    }
}

/// The codecs, straight from their crates (not through sluice).
pub mod codec {
    use super::*;

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
    pub fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
    pub fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
    pub fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }
    pub fn snappy_framed(data: &[u8]) -> Vec<u8> {
        let mut e = snap::write::FrameEncoder::new(Vec::new());
        e.write_all(data).unwrap();
        e.into_inner().unwrap()
    }
    pub fn snappy_block(data: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(data).unwrap()
    }

    /// Decodes `data` as the named `Content-Encoding` / `grpc-encoding`.
    pub fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        match encoding {
            "gzip" => {
                flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
            }
            "zlib" | "deflate" => {
                flate2::read::ZlibDecoder::new(data).read_to_end(&mut out).unwrap();
            }
            "zstd" => out = zstd::decode_all(data).unwrap(),
            "snappy" | "x-snappy-framed" => {
                assert!(data.starts_with(b"\xff\x06\x00\x00sNaPpY"), "framed snappy expected");
                snap::read::FrameDecoder::new(data).read_to_end(&mut out).unwrap();
            }
            other => panic!("unexpected encoding {other}"),
        }
        out
    }

    /// A bomb: `size` (a multiple of 1 MiB) zero bytes compressed with
    /// `encoding`, built from 1 MiB compressed once and repeated as each
    /// format allows (gzip members, a sync-flushed deflate block with the
    /// right Adler-32 trailer, zstd frames, snappy chunks), so every bomb is
    /// a valid stream made in milliseconds even in a debug build.
    pub fn bomb(encoding: &str, size: usize) -> Vec<u8> {
        let mib = vec![0u8; 1 << 20];
        let n = size >> 20;
        match encoding {
            "gzip" => gzip(&mib).repeat(n),
            "zlib" | "deflate" => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&mib).unwrap();
                e.flush().unwrap();
                let first = e.get_ref().len();
                e.write_all(&mib).unwrap();
                e.flush().unwrap();
                let mut out = e.get_ref().clone();
                let block = out[first..].to_vec();
                for _ in 2..n {
                    out.extend_from_slice(&block);
                }
                // An empty final block (fixed Huffman), then Adler-32 of
                // `size` zeros: a = 1, b = size mod 65521.
                out.extend_from_slice(&[0x03, 0x00]);
                out.extend_from_slice(&((((size % 65521) as u32) << 16) | 1).to_be_bytes());
                out
            }
            // zstd reads concatenated frames: 1 MiB frames with a small
            // window (128 KiB) and no content size, so only decompressing
            // tells how large the whole is.
            "zstd" => {
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
                e.window_log(17).unwrap();
                e.write_all(&mib).unwrap();
                e.finish().unwrap().repeat(n)
            }
            // An 8 MiB window (as Go's streaming writer) declared in the
            // frame header.
            "zstd-window" => {
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
                e.window_log(23).unwrap();
                e.write_all(&mib).unwrap();
                e.finish().unwrap().repeat(n)
            }
            // The framing format: the stream identifier, then the 1 MiB's
            // chunks over and over.
            "snappy" => {
                let one = snappy_framed(&mib);
                let mut out = one.clone();
                for _ in 1..n {
                    out.extend_from_slice(&one[10..]);
                }
                out
            }
            // A block: its length varint, a literal zero, then copies of
            // 64 bytes at offset 1 (3 bytes each) up to `size`.
            "snappy-block" => {
                let mut out = Vec::with_capacity(size / 21 + 16);
                let mut v = size as u64;
                while v >= 0x80 {
                    out.push((v as u8) | 0x80);
                    v >>= 7;
                }
                out.push(v as u8);
                out.extend_from_slice(&[0x00, 0x00]);
                let mut left = size - 1;
                while left > 0 {
                    let len = left.min(64);
                    // A copy needs at least 4 bytes; the last one may be short.
                    let len = if left - len > 0 && left - len < 4 { len - 4 } else { len };
                    out.extend_from_slice(&[(((len - 1) << 2) | 2) as u8, 1, 0]);
                    left -= len;
                }
                out
            }
            other => panic!("unexpected encoding {other}"),
        }
    }
}
