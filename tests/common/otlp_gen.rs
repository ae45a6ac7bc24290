//! Random OTLP requests for property tests (proptest strategies over the prost
//! types: every AnyValue type, nested arrays and kvlists, NaN/±Inf/−0.0/
//! subnormal doubles, extreme ints, enum values outside the proto, empty and
//! non-ASCII strings), protobuf bodies with unknown fields spliced in, and a
//! rewrite of OTLP/JSON into the shape the JavaScript SDK sends (int64 as
//! numbers where JS can hold them, JS number spelling, unknown fields).

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::TestRng;
use sluice::proto::{
    common::v1::{any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point,
        summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
        Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
        SummaryDataPoint,
    },
    resource::v1::Resource,
    trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status},
    ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
};

pub fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(0.0),
        Just(5e-324),
        Just(f64::from_bits(0x000f_ffff_ffff_ffff)),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(11.100000000000001),
        Just(3.0000000000000004e-09),
        Just(2.2007250832970862e+129),
        Just(1e21),
        Just(123456789.0),
        any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("no NaN payloads", |v| !v.is_nan()),
        (-1e6f64..1e6f64),
    ]
}

pub fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0),
        Just(-1),
        Just(1 << 53),
        any::<i64>(),
        -1000i64..1000
    ]
}

pub fn uint() -> impl Strategy<Value = u64> {
    prop_oneof![Just(u64::MAX), Just(0), Just(1 << 53), any::<u64>()]
}

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z.]{1,8}",
        "\\PC{0,6}",
        any::<String>(),
        Just("\"quoted\\ \u{0} \u{1f} \u{7f} é 😀 \u{2028}".to_string()),
    ]
}

pub fn open_enum(named: i32) -> impl Strategy<Value = i32> {
    prop_oneof![
        0..named,
        Just(42),
        Just(-1),
        Just(i32::MAX),
        Just(i32::MIN),
        any::<i32>()
    ]
}

fn bytes(lens: &'static [usize]) -> impl Strategy<Value = Bytes> {
    prop::sample::select(lens).prop_flat_map(|n| prop::collection::vec(any::<u8>(), n).prop_map(Bytes::from))
}

pub fn trace_id() -> impl Strategy<Value = Bytes> {
    bytes(&[16, 16, 16, 0])
}

pub fn span_id() -> impl Strategy<Value = Bytes> {
    bytes(&[8, 8, 8, 0])
}

pub fn any_value() -> impl Strategy<Value = AnyValue> {
    use any_value::Value as V;
    let leaf = prop_oneof![
        text().prop_map(|s| Some(V::StringValue(s))),
        any::<bool>().prop_map(|b| Some(V::BoolValue(b))),
        int().prop_map(|i| Some(V::IntValue(i))),
        double().prop_map(|d| Some(V::DoubleValue(d))),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| Some(V::BytesValue(Bytes::from(b)))),
        any::<i32>().prop_map(|i| Some(V::StringValueStrindex(i))),
        Just(None),
    ]
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(5, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                value: Some(V::ArrayValue(ArrayValue { values }))
            }),
            prop::collection::vec((text(), prop::option::of(inner)), 0..4).prop_map(|kvs| AnyValue {
                value: Some(V::KvlistValue(KeyValueList {
                    values: kvs
                        .into_iter()
                        .map(|(key, value)| KeyValue {
                            key,
                            value,
                            ..Default::default()
                        })
                        .collect()
                }))
            }),
        ]
    })
}

pub fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(
        (
            text(),
            prop::option::of(any_value()),
            prop_oneof![3 => Just(0), 1 => any::<i32>()],
        )
            .prop_map(|(key, value, key_strindex)| KeyValue {
                key,
                value,
                key_strindex,
            }),
        0..4,
    )
}

fn resource() -> impl Strategy<Value = Option<Resource>> {
    let entity = (
        text(),
        text(),
        prop::collection::vec(text(), 0..3),
        prop::collection::vec(text(), 0..2),
    )
        .prop_map(|(schema_url, r#type, id_keys, description_keys)| EntityRef {
            schema_url,
            r#type,
            id_keys,
            description_keys,
        });
    prop::option::of(
        (attributes(), any::<u32>(), prop::collection::vec(entity, 0..2)).prop_map(
            |(attributes, dropped_attributes_count, entity_refs)| Resource {
                attributes,
                dropped_attributes_count,
                entity_refs,
            },
        ),
    )
}

fn scope() -> impl Strategy<Value = Option<InstrumentationScope>> {
    prop::option::of((text(), text(), attributes(), any::<u32>()).prop_map(
        |(name, version, attributes, dropped_attributes_count)| InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count,
        },
    ))
}

