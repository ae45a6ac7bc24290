//! The accept loop shared by every listener of a shard: accepts on a
//! SO_REUSEPORT glommio listener and serves each connection with hyper
//! (HTTP/1.1 and h2c auto-detected), until the shard starts draining. Each
//! connection takes a slot of the shard's connection limit and runs beside
//! its watchdog (`conn_watch`), which shuts it down when it stays quiet.

use std::{
    cell::Cell,
    convert::Infallible,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use glommio::net::TcpListener;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::server::conn::auto;

use crate::{
    net::{
        accept::{AcceptErrors, ShardConns},
        body::ResponseBody,
        conn_watch::{self, Activity, Busy, ConnRules, Watched},
        hyper_io::ShardExecutor,
    },
    shutdown::Lifecycle,
};

/// Connection settings. The HTTP/2 stream window bounds what a client can
/// make sluice buffer for a stream before the request handler reads it (and
/// charges it to the in-flight budget). The connection window is sized to
/// cover every stream's window plus 1 MiB: a stream waiting for the budget
/// holds at most its own window of the connection's, so streams that got
/// their reservation always have room to receive the rest (a smaller
/// connection window deadlocks streams admitted by the budget behind streams
/// waiting for it). Frames are at most one stream window.
///
/// Floods are bounded by h2 itself plus these settings: a request's headers
/// (HEADERS + CONTINUATION) by `max_header_list_size` (the connection is
/// closed past it); streams reset by the client before they were served
/// ("rapid reset") by `max_pending_accept_reset_streams` (GOAWAY
/// ENHANCE_YOUR_CALM past it); streams sluice resets by
/// `max_local_error_reset_streams`; SETTINGS and PING floods by h2
/// acknowledging each before it reads the next frame (a client that does not
/// read its acknowledgements stops being read), and by the watchdog, which
/// closes connections that send no request.
#[derive(Clone, Copy, Debug)]
pub struct ServerTuning {
    pub max_concurrent_streams: u32,
    pub max_frame_size: u32,
    pub stream_window: u32,
    /// 0: every stream's window plus 1 MiB (see above).
    pub connection_window: u32,
    /// Response bytes h2 buffers per stream beyond the client's window.
    pub max_send_buf: usize,
    /// HTTP/1.1 read buffer (bounds a request head and unread body bytes).
    pub h1_max_buf: usize,
    /// Responses a connection may leave unread (waiting for its flow-control
    /// window) before new requests on it are refused without being read.
    pub max_unread_responses: u32,
    /// Largest request header block (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE).
    pub max_header_list_size: u32,
    pub max_pending_accept_reset_streams: usize,
    pub max_local_error_reset_streams: usize,
    /// HTTP/2 PING a quiet connection this often (gRPC `keepalive.time`) ...
    pub ping_interval: Option<std::time::Duration>,
    /// ... and close it when the PING is not answered within this.
    pub ping_timeout: std::time::Duration,
    /// When quiet connections are closed.
    pub conn: ConnRules,
}

impl Default for ServerTuning {
    fn default() -> Self {
        ServerTuning {
            max_concurrent_streams: 1024,
            max_frame_size: 64 << 10,
            stream_window: 64 << 10,
            connection_window: 0,
            max_send_buf: 64 << 10,
            h1_max_buf: 256 << 10,
            max_unread_responses: 32,
            max_header_list_size: 16 << 10,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            ping_interval: None,
            ping_timeout: std::time::Duration::from_secs(20),
            conn: ConnRules::default(),
        }
    }
}

impl ServerTuning {
    /// The HTTP/2 connection window in use.
    pub fn connection_window_size(&self) -> u32 {
        if self.connection_window > 0 {
            return self.connection_window;
        }
        let all = u64::from(self.max_concurrent_streams) * u64::from(self.stream_window) + (1 << 20);
        all.min(i32::MAX as u64) as u32
    }
}

/// Per-connection state shared by the connection's requests.
#[derive(Debug, Default)]
struct ConnState {
    /// Responses created but not yet taken by the connection (sent or dropped).
    unread: Cell<u32>,
}

/// A response body that counts as unread on its connection until it drops
/// (and keeps the connection busy for its watchdog until then).
pub struct TrackedBody {
    inner: ResponseBody,
    conn: Rc<ConnState>,
    _busy: Busy,
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.conn.unread.set(self.conn.unread.get().saturating_sub(1));
    }
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a request on a connection whose client leaves responses
/// unread: headers only (no flow control applies), so the stream closes at once.
fn unread_refusal(req: &Request<Incoming>, unread: u32) -> Response<ResponseBody> {
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let msg = format!("{unread} responses on this connection are not read by the client; refusing new requests on it");
    if grpc {
        crate::receiver::otlp_grpc::status_response(crate::grpc::Code::Unavailable, &msg, None)
    } else {
        let mut r = Response::new(ResponseBody::empty());
        *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        r
    }
}

/// Binds `addr` with SO_REUSEPORT (glommio sets it), so every shard can bind
/// the same port and the kernel spreads connections across them.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(std::io::Error::from)
}

