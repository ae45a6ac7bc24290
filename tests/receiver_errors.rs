//! The OTLP receiver's encodings and error answers: OTLP/JSON and gzip arrive
//! intact; malformed, oversized, wrongly typed and misrouted requests get the
//! right HTTP status / gRPC code, and the same connection then still works.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceResponse,
    common::v1::any_value,
    metrics::v1::{metric, number_data_point},
};
use prost::Message;

const TUNING: &str = "{shards: 1, shutdown_timeout: 10s}";
const TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";
const SPAN_ID: &str = "eee19b7ec3c1b174";

fn json_traces() -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"json-svc"}}}}]}},
"scopeSpans":[{{"scope":{{"name":"json-scope","version":"0.1"}},"spans":[{{"traceId":"{TRACE_ID}","spanId":"{SPAN_ID}",
"parentSpanId":"","name":"json-span","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000000001000",
"attributes":[{{"key":"i","value":{{"intValue":"42"}}}},{{"key":"d","value":{{"doubleValue":1.5}}}},{{"key":"b","value":{{"boolValue":true}}}},
{{"key":"arr","value":{{"arrayValue":{{"values":[{{"stringValue":"x"}},{{"intValue":"7"}}]}}}}}},
{{"key":"kv","value":{{"kvlistValue":{{"values":[{{"key":"n","value":{{"stringValue":"v"}}}}]}}}}}},
{{"key":"raw","value":{{"bytesValue":"AQID"}}}}],
"events":[{{"timeUnixNano":"1700000000000000500","name":"ev"}}],
"status":{{"code":2,"message":"bad"}}}}]}}]}}]}}"#
    )
}

fn json_metrics() -> &'static str {
    r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
"scopeMetrics":[{"scope":{"name":"m"},"metrics":[
{"name":"g","unit":"1","gauge":{"dataPoints":[{"timeUnixNano":"1700000000000000000","asDouble":3.25},{"timeUnixNano":"1700000000000000001","asInt":"-4"}]}},
{"name":"s","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"timeUnixNano":"1700000000000000000","asInt":"9"}]}}]}]}]}"#
}

fn json_logs() -> String {
    format!(
        r#"{{"resourceLogs":[{{"resource":{{}},"scopeLogs":[{{"scope":{{}},"logRecords":[
{{"timeUnixNano":"1700000000000000000","severityNumber":9,"severityText":"INFO","body":{{"stringValue":"hello json"}},
"traceId":"{TRACE_ID}","spanId":"{SPAN_ID}","attributes":[{{"key":"k","value":{{"stringValue":"v"}}}}]}},
{{"severityNumber":17,"body":{{"stringValue":"second"}}}}]}}]}}]}}"#
    )
}

fn assert_json_success(r: &HttpResponse, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert!(
        r.header("content-type").unwrap_or("").starts_with("application/json"),
        "{what}: content-type {:?}",
        r.header("content-type")
    );
    let v: serde_json::Value = serde_json::from_slice(&r.decoded_body())
        .unwrap_or_else(|e| panic!("{what}: body not JSON ({e}): {}", r.text()));
    assert_eq!(v, serde_json::json!({}), "{what}");
}

fn assert_proto_success(r: &HttpResponse, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/x-protobuf"),
        "{what}: content-type {:?}",
        r.header("content-type")
    );
    let resp = ExportTraceServiceResponse::decode(&r.decoded_body()[..])
        .unwrap_or_else(|e| panic!("{what}: body not protobuf: {e}"));
    assert!(
        resp.partial_success.map(|p| p.rejected_spans == 0).unwrap_or(true),
        "{what}"
    );
}

fn assert_json_error(r: &HttpResponse, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert!(
        r.header("content-type").unwrap_or("").starts_with("application/json"),
        "{what}: content-type {:?}",
        r.header("content-type")
    );
    let v: serde_json::Value = serde_json::from_slice(&r.decoded_body())
        .unwrap_or_else(|e| panic!("{what}: error body not JSON ({e}): {}", r.text()));
    let msg = v
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or_else(|| panic!("{what}: no message in {v}"));
    assert!(!msg.is_empty(), "{what}");
}

