//! The OTLP messages as one static table, used in both directions by the
//! OTLP/JSON transcoder: for every field its number, its JSON names (camelCase
//! as written, snake_case as accepted), its protobuf type and how it is
//! spelled in JSON (hex ids, int64 as strings, open enums, base64 bytes).
//!
//! The table mirrors the vendored `proto/` files. `tests/json_fidelity.rs`
//! checks it against the prost types generated from them: random requests
//! setting every field of every message go protobuf → JSON → protobuf and
//! must come back as prost's exact bytes. Fields are listed in the order
//! prost writes them (by field number, a oneof at its lowest number), which
//! is what makes that round trip byte-exact.

/// How a field's value is encoded on the wire and spelled in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// A nested message.
    Msg(&'static Msg),
    /// `string`: a JSON string, UTF-8 on the wire.
    Str,
    /// `bytes`: base64 in JSON.
    Bytes,
    /// A trace or span id (`bytes` on the wire): lowercase hex in OTLP/JSON;
    /// empty, or exactly this many bytes.
    Id(usize),
    Bool,
    /// An open enum (`int32` on the wire): written as a number, read as a
    /// number or as one of these names (index = value).
    Enum(&'static [&'static str]),
    Int32,
    Uint32,
    Sint32,
    /// 64-bit integers: decimal strings in JSON (numbers accepted).
    Int64,
    Uint64,
    Fixed64,
    Sfixed64,
    Fixed32,
    /// `double`: a JSON number, or "NaN", "Infinity", "-Infinity".
    Double,
}

/// Protobuf wire types.
pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const I32: u8 = 5;

impl Ty {
    /// The wire type of one value of this type.
    pub fn wire_type(self) -> u8 {
        match self {
            Ty::Msg(_) | Ty::Str | Ty::Bytes | Ty::Id(_) => LEN,
            Ty::Bool | Ty::Enum(_) | Ty::Int32 | Ty::Uint32 | Ty::Sint32 | Ty::Int64 | Ty::Uint64 => VARINT,
            Ty::Fixed64 | Ty::Sfixed64 | Ty::Double => I64,
            Ty::Fixed32 => I32,
        }
    }

    /// Scalars whose repeated fields are packed (proto3 default).
    pub fn packable(self) -> bool {
        !matches!(self, Ty::Msg(_) | Ty::Str | Ty::Bytes | Ty::Id(_))
    }
}

/// A field's cardinality and presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Card {
    /// proto3 implicit presence: the default value is not written.
    Single,
    /// `optional` or a message: written whenever set, even to the default.
    Present,
    /// A member of the message's oneof number `n`: written whenever set;
    /// at most one member per object.
    Oneof(u8),
    Repeated,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    /// lowerCamelCase, as written.
    pub json: &'static str,
    /// The proto field name, also accepted when reading.
    pub proto: &'static str,
    pub ty: Ty,
    pub card: Card,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Msg {
    pub name: &'static str,
    pub fields: &'static [Field],
    /// `ArrayValue` and `KeyValueList`: one level of `AnyValue` nesting.
    pub container: bool,
}

impl Msg {
    /// The field a JSON key names (camelCase or proto name) and its index.
    #[inline]
    pub fn by_json(&self, key: &[u8]) -> Option<(usize, &'static Field)> {
        self.fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.json.as_bytes() == key || f.proto.as_bytes() == key)
    }

    pub fn by_number(&self, number: u32) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.number == number)
    }
}

/// The one `AnyValue` nesting limit, shared with the protobuf validator.
pub use crate::wire::validate::MAX_ANY_VALUE_NESTING;

/// Trace ids are 16 bytes, span ids 8.
pub const TRACE_ID: Ty = Ty::Id(16);
pub const SPAN_ID: Ty = Ty::Id(8);

const fn f(number: u32, json: &'static str, proto: &'static str, ty: Ty, card: Card) -> Field {
    Field {
        number,
        json,
        proto,
        ty,
        card,
    }
}

use Card::{Oneof, Present, Repeated, Single};

