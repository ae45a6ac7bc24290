//! OTLP/JSON: converting export requests between the OTLP/JSON encoding and
//! protobuf, and rendering export responses, working on the wire in both
//! directions.
//!
//! - [`schema`]: one static table of the OTLP messages (field numbers, JSON
//!   names, types, how each is spelled in JSON), used by both directions.
//! - [`decode`]: JSON → protobuf, a streaming transcoder (no JSON tree).
//! - [`encode`]: protobuf → JSON, a walk of the wire bytes (no prost decode).
//!
//! The mapping is proto3 JSON with OTLP's exceptions: trace and span ids are
//! hex strings, enums are written as numbers (names are also read). Values
//! survive exactly: doubles are parsed correctly rounded and written in their
//! shortest round-trip form, NaN and the infinities as "NaN", "Infinity",
//! "-Infinity"; 64-bit integers are written as decimal strings and read from
//! strings or numbers (`1000.0` and `1e3` too, as long as they are integral);
//! enum values outside the vendored proto pass as numbers; `null` reads as the
//! field's default; unknown fields are skipped; a key given twice in one
//! object (also as camelCase and snake_case), or two members of one oneof,
//! is an error rather than a silent choice.
//!
//! Work and memory: decoding is one linear pass and its output is at most 4×
//! the body (see [`decode`]), so a request costs time and memory proportional
//! to its size, which `max_request_body_size` bounds. Small bodies (the
//! common case) are decoded inline on the shard. A body of
//! [`OFF_SHARD_BYTES`] or more could still hold the shard for a noticeable
//! time (measured optimised, on a loaded machine: 19 MiB of unknown fields
//! ~70 ms, 7 M empty `resourceSpans` ~250 ms; a debug build is ~20× slower),
//! so [`decode_request_off_shard`] hands it to glommio's blocking
//! thread pool and the shard keeps serving its other connections meanwhile;
//! the recursive transcoder cannot yield mid-parse, and moving the whole
//! parse off the reactor is simpler than making it resumable.

pub mod decode;
pub mod encode;
pub mod schema;

use crate::signal::Signal;
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("invalid JSON at byte {at}: expected {expected}")]
    Syntax { at: usize, expected: &'static str },
    #[error("the request must be a JSON object")]
    NotObject,
    #[error("invalid {message}.{field} at byte {at}: {reason}")]
    Value {
        at: usize,
        message: &'static str,
        field: &'static str,
        reason: String,
    },
    #[error("duplicate key \"{field}\" in {message} at byte {at}")]
    Duplicate {
        at: usize,
        message: &'static str,
        field: &'static str,
    },
    #[error("{message} at byte {at} sets both \"{other}\" and \"{field}\", members of one oneof")]
    Oneof {
        at: usize,
        message: &'static str,
        field: &'static str,
        other: &'static str,
    },
    #[error(
        "attribute value nested deeper than {} arrays and kvlists at byte {at}",
        schema::MAX_ANY_VALUE_NESTING
    )]
    TooDeep { at: usize },
    #[error("invalid protobuf at byte {at}: {reason}")]
    Protobuf { at: usize, reason: &'static str },
}

/// The schema of a signal's `Export*ServiceRequest`.
pub fn request_schema(signal: Signal) -> &'static schema::Msg {
    match signal {
        Signal::Traces => &schema::TRACES_REQUEST,
        Signal::Metrics => &schema::METRICS_REQUEST,
        Signal::Logs => &schema::LOGS_REQUEST,
    }
}

/// Parses an OTLP/JSON export request into the encoded protobuf
/// `Export*ServiceRequest`. Unknown fields are ignored.
pub fn decode_request(signal: Signal, json: &[u8]) -> Result<Bytes, JsonError> {
    decode::transcode(request_schema(signal), json).map(Bytes::from)
}

/// JSON bodies at least this large are decoded off the shard's reactor.
pub const OFF_SHARD_BYTES: usize = 1 << 20;

