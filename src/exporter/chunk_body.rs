//! The request body exporters send: a payload's chunks (the frames its
//! requests arrived in, never joined) behind an optional gRPC prefix.
//!
//! Two shapes. `ChunkBody::new` yields each chunk as a data frame of its own
//! (the load generator, which sends a request as a client's frames).
//! `ChunkBody::gathered` yields the whole body as one `ChunkBuf` over all the
//! chunks, so h2 cuts DATA frames at the peer's frame size and window and
//! writes each with one vectored `sendmsg` over the chunks it covers. Why:
//! h2 writes every DATA frame with a `sendmsg` of its own, and a forwarded
//! batch of 2048 spans is ~40 chunks of 16 KiB and ~4 KiB; gathered, a sluice
//! gateway (64 KiB frames) gets it in ~7 writes, a 16 KiB-frame backend in
//! ~26 full frames instead of ~40 uneven ones. Still no copy.

use std::{
    collections::VecDeque,
    io::IoSlice,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};

/// Several `Bytes` read as one buffer (`chunks_vectored` hands out all of
/// them, so one write covers many).
#[derive(Debug, Default)]
pub struct ChunkBuf {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl ChunkBuf {
    fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(Bytes::len).sum();
        ChunkBuf { chunks, remaining }
    }
}

impl Buf for ChunkBuf {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| &c[..])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of a ChunkBuf");
        self.remaining -= cnt;
        while cnt > 0 {
            let front = self.chunks.front_mut().expect("remaining counts the chunks");
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.chunks.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, c) in dst.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(c);
            n += 1;
        }
        n
    }
}

/// A request body over a payload's chunks (see the module comment).
#[derive(Debug, Default)]
pub struct ChunkBody {
    frames: VecDeque<ChunkBuf>,
    remaining: u64,
}

impl ChunkBody {
    /// Each chunk its own data frame, after `prefix` (empty ones skipped).
    pub fn new(prefix: Option<Bytes>, chunks: Vec<Bytes>) -> Self {
        let frames: VecDeque<ChunkBuf> = prefix
            .into_iter()
            .chain(chunks)
            .filter(|c| !c.is_empty())
            .map(|c| ChunkBuf::new([c]))
            .collect();
        Self::of(frames)
    }

    /// `prefix` and every chunk as one buffer, framed by h2 at the peer's
    /// frame size.
    pub fn gathered(prefix: Option<Bytes>, chunks: Vec<Bytes>) -> Self {
        let all = ChunkBuf::new(prefix.into_iter().chain(chunks));
        Self::of((all.remaining > 0).then_some(all).into_iter().collect())
    }

    fn of(frames: VecDeque<ChunkBuf>) -> Self {
        let remaining = frames.iter().map(|f| f.remaining as u64).sum();
        ChunkBody { frames, remaining }
    }

    pub fn empty() -> Self {
        ChunkBody::default()
    }
}

impl Body for ChunkBody {
    type Data = ChunkBuf;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<ChunkBuf>, Self::Error>>> {
        let this = self.get_mut();
        let next = this.frames.pop_front();
        if let Some(b) = &next {
            this.remaining -= b.remaining as u64;
        }
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn frames(body: ChunkBody) -> Vec<Vec<u8>> {
        assert_eq!(body.size_hint().exact(), Some(8));
        futures_lite::future::block_on(async {
            let mut b = body;
            let mut out = Vec::new();
            while let Some(f) = b.frame().await {
                let mut d = f.unwrap().into_data().unwrap();
                let mut v = Vec::new();
                while d.has_remaining() {
                    let c = d.chunk().to_vec();
                    d.advance(c.len());
                    v.extend(c);
                }
                out.push(v);
            }
            assert!(b.is_end_stream());
            out
        })
    }

    fn parts() -> (Option<Bytes>, Vec<Bytes>) {
        (
            Some(Bytes::from_static(b"pre")),
            vec![Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"cde")],
        )
    }

    #[test]
    fn a_frame_per_chunk() {
        let (p, c) = parts();
        assert_eq!(
            frames(ChunkBody::new(p, c)),
            vec![b"pre".to_vec(), b"ab".to_vec(), b"cde".to_vec()]
        );
    }

    #[test]
    fn gathered_into_one_buffer_read_across_chunks() {
        let (p, c) = parts();
        assert_eq!(frames(ChunkBody::gathered(p, c)), vec![b"preabcde".to_vec()]);
        let (p, c) = parts();
        let mut b = ChunkBuf::new(p.into_iter().chain(c));
        {
            let mut io = [IoSlice::new(&[]); 8];
            assert_eq!(b.chunks_vectored(&mut io), 3);
        }
        b.advance(4);
        assert_eq!((b.remaining(), b.chunk()), (4, &b"b"[..]));
        {
            let mut io = [IoSlice::new(&[]); 8];
            let n = b.chunks_vectored(&mut io);
            let seen: Vec<u8> = io[..n].iter().flat_map(|s| s.to_vec()).collect();
            assert_eq!(seen, b"bcde");
        }
        assert_eq!(b.copy_to_bytes(4), Bytes::from_static(b"bcde"));
        assert_eq!(b.remaining(), 0);
        assert!(ChunkBody::gathered(None, vec![Bytes::new()]).is_end_stream());
    }
}
