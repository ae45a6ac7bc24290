//! Requests with known contents for the wire module's unit tests.

use bytes::Bytes;

use crate::proto::{
    common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
    ExportTraceServiceRequest,
};

/// `body` cut at `cuts` (sorted offsets) into chunks, as frames would cut it.
pub fn cut(body: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts.iter().chain(std::iter::once(&body.len())) {
        out.push(Bytes::copy_from_slice(&body[from..c]));
        from = c;
    }
    out
}

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub fn traces(resources: usize, scopes: usize, spans: usize) -> ExportTraceServiceRequest {
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
