//! Realistic OTLP request bodies for the load generator, the criterion benches
//! and the exactness tests: several resources (services), attributes of the
//! usual kinds, 1 in 50 spans an error, 1 in 40 slower than 2 s, a few
//! `health_check` spans, distinct trace ids. Built once, before any clock starts.

use bytes::Bytes;
use prost::Message;

use crate::{
    proto::{
        common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        metrics::v1::{
            metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric,
            NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        },
        resource::v1::Resource,
        trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status},
        ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
    },
    signal::Signal,
};

const SERVICES: [&str; 5] = ["checkout", "cart", "payments", "frontend", "inventory"];
const OPERATIONS: [&str; 8] = [
    "GET /api/cart",
    "POST /api/checkout",
    "SELECT orders",
    "redis GET",
    "health_check",
    "charge card",
    "render page",
    "readiness_probe",
];
const BASE_NANOS: u64 = 1_764_000_000_000_000_000;

/// A small deterministic generator (splitmix64), so bodies are reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn id<const N: usize>(&mut self) -> Bytes {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Bytes::copy_from_slice(&out)
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_string())
}

fn resource(service: &str, idx: usize) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.version", s("1.4.2")),
            kv("deployment.environment", s("production")),
            kv("host.name", s(&format!("node-{idx:02}"))),
            kv("k8s.pod.name", s(&format!("{service}-7d9f8-{idx:03}"))),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "io.opentelemetry.contrib".into(),
        version: "1.32.0".into(),
        ..Default::default()
    }
}

/// How `items` are spread over resources: up to 5 resources, the rest in the last.
fn spread(items: usize) -> Vec<usize> {
    let n = items.clamp(1, SERVICES.len());
    let per = items / n;
    let mut v = vec![per; n];
    v[n - 1] += items - per * n;
    v
}

