//! The `resource`, `attributes` and `resourcedetection` processors through
//! the real binary: every action on resources and on span / log record / data
//! point attributes, from gRPC protobuf and from HTTP/JSON input;
//! `include` / `exclude`; detected `host.name` and `OTEL_RESOURCE_ATTRIBUTES`
//! values; untouched requests, resources and items arrive byte-identical;
//! config errors name line and column.
//!
//! The expected results are written out by hand here (values, order, the
//! SHA-256 of the hashed strings), not computed by sluice's code.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    common::v1::{any_value::Value as V, AnyValue, InstrumentationScope, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use prost::Message;
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(30);

/// A config with `processors` (YAML under `processors:`) and the chain of
/// processor ids per signal; no batch processor, so each request is
/// exported on its own.
fn config(p: &Ports, backend: u16, processors: &str, traces: &str, metrics: &str, logs: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
processors:
{processors}
exporters:
  otlp: {{endpoint: 127.0.0.1:{backend}, tls: {{insecure: true}}, compression: none}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{mport}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [{traces}], exporters: [otlp]}}
    metrics: {{receivers: [otlp], processors: [{metrics}], exporters: [otlp]}}
    logs: {{receivers: [otlp], processors: [{logs}], exporters: [otlp]}}
tuning: {{shards: 2}}
",
        grpc = p.grpc,
        http = p.http,
        mport = p.metrics,
    )
}

fn kv(k: &str, v: V) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

fn s(v: &str) -> V {
    V::StringValue(v.into())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn resource(attrs: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes: attrs,
        ..Default::default()
    })
}

