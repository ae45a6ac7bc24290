//! End to end forwarding: OTLP clients (the official opentelemetry-otlp Rust
//! exporter and raw requests) → sluice (batch → otlp / otlphttp exporter) →
//! a recording backend; what arrives must be exactly what was sent.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry::{
    logs::{AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity},
    metrics::MeterProvider as _,
    trace::{Span as _, Tracer as _, TracerProvider as _},
    KeyValue as OtelKv,
};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_sdk::{
    logs::SdkLoggerProvider, metrics::PeriodicReader, metrics::SdkMeterProvider, trace::SdkTracerProvider, Resource,
};

const TUNING: &str = "{shards: 1, shutdown_timeout: 10s}";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Transport {
    Grpc,
    HttpProtobuf,
}

const SPANS: u64 = 57;
const LOGS: u64 = 23;
/// counter: 3 attribute sets, gauge: 2, histogram: 1.
const POINTS: u64 = 6;

/// Emits SPANS spans, POINTS metric points and LOGS log records through the
/// SDK + OTLP exporter over `transport`, from a plain thread (the SDK's batch
/// processors block on their own threads), then shuts the providers down.
fn sdk_emit(transport: Transport, p: Ports) {
    std::thread::spawn(move || {
        // The tonic exporter needs a tokio runtime around when it is built.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let resource = Resource::builder().with_service_name("sdk-test").build();
        let http_base = format!("http://127.0.0.1:{}", p.http);
        let client = || {
            std::thread::spawn(|| {
                reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap()
            })
            .join()
            .unwrap()
        };

        let span_exporter = match transport {
            Transport::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(p.grpc_url())
                .build(),
            Transport::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{http_base}/v1/traces"))
                .build(),
        }
        .expect("span exporter");
        let tp = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(span_exporter)
            .build();
        let tracer = tp.tracer("forward-test");
        for i in 0..SPANS {
            let mut span = tracer.start(format!("op-{i}"));
            span.set_attribute(OtelKv::new("test.index", i as i64));
            span.set_attribute(OtelKv::new("test.name", format!("name-{i}")));
            span.set_attribute(OtelKv::new("test.flag", i % 2 == 0));
            span.set_attribute(OtelKv::new("test.ratio", i as f64 / 4.0));
            span.add_event("evt", vec![OtelKv::new("e", 1i64)]);
            span.end();
        }
        tp.shutdown().expect("tracer provider shutdown");

        let metric_exporter = match transport {
            Transport::Grpc => opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(p.grpc_url())
                .build(),
            Transport::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(client())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{http_base}/v1/metrics"))
                .build(),
        }
        .expect("metric exporter");
        // A long interval: the only export is the final one at shutdown.
        let reader = PeriodicReader::builder(metric_exporter)
            .with_interval(Duration::from_secs(3600))
            .build();
        let mp = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_reader(reader)
            .build();
        let meter = mp.meter("forward-test");
        let counter = meter.u64_counter("requests").build();
        for k in 0..3 {
            counter.add(k + 1, &[OtelKv::new("route", format!("/r{k}"))]);
            counter.add(10, &[OtelKv::new("route", format!("/r{k}"))]);
        }
        let gauge = meter.f64_gauge("temperature").build();
        gauge.record(21.5, &[OtelKv::new("room", "a")]);
        gauge.record(19.0, &[OtelKv::new("room", "b")]);
        let hist = meter.f64_histogram("latency").build();
        for v in [1.0, 5.0, 50.0, 500.0] {
            hist.record(v, &[OtelKv::new("op", "get")]);
        }
        mp.shutdown().expect("meter provider shutdown");

        let log_exporter = match transport {
            Transport::Grpc => opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(p.grpc_url())
                .build(),
            Transport::HttpProtobuf => opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_http_client(client())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{http_base}/v1/logs"))
                .build(),
        }
        .expect("log exporter");
        let lp = SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(log_exporter)
            .build();
        let logger = lp.logger("forward-test");
        for i in 0..LOGS {
            let mut rec = logger.create_log_record();
            rec.set_severity_number(Severity::Warn);
            rec.set_severity_text("WARN");
            rec.set_body(LogValue::String(format!("log message {i}").into()));
            rec.add_attribute("log.index", i as i64);
            rec.add_attribute("log.kind", "test");
            logger.emit(rec);
        }
        lp.shutdown().expect("logger provider shutdown");
        drop(_guard);
        rt.shutdown_timeout(Duration::from_secs(2));
    })
    .join()
    .expect("SDK client thread panicked");
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

async fn sdk_roundtrip(transport: Transport) {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&forward_config(&p, backend.port, TUNING));

    tokio::task::spawn_blocking(move || sdk_emit(transport, p))
        .await
        .unwrap();
    backend
        .expect_counts(SPANS, POINTS, LOGS, Duration::from_secs(15))
        .await;

    // Spans: every name once, attributes intact.
    let spans = backend.spans();
    let mut names: Vec<String> = spans.iter().map(|s| s.2.clone()).collect();
    names.sort();
    let mut want: Vec<String> = (0..SPANS).map(|i| format!("op-{i}")).collect();
    want.sort();
    assert_eq!(names, want);
    for (tid, sid, name, attrs) in &spans {
        assert_eq!(tid.len(), 16);
        assert_eq!(sid.len(), 8);
        let i: i64 = name.strip_prefix("op-").unwrap().parse().unwrap();
        assert_eq!(
            attr(attrs, "test.index"),
            Some(&any_value::Value::IntValue(i)),
            "{name}"
        );
        assert_eq!(
            attr(attrs, "test.name"),
            Some(&any_value::Value::StringValue(format!("name-{i}")))
        );
        assert_eq!(attr(attrs, "test.flag"), Some(&any_value::Value::BoolValue(i % 2 == 0)));
        assert_eq!(
            attr(attrs, "test.ratio"),
            Some(&any_value::Value::DoubleValue(i as f64 / 4.0))
        );
    }
    let service = backend.traces()[0].resource_spans[0].resource.clone().unwrap();
    assert_eq!(
        attr(&service.attributes, "service.name"),
        Some(&any_value::Value::StringValue("sdk-test".into()))
    );

    // Metrics: names and values.
    let metrics = backend.metrics();
    let all: Vec<_> = metrics
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .collect();
    let names: std::collections::BTreeSet<&str> = all.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["latency", "requests", "temperature"].into_iter().collect());
    let requests = all.iter().find(|m| m.name == "requests").unwrap();
    match &requests.data {
        Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) => {
            let mut vals: Vec<(String, i64)> = s
                .data_points
                .iter()
                .map(|dp| {
                    let route = match attr(&dp.attributes, "route") {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        other => panic!("route attribute {other:?}"),
                    };
                    let v = match dp.value {
                        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) => v,
                        other => panic!("counter value {other:?}"),
                    };
                    (route, v)
                })
                .collect();
            vals.sort();
            assert_eq!(vals, vec![("/r0".into(), 11), ("/r1".into(), 12), ("/r2".into(), 13)]);
        }
        other => panic!("requests is not a sum: {other:?}"),
    }
    let latency = all.iter().find(|m| m.name == "latency").unwrap();
    match &latency.data {
        Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Histogram(h)) => {
            assert_eq!(h.data_points[0].count, 4);
            assert_eq!(h.data_points[0].sum, Some(556.0));
        }
        other => panic!("latency is not a histogram: {other:?}"),
    }

    // Logs.
    let logs = backend.logs();
    let mut idx: Vec<i64> = Vec::new();
    for r in logs
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
    {
        let i = match attr(&r.attributes, "log.index") {
            Some(any_value::Value::IntValue(i)) => *i,
            other => panic!("log.index {other:?}"),
        };
        assert_eq!(r.severity_number, 13, "WARN");
        assert_eq!(r.severity_text, "WARN");
        assert_eq!(
            r.body.as_ref().and_then(|b| b.value.clone()),
            Some(any_value::Value::StringValue(format!("log message {i}")))
        );
        assert_eq!(
            attr(&r.attributes, "log.kind"),
            Some(&any_value::Value::StringValue("test".into()))
        );
        idx.push(i);
    }
    idx.sort();
    assert_eq!(idx, (0..LOGS as i64).collect::<Vec<_>>());

    // Self-telemetry agrees.
    let m = scrape(p.metrics_addr());
    assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total"), SPANS as f64);
    assert_eq!(
        metric(&m, "otelcol_receiver_accepted_metric_points_total"),
        POINTS as f64
    );
    assert_eq!(metric(&m, "otelcol_receiver_accepted_log_records_total"), LOGS as f64);
    let samples = scrape_samples(p.metrics_addr());
    let transport_label = match transport {
        Transport::Grpc => "transport=\"grpc\"",
        Transport::HttpProtobuf => "transport=\"http\"",
    };
    assert_eq!(
        labelled(&samples, "otelcol_receiver_accepted_spans_total", &[transport_label]),
        SPANS as f64
    );
    assert_eq!(
        labelled(&samples, "otelcol_exporter_sent_spans_total", &["exporter=\"otlp\""]),
        SPANS as f64
    );
    assert_eq!(metric(&m, "otelcol_exporter_sent_log_records_total"), LOGS as f64);
    assert_eq!(metric(&m, "otelcol_exporter_send_failed_spans_total"), 0.0);

    sluice.stop(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_grpc_exporter_forwarded_to_otlp_backend() {
    sdk_roundtrip(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_http_protobuf_exporter_forwarded_to_otlp_backend() {
    sdk_roundtrip(Transport::HttpProtobuf).await;
}

/// Sends `reqs` requests per signal of several resources each (alternating
/// gRPC and HTTP/protobuf), returns what was sent.
async fn send_mixed(
    p: &Ports,
    reqs: u64,
    seed0: u64,
) -> (
    Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    Vec<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>,
    Vec<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest>,
) {
    use prost::Message;
    let mut c = OtlpClients::connect(p).await;
    let addr = p.http_addr();
    let (mut t, mut m, mut l) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..reqs {
        let seed = seed0 + i;
        let tr = traces_request(1 + i % 5, 1 + i % 4, seed);
        let mr = metrics_request(1 + i % 3, 1 + i % 2, seed);
        let lr = logs_request(1 + i % 4, 1 + i % 5, seed);
        if i % 2 == 0 {
            c.traces.export(tr.clone()).await.expect("traces export");
            c.metrics.export(mr.clone()).await.expect("metrics export");
            c.logs.export(lr.clone()).await.expect("logs export");
        } else {
            let (tb, mb, lb) = (tr.encode_to_vec(), mr.encode_to_vec(), lr.encode_to_vec());
            tokio::task::spawn_blocking(move || {
                let mut h = HttpConn::connect(addr);
                for (path, body) in [("/v1/traces", tb), ("/v1/metrics", mb), ("/v1/logs", lb)] {
                    let r = h.post(path, "application/x-protobuf", None, &body);
                    assert_eq!(r.status, 200, "{path}: {}", r.text());
                }
            })
            .await
            .unwrap();
        }
        t.push(tr);
        m.push(mr);
        l.push(lr);
    }
    (t, m, l)
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_requests_arrive_equal_as_multisets() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&forward_config(&p, backend.port, "{shards: 2, shutdown_timeout: 10s}"));
    let (t, m, l) = send_mixed(&p, 40, 1000).await;
    let spans: u64 = t.iter().map(count_spans).sum();
    let points: u64 = m.iter().map(count_points).sum();
    let logs: u64 = l.iter().map(count_logs).sum();
    backend
        .expect_counts(spans, points, logs, Duration::from_secs(15))
        .await;
    assert!(
        resource_spans_multiset(&backend.traces()) == resource_spans_multiset(&t),
        "traces differ"
    );
    assert!(
        resource_metrics_multiset(&backend.metrics()) == resource_metrics_multiset(&m),
        "metrics differ"
    );
    assert!(
        resource_logs_multiset(&backend.logs()) == resource_logs_multiset(&l),
        "logs differ"
    );
    // Batching: fewer exports than requests received (40 per signal, 200 ms batches).
    assert!(
        backend.traces().len() < 40,
        "no batching happened: {} trace exports",
        backend.traces().len()
    );
    sluice.stop(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn otlphttp_exporter_to_http_backend() {
    let backend = HttpBackend::start_new().await;
    let p = Ports::new();
    let cfg = config_yaml(
        &p,
        "",
        "",
        &format!("  otlphttp: {{endpoint: {}}}", backend.url()),
        "[otlphttp]",
        "{shards: 1, shutdown_timeout: 10s}",
    );
    let mut sluice = Sluice::start(&cfg);
    let (t, m, l) = send_mixed(&p, 12, 5000).await;
    let spans: u64 = t.iter().map(count_spans).sum();
    let points: u64 = m.iter().map(count_points).sum();
    let logs: u64 = l.iter().map(count_logs).sum();
    backend
        .expect_counts(spans, points, logs, Duration::from_secs(15))
        .await;
    assert!(
        resource_spans_multiset(&backend.traces()) == resource_spans_multiset(&t),
        "traces differ"
    );
    assert!(
        resource_metrics_multiset(&backend.metrics()) == resource_metrics_multiset(&m),
        "metrics differ"
    );
    assert!(
        resource_logs_multiset(&backend.logs()) == resource_logs_multiset(&l),
        "logs differ"
    );
    let samples = scrape_samples(p.metrics_addr());
    assert_eq!(
        labelled(
            &samples,
            "otelcol_exporter_sent_spans_total",
            &["exporter=\"otlphttp\""]
        ),
        spans as f64
    );
    sluice.stop(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_outage_then_recovery_delivers_everything() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&forward_config(&p, backend.port, TUNING));
    backend.stop().await;
    let mut c = OtlpClients::connect(&p).await;
    let mut sent = Vec::new();
    for seed in 0..5 {
        let r = traces_request(2, 3, 70_000 + seed);
        c.traces.export(r.clone()).await.expect("export while backend down");
        sent.push(r);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(backend.span_count(), 0);
    backend.start().await;
    backend.expect_counts(30, 0, 0, Duration::from_secs(20)).await;
    assert!(resource_spans_multiset(&backend.traces()) == resource_spans_multiset(&sent));
    sluice.stop(Duration::from_secs(15));
}
