//! OTLP protobuf encoding of a batch of ring entries, on the shard: one
//! `Export{Trace,Logs}ServiceRequest` with the collector's resource, the
//! entries grouped by instrumentation scope (native records use the scope
//! `sluice.sdk`). The result is a `Payload` the exporter sends as it is.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry::{logs::AnyValue as OtelAny, trace::Status as OtelStatus, Array, InstrumentationScope, Value};
use prost::Message;

use crate::{
    payload::Payload,
    proto::{
        collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
        common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope as PScope, KeyValue, KeyValueList},
        logs::v1::{LogRecord as PLog, ResourceLogs, ScopeLogs},
        resource::v1::Resource,
        trace::v1::{span, ResourceSpans, ScopeSpans, Span as PSpan, Status},
    },
};

use super::record::{AttrValue, Attrs, Entry, LogRecord, Span};

/// The scope native records are exported under.
pub const NATIVE_SCOPE: &str = "sluice.sdk";

/// Encodes trace entries (native and OTel spans) as one export request.
pub fn traces(resource: &Resource, entries: &mut Vec<Entry>) -> Payload {
    let mut scopes: Vec<ScopeSpans> = Vec::new();
    let n = entries.len() as u64;
    for e in entries.drain(..) {
        let (scope, span) = match e {
            Entry::Span(s) => (None, native_span(&s)),
            Entry::OtelSpan(s) => {
                let p = otel_span(&s);
                (Some(s.instrumentation_scope), p)
            }
            _ => continue,
        };
        scope_slot(
            &mut scopes,
            scope,
            |s| &s.scope,
            |scope| ScopeSpans {
                scope: Some(scope),
                ..Default::default()
            },
        )
        .spans
        .push(span);
    }
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: scopes,
            ..Default::default()
        }],
    };
    Payload::from_body(Bytes::from(req.encode_to_vec()), n)
}

/// Encodes log entries (native and OTel log records) as one export request.
pub fn logs(resource: &Resource, entries: &mut Vec<Entry>) -> Payload {
    let mut scopes: Vec<ScopeLogs> = Vec::new();
    let n = entries.len() as u64;
    for e in entries.drain(..) {
        let (scope, rec) = match e {
            Entry::Log(l) => (None, native_log(&l)),
            Entry::OtelLog(b) => {
                let (r, scope) = *b;
                (Some(scope), otel_log(&r))
            }
            _ => continue,
        };
        scope_slot(
            &mut scopes,
            scope,
            |s| &s.scope,
            |scope| ScopeLogs {
                scope: Some(scope),
                ..Default::default()
            },
        )
        .log_records
        .push(rec);
    }
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: scopes,
            ..Default::default()
        }],
    };
    Payload::from_body(Bytes::from(req.encode_to_vec()), n)
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
    scope: Option<InstrumentationScope>,
    get: impl Fn(&G) -> &Option<PScope>,
    make: impl FnOnce(PScope) -> G,
) -> &mut G {
    let (name, version) = match &scope {
        Some(s) => (s.name(), s.version().unwrap_or("")),
        None => (NATIVE_SCOPE, ""),
    };
    let found = groups
        .iter()
        .position(|g| get(g).as_ref().is_some_and(|s| s.name == name && s.version == version));
    let i = match found {
        Some(i) => i,
        None => {
            let p = match &scope {
                Some(s) => PScope {
                    name: s.name().to_string(),
                    version: s.version().unwrap_or("").to_string(),
                    attributes: s.attributes().map(|kv| kv_of(kv.key.as_str(), &kv.value)).collect(),
                    dropped_attributes_count: 0,
                },
                None => PScope {
                    name: NATIVE_SCOPE.into(),
                    ..Default::default()
                },
            };
            groups.push(make(p));
            groups.len() - 1
        }
    };
    &mut groups[i]
}

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

fn id_bytes(id: &[u8]) -> Bytes {
    if id.iter().all(|&b| b == 0) {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(id)
    }
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
    use crate::sdk::record::{SpanKind, StatusCode};

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