/// [`decode_request`] for the receiver: inline for small bodies, on glommio's
/// blocking thread pool for bodies of [`OFF_SHARD_BYTES`] or more, so that a
/// large body never holds the shard. Must run inside a glommio executor.
pub async fn decode_request_off_shard(signal: Signal, json: Bytes) -> Result<Bytes, JsonError> {
    if json.len() < OFF_SHARD_BYTES {
        return decode_request(signal, &json);
    }
    glommio::executor()
        .spawn_blocking(move || decode_request(signal, &json))
        .await
}

/// Renders an encoded protobuf `Export*ServiceRequest` as one line of OTLP/JSON
/// (no trailing newline).
pub fn encode_request(signal: Signal, protobuf: &[u8]) -> Result<String, JsonError> {
    encode::render(request_schema(signal), protobuf)
}

/// The OTLP/JSON export response body: `{}` for full success, otherwise a
/// `partialSuccess` with the rejected count and message (zero values omitted,
/// as in the proto3 JSON mapping).
pub fn encode_response(signal: Signal, rejected: i64, message: &str) -> String {
    if rejected == 0 && message.is_empty() {
        return "{}".to_string();
    }
    let count = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Metrics => "rejectedDataPoints",
        Signal::Logs => "rejectedLogRecords",
    };
    let mut out = String::from("{\"partialSuccess\":{");
    if rejected != 0 {
        out.push_str(&format!("\"{count}\":\"{rejected}\""));
    }
    if !message.is_empty() {
        if rejected != 0 {
            out.push(',');
        }
        out.push_str("\"errorMessage\":");
        encode::string(&mut out, message);
    }
    out.push_str("}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::common::v1::{any_value, AnyValue};
    use crate::proto::metrics::v1::{metric, number_data_point, Exemplar};
    use crate::proto::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest};
    use prost::Message;
    use serde_json::Value;

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

    /// JSON → protobuf → JSON → protobuf: the second protobuf is what prost
    /// encodes for the same values, and rendering it again gives the same line.
    fn roundtrip(signal: Signal, json: &str) {
        let pb = decode_request(signal, json.as_bytes()).unwrap();
        let line = encode_request(signal, &pb).unwrap();
        assert!(!line.contains('\n'));
        let again = decode_request(signal, line.as_bytes()).unwrap();
        let canonical = match signal {
            Signal::Traces => ExportTraceServiceRequest::decode(pb).unwrap().encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceRequest::decode(pb).unwrap().encode_to_vec(),
            Signal::Logs => ExportLogsServiceRequest::decode(pb).unwrap().encode_to_vec(),
        };
        assert_eq!(again, canonical, "{signal}: {line}");
        assert_eq!(encode_request(signal, &again).unwrap(), line);
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
            assert!(matches!(err, JsonError::Value { .. }), "{json}: {err}");
        }
        // Empty ids are allowed.
        let ok = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"","spanId":""}]}]}]}"#;
        decode_request(Signal::Traces, ok.as_bytes()).unwrap();
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(
            decode_request(Signal::Traces, b"{"),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            decode_request(Signal::Traces, b"[]"),
            Err(JsonError::NotObject)
        ));
        assert!(matches!(
            decode_request(Signal::Traces, br#"{"resourceSpans": 5}"#),
            Err(JsonError::Value { .. })
        ));
        assert!(matches!(
            decode_request(
                Signal::Metrics,
                br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[{"asInt":"x"}]}}]}]}]}"#
            ),
            Err(JsonError::Value { .. })
        ));
        assert!(matches!(
            encode_request(Signal::Logs, &[0xff, 0xff]),
            Err(JsonError::Protobuf { .. })
        ));
        // Unknown top-level fields are ignored.
        let pb = decode_request(Signal::Logs, br#"{"whatever": {"a": [1, {"b": null}, "\u00e9"]}}"#).unwrap();
        assert!(pb.is_empty());
        for bad in [
            &b"{} x"[..],
            b"{\"a\":01}",
            b"{\"a\":[1,]}",
            b"{\"a\" 1}",
            b"{\"a\":\"\\q\"}",
            b"\xff",
        ] {
            assert!(
                decode_request(Signal::Logs, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
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
