//! `probabilistic_sampler` through the real binary on two shards: for
//! 100,000 random trace ids the kept set is exactly what an independent
//! FNV-1a reference computes (so sluice and Collector nodes sharing a seed
//! keep the same traces), a trace's spans sent on different connections are
//! kept or dropped together, the kept share is within ±1 point of the
//! setting, and `sampling.priority` overrides.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::*;
use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{any_value, AnyValue, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use prost::Message;

const TRACES: usize = 100_000;
const SEED: u32 = 22;
const PERCENT: f64 = 10.0;

/// The reference decision, written from the Collector's description: FNV-1a
/// 32-bit over the seed as 4 little-endian bytes followed by the trace id;
/// kept when the low 14 bits are below percentage × 16384 / 100.
fn reference_keeps(trace_id: &[u8]) -> bool {
    const OFFSET: u32 = 2_166_136_261;
    const PRIME: u32 = 16_777_619;
    let mut h = OFFSET;
    let seed = [SEED as u8, (SEED >> 8) as u8, (SEED >> 16) as u8, (SEED >> 24) as u8];
    for b in seed.iter().chain(trace_id.iter()) {
        h = (h ^ *b as u32).wrapping_mul(PRIME);
    }
    (h % 16384) < (PERCENT * 163.84) as u32
}

/// splitmix64: the test's own source of random trace ids.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn id16(&mut self) -> Vec<u8> {
        [self.next().to_le_bytes(), self.next().to_le_bytes()].concat()
    }
}

fn span(trace_id: &[u8], n: u8, priority: Option<i64>) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: vec![n; 8],
        name: "op".into(),
        attributes: priority
            .map(|p| {
                vec![KeyValue {
                    key: "sampling.priority".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(p)),
                    }),
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn config(p: &Ports, backend: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
processors:
  probabilistic_sampler: {{sampling_percentage: {PERCENT}, hash_seed: {SEED}}}
  batch: {{send_batch_size: 8192, timeout: 100ms}}
exporters:
  otlp: {{endpoint: 127.0.0.1:{backend}, tls: {{insecure: true}}, compression: none}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [probabilistic_sampler, batch], exporters: [otlp]}}
    logs: {{receivers: [otlp], processors: [probabilistic_sampler, batch], exporters: [otlp]}}
tuning: {{shards: 2}}
",
        grpc = p.grpc,
        metrics = p.metrics,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_match_the_reference_and_keep_traces_whole() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, backend.port));

    let mut rng = Rng(7);
    let ids: Vec<Vec<u8>> = (0..TRACES).map(|_| rng.id16()).collect();
    // Each trace's first span goes on connections 0-1, its second on 2-3:
    // with SO_REUSEPORT the four land on both shards.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(GrpcConn::connect(p.grpc_addr()).await);
    }
    for (chunk_no, chunk) in ids.chunks(1000).enumerate() {
        for half in 0..2u8 {
            let spans = chunk.iter().map(|id| span(id, half + 1, None)).collect();
            let c = &mut conns[(half as usize) * 2 + chunk_no % 2];
            let r = c.call(TRACES_PATH, &request(spans), false).await;
            assert_eq!(r.code, 0, "{}", r.message);
        }
    }
    // sampling.priority overrides: 0 drops a trace the hash keeps, 1 keeps
    // one it drops.
    let kept_by_hash = ids.iter().find(|id| reference_keeps(id)).unwrap().clone();
    let dropped_by_hash = ids.iter().find(|id| !reference_keeps(id)).unwrap().clone();
    let r = conns[0]
        .call(
            TRACES_PATH,
            &request(vec![
                span(&kept_by_hash, 9, Some(0)),
                span(&dropped_by_hash, 9, Some(1)),
            ]),
            false,
        )
        .await;
    assert_eq!(r.code, 0, "{}", r.message);

    let want: BTreeSet<Vec<u8>> = ids.iter().filter(|id| reference_keeps(id)).cloned().collect();
    let expected_spans = want.len() * 2 + 1;
    assert!(
        backend
            .wait_for(Duration::from_secs(60), |b| b.spans().len() >= expected_spans)
            .await,
        "{} of {expected_spans} spans arrived",
        backend.spans().len()
    );
    let spans = backend.spans();
    assert_eq!(spans.len(), expected_spans);
    let mut per_trace: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
    for (trace, span, _, _) in &spans {
        per_trace.entry(trace.clone()).or_default().push(span[0]);
    }
    let got: BTreeSet<Vec<u8>> = per_trace
        .iter()
        .filter(|(_, s)| !s.contains(&9))
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(got, want, "kept traces differ from the reference decision");
    for (t, s) in &per_trace {
        if t == &dropped_by_hash {
            assert_eq!(s, &[9], "sampling.priority 1 keeps the span");
        } else {
            let mut s = s.clone();
            s.sort();
            assert_eq!(s, [1, 2], "trace {} arrived in part", hex(t));
        }
    }
    assert!(
        !per_trace[&kept_by_hash].contains(&9),
        "sampling.priority 0 drops the span"
    );
    let share = want.len() as f64 * 100.0 / TRACES as f64;
    assert!((share - PERCENT).abs() <= 1.0, "kept {share:.2}%");

    let samples = tokio::task::spawn_blocking(move || scrape_samples(p.metrics_addr()))
        .await
        .unwrap();
    let name = "otelcol_processor_probabilistic_sampler_count_traces_sampled_total";
    let kept = labelled(&samples, name, &["policy=\"trace_id_hash\"", "sampled=\"true\""]);
    let dropped = labelled(&samples, name, &["policy=\"trace_id_hash\"", "sampled=\"false\""]);
    assert_eq!(kept as usize, want.len() * 2);
    assert_eq!((kept + dropped) as usize, TRACES * 2);
    assert_eq!(labelled(&samples, name, &["policy=\"sampling_priority\""]), 2.0);
    tokio::task::spawn_blocking(move || sluice.stop(Duration::from_secs(30)))
        .await
        .unwrap();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Logs with a trace id follow their trace's decision; logs without one are
