//! Zero-copy views over the items of a received OTLP request, for processors
//! that read fields (a filter condition, a sampler's trace id) without
//! decoding the request into objects.
//!
//! An [`Item`] is a span, span event, metric, data point or log record: its
//! own bytes plus the bytes of the resource and scope (and, for a data point,
//! the metric) it sits in, all slices of the request body. Looking a field up
//! walks the item's fields on the wire; strings and bytes are returned
//! borrowed from the body. Requests were validated at receipt (wire types,
//! lengths, UTF-8), so a view never meets malformed bytes; where it would, it
//! answers `nil` rather than panic.
//!
//! Field numbers are those of the OTLP protos (opentelemetry-proto v1):
//! a resource's attributes are field 1; a scope's name 1, version 2; a
//! span's trace id 1, span id 2, parent 4, name 5, kind 6, start 7, end 8,
//! attributes 9, status 15 (its code 3); a span event's time 1, name 2,
//! attributes 3; a log record's time 1, severity number 2, text 3, body 5,
//! attributes 6, trace id 9, span id 10; a metric's name 1, description 2,
//! unit 3, data 5/7/9/10/11; data point attributes 7 (gauge, sum, summary),
//! 9 (histogram) or 1 (exponential histogram), start 2, time 3.

use std::borrow::Cow;

use crate::{
    processor::ottl::{self, Path, Value},
    wire::{self, Fields as WireFields},
};

/// Which kind of item an [`Item`] views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Span,
    SpanEvent,
    Metric,
    DataPoint,
    LogRecord,
}

/// One item of a request and its enclosing messages, as byte slices.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    pub kind: Kind,
    /// The `Resource` message (empty when absent).
    pub resource: &'a [u8],
    /// The `InstrumentationScope` message (empty when absent).
    pub scope: &'a [u8],
    /// The item's own message.
    pub item: &'a [u8],
    /// For a data point, its `Metric` message; for a span event, its span.
    pub parent: &'a [u8],
}

/// The metric data types as OTTL numbers them (`METRIC_DATA_TYPE_*`),
/// keyed by the `Metric` field that holds the data.
pub fn metric_type(data_field: u32) -> i64 {
    match data_field {
        5 => 1,  // gauge
        7 => 2,  // sum
        9 => 3,  // histogram
        10 => 4, // exponential histogram
        11 => 5, // summary
        _ => 0,
    }
}

/// The field holding a data point's attributes, by metric data field.
pub fn point_attributes_field(data_field: u32) -> u32 {
    match data_field {
        9 => 9,
        10 => 1,
        _ => 7,
    }
}

/// The last occurrence of field `number` in `msg` (protobuf: last wins).
pub fn last(msg: &[u8], number: u32) -> Option<wire::Value> {
    let mut found = None;
    for f in WireFields::all(msg) {
        let Ok(f) = f else { break };
        if f.number == number {
            found = Some(f.value);
        }
    }
    found
}

/// The bytes of the last length-delimited field `number` in `msg`.
pub fn bytes_of(msg: &[u8], number: u32) -> Option<&[u8]> {
    match last(msg, number)? {
        wire::Value::Len(s, e) => Some(&msg[s..e]),
        _ => None,
    }
}

fn str_of(msg: &[u8], number: u32) -> Value<'_> {
    match bytes_of(msg, number) {
        Some(b) => std::str::from_utf8(b).map_or(Value::Nil, |s| Value::Str(Cow::Borrowed(s))),
        // An absent string field is the empty string (proto3 default).
        None => Value::Str(Cow::Borrowed("")),
    }
}

fn varint_of(msg: &[u8], number: u32) -> Value<'static> {
    match last(msg, number) {
        Some(wire::Value::Varint(v)) => Value::Int(v as i32 as i64),
        _ => Value::Int(0),
    }
}

fn fixed64_of(msg: &[u8], number: u32) -> Value<'static> {
    match last(msg, number) {
        Some(wire::Value::Fixed64(v)) => Value::Int(v as i64),
        _ => Value::Int(0),
    }
}

fn hex_id(msg: &[u8], number: u32) -> Value<'static> {
    Value::Str(Cow::Owned(hex::encode(bytes_of(msg, number).unwrap_or_default())))
}

/// The value of the first attribute `key` among the `KeyValue` entries in
/// field `number` of `msg` (the first one wins, as in the Collector).
pub fn attribute<'a>(msg: &'a [u8], number: u32, key: &str) -> Value<'a> {
    for f in WireFields::all(msg) {
        let Ok(f) = f else { break };
        let (f_num, wire::Value::Len(s, e)) = (f.number, f.value) else {
            continue;
        };
        if f_num != number {
            continue;
        }
        // One walk of the KeyValue: its last key and last value (last wins).
        let kv = &msg[s..e];
        let (mut k, mut v) = (&kv[..0], None);
        for f in WireFields::all(kv) {
            let Ok(f) = f else { break };
            match (f.number, f.value) {
                (1, wire::Value::Len(s, e)) => k = &kv[s..e],
                (2, wire::Value::Len(s, e)) => v = Some(&kv[s..e]),
                _ => {}
            }
        }
        if k == key.as_bytes() {
            return v.map_or(Value::Nil, any_value);
        }
    }
    Value::Nil
}

