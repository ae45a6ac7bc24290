//! OTLP protobuf encoding of a batch of ring entries, on the shard: one
//! `Export{Trace,Logs}ServiceRequest` with the collector's resource, the
//! entries grouped by instrumentation scope (native records use the scope
//! `sluice.sdk`). The result is a `Payload` the exporter sends as it is.
//!
//! Native records are written straight into the request's one buffer, field
//! by field (their shape is fixed: ids, a name, times, at most `MAX_ATTRS`
//! attributes), with no message objects, no allocation per record and no
//! second copy: the envelope headers, whose lengths are known only at the
//! end, go into room reserved in front of the records. Building prost
//! messages for each span (strings and vectors allocated, encoded, freed)
//! took more CPU on the shard than recording took on the application
//! threads, and the shard shares the application's cores. OpenTelemetry
//! SDK objects (`SpanData`, SDK log records: open-ended attribute values,
//! events, links) still go through prost messages, one scope entry per
//! instrumentation scope, after the native scope entry. A test checks the
//! native bytes against prost's encoding of the same records.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use opentelemetry::{logs::AnyValue as OtelAny, trace::Status as OtelStatus, Array, InstrumentationScope, Value};
use prost::Message;

use crate::{
    payload::Payload,
    proto::{
        common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope as PScope, KeyValue, KeyValueList},
        logs::v1::{LogRecord as PLog, ScopeLogs},
        resource::v1::Resource,
        trace::v1::{span, ScopeSpans, Span as PSpan, Status},
    },
    signal::Signal,
    wire::{put_len_header, put_varint, varint_len},
};

use super::record::{AttrValue, Attrs, Entry, LogRecord, Span};

/// The scope native records are exported under.
pub const NATIVE_SCOPE: &str = "sluice.sdk";

/// The records of one signal being encoded into one export request as the
/// shard drains them from the rings: a native record is written into the
/// request buffer when it is added (it is not kept), an SDK object is
/// converted into its scope's group.
pub struct Batch {
    signal: Signal,
    req: Option<Request>,
    spans: Vec<ScopeSpans>,
    logs: Vec<ScopeLogs>,
    len: usize,
}

impl Batch {
    pub fn new(signal: Signal) -> Batch {
        Batch {
            signal,
            req: None,
            spans: Vec::new(),
            logs: Vec::new(),
            len: 0,
        }
    }

    /// Records added since the last `take`.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a record of this batch's signal (others are ignored); `resource`
    /// is the encoded `Resource` message.
    pub fn add(&mut self, resource: &[u8], e: Entry) {
        let buf = &mut self.req.get_or_insert_with(|| Request::new(resource)).buf;
        match (self.signal, e) {
            (Signal::Traces, Entry::Span(s)) => {
                put_len_header(buf, 2, span_len(&s));
                put_span(buf, &s);
            }
            (Signal::Traces, Entry::OtelSpan(s)) => {
                let p = otel_span(&s);
                scope_slot(
                    &mut self.spans,
                    s.instrumentation_scope,
                    |s| &s.scope,
                    |scope| ScopeSpans {
                        scope: Some(scope),
                        ..Default::default()
                    },
                )
                .spans
                .push(p);
            }
            (Signal::Logs, Entry::Log(l)) => {
                put_len_header(buf, 2, log_len(&l));
                put_log(buf, &l);
            }
            (Signal::Logs, Entry::OtelLog(b)) => {
                let (r, scope) = *b;
                scope_slot(
                    &mut self.logs,
                    scope,
                    |s| &s.scope,
                    |scope| ScopeLogs {
                        scope: Some(scope),
                        ..Default::default()
                    },
                )
                .log_records
                .push(otel_log(&r));
            }
            _ => return,
        }
        self.len += 1;
    }

    /// The request of everything added since the last `take`.
    pub fn take(&mut self, resource: &[u8]) -> Payload {
        let req = self.req.take().unwrap_or_else(|| Request::new(resource));
        let body = match self.signal {
            Signal::Logs => req.finish(resource, &std::mem::take(&mut self.logs)),
            _ => req.finish(resource, &std::mem::take(&mut self.spans)),
        };
        Payload::from_body(body, std::mem::take(&mut self.len) as u64)
    }
}

