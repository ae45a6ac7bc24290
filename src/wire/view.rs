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

use std::{
    borrow::Cow,
    cell::{Cell, RefCell},
};

use crate::{
    processor::ottl::{self, Key, Path, Value},
    wire::{
        self,
        tags::{tags, tags_in},
        Fields as WireFields,
    },
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
    tags(msg, |n, s, e| {
        if n == number {
            found = Some((s, e));
        }
    });
    let (s, e) = found?;
    value_at(msg, s, e)
}

/// The value of the field whose tag starts at `s` and which ends at `e`
/// (located by a [`tags`] pass, which checked its framing: only the value
/// is read here, not the field walked again).
fn value_at(msg: &[u8], s: usize, e: usize) -> Option<wire::Value> {
    let msg = msg.get(..e)?;
    let mut pos = s;
    let key = wire::read_varint(msg, &mut pos).ok()?;
    Some(match key & 7 {
        0 => wire::Value::Varint(wire::read_varint(msg, &mut pos).ok()?),
        1 => wire::Value::Fixed64(u64::from_le_bytes(msg.get(pos..pos + 8)?.try_into().ok()?)),
        2 => {
            wire::read_varint(msg, &mut pos).ok()?;
            wire::Value::Len(pos, e)
        }
        5 => wire::Value::Fixed32(u32::from_le_bytes(msg.get(pos..pos + 4)?.try_into().ok()?)),
        _ => match WireFields::new(msg, s, e).next() {
            Some(Ok(f)) => f.value,
            _ => return None,
        },
    })
}

/// The bytes of the last length-delimited field `number` in `msg`.
pub fn bytes_of(msg: &[u8], number: u32) -> Option<&[u8]> {
    match last(msg, number)? {
        wire::Value::Len(s, e) => Some(&msg[s..e]),
        _ => None,
    }
}

fn str_of(msg: &[u8], number: u32) -> Value<'_> {
    str_at(msg, last(msg, number))
}

fn str_at(msg: &[u8], found: Option<wire::Value>) -> Value<'_> {
    match found {
        Some(wire::Value::Len(s, e)) => {
            wire::text::as_str(&msg[s..e]).map_or(Value::Nil, |s| Value::Str(Cow::Borrowed(s)))
        }
        // An absent string field is the empty string (proto3 default).
        _ => Value::Str(Cow::Borrowed("")),
    }
}

fn bytes_at(msg: &[u8], found: Option<wire::Value>) -> Option<&[u8]> {
    match found? {
        wire::Value::Len(s, e) => Some(&msg[s..e]),
        _ => None,
    }
}

fn varint_of(msg: &[u8], number: u32) -> Value<'static> {
    varint_at(last(msg, number))
}

fn varint_at(found: Option<wire::Value>) -> Value<'static> {
    match found {
        Some(wire::Value::Varint(v)) => Value::Int(v as i32 as i64),
        _ => Value::Int(0),
    }
}

fn fixed64_at(found: Option<wire::Value>) -> Value<'static> {
    match found {
        Some(wire::Value::Fixed64(v)) => Value::Int(v as i64),
        _ => Value::Int(0),
    }
}

fn hex_at(msg: &[u8], found: Option<wire::Value>) -> Value<'static> {
    Value::Str(Cow::Owned(hex::encode(bytes_at(msg, found).unwrap_or_default())))
}

/// The value of the first attribute `key` among the `KeyValue` entries in
/// field `number` of `msg` (the first one wins, as in the Collector).
pub fn attribute<'a>(msg: &'a [u8], number: u32, key: &str) -> Value<'a> {
    attribute_in(msg, 0, msg.len(), number, key)
}

/// [`attribute`] over the fields of `msg[start..end]` only (where an
/// [`Indexed`] item knows its attribute entries are).
fn attribute_in<'a>(msg: &'a [u8], start: usize, end: usize, number: u32, key: &str) -> Value<'a> {
    let mut found = Value::Nil;
    entries_in(msg, start, end, number, |kv| {
        let (k, v) = key_value(kv);
        if k == key.as_bytes() {
            found = v.map_or(Value::Nil, any_value);
            return false;
        }
        true
    });
    found
}

/// Calls `each` with the bytes of every entry (a length-delimited field
/// `number`: attributes) of `msg`, in order, until it answers false.
#[inline]
pub fn entries<'a>(msg: &'a [u8], number: u32, each: impl FnMut(&'a [u8]) -> bool) {
    entries_in(msg, 0, msg.len(), number, each)
}

#[inline]
fn entries_in<'a>(msg: &'a [u8], start: usize, end: usize, number: u32, mut each: impl FnMut(&'a [u8]) -> bool) {
    tags_in(msg, start, end, |n, _, value, e| match value {
        Some(value) if n == number => each(&msg[value..e]),
        _ => true,
    })
}