fn span(n: u8, name: &str, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 2_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn traces(resources: Vec<(Vec<KeyValue>, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: resources
            .into_iter()
            .map(|(r, spans)| ResourceSpans {
                resource: resource(r),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "http".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn logs(r: Vec<KeyValue>, attrs: Vec<KeyValue>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(r),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 5,
                    severity_number: 9,
                    body: Some(AnyValue {
                        value: Some(s("hello")),
                    }),
                    attributes: attrs,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics(r: Vec<KeyValue>, name: &str, attrs: Vec<KeyValue>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(r),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 9,
                            value: Some(number_data_point::Value::AsInt(3)),
                            attributes: attrs,
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn grpc(p: &Ports, path: &str, msg: &[u8]) {
    let mut c = GrpcConn::connect(p.grpc_addr()).await;
    let r = c.call(path, msg, false).await;
    assert_eq!(r.code, 0, "{}", r.message);
}

async fn post_json(p: &Ports, path: &'static str, json: String) {
    let addr = p.http_addr();
    let r = tokio::task::spawn_blocking(move || {
        HttpConn::connect(addr).post(path, "application/json", None, json.as_bytes())
    })
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

fn json_str(k: &str, v: &str) -> String {
    format!(r#"{{"key":"{k}","value":{{"stringValue":"{v}"}}}}"#)
}

// ---------------------------------------------------------------- resource

const RESOURCE: &str = "
  resource:
    attributes:
      - {key: deployment.environment, value: prod, action: insert}
      - {key: region, value: eu, action: update}
      - {key: absent, value: x, action: update}
      - {key: team, value: core, action: upsert}
      - {key: cloud.zone, value: 7, action: upsert}
      - {key: service.namespace, from_attribute: k8s.ns, action: insert}
      - {key: nothing, from_attribute: missing, action: upsert}
      - {key: secret, action: delete}
      - {key: user, action: hash}
      - {key: port, action: convert, converted_type: int}
";

/// The resource sent (as protobuf and as JSON) and what must arrive.
fn resource_case() -> (Vec<KeyValue>, String, Vec<KeyValue>) {
    let sent = vec![
        kv("service.name", s("api")),
        kv("region", s("us")),
        kv("secret", s("hunter2")),
        kv("user", s("alice")),
        kv("port", s("8080")),
        kv("k8s.ns", s("shop")),
        kv("deployment.environment", s("dev")),
    ];
    let json = [
        json_str("service.name", "api"),
        json_str("region", "us"),
        json_str("secret", "hunter2"),
        json_str("user", "alice"),
        json_str("port", "8080"),
        json_str("k8s.ns", "shop"),
        json_str("deployment.environment", "dev"),
    ]
    .join(",");
    let want = vec![
        kv("service.name", s("api")),
        kv("region", s("eu")),
        kv("user", s(&sha256_hex(b"alice"))),
        kv("port", V::IntValue(8080)),
        kv("k8s.ns", s("shop")),
        kv("deployment.environment", s("dev")), // insert: present, kept
        kv("team", s("core")),
        kv("cloud.zone", V::IntValue(7)),
        kv("service.namespace", s("shop")),
    ];
    (sent, json, want)
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_actions_on_every_signal_from_grpc_and_json() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, backend.port, RESOURCE, "resource", "resource", "resource"));
    let (sent, json_attrs, want) = resource_case();
    let spans = vec![span(1, "GET /a", vec![kv("k", s("v"))]), span(2, "GET /b", vec![])];
    let req = traces(vec![(sent.clone(), spans.clone())]);
    grpc(&p, TRACES_PATH, &req.encode_to_vec()).await;
    assert!(backend.wait_for(WAIT, |b| b.traces().len() == 1).await);
    let mut want_req = req.clone();
    want_req.resource_spans[0].resource = resource(want.clone());
    assert_eq!(backend.traces()[0], want_req);
    // Scopes and spans arrive as they were sent.
    assert_eq!(
        backend.traces()[0].resource_spans[0].scope_spans[0].encode_to_vec(),
        req.resource_spans[0].scope_spans[0].encode_to_vec()
    );

    // The same request as OTLP/JSON.
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{json_attrs}]}},"scopeSpans":[{{"scope":{{"name":"http"}},"spans":[
{{"traceId":"01010101010101010101010101010101","spanId":"0101010101010101","name":"GET /a","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"2000","attributes":[{k}]}},
{{"traceId":"02020202020202020202020202020202","spanId":"0202020202020202","name":"GET /b","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"2000"}}]}}]}}]}}"#,
        k = json_str("k", "v")
    );
    post_json(&p, "/v1/traces", json).await;
    assert!(backend.wait_for(WAIT, |b| b.traces().len() == 2).await);
    assert_eq!(backend.traces()[1], want_req, "from JSON");

    // Metrics and logs: the same edit of their resources.
    let m = metrics(sent.clone(), "m", vec![]);
    grpc(&p, METRICS_PATH, &m.encode_to_vec()).await;
    let l = logs(sent.clone(), vec![]);
    grpc(&p, LOGS_PATH, &l.encode_to_vec()).await;
    assert!(
        backend
            .wait_for(WAIT, |b| b.metrics().len() == 1 && b.logs().len() == 1)
            .await
    );
    let mut want_m = m.clone();
    want_m.resource_metrics[0].resource = resource(want.clone());
    assert_eq!(backend.metrics()[0], want_m);
    let mut want_l = l.clone();
    want_l.resource_logs[0].resource = resource(want.clone());
    assert_eq!(backend.logs()[0], want_l);

    // A resource entry without a resource gets one from the inserts.
    let bare = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: req.resource_spans[0].scope_spans.clone(),
            ..Default::default()
        }],
    };
    grpc(&p, TRACES_PATH, &bare.encode_to_vec()).await;
    assert!(backend.wait_for(WAIT, |b| b.traces().len() == 3).await);
    let got = &backend.traces()[2].resource_spans[0];
    assert_eq!(
        got.resource.as_ref().unwrap().attributes,
        vec![
            kv("deployment.environment", s("prod")),
            kv("team", s("core")),
            kv("cloud.zone", V::IntValue(7)),
        ]
    );
    tokio::task::spawn_blocking(move || sluice.stop(WAIT)).await.unwrap();
}

// -------------------------------------------------------------- attributes

const ATTRIBUTES: &str = r#"
  attributes:
    actions:
      - {key: env, value: prod, action: insert}
      - {key: http.method, value: GET, action: update}
      - {key: absent, value: x, action: update}
      - {key: tier, value: 2, action: upsert}
      - {key: weight, value: 0.5, action: upsert}
      - {key: sampled, value: true, action: insert}
      - {key: copy, from_attribute: user, action: insert}
      - {key: user, action: hash}
      - {key: drop.me, action: delete}
      - {pattern: ^secret\., action: delete}
      - {key: code, action: convert, converted_type: int}
      - {key: ratio, action: convert, converted_type: string}
      - {key: count, action: convert, converted_type: double}
      - {key: bad, action: convert, converted_type: int}
    include:
      match_type: strict
      services: [api]
    exclude:
      match_type: regexp
      span_names: ["^health"]
"#;

fn item_attrs() -> Vec<KeyValue> {
    vec![
        kv("http.method", s("POST")),
        kv("user", s("bob")),
        kv("drop.me", V::IntValue(1)),
        kv("secret.a", s("x")),
        kv("code", s("404")),
        kv("secret.b", s("y")),
        kv("ratio", V::DoubleValue(0.25)),
        kv("count", V::IntValue(3)),
        kv("bad", s("x1")),
        kv("env", s("dev")),
    ]
}

fn item_attrs_json() -> String {
    [
        json_str("http.method", "POST"),
        json_str("user", "bob"),
        r#"{"key":"drop.me","value":{"intValue":"1"}}"#.to_string(),
        json_str("secret.a", "x"),
        json_str("code", "404"),
        json_str("secret.b", "y"),
        r#"{"key":"ratio","value":{"doubleValue":0.25}}"#.to_string(),
        r#"{"key":"count","value":{"intValue":3}}"#.to_string(),
        json_str("bad", "x1"),
        json_str("env", "dev"),
    ]
    .join(",")
}

fn item_attrs_after() -> Vec<KeyValue> {
    vec![
        kv("http.method", s("GET")),
        kv("user", s(&sha256_hex(b"bob"))),
        kv("code", V::IntValue(404)),
        kv("ratio", s("0.25")),
        kv("count", V::DoubleValue(3.0)),
        kv("bad", s("x1")),
        kv("env", s("dev")),
        kv("tier", V::IntValue(2)),
        kv("weight", V::DoubleValue(0.5)),
        kv("sampled", V::BoolValue(true)),
        kv("copy", s("bob")),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn attribute_actions_with_include_and_exclude() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(
        &p,
        backend.port,
        ATTRIBUTES,
        "attributes",
        "attributes",
        "attributes",
    ));
    let api = vec![kv("service.name", s("api"))];
    let other = vec![kv("service.name", s("other"))];
    let req = traces(vec![
        (
            api.clone(),
            vec![span(1, "GET /x", item_attrs()), span(2, "health_check", item_attrs())],
        ),
        (other.clone(), vec![span(3, "GET /y", item_attrs())]),
    ]);
    grpc(&p, TRACES_PATH, &req.encode_to_vec()).await;
    assert!(backend.wait_for(WAIT, |b| b.traces().len() == 1).await);
    let got = backend.traces().remove(0);
    let mut want = req.clone();
    want.resource_spans[0].scope_spans[0].spans[0].attributes = item_attrs_after();
    assert_eq!(got, want);
    // The excluded span and the resource of another service arrive as sent.
    assert_eq!(
        got.resource_spans[0].scope_spans[0].spans[1].encode_to_vec(),
        req.resource_spans[0].scope_spans[0].spans[1].encode_to_vec()
    );
    assert_eq!(
        got.resource_spans[1].encode_to_vec(),
        req.resource_spans[1].encode_to_vec()
    );

    // The same span as OTLP/JSON.
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{svc}]}},"scopeSpans":[{{"scope":{{"name":"http"}},"spans":[
{{"traceId":"01010101010101010101010101010101","spanId":"0101010101010101","name":"GET /x","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"2000","attributes":[{attrs}]}}]}}]}}]}}"#,
        svc = json_str("service.name", "api"),
        attrs = item_attrs_json()
    );
    post_json(&p, "/v1/traces", json).await;
    assert!(backend.wait_for(WAIT, |b| b.traces().len() == 2).await);
    let want_json = traces(vec![(api.clone(), vec![span(1, "GET /x", item_attrs_after())])]);
    assert_eq!(backend.traces()[1], want_json, "from JSON");

    // Log records and data points of the service.
    let l = logs(api.clone(), item_attrs());
    grpc(&p, LOGS_PATH, &l.encode_to_vec()).await;
    let m = metrics(api.clone(), "m", item_attrs());
    grpc(&p, METRICS_PATH, &m.encode_to_vec()).await;
    assert!(
        backend
            .wait_for(WAIT, |b| b.logs().len() == 1 && b.metrics().len() == 1)
            .await
    );
    let mut want_l = l.clone();
    want_l.resource_logs[0].scope_logs[0].log_records[0].attributes = item_attrs_after();
    assert_eq!(backend.logs()[0], want_l);
    let mut want_m = m.clone();
    if let Some(metric::Data::Gauge(g)) = &mut want_m.resource_metrics[0].scope_metrics[0].metrics[0].data {
        g.data_points[0].attributes = item_attrs_after();
    }
    assert_eq!(backend.metrics()[0], want_m);

    // A request nothing matches arrives byte-identical.
    let untouched = traces(vec![(other.clone(), vec![span(4, "GET /z", item_attrs())])]);
    grpc(&p, TRACES_PATH, &untouched.encode_to_vec()).await;
    assert!(backend.wait_for(WAIT, |b| b.traces().len() == 3).await);
    assert_eq!(backend.traces()[2].encode_to_vec(), untouched.encode_to_vec());
    tokio::task::spawn_blocking(move || sluice.stop(WAIT)).await.unwrap();
}

/// `include` with `match_type: regexp` over span names and attribute
/// values, `log_bodies` and `metric_names`.
#[tokio::test(flavor = "multi_thread")]
async fn include_by_regexp_names_bodies_and_attributes() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let processors = r#"
  attributes/spans:
    actions: [{key: seen, value: v1, action: upsert}]
    include:
      match_type: regexp
      span_names: ["^GET "]
      attributes: [{key: tenant, value: "^a"}, {key: region}]
  attributes/logs:
    actions: [{key: seen, value: v1, action: upsert}]
    include: {match_type: strict, log_bodies: [hello]}
  attributes/metrics:
    actions: [{key: seen, value: v1, action: upsert}]
    include: {match_type: regexp, metric_names: ["^http_"]}
"#;
    let mut sluice = Sluice::start(&config(
        &p,
        backend.port,
        processors,
        "attributes/spans",
        "attributes/metrics",
        "attributes/logs",
    ));
    let both = vec![kv("tenant", s("acme")), kv("region", s("eu"))];
    let req = traces(vec![(
        vec![],
        vec![
            span(1, "GET /a", both.clone()),
            span(2, "POST /a", both.clone()),
            span(3, "GET /b", vec![kv("tenant", s("bcme")), kv("region", s("eu"))]),
            span(4, "GET /c", vec![kv("tenant", s("acme"))]),
        ],
    )]);
    grpc(&p, TRACES_PATH, &req.encode_to_vec()).await;
    let l = logs(vec![], vec![]);
    grpc(&p, LOGS_PATH, &l.encode_to_vec()).await;
    let mut l2 = logs(vec![], vec![]);
    l2.resource_logs[0].scope_logs[0].log_records[0].body = Some(AnyValue { value: Some(s("bye")) });
    grpc(&p, LOGS_PATH, &l2.encode_to_vec()).await;
    let m = metrics(vec![], "http_requests", vec![]);
    grpc(&p, METRICS_PATH, &m.encode_to_vec()).await;
    let m2 = metrics(vec![], "go_gc", vec![]);
    grpc(&p, METRICS_PATH, &m2.encode_to_vec()).await;
    assert!(
        backend
            .wait_for(WAIT, |b| b.traces().len() == 1
                && b.logs().len() == 2
                && b.metrics().len() == 2)
            .await
    );
    let seen = kv("seen", s("v1"));
    let names: Vec<(String, bool)> = backend
        .spans()
        .into_iter()
        .map(|sp| (sp.2, sp.3.contains(&seen)))
        .collect();
    assert_eq!(
        names,
        [
            ("GET /a".to_string(), true),
            ("POST /a".to_string(), false),
            ("GET /b".to_string(), false),
            ("GET /c".to_string(), false),
        ]
    );
    let log_seen: Vec<bool> = backend
        .logs()
        .iter()
        .map(|r| {
            r.resource_logs[0].scope_logs[0].log_records[0]
                .attributes
                .contains(&seen)
        })
        .collect();
    let bodies: Vec<String> = backend
        .logs()
        .iter()
        .map(|r| format!("{:?}", r.resource_logs[0].scope_logs[0].log_records[0].body))
        .collect();
    for (seen_it, body) in log_seen.iter().zip(&bodies) {
        assert_eq!(*seen_it, body.contains("hello"), "{body}");
    }
    for got in backend.metrics() {
        let m = &got.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(metric::Data::Gauge(g)) = &m.data else {
            panic!()
        };
        assert_eq!(
            g.data_points[0].attributes.contains(&seen),
            m.name == "http_requests",
            "{}",
            m.name
        );
    }
    tokio::task::spawn_blocking(move || sluice.stop(WAIT)).await.unwrap();
}

// ------------------------------------------------------- resourcedetection

#[tokio::test(flavor = "multi_thread")]
async fn resourcedetection_adds_host_and_env_attributes() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let processors = "
  resourcedetection:
    detectors: [env, system]
    system:
      hostname_sources: [os]
      resource_attributes:
        host.arch: {enabled: true}
  resourcedetection/keep:
    detectors: [env, system]
    override: false
";
    let mut sluice = Sluice::start_with_env(
        &config(
            &p,
            backend.port,
            processors,
            "resourcedetection",
            "resourcedetection",
            "resourcedetection/keep",
        ),
        &[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=staging, team=a%2Cb+c",
        )],
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let arch = if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        std::env::consts::ARCH
    };
    let sent = vec![kv("service.name", s("api")), kv("deployment.environment", s("dev"))];
    let req = traces(vec![(sent.clone(), vec![span(1, "x", vec![])])]);
    grpc(&p, TRACES_PATH, &req.encode_to_vec()).await;
    let l = logs(sent.clone(), vec![]);
    grpc(&p, LOGS_PATH, &l.encode_to_vec()).await;
    assert!(
        backend
            .wait_for(WAIT, |b| b.traces().len() == 1 && b.logs().len() == 1)
            .await
    );
    // override: true — detected values win; env before system.
    assert_eq!(
        backend.traces()[0].resource_spans[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes,
        vec![
            kv("service.name", s("api")),
            kv("deployment.environment", s("staging")),
            kv("team", s("a,b c")),
            kv("host.name", s(&host)),
            kv("os.type", s("linux")),
            kv("host.arch", s(arch)),
        ]
    );
    // override: false — received values win; host.arch is off by default.
    assert_eq!(
        backend.logs()[0].resource_logs[0].resource.as_ref().unwrap().attributes,
        vec![
            kv("service.name", s("api")),
            kv("deployment.environment", s("dev")),
            kv("team", s("a,b c")),
            kv("host.name", s(&host)),
            kv("os.type", s("linux")),
        ]
    );
    // Spans are untouched.
    assert_eq!(
        backend.traces()[0].resource_spans[0].scope_spans[0].encode_to_vec(),
        req.resource_spans[0].scope_spans[0].encode_to_vec()
    );
    // A resource that already carries the detected values arrives
    // byte-identical.
    let detected = vec![
        kv("host.arch", s(arch)),
        kv("deployment.environment", s("staging")),
        kv("team", s("a,b c")),
        kv("host.name", s(&host)),
        kv("os.type", s("linux")),
    ];
    let same = traces(vec![(detected, vec![span(2, "y", vec![])])]);
    grpc(&p, TRACES_PATH, &same.encode_to_vec()).await;
    assert!(backend.wait_for(WAIT, |b| b.traces().len() == 2).await);
    assert_eq!(backend.traces()[1].encode_to_vec(), same.encode_to_vec());
    tokio::task::spawn_blocking(move || sluice.stop(WAIT)).await.unwrap();
}

// ---------------------------------------------------------------- SDK

/// Spans recorded with the official OTel SDK and exported over OTLP/gRPC
/// through `[resource, attributes]`.
#[tokio::test(flavor = "multi_thread")]
async fn sdk_spans_are_enriched() {
    use opentelemetry::trace::{Span as _, Tracer as _};
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let processors = "
  resource:
    attributes:
      - {key: deployment.environment, value: prod, action: upsert}
  attributes:
    actions:
      - {key: user, action: hash}
      - {key: tier, value: gold, action: insert}
";
    let mut sluice = Sluice::start(&config(
        &p,
        backend.port,
        processors,
        "resource, attributes",
        "resource",
        "resource",
    ));
    let url = p.grpc_url();
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_attributes([opentelemetry::KeyValue::new("service.name", "shop")])
        .build();
    sdk_spans::record_spans(url, resource, "enrichment-test", |tracer| {
        for i in 0..5 {
            let mut sp = tracer.start(format!("op{i}"));
            sp.set_attribute(opentelemetry::KeyValue::new("user", "carol"));
            sp.end();
        }
    });
    assert!(backend.wait_for(WAIT, |b| b.spans().len() >= 5).await);
    tokio::task::spawn_blocking(move || sluice.stop(WAIT)).await.unwrap();
    let hashed = kv("user", s(&sha256_hex(b"carol")));
    for (_, _, name, attrs) in backend.spans() {
        assert_eq!(attrs, vec![hashed.clone(), kv("tier", s("gold"))], "{name}");
    }
    for r in backend.traces() {
        for rs in &r.resource_spans {
            let attrs = &rs.resource.as_ref().unwrap().attributes;
            assert!(attrs.contains(&kv("service.name", s("shop"))), "{attrs:?}");
            assert_eq!(
                attrs.last(),
                Some(&kv("deployment.environment", s("prod"))),
                "{attrs:?}"
            );
        }
    }
}

// ------------------------------------------------------------ config errors

#[test]
fn config_errors_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    // (processor yaml, the line of the error within it, the text the column
    // points at, the message)
    let cases: &[(&str, &str, &str)] = &[
        (
            "  attributes:\n    actions:\n      - {key: a, value: b, action: upsertt}",
            "upsertt",
            "unknown action `upsertt`",
        ),
        (
            "  attributes:\n    actions:\n      - {key: a, action: extract}",
            "extract",
            "`extract` is not yet supported",
        ),
        (
            "  attributes:\n    actions:\n      - {pattern: 'a(b', action: delete}",
            "a(b",
            "invalid regular expression",
        ),
        (
            "  attributes:\n    actions:\n      - {value: b, action: insert}",
            "value",
            "missing `key`",
        ),
        (
            "  resource:\n    attributes:\n      - {key: a, action: convert, converted_type: int}\n      - {key: b, action: upsert}",
            "key",
            "exactly one of `value` and `from_attribute`",
        ),
        (
            "  attributes:\n    actions: [{key: a, action: delete}]\n    include:\n      match_type: regexp\n      span_names: ['ok', 'x[']",
            "x[",
            "invalid regular expression",
        ),
        (
            "  resourcedetection:\n    detectors: [env, ec2]",
            "ec2",
            "detector `ec2` is not yet supported",
        ),
    ];
    // Keys the Collector has and sluice does not: named with their line.
    for (processor, want) in [
        (
            "  attributes:\n    actions: [{key: a, action: delete}]\n    include:\n      match_type: strict\n      span_kinds: [SPAN_KIND_SERVER]",
            "processors.attributes.include.span_kinds: `span_kinds` is not yet supported by sluice (line 10)",
        ),
        (
            "  attributes:\n    actions: [{key: a, action: delete}]\n    exclude:\n      match_type: strict\n      libraries: [{name: x}]",
            "processors.attributes.exclude.libraries: `libraries` is not yet supported by sluice (line 10)",
        ),
        (
            "  attributes:\n    actions:\n      - {key: a, action: upsert, from_context: auth.x}",
            "`from_context` is not yet supported by sluice (line 8)",
        ),
        (
            "  resource:\n    attributes:\n      - {key: a, value: b, action: insert, regex: x}",
            "`regex` is not yet supported by sluice (line 8)",
        ),
    ] {
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: 127.0.0.1:4317}}\nprocessors:\n{processor}\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces: {{receivers: [otlp], processors: [{id}], exporters: [nop]}}\n",
            id = processor.trim().split(':').next().unwrap()
        );
        let path = dir.path().join("u.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let out = sluice_cmd(&["validate", "--config", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{processor} validated");
        assert!(err.contains(want), "{processor}: {err}");
    }
    for (processor, at, want) in cases {
        let yaml = format!(
            "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:4317}}
processors:
{processor}
exporters:
  nop:
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [{id}], exporters: [nop]}}
",
            id = processor.trim().split(':').next().unwrap()
        );
        // The error is on the last line of the processor's YAML.
        let line_text = processor.lines().last().unwrap();
        let line = 5 + processor.lines().count();
        let column = line_text.find(at).unwrap() + 1;
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let out = sluice_cmd(&["validate", "--config", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{processor} validated");
        assert!(err.contains(want), "{processor}: {err}");
        assert!(
            err.contains(&format!("(line {line}, column {column})")),
            "{processor}: want line {line}, column {column}: {err}"
        );
    }
}
