//! The fast path (no decode, batches built from slices of received bodies,
//! split at `send_batch_max_size`) is exact: what reaches the backend, decoded,
//! holds exactly what was sent, for all three signals, including requests with
//! many resources, resources without scopes, scopes without items and metrics
//! without points. Compared as multisets of (resource, scope, item) encodings,
//! because batching merges requests and splitting cuts resources apart.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use prost::Message;
use sluice::{
    bench::workload,
    proto::{
        common::v1::InstrumentationScope,
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        metrics::v1::{metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics},
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span},
        ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
    },
    signal::Signal,
};

type Key = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

fn resource(i: u64) -> Option<Resource> {
    Some(Resource {
        attributes: vec![sluice::proto::common::v1::KeyValue {
            key: "service.name".into(),
            value: Some(sluice::proto::common::v1::AnyValue {
                value: Some(sluice::proto::common::v1::any_value::Value::StringValue(format!(
                    "svc-{i}"
                ))),
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        ..Default::default()
    })
}

fn enc<M: Message>(m: &Option<M>) -> Vec<u8> {
    m.as_ref().map(|m| m.encode_to_vec()).unwrap_or_default()
}

/// Edge-case trace requests: a resource with no scopes, a scope with no spans,
/// 60 resources of one span each, and an empty request.
fn edge_traces(seed: u64) -> Vec<ExportTraceServiceRequest> {
    let span = |n: u64| Span {
        trace_id: Bytes::from((seed * 1000 + n).to_be_bytes().repeat(2)),
        span_id: Bytes::from((seed * 1000 + n).to_le_bytes().to_vec()),
        name: format!("op-{n}"),
        ..Default::default()
    };
    let mut many = ExportTraceServiceRequest::default();
    for i in 0..60 {
        many.resource_spans.push(ResourceSpans {
            resource: resource(i),
            scope_spans: vec![ScopeSpans {
                scope: scope("many"),
                spans: vec![span(i)],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let edges = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource(100 + seed),
                scope_spans: vec![],
                schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
            },
            ResourceSpans {
                resource: resource(200 + seed),
                scope_spans: vec![
                    ScopeSpans {
                        scope: scope("empty"),
                        spans: vec![],
                        ..Default::default()
                    },
                    ScopeSpans {
                        scope: scope("full"),
                        spans: (0..7).map(|n| span(500 + n)).collect(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
        ],
    };
    vec![many, edges, ExportTraceServiceRequest::default()]
}

fn edge_metrics(seed: u64) -> ExportMetricsServiceRequest {
    let point = |v: u64| NumberDataPoint {
        time_unix_nano: seed * 1000 + v,
        value: Some(sluice::proto::metrics::v1::number_data_point::Value::AsInt(v as i64)),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![
            ResourceMetrics {
                resource: resource(300 + seed),
                scope_metrics: vec![],
                ..Default::default()
            },
            ResourceMetrics {
                resource: resource(400 + seed),
                scope_metrics: vec![
                    ScopeMetrics {
                        scope: scope("empty"),
                        metrics: vec![],
                        ..Default::default()
                    },
                    ScopeMetrics {
                        scope: scope("gauges"),
                        metrics: vec![
                            Metric {
                                name: "no_points".into(),
                                data: Some(metric::Data::Gauge(Gauge { data_points: vec![] })),
                                ..Default::default()
                            },
                            Metric {
                                name: "three_points".into(),
                                data: Some(metric::Data::Gauge(Gauge {
                                    data_points: (0..3).map(point).collect(),
                                })),
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
        ],
    }
}

fn edge_logs(seed: u64) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: resource(500 + seed),
                scope_logs: vec![ScopeLogs {
                    scope: scope("empty"),
                    log_records: vec![],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceLogs {
                resource: resource(600 + seed),
                scope_logs: vec![ScopeLogs {
                    scope: scope("logs"),
                    log_records: (0..5)
                        .map(|n| LogRecord {
                            time_unix_nano: seed * 1000 + n,
                            severity_text: "INFO".into(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

fn trace_keys(reqs: &[ExportTraceServiceRequest]) -> Vec<Key> {
    let mut out = Vec::new();
    for rs in reqs.iter().flat_map(|r| &r.resource_spans) {
        let mut res = enc(&rs.resource);
        res.extend_from_slice(rs.schema_url.as_bytes());
        if rs.scope_spans.is_empty() {
            out.push((res.clone(), None, None));
        }
        for ss in &rs.scope_spans {
            let mut sc = enc(&ss.scope);
            sc.extend_from_slice(ss.schema_url.as_bytes());
            if ss.spans.is_empty() {
                out.push((res.clone(), Some(sc.clone()), None));
            }
            for s in &ss.spans {
                out.push((res.clone(), Some(sc.clone()), Some(s.encode_to_vec())));
            }
        }
    }
    out.sort();
    out
}

fn metric_keys(reqs: &[ExportMetricsServiceRequest]) -> Vec<Key> {
    let mut out = Vec::new();
    for rm in reqs.iter().flat_map(|r| &r.resource_metrics) {
        let res = enc(&rm.resource);
        if rm.scope_metrics.is_empty() {
            out.push((res.clone(), None, None));
        }
        for sm in &rm.scope_metrics {
            let sc = enc(&sm.scope);
            if sm.metrics.is_empty() {
                out.push((res.clone(), Some(sc.clone()), None));
            }
            for m in &sm.metrics {
                out.push((res.clone(), Some(sc.clone()), Some(m.encode_to_vec())));
            }
        }
    }
    out.sort();
    out
}

fn log_keys(reqs: &[ExportLogsServiceRequest]) -> Vec<Key> {
    let mut out = Vec::new();
    for rl in reqs.iter().flat_map(|r| &r.resource_logs) {
        let res = enc(&rl.resource);
        if rl.scope_logs.is_empty() {
            out.push((res.clone(), None, None));
        }
        for sl in &rl.scope_logs {
            let sc = enc(&sl.scope);
            if sl.log_records.is_empty() {
                out.push((res.clone(), Some(sc.clone()), None));
            }
            for l in &sl.log_records {
                out.push((res.clone(), Some(sc.clone()), Some(l.encode_to_vec())));
            }
        }
    }
    out.sort();
    out
}

/// Re-decodes the backend's (opentelemetry-proto) messages as sluice's types.
fn convert<A: Message, B: Message + Default>(v: &[A]) -> Vec<B> {
    v.iter()
        .map(|m| B::decode(m.encode_to_vec().as_slice()).unwrap())
        .collect()
}

fn count(signal: Signal, body: &[u8]) -> u64 {
    sluice::wire::scan(signal, body).unwrap().items
}

#[tokio::test(flavor = "multi_thread")]
async fn batching_and_splitting_preserve_every_item() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    // Small batches with a max size force splits inside resources and scopes.
    let yaml = forward_config(&p, backend.port, "{shards: 2, shutdown_timeout: 10s}").replace(
        "batch: {send_batch_size: 8192, timeout: 200ms}",
        "batch: {send_batch_size: 50, send_batch_max_size: 64, timeout: 100ms}",
    );
    let mut sluice = Sluice::start(&yaml);

    let mut traces: Vec<ExportTraceServiceRequest> = Vec::new();
    let mut metrics: Vec<ExportMetricsServiceRequest> = Vec::new();
    let mut logs: Vec<ExportLogsServiceRequest> = Vec::new();
    for seed in 0..4u64 {
        traces.extend(edge_traces(seed));
        metrics.push(edge_metrics(seed));
        logs.push(edge_logs(seed));
        let mut rng = workload::Rng::new(seed);
        traces.push(workload::traces(100 + seed as usize * 37, &mut rng));
        metrics.push(workload::metrics(100 + seed as usize * 13, &mut rng));
        logs.push(workload::logs(100 + seed as usize * 29, &mut rng));
    }

    // Several connections, so both shards take part.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(GrpcConn::connect(p.grpc_addr()).await);
    }
    let (mut spans, mut points, mut records) = (0, 0, 0);
    for (i, t) in traces.iter().enumerate() {
        let body = t.encode_to_vec();
        spans += count(Signal::Traces, &body);
        let r = conns[i % 4].call(TRACES_PATH, &body, false).await;
        assert_eq!(r.code, 0, "traces: {}", r.message);
    }
    for (i, m) in metrics.iter().enumerate() {
        let body = m.encode_to_vec();
        points += count(Signal::Metrics, &body);
        let r = conns[i % 4].call(METRICS_PATH, &body, true).await;
        assert_eq!(r.code, 0, "metrics: {}", r.message);
    }
    for (i, l) in logs.iter().enumerate() {
        let body = l.encode_to_vec();
        records += count(Signal::Logs, &body);
        let r = conns[i % 4].call(LOGS_PATH, &body, false).await;
        assert_eq!(r.code, 0, "logs: {}", r.message);
    }
    backend
        .expect_counts(spans, points, records, Duration::from_secs(20))
        .await;
    // Batches holding only empty entries (no items) arrive too: a graceful
    // stop flushes every batch and waits for the exports.
    sluice.stop(Duration::from_secs(15));

    let got_t: Vec<ExportTraceServiceRequest> = convert(&backend.traces());
    let got_m: Vec<ExportMetricsServiceRequest> = convert(&backend.metrics());
    let got_l: Vec<ExportLogsServiceRequest> = convert(&backend.logs());
    // Splitting happened: no exported traces batch holds more than 64 spans.
    for t in &got_t {
        let n: usize = t
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert!(n <= 64, "a batch of {n} spans passed send_batch_max_size 64");
    }
    assert!(got_t.len() > 10, "expected many split batches, got {}", got_t.len());
    assert!(trace_keys(&got_t) == trace_keys(&traces), "traces differ");
    assert!(metric_keys(&got_m) == metric_keys(&metrics), "metrics differ");
    assert!(log_keys(&got_l) == log_keys(&logs), "logs differ");
}