/// One request being written: `[room][native records][SDK scope entries]`,
/// the envelope headers put into the room at the end. The request has one
/// resource entry (`1: Resource{Spans,Logs}`: `1: resource`, then scope
/// entries `2:`), and a scope entry is `1: scope` then its records as `2:`,
/// the same shape for traces and logs.
struct Request {
    buf: BytesMut,
    room: usize,
}

/// `InstrumentationScope { name: NATIVE_SCOPE }`.
const NATIVE_SCOPE_MSG: &[u8] = b"\x0a\x0asluice.sdk";

impl Request {
    fn new(resource: &[u8]) -> Request {
        // Four tags and lengths of at most 1 + 10 bytes, the resource and
        // the native scope message.
        let room = 4 * 11 + resource.len() + NATIVE_SCOPE_MSG.len();
        let mut buf = BytesMut::with_capacity(room + 64 * 1024);
        buf.resize(room, 0);
        Request { buf, room }
    }

    /// Appends the SDK objects' scope entries and puts the headers in front.
    fn finish<M: Message>(mut self, resource: &[u8], scopes: &[M]) -> Bytes {
        let native = self.buf.len() - self.room;
        for s in scopes {
            put_varint(&mut self.buf, (2 << 3) | 2);
            // Cannot fail: a BytesMut grows as needed.
            let _ = s.encode_length_delimited(&mut self.buf);
        }
        let sdk = self.buf.len() - self.room - native;
        // `ScopeSpans` / `ScopeLogs` of the native records: scope, records.
        let native_inner = len_field(NATIVE_SCOPE_MSG.len()) + native;
        let scope_entry = if native > 0 { len_field(native_inner) } else { 0 };
        let resource_field = len_field(resource.len());
        let mut head = BytesMut::with_capacity(self.room);
        put_len_header(&mut head, 1, resource_field + scope_entry + sdk);
        put_len_header(&mut head, 1, resource.len());
        head.put_slice(resource);
        if native > 0 {
            put_len_header(&mut head, 2, native_inner);
            put_len_header(&mut head, 1, NATIVE_SCOPE_MSG.len());
            head.put_slice(NATIVE_SCOPE_MSG);
        }
        let at = self.room - head.len();
        self.buf[at..self.room].copy_from_slice(&head);
        self.buf.advance(at);
        self.buf.freeze()
    }
}

/// The size of a length-delimited field of `n` bytes whose number is below
/// 16 (one tag byte, as every field written here).
fn len_field(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

fn attr_value_len(v: &AttrValue) -> usize {
    match *v {
        AttrValue::Str(s) => len_field(s.len()),
        AttrValue::I64(i) => 1 + varint_len(i as u64),
        AttrValue::F64(_) => 9,
        AttrValue::Bool(_) => 2,
    }
}

/// A `KeyValue` message's length (prost leaves an empty key out).
fn kv_len(key: &str, v: &AttrValue) -> usize {
    str_len(key) + len_field(attr_value_len(v))
}

/// A string field, left out when empty (as prost does).
fn put_str(buf: &mut BytesMut, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(buf, field, s.as_bytes());
    }
}

fn put_kv(buf: &mut BytesMut, key: &str, v: &AttrValue) {
    put_str(buf, 1, key);
    put_len_header(buf, 2, attr_value_len(v));
    match *v {
        AttrValue::Str(s) => put_bytes(buf, 1, s.as_bytes()),
        AttrValue::I64(i) => {
            buf.put_u8(3 << 3);
            put_varint(buf, i as u64);
        }
        AttrValue::F64(f) => {
            buf.put_u8((4 << 3) | 1);
            buf.put_u64_le(f.to_bits());
        }
        AttrValue::Bool(b) => {
            buf.put_u8(2 << 3);
            buf.put_u8(u8::from(b));
        }
    }
}

/// The length of an attribute list as repeated field entries (any field
/// number below 16: one tag byte each).
fn attrs_len(a: &Attrs) -> usize {
    a.as_slice().iter().map(|(k, v)| len_field(kv_len(k, v))).sum()
}

fn put_attrs(buf: &mut BytesMut, field: u32, a: &Attrs) {
    for (k, v) in a.as_slice() {
        put_len_header(buf, field, kv_len(k, v));
        put_kv(buf, k, v);
    }
}

fn nonzero(id: &[u8]) -> bool {
    id.iter().any(|&b| b != 0)
}

