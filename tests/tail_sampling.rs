//! `tail_sampling` through the real binary on two shards.
//!
//! - Whole traces: 20,000 traces of three spans, each span of a trace sent on
//!   a different one of 8 connections (so on both shards) over about two
//!   seconds, with the seed's policies (errors, slower than 2 s, 10% of the
//!   rest). Every error and slow trace arrives whole; of the rest, exactly the
//!   traces an independent reference of the Collector's `probabilistic`
//!   policy keeps arrive, each whole, and their share is 10% ± 1.5; no span of
//!   a dropped trace arrives; spans sent after the decision follow it.
//! - Overload: more live traces than `num_traces` and more bytes than the
//!   memory limit within one `decision_wait`: traces are decided early and
//!   counted, RSS stays under the limit, nothing panics.

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::*;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{any_value, AnyValue, KeyValue},
    trace::v1::{status::StatusCode, ResourceSpans, ScopeSpans, Span, Status},
};
use prost::Message;

const TRACES: usize = 20_000;
const SPANS: u8 = 3;
const CONNS: usize = 8;

/// The reference decision of the Collector's `probabilistic` policy, written
/// from its description: FNV-1a 64-bit over the salt (default
/// `default-hash-seed`) then the 16 trace-id bytes; sampled when the hash is
/// at most `ratio × 2^64`.
fn reference_keeps(trace_id: &[u8], percent: f64) -> bool {
    let mut h: u64 = 14_695_981_039_346_656_037;
    for b in b"default-hash-seed".iter().chain(trace_id) {
        h = (h ^ *b as u64).wrapping_mul(1_099_511_628_211);
    }
    (h as f64) <= percent / 100.0 * 18_446_744_073_709_551_616.0
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Error,
    Slow,
    Normal,
}

fn kind_of(i: usize) -> Kind {
    match i % 20 {
        0 => Kind::Error,
        1 => Kind::Slow,
        _ => Kind::Normal,
    }
}

const BASE_NS: u64 = 1_700_000_000_000_000_000;

/// Span `n` of a trace: the error trace's second span has status ERROR; the
/// slow trace's last span ends 3 s after the first starts; other spans last
/// 50 ms.
fn span(trace_id: &[u8], n: u8, kind: Kind, pad: usize) -> Span {
    let start = BASE_NS + n as u64 * 1_000_000;
    let end = if kind == Kind::Slow && n == SPANS {
        BASE_NS + 3_000_000_000
    } else {
        start + 50_000_000
    };
    Span {
        trace_id: trace_id.to_vec(),
        span_id: vec![n; 8],
        name: "op".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        status: (kind == Kind::Error && n == 2).then(|| Status {
            code: StatusCode::Error as i32,
            message: String::new(),
        }),
        attributes: if pad > 0 {
            vec![KeyValue {
                key: "pad".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("x".repeat(pad))),
                }),
            }]
        } else {
            Vec::new()
        },
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

/// Sends until accepted, retrying the retryable refusals (RESOURCE_EXHAUSTED,
/// UNAVAILABLE) with a short back-off; returns how many were refused first.
async fn send(c: &mut GrpcConn, body: &[u8], deadline: Instant) -> u64 {
    let mut refused = 0;
    loop {
        let r = c.call(TRACES_PATH, body, false).await;
        match r.code {
            0 => return refused,
            8 | 14 if Instant::now() < deadline => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ => panic!("export refused: code {} {}", r.code, r.message),
        }
    }
}

fn config(p: &Ports, backend: u16, processors: &str, ts: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
processors:
{processors}
  tail_sampling:
{ts}
  batch: {{send_batch_size: 8192, timeout: 50ms}}
exporters:
  otlp: {{endpoint: 127.0.0.1:{backend}, tls: {{insecure: true}}, compression: none, timeout: 120s}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [PROCS], exporters: [otlp]}}
tuning: {{shards: 2}}
",
        grpc = p.grpc,
        metrics = p.metrics,
    )
}

const SEED_POLICIES: &str = "    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
      - {name: slow, type: latency, latency: {threshold_ms: 2000}}
      - {name: rest, type: probabilistic, probabilistic: {sampling_percentage: 10}}";