fn span() -> impl Strategy<Value = Span> {
    let event = (uint(), text(), attributes(), any::<u32>()).prop_map(|(t, name, attributes, d)| span::Event {
        time_unix_nano: t,
        name,
        attributes,
        dropped_attributes_count: d,
    });
    let link = (trace_id(), span_id(), text(), attributes(), any::<u32>(), any::<u32>()).prop_map(
        |(trace_id, span_id, trace_state, attributes, d, flags)| span::Link {
            trace_id,
            span_id,
            trace_state,
            attributes,
            dropped_attributes_count: d,
            flags,
        },
    );
    let status = prop::option::of((text(), open_enum(3)).prop_map(|(message, code)| Status { message, code }));
    (
        (
            trace_id(),
            span_id(),
            text(),
            span_id(),
            any::<u32>(),
            text(),
            open_enum(6),
        ),
        (uint(), uint(), attributes(), any::<u32>()),
        (
            prop::collection::vec(event, 0..3),
            any::<u32>(),
            prop::collection::vec(link, 0..3),
            any::<u32>(),
            status,
        ),
    )
        .prop_map(
            |(
                (trace_id, span_id, trace_state, parent_span_id, flags, name, kind),
                (start, end, attributes, dropped_attributes_count),
                (events, dropped_events_count, links, dropped_links_count, status),
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count,
                events,
                dropped_events_count,
                links,
                dropped_links_count,
                status,
            },
        )
}

pub fn traces() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let ss = (scope(), prop::collection::vec(span(), 1..3), text()).prop_map(|(scope, spans, schema_url)| ScopeSpans {
        scope,
        spans,
        schema_url,
    });
    let rs = (resource(), prop::collection::vec(ss, 1..3), text()).prop_map(|(resource, scope_spans, schema_url)| {
        ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        }
    });
    prop::collection::vec(rs, 1..3).prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn exemplars() -> impl Strategy<Value = Vec<Exemplar>> {
    let value = prop_oneof![
        double().prop_map(|d| Some(exemplar::Value::AsDouble(d))),
        int().prop_map(|i| Some(exemplar::Value::AsInt(i))),
        Just(None),
    ];
    prop::collection::vec(
        (attributes(), uint(), value, span_id(), trace_id()).prop_map(
            |(filtered_attributes, time_unix_nano, value, span_id, trace_id)| Exemplar {
                filtered_attributes,
                time_unix_nano,
                value,
                span_id,
                trace_id,
            },
        ),
        0..2,
    )
}

fn number_points() -> impl Strategy<Value = Vec<NumberDataPoint>> {
    let value = prop_oneof![
        double().prop_map(|d| Some(number_data_point::Value::AsDouble(d))),
        int().prop_map(|i| Some(number_data_point::Value::AsInt(i))),
        Just(None),
    ];
    prop::collection::vec(
        (attributes(), uint(), uint(), value, exemplars(), any::<u32>()).prop_map(
            |(attributes, start_time_unix_nano, time_unix_nano, value, exemplars, flags)| NumberDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                value,
                exemplars,
                flags,
            },
        ),
        1..3,
    )
}

fn histogram_points() -> impl Strategy<Value = Vec<HistogramDataPoint>> {
    prop::collection::vec(
        (
            (attributes(), uint(), uint(), uint(), prop::option::of(double())),
            (
                prop::collection::vec(uint(), 0..4),
                prop::collection::vec(double(), 0..4),
            ),
            (
                exemplars(),
                any::<u32>(),
                prop::option::of(double()),
                prop::option::of(double()),
            ),
        )
            .prop_map(
                |(
                    (attributes, start, time, count, sum),
                    (bucket_counts, explicit_bounds),
                    (exemplars, flags, min, max),
                )| {
                    HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count,
                        sum,
                        bucket_counts,
                        explicit_bounds,
                        exemplars,
                        flags,
                        min,
                        max,
                    }
                },
            ),
        1..3,
    )
}

fn exp_histogram_points() -> impl Strategy<Value = Vec<ExponentialHistogramDataPoint>> {
    let buckets = || {
        prop::option::of(
            (any::<i32>(), prop::collection::vec(uint(), 0..4))
                .prop_map(|(offset, bucket_counts)| Buckets { offset, bucket_counts }),
        )
    };
    prop::collection::vec(
        (
            (
                attributes(),
                uint(),
                uint(),
                uint(),
                prop::option::of(double()),
                any::<i32>(),
            ),
            (uint(), buckets(), buckets(), any::<u32>(), exemplars()),
            (prop::option::of(double()), prop::option::of(double()), double()),
        )
            .prop_map(
                |(
                    (attributes, start, time, count, sum, scale),
                    (zero_count, positive, negative, flags, exemplars),
                    (min, max, zero_threshold),
                )| ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count,
                    sum,
                    scale,
                    zero_count,
                    positive,
                    negative,
                    flags,
                    exemplars,
                    min,
                    max,
                    zero_threshold,
                },
            ),
        1..3,
    )
}

