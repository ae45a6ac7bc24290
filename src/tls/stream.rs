//! One connection as hyper sees it, plaintext or TLS: the plain case is the
//! zero-copy `HyperStream`; the TLS cases run rustls (futures-rustls) over the
//! same glommio socket, on the shard that owns it.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::net::hyper_io::HyperStream;

/// Largest plaintext read at once from a TLS stream: one TLS record.
const TLS_READ: usize = 16 << 10;

pub enum Stream {
    Plain(HyperStream),
    Server(Box<futures_rustls::server::TlsStream<TcpStream>>),
    Client(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Stream::Plain",
            Stream::Server(_) => "Stream::Server(tls)",
            Stream::Client(_) => "Stream::Client(tls)",
        })
    }
}

/// Reads from a TLS stream into hyper's buffer: rustls copies decrypted bytes
/// out, so the part of the buffer handed over is zeroed first (at most one
/// record's worth) rather than exposing uninitialised memory.
fn tls_read<S: AsyncRead + Unpin>(
    s: &mut S,
    cx: &mut Context<'_>,
    mut buf: hyper::rt::ReadBufCursor<'_>,
) -> Poll<io::Result<()>> {
    // SAFETY: only the first `n` bytes, which are initialised (zeroed) here,
    // are exposed as `&mut [u8]`, and `advance` is called with the number of
    // bytes the TLS stream reported writing into that slice (at most `n`).
    unsafe {
        let uninit = buf.as_mut();
        let n = uninit.len().min(TLS_READ);
        let head = &mut uninit[..n];
        for b in head.iter_mut() {
            b.write(0);
        }
        let slice = std::slice::from_raw_parts_mut(head.as_mut_ptr().cast::<u8>(), n);
        match Pin::new(s).poll_read(cx, slice) {
            Poll::Ready(Ok(read)) => {
                buf.advance(read.min(n));
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(p) => Pin::new(p).poll_read(cx, buf),
            Stream::Server(s) => tls_read(&mut **s, cx, buf),
            Stream::Client(s) => tls_read(&mut **s, cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(p) => hyper::rt::Write::poll_write(Pin::new(p), cx, buf),
            Stream::Server(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(p) => hyper::rt::Write::poll_write_vectored(Pin::new(p), cx, bufs),
            Stream::Server(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Stream::Client(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(p) => hyper::rt::Write::is_write_vectored(p),
            // rustls gathers the slices into its records itself.
            Stream::Server(_) | Stream::Client(_) => true,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(p) => hyper::rt::Write::poll_flush(Pin::new(p), cx),
            Stream::Server(s) => Pin::new(&mut **s).poll_flush(cx),
            Stream::Client(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(p) => hyper::rt::Write::poll_shutdown(Pin::new(p), cx),
            Stream::Server(s) => Pin::new(&mut **s).poll_close(cx),
            Stream::Client(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}