fn assert_proto_error(r: &HttpResponse, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/x-protobuf"),
        "{what}: content-type {:?}",
        r.header("content-type")
    );
    let st = RpcStatus::decode(&r.decoded_body()[..])
        .unwrap_or_else(|e| panic!("{what}: error body not a google.rpc.Status: {e}"));
    assert!(!st.message.is_empty(), "{what}: empty status message");
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

#[tokio::test(flavor = "multi_thread")]
async fn json_and_gzip_arrive_intact() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&forward_config(&p, backend.port, TUNING));
    let addr = p.http_addr();
    let proto = traces_request(3, 4, 42);
    let proto_bytes = proto.encode_to_vec();
    let proto_gz = gzip(&proto_bytes);
    let grpc_gz = traces_request(2, 2, 43);
    tokio::task::spawn_blocking(move || {
        let mut h = HttpConn::connect(addr);
        let r = h.post("/v1/traces", "application/json", None, json_traces().as_bytes());
        assert_json_success(&r, "json traces");
        let r = h.post("/v1/metrics", "application/json", None, json_metrics().as_bytes());
        assert_json_success(&r, "json metrics");
        let r = h.post(
            "/v1/logs",
            "application/json",
            Some("gzip"),
            &gzip(json_logs().as_bytes()),
        );
        assert_json_success(&r, "gzip json logs");
        let r = h.post("/v1/traces", "application/x-protobuf", Some("gzip"), &proto_gz);
        assert_proto_success(&r, "gzip protobuf traces");
    })
    .await
    .unwrap();
    let mut g = GrpcConn::connect(p.grpc_addr()).await;
    let r = g.call(TRACES_PATH, &grpc_gz.encode_to_vec(), true).await;
    assert_eq!(r.code, 0, "gzip gRPC: {}", r.message);
    ExportTraceServiceResponse::decode(&r.body[..]).expect("gRPC response decodes");

    backend.expect_counts(1 + 12 + 4, 3, 2, Duration::from_secs(10)).await;

    // JSON span: hex ids decoded to bytes, every attribute type intact.
    let spans = backend.spans();
    let js = spans.iter().find(|s| s.2 == "json-span").expect("json span arrived");
    assert_eq!(hex_id(&js.0), TRACE_ID);
    assert_eq!(hex_id(&js.1), SPAN_ID);
    let a = |k: &str| {
        js.3.iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(a("i"), Some(any_value::Value::IntValue(42)));
    assert_eq!(a("d"), Some(any_value::Value::DoubleValue(1.5)));
    assert_eq!(a("b"), Some(any_value::Value::BoolValue(true)));
    assert_eq!(a("raw"), Some(any_value::Value::BytesValue(vec![1, 2, 3])));
    match a("arr") {
        Some(any_value::Value::ArrayValue(arr)) => {
            let vals: Vec<_> = arr.values.into_iter().map(|v| v.value).collect();
            assert_eq!(vals, vec![Some(s("x")), Some(any_value::Value::IntValue(7))]);
        }
        other => panic!("arr = {other:?}"),
    }
    match a("kv") {
        Some(any_value::Value::KvlistValue(l)) => {
            assert_eq!(l.values[0].key, "n");
            assert_eq!(l.values[0].value.clone().unwrap().value, Some(s("v")));
        }
        other => panic!("kv = {other:?}"),
    }
    let full = backend
        .traces()
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .find(|s| s.name == "json-span")
        .unwrap();
    assert_eq!(full.kind, 2);
    assert_eq!(full.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(full.end_time_unix_nano, 1_700_000_000_000_001_000);
    assert_eq!(full.events.len(), 1);
    assert_eq!(
        full.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((2, "bad"))
    );

    // gzip protobuf and gzip gRPC requests: the ResourceSpans are byte-identical.
    let sent = vec![proto, grpc_gz];
    let got: Vec<_> = backend.traces();
    let got_rs: Vec<Vec<u8>> = resource_spans_multiset(&got);
    for rs in resource_spans_multiset(&sent) {
        assert!(got_rs.contains(&rs), "a gzip-sent ResourceSpans did not arrive intact");
    }

    // JSON metrics: values.
    let ms: Vec<_> = backend
        .metrics()
        .into_iter()
        .flat_map(|r| r.resource_metrics)
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .collect();
    let g = ms.iter().find(|m| m.name == "g").expect("gauge g");
    match &g.data {
        Some(metric::Data::Gauge(gg)) => {
            assert_eq!(gg.data_points[0].value, Some(number_data_point::Value::AsDouble(3.25)));
            assert_eq!(gg.data_points[1].value, Some(number_data_point::Value::AsInt(-4)));
        }
        other => panic!("g = {other:?}"),
    }
    match &ms.iter().find(|m| m.name == "s").expect("sum s").data {
        Some(metric::Data::Sum(sum)) => {
            assert!(sum.is_monotonic);
            assert_eq!(sum.aggregation_temporality, 2);
            assert_eq!(sum.data_points[0].value, Some(number_data_point::Value::AsInt(9)));
        }
        other => panic!("s = {other:?}"),
    }

    // JSON logs (sent gzip-compressed).
    let logs: Vec<_> = backend
        .logs()
        .into_iter()
        .flat_map(|r| r.resource_logs)
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .collect();
    assert_eq!(logs.len(), 2);
    let first = logs.iter().find(|l| l.severity_number == 9).unwrap();
    assert_eq!(first.body.clone().unwrap().value, Some(s("hello json")));
    assert_eq!(hex_id(&first.trace_id), TRACE_ID);
    assert_eq!(hex_id(&first.span_id), SPAN_ID);
    assert_eq!(first.severity_text, "INFO");

    sluice.stop(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_errors_keep_the_connection_usable() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let limit = 64 * 1024;
    let cfg = config_yaml(
        &p,
        "",
        &format!(", max_request_body_size: {limit}"),
        &format!(
            "  otlp: {{endpoint: 127.0.0.1:{}, tls: {{insecure: true}}, compression: none}}",
            backend.port
        ),
        "[otlp]",
        TUNING,
    );
    let mut sluice = Sluice::start(&cfg);
    let addr = p.http_addr();
    let good = traces_request(1, 1, 7).encode_to_vec();
    let big = traces_request(20, 20, 8).encode_to_vec();
    assert!(big.len() > limit, "test request must exceed the limit");
    let big_gz = gzip(&big);
    let ok_count = tokio::task::spawn_blocking(move || {
        let mut h = HttpConn::connect(addr);
        let mut oks = 0u64;
        let mut good_again = |h: &mut HttpConn, what: &str| {
            let r = h.post("/v1/traces", "application/x-protobuf", None, &good);
            assert_proto_success(&r, &format!("success after {what}"));
            oks += 1;
        };

        let r = h.post(
            "/v1/traces",
            "application/x-protobuf",
            None,
            &[0xff, 0xff, 0xff, 0x0a, 0x05],
        );
        assert_proto_error(&r, 400, "malformed protobuf");
        good_again(&mut h, "malformed protobuf");

        let r = h.post("/v1/traces", "application/json", None, b"{\"resourceSpans\": [ {");
        assert_json_error(&r, 400, "malformed JSON");
        good_again(&mut h, "malformed JSON");

        let r = h.post(
            "/v1/logs",
            "application/json",
            None,
            b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"traceId\":\"xyz\"}]}]}]}",
        );
        assert_json_error(&r, 400, "bad hex trace id in JSON");
        good_again(&mut h, "bad hex id");

        let r = h.post(
            "/v1/traces",
            "application/x-protobuf",
            Some("gzip"),
            b"this is not gzip",
        );
        assert_proto_error(&r, 400, "corrupt gzip");
        good_again(&mut h, "corrupt gzip");

        let r = h.post("/v1/traces", "application/x-protobuf", None, &big);
        assert_proto_error(&r, 413, "oversized body");
        good_again(&mut h, "oversized body");

        // The limit applies to the decompressed size as well.
        assert!(big_gz.len() < limit);
        let r = h.post("/v1/traces", "application/x-protobuf", Some("gzip"), &big_gz);
        assert_eq!(r.status, 413, "gzip bomb-ish body: {}", r.text());
        good_again(&mut h, "oversized decompressed body");

        let r = h.post("/v1/traces", "text/plain", None, b"hello");
        assert_eq!(r.status, 415, "text/plain: {}", r.text());
        good_again(&mut h, "415");

        // Refused from the head alone, with the body still on its way: the
        // body is read before the reply so the connection stays usable.
        let pause = Some(Duration::from_millis(300));
        for (what, ct, ce, status) in [
            ("text/plain", "text/plain", None, 415),
            ("unknown encoding", "application/x-protobuf", Some("br"), 415),
        ] {
            let mut headers = vec![("Content-Type", ct)];
            headers.extend(ce.map(|e| ("Content-Encoding", e)));
            let r = h.request_body_after("POST", "/v1/traces", &headers, &good, pause);
            assert_eq!(r.status, status, "{what}: {}", r.text());
            assert_eq!(r.header("connection"), None, "{what}");
            good_again(&mut h, what);
        }
        let r = h.request_body_after(
            "POST",
            "/v1/unknown",
            &[("Content-Type", "application/x-protobuf")],
            &good,
            pause,
        );
        assert_eq!(r.status, 404, "late body, unknown path: {}", r.text());
        good_again(&mut h, "404 with a late body");

        let r = h.post("/v1/unknown", "application/x-protobuf", None, &good);
        assert_eq!(r.status, 404, "unknown path: {}", r.text());
        good_again(&mut h, "404");

        let r = h.request("GET", "/v1/traces", &[], &[]);
        assert_eq!(r.status, 405, "GET: {}", r.text());
        good_again(&mut h, "405");

        let r = h.request(
            "PUT",
            "/v1/metrics",
            &[("Content-Type", "application/x-protobuf")],
            &good,
        );
        assert_eq!(r.status, 405, "PUT: {}", r.text());
        good_again(&mut h, "PUT 405");

        // Protobuf request bodies that are valid protobuf but not OTLP-shaped
        // for this signal (field 1 with a varint wire type).
        let r = h.post("/v1/metrics", "application/x-protobuf", None, &[0x08, 0x01]);
        assert_proto_error(&r, 400, "wrong wire type");
        good_again(&mut h, "wrong wire type");

        // A refused body too large to read for nothing: the reply says the
        // connection ends (a client then opens a new one).
        let r = h.post("/v1/unknown", "application/x-protobuf", None, &vec![0u8; 1 << 20]);
        assert_eq!(r.status, 404, "large body, unknown path: {}", r.text());
        assert_eq!(r.header("connection"), Some("close"));
        let mut h = HttpConn::connect(addr);
        good_again(&mut h, "a closed connection");
        oks
    })
    .await
    .unwrap();

    backend.expect_counts(ok_count, 0, 0, Duration::from_secs(10)).await;
    let m = scrape(p.metrics_addr());
    assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total"), ok_count as f64);
    assert!(sluice.is_running());
    sluice.stop(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_errors_keep_the_connection_usable() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let cfg = config_yaml(
        &p,
        ", max_recv_msg_size_mib: 1",
        "",
        &format!(
            "  otlp: {{endpoint: 127.0.0.1:{}, tls: {{insecure: true}}, compression: none}}",
            backend.port
        ),
        "[otlp]",
        TUNING,
    );
    let mut sluice = Sluice::start(&cfg);
    let mut g = GrpcConn::connect(p.grpc_addr()).await;
    let good = traces_request(1, 2, 9).encode_to_vec();
    let good_m = metrics_request(1, 1, 9).encode_to_vec();
    let good_l = logs_request(1, 3, 9).encode_to_vec();
    let mut oks = 0u64;

    macro_rules! good_again {
        ($what:expr) => {{
            let r = g.call(TRACES_PATH, &good, false).await;
            assert_eq!(r.code, 0, "success after {}: {}", $what, r.message);
            assert_eq!(r.http_status, 200);
            ExportTraceServiceResponse::decode(&r.body[..]).expect("response decodes");
            oks += 1;
        }};
    }

    let r = g.call(TRACES_PATH, &[0xff, 0xff, 0xff, 0x0a, 0x05], false).await;
    assert_eq!(r.code, 3, "malformed protobuf → INVALID_ARGUMENT: {}", r.message);
    good_again!("malformed protobuf");

    // A frame header announcing more bytes than the body carries.
    let mut truncated = grpc_frame(&good, false);
    truncated.truncate(truncated.len() - 3);
    let r = g.call_raw(TRACES_PATH, truncated, false).await;
    assert_ne!(r.code, 0, "truncated frame must not succeed");
    good_again!("truncated frame");

    // Compressed flag set but the bytes are not gzip.
    let mut bad_gz = grpc_frame(b"not gzip at all", false);
    bad_gz[0] = 1;
    let r = g.call_raw(TRACES_PATH, bad_gz, true).await;
    assert_ne!(r.code, 0, "corrupt gzip must not succeed");
    good_again!("corrupt gzip");

    let big = traces_request(80, 60, 10).encode_to_vec();
    assert!(big.len() > 1 << 20, "request must exceed 1 MiB ({} bytes)", big.len());
    let r = g.call(TRACES_PATH, &big, false).await;
    assert_eq!(r.code, 8, "oversized → RESOURCE_EXHAUSTED: {}", r.message);
    good_again!("oversized");

    let r = g
        .call(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
            &good,
            false,
        )
        .await;
    assert_eq!(r.code, 12, "unknown method → UNIMPLEMENTED: {}", r.message);
    good_again!("unknown method");
    let r = g.call("/foo.Bar/Export", &good, false).await;
    assert_eq!(r.code, 12, "unknown service → UNIMPLEMENTED: {}", r.message);
    good_again!("unknown service");

    // A nested message whose length runs past the end of the body.
    let r = g.call(LOGS_PATH, &[0x0a, 0x03, 0x08, 0x01], false).await;
    assert_eq!(r.code, 3, "wrong wire type in logs → INVALID_ARGUMENT: {}", r.message);
    good_again!("invalid logs");

    // gzip works for all three services.
    let r = g.call(TRACES_PATH, &good, true).await;
    assert_eq!(r.code, 0, "gzip traces: {}", r.message);
    oks += 1;
    let r = g.call(METRICS_PATH, &good_m, true).await;
    assert_eq!(r.code, 0, "gzip metrics: {}", r.message);
    let r = g.call(LOGS_PATH, &good_l, false).await;
    assert_eq!(r.code, 0, "logs: {}", r.message);

    backend
        .expect_counts(oks * 2, POINTS_PER_SET, 3, Duration::from_secs(10))
        .await;
    let samples = scrape_samples(p.metrics_addr());
    assert_eq!(
        labelled(
            &samples,
            "otelcol_receiver_accepted_spans_total",
            &["transport=\"grpc\""]
        ),
        (oks * 2) as f64
    );
    sluice.stop(Duration::from_secs(15));
}

/// A request that is well-formed at the top but malformed deeper down (bytes
/// that are no protobuf inside a span's attributes, invalid UTF-8 in a span
/// name) is refused at receipt, so it can never poison a batch shared with
/// other requests; the valid requests around it are delivered.
#[tokio::test(flavor = "multi_thread")]
async fn deep_malformation_is_refused_at_receipt() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&forward_config(&p, backend.port, "{shards: 1, shutdown_timeout: 10s}"));
    let mut conn = GrpcConn::connect(p.grpc_addr()).await;
    let wrap = |span: &[u8]| {
        let ld = |field: u8, inner: &[u8]| {
            let mut v = vec![(field << 3) | 2, inner.len() as u8];
            v.extend_from_slice(inner);
            v
        };
        ld(1, &ld(2, &ld(2, span)))
    };
    let bad_attrs = wrap(&[0x4a, 0x02, 0xff, 0xff]);
    let bad_name = wrap(&[0x2a, 0x02, 0xc3, 0x28]);
    let mut sent = 0;
    for (i, bad) in [bad_attrs, bad_name].iter().enumerate() {
        let good = traces_request(1, 3, 900 + i as u64).encode_to_vec();
        assert_eq!(conn.call(TRACES_PATH, &good, false).await.code, 0);
        let r = conn.call(TRACES_PATH, bad, false).await;
        assert_eq!(r.code, 3, "deep malformation accepted: {}", r.message);
        assert_eq!(conn.call(TRACES_PATH, &good, false).await.code, 0);
        sent += 6;
    }
    backend.expect_counts(sent, 0, 0, Duration::from_secs(10)).await;
    sluice.stop(Duration::from_secs(10));
}