/// Reads an `AnyValue` message.
pub fn any_value(v: &[u8]) -> Value<'_> {
    let mut out = Value::Nil;
    for f in WireFields::all(v) {
        let Ok(f) = f else { break };
        out = match (f.number, f.value) {
            (1, wire::Value::Len(s, e)) => {
                std::str::from_utf8(&v[s..e]).map_or(Value::Nil, |t| Value::Str(Cow::Borrowed(t)))
            }
            (2, wire::Value::Varint(b)) => Value::Bool(b != 0),
            (3, wire::Value::Varint(i)) => Value::Int(i as i64),
            (4, wire::Value::Fixed64(d)) => Value::Double(f64::from_bits(d)),
            (5, wire::Value::Len(s, e)) => Value::Array {
                raw: &v[s..e],
                len: count_field(&v[s..e], 1),
            },
            (6, wire::Value::Len(s, e)) => Value::Map {
                raw: &v[s..e],
                len: count_field(&v[s..e], 1),
            },
            (7, wire::Value::Len(s, e)) => Value::Bytes(Cow::Borrowed(&v[s..e])),
            _ => continue,
        };
    }
    out
}

fn count_field(msg: &[u8], number: u32) -> usize {
    WireFields::all(msg)
        .filter_map(Result::ok)
        .filter(|f| f.number == number)
        .count()
}

impl Item<'_> {
    /// The metric data field (5, 7, 9, 10, 11) of a metric or a data point's
    /// metric.
    fn data_field(&self) -> u32 {
        let metric = if self.kind == Kind::DataPoint {
            self.parent
        } else {
            self.item
        };
        let mut found = 0;
        for f in WireFields::all(metric).filter_map(Result::ok) {
            if matches!(f.number, 5 | 7 | 9 | 10 | 11) {
                found = f.number;
            }
        }
        found
    }
}

impl Item<'_> {
    /// The field of the item's message that holds its attributes (`None`
    /// for a metric, which has none).
    pub fn attributes_field(&self) -> Option<u32> {
        match self.kind {
            Kind::Span => Some(9),
            Kind::SpanEvent => Some(3),
            Kind::LogRecord => Some(6),
            Kind::DataPoint => Some(point_attributes_field(self.data_field())),
            Kind::Metric => None,
        }
    }
}

