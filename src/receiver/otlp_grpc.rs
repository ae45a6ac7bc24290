//! OTLP/gRPC receiver: unary `Export` calls of the trace, metrics and logs
//! services over h2c, with every `grpc-encoding` the Collector speaks (gzip,
//! zstd, snappy, deflate), size limits, authentication and gRPC status codes.

use std::rc::Rc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::{
    compression::{self, Compression},
    grpc::{self, Code},
    net::body::{read_body, BodyError, BodyRules, ResponseBody},
    receiver::{ReceiverCtx, Rejection, RETRY_HINT},
    signal::Signal,
};

/// An empty `Export*ServiceResponse`, gRPC-framed.
const EMPTY_RESPONSE: &[u8] = &[0, 0, 0, 0, 0];

/// A trailers-only gRPC error response.
pub fn status_response(code: Code, message: &str, retry: Option<std::time::Duration>) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::empty());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", code.as_header());
    if !message.is_empty() {
        h.insert("grpc-message", grpc::encode_message(message));
    }
    if retry.is_some() {
        h.insert(
            "grpc-status-details-bin",
            grpc::status_details_bin(code, message, retry),
        );
    }
    r
}

fn ok_response() -> Response<ResponseBody> {
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", Code::Ok.as_header());
    let mut r = Response::new(ResponseBody::with_trailers(
        Bytes::from_static(EMPTY_RESPONSE),
        trailers,
    ));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    r
}

/// Handles one gRPC request.
pub async fn handle(ctx: Rc<ReceiverCtx>, req: Request<Incoming>) -> Response<ResponseBody> {
    let _inflight = ctx.lifecycle.enter();
    let is_grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        let mut r = Response::new(ResponseBody::data("expected content-type application/grpc"));
        *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return r;
    }
    let Some(signal) = Signal::from_grpc_path(req.uri().path()) else {
        return status_response(
            Code::Unimplemented,
            &format!("unknown method {}", req.uri().path()),
            None,
        );
    };
    if req.method() != http::Method::POST {
        return status_response(Code::Unimplemented, "gRPC requires POST", None);
    }
    if let Err(e) = ctx.authenticate(signal, req.headers()).await {
        return status_response(Code::Unauthenticated, &e.to_string(), None);
    }
    let codec = match req.headers().get("grpc-encoding").map(|v| v.as_bytes()) {
        None => Compression::None,
        Some(v) => match Compression::from_token(v) {
            // `x-snappy-framed` is an HTTP name; gRPC's `snappy` covers it.
            Some(c) if c != Compression::SnappyFramed => c,
            _ => {
                let mut r = status_response(
                    Code::Unimplemented,
                    &format!("unsupported grpc-encoding {}", String::from_utf8_lossy(v)),
                    None,
                );
                r.headers_mut().insert(
                    "grpc-accept-encoding",
                    HeaderValue::from_static(compression::GRPC_ACCEPT_ENCODING),
                );
                return r;
            }
        },
    };
    let limit = ctx.max_message;
    let too_large = |what: &str| {
        ctx.refused_unread(signal);
        status_response(
            Code::ResourceExhausted,
            &format!("{what} larger than max_recv_msg_size ({limit} bytes)"),
            None,
        )
    };
    let rules = BodyRules {
        limit: limit + grpc::PREFIX_LEN,
        grpc: true,
        timeout: ctx.body_timeout,
        deadline: ctx.body_deadline,
        drain: false,
    };
    let (body, mut held) = match read_body(req.into_body(), &ctx.budget, rules).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(_)) => return too_large("message"),
        Err(e @ (BodyError::Stalled(_) | BodyError::TooSlow(_))) => {
            ctx.refused_unread(signal);
            return status_response(Code::DeadlineExceeded, &e.to_string(), None);
        }
        Err(e @ BodyError::Busy(_)) => {
            ctx.refused_unread(signal);
            return status_response(Code::ResourceExhausted, &e.to_string(), Some(RETRY_HINT));
        }
        Err(e) => return status_response(Code::Internal, &e.to_string(), None),
    };
    let (compressed, msg) = match grpc::unframe(body, limit) {
        Ok(x) => x,
        Err(grpc::FrameError::TooLarge(..)) => return too_large("message"),
        Err(e) => return status_response(Code::InvalidArgument, &e.to_string(), None),
    };
    let msg = if compressed {
        if codec == Compression::None {
            return status_response(Code::Internal, "compressed flag set without grpc-encoding", None);
        }
        match codec.decompress(&crate::payload::join(&msg), limit) {
            Ok(m) => {
                // The compressed copy goes now; the output is charged until hand-off.
                drop(msg);
                held.force(m.len());
                vec![m]
            }
            Err(compression::CompressionError::TooLarge(_)) => return too_large("decompressed message"),
            Err(e) => return status_response(Code::InvalidArgument, &e.to_string(), None),
        }
    } else {
        msg
    };
    let accepted = ctx.accept(signal, msg).await;
    drop(held);
    match accepted {
        Ok(_) => ok_response(),
        Err(Rejection::Malformed(m)) => {
            status_response(Code::InvalidArgument, &format!("malformed {signal} request: {m}"), None)
        }
        Err(Rejection::TooLarge(m)) => status_response(Code::ResourceExhausted, &m, None),
        Err(Rejection::NoPipeline(s)) => status_response(
            Code::Unimplemented,
            &format!("no {s} pipeline is configured for this receiver"),
            None,
        ),
        Err(Rejection::Refused(m)) => status_response(Code::ResourceExhausted, &m, Some(RETRY_HINT)),
        Err(Rejection::ShuttingDown) => status_response(Code::Unavailable, "sluice is shutting down", None),
    }
}
