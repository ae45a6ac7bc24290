//! The `filter` processor through the real binary: the ingest-node example
//! (health checks, `/metrics` routes, logs below WARN, `go_*` metrics) drops
//! exactly those items and forwards everything else unchanged, from raw
//! requests and from the official OTel SDK; `error_mode`; config errors.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry::trace::{Span as _, Tracer as _};
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    common::v1::{any_value, AnyValue, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics},
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use prost::Message;

const FILTER: &str = r#"
  filter/ingest:
    error_mode: ignore
    traces:
      span:
        - 'IsMatch(name, "^(health_check|readiness_probe)$")'
        - 'attributes["http.route"] == "/metrics"'
    logs:
      log_record:
        - 'severity_number < SEVERITY_NUMBER_WARN'
    metrics:
      metric:
        - 'IsMatch(name, "^go_.*")'
"#;

fn config(p: &Ports, backend: u16, filter: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
processors:
{filter}
  batch: {{send_batch_size: 100000, timeout: 100ms}}
exporters:
  otlp: {{endpoint: 127.0.0.1:{backend}, tls: {{insecure: true}}, compression: none}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [filter/ingest, batch], exporters: [otlp]}}
    metrics: {{receivers: [otlp], processors: [filter/ingest, batch], exporters: [otlp]}}
    logs: {{receivers: [otlp], processors: [filter/ingest, batch], exporters: [otlp]}}
tuning: {{shards: 2}}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
    )
}

fn attr(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

fn span(n: u8, name: &str, route: Option<&str>) -> Span {
    Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: 1_000 + n as u64,
        end_time_unix_nano: 2_000 + n as u64,
        attributes: route.map(|r| vec![attr("http.route", r)]).unwrap_or_default(),
        ..Default::default()
    }
}

fn scope_spans(scope: &str, spans: Vec<Span>) -> ScopeSpans {
    ScopeSpans {
        scope: Some(opentelemetry_proto::tonic::common::v1::InstrumentationScope {
            name: scope.into(),
            ..Default::default()
        }),
        spans,
        ..Default::default()
    }
}

fn resource_spans(service: &str, scopes: Vec<ScopeSpans>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
            attributes: vec![attr("service.name", service)],
            ..Default::default()
        }),
        scope_spans: scopes,
        ..Default::default()
    }
}

/// The request sent, and what must arrive of it.
fn traces() -> (ExportTraceServiceRequest, ExportTraceServiceRequest) {
    let sent = ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans(
                "api",
                vec![
                    scope_spans(
                        "http",
                        vec![
                            span(1, "GET /users", Some("/users")),
                            span(2, "health_check", None),
                            span(3, "GET", Some("/metrics")),
                            span(4, "POST /orders", Some("/orders")),
                        ],
                    ),
                    scope_spans("probes", vec![span(5, "readiness_probe", None)]),
                    scope_spans("db", vec![span(6, "SELECT", None)]),
                ],
            ),
            resource_spans(
                "probe-only",
                vec![scope_spans("probes", vec![span(7, "health_check", None)])],
            ),
            resource_spans(
                "worker",
                vec![scope_spans("jobs", vec![span(8, "health_check_job", None)])],
            ),
        ],
    };
    let want = ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans(
                "api",
                vec![
                    scope_spans(
                        "http",
                        vec![
                            span(1, "GET /users", Some("/users")),
                            span(4, "POST /orders", Some("/orders")),
                        ],
                    ),
                    scope_spans("db", vec![span(6, "SELECT", None)]),
                ],
            ),
            resource_spans(
                "worker",
                vec![scope_spans("jobs", vec![span(8, "health_check_job", None)])],
            ),
        ],
    };
    (sent, want)
}

fn log(n: u8, severity: i32) -> LogRecord {
    LogRecord {
        time_unix_nano: n as u64,
        severity_number: severity,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!("log {n}"))),
        }),
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gauge(name: &str, points: u64) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: (0..points)
                .map(|i| NumberDataPoint {
                    time_unix_nano: i,
                    value: Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i as i64)),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

