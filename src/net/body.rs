//! HTTP body types: `ResponseBody` (one data frame, optional trailers: gRPC
//! responses and plain replies) and `read_limited` (collects a request body,
//! zero-copy when it arrives in one frame, refusing past a size limit).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use thiserror::Error;

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
    #[error("error reading request body: {0}")]
    Read(#[from] hyper::Error),
}

/// Reads a whole request body of at most `limit` bytes. A body that arrives as a
/// single frame is returned as is, without copying.
pub async fn read_limited(mut body: hyper::body::Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > limit {
            // Drain (bounded) so an HTTP/1.1 connection stays usable.
            let mut drained = total;
            while let Some(Ok(f)) = body.frame().await {
                drained += f.data_ref().map_or(0, |d| d.len());
                if drained > limit.saturating_mul(4).max(64 << 20) {
                    break;
                }
            }
            return Err(BodyError::TooLarge(limit));
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity((f.len() + data.len()) * 2);
                b.extend_from_slice(f);
                b.extend_from_slice(&data);
                rest = Some(b);
            }
            (Some(_), Some(b)) => b.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}