fn summary_points() -> impl Strategy<Value = Vec<SummaryDataPoint>> {
    let q = (double(), double()).prop_map(|(quantile, value)| ValueAtQuantile { quantile, value });
    prop::collection::vec(
        (
            attributes(),
            uint(),
            uint(),
            uint(),
            double(),
            prop::collection::vec(q, 0..3),
            any::<u32>(),
        )
            .prop_map(
                |(attributes, start, time, count, sum, quantile_values, flags)| SummaryDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count,
                    sum,
                    quantile_values,
                    flags,
                },
            ),
        1..3,
    )
}

fn metric() -> impl Strategy<Value = Metric> {
    let data = prop_oneof![
        number_points().prop_map(|data_points| metric::Data::Gauge(Gauge { data_points })),
        (number_points(), open_enum(3), any::<bool>()).prop_map(|(data_points, t, m)| metric::Data::Sum(Sum {
            data_points,
            aggregation_temporality: t,
            is_monotonic: m
        })),
        (histogram_points(), open_enum(3)).prop_map(|(data_points, t)| metric::Data::Histogram(Histogram {
            data_points,
            aggregation_temporality: t
        })),
        (exp_histogram_points(), open_enum(3)).prop_map(|(data_points, t)| {
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points,
                aggregation_temporality: t,
            })
        }),
        summary_points().prop_map(|data_points| metric::Data::Summary(Summary { data_points })),
    ];
    (text(), text(), text(), data, attributes()).prop_map(|(name, description, unit, data, metadata)| Metric {
        name,
        description,
        unit,
        data: Some(data),
        metadata,
    })
}

pub fn metrics() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let sm = (scope(), prop::collection::vec(metric(), 1..3), text()).prop_map(|(scope, metrics, schema_url)| {
        ScopeMetrics {
            scope,
            metrics,
            schema_url,
        }
    });
    let rm = (resource(), prop::collection::vec(sm, 1..3), text()).prop_map(|(resource, scope_metrics, schema_url)| {
        ResourceMetrics {
            resource,
            scope_metrics,
            schema_url,
        }
    });
    prop::collection::vec(rm, 1..3).prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

fn log_record() -> impl Strategy<Value = LogRecord> {
    (
        (uint(), uint(), open_enum(25), text(), prop::option::of(any_value())),
        (attributes(), any::<u32>(), any::<u32>(), trace_id(), span_id(), text()),
    )
        .prop_map(
            |(
                (time_unix_nano, observed_time_unix_nano, severity_number, severity_text, body),
                (attributes, dropped_attributes_count, flags, trace_id, span_id, event_name),
            )| LogRecord {
                time_unix_nano,
                observed_time_unix_nano,
                severity_number,
                severity_text,
                body,
                attributes,
                dropped_attributes_count,
                flags,
                trace_id,
                span_id,
                event_name,
            },
        )
}

pub fn logs() -> impl Strategy<Value = ExportLogsServiceRequest> {
    let sl =
        (scope(), prop::collection::vec(log_record(), 1..3), text()).prop_map(|(scope, log_records, schema_url)| {
            ScopeLogs {
                scope,
                log_records,
                schema_url,
            }
        });
    let rl = (resource(), prop::collection::vec(sl, 1..3), text()).prop_map(|(resource, scope_logs, schema_url)| {
        ResourceLogs {
            resource,
            scope_logs,
            schema_url,
        }
    });
    prop::collection::vec(rl, 1..3).prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
}

// ---------------------------------------------------------------------------
// unknown protobuf fields

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Unknown fields (numbers the schema does not use at these levels): a
/// varint, a length-delimited blob, a fixed32 and a fixed64. (No groups:
/// `wire::scan` refuses wire type 3 in the request's top two levels.)
pub fn unknown_fields(seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, 900 << 3);
    put_varint(&mut out, seed);
    put_varint(&mut out, (901 << 3) | 2);
    out.push(3);
    out.extend_from_slice(&[0xff, 0, (seed & 0xff) as u8]);
    put_varint(&mut out, (902 << 3) | 5);
    out.extend_from_slice(&(seed as u32).to_le_bytes());
    put_varint(&mut out, (903 << 3) | 1);
    out.extend_from_slice(&seed.to_le_bytes());
    out
}

/// A request body: each top-level entry (the prost encodings in `entries`)
/// with unknown fields appended inside it. (None at the top level of the
/// request: sluice keeps a request as its resource entries, so those would
/// not be forwarded.)
pub fn with_unknown_fields(entries: &[Vec<u8>], seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let mut inner = e.clone();
        inner.extend(unknown_fields(seed ^ i as u64));
        put_varint(&mut out, (1 << 3) | 2);
        put_varint(&mut out, inner.len() as u64);
        out.extend(inner);
    }
    out
}