fn metrics(ms: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: ms,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn points(m: &ExportMetricsServiceRequest) -> usize {
    m.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            _ => 0,
        })
        .sum()
}

async fn send(p: &Ports, path: &str, msg: &[u8]) -> GrpcReply {
    let mut c = GrpcConn::connect(p.grpc_addr()).await;
    c.call(path, msg, false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_filter_drops_exactly_the_matching_items() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, backend.port, FILTER));

    let (sent, want) = traces();
    let r = send(&p, TRACES_PATH, &sent.encode_to_vec()).await;
    assert_eq!(r.code, 0, "{}", r.message);
    let sent_logs = logs(vec![
        log(1, 5),
        log(2, 9),
        log(3, 13),
        log(4, 17),
        log(5, 0),
        log(6, 21),
    ]);
    let want_logs = logs(vec![log(3, 13), log(4, 17), log(6, 21)]);
    let r = send(&p, LOGS_PATH, &sent_logs.encode_to_vec()).await;
    assert_eq!(r.code, 0, "{}", r.message);
    let sent_metrics = metrics(vec![
        gauge("go_gc_duration_seconds", 3),
        gauge("http_requests", 2),
        gauge("go_goroutines", 1),
        gauge("process_go", 1),
    ]);
    let want_metrics = metrics(vec![gauge("http_requests", 2), gauge("process_go", 1)]);
    let r = send(&p, METRICS_PATH, &sent_metrics.encode_to_vec()).await;
    assert_eq!(r.code, 0, "{}", r.message);
    // Untouched requests leave as they came.
    let untouched = metrics(vec![gauge("http_requests", 4)]);
    let r = send(&p, METRICS_PATH, &untouched.encode_to_vec()).await;
    assert_eq!(r.code, 0, "{}", r.message);

    let deadline = Duration::from_secs(30);
    assert!(
        backend
            .wait_for(deadline, |b| b.traces().len() == 1
                && b.logs().len() == 1
                && b.metrics().iter().map(points).sum::<usize>() == 7)
            .await,
        "not everything arrived"
    );
    let got = backend.traces().remove(0);
    assert_eq!(got.encode_to_vec(), want.encode_to_vec(), "traces: {got:#?}");
    let got = backend.logs().remove(0);
    assert_eq!(got.encode_to_vec(), want_logs.encode_to_vec(), "logs: {got:#?}");
    let mut got: Vec<Vec<u8>> = backend.metrics().iter().map(|m| m.encode_to_vec()).collect();
    got.sort();
    let mut want_m = vec![want_metrics.encode_to_vec(), untouched.encode_to_vec()];
    want_m.sort();
    if got.len() == 1 {
        // Both requests in one batch: their concatenation.
        let one: Vec<u8> = [want_metrics.encode_to_vec(), untouched.encode_to_vec()].concat();
        let other: Vec<u8> = [untouched.encode_to_vec(), want_metrics.encode_to_vec()].concat();
        assert!(got[0] == one || got[0] == other, "metrics: {:#?}", backend.metrics());
    } else {
        assert_eq!(got, want_m, "metrics: {:#?}", backend.metrics());
    }

    let samples = tokio::task::spawn_blocking(move || scrape_samples(p.metrics_addr()))
        .await
        .unwrap();
    let label = "filter=\"filter/ingest\"";
    assert_eq!(
        labelled(&samples, "otelcol_processor_filter_spans_filtered_total", &[label]),
        4.0
    );
    assert_eq!(
        labelled(&samples, "otelcol_processor_filter_logs_filtered_total", &[label]),
        3.0
    );
    assert_eq!(
        labelled(&samples, "otelcol_processor_filter_datapoints_filtered_total", &[label]),
        4.0
    );
    tokio::task::spawn_blocking(move || sluice.stop(Duration::from_secs(30)))
        .await
        .unwrap();
}