const fn msg(name: &'static str, fields: &'static [Field]) -> Msg {
    Msg {
        name,
        fields,
        container: false,
    }
}

// --- common.proto, resource.proto ---------------------------------------------------------

pub static ANY_VALUE: Msg = msg(
    "AnyValue",
    &[
        f(1, "stringValue", "string_value", Ty::Str, Oneof(0)),
        f(2, "boolValue", "bool_value", Ty::Bool, Oneof(0)),
        f(3, "intValue", "int_value", Ty::Int64, Oneof(0)),
        f(4, "doubleValue", "double_value", Ty::Double, Oneof(0)),
        f(5, "arrayValue", "array_value", Ty::Msg(&ARRAY_VALUE), Oneof(0)),
        f(6, "kvlistValue", "kvlist_value", Ty::Msg(&KEY_VALUE_LIST), Oneof(0)),
        f(7, "bytesValue", "bytes_value", Ty::Bytes, Oneof(0)),
        f(8, "stringValueStrindex", "string_value_strindex", Ty::Int32, Oneof(0)),
    ],
);
pub static ARRAY_VALUE: Msg = Msg {
    name: "ArrayValue",
    fields: &[f(1, "values", "values", Ty::Msg(&ANY_VALUE), Repeated)],
    container: true,
};
pub static KEY_VALUE_LIST: Msg = Msg {
    name: "KeyValueList",
    fields: &[f(1, "values", "values", Ty::Msg(&KEY_VALUE), Repeated)],
    container: true,
};
pub static KEY_VALUE: Msg = msg(
    "KeyValue",
    &[
        f(1, "key", "key", Ty::Str, Single),
        f(2, "value", "value", Ty::Msg(&ANY_VALUE), Present),
        f(3, "keyStrindex", "key_strindex", Ty::Int32, Single),
    ],
);
const ATTRIBUTES: Ty = Ty::Msg(&KEY_VALUE);
pub static SCOPE: Msg = msg(
    "InstrumentationScope",
    &[
        f(1, "name", "name", Ty::Str, Single),
        f(2, "version", "version", Ty::Str, Single),
        f(3, "attributes", "attributes", ATTRIBUTES, Repeated),
        f(
            4,
            "droppedAttributesCount",
            "dropped_attributes_count",
            Ty::Uint32,
            Single,
        ),
    ],
);
pub static ENTITY_REF: Msg = msg(
    "EntityRef",
    &[
        f(1, "schemaUrl", "schema_url", Ty::Str, Single),
        f(2, "type", "type", Ty::Str, Single),
        f(3, "idKeys", "id_keys", Ty::Str, Repeated),
        f(4, "descriptionKeys", "description_keys", Ty::Str, Repeated),
    ],
);
pub static RESOURCE: Msg = msg(
    "Resource",
    &[
        f(1, "attributes", "attributes", ATTRIBUTES, Repeated),
        f(
            2,
            "droppedAttributesCount",
            "dropped_attributes_count",
            Ty::Uint32,
            Single,
        ),
        f(3, "entityRefs", "entity_refs", Ty::Msg(&ENTITY_REF), Repeated),
    ],
);

// --- trace.proto ---------------------------------------------------------------------------