/// The key of a `KeyValue` entry (its last key; empty when absent).
#[inline]
pub fn entry_key(kv: &[u8]) -> &[u8] {
    key_value(kv).0
}

/// The key and value bytes of a `KeyValue` entry: its last key and last
/// value (last wins; the key empty and the value `None` when absent).
#[inline]
fn key_value(kv: &[u8]) -> (&[u8], Option<&[u8]>) {
    // The shape nearly every entry has (key, then value, each once): read
    // without walking the entry.
    if let Some((k, v)) = plain_key_value(kv) {
        return (k, Some(v));
    }
    let (mut k, mut v) = (&kv[..0], None);
    for f in WireFields::all(kv) {
        let Ok(f) = f else { break };
        match (f.number, f.value) {
            (1, wire::Value::Len(s, e)) => k = &kv[s..e],
            (2, wire::Value::Len(s, e)) => v = Some(&kv[s..e]),
            _ => {}
        }
    }
    (k, v)
}

/// A `KeyValue` of the plain shape `0x0a klen key 0x12 vlen value` (one-byte
/// lengths, nothing else in the entry): its key and value bytes. Any other
/// shape (repeated or reordered fields, long lengths) is `None`, for the
/// general walk.
#[inline]
fn plain_key_value(kv: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = kv.len();
    if n < 4 || kv[0] != 0x0a || kv[1] >= 0x80 {
        return None;
    }
    let v = 2 + usize::from(kv[1]);
    if v + 2 > n || kv[v] != 0x12 || kv[v + 1] >= 0x80 || v + 2 + usize::from(kv[v + 1]) != n {
        return None;
    }
    Some((&kv[2..v], &kv[v + 2..]))
}

/// Reads an `AnyValue` message.
pub fn any_value(v: &[u8]) -> Value<'_> {
    let mut out = Value::Nil;
    for f in WireFields::all(v) {
        let Ok(f) = f else { break };
        out = match (f.number, f.value) {
            (1, wire::Value::Len(s, e)) => {
                wire::text::as_str(&v[s..e]).map_or(Value::Nil, |t| Value::Str(Cow::Borrowed(t)))
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

/// An item with the positions of its own fields, found in one walk on the
/// first lookup and shared by every later lookup of the same item: a
/// filter's conditions or a sampling policy's tests read several fields of
/// each span, and protobuf's "last occurrence wins" would otherwise make
/// each lookup walk the whole span.
pub struct Indexed<'i, 'a> {
    pub item: &'i Item<'a>,
    /// Filled in place on the first lookup (`built`): the index is a few
    /// hundred bytes, which a `OnceCell` would copy twice per item.
    index: RefCell<Index>,
    built: Cell<bool>,
}

/// Where fields 1-15 of a message are (every field a view reads has a
/// number below 16): the tag offsets of each number's first occurrence and
/// the range of its last one.
struct Index {
    present: u16,
    first: [u32; 16],
    last: [(u32, u32); 16],
}

impl Index {
    const EMPTY: Index = Index {
        present: 0,
        first: [0; 16],
        last: [(0, 0); 16],
    };

    fn fill(&mut self, msg: &[u8]) {
        tags(msg, |n, s, e| self.note(n as usize, s, e));
    }

    #[inline(always)]
    fn note(&mut self, n: usize, start: usize, end: usize) {
        if n >= 16 {
            return;
        }
        // Offsets fit: a request body is far below 4 GiB.
        let (s, e) = (start as u32, end as u32);
        if self.present & (1 << n) == 0 {
            self.present |= 1 << n;
            self.first[n] = s;
        }
        self.last[n] = (s, e);
    }
}

impl<'i, 'a> Indexed<'i, 'a> {
    pub fn new(item: &'i Item<'a>) -> Self {
        Indexed {
            item,
            index: RefCell::new(Index::EMPTY),
            built: Cell::new(false),
        }
    }

    fn index(&self) -> std::cell::Ref<'_, Index> {
        if !self.built.get() {
            self.index.borrow_mut().fill(self.item.item);
            self.built.set(true);
        }
        self.index.borrow()
    }

    /// Where the item's field `number` (below 16) is: the tag offset of its
    /// first occurrence and the range of its last; `None` when absent.
    fn located(&self, number: u32) -> Option<(usize, (usize, usize))> {
        let ix = self.index();
        let n = number as usize;
        (ix.present & (1 << n) != 0).then(|| (ix.first[n] as usize, (ix.last[n].0 as usize, ix.last[n].1 as usize)))
    }

    /// The last occurrence of the item's field `number`.
    fn last(&self, number: u32) -> Option<wire::Value> {
        if number >= 16 {
            return last(self.item.item, number);
        }
        let (_, (s, e)) = self.located(number)?;
        value_at(self.item.item, s, e)
    }

    /// Attribute `key` among the item's entries in field `number`, walking
    /// only from the first entry to the last.
    fn attribute(&self, number: u32, key: &Key) -> Value<'a> {
        let msg = self.item.item;
        if key.absent_from(msg) {
            return Value::Nil;
        }
        if number >= 16 {
            return attribute(msg, number, key);
        }
        match self.located(number) {
            Some((first, (_, end))) => attribute_in(msg, first, end, number, key),
            None => Value::Nil,
        }
    }
}

impl ottl::Fields for Item<'_> {
    fn get(&self, path: &Path) -> Value<'_> {
        Indexed::new(self).get_value(path)
    }
}

