//! Every value arrives as sent (issue 9) and OTLP/JSON robustness (issue 8
//! items 4, 6, 9), through the real binary:
//! - property test: random requests of all three signals go protobuf → sluice
//!   → store byte-identical; JS-style JSON → sluice → store equal to the
//!   protobuf form value for value (doubles by bits); `sluice read` output
//!   posted back through the JSON receiver reproduces the stored requests
//!   (without the unknown fields JSON cannot carry) byte for byte;
//! - one regression test per defect (doubles, non-finite numbers in `sluice
//!   read`, open enums, id lengths, JSON leniency, duplicate keys, nesting,
//!   huge bodies of unknown fields);
//! - the JavaScript SDK's OTLP/JSON exporters (Node.js, `tests/js`) deliver
//!   field-exact.
//!
//! The store (file exporter, no batch processor) is the backend here: it
//! keeps each request's bytes as received, and `sluice::store::read_dir`
//! hands them back.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::otlp_gen::{self, js_style, J};
use common::*;
use prost::Message;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use sluice::{
    otlp_json,
    proto::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest},
    signal::Signal,
    store::{read_dir, ReadEvent},
};

const BODY_LIMIT: u64 = 64 << 20;

/// sluice with an OTLP receiver storing every request as one record.
fn store_sluice(dir: &Path) -> (Sluice, Ports) {
    let p = Ports::new();
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}, max_recv_msg_size_mib: 64}}
      http: {{endpoint: 127.0.0.1:{http}, max_request_body_size: {BODY_LIMIT}}}
exporters:
  file: {{path: {dir}}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
    metrics: {{receivers: [otlp], exporters: [file]}}
    logs: {{receivers: [otlp], exporters: [file]}}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
        dir = dir.display(),
    );
    (Sluice::start(&yaml), p)
}

/// Every record in a store: (signal, body).
fn stored(dir: &Path) -> Vec<(Signal, Bytes)> {
    let mut out = Vec::new();
    for ev in read_dir(dir).expect("read store") {
        match ev {
            ReadEvent::Record { record, .. } => out.push((record.signal, record.body)),
            other => panic!("store problem: {other:?}"),
        }
    }
    out
}

fn path(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "/v1/traces",
        Signal::Metrics => "/v1/metrics",
        Signal::Logs => "/v1/logs",
    }
}

fn post(conn: &mut HttpConn, signal: Signal, json: bool, body: &[u8]) -> HttpResponse {
    let ct = if json { "application/json" } else { "application/x-protobuf" };
    conn.post(path(signal), ct, None, body)
}

/// The prost re-encoding of a body: its values in canonical form, without
/// unknown fields.
fn canonical(signal: Signal, body: &[u8]) -> Vec<u8> {
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body).unwrap().encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body).unwrap().encode_to_vec(),
        Signal::Logs => ExportLogsServiceRequest::decode(body).unwrap().encode_to_vec(),
    }
}