async fn scrape_async(p: &Ports) -> Vec<Sample> {
    let addr = p.metrics_addr();
    tokio::task::spawn_blocking(move || scrape_samples(addr)).await.unwrap()
}

async fn wait_metric(p: &Ports, name: &str, labels: &[&str], want: f64, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let v = labelled(&scrape_async(p).await, name, labels);
        if v >= want || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_traces_errors_slow_and_ten_percent_of_the_rest() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let ts = format!("    decision_wait: 1s\n    num_traces: 100000\n{SEED_POLICIES}");
    let cfg = config(&p, backend.port, "", &ts).replace("PROCS", "tail_sampling, batch");
    let mut sluice = Sluice::start(&cfg);

    let mut rng = Rng(11);
    let ids: Vec<Vec<u8>> = (0..TRACES).map(|_| rng.id16()).collect();
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        conns.push(GrpcConn::connect(p.grpc_addr()).await);
    }
    // 40 rounds of 500 traces, one round every 50 ms (about 2 s in all):
    // span n of a round's traces goes on connection (round + n) % CONNS.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for (round, chunk) in ids.chunks(500).enumerate() {
        tick.tick().await;
        let base = round * 500;
        for n in 1..=SPANS {
            let spans = chunk
                .iter()
                .enumerate()
                .map(|(j, id)| span(id, n, kind_of(base + j), 0))
                .collect();
            let c = &mut conns[(round + n as usize) % CONNS];
            refused += send(c, &request(spans), deadline).await;
        }
    }

    // Every trace gets decided once its decision_wait has passed.
    let global = "otelcol_processor_tail_sampling_global_count_traces_sampled_total";
    let decided = wait_metric(&p, global, &[], TRACES as f64, Duration::from_secs(60)).await;
    assert_eq!(decided as usize, TRACES, "traces decided");

    // Late spans: one more span for 100 kept and 100 dropped normal traces.
    let normal: Vec<usize> = (0..TRACES).filter(|&i| kind_of(i) == Kind::Normal).collect();
    let late_kept: Vec<usize> = normal
        .iter()
        .copied()
        .filter(|&i| reference_keeps(&ids[i], 10.0))
        .take(100)
        .collect();
    let late_dropped: Vec<usize> = normal
        .iter()
        .copied()
        .filter(|&i| !reference_keeps(&ids[i], 10.0))
        .take(100)
        .collect();
    for (k, i) in late_kept.iter().chain(&late_dropped).enumerate() {
        let body = request(vec![span(&ids[*i], 9, Kind::Normal, 0)]);
        refused += send(&mut conns[k % CONNS], &body, deadline).await;
    }
    let late = wait_metric(
        &p,
        "sluice_tail_sampling_late_spans_total",
        &[],
        200.0,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(late, 200.0, "late spans counted");

    // What must arrive: error and slow traces, the reference's share of the
    // rest, and the late spans of kept traces.
    let mut want: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let keep = match kind_of(i) {
            Kind::Error | Kind::Slow => true,
            Kind::Normal => reference_keeps(id, 10.0),
        };
        if keep {
            want.insert(id.clone(), (1..=SPANS).collect());
        }
    }
    for &i in &late_kept {
        want.get_mut(&ids[i]).unwrap().push(9);
    }
    let expected: usize = want.values().map(Vec::len).sum();
    assert!(
        backend
            .wait_for(Duration::from_secs(60), |b| b.span_count() as usize >= expected)
            .await,
        "{} of {expected} spans arrived",
        backend.span_count()
    );
    let mut got: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (trace, span, _, _) in backend.spans() {
        got.entry(trace).or_default().push(span[0]);
    }
    for v in got.values_mut() {
        v.sort();
    }
    for (i, id) in ids.iter().enumerate() {
        if matches!(kind_of(i), Kind::Error | Kind::Slow) {
            assert_eq!(got.get(id), want.get(id), "{:?} trace {i} not whole", kind_of(i));
        }
    }
    let extra: Vec<&Vec<u8>> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(extra.is_empty(), "{} spans of dropped traces arrived", extra.len());
    assert_eq!(got, want, "kept traces differ from the reference or arrived in part");
    let kept_normal = normal.iter().filter(|&&i| got.contains_key(&ids[i])).count();
    let share = kept_normal as f64 * 100.0 / normal.len() as f64;
    assert!((share - 10.0).abs() <= 1.5, "kept {share:.2}% of the rest");

    let s = scrape_async(&p).await;
    let name = "otelcol_processor_tail_sampling_count_traces_sampled_total";
    assert_eq!(
        labelled(&s, name, &["policy=\"errors\"", "sampled=\"true\""]) as usize,
        TRACES / 20
    );
    assert_eq!(
        labelled(&s, name, &["policy=\"slow\"", "sampled=\"true\""]) as usize,
        TRACES / 20
    );
    let routed = labelled(&s, "sluice_tail_sampling_routed_spans_total", &[]);
    assert!(routed > 0.0, "no span was routed between the shards");
    assert_eq!(
        labelled(
            &s,
            "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total",
            &[]
        ),
        0.0
    );
    eprintln!("routed {routed} spans; {refused} requests refused retryably and sent again");
    tokio::task::spawn_blocking(move || sluice.stop(Duration::from_secs(30)))
        .await
        .unwrap();
}

