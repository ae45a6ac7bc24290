//! What the wire walkers report when a body is not a well-formed OTLP
//! request: one error type for the scanner, the validator, the views and the
//! edits, each naming the byte offset where the walk stopped.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated protobuf at byte {0}")]
    Truncated(usize),
    #[error("malformed varint at byte {0}")]
    Varint(usize),
    #[error("invalid wire type {wire_type} for field {field} at byte {at}")]
    WireType { field: u32, wire_type: u8, at: usize },
    #[error("invalid field number 0 at byte {0}")]
    FieldZero(usize),
    #[error("field {field} at byte {at} must be length-delimited")]
    NotMessage { field: u32, at: usize },
    #[error("string field at byte {at} is not valid UTF-8")]
    InvalidUtf8 { at: usize },
    #[error("message nesting too deep at byte {at}")]
    TooDeep { at: usize },
    #[error("field key over 32 bits at byte {at}")]
    InvalidKey { at: usize },
    #[error("packed field {field} at byte {at} does not hold whole elements")]
    Packed { field: u32, at: usize },
    #[error("unmatched end-group tag at byte {at}")]
    EndGroup { at: usize },
    #[error("id field {field} at byte {at} is {len} bytes; a trace id is 16 bytes, a span id 8, or empty")]
    IdLength { field: u32, len: usize, at: usize },
    #[error(
        "attribute value nested deeper than {} arrays and kvlists at byte {at}",
        super::validate::MAX_ANY_VALUE_NESTING
    )]
    ValueTooDeep { at: usize },
}