/// Serves connections from `listener` with `handler` until draining starts;
/// each connection takes a slot of `conns` or is closed at once; with `tls`,
/// its TLS handshake runs first (on this shard).
pub async fn serve<H, F>(
    listener: TcpListener,
    lifecycle: Rc<Lifecycle>,
    tuning: ServerTuning,
    conns: Rc<ShardConns>,
    tls: Option<Rc<crate::tls::server::Acceptor>>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + 'static,
    F: Future<Output = Response<ResponseBody>> + 'static,
{
    let mut builder = auto::Builder::new(ShardExecutor);
    builder
        .http1()
        .keep_alive(true)
        .timer(crate::net::timer::GlommioTimer)
        // Request heads are timed by the connection's watchdog (hyper's timer
        // would also run while a keep-alive connection waits, cutting
        // `idle_timeout` short).
        .header_read_timeout(None)
        .max_buf_size(tuning.h1_max_buf);
    builder
        .http2()
        .timer(crate::net::timer::GlommioTimer)
        .max_concurrent_streams(tuning.max_concurrent_streams)
        .max_frame_size(tuning.max_frame_size)
        .initial_stream_window_size(tuning.stream_window)
        .initial_connection_window_size(tuning.connection_window_size())
        .max_send_buf_size(tuning.max_send_buf)
        .max_header_list_size(tuning.max_header_list_size)
        .max_pending_accept_reset_streams(tuning.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(tuning.max_local_error_reset_streams)
        .keep_alive_interval(tuning.ping_interval)
        .keep_alive_timeout(tuning.ping_timeout);
    let builder = Rc::new(builder);
    let mut errors = AcceptErrors::default();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            lifecycle.drained_signal().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                let e = std::io::Error::from(e);
                let pause = errors.failed(&e, &conns);
                // The pause ends early if draining starts.
                futures_lite::future::or(glommio::timer::sleep(pause), lifecycle.drained_signal()).await;
                continue;
            }
        };
        errors.succeeded();
        // Over the limit: dropping the stream closes it at once.
        let Some(slot) = conns.admit() else { continue };
        let handler = handler.clone();
        let builder = builder.clone();
        let conns = conns.clone();
        let tls = tls.clone();
        glommio::spawn_local(async move {
            let Some(stream) = crate::tls::server::accept(tls.as_deref(), stream).await else {
                return;
            };
            let activity = Activity::new();
            let io = Watched::new(stream, activity.clone());
            let conn = Rc::new(ConnState::default());
            let max_unread = tuning.max_unread_responses;
            let on_request = activity.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let busy = on_request.begin(req.version() == http::Version::HTTP_2);
                let conn = conn.clone();
                let unread = conn.unread.get();
                // Boxed: a stream whose response waits for the client's window
                // keeps only the small response, not the handler's state.
                let fut: Pin<Box<dyn Future<Output = Response<ResponseBody>>>> = if unread >= max_unread {
                    Box::pin(std::future::ready(unread_refusal(&req, unread)))
                } else {
                    Box::pin(handler(req))
                };
                async move {
                    let resp = fut.await;
                    conn.unread.set(conn.unread.get() + 1);
                    Ok::<_, Infallible>(resp.map(|inner| TrackedBody {
                        inner,
                        conn,
                        _busy: busy,
                    }))
                }
            });
            let mut served = std::pin::pin!(builder.serve_connection(io, svc));
            let first = futures_lite::future::or(async { Ok(served.as_mut().await) }, async {
                Err(conn_watch::Watchdog::new(activity.clone(), tuning.conn).await)
            })
            .await;
            match first {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
                Err(reason) => {
                    conns.closed(reason);
                    tracing::debug!(reason = reason.name(), "closing a quiet connection");
                    served.as_mut().graceful_shutdown();
                    let finish = async {
                        let _ = served.as_mut().await;
                    };
                    match reason.grace(&tuning.conn) {
                        // Past the grace, dropping the connection closes it.
                        Some(grace) => futures_lite::future::or(finish, crate::clock::sleep(grace)).await,
                        None => finish.await,
                    }
                }
            }
            drop(slot);
            // What the connection leaves freed goes back to the OS.
            crate::net::inflight::trim_soon();
        })
        .detach();
    }
}
