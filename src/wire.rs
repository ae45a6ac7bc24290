//! Protobuf wire-format walking for OTLP export requests, without decoding.
//!
//! The hot path never builds prost messages: a received body is checked for
//! well-formedness down to each span / data point / log record's own fields
//! (tags, wire types, lengths in bounds) and its items are counted, all by
//! skipping over length-delimited fields. Batches are then built from slices
//! of the original body (see `payload`), and `split` cuts an over-large
//! payload at resource, scope or item boundaries, re-framing only the few
//! enclosing headers that change.
//!
//! Layout walked (field numbers): request `1: Resource{Spans,Metrics,Logs}`;
//! resource entry `2: Scope*`; scope entry `2: spans | metrics | log_records`;
//! a metric's data is one of `5 gauge, 7 sum, 9 histogram,
//! 10 exponential_histogram, 11 summary`, each holding `1: data_points`.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::{payload::Payload, signal::Signal};

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
        crate::wire_validate::MAX_ANY_VALUE_NESTING
    )]
    ValueTooDeep { at: usize },
}

/// A field's value as found on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// Byte range of a length-delimited value within the walked buffer.
    Len(usize, usize),
}

impl Value {
    /// The byte range of a length-delimited value; `None` for scalars.
    #[inline]
    pub fn range(self) -> Option<(usize, usize)> {
        match self {
            Value::Len(s, e) => Some((s, e)),
            _ => None,
        }
    }
}

/// One field: number, value, and the byte offset where its tag starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    pub value: Value,
    pub start: usize,
    pub end: usize,
}

/// Reads a varint at `*pos`, advancing it.
#[inline(always)]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    // Tags, lengths of small messages and small integers: one byte.
    if let Some(&b) = buf.get(*pos) {
        if b < 0x80 {
            *pos += 1;
            return Ok(u64::from(b));
        }
    }
    read_varint_slow(buf, pos)
}

#[inline(never)]
fn read_varint_slow(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut result = 0u64;
    let mut shift = 0u32;
    loop {
        let Some(&b) = buf.get(*pos) else {
            return Err(WireError::Truncated(*pos));
        };
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err(WireError::Varint(start));
        }
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(result);
        }
        shift += 7;
        if shift > 63 {
            return Err(WireError::Varint(start));
        }
    }
}

/// Number of bytes `v` takes as a varint.
#[inline]
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Writes the tag and length prefix of a length-delimited field.
#[inline]
pub fn put_len_header(out: &mut BytesMut, field: u32, len: usize) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, len as u64);
}

/// Iterates the fields of one message occupying `buf[start..end]`.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8], start: usize, end: usize) -> Self {
        Fields {
            buf: &buf[..end],
            pos: start,
            end,
        }
    }

    pub fn all(buf: &'a [u8]) -> Self {
        Fields::new(buf, 0, buf.len())
    }

    #[inline]
    fn read(&mut self) -> Result<Field, WireError> {
        let start = self.pos;
        let key = read_varint(self.buf, &mut self.pos)?;
        let number = (key >> 3) as u32;
        let wire_type = (key & 7) as u8;
        if number == 0 {
            return Err(WireError::FieldZero(start));
        }
        let value = match wire_type {
            0 => Value::Varint(read_varint(self.buf, &mut self.pos)?),
            1 => {
                let b = self
                    .buf
                    .get(self.pos..self.pos + 8)
                    .ok_or(WireError::Truncated(self.end))?;
                self.pos += 8;
                Value::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            2 => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let s = self.pos;
                if len > (self.end - s) as u64 {
                    return Err(WireError::Truncated(self.end));
                }
                self.pos = s + len as usize;
                Value::Len(s, self.pos)
            }
            5 => {
                let b = self
                    .buf
                    .get(self.pos..self.pos + 4)
                    .ok_or(WireError::Truncated(self.end))?;
                self.pos += 4;
                Value::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            }
            _ => {
                return Err(WireError::WireType {
                    field: number,
                    wire_type,
                    at: start,
                })
            }
        };
        Ok(Field {
            number,
            value,
            start,
            end: self.pos,
        })
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let r = self.read();
        if r.is_err() {
            self.pos = self.end;
        }
        Some(r)
    }
}

/// The byte range of a field that must be a message (length-delimited).
#[inline]
fn message_range(f: &Field) -> Result<(usize, usize), WireError> {
    match f.value {
        Value::Len(s, e) => Ok((s, e)),
        _ => Err(WireError::NotMessage {
            field: f.number,
            at: f.start,
        }),
    }
}

