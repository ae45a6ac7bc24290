//! HTTP body types: `ResponseBody` (one data frame, optional trailers: gRPC
//! responses and plain replies) and `read_body` (collects a request body,
//! zero-copy when it arrives in one frame, refusing past a size limit, charged
//! to the shard's in-flight budget, cut off when the client stops sending or
//! sends too slowly to finish within the body deadline).

use std::{
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use thiserror::Error;

use crate::net::inflight::{Held, InflightBudget};

/// A body of at most one data frame followed by optional trailers.
#[derive(Debug, Default)]
pub struct ResponseBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl ResponseBody {
    pub fn empty() -> Self {
        ResponseBody::default()
    }

    pub fn data(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        ResponseBody {
            data: (!data.is_empty()).then_some(data),
            trailers: None,
        }
    }

    pub fn with_trailers(data: Bytes, trailers: HeaderMap) -> Self {
        ResponseBody {
            data: Some(data),
            trailers: Some(trailers),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(d) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[derive(Debug, Error)]
pub enum BodyError {
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    #[error("no part of the request body arrived for {0:?}")]
    Stalled(Duration),
    #[error("the request body did not arrive within {0:?}")]
    TooSlow(Duration),
    #[error("sluice is receiving too many request bytes at once (in-flight budget full for {0:?}); retry later")]
    Busy(Duration),
    #[error("error reading request body: {0}")]
    Read(#[from] hyper::Error),
}

/// How to read one request body.
#[derive(Clone, Copy, Debug)]
pub struct BodyRules {
    /// Largest accepted body, bytes.
    pub limit: usize,
    /// The body is one gRPC message: its 5-byte prefix declares its size.
    pub grpc: bool,
    /// Longest wait for the next part of the body (twice that for room in the budget).
    pub timeout: Duration,
    /// Longest time for the whole body, from the start of the read (a body
    /// trickled a byte at a time is cut off here).
    pub deadline: Duration,
    /// On a body over the limit, read (and discard, bounded) the rest so an
    /// HTTP/1.1 connection stays usable.
    pub drain: bool,
}

/// A frame size assumed for reads whose total size is not known yet.
const FRAME_GUESS: usize = 16 << 10;

/// Reads a whole request body of at most `rules.limit` bytes, charging it to
/// `budget` (see `net::inflight`): the full size is reserved as soon as it is
/// known (Content-Length, gRPC prefix), otherwise frame by frame; after the
/// first frame, no frame is polled (so no flow-control window reopens)
/// without room in the budget. The returned `Held` keeps the bytes charged
/// until it is dropped. The body is returned as the frames it arrived in
/// (their concatenation is the body), without copying; only runs of frames
/// under 4 KiB are gathered into one buffer.
pub async fn read_body(
    body: hyper::body::Incoming,
    budget: &Rc<InflightBudget>,
    rules: BodyRules,
) -> Result<(Vec<Bytes>, Held), BodyError> {
    let mut r = Reader {
        body,
        timeout: rules.timeout,
        until: crate::clock::after(Instant::now(), rules.deadline),
        deadline: rules.deadline,
    };
    let mut held = budget.hold();
    let limit = rules.limit;
    // Whoever holds the budget makes progress or is cut off within `timeout`
    // of its last progress: waiting twice that covers a stalled holder.
    let deadline = || Instant::now() + rules.timeout * 2;
    let mut expected = r
        .body
        .size_hint()
        .exact()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if let Some(n) = expected {
        if n > limit {
            return Err(r.too_large(0, rules).await);
        }
        budget
            .reserve(&mut held, n, deadline())
            .await
            .map_err(|_| BodyError::Busy(rules.timeout * 2))?;
    }
    let mut chunks = Chunks::default();
    loop {
        let complete = expected.is_some_and(|n| chunks.total >= n);
        // The first frame of a body of unknown size is read without a
        // reservation (it is within the stream window a client may fill
        // anyway) and charged once it is here: a stream whose client has
        // not sent anything yet holds nothing.
        let first_frame = chunks.total == 0;
        if chunks.total >= held.bytes() && !complete && !first_frame {
            // Nothing reserved for the next frame: wait for room for one.
            budget
                .reserve(&mut held, FRAME_GUESS, deadline())
                .await
                .map_err(|_| BodyError::Busy(rules.timeout * 2))?;
        }
        let Some(data) = r.next().await? else { break };
        let total = chunks.total + data.len();
        if total > limit {
            return Err(r.too_large(total, rules).await);
        }
        if total > held.bytes() {
            held.force(total - held.bytes());
        }
        chunks.push(data);
        if rules.grpc && expected.is_none() {
            let mut head = [0u8; crate::grpc::PREFIX_LEN];
            let got = chunks.head(&mut head);
            // Until the whole prefix is here, `parse_prefix` says it is short.
            if let Ok((_, declared)) = crate::grpc::parse_prefix(&head[..got]) {
                let n = declared.saturating_add(crate::grpc::PREFIX_LEN);
                if n > limit {
                    return Err(r.too_large(total, rules).await);
                }
                expected = Some(n);
                if n > held.bytes() {
                    // Reserve the rest of the message before reading on.
                    let more = n - held.bytes();
                    if more > budget.capacity() / 16 {
                        held.park();
                    }
                    budget
                        .reserve(&mut held, more, deadline())
                        .await
                        .map_err(|_| BodyError::Busy(rules.timeout * 2))?;
                }
            }
        }
    }
    Ok((chunks.finish(), held))
}

/// Frames at least this large are kept as chunks of their own; smaller ones
/// are gathered into one buffer (so a body sent in tiny frames costs a copy
/// of those bytes, not a chunk header and a pinned receive buffer each).
const OWN_CHUNK: usize = 4 << 10;

/// A body as it arrives: frames kept as they came, runs of small ones
/// gathered (a lone small frame, such as a whole small request, is kept).
#[derive(Default)]
struct Chunks {
    done: Vec<Bytes>,
    /// A small frame not yet followed by another.
    lone: Option<Bytes>,
    /// Two or more small frames in a row, copied together.
    small: BytesMut,
    total: usize,
}

impl Chunks {
    fn push(&mut self, data: Bytes) {
        self.total += data.len();
        if data.is_empty() {
            return;
        }
        if data.len() >= OWN_CHUNK {
            self.seal();
            self.done.push(data);
        } else if self.lone.is_none() && self.small.is_empty() {
            self.lone = Some(data);
        } else {
            if let Some(first) = self.lone.take() {
                self.small.extend_from_slice(&first);
            }
            self.small.extend_from_slice(&data);
        }
    }

    fn seal(&mut self) {
        if let Some(first) = self.lone.take() {
            self.done.push(first);
        } else if !self.small.is_empty() {
            self.done.push(self.small.split().freeze());
        }
    }

    /// Copies the body's first bytes into `out`; returns how many arrived.
    fn head(&self, out: &mut [u8]) -> usize {
        let pending = [self.lone.as_deref().unwrap_or_default(), &self.small[..]];
        crate::payload::copy_prefix(self.done.iter().map(|c| &c[..]).chain(pending), out)
    }

    fn finish(mut self) -> Vec<Bytes> {
        self.seal();
        self.done
    }
}

/// Most a refused HTTP/1.1 request's body is read (and discarded) to keep its
/// connection usable; a larger body closes the connection instead (the same
/// bound as Go's net/http, which most OTLP/HTTP clients meet in the Collector).
pub const DISCARD_CAP: usize = 256 << 10;

/// Reads and discards the body of a request refused before its body was read
/// (wrong path, method, media type or encoding; failed authentication) so an
/// HTTP/1.1 connection can carry the next request. Bounded by `DISCARD_CAP`
/// and by the body's progress timeout and deadline. Returns whether the whole
/// body was read: if not, the reply must close the connection.
pub async fn discard(body: hyper::body::Incoming, rules: BodyRules) -> bool {
    if body.is_end_stream() {
        return true;
    }
    if body.size_hint().lower() > DISCARD_CAP as u64 {
        return false;
    }
    let mut r = Reader {
        body,
        timeout: rules.timeout,
        until: crate::clock::after(Instant::now(), rules.deadline),
        deadline: rules.deadline,
    };
    let mut read = 0usize;
    while read <= DISCARD_CAP {
        match r.next().await {
            Ok(Some(d)) => read += d.len(),
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
    false
}

/// Polls a body's frames, each wait bounded by `timeout`, all of them by `until`.
struct Reader {
    body: hyper::body::Incoming,
    timeout: Duration,
    until: Instant,
    deadline: Duration,
}

impl Reader {
    /// The next data frame; `None` at the end of the body.
    async fn next(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            let mut fut = self.body.frame();
            // Most frames are already buffered: no timer for those.
            let polled = match futures_lite::future::poll_once(&mut fut).await {
                Some(f) => f,
                None => {
                    let left = self.until.saturating_duration_since(Instant::now());
                    let wait = self.timeout.min(left);
                    let err = if wait < self.timeout {
                        BodyError::TooSlow(self.deadline)
                    } else {
                        BodyError::Stalled(self.timeout)
                    };
                    if wait.is_zero() {
                        return Err(err);
                    }
                    glommio::timer::timeout(wait, async { Ok(fut.await) })
                        .await
                        .map_err(|_| err)?
                }
            };
            match polled {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        return Ok(Some(data));
                    }
                    // Trailers: keep going to the end.
                }
            }
        }
    }

    /// Reads and discards the rest of an oversized body when `rules.drain`
    /// (bounded in bytes and by the progress timeout), then says it is too large.
    async fn too_large(&mut self, mut drained: usize, rules: BodyRules) -> BodyError {
        let cap = rules.limit.saturating_mul(4).max(64 << 20);
        let declared = self.body.size_hint().exact().unwrap_or(0);
        if rules.drain && declared <= cap as u64 {
            while drained <= cap {
                match self.next().await {
                    Ok(Some(d)) => drained += d.len(),
                    _ => break,
                }
            }
        }
        BodyError::TooLarge(rules.limit)
    }
}
