//! Misbehaving clients for the in-flight budget tests: uploads that stop
//! part-way (HTTP/1.1 with Content-Length, gRPC over HTTP/2 with a length
//! prefix), HTTP/2 connections that never open their receive window
//! (responses can never be sent), and the sluice process's memory figures.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::Full;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{mpsc, oneshot},
    task::AbortHandle,
};

/// `(VmRSS, VmHWM)` of process `pid`, bytes.
pub fn rss_and_peak(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A request body fed from a channel; it ends only if the sender is dropped
/// after sending everything (which the stalled clients never do).
struct ChanBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// What a stalled client finally heard: HTTP status and grpc-status (if any),
/// or why it heard nothing.
pub type Outcome = Result<(u16, Option<u32>), String>;

/// A client that started a request and stopped sending. Dropping it closes
/// the connection.
pub struct Stalled {
    tasks: Vec<AbortHandle>,
    /// Bytes of the body written so far (into the socket or HTTP/2 stream).
    pub sent: Arc<AtomicU64>,
    pub outcome: Option<oneshot::Receiver<Outcome>>,
}

impl Drop for Stalled {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Stalled {
    /// Waits for the server's answer.
    pub async fn answer(&mut self, within: std::time::Duration) -> Outcome {
        let rx = self.outcome.take().expect("answer taken twice");
        match tokio::time::timeout(within, rx).await {
            Ok(Ok(o)) => o,
            Ok(Err(_)) => Err("client task ended without an answer".into()),
            Err(_) => Err(format!("no answer within {within:?}")),
        }
    }
}

const CHUNK: usize = 64 << 10;

fn zeros() -> Bytes {
    static Z: [u8; CHUNK] = [0; CHUNK];
    Bytes::from_static(&Z)
}

/// A gRPC Export call whose prefix declares a `declared`-byte message; sends
/// `send` bytes of it and then nothing more, keeping the stream open.
pub async fn grpc_upload(addr: SocketAddr, path: &str, declared: usize, send: usize) -> Stalled {
    let mut uploads = grpc_uploads(addr, path, 1, declared, send, None).await;
    uploads.pop().expect("one upload")
}

/// Like `grpc_upload`, but after `send` bytes it keeps sending one byte
/// `every` so often: slow, never stalled long enough to be cut off.
pub async fn grpc_trickle(addr: SocketAddr, path: &str, declared: usize, send: usize, every: Duration) -> Stalled {
    let mut uploads = grpc_uploads(addr, path, 1, declared, send, Some(every)).await;
    uploads.pop().expect("one upload")
}

/// `streams` such calls on one HTTP/2 connection (the first one owns it).
pub async fn grpc_uploads_on_one_connection(
    addr: SocketAddr,
    path: &str,
    streams: usize,
    declared: usize,
    send: usize,
) -> Vec<Stalled> {
    grpc_uploads(addr, path, streams, declared, send, None).await
}

async fn grpc_uploads(
    addr: SocketAddr,
    path: &str,
    streams: usize,
    declared: usize,
    send: usize,
    trickle: Option<Duration>,
) -> Vec<Stalled> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .handshake::<_, ChanBody>(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    let conn_task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut out = Vec::new();
    for i in 0..streams {
        let mut sender = sender.clone();
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let req = hyper::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(ChanBody(rx))
            .unwrap();
        sender.ready().await.expect("h2 ready");
        let (otx, orx) = oneshot::channel();
        let call = tokio::spawn(async move {
            let r = match sender.send_request(req).await {
                Ok(resp) => Ok((
                    resp.status().as_u16(),
                    resp.headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok()),
                )),
                Err(e) => Err(format!("HTTP/2 error: {e}")),
            };
            let _ = otx.send(r);
            std::future::pending::<()>().await;
        });
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let feed = tokio::spawn(async move {
            let mut prefix = vec![0u8];
            prefix.extend_from_slice(&(declared as u32).to_be_bytes());
            if tx.send(Bytes::from(prefix)).await.is_err() {
                return;
            }
            let mut n = 0;
            while n < send {
                let c = zeros().slice(..CHUNK.min(send - n));
                n += c.len();
                if tx.send(c).await.is_err() {
                    return;
                }
                counter.store(n as u64, Ordering::Relaxed);
            }
            if let Some(every) = trickle {
                while n + 1 < declared {
                    tokio::time::sleep(every).await;
                    if tx.send(Bytes::from_static(&[0])).await.is_err() {
                        return;
                    }
                    n += 1;
                    counter.store(n as u64, Ordering::Relaxed);
                }
            }
            // Stall: keep the body open without sending more.
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        let mut tasks = vec![call.abort_handle(), feed.abort_handle()];
        if i == 0 {
            tasks.push(conn_task.abort_handle());
        }
        out.push(Stalled {
            tasks,
            sent,
            outcome: Some(orx),
        });
    }
    // The connection lives until the first upload is dropped: keep it last.
    out.rotate_left(1);
    out
}

/// An OTLP/HTTP POST over HTTP/1.1 with `Content-Length: declared` that
/// sends `send` bytes of the body and then nothing more.
pub async fn http1_upload(addr: SocketAddr, declared: usize, send: usize) -> Stalled {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let feed = tokio::spawn(async move {
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {declared}\r\n\r\n"
        );
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let mut n = 0;
        while n < send {
            let c = zeros().slice(..CHUNK.min(send - n));
            if wr.write_all(&c).await.is_err() {
                return;
            }
            n += c.len();
            counter.store(n as u64, Ordering::Relaxed);
        }
        let _keep = wr;
        std::future::pending::<()>().await;
    });
    let (otx, orx) = oneshot::channel();
    let read = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        let r = loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) if got.is_empty() => break Err("connection closed without an answer".to_string()),
                Ok(0) | Err(_) => break parse_status(&got),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break parse_status(&got);
                    }
                }
            }
        };
        let _ = otx.send(r);
        std::future::pending::<()>().await;
    });
    Stalled {
        tasks: vec![feed.abort_handle(), read.abort_handle()],
        sent,
        outcome: Some(orx),
    }
}

