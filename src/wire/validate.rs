//! Full, schema-aware validation of an OTLP `Export*ServiceRequest` body on the
//! wire, without decoding or allocating.
//!
//! `wire::scan` checks only the framing down to each item's own fields; this
//! module walks every level of the OTLP schema (the vendored `proto/` files)
//! and rejects exactly what a prost decode of the request rejects, so a body
//! accepted here can be merged into a batch without making the whole batch
//! undecodable downstream:
//! - every field key is a valid varint of at most 32 bits, field number ≥ 1,
//!   wire type 0, 1, 2, 3 (group, unknown fields only), 5;
//! - a known field has its schema's wire type; messages are length-delimited
//!   and valid all the way down; `string` fields are UTF-8; `bytes` any length;
//! - repeated scalars are accepted packed (whole elements only) or unpacked;
//! - unknown fields are skipped but must be well-formed (groups matched);
//! - nesting follows prost's recursion limit of 100 message levels counted
//!   from the request (unknown fields and groups count as prost counts them);
//! - an attribute value (`AnyValue`) nests at most [`MAX_ANY_VALUE_NESTING`]
//!   arrays and kvlists inside one another, the same limit as on the JSON path;
//! - trace and span ids are empty or exactly 16 and 8 bytes (the spec calls
//!   other lengths invalid, and the Collector refuses them), as on the JSON path.

use crate::{
    signal::Signal,
    wire::{read_varint, WireError},
};

/// The most arrays and kvlists an attribute value may nest inside one
/// another, on both the protobuf and the JSON path. 30 is the deepest that a
/// prost decoder (recursion limit 100) accepts at every place an `AnyValue`
/// can appear (the deepest is an exemplar's attribute, 8 levels down, and each
/// kvlist costs 3 levels), so whatever sluice accepts, a prost-based backend
/// accepts too.
pub const MAX_ANY_VALUE_NESTING: u32 = 30;

const TRACE_ID: usize = 16;
const SPAN_ID: usize = 8;

/// prost's `RECURSION_LIMIT`: the budget of the request's own fields. Each
/// nested message costs one; a message field, or an unknown field, found where
/// the budget is 0 is an error in prost, and so it is here.
const LIMIT: u32 = 100;

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const I32: u8 = 5;

mod chunked;
mod plain;
use crate::wire::text::utf8;
pub use chunked::validate_chunks;
use plain::{plain_key_value, plain_log_record, plain_point, plain_span};

type Res = Result<(), WireError>;

/// One field as handed to a message's checker: number, wire type, offset of
/// its key, and for length-delimited fields the byte range of its contents.
#[derive(Clone, Copy)]
struct F {
    number: u32,
    wt: u8,
    at: usize,
    s: usize,
    e: usize,
}

/// What the validating walk counted on its way (so that receipt walks a
/// request once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Spans, metric data points (of every data field a metric has) or log records.
    pub items: u64,
    /// Top-level resource entries.
    pub resources: u64,
    /// True when the body holds only field-1 entries.
    pub only_resources: bool,
}

/// Validates a whole `Export{Trace,Metrics,Logs}ServiceRequest` body.
pub fn validate(signal: Signal, body: &[u8]) -> Res {
    validate_counted(signal, body).map(|_| ())
}

/// Validates a request body and counts its items and resource entries.
pub fn validate_counted(signal: Signal, body: &[u8]) -> Result<Counts, WireError> {
    match signal {
        Signal::Traces => request(body, |buf, s, e, b| span(buf, s, e, b).map(|()| 1)),
        Signal::Metrics => request(body, metric),
        Signal::Logs => request(body, |buf, s, e, b| log_record(buf, s, e, b).map(|()| 1)),
    }
}

type Counted = Result<u64, WireError>;

