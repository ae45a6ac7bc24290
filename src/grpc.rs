//! gRPC over HTTP/2 framing shared by the receiver and the exporter: the
//! 5-byte length prefix, status codes, `grpc-message` percent-encoding.

use bytes::Bytes;
use thiserror::Error;

/// gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    pub fn from_u32(v: u32) -> Code {
        use Code::*;
        match v {
            0 => Ok,
            1 => Cancelled,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            _ => Unknown,
        }
    }

    /// Decimal form for the `grpc-status` header.
    pub fn as_header(self) -> http::HeaderValue {
        http::HeaderValue::from(self as u8 as u16)
    }
}

/// Length of the gRPC message prefix: 1 byte compressed flag + 4 bytes big-endian length.
pub const PREFIX_LEN: usize = 5;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("gRPC message is truncated: {0} bytes, expected at least a 5-byte prefix")]
    ShortPrefix(usize),
    #[error("gRPC message declares {declared} bytes but the body holds {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("gRPC message of {0} bytes exceeds the limit of {1} bytes")]
    TooLarge(usize, usize),
}

/// The 5-byte prefix for a message of `len` bytes.
pub fn prefix(compressed: bool, len: usize) -> [u8; PREFIX_LEN] {
    let l = (len as u32).to_be_bytes();
    [compressed as u8, l[0], l[1], l[2], l[3]]
}

/// Reads the prefix of a unary request body: returns (compressed, declared length).
pub fn parse_prefix(head: &[u8]) -> Result<(bool, usize), FrameError> {
    if head.len() < PREFIX_LEN {
        return Err(FrameError::ShortPrefix(head.len()));
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    Ok((head[0] != 0, len))
}

/// Splits a complete unary gRPC body, held as the `chunks` it arrived in,
/// into (compressed flag, the message's chunks). The body must hold exactly
/// one message. Nothing is copied but the prefix when a chunk cuts it.
pub fn unframe(mut chunks: Vec<Bytes>, limit: usize) -> Result<(bool, Vec<Bytes>), FrameError> {
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let mut head = [0u8; PREFIX_LEN];
    let got = crate::payload::copy_prefix(chunks.iter().map(|c| &c[..]), &mut head);
    let (compressed, declared) = parse_prefix(&head[..got])?;
    if declared > limit {
        return Err(FrameError::TooLarge(declared, limit));
    }
    let actual = total - PREFIX_LEN;
    if declared != actual {
        return Err(FrameError::LengthMismatch { declared, actual });
    }
    let mut skip = PREFIX_LEN;
    chunks.retain_mut(|c| {
        let n = c.len().min(skip);
        skip -= n;
        *c = c.slice(n..);
        !c.is_empty()
    });
    Ok((compressed, chunks))
}

/// Percent-encodes a `grpc-message` value as the gRPC HTTP/2 spec asks.
pub fn encode_message(msg: &str) -> http::HeaderValue {
    let mut out = String::with_capacity(msg.len());
    for b in msg.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    http::HeaderValue::from_str(&out).unwrap_or_else(|_| http::HeaderValue::from_static("error"))
}

/// Decodes a percent-encoded `grpc-message`.
pub fn decode_message(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let Ok(b) = u8::from_str_radix(std::str::from_utf8(&v[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let msg = b"hello";
        let mut body = prefix(false, msg.len()).to_vec();
        body.extend_from_slice(msg);
        let (c, m) = unframe(vec![Bytes::from(body.clone())], 100).unwrap();
        assert!(!c);
        assert_eq!(m, [&msg[..]]);
        // Cut anywhere, even inside the prefix: the same message, uncopied.
        for a in 0..body.len() {
            for b in a..body.len() {
                let chunks = vec![
                    Bytes::copy_from_slice(&body[..a]),
                    Bytes::copy_from_slice(&body[a..b]),
                    Bytes::copy_from_slice(&body[b..]),
                ];
                let (c, m) = unframe(chunks, 100).unwrap();
                assert!(!c);
                assert_eq!(m.concat(), msg, "cut at {a}, {b}");
                assert!(m.iter().all(|c| !c.is_empty()));
            }
        }
    }

    #[test]
    fn frame_errors() {
        assert_eq!(
            unframe(vec![Bytes::from_static(b"\0"), Bytes::from_static(b"\0")], 10),
            Err(FrameError::ShortPrefix(2))
        );
        let mut body = prefix(false, 50).to_vec();
        body.extend_from_slice(b"abc");
        assert_eq!(
            unframe(vec![Bytes::from(body.clone())], 10),
            Err(FrameError::TooLarge(50, 10))
        );
        assert_eq!(
            unframe(vec![Bytes::from(body)], 100),
            Err(FrameError::LengthMismatch {
                declared: 50,
                actual: 3
            })
        );
    }

    #[test]
    fn message_percent_encoding() {
        let v = encode_message("bad 100% ü");
        assert_eq!(v.to_str().unwrap(), "bad 100%25 %C3%BC");
        assert_eq!(decode_message(v.as_bytes()), "bad 100% ü");
    }
}

/// `google.rpc.Status`, `google.protobuf.Any`, `google.rpc.RetryInfo` and
/// `google.protobuf.Duration`: the few well-known messages gRPC and OTLP/HTTP
/// use for error details and retry hints.
pub mod rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

    /// A `google.rpc.Status` carrying a RetryInfo detail when `retry` is set.
    pub fn status(code: super::Code, message: &str, retry: Option<std::time::Duration>) -> Status {
        Status {
            code: code as i32,
            message: message.to_string(),
            details: retry
                .map(|d| Any {
                    type_url: RETRY_INFO_TYPE.to_string(),
                    value: prost::Message::encode_to_vec(&RetryInfo {
                        retry_delay: Some(Duration {
                            seconds: d.as_secs() as i64,
                            nanos: d.subsec_nanos() as i32,
                        }),
                    }),
                })
                .into_iter()
                .collect(),
        }
    }

    /// The retry delay carried by a `google.rpc.Status`, if any.
    pub fn retry_delay(status: &Status) -> Option<std::time::Duration> {
        status
            .details
            .iter()
            .find(|a| a.type_url == RETRY_INFO_TYPE)
            .and_then(|a| {
                let ri = <RetryInfo as prost::Message>::decode(&a.value[..]).ok()?;
                let d = ri.retry_delay?;
                Some(std::time::Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
            })
    }
}

/// The `grpc-status-details-bin` header value for a status with a retry hint.
pub fn status_details_bin(code: Code, message: &str, retry: Option<std::time::Duration>) -> http::HeaderValue {
    use base64::Engine;
    let raw = prost::Message::encode_to_vec(&rpc::status(code, message, retry));
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw);
    http::HeaderValue::from_str(&b64).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

/// Parses a `grpc-status-details-bin` value (padded or not) into a status.
pub fn parse_status_details(v: &[u8]) -> Option<rpc::Status> {
    use base64::Engine;
    let trimmed: Vec<u8> = v.iter().copied().filter(|b| *b != b'=').collect();
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed).ok()?;
    <rpc::Status as prost::Message>::decode(&raw[..]).ok()
}