fn parse_status(head: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(head);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .map(|s| (s, None))
        .ok_or_else(|| format!("bad response head {text:?}"))
}

/// An HTTP/2 connection that announces a receive window of 0 and sends
/// `requests` gRPC calls of `msg`: sluice can send response headers (and
/// headers-only refusals) but never a response body.
pub struct ZeroWindow {
    tasks: Vec<AbortHandle>,
    /// Calls answered with headers whose body can never arrive.
    pub stuck: Arc<AtomicU64>,
    /// Calls answered headers-only (grpc-status in the headers).
    pub refused: Arc<AtomicU64>,
    /// Calls that failed at the HTTP/2 level (e.g. refused streams).
    pub failed: Arc<AtomicU64>,
}

impl Drop for ZeroWindow {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl ZeroWindow {
    pub fn answered(&self) -> u64 {
        self.stuck.load(Ordering::Relaxed) + self.refused.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

pub async fn zero_window(addr: SocketAddr, path: &'static str, msg: Bytes, requests: usize) -> ZeroWindow {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(0)
        .handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    let mut tasks = vec![tokio::spawn(async move {
        let _ = conn.await;
    })
    .abort_handle()];
    let mut z = ZeroWindow {
        tasks: Vec::new(),
        stuck: Arc::default(),
        refused: Arc::default(),
        failed: Arc::default(),
    };
    for _ in 0..requests {
        let mut sender = sender.clone();
        let msg = msg.clone();
        let (stuck, refused, failed) = (z.stuck.clone(), z.refused.clone(), z.failed.clone());
        tasks.push(
            tokio::spawn(async move {
                let req = hyper::Request::builder()
                    .method("POST")
                    .uri(format!("http://{addr}{path}"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(Full::new(msg))
                    .unwrap();
                if sender.ready().await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                match sender.send_request(req).await {
                    Ok(resp) if resp.headers().contains_key("grpc-status") => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => {
                        stuck.fetch_add(1, Ordering::Relaxed);
                        // Hold the response, never reading its body.
                        let _keep = resp;
                        std::future::pending::<()>().await;
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .abort_handle(),
        );
    }
    z.tasks = tasks;
    z
}
