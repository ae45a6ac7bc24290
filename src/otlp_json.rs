//! OTLP/JSON: converting export requests between the OTLP/JSON encoding and
//! protobuf, and rendering export responses.
//!
//! The pbjson serde impls generated for the prost types do the proto3 JSON
//! mapping; OTLP/JSON differs from it only in that trace and span ids are hex
//! strings instead of base64. Requests go through a `serde_json::Value` tree in
//! which exactly the id fields (spans, span links, exemplars, log records) are
//! rewritten between hex and base64.

use base64::Engine;
use bytes::Bytes;
use prost::Message;
use serde_json::{Map, Value};

use crate::proto::{
    collector::logs::v1::ExportLogsPartialSuccess, collector::metrics::v1::ExportMetricsPartialSuccess,
    collector::trace::v1::ExportTracePartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    ExportMetricsServiceRequest, ExportMetricsServiceResponse, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use crate::signal::Signal;

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("invalid OTLP/JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    #[error("invalid OTLP/JSON {signal} request: {source}")]
    Schema {
        signal: Signal,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid {field} {value:?}: {reason}")]
    Id {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid protobuf {signal} request: {source}")]
    Protobuf {
        signal: Signal,
        #[source]
        source: prost::DecodeError,
    },
    #[error("cannot render OTLP/JSON: {0}")]
    Render(#[source] serde_json::Error),
}

/// An id field and the byte length a non-empty value must have.
struct IdField {
    camel: &'static str,
    snake: &'static str,
    len: usize,
}

const TRACE_ID: IdField = IdField {
    camel: "traceId",
    snake: "trace_id",
    len: 16,
};
const SPAN_ID: IdField = IdField {
    camel: "spanId",
    snake: "span_id",
    len: 8,
};
const PARENT_SPAN_ID: IdField = IdField {
    camel: "parentSpanId",
    snake: "parent_span_id",
    len: 8,
};

/// One step from a message to its children: any of these keys (camelCase and
/// snake_case spellings, or oneof alternatives), holding an object or an array of them.
type Step = &'static [&'static str];

const RESOURCE_SPANS: Step = &["resourceSpans", "resource_spans"];
const SCOPE_SPANS: Step = &["scopeSpans", "scope_spans"];
const SPANS: Step = &["spans"];
const LINKS: Step = &["links"];
const RESOURCE_METRICS: Step = &["resourceMetrics", "resource_metrics"];
const SCOPE_METRICS: Step = &["scopeMetrics", "scope_metrics"];
const METRICS: Step = &["metrics"];
const DATA_KINDS: Step = &[
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "exponential_histogram",
];
const DATA_POINTS: Step = &["dataPoints", "data_points"];
const EXEMPLARS: Step = &["exemplars"];
const RESOURCE_LOGS: Step = &["resourceLogs", "resource_logs"];
const SCOPE_LOGS: Step = &["scopeLogs", "scope_logs"];
const LOG_RECORDS: Step = &["logRecords", "log_records"];

/// Where the id fields of each signal's request live.
fn id_locations(signal: Signal) -> &'static [(&'static [Step], &'static [IdField])] {
    match signal {
        Signal::Traces => &[
            (
                &[RESOURCE_SPANS, SCOPE_SPANS, SPANS],
                &[TRACE_ID, SPAN_ID, PARENT_SPAN_ID],
            ),
            (&[RESOURCE_SPANS, SCOPE_SPANS, SPANS, LINKS], &[TRACE_ID, SPAN_ID]),
        ],
        Signal::Metrics => &[(
            &[
                RESOURCE_METRICS,
                SCOPE_METRICS,
                METRICS,
                DATA_KINDS,
                DATA_POINTS,
                EXEMPLARS,
            ],
            &[TRACE_ID, SPAN_ID],
        )],
        Signal::Logs => &[(&[RESOURCE_LOGS, SCOPE_LOGS, LOG_RECORDS], &[TRACE_ID, SPAN_ID])],
    }
}

/// What `visit` does with each object it reaches.
type ObjectFn<'a> = dyn FnMut(&mut Map<String, Value>) -> Result<(), JsonError> + 'a;

/// Calls `f` on every object reached from `v` along `path`.
fn visit(v: &mut Value, path: &[Step], f: &mut ObjectFn<'_>) -> Result<(), JsonError> {
    match v {
        Value::Array(items) => {
            for item in items {
                visit(item, path, f)?;
            }
            Ok(())
        }
        Value::Object(obj) => match path.split_first() {
            None => f(obj),
            Some((step, rest)) => {
                for key in *step {
                    if let Some(child) = obj.get_mut(*key) {
                        visit(child, rest, f)?;
                    }
                }
                Ok(())
            }
        },
        // Wrong shapes are left for the schema check to report.
        _ => Ok(()),
    }
}

/// Rewrites the id fields of a request tree with `convert`.
fn convert_ids(
    signal: Signal,
    root: &mut Value,
    convert: fn(&IdField, &str) -> Result<String, JsonError>,
) -> Result<(), JsonError> {
    for (path, fields) in id_locations(signal) {
        visit(root, path, &mut |obj| {
            for field in *fields {
                for key in [field.camel, field.snake] {
                    if let Some(Value::String(s)) = obj.get_mut(key) {
                        *s = convert(field, s)?;
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn hex_to_base64(field: &IdField, hex_id: &str) -> Result<String, JsonError> {
    let err = |reason: String| JsonError::Id {
        field: field.camel,
        value: hex_id.to_string(),
        reason,
    };
    let bytes = hex::decode(hex_id).map_err(|e| err(format!("not hex: {e}")))?;
    if !bytes.is_empty() && bytes.len() != field.len {
        return Err(err(format!("{} bytes, expected {}", bytes.len(), field.len)));
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn base64_to_hex(field: &IdField, b64: &str) -> Result<String, JsonError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| JsonError::Id {
            field: field.camel,
            value: b64.to_string(),
            reason: e.to_string(),
        })?;
    Ok(hex::encode(bytes))
}

fn from_tree<T: serde::de::DeserializeOwned + Message>(signal: Signal, tree: Value) -> Result<Bytes, JsonError> {
    let msg: T = serde_json::from_value(tree).map_err(|source| JsonError::Schema { signal, source })?;
    Ok(Bytes::from(msg.encode_to_vec()))
}

/// Parses an OTLP/JSON export request into the encoded protobuf `Export*ServiceRequest`.
/// Unknown fields are ignored.
pub fn decode_request(signal: Signal, json: &[u8]) -> Result<Bytes, JsonError> {
    let mut tree: Value = serde_json::from_slice(json).map_err(JsonError::Syntax)?;
    if !tree.is_object() {
        return Err(JsonError::Schema {
            signal,
            source: serde::de::Error::custom("the request must be a JSON object"),
        });
    }
    convert_ids(signal, &mut tree, hex_to_base64)?;
    match signal {
        Signal::Traces => from_tree::<ExportTraceServiceRequest>(signal, tree),
        Signal::Metrics => from_tree::<ExportMetricsServiceRequest>(signal, tree),
        Signal::Logs => from_tree::<ExportLogsServiceRequest>(signal, tree),
    }
}

fn to_tree<T: serde::Serialize + Message + Default>(signal: Signal, protobuf: &[u8]) -> Result<Value, JsonError> {
    let msg = T::decode(protobuf).map_err(|source| JsonError::Protobuf { signal, source })?;
    serde_json::to_value(&msg).map_err(JsonError::Render)
}

/// Renders an encoded protobuf `Export*ServiceRequest` as one line of OTLP/JSON
/// (no trailing newline).
pub fn encode_request(signal: Signal, protobuf: &[u8]) -> Result<String, JsonError> {
    let mut tree = match signal {
        Signal::Traces => to_tree::<ExportTraceServiceRequest>(signal, protobuf)?,
        Signal::Metrics => to_tree::<ExportMetricsServiceRequest>(signal, protobuf)?,
        Signal::Logs => to_tree::<ExportLogsServiceRequest>(signal, protobuf)?,
    };
    convert_ids(signal, &mut tree, base64_to_hex)?;
    serde_json::to_string(&tree).map_err(JsonError::Render)
}

/// The OTLP/JSON export response body: `{}` for full success, otherwise a
/// `partialSuccess` with the rejected count and message (zero values omitted,
/// as in the proto3 JSON mapping).
pub fn encode_response(signal: Signal, rejected: i64, message: &str) -> String {
    if rejected == 0 && message.is_empty() {
        return "{}".to_string();
    }
    let error_message = message.to_string();
    let rendered = match signal {
        Signal::Traces => serde_json::to_string(&ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message,
            }),
        }),
        Signal::Metrics => serde_json::to_string(&ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message,
            }),
        }),
        Signal::Logs => serde_json::to_string(&ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message,
            }),
        }),
    };
    // Serializing these plain structs to a string cannot fail; fall back to a
    // success body rather than panic if it ever did.
    rendered.unwrap_or_else(|e| {
        tracing::error!(error = %e, "rendering OTLP/JSON response");
        "{}".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::common::v1::{any_value, AnyValue};
    use crate::proto::metrics::v1::{metric, number_data_point, Exemplar};

    const TRACE_JSON: &str = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{
          "scope": {"name": "my.library", "version": "1.0.0",
                    "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
          "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "parentSpanId": "eee19b7ec3c1b173",
            "name": "I'm a server span",
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": 1544712661000000000,
            "kind": 2,
            "attributes": [
              {"key": "my.span.attr", "value": {"stringValue": "some value"}},
              {"key": "count", "value": {"intValue": "42"}},
              {"key": "traceId", "value": {"stringValue": "not-an-id"}}
            ],
            "links": [{"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708"}],
            "status": {"code": 1},
            "someFutureField": {"nested": [1, 2, 3]}
          }]
        }]
      }]
    }"#;

    #[test]
    fn decodes_spec_style_trace_request() {
        let pb = decode_request(Signal::Traces, TRACE_JSON.as_bytes()).unwrap();
        let req = ExportTraceServiceRequest::decode(pb).unwrap();
        let rs = &req.resource_spans[0];
        assert_eq!(rs.resource.as_ref().unwrap().attributes[0].key, "service.name");
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "my.library");
        let span = &ss.spans[0];
        assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
        assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
        assert_eq!(span.name, "I'm a server span");
        assert_eq!(span.start_time_unix_nano, 1544712660000000000);
        assert_eq!(span.end_time_unix_nano, 1544712661000000000);
        assert_eq!(span.kind, 2);
        assert_eq!(span.attributes[1].key, "count");
        assert_eq!(
            span.attributes[1].value,
            Some(AnyValue {
                value: Some(any_value::Value::IntValue(42))
            })
        );
        // An attribute named like an id field is data, not an id.
        assert_eq!(
            span.attributes[2].value.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("not-an-id".into()))
        );
        assert_eq!(hex::encode(&span.links[0].trace_id), "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(hex::encode(&span.links[0].span_id), "0102030405060708");
        assert_eq!(span.status.as_ref().unwrap().code, 1);
    }

    const METRICS_JSON: &str = r#"{"resourceMetrics": [{"scopeMetrics": [{"metrics": [
      {"name": "g", "gauge": {"dataPoints": [
        {"asDouble": 1.5, "timeUnixNano": "10",
         "exemplars": [{"asInt": "3", "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}]}]}},
      {"name": "s", "unit": "1", "sum": {"aggregationTemporality": 2, "isMonotonic": true,
        "dataPoints": [{"asInt": "7", "attributes": [{"key": "k", "value": {"boolValue": true}}]}, {"asInt": 8}]}},
      {"name": "h", "histogram": {"aggregationTemporality": 1, "dataPoints": [
        {"count": "3", "sum": 6.0, "bucketCounts": ["1", "2"], "explicitBounds": [2.5],
         "exemplars": [{"asDouble": 2.0, "spanId": "0102030405060708"}]}]}}
    ]}]}]}"#;

    #[test]
    fn decodes_metrics() {
        let pb = decode_request(Signal::Metrics, METRICS_JSON.as_bytes()).unwrap();
        let req = ExportMetricsServiceRequest::decode(pb).unwrap();
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 3);
        let Some(metric::Data::Gauge(g)) = &metrics[0].data else {
            panic!("gauge: {:?}", metrics[0])
        };
        assert_eq!(g.data_points[0].value, Some(number_data_point::Value::AsDouble(1.5)));
        assert_eq!(g.data_points[0].time_unix_nano, 10);
        let ex: &Exemplar = &g.data_points[0].exemplars[0];
        assert_eq!(hex::encode(&ex.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex::encode(&ex.span_id), "eee19b7ec3c1b174");
        let Some(metric::Data::Sum(s)) = &metrics[1].data else {
            panic!("sum")
        };
        assert!(s.is_monotonic);
        assert_eq!(s.aggregation_temporality, 2);
        assert_eq!(s.data_points[0].value, Some(number_data_point::Value::AsInt(7)));
        assert_eq!(s.data_points[1].value, Some(number_data_point::Value::AsInt(8)));
        let Some(metric::Data::Histogram(h)) = &metrics[2].data else {
            panic!("histogram")
        };
        assert_eq!(h.data_points[0].count, 3);
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 2]);
        assert_eq!(h.data_points[0].explicit_bounds, vec![2.5]);
        assert_eq!(hex::encode(&h.data_points[0].exemplars[0].span_id), "0102030405060708");
    }

    const LOGS_JSON: &str = r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [
      {"timeUnixNano": "1544712660300000000", "observedTimeUnixNano": "1544712660300000001",
       "severityNumber": 10, "severityText": "Information", "traceId": "5b8efff798038103d269b633813fc60c",
       "spanId": "eee19b7ec3c1b174", "body": {"stringValue": "Example log record"},
       "attributes": [{"key": "bytes", "value": {"bytesValue": "aGVsbG8="}}]},
      {"body": {"kvlistValue": {"values": [{"key": "a", "value": {"doubleValue": 1.25}}]}}}
    ]}]}]}"#;

    #[test]
    fn decodes_logs() {
        let pb = decode_request(Signal::Logs, LOGS_JSON.as_bytes()).unwrap();
        let req = ExportLogsServiceRequest::decode(pb).unwrap();
        let logs = &req.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].time_unix_nano, 1544712660300000000);
        assert_eq!(logs[0].severity_number, 10);
        assert_eq!(hex::encode(&logs[0].trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex::encode(&logs[0].span_id), "eee19b7ec3c1b174");
        assert_eq!(
            logs[0].body.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("Example log record".into()))
        );
        // AnyValue bytes stay base64 in OTLP/JSON.
        assert_eq!(
            logs[0].attributes[0].value.as_ref().unwrap().value,
            Some(any_value::Value::BytesValue(Bytes::from_static(b"hello")))
        );
        assert!(logs[1].trace_id.is_empty());
    }

    fn roundtrip(signal: Signal, json: &str) {
        let pb = decode_request(signal, json.as_bytes()).unwrap();
        let line = encode_request(signal, &pb).unwrap();
        assert!(!line.contains('\n'));
        let again = decode_request(signal, line.as_bytes()).unwrap();
        assert_eq!(pb, again, "{signal}: {line}");
    }

    #[test]
    fn encode_decode_roundtrip_all_signals() {
        roundtrip(Signal::Traces, TRACE_JSON);
        roundtrip(Signal::Metrics, METRICS_JSON);
        roundtrip(Signal::Logs, LOGS_JSON);
    }

    #[test]
    fn encode_uses_hex_ids_and_string_int64() {
        let pb = decode_request(Signal::Traces, TRACE_JSON.as_bytes()).unwrap();
        let line = encode_request(Signal::Traces, &pb).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(span["spanId"], "eee19b7ec3c1b174");
        assert_eq!(span["parentSpanId"], "eee19b7ec3c1b173");
        assert_eq!(span["links"][0]["spanId"], "0102030405060708");
        assert_eq!(span["startTimeUnixNano"], "1544712660000000000");
        assert_eq!(span["kind"], 2);

        let pb = decode_request(Signal::Logs, LOGS_JSON.as_bytes()).unwrap();
        let v: Value = serde_json::from_str(&encode_request(Signal::Logs, &pb).unwrap()).unwrap();
        let rec = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(rec["traceId"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(rec["attributes"][0]["value"]["bytesValue"], "aGVsbG8=");

        let pb = decode_request(Signal::Metrics, METRICS_JSON.as_bytes()).unwrap();
        let v: Value = serde_json::from_str(&encode_request(Signal::Metrics, &pb).unwrap()).unwrap();
        let ex = &v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0]["exemplars"][0];
        assert_eq!(ex["spanId"], "eee19b7ec3c1b174");
    }

    #[test]
    fn bad_ids_are_errors() {
        let cases = [
            (
                Signal::Traces,
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
            ),
            (
                Signal::Traces,
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"0102"}]}]}]}"#,
            ),
            (
                Signal::Traces,
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"eee19b7ec3c1b174"}]}]}]}"#,
            ),
            (
                Signal::Traces,
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"links":[{"spanId":"abc"}]}]}]}]}"#,
            ),
            (
                Signal::Logs,
                r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"trace_id":"XYZ"}]}]}]}"#,
            ),
            (
                Signal::Metrics,
                r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"sum":{"dataPoints":[{"exemplars":[{"spanId":"0g00000000000000"}]}]}}]}]}]}"#,
            ),
        ];
        for (signal, json) in cases {
            let err = decode_request(signal, json.as_bytes()).unwrap_err();
            assert!(matches!(err, JsonError::Id { .. }), "{json}: {err}");
        }
        // Empty ids are allowed.
        let ok = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"","spanId":""}]}]}]}"#;
        decode_request(Signal::Traces, ok.as_bytes()).unwrap();
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(
            decode_request(Signal::Traces, b"{"),
            Err(JsonError::Syntax(_))
        ));
        assert!(matches!(
            decode_request(Signal::Traces, b"[]"),
            Err(JsonError::Schema { .. })
        ));
        assert!(matches!(
            decode_request(Signal::Traces, br#"{"resourceSpans": 5}"#),
            Err(JsonError::Schema { .. })
        ));
        assert!(matches!(
            decode_request(
                Signal::Metrics,
                br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[{"asInt":"x"}]}}]}]}]}"#
            ),
            Err(JsonError::Schema { .. })
        ));
        assert!(matches!(
            encode_request(Signal::Logs, &[0xff, 0xff]),
            Err(JsonError::Protobuf { .. })
        ));
        // Unknown top-level fields are ignored.
        let pb = decode_request(Signal::Logs, br#"{"whatever": {"a": 1}}"#).unwrap();
        assert!(pb.is_empty());
    }

    #[test]
    fn responses() {
        assert_eq!(encode_response(Signal::Traces, 0, ""), "{}");
        assert_eq!(
            encode_response(Signal::Traces, 3, "bad spans"),
            r#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"bad spans"}}"#
        );
        assert_eq!(
            encode_response(Signal::Metrics, 2, ""),
            r#"{"partialSuccess":{"rejectedDataPoints":"2"}}"#
        );
        assert_eq!(
            encode_response(Signal::Logs, 1, "quote \" here"),
            r#"{"partialSuccess":{"rejectedLogRecords":"1","errorMessage":"quote \" here"}}"#
        );
        assert_eq!(
            encode_response(Signal::Logs, 0, "warning"),
            r#"{"partialSuccess":{"errorMessage":"warning"}}"#
        );
    }
}