impl ottl::Fields for Indexed<'_, '_> {
    fn get(&self, path: &Path) -> Value<'_> {
        self.get_value(path)
    }
}

impl<'a> Indexed<'_, 'a> {
    fn get_value(&self, path: &Path) -> Value<'a> {
        let item = *self.item;
        let it = item.item;
        let str_f = |n| str_at(it, self.last(n));
        let fixed = |n| fixed64_at(self.last(n));
        let hex = |n| hex_at(it, self.last(n));
        match (item.kind, path) {
            (_, Path::ResourceAttribute(k)) if k.absent_from(item.resource) => Value::Nil,
            (_, Path::ResourceAttribute(k)) => attribute(item.resource, 1, k),
            (_, Path::ScopeName) => str_of(item.scope, 1),
            (_, Path::ScopeVersion) => str_of(item.scope, 2),
            (Kind::Span, Path::Name) => str_f(5),
            (Kind::Span, Path::Kind) => varint_at(self.last(6)),
            (Kind::Span, Path::StatusCode) => match bytes_at(it, self.last(15)) {
                Some(status) => varint_of(status, 3),
                None => Value::Int(0),
            },
            (Kind::Span, Path::Attribute(k)) => self.attribute(9, k),
            (Kind::Span, Path::TraceId) => hex(1),
            (Kind::Span, Path::SpanId) => hex(2),
            (Kind::Span, Path::ParentSpanId) => hex(4),
            (Kind::Span, Path::StartTime) => fixed(7),
            (Kind::Span, Path::EndTime) => fixed(8),
            (Kind::SpanEvent, Path::Name) => str_f(2),
            (Kind::SpanEvent, Path::Attribute(k)) => self.attribute(3, k),
            (Kind::SpanEvent, Path::Time) => fixed(1),
            (Kind::LogRecord, Path::Time) => fixed(1),
            (Kind::LogRecord, Path::SeverityNumber) => varint_at(self.last(2)),
            (Kind::LogRecord, Path::SeverityText) => str_f(3),
            (Kind::LogRecord, Path::Body) => bytes_at(it, self.last(5)).map_or(Value::Nil, any_value),
            (Kind::LogRecord, Path::Attribute(k)) => self.attribute(6, k),
            (Kind::LogRecord, Path::TraceId) => hex(9),
            (Kind::LogRecord, Path::SpanId) => hex(10),
            (Kind::Metric, Path::MetricName) => str_f(1),
            (Kind::Metric, Path::MetricDescription) => str_f(2),
            (Kind::Metric, Path::MetricUnit) => str_f(3),
            (Kind::Metric | Kind::DataPoint, Path::MetricType) => Value::Int(metric_type(item.data_field())),
            (Kind::DataPoint, Path::MetricName) => str_of(item.parent, 1),
            (Kind::DataPoint, Path::MetricDescription) => str_of(item.parent, 2),
            (Kind::DataPoint, Path::MetricUnit) => str_of(item.parent, 3),
            (Kind::DataPoint, Path::Attribute(k)) => self.attribute(point_attributes_field(item.data_field()), k),
            (Kind::DataPoint, Path::StartTime) => fixed(2),
            (Kind::DataPoint, Path::Time) => fixed(3),
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
                kv("note", any_value::Value::StringValue("in.value".into())),
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
            attributes: vec![
                kv("service.name", any_value::Value::StringValue("api".into())),
                kv("team", any_value::Value::StringValue("service.version".into())),
            ],
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
        // A key found in the item's bytes only inside a value is no entry's key.
        assert_eq!(item.get(&Path::Attribute("note".into())), Value::Str("in.value".into()));
        assert_eq!(item.get(&Path::Attribute("in.value".into())), Value::Nil);
        assert_eq!(item.get(&Path::ResourceAttribute("service.version".into())), Value::Nil);
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

    /// A span whose fields repeat and whose attribute entries are split by
    /// other fields (two encodings concatenated, which protobuf merges):
    /// the indexed lookups answer as a decoder would, last name, first
    /// attribute of a key, every entry found.
    #[test]
    fn indexed_lookups_follow_protobuf_merging() {
        let first = Span {
            name: "first".into(),
            kind: 1,
            attributes: vec![kv("x", any_value::Value::IntValue(1))],
            ..Default::default()
        };
        let second = Span {
            name: "second".into(),
            end_time_unix_nano: 9,
            attributes: vec![
                kv("y", any_value::Value::IntValue(2)),
                kv("x", any_value::Value::IntValue(3)),
            ],
            ..Default::default()
        };
        let mut span = first.encode_to_vec();
        span.extend(second.encode_to_vec());
        let item = Item {
            kind: Kind::Span,
            resource: &[],
            scope: &[],
            item: &span,
            parent: &[],
        };
        let indexed = Indexed::new(&item);
        for (path, want) in [
            (Path::Name, Value::Str("second".into())),
            (Path::Kind, Value::Int(1)),
            (Path::EndTime, Value::Int(9)),
            (Path::StartTime, Value::Int(0)),
            (Path::Attribute("x".into()), Value::Int(1)),
            (Path::Attribute("y".into()), Value::Int(2)),
            (Path::Attribute("z".into()), Value::Nil),
        ] {
            assert_eq!(indexed.get(&path), want, "{path:?}");
            assert_eq!(item.get(&path), want, "{path:?} without the shared index");
        }
        // The decoder agrees.
        let decoded = Span::decode(span.as_slice()).unwrap();
        assert_eq!(decoded.name, "second");
        assert_eq!(decoded.attributes.len(), 3);
    }

    /// The fast tag pass (indexed or not) finds what the general walk finds, for every
    /// byte of a span changed to every value (malformed bytes included).
    #[test]
    fn index_pass_agrees_with_the_general_walk() {
        let span = Span {
            trace_id: vec![7; 16].into(),
            name: "GET /users".into(),
            kind: 2,
            start_time_unix_nano: 1 << 40,
            attributes: vec![kv("a", any_value::Value::IntValue(300))],
            dropped_attributes_count: 3,
            ..Default::default()
        }
        .encode_to_vec();
        for i in 0..span.len() {
            for b in 0..=255u8 {
                let mut edited = span.clone();
                edited[i] = b;
                let item = Item {
                    kind: Kind::Span,
                    resource: &[],
                    scope: &[],
                    item: &edited,
                    parent: &[],
                };
                let indexed = Indexed::new(&item);
                let general = |n: u32| {
                    let mut found = None;
                    for f in WireFields::all(&edited) {
                        let Ok(f) = f else { break };
                        if f.number == n {
                            found = Some(f.value);
                        }
                    }
                    found
                };
                for n in 1..20 {
                    assert_eq!(indexed.last(n), general(n), "field {n} of {edited:?}");
                    assert_eq!(last(&edited, n), general(n), "field {n} of {edited:?}");
                }
            }
        }
    }

    /// The plain-shape reading of a `KeyValue` answers as the general walk
    /// does, for every byte of many entries changed to every value (the
    /// edited bytes take the general path or agree with it).
    #[test]
    fn plain_key_values_read_as_the_general_walk() {
        let entries = [
            kv("http.route", any_value::Value::StringValue("/users".into())),
            kv("n", any_value::Value::IntValue(-7)),
            kv("b", any_value::Value::BoolValue(true)),
            kv("d", any_value::Value::DoubleValue(1.5)),
            kv("", any_value::Value::StringValue(String::new())),
            KeyValue {
                key: "none".into(),
                ..Default::default()
            },
        ];
        let general = |kv: &[u8]| -> (Vec<u8>, Option<Vec<u8>>) {
            let (mut k, mut v) = (Vec::new(), None);
            for f in WireFields::all(kv) {
                let Ok(f) = f else { break };
                match (f.number, f.value) {
                    (1, wire::Value::Len(s, e)) => k = kv[s..e].to_vec(),
                    (2, wire::Value::Len(s, e)) => v = Some(kv[s..e].to_vec()),
                    _ => {}
                }
            }
            (k, v)
        };
        let mut plain = 0;
        for entry in &entries {
            let bytes = entry.encode_to_vec();
            for i in 0..bytes.len() {
                for b in 0..=255u8 {
                    let mut edited = bytes.clone();
                    edited[i] = b;
                    if let Some((k, v)) = plain_key_value(&edited) {
                        plain += 1;
                        assert_eq!(general(&edited), (k.to_vec(), Some(v.to_vec())), "{edited:?}");
                    }
                }
            }
        }
        assert!(plain > 1000, "the plain shape was read {plain} times");
    }
}
