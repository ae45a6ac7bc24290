//! OTLP/HTTP receiver: `POST /v1/{traces,metrics,logs}` with protobuf or JSON
//! bodies, any of the Collector's content encodings (gzip, zstd, snappy,
//! x-snappy-framed, deflate, zlib), authentication, replies in the request's
//! encoding, and the HTTP statuses the OTLP spec gives for each failure.

use std::rc::Rc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prost::Message;

use crate::{
    compression::{self, Compression},
    grpc::{rpc, Code},
    net::body::{read_body, BodyError, BodyRules, ResponseBody},
    otlp_json,
    receiver::{ReceiverCtx, Rejection, RETRY_HINT},
    signal::Signal,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> HeaderValue {
        match self {
            Encoding::Protobuf => HeaderValue::from_static("application/x-protobuf"),
            Encoding::Json => HeaderValue::from_static("application/json"),
        }
    }
}

/// An error reply: a `google.rpc.Status` in the request's encoding.
fn error(
    status: StatusCode,
    enc: Encoding,
    code: Code,
    message: &str,
    retry_after: Option<u64>,
) -> Response<ResponseBody> {
    let body: Bytes = match enc {
        Encoding::Protobuf => rpc::status(code, message, None).encode_to_vec().into(),
        Encoding::Json => serde_json::json!({ "code": code as i32, "message": message })
            .to_string()
            .into(),
    };
    let mut r = Response::new(ResponseBody::data(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, enc.content_type());
    if let Some(s) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

fn ok(enc: Encoding) -> Response<ResponseBody> {
    let mut r = Response::new(match enc {
        Encoding::Protobuf => ResponseBody::empty(),
        Encoding::Json => ResponseBody::data(Bytes::from_static(b"{}")),
    });
    r.headers_mut().insert(header::CONTENT_TYPE, enc.content_type());
    r
}

/// What a request is, once its head has been checked.
struct Head {
    signal: Signal,
    enc: Encoding,
    codec: Compression,
}

/// Checks a request's head (path, method, media type, authentication,
/// content encoding) before its body is read; `Err` is the reply refusing it.
async fn check_head(ctx: &ReceiverCtx, req: &Request<Incoming>) -> Result<Head, Response<ResponseBody>> {
    let enc = match req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("application/x-protobuf") | Some("application/protobuf") => Some(Encoding::Protobuf),
        Some("application/json") => Some(Encoding::Json),
        _ => None,
    };
    let Some(signal) = Signal::from_http_path(req.uri().path()) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            enc.unwrap_or(Encoding::Json),
            Code::NotFound,
            &format!("unknown path {}", req.uri().path()),
            None,
        ));
    };
    if req.method() != Method::POST {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            enc.unwrap_or(Encoding::Json),
            Code::Unimplemented,
            &format!("{} requires POST", req.uri().path()),
            None,
        );
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Err(r);
    }
    let Some(enc) = enc else {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Encoding::Json,
            Code::InvalidArgument,
            "content-type must be application/x-protobuf or application/json",
            None,
        ));
    };
    if let Err(e) = ctx.authenticate(signal, req.headers()).await {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            enc,
            Code::Unauthenticated,
            &e.to_string(),
            None,
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer, Basic"));
        return Err(r);
    }
    let codec = match req.headers().get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None => Compression::None,
        Some(v) => match Compression::from_token(v) {
            Some(c) => c,
            None => {
                return Err(error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    enc,
                    Code::InvalidArgument,
                    &format!(
                        "unsupported content-encoding {} (sluice reads gzip, zstd, snappy, x-snappy-framed, deflate and zlib)",
                        String::from_utf8_lossy(v)
                    ),
                    None,
                ))
            }
        },
    };
    Ok(Head { signal, enc, codec })
}

/// Handles one OTLP/HTTP request.
pub async fn handle(ctx: Rc<ReceiverCtx>, req: Request<Incoming>) -> Response<ResponseBody> {
    let _inflight = ctx.lifecycle.enter();
    let rules = BodyRules {
        limit: ctx.max_message,
        grpc: false,
        timeout: ctx.body_timeout,
        deadline: ctx.body_deadline,
        drain: req.version() < http::Version::HTTP_2,
    };
    let Head { signal, enc, codec } = match check_head(&ctx, &req).await {
        Ok(h) => h,
        Err(mut refusal) => {
            // An HTTP/1.1 client may send its next request on this
            // connection: read the refused body, or say the connection ends.
            if rules.drain && !crate::net::body::discard(req.into_body(), rules).await {
                refusal
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return refusal;
        }
    };
    let limit = ctx.max_message;
    let too_large = || {
        ctx.refused_unread(signal);
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            enc,
            Code::ResourceExhausted,
            &format!("request body larger than max_request_body_size ({limit} bytes)"),
            None,
        )
    };
    let (body, mut held) = match read_body(req.into_body(), &ctx.budget, rules).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(_)) => return too_large(),
        Err(e @ (BodyError::Stalled(_) | BodyError::TooSlow(_))) => {
            ctx.refused_unread(signal);
            return error(
                StatusCode::REQUEST_TIMEOUT,
                enc,
                Code::DeadlineExceeded,
                &e.to_string(),
                None,
            );
        }
        Err(e @ BodyError::Busy(_)) => {
            ctx.refused_unread(signal);
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                enc,
                Code::ResourceExhausted,
                &e.to_string(),
                Some(RETRY_HINT.as_secs()),
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                enc,
                Code::InvalidArgument,
                &e.to_string(),
                None,
            )
        }
    };
    let body = if codec != Compression::None {
        let out = codec.decompress(&crate::payload::join(&body), limit);
        drop(body);
        match out {
            Ok(b) => {
                held.force(b.len());
                vec![b]
            }
            Err(compression::CompressionError::TooLarge(_)) => return too_large(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    enc,
                    Code::InvalidArgument,
                    &e.to_string(),
                    None,
                )
            }
        }
    } else {
        body
    };
    let body = match enc {
        Encoding::Protobuf => body,
        Encoding::Json => match otlp_json::decode_request_off_shard(signal, crate::payload::join(&body)).await {
            Ok(b) => {
                held.force(b.len());
                vec![b]
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    enc,
                    Code::InvalidArgument,
                    &format!("malformed {signal} JSON: {e}"),
                    None,
                )
            }
        },
    };
    let accepted = ctx.accept(signal, body).await;
    drop(held);
    match accepted {
        Ok(_) => ok(enc),
        Err(Rejection::Malformed(m)) => error(
            StatusCode::BAD_REQUEST,
            enc,
            Code::InvalidArgument,
            &format!("malformed {signal} request: {m}"),
            None,
        ),
        Err(Rejection::TooLarge(_)) => too_large(),
        Err(Rejection::NoPipeline(s)) => error(
            StatusCode::NOT_FOUND,
            enc,
            Code::Unimplemented,
            &format!("no {s} pipeline is configured for this receiver"),
            None,
        ),
        Err(Rejection::Refused(m)) => error(
            StatusCode::TOO_MANY_REQUESTS,
            enc,
            Code::ResourceExhausted,
            &m,
            Some(RETRY_HINT.as_secs()),
        ),
        Err(Rejection::ShuttingDown) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            enc,
            Code::Unavailable,
            "sluice is shutting down",
            Some(RETRY_HINT.as_secs()),
        ),
    }
}