/// Counts data points in one `Metric` message at `buf[s..e]`.
pub(crate) fn metric_points(buf: &[u8], s: usize, e: usize) -> Result<u64, WireError> {
    let mut n = 0;
    for f in Fields::new(buf, s, e) {
        let f = f?;
        if matches!(f.number, 5 | 7 | 9 | 10 | 11) {
            let (ds, de) = message_range(&f)?;
            for p in Fields::new(buf, ds, de) {
                let p = p?;
                if p.number == 1 {
                    // Its contents were checked by `wire_validate`.
                    message_range(&p)?;
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}

/// Items in one leaf entry (a span, a log record, or a metric's data points).
#[inline]
fn leaf_items(signal: Signal, buf: &[u8], s: usize, e: usize) -> Result<u64, WireError> {
    match signal {
        Signal::Metrics => metric_points(buf, s, e),
        // A span or log record is one item; `wire_validate` checked its fields.
        Signal::Traces | Signal::Logs => Ok(1),
    }
}

/// Items in one scope entry (`Scope{Spans,Metrics,Logs}`) at `buf[s..e]`.
fn scope_items(signal: Signal, buf: &[u8], s: usize, e: usize) -> Result<u64, WireError> {
    let mut n = 0;
    for f in Fields::new(buf, s, e) {
        let f = f?;
        match f.number {
            2 => {
                let (ls, le) = message_range(&f)?;
                n += leaf_items(signal, buf, ls, le)?;
            }
            1 => {
                message_range(&f)?;
            }
            _ => {}
        }
    }
    Ok(n)
}

/// Items in one resource entry (`Resource{Spans,Metrics,Logs}`) at `buf[s..e]`.
fn resource_items(signal: Signal, buf: &[u8], s: usize, e: usize) -> Result<u64, WireError> {
    let mut n = 0;
    for f in Fields::new(buf, s, e) {
        let f = f?;
        match f.number {
            2 => {
                let (ss, se) = message_range(&f)?;
                n += scope_items(signal, buf, ss, se)?;
            }
            1 => {
                message_range(&f)?;
            }
            _ => {}
        }
    }
    Ok(n)
}

/// What a scan of a request found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Spans, metric data points or log records.
    pub items: u64,
    /// Top-level resource entries.
    pub resources: u64,
    /// True when the body holds only field-1 entries, so it can be batched as is.
    pub only_resources: bool,
}

/// Validates an `Export*ServiceRequest` body and counts its items.
pub fn scan(signal: Signal, body: &[u8]) -> Result<Scan, WireError> {
    // Everything a protobuf decoder would reject is refused here, at receipt:
    // a batch merges many clients' requests, and one bad request must not make
    // a backend reject the others with it.
    crate::wire_validate::validate(signal, body)?;
    let mut scan = Scan {
        only_resources: true,
        ..Scan::default()
    };
    for f in Fields::all(body) {
        let f = f?;
        if f.number == 1 {
            let (s, e) = message_range(&f)?;
            scan.items += resource_items(signal, body, s, e)?;
            scan.resources += 1;
        } else {
            scan.only_resources = false;
        }
    }
    Ok(scan)
}

/// Returns a body holding only the request's field-1 entries (unknown top-level
/// fields dropped), so it can be concatenated with others. Copies only when
/// there was something to drop.
pub fn resources_only(body: &Bytes) -> Result<Bytes, WireError> {
    let mut out = BytesMut::new();
    for f in Fields::all(body) {
        let f = f?;
        if f.number == 1 {
            out.extend_from_slice(&body[f.start..f.end]);
        }
    }
    Ok(out.freeze())
}

/// A unit that `split` can move whole: its encoded bytes (with tag) and items.
struct Unit {
    bytes: Bytes,
    items: u64,
}

/// Re-frames a part of a container message: `header_fields` (the container's
/// non-repeated fields, e.g. `resource`, `schema_url`) plus `children`
/// (already-encoded child entries of field 2), wrapped as field `outer_field`.
fn reframe(outer_field: u32, header_fields: &[Bytes], children: &[Bytes]) -> Bytes {
    let inner: usize =
        header_fields.iter().map(|b| b.len()).sum::<usize>() + children.iter().map(|b| b.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(inner + 11);
    put_len_header(&mut out, outer_field, inner);
    for b in header_fields.iter().chain(children) {
        out.extend_from_slice(b);
    }
    out.freeze()
}

/// Units of one scope entry at `body[s..e]`: its leaves, regrouped under
/// copies of the scope header (bytes carry field tag 2, as a resource's child).
fn scope_units(
    signal: Signal,
    body: &Bytes,
    s: usize,
    e: usize,
    max: u64,
    out: &mut Vec<Unit>,
) -> Result<(), WireError> {
    let mut header = Vec::new();
    let mut leaves: Vec<Unit> = Vec::new();
    for f in Fields::new(body, s, e) {
        let f = f?;
        if f.number == 2 {
            let (ls, le) = message_range(&f)?;
            leaves.push(Unit {
                bytes: body.slice(f.start..f.end),
                items: leaf_items(signal, body, ls, le)?,
            });
        } else {
            header.push(body.slice(f.start..f.end));
        }
    }
    group_units(&header, leaves, max, out);
    Ok(())
}

/// Groups `children` under copies of `header` (re-framed as field 2) so each
/// group holds at most `max` items (a single child over `max` stays whole).
fn group_units(header: &[Bytes], children: Vec<Unit>, max: u64, out: &mut Vec<Unit>) {
    let mut group: Vec<Bytes> = Vec::new();
    let mut items = 0u64;
    let empty = children.is_empty();
    for c in children {
        if !group.is_empty() && items + c.items > max {
            out.push(Unit {
                bytes: reframe(2, header, &group),
                items,
            });
            group.clear();
            items = 0;
        }
        items += c.items;
        group.push(c.bytes);
    }
    if !group.is_empty() || empty {
        out.push(Unit {
            bytes: reframe(2, header, &group),
            items,
        });
    }
}

/// Units of one resource entry at `body[s..e]`: its scopes (split further when
/// a scope alone holds more than `max` items), regrouped under copies of the
/// resource header. Produced bytes carry field tag 2; the caller re-tags as 1.
fn resource_units(
    signal: Signal,
    body: &Bytes,
    s: usize,
    e: usize,
    max: u64,
    out: &mut Vec<Unit>,
) -> Result<(), WireError> {
    let mut header = Vec::new();
    let mut scopes: Vec<Unit> = Vec::new();
    for f in Fields::new(body, s, e) {
        let f = f?;
        if f.number == 2 {
            let (ss, se) = message_range(&f)?;
            let items = scope_items(signal, body, ss, se)?;
            if items > max {
                let mut parts = Vec::new();
                scope_units(signal, body, ss, se, max, &mut parts)?;
                scopes.extend(parts);
            } else {
                scopes.push(Unit {
                    bytes: body.slice(f.start..f.end),
                    items,
                });
            }
        } else {
            header.push(body.slice(f.start..f.end));
        }
    }
    group_units(&header, scopes, max, out);
    Ok(())
}

/// Re-tags an encoded field-2 entry produced by `group_units` as field 1 (a
/// top-level request entry). Both tags are one byte, so only that byte changes.
fn retag_top(unit: Bytes) -> Bytes {
    let mut b = BytesMut::from(&unit[..]);
    b[0] = (1 << 3) | 2;
    b.freeze()
}

/// Splits `payload` into payloads of at most `max` items each, cutting between
/// resources, then scopes, then items; a single item (or a single metric) over
/// `max` is not cut. Untouched resources are moved as slices of the original
/// buffers; only split containers are re-framed.
pub fn split(signal: Signal, payload: Payload, max: u64) -> Result<Vec<Payload>, WireError> {
    if max == 0 || payload.items <= max {
        return Ok(vec![payload]);
    }
    let mut units: Vec<Unit> = Vec::new();
    for chunk in &payload.chunks {
        for f in Fields::all(chunk) {
            let f = f?;
            if f.number != 1 {
                continue;
            }
            let (s, e) = message_range(&f)?;
            let items = resource_items(signal, chunk, s, e)?;
            if items > max {
                let mut parts = Vec::new();
                resource_units(signal, chunk, s, e, max, &mut parts)?;
                units.extend(parts.into_iter().map(|u| Unit {
                    bytes: retag_top(u.bytes),
                    items: u.items,
                }));
            } else {
                units.push(Unit {
                    bytes: chunk.slice(f.start..f.end),
                    items,
                });
            }
        }
    }
    let mut out = Vec::new();
    let mut cur = Payload::new();
    for u in units {
        if cur.items > 0 && cur.items + u.items > max {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(u.bytes, u.items);
    }
    if !cur.chunks.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        metrics::v1::{
            metric, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        },
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span},
        ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
    };
    use prost::Message;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn traces(resources: usize, scopes: usize, spans: usize) -> ExportTraceServiceRequest {
        let mut n = 0u32;
        ExportTraceServiceRequest {
            resource_spans: (0..resources)
                .map(|r| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", &format!("svc-{r}"))],
                        ..Default::default()
                    }),
                    scope_spans: (0..scopes)
                        .map(|s| ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: format!("scope-{s}"),
                                ..Default::default()
                            }),
                            spans: (0..spans)
                                .map(|_| {
                                    n += 1;
                                    Span {
                                        trace_id: Bytes::from(vec![n as u8; 16]),
                                        span_id: Bytes::from(n.to_le_bytes().repeat(2)),
                                        name: format!("span-{n}"),
                                        attributes: vec![kv("k", "v")],
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            schema_url: "s".into(),
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn varints() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(read_varint(&b, &mut pos).unwrap(), v);
            assert_eq!(pos, b.len());
        }
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), Err(WireError::Truncated(2)));
        let mut pos = 0;
        assert!(read_varint(&[0xff; 11], &mut pos).is_err());
    }

    #[test]
    fn scan_counts_every_signal() {
        let t = traces(3, 2, 5).encode_to_vec();
        assert_eq!(scan(Signal::Traces, &t).unwrap().items, 30);

        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![
                    ScopeLogs {
                        log_records: vec![LogRecord::default(); 4],
                        ..Default::default()
                    },
                    ScopeLogs::default(),
                ],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        assert_eq!(scan(Signal::Logs, &logs).unwrap().items, 4);

        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        Metric {
                            name: "g".into(),
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: vec![NumberDataPoint::default(); 3],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "s".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint::default(); 2],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "h".into(),
                            data: Some(metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint::default(); 1],
                                aggregation_temporality: 1,
                            })),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        assert_eq!(scan(Signal::Metrics, &metrics).unwrap().items, 6);
    }

    #[test]
    fn scan_rejects_malformed() {
        let t = traces(2, 1, 3).encode_to_vec();
        for cut in 1..t.len() {
            // Every strict prefix that does not end on a resource boundary is invalid.
            let r = scan(Signal::Traces, &t[..cut]);
            if let Ok(s) = r {
                assert!(s.items < 6, "prefix {cut} accepted with all items");
            }
        }
        assert!(scan(Signal::Traces, b"\xff\xff\xff").is_err());
        // an unknown top-level field is allowed but marks the body for cleanup
        assert_eq!(scan(Signal::Traces, b"\x10\x01").unwrap().items, 0);
        assert!(!scan(Signal::Traces, b"\x10\x01").unwrap().only_resources);
        // field 1 as a varint instead of a message
        assert!(matches!(
            scan(Signal::Traces, b"\x08\x01"),
            Err(WireError::NotMessage { .. })
        ));
        assert!(scan(Signal::Traces, b"\x0b").is_err());
    }

    #[test]
    fn concatenation_is_a_valid_batch() {
        let a = traces(2, 1, 3);
        let b = traces(1, 2, 2);
        let mut p = Payload::new();
        p.push(Bytes::from(a.encode_to_vec()), 6);
        p.push(Bytes::from(b.encode_to_vec()), 4);
        let merged = ExportTraceServiceRequest::decode(p.to_bytes()).unwrap();
        let mut want = a.clone();
        want.resource_spans.extend(b.resource_spans);
        assert_eq!(merged, want);
    }

    fn spans_of(req: &ExportTraceServiceRequest) -> Vec<(String, String, Span)> {
        let mut v = Vec::new();
        for rs in &req.resource_spans {
            let svc = format!("{:?}", rs.resource);
            for ss in &rs.scope_spans {
                for sp in &ss.spans {
                    v.push((svc.clone(), format!("{:?}{}", ss.scope, ss.schema_url), sp.clone()));
                }
            }
        }
        v
    }

    #[test]
    fn split_preserves_every_span_with_its_resource_and_scope() {
        let req = traces(3, 2, 7); // 42 spans, 14 per resource, 7 per scope
        let body = Bytes::from(req.encode_to_vec());
        for max in [1u64, 3, 5, 7, 10, 14, 20, 41, 42, 100] {
            let parts = split(Signal::Traces, Payload::from_body(body.clone(), 42), max).unwrap();
            let mut got = Vec::new();
            for p in &parts {
                assert!(p.items <= max, "max {max}: part with {} items", p.items);
                let dec = ExportTraceServiceRequest::decode(p.to_bytes()).unwrap();
                assert_eq!(scan(Signal::Traces, &p.to_bytes()).unwrap().items, p.items);
                got.extend(spans_of(&dec));
            }
            assert_eq!(got, spans_of(&req), "max {max}");
        }
    }

    #[test]
    fn split_keeps_empty_scopes_and_resources() {
        let mut req = traces(2, 1, 3);
        req.resource_spans[0].scope_spans.push(ScopeSpans::default());
        req.resource_spans.push(ResourceSpans::default());
        let body = Bytes::from(req.encode_to_vec());
        let parts = split(Signal::Traces, Payload::from_body(body, 6), 2).unwrap();
        let mut merged = ExportTraceServiceRequest::default();
        for p in parts {
            merged.merge(p.to_bytes()).unwrap();
        }
        assert_eq!(spans_of(&merged), spans_of(&req));
        assert!(merged.resource_spans.len() >= 3);
        assert!(merged
            .resource_spans
            .iter()
            .any(|r| r.resource.is_none() && r.scope_spans.is_empty()));
    }
}