/// sampled at random at the same rate.
#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_the_trace_decision() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, backend.port));
    let mut rng = Rng(99);
    let with_ids: Vec<Vec<u8>> = (0..5_000).map(|_| rng.id16()).collect();
    let record = |trace_id: Vec<u8>, n: u64| LogRecord {
        time_unix_nano: n,
        trace_id,
        ..Default::default()
    };
    let mut records: Vec<LogRecord> = with_ids
        .iter()
        .enumerate()
        .map(|(i, id)| record(id.clone(), i as u64))
        .collect();
    records.extend((0..5_000u64).map(|i| record(Vec::new(), 100_000 + i)));
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut c = GrpcConn::connect(p.grpc_addr()).await;
    let r = c.call(LOGS_PATH, &req.encode_to_vec(), false).await;
    assert_eq!(r.code, 0, "{}", r.message);
    tokio::task::spawn_blocking(move || sluice.stop(Duration::from_secs(30)))
        .await
        .unwrap();
    let got: Vec<LogRecord> = backend
        .logs()
        .into_iter()
        .flat_map(|r| r.resource_logs)
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect();
    let with: BTreeSet<Vec<u8>> = got
        .iter()
        .filter(|r| !r.trace_id.is_empty())
        .map(|r| r.trace_id.clone())
        .collect();
    let want: BTreeSet<Vec<u8>> = with_ids.iter().filter(|id| reference_keeps(id)).cloned().collect();
    assert_eq!(with, want);
    let random = got.iter().filter(|r| r.trace_id.is_empty()).count();
    // 10% of 5,000: binomial standard deviation ≈ 21; allow 6 of them.
    assert!(
        (random as i64 - 500).abs() <= 130,
        "{random} of 5000 records without a trace id kept"
    );
}
