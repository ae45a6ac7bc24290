//! The read-ahead between a TCP socket and hyper: one large `recv` feeding
//! several of h2's small reads from memory.
//!
//! h2 reads into a buffer of 8 KiB or of the rest of the frame it is
//! decoding, so a 100-span gRPC request in 16 KiB frames took 2-3 `recv`s, and
//! every `recv` that frees receive-window space makes the kernel send a
//! window update, which on loopback runs the client's pending transmit on
//! this core. One `recv` of up to `AHEAD` bytes feeds many of h2's reads
//! from memory instead (a copy of bytes still in cache). The buffer is taken
//! from a per-thread pool when a read needs it and returned as soon as it is
//! drained, so idle connections hold nothing. h2 reads until a read would
//! block, so a buffer normally drains within the connection's turn; one that
//! stops reading (its client does not read responses) keeps its buffer, and
//! at most `HELD` buffers are out per thread: past that, reads go straight
//! into h2's buffer (at most `HELD × AHEAD` = 16 MiB per shard).
//!
//! Measured (one shard, 16 connections × 64 streams of 100-span requests):
//! 2.6 `recv`s per request before, 0.1 after; under h2load 64 KiB reads gave
//! most of the gain, under `sluice bench` (whose sender waits on every window
//! update) 256 KiB gave 5.1-5.2 M spans per CPU-second against 4.0-4.4 M with
//! 64 KiB.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use futures_lite::AsyncRead;
use glommio::net::TcpStream;

/// Bytes received but not yet handed to hyper.
#[derive(Default)]
pub struct ReadAhead {
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
}

/// Size of one read-ahead `recv`.
const AHEAD: usize = 256 << 10;
/// Drained buffers a thread keeps for reuse.
const POOLED: usize = 8;
/// Buffers a thread lends out at once.
const HELD: usize = 64;

thread_local! {
    static POOL: std::cell::RefCell<Vec<Box<[u8]>>> = const { std::cell::RefCell::new(Vec::new()) };
    static OUT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl ReadAhead {
    /// Whether no received byte is waiting here.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// hyper's read through the read-ahead: what is buffered first, else one
    /// `recv` of up to `AHEAD` bytes (straight into hyper's buffer when that
    /// is as large, or when `HELD` buffers are out).
    pub fn poll_read(
        &mut self,
        tcp: &mut TcpStream,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: `drain_into` only writes into the cursor's unfilled memory,
        // and `advance(n)` is called with exactly the number of bytes it wrote.
        unsafe {
            if buf.as_mut().is_empty() {
                // Nothing to read into (recv(2) with no room reads nothing).
                return Poll::Ready(Ok(()));
            }
            let n = self.drain_into(buf.as_mut());
            if n > 0 {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
        }
        // SAFETY: as in `drain_into` for the copy below; for a direct read,
        // glommio's non-buffered `TcpStream::poll_read` hands the slice's
        // pointer and length to recv(2) and never reads from it, so exposing
        // the uninitialised tail of hyper's buffer as `&mut [u8]` only lets the
        // kernel write into it; `advance(n)` is called with exactly the number
        // of bytes recv(2) reported as written.
        unsafe {
            let uninit = buf.as_mut();
            let ahead = if uninit.len() >= AHEAD { None } else { ReadAhead::take() };
            let Some(ahead) = ahead else {
                let slice = std::slice::from_raw_parts_mut(uninit.as_mut_ptr().cast::<u8>(), uninit.len());
                return Pin::new(tcp).poll_read(cx, slice).map_ok(|n| buf.advance(n));
            };
            // Held by `self` from here, so the lent count stays right on every path.
            let ahead = self.buf.insert(ahead);
            match Pin::new(tcp).poll_read(cx, ahead) {
                Poll::Ready(Ok(got)) => {
                    self.end = got;
                    // got == 0 (end of stream) releases the buffer and
                    // reports nothing read, as recv(2) did.
                    let n = self.drain_into(buf.as_mut());
                    buf.advance(n);
                    Poll::Ready(Ok(()))
                }
                other => {
                    self.release();
                    other.map_ok(|_| ())
                }
            }
        }
    }

    /// Copies what is buffered into `out`; returns the count.
    fn drain_into(&mut self, out: &mut [std::mem::MaybeUninit<u8>]) -> usize {
        let Some(buf) = &self.buf else { return 0 };
        let n = out.len().min(self.end - self.start);
        // SAFETY: `n` bytes are readable at `start` (within `end`) and
        // writable in `out`; the two never overlap (`out` is hyper's).
        unsafe {
            std::ptr::copy_nonoverlapping(buf[self.start..].as_ptr(), out.as_mut_ptr().cast::<u8>(), n);
        }
        self.start += n;
        if self.start == self.end {
            self.release();
        }
        n
    }

    fn release(&mut self) {
        if let Some(buf) = self.buf.take() {
            OUT.set(OUT.get() - 1);
            POOL.with_borrow_mut(|p| {
                if p.len() < POOLED {
                    p.push(buf);
                }
            });
        }
        self.start = 0;
        self.end = 0;
    }

    /// A buffer to read ahead into, unless `HELD` are out already.
    fn take() -> Option<Box<[u8]>> {
        if OUT.get() >= HELD {
            return None;
        }
        OUT.set(OUT.get() + 1);
        Some(
            POOL.with_borrow_mut(|p| p.pop())
                .unwrap_or_else(|| vec![0u8; AHEAD].into_boxed_slice()),
        )
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads through the read-ahead in the small, uneven pieces h2 asks for
    /// give back exactly the bytes sent, in order, then the end of stream;
    /// the drained buffer goes back to the thread's pool.
    #[test]
    fn read_ahead_hands_over_every_byte_in_order() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(|| async {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let sent: Vec<u8> = (0..3 * AHEAD + 12345).map(|i| (i * 7 % 251) as u8).collect();
                let writer = {
                    let sent = sent.clone();
                    std::thread::spawn(move || {
                        use std::io::Write;
                        let mut s = std::net::TcpStream::connect(addr).unwrap();
                        for part in sent.chunks(10_000) {
                            s.write_all(part).unwrap();
                        }
                    })
                };
                let mut tcp = listener.accept().await.unwrap();
                let mut ahead = ReadAhead::default();
                let mut got = Vec::new();
                let sizes = [1usize, 9, 8192, 16393, 3, 100_000, 4406];
                for i in 0.. {
                    let mut space = vec![0u8; sizes[i % sizes.len()]];
                    let mut rb = hyper::rt::ReadBuf::new(&mut space);
                    std::future::poll_fn(|cx| ahead.poll_read(&mut tcp, cx, rb.unfilled()))
                        .await
                        .unwrap();
                    let n = rb.filled().len();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(rb.filled());
                }
                writer.join().unwrap();
                assert_eq!(got.len(), sent.len());
                assert!(got == sent, "bytes differ");
                assert!(ahead.buf.is_none(), "a drained read-ahead keeps no buffer");
                assert!(POOL.with_borrow(|p| !p.is_empty()), "the buffer went back to the pool");
                assert_eq!(OUT.get(), 0, "no buffer is counted as lent");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