fn fixed_len(v: u64) -> usize {
    if v == 0 {
        0
    } else {
        9
    }
}

fn put_fixed(buf: &mut BytesMut, field: u32, v: u64) {
    if v != 0 {
        buf.put_u8(((field << 3) | 1) as u8);
        buf.put_u64_le(v);
    }
}

fn varint_field_len(v: u64) -> usize {
    if v == 0 {
        0
    } else {
        1 + varint_len(v)
    }
}

fn put_varint_field(buf: &mut BytesMut, field: u32, v: u64) {
    if v != 0 {
        buf.put_u8((field << 3) as u8);
        put_varint(buf, v);
    }
}

fn str_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        len_field(s.len())
    }
}

/// A native span's `Span` message length (fields as prost writes them:
/// defaults left out, the trace and span ids always present).
fn span_len(s: &Span) -> usize {
    let status = s.status as u64;
    (2 + 16)
        + (2 + 8)
        + id_len(&s.parent_span_id)
        + str_len(s.name)
        + varint_field_len(s.kind as u64)
        + fixed_len(s.start_unix_nanos)
        + fixed_len(s.end_unix_nanos)
        + attrs_len(&s.attrs)
        + varint_field_len(u64::from(s.attrs.dropped()))
        + if status != 0 {
            len_field(varint_field_len(status))
        } else {
            0
        }
}

/// A length-delimited field holding `bytes` (written even when empty).
fn put_bytes(buf: &mut BytesMut, field: u32, bytes: &[u8]) {
    put_len_header(buf, field, bytes.len());
    buf.put_slice(bytes);
}

/// A trace or span id field, left out when all zero (as the prost
/// conversion does for optional ids).
fn put_id(buf: &mut BytesMut, field: u32, id: &[u8]) {
    if nonzero(id) {
        put_bytes(buf, field, id);
    }
}

fn id_len(id: &[u8]) -> usize {
    if nonzero(id) {
        2 + id.len()
    } else {
        0
    }
}

fn put_span(buf: &mut BytesMut, s: &Span) {
    put_bytes(buf, 1, &s.trace_id);
    put_bytes(buf, 2, &s.span_id);
    put_id(buf, 4, &s.parent_span_id);
    put_str(buf, 5, s.name);
    put_varint_field(buf, 6, s.kind as u64);
    put_fixed(buf, 7, s.start_unix_nanos);
    put_fixed(buf, 8, s.end_unix_nanos);
    put_attrs(buf, 9, &s.attrs);
    put_varint_field(buf, 10, u64::from(s.attrs.dropped()));
    let status = s.status as u64;
    if status != 0 {
        // `Status { code }`: field 3.
        put_len_header(buf, 15, varint_field_len(status));
        put_varint_field(buf, 3, status);
    }
}

/// A native log record's `LogRecord` message length (the observed time is
/// the record's time; the body is a string value, present even when empty).
fn log_len(l: &LogRecord) -> usize {
    fixed_len(l.time_unix_nanos)
        + varint_field_len(u64::from(l.severity))
        + len_field(len_field(l.body.len()))
        + attrs_len(&l.attrs)
        + varint_field_len(u64::from(l.attrs.dropped()))
        + id_len(&l.trace_id)
        + id_len(&l.span_id)
        + fixed_len(l.time_unix_nanos)
}

fn put_log(buf: &mut BytesMut, l: &LogRecord) {
    put_fixed(buf, 1, l.time_unix_nanos);
    put_varint_field(buf, 2, u64::from(l.severity));
    put_len_header(buf, 5, len_field(l.body.len()));
    put_bytes(buf, 1, l.body.as_bytes());
    put_attrs(buf, 6, &l.attrs);
    put_varint_field(buf, 7, u64::from(l.attrs.dropped()));
    put_id(buf, 9, &l.trace_id);
    put_id(buf, 10, &l.span_id);
    put_fixed(buf, 11, l.time_unix_nanos);
}

/// The resource of a collector, from OTel key/values.
pub fn resource(attrs: &[opentelemetry::KeyValue]) -> Resource {
    Resource {
        attributes: attrs.iter().map(|kv| kv_of(kv.key.as_str(), &kv.value)).collect(),
        ..Default::default()
    }
}

