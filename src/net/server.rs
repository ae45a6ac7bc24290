//! The accept loop shared by every listener of a shard: accepts on a
//! SO_REUSEPORT glommio listener and serves each connection with hyper
//! (HTTP/1.1 and h2c auto-detected), until the shard starts draining.

use std::{convert::Infallible, future::Future, rc::Rc};

use glommio::net::TcpListener;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::server::conn::auto;

use crate::{
    net::{
        body::ResponseBody,
        hyper_io::{HyperStream, ShardExecutor},
    },
    shutdown::Lifecycle,
};

/// HTTP/2 settings for receivers: large windows and frames so a request body
/// usually arrives in one frame (no copy) and flow control never throttles.
#[derive(Clone, Copy, Debug)]
pub struct ServerTuning {
    pub max_concurrent_streams: u32,
    pub max_frame_size: u32,
    pub stream_window: u32,
    pub connection_window: u32,
}

impl Default for ServerTuning {
    fn default() -> Self {
        ServerTuning {
            max_concurrent_streams: 1024,
            max_frame_size: 1 << 20,
            stream_window: 8 << 20,
            connection_window: 32 << 20,
        }
    }
}

/// Binds `addr` with SO_REUSEPORT (glommio sets it), so every shard can bind
/// the same port and the kernel spreads connections across them.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(std::io::Error::from)
}

/// Serves connections from `listener` with `handler` until draining starts.
pub async fn serve<H, F>(listener: TcpListener, lifecycle: Rc<Lifecycle>, tuning: ServerTuning, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + 'static,
    F: Future<Output = Response<ResponseBody>> + 'static,
{
    let mut builder = auto::Builder::new(ShardExecutor);
    builder.http1().keep_alive(true).timer(crate::net::timer::GlommioTimer);
    builder
        .http2()
        .timer(crate::net::timer::GlommioTimer)
        .max_concurrent_streams(tuning.max_concurrent_streams)
        .max_frame_size(tuning.max_frame_size)
        .initial_stream_window_size(tuning.stream_window)
        .initial_connection_window_size(tuning.connection_window)
        .max_send_buf_size(1 << 20);
    let builder = Rc::new(builder);
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
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let builder = builder.clone();
        glommio::spawn_local(async move {
            let io = HyperStream::new(stream);
            let svc = hyper::service::service_fn(move |req| {
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            if let Err(e) = builder.serve_connection(io, svc).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        })
        .detach();
    }
}