// ---------------------------------------------------------------------------
// OTLP/JSON as the JavaScript SDK sends it

/// A JSON value that keeps numbers as written.
#[derive(Clone, Debug)]
pub enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn parse(s: &str) -> J {
        let mut p = Parser { b: s.as_bytes(), i: 0 };
        let v = p.value();
        assert_eq!(p.i, s.len(), "trailing data in {s}");
        v
    }

    pub fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            J::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            J::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn value(&mut self) -> J {
        self.ws();
        match self.b[self.i] {
            b'{' => {
                self.i += 1;
                let mut o = Vec::new();
                self.ws();
                if self.b[self.i] == b'}' {
                    self.i += 1;
                    return J::Obj(o);
                }
                loop {
                    self.ws();
                    let J::Str(k) = self.value() else { panic!("key") };
                    self.ws();
                    assert_eq!(self.b[self.i], b':');
                    self.i += 1;
                    o.push((k, self.value()));
                    self.ws();
                    self.i += 1;
                    if self.b[self.i - 1] == b'}' {
                        return J::Obj(o);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.b[self.i] == b']' {
                    self.i += 1;
                    return J::Arr(a);
                }
                loop {
                    a.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.b[self.i - 1] == b']' {
                        return J::Arr(a);
                    }
                }
            }
            b'"' => {
                let start = self.i;
                self.i += 1;
                while self.b[self.i] != b'"' {
                    if self.b[self.i] == b'\\' {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                self.i += 1;
                J::Str(serde_json::from_slice(&self.b[start..self.i]).unwrap())
            }
            b't' => {
                self.i += 4;
                J::Bool(true)
            }
            b'f' => {
                self.i += 5;
                J::Bool(false)
            }
            b'n' => {
                self.i += 4;
                J::Null
            }
            _ => {
                let start = self.i;
                while self.i < self.b.len() && matches!(self.b[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    self.i += 1;
                }
                J::Num(String::from_utf8(self.b[start..self.i].to_vec()).unwrap())
            }
        }
    }
}

/// Keys whose values are 64-bit integers (strings in canonical OTLP/JSON).
const INT64_KEYS: &[&str] = &[
    "intValue",
    "asInt",
    "timeUnixNano",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "observedTimeUnixNano",
    "count",
    "zeroCount",
    "bucketCounts",
];

/// A double as JavaScript's `Number.prototype.toString` spells it:
/// integral values without ".0", exponents with a sign ("1e+21").
fn js_number(n: &str) -> String {
    let v: f64 = n.parse().unwrap();
    let mut s = format!("{v:?}");
    if let Some(stripped) = s.strip_suffix(".0") {
        s = stripped.to_string();
    }
    if let Some(i) = s.find('e') {
        if s.as_bytes().get(i + 1) != Some(&b'-') {
            s.insert(i + 1, '+');
        }
    }
    s
}

fn random_json(rng: &mut TestRng, depth: u32) -> J {
    match rng.random_range(0..if depth > 2 { 4 } else { 6 }) {
        0 => J::Null,
        1 => J::Num(format!("{}", rng.random::<i32>())),
        2 => J::Str("unknown \u{e9}".into()),
        3 => J::Bool(true),
        4 => J::Arr(
            (0..rng.random_range(0..3))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => J::Obj(
            (0..rng.random_range(0..3))
                .map(|i| (format!("u{i}"), random_json(rng, depth + 1)))
                .collect(),
        ),
    }
}

/// Rewrites canonical OTLP/JSON the way the JS SDK's exporters write it:
/// 64-bit integers as numbers when a JS number holds them exactly (else
/// strings), doubles in JS spelling, and unknown fields (as a newer SDK would
/// send) in some objects.
pub fn js_style(v: &J, key: &str, rng: &mut TestRng) -> J {
    match v {
        J::Str(s) if INT64_KEYS.contains(&key) => match s.parse::<i128>() {
            Ok(n) if n.unsigned_abs() <= 1 << 53 && rng.random_bool(0.7) => J::Num(n.to_string()),
            _ => v.clone(),
        },
        J::Num(n) => J::Num(js_number(n)),
        J::Arr(a) => J::Arr(a.iter().map(|e| js_style(e, key, rng)).collect()),
        J::Obj(o) => {
            let mut out: Vec<(String, J)> = o.iter().map(|(k, e)| (k.clone(), js_style(e, k, rng))).collect();
            if rng.random_bool(0.2) {
                let at = rng.random_range(0..=out.len());
                out.insert(at, ("someFutureField".into(), random_json(rng, 0)));
            }
            J::Obj(out)
        }
        _ => v.clone(),
    }
}