impl ottl::Fields for Item<'_> {
    fn get(&self, path: &Path) -> Value<'_> {
        let it = self.item;
        match (self.kind, path) {
            (_, Path::ResourceAttribute(k)) => attribute(self.resource, 1, k),
            (_, Path::ScopeName) => str_of(self.scope, 1),
            (_, Path::ScopeVersion) => str_of(self.scope, 2),
            (Kind::Span, Path::Name) => str_of(it, 5),
            (Kind::Span, Path::Kind) => varint_of(it, 6),
            (Kind::Span, Path::StatusCode) => match bytes_of(it, 15) {
                Some(status) => varint_of(status, 3),
                None => Value::Int(0),
            },
            (Kind::Span, Path::Attribute(k)) => attribute(it, 9, k),
            (Kind::Span, Path::TraceId) => hex_id(it, 1),
            (Kind::Span, Path::SpanId) => hex_id(it, 2),
            (Kind::Span, Path::ParentSpanId) => hex_id(it, 4),
            (Kind::Span, Path::StartTime) => fixed64_of(it, 7),
            (Kind::Span, Path::EndTime) => fixed64_of(it, 8),
            (Kind::SpanEvent, Path::Name) => str_of(it, 2),
            (Kind::SpanEvent, Path::Attribute(k)) => attribute(it, 3, k),
            (Kind::SpanEvent, Path::Time) => fixed64_of(it, 1),
            (Kind::LogRecord, Path::Time) => fixed64_of(it, 1),
            (Kind::LogRecord, Path::SeverityNumber) => varint_of(it, 2),
            (Kind::LogRecord, Path::SeverityText) => str_of(it, 3),
            (Kind::LogRecord, Path::Body) => bytes_of(it, 5).map_or(Value::Nil, any_value),
            (Kind::LogRecord, Path::Attribute(k)) => attribute(it, 6, k),
            (Kind::LogRecord, Path::TraceId) => hex_id(it, 9),
            (Kind::LogRecord, Path::SpanId) => hex_id(it, 10),
            (Kind::Metric, Path::MetricName) => str_of(it, 1),
            (Kind::Metric, Path::MetricDescription) => str_of(it, 2),
            (Kind::Metric, Path::MetricUnit) => str_of(it, 3),
            (Kind::Metric | Kind::DataPoint, Path::MetricType) => Value::Int(metric_type(self.data_field())),
            (Kind::DataPoint, Path::MetricName) => str_of(self.parent, 1),
            (Kind::DataPoint, Path::MetricDescription) => str_of(self.parent, 2),
            (Kind::DataPoint, Path::MetricUnit) => str_of(self.parent, 3),
            (Kind::DataPoint, Path::Attribute(k)) => attribute(it, point_attributes_field(self.data_field()), k),
            (Kind::DataPoint, Path::StartTime) => fixed64_of(it, 2),
            (Kind::DataPoint, Path::Time) => fixed64_of(it, 3),
            // The parser only lets through paths that exist in the context.
            _ => Value::Nil,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::{
        common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue},
        logs::v1::LogRecord,
        resource::v1::Resource,
        trace::v1::{span::Event, Span, Status},
    };
    use ottl::Fields as _;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn span_fields() {
        let span = Span {
            trace_id: vec![0xab; 16].into(),
            span_id: vec![0xcd; 8].into(),
            name: "GET /users".into(),
            kind: 2,
            start_time_unix_nano: 5,
            end_time_unix_nano: 2_000_000_005,
            attributes: vec![
                kv("http.route", any_value::Value::StringValue("/users".into())),
                kv("n", any_value::Value::IntValue(-7)),
                kv("n", any_value::Value::IntValue(8)),
                kv("d", any_value::Value::DoubleValue(1.5)),
                kv(
                    "arr",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue::default(), AnyValue::default()],
                    }),
                ),
            ],
            status: Some(Status {
                code: 2,
                ..Default::default()
            }),
            events: vec![Event {
                name: "ev".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let resource = Resource {
            attributes: vec![kv("service.name", any_value::Value::StringValue("api".into()))],
            ..Default::default()
        }
        .encode_to_vec();
        let scope = InstrumentationScope {
            name: "lib".into(),
            version: "1.2".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let item = Item {
            kind: Kind::Span,
            resource: &resource,
            scope: &scope,
            item: &span,
            parent: &[],
        };
        assert_eq!(item.get(&Path::Name), Value::Str("GET /users".into()));
        assert_eq!(item.get(&Path::Kind), Value::Int(2));
        assert_eq!(item.get(&Path::StatusCode), Value::Int(2));
        assert_eq!(item.get(&Path::StartTime), Value::Int(5));
        assert_eq!(item.get(&Path::EndTime), Value::Int(2_000_000_005));
        assert_eq!(item.get(&Path::TraceId), Value::Str("ab".repeat(16).into()));
        assert_eq!(item.get(&Path::ParentSpanId), Value::Str("".into()));
        assert_eq!(
            item.get(&Path::Attribute("http.route".into())),
            Value::Str("/users".into())
        );
        assert_eq!(item.get(&Path::Attribute("n".into())), Value::Int(-7), "first wins");
        assert_eq!(item.get(&Path::Attribute("d".into())), Value::Double(1.5));
        assert!(matches!(
            item.get(&Path::Attribute("arr".into())),
            Value::Array { len: 2, .. }
        ));
        assert_eq!(item.get(&Path::Attribute("missing".into())), Value::Nil);
        assert_eq!(
            item.get(&Path::ResourceAttribute("service.name".into())),
            Value::Str("api".into())
        );
        assert_eq!(item.get(&Path::ScopeName), Value::Str("lib".into()));
        assert_eq!(item.get(&Path::ScopeVersion), Value::Str("1.2".into()));

        let cond = ottl::parse(
            r#"resource.attributes["service.name"] == "api" and status.code == STATUS_CODE_ERROR and end_time_unix_nano - start_time_unix_nano > 0"#,
            ottl::Context::Span,
        );
        assert!(cond.is_err(), "arithmetic is outside the subset");
        let cond = ottl::parse(
            r#"resource.attributes["service.name"] == "api" and status.code == STATUS_CODE_ERROR and IsMatch(name, "^GET ")"#,
            ottl::Context::Span,
        )
        .unwrap();
        assert!(cond.eval(&item).unwrap());
    }

    #[test]
    fn log_fields() {
        let log = LogRecord {
            time_unix_nano: 9,
            severity_number: 13,
            severity_text: "WARN".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("disk full".into())),
            }),
            attributes: vec![kv("b", any_value::Value::BoolValue(true))],
            trace_id: vec![1; 16].into(),
            ..Default::default()
        }
        .encode_to_vec();
        let item = Item {
            kind: Kind::LogRecord,
            resource: &[],
            scope: &[],
            item: &log,
            parent: &[],
        };
        assert_eq!(item.get(&Path::SeverityNumber), Value::Int(13));
        assert_eq!(item.get(&Path::SeverityText), Value::Str("WARN".into()));
        assert_eq!(item.get(&Path::Body), Value::Str("disk full".into()));
        assert_eq!(item.get(&Path::Attribute("b".into())), Value::Bool(true));
        assert_eq!(item.get(&Path::Time), Value::Int(9));
        assert_eq!(item.get(&Path::TraceId), Value::Str("01".repeat(16).into()));
        let below_warn = ottl::parse("severity_number < SEVERITY_NUMBER_WARN", ottl::Context::LogRecord).unwrap();
        assert!(!below_warn.eval(&item).unwrap());
    }
}