/// Peak resident set (VmHWM) of a process, bytes.
fn peak_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

const LIMIT_MIB: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_decides_early_and_stays_under_the_memory_limit() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    // decision_wait is far longer than the test: every decision is early.
    let ts = "    decision_wait: 600s
    num_traces: 40000
    policies:
      - {name: rest, type: probabilistic, probabilistic: {sampling_percentage: 10}}";
    let limiter = format!("  memory_limiter: {{check_interval: 100ms, limit_mib: {LIMIT_MIB}, spike_limit_mib: 20}}");
    let cfg = config(&p, backend.port, &limiter, ts).replace("PROCS", "memory_limiter, tail_sampling, batch");
    let mut sluice = Sluice::start(&cfg);
    let pid = sluice.pid();

    // 4 connections × 300 requests × 50 traces × 2 spans of ~1 KiB:
    // 60,000 live traces (1.5 × num_traces), ~120 MiB (> the 100 MiB limit);
    // the byte budget (half the limiter's 80 MiB soft limit) fills first.
    let per_conn = 300usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for c in 0..4u64 {
        let addr = p.grpc_addr();
        tasks.push(tokio::spawn(async move {
            let mut conn = GrpcConn::connect(addr).await;
            let mut rng = Rng(1000 + c);
            let mut refused = 0;
            for _ in 0..per_conn {
                let mut spans = Vec::with_capacity(100);
                for _ in 0..50 {
                    let id = rng.id16();
                    spans.push(span(&id, 1, Kind::Normal, 1000));
                    spans.push(span(&id, 2, Kind::Normal, 1000));
                }
                refused += send(&mut conn, &request(spans), deadline).await;
            }
            refused
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    let traces = (4 * per_conn * 50) as f64;

    // Every accepted trace is either decided (early) or still buffered.
    let mut last = (0.0, 0.0, 0.0);
    let settle = Instant::now() + Duration::from_secs(30);
    while Instant::now() < settle {
        let s = scrape_async(&p).await;
        last = (
            labelled(
                &s,
                "otelcol_processor_tail_sampling_global_count_traces_sampled_total",
                &[],
            ),
            labelled(&s, "otelcol_processor_tail_sampling_sampling_traces_on_memory", &[]),
            labelled(
                &s,
                "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total",
                &[],
            ),
        );
        if last.0 + last.1 == traces {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        last.0 + last.1,
        traces,
        "decided + buffered (decided, on memory, early) = {last:?}"
    );
    assert_eq!(last.0, last.2, "every decision so far was early");
    assert!(last.0 >= traces - 40000.0, "early decisions {}", last.0);
    assert!(last.1 <= 40000.0, "{} traces on memory above num_traces", last.1);
    let s = scrape_async(&p).await;
    let buffered = labelled(&s, "sluice_tail_sampling_buffered_bytes", &[]);
    let soft = (LIMIT_MIB - 20) << 20;
    assert!(
        buffered <= (soft / 2) as f64,
        "buffered {buffered} bytes above half the soft limit"
    );
    let peak = peak_rss(pid);
    assert!(
        peak < LIMIT_MIB << 20,
        "peak RSS {} MiB above the {LIMIT_MIB} MiB limit",
        peak >> 20
    );
    assert!(sluice.is_running(), "sluice exited");
    eprintln!(
        "peak RSS {} MiB; {} early decisions; {refused} requests refused retryably and sent again; {buffered} bytes buffered",
        peak >> 20,
        last.2
    );
    let sluice = tokio::task::spawn_blocking(move || {
        sluice.stop(Duration::from_secs(30));
        sluice
    })
    .await
    .unwrap();
    assert!(!sluice.stderr_text().contains("panicked"), "{}", sluice.stderr_text());
}

/// At shutdown every buffered trace is decided at once: acknowledged spans of
/// kept traces reach the backend although their `decision_wait` never passed.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_decides_every_buffered_trace() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let ts = "    decision_wait: 600s
    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}";
    let cfg = config(&p, backend.port, "", ts).replace("PROCS", "tail_sampling, batch");
    let mut sluice = Sluice::start(&cfg);
    let mut rng = Rng(5);
    let ids: Vec<Vec<u8>> = (0..200).map(|_| rng.id16()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(GrpcConn::connect(p.grpc_addr()).await);
    }
    for n in 1..=SPANS {
        let spans = ids
            .iter()
            .enumerate()
            .map(|(i, id)| span(id, n, kind_of(i), 0))
            .collect();
        send(&mut conns[n as usize % 4], &request(spans), deadline).await;
    }
    let on_memory = wait_metric(
        &p,
        "otelcol_processor_tail_sampling_sampling_traces_on_memory",
        &[],
        200.0,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(on_memory, 200.0);
    assert_eq!(backend.span_count(), 0, "nothing decided before the wait");
    drop(conns);
    let sluice = tokio::task::spawn_blocking(move || {
        sluice.stop(Duration::from_secs(30));
        sluice
    })
    .await
    .unwrap();
    let errors = (0..200).filter(|&i| kind_of(i) == Kind::Error).count();
    let mut got: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (t, _, _, _) in backend.spans() {
        *got.entry(t).or_default() += 1;
    }
    assert_eq!(got.len(), errors, "{}", sluice.stderr_text());
    for (i, id) in ids.iter().enumerate() {
        if kind_of(i) == Kind::Error {
            assert_eq!(got.get(id), Some(&(SPANS as usize)), "error trace {i} not whole");
        }
    }
}

fn validate(yaml: &str) -> (bool, String) {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("c.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = sluice_cmd(&["validate", "--config", f.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "validate panicked:\n{text}");
    (out.status.success(), text)
}

/// Config mistakes in a policy name the key, its line (and column for OTTL).
#[test]
fn policy_mistakes_name_key_and_line() {
    let doc = |policies: &str| {
        format!(
            "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: 127.0.0.1:0}}}}}}}}
exporters: {{nop: {{}}}}
processors:
  tail_sampling:
    decision_wait: 5s
    policies:
{policies}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [tail_sampling], exporters: [nop]}}
"
        )
    };
    let (ok, text) = validate(&doc("      - {name: a, type: always_sample}
      - name: b
        type: ottl_condition
        ottl_condition:
          span: ['attributes[\"x\"] == ']"));
    assert!(!ok);
    assert!(
        text.contains("processors.tail_sampling.policies[1].ottl_condition.span[0]") && text.contains("line 11"),
        "{text}"
    );
    assert!(text.contains("column"), "{text}");

    let (ok, text) = validate(&doc("      - {name: a, type: composite}"));
    assert!(!ok);
    assert!(text.contains("not yet supported") && text.contains("line 7"), "{text}");

    let (ok, text) = validate(&doc("      - name: a
        type: string_attribute
        string_attribute: {key: k, values: ['(unclosed'], enabled_regex_matching: true}"));
    assert!(!ok);
    assert!(
        text.contains("invalid regular expression") && text.contains("line 9"),
        "{text}"
    );

    let (ok, text) = validate(&doc("      - name: a
        type: latency
        latency: {threshold_msec: 5}"));
    assert!(!ok);
    assert!(text.contains("threshold_msec") && text.contains("line 9"), "{text}");

    let (ok, text) = validate(&doc("      - {name: a, type: always_sample}"));
    assert!(ok, "{text}");
}
