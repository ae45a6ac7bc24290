//! Adapters that let hyper 1.x run on a glommio executor: an `Executor` that
//! spawns on the current shard, and `HyperStream`, a glommio `TcpStream`
//! implementing hyper's `Read`/`Write` (reading straight into hyper's
//! uninitialised buffer, no zero-fill; vectored writes through `sendmsg`).

use std::{
    future::Future,
    io::{self, IoSlice},
    os::fd::AsRawFd,
    pin::Pin,
    task::{Context, Poll},
};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// Spawns hyper's background tasks (h2 connection drivers) on the current shard.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardExecutor;

impl<F> hyper::rt::Executor<F> for ShardExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        glommio::spawn_local(fut).detach();
    }
}

/// A glommio TCP stream usable by hyper.
pub struct HyperStream(pub TcpStream);

impl HyperStream {
    /// Wraps a connected stream, disabling Nagle's algorithm (gRPC is request/response).
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        HyperStream(stream)
    }
}

impl hyper::rt::Read for HyperStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: glommio's non-buffered `TcpStream::poll_read` hands the slice's
        // pointer and length to recv(2) and never reads from it, so exposing the
        // uninitialised tail of hyper's buffer as `&mut [u8]` only lets the kernel
        // write into it. `advance(n)` is called with exactly the number of bytes
        // recv(2) reported as written.
        unsafe {
            let uninit = buf.as_mut();
            let slice = std::slice::from_raw_parts_mut(uninit.as_mut_ptr().cast::<u8>(), uninit.len());
            match Pin::new(&mut self.0).poll_read(cx, slice) {
                Poll::Ready(Ok(n)) => {
                    buf.advance(n);
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        }
    }
}

impl hyper::rt::Write for HyperStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let iovcnt = bufs.len().min(1024);
        if iovcnt == 0 {
            return Poll::Ready(Ok(0));
        }
        // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` on Unix; the
        // slices outlive the call; the fd is owned by the stream we borrow.
        // MSG_DONTWAIT keeps the call non-blocking whatever the fd's mode.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr().cast::<libc::iovec>().cast_mut();
            msg.msg_iovlen = iovcnt as _;
            libc::sendmsg(self.0.as_raw_fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n >= 0 {
            return Poll::Ready(Ok(n as usize));
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            // Not writable now: let glommio register for writability with the
            // first non-empty slice (it writes it if the socket became writable).
            let first = bufs.iter().find(|b| !b.is_empty()).map(|b| &**b).unwrap_or(&[]);
            return Pin::new(&mut self.0).poll_write(cx, first);
        }
        Poll::Ready(Err(err))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