/// The decoded values, printed: `Debug` spells every double by its exact
/// value (−0.0 included; NaN is only ever the canonical NaN here).
fn values(signal: Signal, body: &[u8]) -> String {
    match signal {
        Signal::Traces => format!("{:?}", ExportTraceServiceRequest::decode(body).unwrap()),
        Signal::Metrics => format!("{:?}", ExportMetricsServiceRequest::decode(body).unwrap()),
        Signal::Logs => format!("{:?}", ExportLogsServiceRequest::decode(body).unwrap()),
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Asserts two multisets are equal, printing only the first difference.
#[track_caller]
fn same_multiset<T: Ord + std::fmt::Debug>(got: Vec<T>, want: Vec<T>, what: &str) {
    let (got, want) = (sorted(got), sorted(want));
    if got != want {
        let missing: Vec<&T> = want.iter().filter(|w| !got.contains(w)).collect();
        let extra: Vec<&T> = got.iter().filter(|g| !want.contains(g)).collect();
        let clip = |v: &Vec<&T>| v.first().map(|x| format!("{x:?}").chars().take(3000).collect::<String>());
        panic!(
            "{what}: got {} want {}; {} missing, {} unexpected\nfirst missing: {:?}\nfirst unexpected: {:?}",
            got.len(),
            want.len(),
            missing.len(),
            extra.len(),
            clip(&missing),
            clip(&extra)
        );
    }
}

/// One generated request: its prost encoding (canonical) and the body sent
/// over protobuf, with unknown fields spliced in.
struct Case {
    signal: Signal,
    canonical: Vec<u8>,
    wire: Vec<u8>,
}

fn entries<M: Message>(items: &[M]) -> Vec<Vec<u8>> {
    items.iter().map(|m| m.encode_to_vec()).collect()
}

fn generate(runner: &mut TestRunner, per_signal: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for i in 0..per_signal {
        let seed = i as u64 * 7919;
        let t = otlp_gen::traces().new_tree(runner).unwrap().current();
        cases.push(Case {
            signal: Signal::Traces,
            canonical: t.encode_to_vec(),
            wire: otlp_gen::with_unknown_fields(&entries(&t.resource_spans), seed),
        });
        let m = otlp_gen::metrics().new_tree(runner).unwrap().current();
        cases.push(Case {
            signal: Signal::Metrics,
            canonical: m.encode_to_vec(),
            wire: otlp_gen::with_unknown_fields(&entries(&m.resource_metrics), seed),
        });
        let l = otlp_gen::logs().new_tree(runner).unwrap().current();
        cases.push(Case {
            signal: Signal::Logs,
            canonical: l.encode_to_vec(),
            wire: otlp_gen::with_unknown_fields(&entries(&l.resource_logs), seed),
        });
    }
    cases
}

/// OTLP/JSON as the JS SDK writes it, for a canonical body.
fn js_json(signal: Signal, canonical: &[u8], runner: &mut TestRunner) -> String {
    let line = otlp_json::encode_request(signal, canonical).unwrap();
    js_style(&J::parse(&line), "", runner.rng()).to_text()
}

// ---------------------------------------------------------------------------
// in-process properties (many cases, shrinking)

fn transcode_properties(signal: Signal, canonical: Vec<u8>, wire: Vec<u8>, rng_seed: u64) -> Result<(), TestCaseError> {
    // protobuf → JSON → protobuf gives prost's bytes back, from the canonical
    // body and from the one with unknown fields alike.
    for body in [&canonical, &wire] {
        let line = otlp_json::encode_request(signal, body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = otlp_json::decode_request(signal, line.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        prop_assert_eq!(&back[..], &canonical[..], "{}", line);
        prop_assert!(back.len() <= 4 * line.len() + 16);
    }
    // JS-style JSON → protobuf: the same values.
    let mut runner = TestRunner::new_with_rng(Config::default(), proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    ));
    for _ in 0..(rng_seed % 3) {
        let _ = runner.rng().next_u64();
    }
    let js = js_json(signal, &canonical, &mut runner);
    let pb = otlp_json::decode_request(signal, js.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {js}")))?;
    prop_assert_eq!(values(signal, &pb), values(signal, &canonical), "{}", js);
    prop_assert!(sluice::wire_validate::validate(signal, &pb).is_ok());
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 48, ..Config::default() })]

    #[test]
    fn transcoder_traces(t in otlp_gen::traces(), seed in any::<u64>()) {
        let wire = otlp_gen::with_unknown_fields(&entries(&t.resource_spans), seed);
        transcode_properties(Signal::Traces, t.encode_to_vec(), wire, seed)?;
    }

    #[test]
    fn transcoder_metrics(m in otlp_gen::metrics(), seed in any::<u64>()) {
        let wire = otlp_gen::with_unknown_fields(&entries(&m.resource_metrics), seed);
        transcode_properties(Signal::Metrics, m.encode_to_vec(), wire, seed)?;
    }

    #[test]
    fn transcoder_logs(l in otlp_gen::logs(), seed in any::<u64>()) {
        let wire = otlp_gen::with_unknown_fields(&entries(&l.resource_logs), seed);
        transcode_properties(Signal::Logs, l.encode_to_vec(), wire, seed)?;
    }
}

// ---------------------------------------------------------------------------
// the same properties through the binary

#[test]
fn random_requests_arrive_as_sent_on_every_path() {
    let mut runner = TestRunner::new(Config::default());
    let cases = generate(&mut runner, 12);

    // protobuf → sluice → store: byte-identical.
    let pb_dir = tempfile::tempdir().unwrap();
    let (mut pb_sluice, p) = store_sluice(pb_dir.path());
    let mut conn = HttpConn::connect(p.http_addr());
    for c in &cases {
        let r = post(&mut conn, c.signal, false, &c.wire);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    pb_sluice.stop(Duration::from_secs(20));
    let got = stored(pb_dir.path());
    same_multiset(
        got.iter().map(|(s, b)| (s.index(), b.to_vec())).collect(),
        cases.iter().map(|c| (c.signal.index(), c.wire.clone())).collect(),
        "protobuf bodies did not arrive byte-identical",
    );

    // JSON as the JS SDK writes it → sluice → store: the same values.
    let js_dir = tempfile::tempdir().unwrap();
    let (mut js_sluice, p) = store_sluice(js_dir.path());
    let mut conn = HttpConn::connect(p.http_addr());
    for c in &cases {
        let json = js_json(c.signal, &c.canonical, &mut runner);
        let r = post(&mut conn, c.signal, true, json.as_bytes());
        assert_eq!(r.status, 200, "{}\n{json}", r.text());
    }
    js_sluice.stop(Duration::from_secs(20));
    let got = stored(js_dir.path());
    same_multiset(
        got.iter().map(|(s, b)| values(*s, b)).collect(),
        cases.iter().map(|c| values(c.signal, &c.canonical)).collect(),
        "JSON requests did not arrive value for value",
    );

    // `sluice read` of the protobuf store → JSON receiver → store: the stored
    // requests again, byte for byte (less the unknown fields).
    let out = sluice_cmd(&["read", pb_dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let back_dir = tempfile::tempdir().unwrap();
    let (mut back_sluice, p) = store_sluice(back_dir.path());
    let mut conn = HttpConn::connect(p.http_addr());
    let mut lines = 0;
    for line in text.lines() {
        let signal = if line.starts_with("{\"resourceSpans\"") {
            Signal::Traces
        } else if line.starts_with("{\"resourceMetrics\"") {
            Signal::Metrics
        } else {
            Signal::Logs
        };
        let r = post(&mut conn, signal, true, line.as_bytes());
        assert_eq!(r.status, 200, "{}\n{line}", r.text());
        lines += 1;
    }
    assert_eq!(lines, cases.len());
    back_sluice.stop(Duration::from_secs(20));
    let got = stored(back_dir.path());
    same_multiset(
        got.iter().map(|(s, b)| (s.index(), b.to_vec())).collect(),
        cases.iter().map(|c| (c.signal.index(), canonical(c.signal, &c.wire))).collect(),
        "sluice read → JSON receiver did not reproduce the stored requests",
    );
}