/// Finds (or adds) the group of `scope` (matched by name and version).
fn scope_slot<G>(
    groups: &mut Vec<G>,
    scope: InstrumentationScope,
    get: impl Fn(&G) -> &Option<PScope>,
    make: impl FnOnce(PScope) -> G,
) -> &mut G {
    let (name, version) = (scope.name(), scope.version().unwrap_or(""));
    let found = groups
        .iter()
        .position(|g| get(g).as_ref().is_some_and(|s| s.name == name && s.version == version));
    let i = match found {
        Some(i) => i,
        None => {
            groups.push(make(PScope {
                name: name.to_string(),
                version: version.to_string(),
                attributes: scope.attributes().map(|kv| kv_of(kv.key.as_str(), &kv.value)).collect(),
                dropped_attributes_count: 0,
            }));
            groups.len() - 1
        }
    };
    &mut groups[i]
}

fn id_bytes(id: &[u8]) -> Bytes {
    if id.iter().all(|&b| b == 0) {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(id)
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn value_of(v: &Value) -> AnyValue {
    let array = |values: Vec<AnyValue>| any_value::Value::ArrayValue(ArrayValue { values });
    let wrap = |v| AnyValue { value: Some(v) };
    AnyValue {
        value: Some(match v {
            Value::Bool(b) => any_value::Value::BoolValue(*b),
            Value::I64(i) => any_value::Value::IntValue(*i),
            Value::F64(f) => any_value::Value::DoubleValue(*f),
            Value::String(s) => any_value::Value::StringValue(s.as_str().to_string()),
            Value::Array(Array::Bool(a)) => array(a.iter().map(|b| wrap(any_value::Value::BoolValue(*b))).collect()),
            Value::Array(Array::I64(a)) => array(a.iter().map(|i| wrap(any_value::Value::IntValue(*i))).collect()),
            Value::Array(Array::F64(a)) => array(a.iter().map(|f| wrap(any_value::Value::DoubleValue(*f))).collect()),
            Value::Array(Array::String(a)) => array(
                a.iter()
                    .map(|s| wrap(any_value::Value::StringValue(s.as_str().to_string())))
                    .collect(),
            ),
            other => any_value::Value::StringValue(other.to_string()),
        }),
    }
}

fn kv_of(key: &str, v: &Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value_of(v)),
        ..Default::default()
    }
}

fn any_of(v: &OtelAny) -> AnyValue {
    AnyValue {
        value: Some(match v {
            OtelAny::Int(i) => any_value::Value::IntValue(*i),
            OtelAny::Double(f) => any_value::Value::DoubleValue(*f),
            OtelAny::String(s) => any_value::Value::StringValue(s.as_str().to_string()),
            OtelAny::Boolean(b) => any_value::Value::BoolValue(*b),
            OtelAny::Bytes(b) => any_value::Value::BytesValue(Bytes::copy_from_slice(b)),
            OtelAny::ListAny(l) => any_value::Value::ArrayValue(ArrayValue {
                values: l.iter().map(any_of).collect(),
            }),
            OtelAny::Map(m) => any_value::Value::KvlistValue(KeyValueList {
                values: m
                    .iter()
                    .map(|(k, v)| KeyValue {
                        key: k.as_str().to_string(),
                        value: Some(any_of(v)),
                        ..Default::default()
                    })
                    .collect(),
            }),
            _ => any_value::Value::StringValue(String::new()),
        }),
    }
}