/// The request: `1: Resource{Spans,Metrics,Logs}`, whose scopes hold `leaf`s
/// (each returns the items it holds).
#[inline(always)]
fn request<L>(body: &[u8], leaf: L) -> Result<Counts, WireError>
where
    L: Fn(&[u8], usize, usize, u32) -> Counted + Copy,
{
    let mut c = Counts {
        only_resources: true,
        ..Counts::default()
    };
    walk(body, 0, body.len(), LIMIT, |buf, f| {
        match f.number {
            1 => {
                c.items += sub_n(buf, &f, LIMIT, |buf, s, e, b| resource_entry(buf, s, e, b, leaf))?;
                c.resources += 1;
            }
            _ => {
                c.only_resources = false;
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    Ok(c)
}

/// Walks the fields of the message at `buf[s..e]` whose fields have recursion
/// budget `budget`, handing each to `known`; it returns `Ok(false)` for a
/// field the schema does not know, which is then skipped as prost does.
#[inline(always)]
fn walk<H>(buf: &[u8], s: usize, e: usize, budget: u32, mut known: H) -> Res
where
    H: FnMut(&[u8], F) -> Result<bool, WireError>,
{
    let buf = &buf[..e];
    let mut pos = s;
    while pos < e {
        let at = pos;
        let (number, wt) = key(buf, &mut pos)?;
        let (mut vs, mut ve) = (0, 0);
        match wt {
            VARINT => {
                read_varint(buf, &mut pos)?;
            }
            I64 => pos = fixed(pos, 8, e)?,
            LEN => {
                let len = read_varint(buf, &mut pos)?;
                if len > (e - pos) as u64 {
                    return Err(WireError::Truncated(e));
                }
                vs = pos;
                pos += len as usize;
                ve = pos;
            }
            I32 => pos = fixed(pos, 4, e)?,
            START_GROUP => {}
            END_GROUP => return Err(WireError::EndGroup { at }),
            _ => {
                return Err(WireError::WireType {
                    field: number,
                    wire_type: wt,
                    at,
                })
            }
        }
        let f = F {
            number,
            wt,
            at,
            s: vs,
            e: ve,
        };
        if !known(buf, f)? {
            unknown(buf, &mut pos, number, wt, at, budget)?;
        }
    }
    Ok(())
}

/// Reads a field key: at most 32 bits, field number ≥ 1.
#[inline(always)]
fn key(buf: &[u8], pos: &mut usize) -> Result<(u32, u8), WireError> {
    let at = *pos;
    split_key(read_varint(buf, pos)?, at)
}

/// A key read at `at` as (field number, wire type): at most 32 bits, field
/// number ≥ 1 (shared with the walk across frames).
#[inline(always)]
fn split_key(key: u64, at: usize) -> Result<(u32, u8), WireError> {
    if key > u64::from(u32::MAX) {
        return Err(WireError::InvalidKey { at });
    }
    let number = (key >> 3) as u32;
    if number == 0 {
        return Err(WireError::FieldZero(at));
    }
    Ok((number, (key & 7) as u8))
}

/// Skips a fixed-width value of `n` bytes at `pos`, within `e`.
#[inline(always)]
fn fixed(pos: usize, n: usize, e: usize) -> Result<usize, WireError> {
    if e - pos < n {
        return Err(WireError::Truncated(e));
    }
    Ok(pos + n)
}

/// An unknown field (its value, unless a group, already skipped): prost
/// checks the recursion budget before skipping it, and skips groups to their
/// matching end tag.
#[cold]
fn unknown(buf: &[u8], pos: &mut usize, number: u32, wt: u8, at: usize, budget: u32) -> Res {
    if budget == 0 {
        return Err(WireError::TooDeep { at });
    }
    if wt == START_GROUP {
        skip_group(buf, pos, number, budget - 1)?;
    }
    Ok(())
}

/// Skips the fields of a group started with field `number`, up to and
/// including its end tag; each field inside costs prost one recursion level.
fn skip_group(buf: &[u8], pos: &mut usize, number: u32, budget: u32) -> Res {
    let e = buf.len();
    loop {
        if *pos >= e {
            return Err(WireError::Truncated(e));
        }
        let at = *pos;
        let (inner, wt) = key(buf, pos)?;
        if wt == END_GROUP {
            if inner != number {
                return Err(WireError::EndGroup { at });
            }
            return Ok(());
        }
        if budget == 0 {
            return Err(WireError::TooDeep { at });
        }
        match wt {
            VARINT => {
                read_varint(buf, pos)?;
            }
            I64 => *pos = fixed(*pos, 8, e)?,
            LEN => {
                let len = read_varint(buf, pos)?;
                if len > (e - *pos) as u64 {
                    return Err(WireError::Truncated(e));
                }
                *pos += len as usize;
            }
            I32 => *pos = fixed(*pos, 4, e)?,
            START_GROUP => skip_group(buf, pos, inner, budget - 1)?,
            _ => {
                return Err(WireError::WireType {
                    field: inner,
                    wire_type: wt,
                    at,
                })
            }
        }
    }
}

/// A known field must have wire type `wt`.
#[inline(always)]
fn want(f: &F, wt: u8) -> Res {
    if f.wt == wt {
        Ok(())
    } else {
        Err(WireError::WireType {
            field: f.number,
            wire_type: f.wt,
            at: f.at,
        })
    }
}

/// A `bytes` field: length-delimited, any contents.
#[inline(always)]
fn bytes(f: &F) -> Res {
    if f.wt == LEN {
        Ok(())
    } else {
        Err(WireError::NotMessage {
            field: f.number,
            at: f.at,
        })
    }
}

/// A trace or span id: `bytes`, empty or exactly `len` bytes.
#[inline(always)]
fn id(f: &F, len: usize) -> Res {
    bytes(f)?;
    let n = f.e - f.s;
    if n == 0 || n == len {
        Ok(())
    } else {
        Err(WireError::IdLength {
            field: f.number,
            len: n,
            at: f.at,
        })
    }
}

/// A `string` field: length-delimited UTF-8.
#[inline(always)]
fn string(buf: &[u8], f: &F) -> Res {
    bytes(f)?;
    let b = &buf[f.s..f.e];
    if utf8(b) {
        Ok(())
    } else {
        Err(WireError::InvalidUtf8 { at: f.at })
    }
}

/// A message field of a message whose fields have budget `budget`: checked by
/// `child` with the budget one level down.
#[inline(always)]
fn sub<C>(buf: &[u8], f: &F, budget: u32, child: C) -> Res
where
    C: FnOnce(&[u8], usize, usize, u32) -> Res,
{
    sub_n(buf, f, budget, |buf, s, e, b| child(buf, s, e, b).map(|()| 0)).map(|_| ())
}

/// `sub` for a child that counts items.
#[inline(always)]
fn sub_n<C>(buf: &[u8], f: &F, budget: u32, child: C) -> Counted
where
    C: FnOnce(&[u8], usize, usize, u32) -> Counted,
{
    bytes(f)?;
    if budget == 0 {
        return Err(WireError::TooDeep { at: f.at });
    }
    child(buf, f.s, f.e, budget - 1)
}

/// A repeated fixed-width scalar (`fixed64`, `double`): packed with whole
/// elements only, or one element with wire type `wt`.
#[inline(always)]
fn packed_fixed(f: &F, wt: u8, size: usize) -> Res {
    if f.wt != LEN {
        return want(f, wt);
    }
    if (f.e - f.s) % size == 0 {
        Ok(())
    } else {
        Err(WireError::Packed {
            field: f.number,
            at: f.at,
        })
    }
}

/// A repeated varint scalar: packed varints exactly filling the field, or one
/// varint.
#[inline(always)]
fn packed_varint(buf: &[u8], f: &F) -> Res {
    if f.wt != LEN {
        return want(f, VARINT);
    }
    let b = &buf[..f.e];
    let mut pos = f.s;
    while pos < f.e {
        read_varint(b, &mut pos)?;
    }
    Ok(())
}

/// `Resource{Spans,Metrics,Logs}`: 1 resource, 2 scope entries, 3 schema_url.
#[inline(always)]
fn resource_entry<L>(buf: &[u8], s: usize, e: usize, b: u32, leaf: L) -> Counted
where
    L: Fn(&[u8], usize, usize, u32) -> Counted + Copy,
{
    let mut n = 0;
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => sub(buf, &f, b, resource)?,
            2 => n += sub_n(buf, &f, b, |buf, s, e, b| scope_entry(buf, s, e, b, leaf))?,
            3 => string(buf, &f)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(n)
}

/// `Scope{Spans,Metrics,Logs}`: 1 scope, 2 leaves, 3 schema_url.
#[inline(always)]
fn scope_entry<L>(buf: &[u8], s: usize, e: usize, b: u32, leaf: L) -> Counted
where
    L: Fn(&[u8], usize, usize, u32) -> Counted + Copy,
{
    let mut n = 0;
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            2 => n += sub_n(buf, &f, b, leaf)?,
            1 => sub(buf, &f, b, scope)?,
            3 => string(buf, &f)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(n)
}

/// `Resource`: 1 attributes, 2 dropped_attributes_count, 3 entity_refs.
fn resource(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => sub(buf, &f, b, key_value)?,
            2 => want(&f, VARINT)?,
            3 => sub(buf, &f, b, entity_ref)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `EntityRef`: 1 schema_url, 2 type, 3 id_keys, 4 description_keys (strings).
fn entity_ref(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1..=4 => string(buf, &f)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `InstrumentationScope`: 1 name, 2 version, 3 attributes, 4 dropped count.
fn scope(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 | 2 => string(buf, &f)?,
            3 => sub(buf, &f, b, key_value)?,
            4 => want(&f, VARINT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `KeyValue` of an attribute list: 1 key, 2 value, 3 key_strindex.
#[inline]
fn key_value(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    if b > 0 && plain_key_value(&buf[s..e]) {
        return Ok(());
    }
    nested_key_value(buf, s, e, b, 0)
}

/// `KeyValue` inside `nesting` arrays and kvlists.
#[inline]
fn nested_key_value(buf: &[u8], s: usize, e: usize, b: u32, nesting: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => string(buf, &f)?,
            2 => sub(buf, &f, b, |buf, s, e, b| any_value(buf, s, e, b, nesting))?,
            3 => want(&f, VARINT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `AnyValue` inside `nesting` arrays and kvlists: 1 string, 2 bool, 3 int,
/// 4 double, 5 array, 6 kvlist, 7 bytes, 8 string_value_strindex.
#[inline]
fn any_value(buf: &[u8], s: usize, e: usize, b: u32, nesting: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => string(buf, &f)?,
            2 | 3 | 8 => want(&f, VARINT)?,
            4 => want(&f, I64)?,
            5 | 6 if nesting >= MAX_ANY_VALUE_NESTING => return Err(WireError::ValueTooDeep { at: f.at }),
            5 => sub(buf, &f, b, |buf, s, e, b| array_value(buf, s, e, b, nesting + 1))?,
            6 => sub(buf, &f, b, |buf, s, e, b| kvlist_value(buf, s, e, b, nesting + 1))?,
            7 => bytes(&f)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `ArrayValue`: 1 values.
fn array_value(buf: &[u8], s: usize, e: usize, b: u32, nesting: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => sub(buf, &f, b, |buf, s, e, b| any_value(buf, s, e, b, nesting))?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `KeyValueList`: 1 values.
fn kvlist_value(buf: &[u8], s: usize, e: usize, b: u32, nesting: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => sub(buf, &f, b, |buf, s, e, b| nested_key_value(buf, s, e, b, nesting))?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `Span`: the common shape through `plain_span`, anything else (and every
/// error, with its offset) through the general walk.
#[inline]
fn span(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    // Budget: a span's attribute and status are one level down, an
    // attribute's value two; `plain_key_value` needs its message's budget > 0.
    if b >= 2 && plain_span(&buf[s..e], b) {
        return Ok(());
    }
    span_fields(buf, s, e, b)
}

/// `Span`, field by field.
fn span_fields(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => id(&f, TRACE_ID)?,
            2 | 4 => id(&f, SPAN_ID)?,
            3 | 5 => string(buf, &f)?,
            6 | 10 | 12 | 14 => want(&f, VARINT)?,
            7 | 8 => want(&f, I64)?,
            9 => sub(buf, &f, b, key_value)?,
            11 => sub(buf, &f, b, span_event)?,
            13 => sub(buf, &f, b, span_link)?,
            15 => sub(buf, &f, b, span_status)?,
            16 => want(&f, I32)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `Span.Event`: 1 time, 2 name, 3 attributes, 4 dropped count.
fn span_event(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => want(&f, I64)?,
            2 => string(buf, &f)?,
            3 => sub(buf, &f, b, key_value)?,
            4 => want(&f, VARINT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `Span.Link`: 1 trace_id, 2 span_id, 3 trace_state, 4 attributes,
/// 5 dropped count, 6 flags.
fn span_link(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => id(&f, TRACE_ID)?,
            2 => id(&f, SPAN_ID)?,
            3 => string(buf, &f)?,
            4 => sub(buf, &f, b, key_value)?,
            5 => want(&f, VARINT)?,
            6 => want(&f, I32)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `Status`: 2 message, 3 code (1 is reserved, so unknown).
fn span_status(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            2 => string(buf, &f)?,
            3 => want(&f, VARINT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `LogRecord`: the common shape through `plain_log_record`, anything else
/// through the general walk (as `span`).
#[inline]
fn log_record(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    if b >= 2 && plain_log_record(&buf[s..e], b) {
        return Ok(());
    }
    log_record_fields(buf, s, e, b)
}

/// `LogRecord`, field by field.
fn log_record_fields(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 | 11 => want(&f, I64)?,
            2 | 7 => want(&f, VARINT)?,
            3 | 12 => string(buf, &f)?,
            5 => sub(buf, &f, b, |buf, s, e, b| any_value(buf, s, e, b, 0))?,
            6 => sub(buf, &f, b, key_value)?,
            8 => want(&f, I32)?,
            9 => id(&f, TRACE_ID)?,
            10 => id(&f, SPAN_ID)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `Metric`: 1 name, 2 description, 3 unit, data oneof (5 gauge, 7 sum,
/// 9 histogram, 10 exponential_histogram, 11 summary), 12 metadata.
fn metric(buf: &[u8], s: usize, e: usize, b: u32) -> Counted {
    let mut n = 0;
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1..=3 => string(buf, &f)?,
            5 => n += sub_n(buf, &f, b, |buf, s, e, b| points(buf, s, e, b, number_point))?,
            7 => n += sub_n(buf, &f, b, |buf, s, e, b| aggregate(buf, s, e, b, number_point, true))?,
            9 => {
                n += sub_n(buf, &f, b, |buf, s, e, b| {
                    aggregate(buf, s, e, b, histogram_point, false)
                })?
            }
            10 => {
                n += sub_n(buf, &f, b, |buf, s, e, b| {
                    aggregate(buf, s, e, b, exp_histogram_point, false)
                })?
            }
            11 => n += sub_n(buf, &f, b, |buf, s, e, b| points(buf, s, e, b, summary_point))?,
            12 => sub(buf, &f, b, key_value)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(n)
}

/// `Gauge` / `Summary`: only `1: data_points`.
#[inline(always)]
fn points(buf: &[u8], s: usize, e: usize, b: u32, point: fn(&[u8], usize, usize, u32) -> Res) -> Counted {
    let mut n = 0;
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => {
                sub(buf, &f, b, point)?;
                n += 1;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(n)
}

/// `Sum` (with `3: is_monotonic`), `Histogram`, `ExponentialHistogram`:
/// `1: data_points`, `2: aggregation_temporality`.
#[inline(always)]
fn aggregate(
    buf: &[u8],
    s: usize,
    e: usize,
    b: u32,
    point: fn(&[u8], usize, usize, u32) -> Res,
    monotonic: bool,
) -> Counted {
    let mut n = 0;
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => {
                sub(buf, &f, b, point)?;
                n += 1;
            }
            2 => want(&f, VARINT)?,
            3 if monotonic => want(&f, VARINT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(n)
}

/// `NumberDataPoint`.
#[inline]
fn number_point(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    if b >= 2 && plain_point(&buf[s..e], false) {
        return Ok(());
    }
    number_point_fields(buf, s, e, b)
}

/// `NumberDataPoint`, field by field.
fn number_point_fields(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            7 => sub(buf, &f, b, key_value)?,
            2 | 3 | 4 | 6 => want(&f, I64)?,
            5 => sub(buf, &f, b, exemplar)?,
            8 => want(&f, VARINT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `HistogramDataPoint`.
#[inline]
fn histogram_point(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    if b >= 2 && plain_point(&buf[s..e], true) {
        return Ok(());
    }
    histogram_point_fields(buf, s, e, b)
}

/// `HistogramDataPoint`, field by field.
fn histogram_point_fields(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            9 => sub(buf, &f, b, key_value)?,
            2..=5 | 11 | 12 => want(&f, I64)?,
            6 | 7 => packed_fixed(&f, I64, 8)?,
            8 => sub(buf, &f, b, exemplar)?,
            10 => want(&f, VARINT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `ExponentialHistogramDataPoint`.
fn exp_histogram_point(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => sub(buf, &f, b, key_value)?,
            2..=5 | 7 | 12..=14 => want(&f, I64)?,
            6 | 10 => want(&f, VARINT)?,
            8 | 9 => sub(buf, &f, b, buckets)?,
            11 => sub(buf, &f, b, exemplar)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `ExponentialHistogramDataPoint.Buckets`: 1 offset, 2 bucket_counts.
fn buckets(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            1 => want(&f, VARINT)?,
            2 => packed_varint(buf, &f)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `SummaryDataPoint`.
fn summary_point(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            7 => sub(buf, &f, b, key_value)?,
            2..=5 => want(&f, I64)?,
            6 => sub(buf, &f, b, quantile)?,
            8 => want(&f, VARINT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `SummaryDataPoint.ValueAtQuantile`: 1 quantile, 2 value.
fn quantile(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |_, f| {
        match f.number {
            1 | 2 => want(&f, I64)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `Exemplar`.
fn exemplar(buf: &[u8], s: usize, e: usize, b: u32) -> Res {
    walk(buf, s, e, b, |buf, f| {
        match f.number {
            7 => sub(buf, &f, b, key_value)?,
            2 | 3 | 6 => want(&f, I64)?,
            4 => id(&f, SPAN_ID)?,
            5 => id(&f, TRACE_ID)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use prost::Message;

    use super::*;
    use crate::{
        bench::workload,
        proto::{
            common::v1::{any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList},
            logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
            metrics::v1::{
                exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point,
                summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint,
                Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
                Summary, SummaryDataPoint,
            },
            resource::v1::Resource,
            trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status},
            ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
        },
        wire::put_len_header,
    };

    fn prost_ok(signal: Signal, body: &[u8]) -> bool {
        let b = Bytes::copy_from_slice(body);
        match signal {
            Signal::Traces => ExportTraceServiceRequest::decode(b).is_ok(),
            Signal::Metrics => ExportMetricsServiceRequest::decode(b).is_ok(),
            Signal::Logs => ExportLogsServiceRequest::decode(b).is_ok(),
        }
    }

    /// Both prost and `validate` accept `body`.
    #[track_caller]
    fn accepted(signal: Signal, body: &[u8]) {
        assert!(prost_ok(signal, body), "prost rejects");
        assert_eq!(validate(signal, body), Ok(()));
    }

    /// Both prost and `validate` reject `body`; returns our error.
    #[track_caller]
    fn rejected(signal: Signal, body: &[u8]) -> WireError {
        assert!(!prost_ok(signal, body), "prost accepts");
        validate(signal, body).expect_err("validate accepts")
    }

    /// A length-delimited field.
    fn ld(field: u32, content: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_len_header(&mut out, field, content.len());
        out.extend_from_slice(content);
        out.to_vec()
    }

    /// A field key (tag and wire type) as a varint.
    fn tag(field: u32, wt: u8) -> Vec<u8> {
        let mut out = BytesMut::new();
        crate::wire::put_varint(&mut out, (u64::from(field) << 3) | u64::from(wt));
        out.to_vec()
    }

    /// A traces request holding one span with these raw fields.
    fn with_span(span: &[u8]) -> Vec<u8> {
        ld(1, &ld(2, &ld(2, span)))
    }

    /// A logs request holding one record with these raw fields.
    fn with_record(record: &[u8]) -> Vec<u8> {
        ld(1, &ld(2, &ld(2, record)))
    }

    /// A metrics request holding one metric with these raw fields.
    fn with_metric(metric: &[u8]) -> Vec<u8> {
        ld(1, &ld(2, &ld(2, metric)))
    }

    /// Replaces the one occurrence of `from` in `body` with `to` (same length).
    fn patch(mut body: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let hits: Vec<usize> = (0..=body.len() - from.len())
            .filter(|&i| &body[i..i + from.len()] == from)
            .collect();
        assert_eq!(hits.len(), 1, "placeholder must occur once");
        body[hits[0]..hits[0] + to.len()].copy_from_slice(to);
        body
    }

    pub(super) fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    pub(super) fn every_any_value() -> Vec<KeyValue> {
        use any_value::Value as V;
        let nested = V::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(V::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(V::IntValue(-1)),
                            },
                            AnyValue::default(),
                        ],
                    })),
                },
                AnyValue {
                    value: Some(V::KvlistValue(KeyValueList {
                        values: vec![
                            kv("inner", V::BytesValue(Bytes::from_static(b"\xff\x00"))),
                            KeyValue::default(),
                        ],
                    })),
                },
            ],
        });
        vec![
            kv("s", V::StringValue("ünïcødé ✓".into())),
            kv("b", V::BoolValue(true)),
            kv("i", V::IntValue(i64::MIN)),
            kv("d", V::DoubleValue(-0.5)),
            kv("bytes", V::BytesValue(Bytes::from_static(b"\xff\xfe\x00"))),
            kv("idx", V::StringValueStrindex(-7)),
            kv("arr", nested),
            kv("empty_arr", V::ArrayValue(ArrayValue::default())),
            kv(
                "kvl",
                V::KvlistValue(KeyValueList {
                    values: vec![kv("x", V::KvlistValue(KeyValueList::default()))],
                }),
            ),
            KeyValue {
                key: "no_value".into(),
                key_strindex: 3,
                ..Default::default()
            },
            KeyValue::default(),
        ]
    }

    fn resource() -> Resource {
        Resource {
            attributes: every_any_value(),
            dropped_attributes_count: 2,
            entity_refs: vec![
                EntityRef {
                    schema_url: "https://x".into(),
                    r#type: "service".into(),
                    id_keys: vec!["service.name".into(), "".into()],
                    description_keys: vec!["d".into()],
                },
                EntityRef::default(),
            ],
        }
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope {
            name: "lib".into(),
            version: "1.0".into(),
            attributes: every_any_value(),
            dropped_attributes_count: 1,
        }
    }

    pub(super) fn rich_traces() -> ExportTraceServiceRequest {
        let span = Span {
            trace_id: Bytes::from_static(&[1; 16]),
            span_id: Bytes::from_static(&[2; 8]),
            trace_state: "a=b".into(),
            parent_span_id: Bytes::from_static(&[3; 8]),
            flags: 0x301,
            name: "op".into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: 1,
            end_time_unix_nano: u64::MAX,
            attributes: every_any_value(),
            dropped_attributes_count: 4,
            events: vec![
                span::Event {
                    time_unix_nano: 5,
                    name: "ev".into(),
                    attributes: every_any_value(),
                    dropped_attributes_count: 1,
                },
                span::Event::default(),
            ],
            dropped_events_count: 1,
            links: vec![
                span::Link {
                    trace_id: Bytes::from_static(&[4; 16]),
                    span_id: Bytes::from_static(&[5; 8]),
                    trace_state: "k=v".into(),
                    attributes: every_any_value(),
                    dropped_attributes_count: 2,
                    flags: 1,
                },
                span::Link::default(),
            ],
            dropped_links_count: 3,
            status: Some(Status {
                message: "boom".into(),
                code: 2,
            }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(resource()),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: Some(scope()),
                            spans: vec![span, Span::default()],
                            schema_url: "https://s".into(),
                        },
                        ScopeSpans::default(),
                    ],
                    schema_url: "https://r".into(),
                },
                ResourceSpans::default(),
            ],
        }
    }

    fn exemplars() -> Vec<Exemplar> {
        vec![
            Exemplar {
                filtered_attributes: every_any_value(),
                time_unix_nano: 9,
                span_id: Bytes::from_static(&[1; 8]),
                trace_id: Bytes::from_static(&[2; 16]),
                value: Some(exemplar::Value::AsDouble(1.5)),
            },
            Exemplar {
                value: Some(exemplar::Value::AsInt(-3)),
                ..Default::default()
            },
            Exemplar::default(),
        ]
    }

    pub(super) fn rich_metrics() -> ExportMetricsServiceRequest {
        let ndp = |v| NumberDataPoint {
            attributes: every_any_value(),
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            exemplars: exemplars(),
            flags: 1,
            value: Some(v),
        };
        let metrics = vec![
            Metric {
                name: "g".into(),
                description: "gauge".into(),
                unit: "ms".into(),
                metadata: every_any_value(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![
                        ndp(number_data_point::Value::AsDouble(0.25)),
                        ndp(number_data_point::Value::AsInt(-9)),
                        NumberDataPoint::default(),
                    ],
                })),
            },
            Metric {
                name: "s".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![ndp(number_data_point::Value::AsInt(7))],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "h".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: vec![
                        HistogramDataPoint {
                            attributes: every_any_value(),
                            start_time_unix_nano: 1,
                            time_unix_nano: 2,
                            count: 6,
                            sum: Some(10.0),
                            bucket_counts: vec![1, 2, 3],
                            explicit_bounds: vec![0.5, 5.0],
                            exemplars: exemplars(),
                            flags: 0,
                            min: Some(0.1),
                            max: Some(9.0),
                        },
                        HistogramDataPoint::default(),
                    ],
                    aggregation_temporality: 1,
                })),
                ..Default::default()
            },
            Metric {
                name: "e".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![
                        ExponentialHistogramDataPoint {
                            attributes: every_any_value(),
                            count: 10,
                            sum: Some(3.0),
                            scale: -3,
                            zero_count: 1,
                            positive: Some(Buckets {
                                offset: -2,
                                bucket_counts: vec![0, 1, u64::MAX, 300],
                            }),
                            negative: Some(Buckets::default()),
                            flags: 1,
                            exemplars: exemplars(),
                            min: Some(-1.0),
                            max: Some(1.0),
                            zero_threshold: 1e-9,
                            ..Default::default()
                        },
                        ExponentialHistogramDataPoint::default(),
                    ],
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            },
            Metric {
                name: "q".into(),
                data: Some(metric::Data::Summary(Summary {
                    data_points: vec![
                        SummaryDataPoint {
                            attributes: every_any_value(),
                            count: 3,
                            sum: 4.5,
                            quantile_values: vec![
                                ValueAtQuantile {
                                    quantile: 0.99,
                                    value: 2.0,
                                },
                                ValueAtQuantile::default(),
                            ],
                            ..Default::default()
                        },
                        SummaryDataPoint::default(),
                    ],
                })),
                ..Default::default()
            },
            Metric::default(),
        ];
        ExportMetricsServiceRequest {
            resource_metrics: vec![
                ResourceMetrics {
                    resource: Some(resource()),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(scope()),
                        metrics,
                        schema_url: "u".into(),
                    }],
                    schema_url: "v".into(),
                },
                ResourceMetrics::default(),
            ],
        }
    }

    pub(super) fn rich_logs() -> ExportLogsServiceRequest {
        let body = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: every_any_value(),
            })),
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 1,
                            observed_time_unix_nano: 2,
                            severity_number: 17,
                            severity_text: "ERROR".into(),
                            body: Some(body),
                            attributes: every_any_value(),
                            dropped_attributes_count: 1,
                            flags: 1,
                            trace_id: Bytes::from_static(&[7; 16]),
                            span_id: Bytes::from_static(&[8; 8]),
                            event_name: "e".into(),
                        },
                        LogRecord {
                            body: Some(AnyValue::default()),
                            ..Default::default()
                        },
                        LogRecord::default(),
                    ],
                    schema_url: "s".into(),
                }],
                schema_url: "r".into(),
            }],
        }
    }

    pub(super) fn rich() -> [(Signal, Vec<u8>); 3] {
        [
            (Signal::Traces, rich_traces().encode_to_vec()),
            (Signal::Metrics, rich_metrics().encode_to_vec()),
            (Signal::Logs, rich_logs().encode_to_vec()),
        ]
    }

    #[test]
    fn workload_bodies_validate() {
        for signal in Signal::ALL {
            for body in workload::requests(signal, 100, 3, 7) {
                accepted(signal, &body);
            }
        }
    }

    #[test]
    fn prost_encoded_edge_cases_validate() {
        for signal in Signal::ALL {
            accepted(signal, b"");
            accepted(signal, &ld(1, b""));
            accepted(signal, &ld(1, &ld(2, b"")));
            accepted(signal, &ld(1, &ld(2, &ld(2, b""))));
            accepted(signal, &ld(1, &ld(1, b"")));
        }
        for (signal, body) in rich() {
            accepted(signal, &body);
        }
    }

    #[test]
    fn unpacked_and_unknown_encodings_validate() {
        // HistogramDataPoint bucket_counts / explicit_bounds unpacked, and packed empty.
        let mut hdp = Vec::new();
        for v in [1u64, 2] {
            hdp.push((6 << 3) | 1);
            hdp.extend_from_slice(&v.to_le_bytes());
        }
        hdp.push((7 << 3) | 1);
        hdp.extend_from_slice(&1.5f64.to_le_bytes());
        hdp.extend(ld(6, b""));
        hdp.extend(ld(7, &[0; 16]));
        accepted(Signal::Metrics, &with_metric(&ld(9, &ld(1, &hdp))));
        // Exponential buckets: unpacked varints, and packed multi-byte varints.
        let mut b = vec![(2 << 3), 0x96, 0x01, (2 << 3), 0x05];
        b.extend(ld(2, &[0x01, 0xff, 0xff, 0x03, 0x00]));
        let ehdp = ld(8, &b);
        accepted(Signal::Metrics, &with_metric(&ld(10, &ld(1, &ehdp))));
        // Unknown fields of every wire type (groups nested) at every level,
        // including Status's reserved field 1 and a Histogram's field 3.
        let mut unk = vec![0xf8, 0x07, 0x80, 0x01]; // 127: varint
        unk.extend(tag(20, 1));
        unk.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        unk.extend(tag(21, 5));
        unk.extend([1, 2, 3, 4]);
        unk.extend(ld(22, b"\xff\xff"));
        unk.extend(tag(23, 3));
        unk.extend([(1 << 3), 1, (2 << 3) | 3, (2 << 3) | 4]);
        unk.extend(tag(23, 4));
        let mut status = vec![0x08, 0x01]; // reserved field 1 as a varint
        status.extend(&unk);
        let mut span = ld(15, &status);
        span.extend(&unk);
        let mut kv = ld(1, b"k");
        kv.extend(&unk);
        let mut any = vec![0x10, 0x01];
        any.extend(&unk);
        kv.extend(ld(2, &any));
        span.extend(ld(9, &kv));
        let mut body = ld(1, &[ld(2, &[ld(2, &span), unk.clone()].concat()), unk.clone()].concat());
        body.extend(&unk);
        accepted(Signal::Traces, &body);
        let mut hist = vec![(3 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0];
        hist.extend(&unk);
        accepted(Signal::Metrics, &with_metric(&ld(9, &hist)));
    }

    #[test]
    fn rejects_invalid_utf8_strings() {
        // span name
        let mut t = rich_traces();
        t.resource_spans[0].scope_spans[0].spans[0].name = "NAME~".into();
        let e = rejected(Signal::Traces, &patch(t.encode_to_vec(), b"NAME~", b"NA\xffE~"));
        assert!(matches!(e, WireError::InvalidUtf8 { .. }), "{e:?}");
        // attribute key (a truncated multi-byte sequence)
        let mut t = rich_traces();
        t.resource_spans[0].scope_spans[0].spans[0].attributes[0].key = "KEY~".into();
        let e = rejected(Signal::Traces, &patch(t.encode_to_vec(), b"KEY~", b"KEY\xc3"));
        assert!(matches!(e, WireError::InvalidUtf8 { .. }), "{e:?}");
        // resource attribute string value (an encoded surrogate)
        let mut t = rich_traces();
        t.resource_spans[0].resource.as_mut().unwrap().attributes[0] =
            kv("svc", any_value::Value::StringValue("VAL~".into()));
        let e = rejected(Signal::Traces, &patch(t.encode_to_vec(), b"VAL~", b"V\xed\xa0\x80"));
        assert!(matches!(e, WireError::InvalidUtf8 { .. }), "{e:?}");
        // scope name, in every signal
        for (signal, body) in rich() {
            let _ = body;
            let body = match signal {
                Signal::Traces => {
                    let mut r = rich_traces();
                    r.resource_spans[0].scope_spans[0].scope.as_mut().unwrap().name = "SCOPE~".into();
                    r.encode_to_vec()
                }
                Signal::Metrics => {
                    let mut r = rich_metrics();
                    r.resource_metrics[0].scope_metrics[0].scope.as_mut().unwrap().name = "SCOPE~".into();
                    r.encode_to_vec()
                }
                Signal::Logs => {
                    let mut r = rich_logs();
                    r.resource_logs[0].scope_logs[0].scope.as_mut().unwrap().name = "SCOPE~".into();
                    r.encode_to_vec()
                }
            };
            let e = rejected(signal, &patch(body, b"SCOPE~", b"SCOPE\x80"));
            assert!(matches!(e, WireError::InvalidUtf8 { .. }), "{e:?}");
        }
        // an EntityRef id key, a metric unit, a log body string deep in a kvlist
        let mut r = rich_traces();
        r.resource_spans[0].resource.as_mut().unwrap().entity_refs[0].id_keys[1] = "ID~".into();
        rejected(Signal::Traces, &patch(r.encode_to_vec(), b"ID~", b"I\xfe~"));
        let mut m = rich_metrics();
        m.resource_metrics[0].scope_metrics[0].metrics[2].unit = "UNIT~".into();
        rejected(Signal::Metrics, &patch(m.encode_to_vec(), b"UNIT~", b"UNIT\xff"));
        let mut l = rich_logs();
        l.resource_logs[0].scope_logs[0].log_records[0].body = Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv(
                    "a",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(any_value::Value::StringValue("DEEP~".into())),
                        }],
                    }),
                )],
            })),
        });
        rejected(Signal::Logs, &patch(l.encode_to_vec(), b"DEEP~", b"DEEP\xc0"));
    }

    #[test]
    fn rejects_garbage_inside_known_messages() {
        // span attributes holding \xff\xff (deeper than scan's own item walk;
        // scan refuses it because it runs this validator first)
        let body = with_span(&ld(9, b"\xff\xff"));
        assert!(crate::wire::scan(Signal::Traces, &body).is_err());
        rejected(Signal::Traces, &body);
        // a Resource field with a varint wire type
        let body = ld(1, &[0x08, 0x01]);
        let e = rejected(Signal::Traces, &body);
        assert!(matches!(e, WireError::NotMessage { field: 1, .. }), "{e:?}");
        // a truncated message inside a span event: its name says 5 bytes, has 1
        let body = with_span(&ld(11, &[0x12, 0x05, b'a']));
        assert!(crate::wire::scan(Signal::Traces, &body).is_err());
        let e = rejected(Signal::Traces, &body);
        assert!(matches!(e, WireError::Truncated(_)), "{e:?}");
        // a nested message overrunning its parent
        let mut span = ld(11, b"");
        span[1] = 3;
        rejected(Signal::Traces, &with_span(&span));
        // packed fixed64 with 7 bytes
        let body = with_metric(&ld(9, &ld(1, &ld(6, &[0; 7]))));
        assert!(crate::wire::scan(Signal::Metrics, &body).is_err());
        let e = rejected(Signal::Metrics, &body);
        assert!(matches!(e, WireError::Packed { field: 6, .. }), "{e:?}");
        // packed double with 12 bytes, packed varints cut mid-value
        rejected(Signal::Metrics, &with_metric(&ld(9, &ld(1, &ld(7, &[0; 12])))));
        rejected(
            Signal::Metrics,
            &with_metric(&ld(10, &ld(1, &ld(9, &ld(2, &[0x01, 0x80]))))),
        );
        // known fields with the wrong wire type
        rejected(Signal::Traces, &with_span(&[(7 << 3), 0x01])); // fixed64 time as varint
        rejected(Signal::Traces, &with_span(&ld(16, &[0; 4]))); // fixed32 flags as bytes
        rejected(Signal::Traces, &with_span(&[(6 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0])); // enum as fixed64
        rejected(Signal::Traces, &with_span(&[(1 << 3), 0x01])); // trace_id as varint
        rejected(Signal::Logs, &with_record(&[(5 << 3) | 5, 0, 0, 0, 0])); // body as fixed32
        rejected(Signal::Metrics, &with_metric(&[(7 << 3) | 3, (7 << 3) | 4])); // sum as a group
                                                                                // log body: AnyValue bool as bytes
        rejected(Signal::Logs, &with_record(&ld(5, &ld(2, b""))));
        // exemplar span_id as fixed64
        rejected(
            Signal::Metrics,
            &with_metric(&ld(5, &ld(1, &ld(5, &[(4 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0])))),
        );
    }

    #[test]
    fn rejects_malformed_keys_and_groups() {
        // wire types 6 and 7, a stray end-group, a key over 32 bits, field 0
        rejected(Signal::Traces, &with_span(&tag(30, 6)));
        rejected(Signal::Traces, &with_span(&tag(30, 7)));
        let e = rejected(Signal::Traces, &with_span(&tag(30, 4)));
        assert!(matches!(e, WireError::EndGroup { .. }), "{e:?}");
        let e = rejected(Signal::Traces, &with_span(&[0x80, 0x80, 0x80, 0x80, 0x10, 0x00]));
        assert!(matches!(e, WireError::InvalidKey { .. }), "{e:?}");
        rejected(Signal::Traces, &with_span(&[0x00, 0x00]));
        // a group never closed, closed by another field's end tag, or holding garbage
        rejected(Signal::Traces, &with_span(&[tag(30, 3), vec![0x08, 0x01]].concat()));
        let e = rejected(Signal::Traces, &with_span(&[tag(30, 3), tag(31, 4)].concat()));
        assert!(matches!(e, WireError::EndGroup { .. }), "{e:?}");
        rejected(
            Signal::Traces,
            &with_span(&[tag(30, 3), vec![0x0e], tag(30, 4)].concat()),
        );
        // the same group well-formed is skipped
        accepted(
            Signal::Traces,
            &with_span(&[tag(30, 3), vec![0x08, 0x01], tag(30, 4)].concat()),
        );
        // an over-long varint
        let mut v = vec![(10 << 3)];
        v.extend([0xff; 9]);
        v.push(0x02);
        rejected(Signal::Traces, &with_span(&v));
        // field 1 of the request as a varint
        rejected(Signal::Logs, &[0x08, 0x01]);
    }

    /// An `AnyValue`'s fields: `inner` wrapped in `depth` levels of arrays
    /// (odd levels) and kvlists (even levels).
    fn nested_any(depth: usize, inner: &[u8]) -> Vec<u8> {
        let mut v = inner.to_vec();
        for i in 0..depth {
            v = if i % 2 == 0 {
                ld(5, &ld(1, &v))
            } else {
                ld(6, &ld(1, &[ld(1, b"k"), ld(2, &v)].concat()))
            };
        }
        v
    }

    #[test]
    fn nesting_limit_matches_prost() {
        // AnyValue nesting 200 deep (prost-encoded).
        let mut v = AnyValue {
            value: Some(any_value::Value::IntValue(1)),
        };
        for _ in 0..200 {
            v = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let mut t = ExportTraceServiceRequest::default();
        t.resource_spans.push(ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    attributes: vec![KeyValue {
                        key: "deep".into(),
                        value: Some(v),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        let e = rejected(Signal::Traces, &t.encode_to_vec());
        assert!(matches!(e, WireError::ValueTooDeep { .. }), "{e:?}");

        // At every depth around the limit, with a scalar, an unknown field or
        // an unknown group innermost, in a span attribute, a log body, a
        // resource attribute and an exemplar attribute (the deepest place):
        // accepted up to MAX_ANY_VALUE_NESTING, refused beyond, and prost
        // accepts whatever we accept.
        let inners: [&[u8]; 3] = [&[0x18, 0x01], &[0x78, 0x01], &[0x7b, 0x08, 0x01, 0x7c]];
        let limit = MAX_ANY_VALUE_NESTING as usize;
        for inner in inners {
            for depth in limit - 3..limit + 20 {
                for all_kvlists in [false, true] {
                    let any = if all_kvlists {
                        let mut v = inner.to_vec();
                        for _ in 0..depth {
                            v = ld(6, &ld(1, &[ld(1, b"k"), ld(2, &v)].concat()));
                        }
                        v
                    } else {
                        nested_any(depth, inner)
                    };
                    let kv = [ld(1, b"k"), ld(2, &any)].concat();
                    for (signal, body) in [
                        (Signal::Traces, with_span(&ld(9, &kv))),
                        (Signal::Logs, with_record(&ld(5, &any))),
                        (Signal::Metrics, ld(1, &ld(1, &ld(1, &kv)))),
                        (
                            Signal::Metrics,
                            ld(1, &ld(2, &ld(2, &ld(9, &ld(1, &ld(8, &ld(7, &kv))))))),
                        ),
                    ] {
                        let r = validate(signal, &body);
                        if depth <= limit {
                            assert_eq!(r, Ok(()), "{signal:?} depth {depth} {inner:?}");
                            assert!(prost_ok(signal, &body), "prost: {signal:?} depth {depth} {inner:?}");
                        } else {
                            assert!(
                                matches!(r, Err(WireError::ValueTooDeep { .. })),
                                "{signal:?} depth {depth}: {r:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn id_lengths() {
        let mut good = rich_traces();
        let span = &mut good.resource_spans[0].scope_spans[0].spans[0];
        span.parent_span_id = Bytes::new();
        accepted(Signal::Traces, &good.encode_to_vec());
        for (field, len) in [(1u32, 3usize), (1, 8), (2, 9), (2, 16), (4, 7)] {
            let body = with_span(&ld(field, &vec![7u8; len]));
            assert!(prost_ok(Signal::Traces, &body));
            let e = validate(Signal::Traces, &body).unwrap_err();
            assert!(
                matches!(e, WireError::IdLength { field: f, len: l, .. } if f == field && l == len),
                "{e:?}"
            );
        }
        for (field, len) in [(9u32, 15usize), (10, 4)] {
            let e = validate(Signal::Logs, &with_record(&ld(field, &vec![7u8; len]))).unwrap_err();
            assert!(matches!(e, WireError::IdLength { .. }), "{e:?}");
        }
        // span link and exemplar ids
        let link = ld(13, &ld(1, &[1u8; 3]));
        assert!(matches!(
            validate(Signal::Traces, &with_span(&link)),
            Err(WireError::IdLength { .. })
        ));
        let exemplar = ld(5, &ld(4, &[1u8; 3]));
        let body = ld(1, &ld(2, &ld(2, &ld(5, &ld(1, &exemplar)))));
        assert!(matches!(
            validate(Signal::Metrics, &body),
            Err(WireError::IdLength { .. })
        ));
        // empty ids are unset, as everywhere else
        validate(
            Signal::Traces,
            &with_span(&[ld(1, b""), ld(2, b""), ld(4, b"")].concat()),
        )
        .unwrap();
    }

    #[test]
    fn group_nesting_limit_matches_prost() {
        let (mut ok, mut bad) = (0, 0);
        for depth in 1..110u32 {
            let mut g = vec![0x08, 0x01];
            for _ in 0..depth {
                g = [tag(30, 3), g, tag(30, 4)].concat();
            }
            let body = with_span(&g);
            let want = prost_ok(Signal::Traces, &body);
            assert_eq!(validate(Signal::Traces, &body).is_ok(), want, "depth {depth}");
            if want {
                ok += 1;
            } else {
                bad += 1;
            }
        }
        assert!(ok > 0 && bad > 0);
    }

    /// Random single-byte edits of valid bodies: we accept exactly what
    /// prost accepts.
    #[test]
    fn mutations_agree_with_prost() {
        let mut bodies: Vec<(Signal, Vec<u8>)> = rich().into();
        for signal in Signal::ALL {
            bodies.push((signal, workload::requests(signal, 5, 1, 3).remove(0).to_vec()));
        }
        let mut rng = workload::Rng::new(42);
        let (mut ok, mut bad) = (0, 0);
        for (signal, body) in &bodies {
            for _ in 0..1500 {
                let mut m = body.clone();
                let i = (rng.next_u64() % m.len() as u64) as usize;
                let r = rng.next_u64();
                match r % 4 {
                    0 => m[i] = (r >> 8) as u8,
                    1 => m[i] ^= 1 << ((r >> 8) % 8),
                    2 => m.insert(i, (r >> 8) as u8),
                    _ => {
                        m.remove(i);
                    }
                }
                let want = prost_ok(*signal, &m);
                // Stricter than prost only on id lengths and value nesting.
                let res = validate(*signal, &m);
                let agree = match &res {
                    Ok(()) => want,
                    Err(WireError::IdLength { .. } | WireError::ValueTooDeep { .. }) => true,
                    Err(_) => !want,
                };
                assert!(
                    agree,
                    "{signal:?} mutation {} at {i} of {}: prost {want}, validate {res:?}",
                    r % 4,
                    body.len()
                );
                if want {
                    ok += 1;
                } else {
                    bad += 1;
                }
            }
        }
        assert!(ok > 100 && bad > 100, "ok {ok} bad {bad}");
    }
}