/// Spans recorded with the official OTel SDK and exported over OTLP/gRPC.
#[tokio::test(flavor = "multi_thread")]
async fn sdk_spans_are_filtered() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, backend.port, FILTER));
    let url = p.grpc_url();
    sdk_spans::record_spans(
        url,
        opentelemetry_sdk::Resource::builder().build(),
        "filter-test",
        |tracer| {
            for i in 0..30 {
                let name = match i % 3 {
                    0 => "health_check",
                    1 => "readiness_probe",
                    _ => "checkout",
                };
                let mut s = tracer.start(name);
                s.set_attribute(opentelemetry::KeyValue::new("i", i as i64));
                s.end();
            }
            let mut s = tracer.start("scrape");
            s.set_attribute(opentelemetry::KeyValue::new("http.route", "/metrics"));
            s.end();
        },
    );
    assert!(
        backend
            .wait_for(Duration::from_secs(30), |b| b.spans().len() >= 10)
            .await
    );
    tokio::task::spawn_blocking(move || sluice.stop(Duration::from_secs(30)))
        .await
        .unwrap();
    let names: Vec<String> = backend.spans().into_iter().map(|s| s.2).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert!(names.iter().all(|n| n == "checkout"), "{names:?}");
}

/// `error_mode`: a condition that fails (`Len` of an int) keeps the item
/// under `ignore` and refuses the request under `propagate`.
#[tokio::test(flavor = "multi_thread")]
async fn error_modes() {
    for (mode, refused) in [("ignore", false), ("silent", false), ("propagate", true)] {
        let backend = Backend::start_new().await;
        let p = Ports::new();
        let filter = format!(
            "
  filter/ingest:
    error_mode: {mode}
    traces:
      span: ['Len(kind) > 1', 'name == \"drop\"']
"
        );
        let mut sluice = Sluice::start(&config(&p, backend.port, &filter));
        let req = ExportTraceServiceRequest {
            resource_spans: vec![resource_spans(
                "s",
                vec![scope_spans("x", vec![span(1, "keep", None), span(2, "drop", None)])],
            )],
        };
        let r = send(&p, TRACES_PATH, &req.encode_to_vec()).await;
        if refused {
            assert_eq!(
                r.code, 3,
                "{mode}: INVALID_ARGUMENT expected, got {} {}",
                r.code, r.message
            );
            assert!(r.message.contains("Len()"), "{}", r.message);
        } else {
            assert_eq!(r.code, 0, "{mode}: {}", r.message);
            assert!(
                backend
                    .wait_for(Duration::from_secs(30), |b| !b.spans().is_empty())
                    .await
            );
            let names: Vec<String> = backend.spans().into_iter().map(|s| s.2).collect();
            assert_eq!(names, ["keep"], "{mode}");
        }
        let logged = sluice.stderr_text().contains("filter condition failed");
        assert_eq!(logged, mode == "ignore", "{mode}: log\n{}", sluice.stderr_text());
        tokio::task::spawn_blocking(move || sluice.stop(Duration::from_secs(30)))
            .await
            .unwrap();
    }
}

#[test]
fn config_errors_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    // The condition starts at column 12 of line 10 (`        - '`).
    for (condition, want, column) in [
        (r#"'name = "x"'"#, "`=` is not an operator here", 17),
        (r#"'IsMatch(name, "(unclosed")'"#, "invalid regular expression", 26),
        (
            r#"'severity_number > 3'"#,
            "unknown path `severity_number` in the span context",
            12,
        ),
        (
            r#"'Substring(name, 0, 2) == "ab"'"#,
            "unsupported function `Substring`",
            12,
        ),
    ] {
        let yaml = format!(
            "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:4317}}
processors:
  filter:
    traces:
      span:
        - 'name == \"ok\"'
        - {condition}
exporters:
  nop:
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [filter], exporters: [nop]}}
"
        );
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = sluice_cmd(&["validate", "--config", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{condition} validated");
        assert!(err.contains("processors.filter.traces.span[1]"), "{err}");
        assert!(err.contains(&format!("(line 10, column {column})")), "{err}");
        assert!(err.contains(want), "{condition}: {err}");
    }
}