const SPAN_KIND: Ty = Ty::Enum(&[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
]);
const STATUS_CODE: Ty = Ty::Enum(&["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]);

pub static STATUS: Msg = msg(
    "Status",
    &[
        f(2, "message", "message", Ty::Str, Single),
        f(3, "code", "code", STATUS_CODE, Single),
    ],
);
pub static SPAN_EVENT: Msg = msg(
    "Span.Event",
    &[
        f(1, "timeUnixNano", "time_unix_nano", Ty::Fixed64, Single),
        f(2, "name", "name", Ty::Str, Single),
        f(3, "attributes", "attributes", ATTRIBUTES, Repeated),
        f(
            4,
            "droppedAttributesCount",
            "dropped_attributes_count",
            Ty::Uint32,
            Single,
        ),
    ],
);
pub static SPAN_LINK: Msg = msg(
    "Span.Link",
    &[
        f(1, "traceId", "trace_id", TRACE_ID, Single),
        f(2, "spanId", "span_id", SPAN_ID, Single),
        f(3, "traceState", "trace_state", Ty::Str, Single),
        f(4, "attributes", "attributes", ATTRIBUTES, Repeated),
        f(
            5,
            "droppedAttributesCount",
            "dropped_attributes_count",
            Ty::Uint32,
            Single,
        ),
        f(6, "flags", "flags", Ty::Fixed32, Single),
    ],
);
pub static SPAN: Msg = msg(
    "Span",
    &[
        f(1, "traceId", "trace_id", TRACE_ID, Single),
        f(2, "spanId", "span_id", SPAN_ID, Single),
        f(3, "traceState", "trace_state", Ty::Str, Single),
        f(4, "parentSpanId", "parent_span_id", SPAN_ID, Single),
        f(5, "name", "name", Ty::Str, Single),
        f(6, "kind", "kind", SPAN_KIND, Single),
        f(7, "startTimeUnixNano", "start_time_unix_nano", Ty::Fixed64, Single),
        f(8, "endTimeUnixNano", "end_time_unix_nano", Ty::Fixed64, Single),
        f(9, "attributes", "attributes", ATTRIBUTES, Repeated),
        f(
            10,
            "droppedAttributesCount",
            "dropped_attributes_count",
            Ty::Uint32,
            Single,
        ),
        f(11, "events", "events", Ty::Msg(&SPAN_EVENT), Repeated),
        f(12, "droppedEventsCount", "dropped_events_count", Ty::Uint32, Single),
        f(13, "links", "links", Ty::Msg(&SPAN_LINK), Repeated),
        f(14, "droppedLinksCount", "dropped_links_count", Ty::Uint32, Single),
        f(15, "status", "status", Ty::Msg(&STATUS), Present),
        f(16, "flags", "flags", Ty::Fixed32, Single),
    ],
);
pub static SCOPE_SPANS: Msg = msg(
    "ScopeSpans",
    &[
        f(1, "scope", "scope", Ty::Msg(&SCOPE), Present),
        f(2, "spans", "spans", Ty::Msg(&SPAN), Repeated),
        f(3, "schemaUrl", "schema_url", Ty::Str, Single),
    ],
);
pub static RESOURCE_SPANS: Msg = msg(
    "ResourceSpans",
    &[
        f(1, "resource", "resource", Ty::Msg(&RESOURCE), Present),
        f(2, "scopeSpans", "scope_spans", Ty::Msg(&SCOPE_SPANS), Repeated),
        f(3, "schemaUrl", "schema_url", Ty::Str, Single),
    ],
);
pub static TRACES_REQUEST: Msg = msg(
    "ExportTraceServiceRequest",
    &[f(
        1,
        "resourceSpans",
        "resource_spans",
        Ty::Msg(&RESOURCE_SPANS),
        Repeated,
    )],
);

// --- logs.proto ----------------------------------------------------------------------------

const SEVERITY_NUMBER: Ty = Ty::Enum(&[
    "SEVERITY_NUMBER_UNSPECIFIED",
    "SEVERITY_NUMBER_TRACE",
    "SEVERITY_NUMBER_TRACE2",
    "SEVERITY_NUMBER_TRACE3",
    "SEVERITY_NUMBER_TRACE4",
    "SEVERITY_NUMBER_DEBUG",
    "SEVERITY_NUMBER_DEBUG2",
    "SEVERITY_NUMBER_DEBUG3",
    "SEVERITY_NUMBER_DEBUG4",
    "SEVERITY_NUMBER_INFO",
    "SEVERITY_NUMBER_INFO2",
    "SEVERITY_NUMBER_INFO3",
    "SEVERITY_NUMBER_INFO4",
    "SEVERITY_NUMBER_WARN",
    "SEVERITY_NUMBER_WARN2",
    "SEVERITY_NUMBER_WARN3",
    "SEVERITY_NUMBER_WARN4",
    "SEVERITY_NUMBER_ERROR",
    "SEVERITY_NUMBER_ERROR2",
    "SEVERITY_NUMBER_ERROR3",
    "SEVERITY_NUMBER_ERROR4",
    "SEVERITY_NUMBER_FATAL",
    "SEVERITY_NUMBER_FATAL2",
    "SEVERITY_NUMBER_FATAL3",
    "SEVERITY_NUMBER_FATAL4",
]);

pub static LOG_RECORD: Msg = msg(
    "LogRecord",
    &[
        f(1, "timeUnixNano", "time_unix_nano", Ty::Fixed64, Single),
        f(2, "severityNumber", "severity_number", SEVERITY_NUMBER, Single),
        f(3, "severityText", "severity_text", Ty::Str, Single),
        f(5, "body", "body", Ty::Msg(&ANY_VALUE), Present),
        f(6, "attributes", "attributes", ATTRIBUTES, Repeated),
        f(
            7,
            "droppedAttributesCount",
            "dropped_attributes_count",
            Ty::Uint32,
            Single,
        ),
        f(8, "flags", "flags", Ty::Fixed32, Single),
        f(9, "traceId", "trace_id", TRACE_ID, Single),
        f(10, "spanId", "span_id", SPAN_ID, Single),
        f(
            11,
            "observedTimeUnixNano",
            "observed_time_unix_nano",
            Ty::Fixed64,
            Single,
        ),
        f(12, "eventName", "event_name", Ty::Str, Single),
    ],
);
pub static SCOPE_LOGS: Msg = msg(
    "ScopeLogs",
    &[
        f(1, "scope", "scope", Ty::Msg(&SCOPE), Present),
        f(2, "logRecords", "log_records", Ty::Msg(&LOG_RECORD), Repeated),
        f(3, "schemaUrl", "schema_url", Ty::Str, Single),
    ],
);
pub static RESOURCE_LOGS: Msg = msg(
    "ResourceLogs",
    &[
        f(1, "resource", "resource", Ty::Msg(&RESOURCE), Present),
        f(2, "scopeLogs", "scope_logs", Ty::Msg(&SCOPE_LOGS), Repeated),
        f(3, "schemaUrl", "schema_url", Ty::Str, Single),
    ],
);
pub static LOGS_REQUEST: Msg = msg(
    "ExportLogsServiceRequest",
    &[f(1, "resourceLogs", "resource_logs", Ty::Msg(&RESOURCE_LOGS), Repeated)],
);

// --- metrics.proto -------------------------------------------------------------------------

const TEMPORALITY: Ty = Ty::Enum(&[
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_DELTA",
    "AGGREGATION_TEMPORALITY_CUMULATIVE",
]);

pub static EXEMPLAR: Msg = msg(
    "Exemplar",
    &[
        f(2, "timeUnixNano", "time_unix_nano", Ty::Fixed64, Single),
        f(3, "asDouble", "as_double", Ty::Double, Oneof(0)),
        f(6, "asInt", "as_int", Ty::Sfixed64, Oneof(0)),
        f(4, "spanId", "span_id", SPAN_ID, Single),
        f(5, "traceId", "trace_id", TRACE_ID, Single),
        f(7, "filteredAttributes", "filtered_attributes", ATTRIBUTES, Repeated),
    ],
);
pub static NUMBER_POINT: Msg = msg(
    "NumberDataPoint",
    &[
        f(2, "startTimeUnixNano", "start_time_unix_nano", Ty::Fixed64, Single),
        f(3, "timeUnixNano", "time_unix_nano", Ty::Fixed64, Single),
        f(4, "asDouble", "as_double", Ty::Double, Oneof(0)),
        f(6, "asInt", "as_int", Ty::Sfixed64, Oneof(0)),
        f(5, "exemplars", "exemplars", Ty::Msg(&EXEMPLAR), Repeated),
        f(7, "attributes", "attributes", ATTRIBUTES, Repeated),
        f(8, "flags", "flags", Ty::Uint32, Single),
    ],
);
pub static HISTOGRAM_POINT: Msg = msg(
    "HistogramDataPoint",
    &[
        f(2, "startTimeUnixNano", "start_time_unix_nano", Ty::Fixed64, Single),
        f(3, "timeUnixNano", "time_unix_nano", Ty::Fixed64, Single),
        f(4, "count", "count", Ty::Fixed64, Single),
        f(5, "sum", "sum", Ty::Double, Present),
        f(6, "bucketCounts", "bucket_counts", Ty::Fixed64, Repeated),
        f(7, "explicitBounds", "explicit_bounds", Ty::Double, Repeated),
        f(8, "exemplars", "exemplars", Ty::Msg(&EXEMPLAR), Repeated),
        f(9, "attributes", "attributes", ATTRIBUTES, Repeated),
        f(10, "flags", "flags", Ty::Uint32, Single),
        f(11, "min", "min", Ty::Double, Present),
        f(12, "max", "max", Ty::Double, Present),
    ],
);
pub static BUCKETS: Msg = msg(
    "ExponentialHistogramDataPoint.Buckets",
    &[
        f(1, "offset", "offset", Ty::Sint32, Single),
        f(2, "bucketCounts", "bucket_counts", Ty::Uint64, Repeated),
    ],
);
pub static EXP_HISTOGRAM_POINT: Msg = msg(
    "ExponentialHistogramDataPoint",
    &[
        f(1, "attributes", "attributes", ATTRIBUTES, Repeated),
        f(2, "startTimeUnixNano", "start_time_unix_nano", Ty::Fixed64, Single),
        f(3, "timeUnixNano", "time_unix_nano", Ty::Fixed64, Single),
        f(4, "count", "count", Ty::Fixed64, Single),
        f(5, "sum", "sum", Ty::Double, Present),
        f(6, "scale", "scale", Ty::Sint32, Single),
        f(7, "zeroCount", "zero_count", Ty::Fixed64, Single),
        f(8, "positive", "positive", Ty::Msg(&BUCKETS), Present),
        f(9, "negative", "negative", Ty::Msg(&BUCKETS), Present),
        f(10, "flags", "flags", Ty::Uint32, Single),
        f(11, "exemplars", "exemplars", Ty::Msg(&EXEMPLAR), Repeated),
        f(12, "min", "min", Ty::Double, Present),
        f(13, "max", "max", Ty::Double, Present),
        f(14, "zeroThreshold", "zero_threshold", Ty::Double, Single),
    ],
);
pub static QUANTILE: Msg = msg(
    "SummaryDataPoint.ValueAtQuantile",
    &[
        f(1, "quantile", "quantile", Ty::Double, Single),
        f(2, "value", "value", Ty::Double, Single),
    ],
);
pub static SUMMARY_POINT: Msg = msg(
    "SummaryDataPoint",
    &[
        f(2, "startTimeUnixNano", "start_time_unix_nano", Ty::Fixed64, Single),
        f(3, "timeUnixNano", "time_unix_nano", Ty::Fixed64, Single),
        f(4, "count", "count", Ty::Fixed64, Single),
        f(5, "sum", "sum", Ty::Double, Single),
        f(6, "quantileValues", "quantile_values", Ty::Msg(&QUANTILE), Repeated),
        f(7, "attributes", "attributes", ATTRIBUTES, Repeated),
        f(8, "flags", "flags", Ty::Uint32, Single),
    ],
);
pub static GAUGE: Msg = msg(
    "Gauge",
    &[f(1, "dataPoints", "data_points", Ty::Msg(&NUMBER_POINT), Repeated)],
);
pub static SUM: Msg = msg(
    "Sum",
    &[
        f(1, "dataPoints", "data_points", Ty::Msg(&NUMBER_POINT), Repeated),
        f(
            2,
            "aggregationTemporality",
            "aggregation_temporality",
            TEMPORALITY,
            Single,
        ),
        f(3, "isMonotonic", "is_monotonic", Ty::Bool, Single),
    ],
);
pub static HISTOGRAM: Msg = msg(
    "Histogram",
    &[
        f(1, "dataPoints", "data_points", Ty::Msg(&HISTOGRAM_POINT), Repeated),
        f(
            2,
            "aggregationTemporality",
            "aggregation_temporality",
            TEMPORALITY,
            Single,
        ),
    ],
);
pub static EXP_HISTOGRAM: Msg = msg(
    "ExponentialHistogram",
    &[
        f(1, "dataPoints", "data_points", Ty::Msg(&EXP_HISTOGRAM_POINT), Repeated),
        f(
            2,
            "aggregationTemporality",
            "aggregation_temporality",
            TEMPORALITY,
            Single,
        ),
    ],
);
pub static SUMMARY: Msg = msg(
    "Summary",
    &[f(1, "dataPoints", "data_points", Ty::Msg(&SUMMARY_POINT), Repeated)],
);
pub static METRIC: Msg = msg(
    "Metric",
    &[
        f(1, "name", "name", Ty::Str, Single),
        f(2, "description", "description", Ty::Str, Single),
        f(3, "unit", "unit", Ty::Str, Single),
        f(5, "gauge", "gauge", Ty::Msg(&GAUGE), Oneof(0)),
        f(7, "sum", "sum", Ty::Msg(&SUM), Oneof(0)),
        f(9, "histogram", "histogram", Ty::Msg(&HISTOGRAM), Oneof(0)),
        f(
            10,
            "exponentialHistogram",
            "exponential_histogram",
            Ty::Msg(&EXP_HISTOGRAM),
            Oneof(0),
        ),
        f(11, "summary", "summary", Ty::Msg(&SUMMARY), Oneof(0)),
        f(12, "metadata", "metadata", ATTRIBUTES, Repeated),
    ],
);
pub static SCOPE_METRICS: Msg = msg(
    "ScopeMetrics",
    &[
        f(1, "scope", "scope", Ty::Msg(&SCOPE), Present),
        f(2, "metrics", "metrics", Ty::Msg(&METRIC), Repeated),
        f(3, "schemaUrl", "schema_url", Ty::Str, Single),
    ],
);
pub static RESOURCE_METRICS: Msg = msg(
    "ResourceMetrics",
    &[
        f(1, "resource", "resource", Ty::Msg(&RESOURCE), Present),
        f(2, "scopeMetrics", "scope_metrics", Ty::Msg(&SCOPE_METRICS), Repeated),
        f(3, "schemaUrl", "schema_url", Ty::Str, Single),
    ],
);
pub static METRICS_REQUEST: Msg = msg(
    "ExportMetricsServiceRequest",
    &[f(
        1,
        "resourceMetrics",
        "resource_metrics",
        Ty::Msg(&RESOURCE_METRICS),
        Repeated,
    )],
);

#[cfg(test)]
mod tests {
    use super::*;

    fn camel(proto: &str) -> String {
        let mut out = String::new();
        let mut up = false;
        for c in proto.chars() {
            if c == '_' {
                up = true;
            } else if up {
                out.extend(c.to_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    }

    fn check(m: &'static Msg, seen: &mut Vec<&'static str>) {
        if seen.contains(&m.name) {
            return;
        }
        seen.push(m.name);
        // The decoder tracks seen keys in a u32 bitmask.
        assert!(m.fields.len() <= 32, "{}", m.name);
        for (i, f) in m.fields.iter().enumerate() {
            assert_eq!(f.json, camel(f.proto), "{}.{}", m.name, f.proto);
            assert!(
                m.fields[i + 1..]
                    .iter()
                    .all(|g| g.number != f.number && g.json != f.json),
                "{}.{} twice",
                m.name,
                f.proto
            );
            if let Ty::Msg(sub) = f.ty {
                check(sub, seen);
            }
        }
    }

    #[test]
    fn names_numbers_and_reach() {
        let mut seen = Vec::new();
        for root in [&TRACES_REQUEST, &METRICS_REQUEST, &LOGS_REQUEST] {
            check(root, &mut seen);
        }
        // Every message of the three requests is reachable from them.
        assert_eq!(seen.len(), 34, "{seen:?}");
    }
}