fn otel_span(s: &opentelemetry_sdk::trace::SpanData) -> PSpan {
    use opentelemetry::trace::SpanKind as K;
    let cx = &s.span_context;
    let (code, message) = match &s.status {
        OtelStatus::Unset => (0, String::new()),
        OtelStatus::Ok => (1, String::new()),
        OtelStatus::Error { description } => (2, description.to_string()),
    };
    let mut flags = u32::from(cx.trace_flags().to_u8()) | 0x100;
    if s.parent_span_is_remote {
        flags |= 0x200;
    }
    PSpan {
        trace_id: Bytes::copy_from_slice(&cx.trace_id().to_bytes()),
        span_id: Bytes::copy_from_slice(&cx.span_id().to_bytes()),
        trace_state: cx.trace_state().header(),
        parent_span_id: id_bytes(&s.parent_span_id.to_bytes()),
        flags,
        name: s.name.to_string(),
        kind: match s.span_kind {
            K::Internal => 1,
            K::Server => 2,
            K::Client => 3,
            K::Producer => 4,
            K::Consumer => 5,
        },
        start_time_unix_nano: nanos(s.start_time),
        end_time_unix_nano: nanos(s.end_time),
        attributes: s
            .attributes
            .iter()
            .map(|kv| kv_of(kv.key.as_str(), &kv.value))
            .collect(),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s
            .events
            .iter()
            .map(|e| span::Event {
                time_unix_nano: nanos(e.timestamp),
                name: e.name.to_string(),
                attributes: e
                    .attributes
                    .iter()
                    .map(|kv| kv_of(kv.key.as_str(), &kv.value))
                    .collect(),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.events.dropped_count,
        links: s
            .links
            .iter()
            .map(|l| span::Link {
                trace_id: Bytes::copy_from_slice(&l.span_context.trace_id().to_bytes()),
                span_id: Bytes::copy_from_slice(&l.span_context.span_id().to_bytes()),
                trace_state: l.span_context.trace_state().header(),
                attributes: l
                    .attributes
                    .iter()
                    .map(|kv| kv_of(kv.key.as_str(), &kv.value))
                    .collect(),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: u32::from(l.span_context.trace_flags().to_u8()) | 0x100,
            })
            .collect(),
        dropped_links_count: s.links.dropped_count,
        status: (code != 0).then_some(Status { code, message }),
    }
}

fn otel_log(r: &opentelemetry_sdk::logs::SdkLogRecord) -> PLog {
    let (trace_id, span_id, flags) = match r.trace_context() {
        Some(t) => (
            Bytes::copy_from_slice(&t.trace_id.to_bytes()),
            Bytes::copy_from_slice(&t.span_id.to_bytes()),
            t.trace_flags.map_or(0, |f| u32::from(f.to_u8())),
        ),
        None => (Bytes::new(), Bytes::new(), 0),
    };
    let observed = r.observed_timestamp().map_or(0, nanos);
    PLog {
        time_unix_nano: r.timestamp().map_or(0, nanos),
        observed_time_unix_nano: if observed == 0 {
            nanos(SystemTime::now())
        } else {
            observed
        },
        severity_number: r.severity_number().map_or(0, |s| s as i32),
        severity_text: r.severity_text().unwrap_or("").to_string(),
        body: r.body().map(any_of),
        attributes: r
            .attributes_iter()
            .map(|(k, v)| KeyValue {
                key: k.as_str().to_string(),
                value: Some(any_of(v)),
                ..Default::default()
            })
            .collect(),
        dropped_attributes_count: 0,
        flags,
        trace_id,
        span_id,
        event_name: r.event_name().unwrap_or("").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        proto::{
            collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
            logs::v1::ResourceLogs,
            trace::v1::ResourceSpans,
        },
        sdk::record::{SpanKind, StatusCode},
    };

    /// Encodes trace entries (native and OTel spans) as one export request.
    fn traces(resource: &Resource, entries: &mut Vec<Entry>) -> Payload {
        encode_all(Signal::Traces, resource, entries)
    }

    /// Encodes log entries (native and OTel log records) as one export request.
    fn logs(resource: &Resource, entries: &mut Vec<Entry>) -> Payload {
        encode_all(Signal::Logs, resource, entries)
    }

    fn encode_all(signal: Signal, resource: &Resource, entries: &mut Vec<Entry>) -> Payload {
        let resource = resource.encode_to_vec();
        let mut b = Batch::new(signal);
        for e in entries.drain(..) {
            b.add(&resource, e);
        }
        b.take(&resource)
    }

    /// Records of every shape the direct encoding has a branch for: empty
    /// and long names and strings (two-byte lengths), zero and non-zero
    /// ids, times and statuses, negative ints, each value type, empty keys,
    /// dropped attributes.
    fn varied(seed: u64) -> (Span, LogRecord) {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        const NAMES: [&str; 4] = ["", "op", "GET /users/{id}", "a long name, a long name, a long name, a long name, a long name, a long name, a long name, a long name, a long name, a long name, a long name, a long name, a long name, a long name, "];
        const KEYS: [&str; 3] = ["", "k", "http.request.header.x-long-name-for-a-key"];
        let mut attrs = Attrs::new();
        for _ in 0..next() % 7 {
            let v = match next() % 5 {
                0 => AttrValue::Str(NAMES[(next() % 4) as usize]),
                1 => AttrValue::I64(next() as i64),
                2 => AttrValue::I64(-((next() % 1000) as i64)),
                3 => AttrValue::F64(f64::from_bits(next())),
                _ => AttrValue::Bool(next() % 2 == 0),
            };
            attrs = attrs.with(KEYS[(next() % 3) as usize], v);
        }
        let id = |n: u64| if n % 4 == 0 { 0 } else { n };
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&id(next()).to_le_bytes());
        let span = Span {
            trace_id,
            span_id: id(next()).to_le_bytes(),
            parent_span_id: id(next()).to_le_bytes(),
            name: NAMES[(next() % 4) as usize],
            kind: [SpanKind::Internal, SpanKind::Server, SpanKind::Consumer][(next() % 3) as usize],
            start_unix_nanos: id(next()),
            end_unix_nanos: id(next()),
            status: [StatusCode::Unset, StatusCode::Ok, StatusCode::Error][(next() % 3) as usize],
            attrs,
        };
        let log = LogRecord {
            time_unix_nanos: id(next()),
            severity: (next() % 25) as u8,
            body: NAMES[(next() % 4) as usize],
            trace_id,
            span_id: id(next()).to_le_bytes(),
            attrs,
        };
        (span, log)
    }

    #[test]
    fn native_records_are_prosts_bytes() {
        let res = resource(&[opentelemetry::KeyValue::new("service.name", "svc")]);
        for n in [1usize, 2, 7, 300] {
            let (spans, logs_): (Vec<Span>, Vec<LogRecord>) =
                (0..n as u64).map(|i| varied(i + 1000 * n as u64)).unzip();
            let scope = Some(PScope {
                name: NATIVE_SCOPE.into(),
                ..Default::default()
            });
            let want = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(res.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: scope.clone(),
                        spans: spans.iter().map(native_span).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
            .encode_to_vec();
            let mut entries: Vec<Entry> = spans.iter().map(|s| Entry::Span(*s)).collect();
            let got = traces(&res, &mut entries);
            assert_eq!(got.items, n as u64);
            assert_eq!(got.to_bytes(), want, "{n} spans");
            let want = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(res.clone()),
                    scope_logs: vec![ScopeLogs {
                        scope,
                        log_records: logs_.iter().map(native_log).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
            .encode_to_vec();
            let mut entries: Vec<Entry> = logs_.iter().map(|l| Entry::Log(*l)).collect();
            assert_eq!(logs(&res, &mut entries).to_bytes(), want, "{n} log records");
        }
    }

    #[test]
    fn sdk_spans_follow_the_native_scope() {
        use opentelemetry::trace::{SpanContext, SpanKind as K, TraceFlags, TraceState};
        use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
        let res = resource(&[]);
        let data = |scope: &str| SpanData {
            span_context: SpanContext::new(
                opentelemetry::trace::TraceId::from_bytes([3; 16]),
                opentelemetry::trace::SpanId::from_bytes([4; 8]),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: K::Client,
            name: "sdk".into(),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: vec![opentelemetry::KeyValue::new("a", 1)],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: OtelStatus::Unset,
            instrumentation_scope: InstrumentationScope::builder(scope.to_string()).build(),
        };
        let (native, _) = varied(7);
        let mut entries = vec![
            Entry::OtelSpan(data("lib-a")),
            Entry::Span(native),
            Entry::OtelSpan(data("lib-b")),
            Entry::OtelSpan(data("lib-a")),
            Entry::Span(native),
        ];
        let p = traces(&res, &mut entries);
        assert_eq!(p.items, 5);
        let req = ExportTraceServiceRequest::decode(p.to_bytes()).unwrap();
        let scopes: Vec<(String, usize)> = req.resource_spans[0]
            .scope_spans
            .iter()
            .map(|s| (s.scope.as_ref().unwrap().name.clone(), s.spans.len()))
            .collect();
        assert_eq!(
            scopes,
            [(NATIVE_SCOPE.to_string(), 2), ("lib-a".into(), 2), ("lib-b".into(), 1)]
        );
        assert_eq!(req.resource_spans[0].scope_spans[0].spans[0], native_span(&native));
        assert_eq!(
            crate::wire::scan(crate::signal::Signal::Traces, &p.to_bytes())
                .unwrap()
                .items,
            5
        );
    }

    // The prost way of building native records: the reference the direct
    // encoding is checked against.
    fn native_attrs(a: &Attrs) -> Vec<KeyValue> {
        a.as_slice()
            .iter()
            .map(|(k, v)| KeyValue {
                key: (*k).to_string(),
                value: Some(AnyValue {
                    value: Some(match *v {
                        AttrValue::Str(s) => any_value::Value::StringValue(s.to_string()),
                        AttrValue::I64(i) => any_value::Value::IntValue(i),
                        AttrValue::F64(f) => any_value::Value::DoubleValue(f),
                        AttrValue::Bool(b) => any_value::Value::BoolValue(b),
                    }),
                }),
                ..Default::default()
            })
            .collect()
    }

    fn native_span(s: &Span) -> PSpan {
        PSpan {
            trace_id: Bytes::copy_from_slice(&s.trace_id),
            span_id: Bytes::copy_from_slice(&s.span_id),
            parent_span_id: id_bytes(&s.parent_span_id),
            name: s.name.to_string(),
            kind: s.kind as i32,
            start_time_unix_nano: s.start_unix_nanos,
            end_time_unix_nano: s.end_unix_nanos,
            attributes: native_attrs(&s.attrs),
            dropped_attributes_count: s.attrs.dropped(),
            status: (s.status as i32 != 0).then(|| Status {
                code: s.status as i32,
                message: String::new(),
            }),
            ..Default::default()
        }
    }

    fn native_log(l: &LogRecord) -> PLog {
        PLog {
            time_unix_nano: l.time_unix_nanos,
            observed_time_unix_nano: l.time_unix_nanos,
            severity_number: i32::from(l.severity),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(l.body.to_string())),
            }),
            attributes: native_attrs(&l.attrs),
            dropped_attributes_count: l.attrs.dropped(),
            trace_id: id_bytes(&l.trace_id),
            span_id: id_bytes(&l.span_id),
            ..Default::default()
        }
    }

    #[test]
    fn native_records_encode_as_otlp() {
        let res = resource(&[opentelemetry::KeyValue::new("service.name", "svc")]);
        let span = Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            name: "op",
            kind: SpanKind::Server,
            start_unix_nanos: 10,
            end_unix_nanos: 20,
            status: StatusCode::Error,
            attrs: Attrs::new()
                .with("a", AttrValue::I64(7))
                .with("b", AttrValue::Str("x"))
                .with("c", AttrValue::Bool(true))
                .with("d", AttrValue::F64(0.5))
                .with("e", AttrValue::I64(1)),
            ..Default::default()
        };
        let mut entries = vec![Entry::Span(span), Entry::Span(span)];
        let p = traces(&res, &mut entries);
        assert!(entries.is_empty());
        assert_eq!(p.items, 2);
        let req = ExportTraceServiceRequest::decode(p.to_bytes()).unwrap();
        let rs = &req.resource_spans[0];
        assert_eq!(rs.resource.as_ref().unwrap().attributes[0].key, "service.name");
        assert_eq!(rs.scope_spans.len(), 1, "one scope for native spans");
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, NATIVE_SCOPE);
        let s = &rs.scope_spans[0].spans[0];
        assert_eq!((&s.trace_id[..], &s.span_id[..]), (&[1u8; 16][..], &[2u8; 8][..]));
        assert!(s.parent_span_id.is_empty(), "a root span has no parent id");
        assert_eq!((s.kind, s.start_time_unix_nano, s.end_time_unix_nano), (2, 10, 20));
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        assert_eq!(s.attributes.len(), 4);
        assert_eq!(s.dropped_attributes_count, 1);
        // sluice's own wire scanner (what `sluice run` counts) agrees.
        assert_eq!(
            crate::wire::scan(crate::signal::Signal::Traces, &p.to_bytes())
                .unwrap()
                .items,
            2
        );

        let log = LogRecord {
            time_unix_nanos: 5,
            severity: 17,
            body: "boom",
            ..Default::default()
        };
        let mut entries = vec![Entry::Log(log)];
        let p = logs(&res, &mut entries);
        let req = ExportLogsServiceRequest::decode(p.to_bytes()).unwrap();
        let l = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!((l.time_unix_nano, l.severity_number), (5, 17));
        assert!(l.trace_id.is_empty());
        assert_eq!(
            l.body.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("boom".into()))
        );
    }
}