/// An `ExportTraceServiceRequest` with `spans` spans.
pub fn traces(spans: usize, rng: &mut Rng) -> ExportTraceServiceRequest {
    let mut out = ExportTraceServiceRequest::default();
    let mut n = 0u64;
    for (r, count) in spread(spans).into_iter().enumerate() {
        let mut list = Vec::with_capacity(count);
        let mut trace_id = rng.id::<16>();
        let mut parent = Bytes::new();
        for i in 0..count {
            if i % 8 == 0 {
                trace_id = rng.id::<16>();
                parent = Bytes::new();
            }
            n += 1;
            let span_id = rng.id::<8>();
            let start = BASE_NANOS + rng.below(1_000_000_000_000);
            let slow = n % 40 == 0;
            let dur = if slow {
                2_000_000_000 + rng.below(3_000_000_000)
            } else {
                rng.below(200_000_000)
            };
            let error = n % 50 == 0;
            let op = OPERATIONS[rng.below(OPERATIONS.len() as u64) as usize];
            list.push(Span {
                trace_id: trace_id.clone(),
                span_id: span_id.clone(),
                parent_span_id: parent.clone(),
                name: op.to_string(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + dur,
                attributes: vec![
                    kv(
                        "http.request.method",
                        s(if op.starts_with("POST") { "POST" } else { "GET" }),
                    ),
                    kv(
                        "http.response.status_code",
                        any_value::Value::IntValue(if error { 500 } else { 200 }),
                    ),
                    kv("url.path", s("/api/v1/resource")),
                    kv(
                        "net.peer.port",
                        any_value::Value::IntValue(40000 + rng.below(20000) as i64),
                    ),
                ],
                status: Some(Status {
                    code: if error {
                        status::StatusCode::Error
                    } else {
                        status::StatusCode::Ok
                    } as i32,
                    message: if error {
                        "upstream timeout".into()
                    } else {
                        String::new()
                    },
                }),
                ..Default::default()
            });
            parent = span_id;
        }
        out.resource_spans.push(ResourceSpans {
            resource: Some(resource(SERVICES[r], r)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans: list,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    out
}

/// An `ExportLogsServiceRequest` with `records` log records.
pub fn logs(records: usize, rng: &mut Rng) -> ExportLogsServiceRequest {
    let mut out = ExportLogsServiceRequest::default();
    for (r, count) in spread(records).into_iter().enumerate() {
        let list = (0..count)
            .map(|i| {
                let error = rng.below(50) == 0;
                LogRecord {
                    time_unix_nano: BASE_NANOS + rng.below(1_000_000_000_000),
                    observed_time_unix_nano: BASE_NANOS + rng.below(1_000_000_000_000),
                    severity_number: if error { 17 } else { 9 },
                    severity_text: if error { "ERROR".into() } else { "INFO".into() },
                    body: Some(AnyValue {
                        value: Some(s(&format!(
                            "request {i} handled by {} in {} ms",
                            SERVICES[r],
                            rng.below(900)
                        ))),
                    }),
                    attributes: vec![
                        kv("http.route", s("/api/cart")),
                        kv("user.id", any_value::Value::IntValue(rng.below(1_000_000) as i64)),
                    ],
                    trace_id: rng.id::<16>(),
                    span_id: rng.id::<8>(),
                    ..Default::default()
                }
            })
            .collect();
        out.resource_logs.push(ResourceLogs {
            resource: Some(resource(SERVICES[r], r)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: list,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    out
}

/// An `ExportMetricsServiceRequest` with `points` data points (gauges, sums and histograms).
pub fn metrics(points: usize, rng: &mut Rng) -> ExportMetricsServiceRequest {
    let mut out = ExportMetricsServiceRequest::default();
    for (r, count) in spread(points).into_iter().enumerate() {
        let mut metrics = Vec::new();
        let mut left = count;
        let mut m = 0;
        while left > 0 {
            let k = left.min(10);
            left -= k;
            let attrs = |rng: &mut Rng| {
                vec![
                    kv("http.route", s("/api/cart")),
                    kv("instance", any_value::Value::IntValue(rng.below(64) as i64)),
                ]
            };
            let number = |rng: &mut Rng| NumberDataPoint {
                attributes: attrs(rng),
                start_time_unix_nano: BASE_NANOS,
                time_unix_nano: BASE_NANOS + rng.below(1_000_000_000_000),
                value: Some(number_data_point::Value::AsDouble(rng.below(10_000) as f64 / 7.0)),
                ..Default::default()
            };
            let data = match m % 3 {
                0 => metric::Data::Gauge(Gauge {
                    data_points: (0..k).map(|_| number(rng)).collect(),
                }),
                1 => metric::Data::Sum(Sum {
                    data_points: (0..k).map(|_| number(rng)).collect(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                _ => metric::Data::Histogram(Histogram {
                    data_points: (0..k)
                        .map(|_| HistogramDataPoint {
                            attributes: attrs(rng),
                            start_time_unix_nano: BASE_NANOS,
                            time_unix_nano: BASE_NANOS + rng.below(1_000_000_000_000),
                            count: 60,
                            sum: Some(rng.below(100_000) as f64),
                            bucket_counts: vec![10, 20, 20, 10],
                            explicit_bounds: vec![5.0, 25.0, 100.0],
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                }),
            };
            metrics.push(Metric {
                name: format!("http.server.metric_{m}"),
                unit: "ms".into(),
                data: Some(data),
                ..Default::default()
            });
            m += 1;
        }
        out.resource_metrics.push(ResourceMetrics {
            resource: Some(resource(SERVICES[r], r)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    out
}

/// One encoded request of `items` items for `signal`.
pub fn request(signal: Signal, items: usize, rng: &mut Rng) -> Bytes {
    match signal {
        Signal::Traces => traces(items, rng).encode_to_vec().into(),
        Signal::Metrics => metrics(items, rng).encode_to_vec().into(),
        Signal::Logs => logs(items, rng).encode_to_vec().into(),
    }
}

/// Where each span's trace id starts in an encoded traces request of this
/// workload (found by its bytes: the ids are random, so a match elsewhere is
/// out of the question), for a load generator that gives every request sent
/// trace ids of its own.
pub fn trace_id_offsets(body: &[u8]) -> Vec<usize> {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return Vec::new();
    };
    let mut ids = span_trace_ids(&req);
    ids.retain(|id| id.len() == 16);
    ids.dedup();
    let mut offsets = Vec::new();
    for id in ids {
        // Span field 1 (trace_id), 16 bytes long: tag 0x0a, length 0x10.
        let needle: Vec<u8> = [0x0a, 0x10].iter().chain(id).copied().collect();
        offsets.extend(
            body.windows(needle.len())
                .enumerate()
                .filter(|(_, w)| *w == needle)
                .map(|(i, _)| i + 2),
        );
    }
    offsets
}

/// The trace id of every span of a request, sorted.
fn span_trace_ids(req: &ExportTraceServiceRequest) -> Vec<&[u8]> {
    let mut ids: Vec<&[u8]> = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| &s.trace_id[..])
        .collect();
    ids.sort_unstable();
    ids
}

/// `count` distinct encoded requests.
pub fn requests(signal: Signal, items: usize, count: usize, seed: u64) -> Vec<Bytes> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| request(signal, items, &mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trace_id_is_found() {
        let body = request(Signal::Traces, 100, &mut Rng::new(3));
        let offsets = trace_id_offsets(&body);
        assert_eq!(offsets.len(), 100, "one trace id per span");
        let req = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        let mut found: Vec<&[u8]> = offsets.iter().map(|&o| &body[o..o + 16]).collect();
        found.sort_unstable();
        assert_eq!(span_trace_ids(&req), found);
    }

    #[test]
    fn bodies_hold_the_requested_items() {
        for signal in Signal::ALL {
            for items in [1, 7, 100, 1000] {
                let body = request(signal, items, &mut Rng::new(items as u64));
                let scan = crate::wire::scan(signal, &body).unwrap();
                assert_eq!(scan.items, items as u64, "{signal} {items}");
            }
        }
    }

    #[test]
    fn spans_are_realistic() {
        let req = traces(1000, &mut Rng::new(1));
        let spans: Vec<_> = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans[0].spans)
            .collect();
        assert_eq!(req.resource_spans.len(), 5);
        let errors = spans.iter().filter(|s| s.status.as_ref().unwrap().code == 2).count();
        assert_eq!(errors, 20);
        let slow = spans
            .iter()
            .filter(|s| s.end_time_unix_nano - s.start_time_unix_nano > 2_000_000_000)
            .count();
        assert_eq!(slow, 25);
        let bytes = req.encoded_len() / 1000;
        assert!((150..400).contains(&bytes), "{bytes} bytes per span");
    }
}
