//! Issue 8 item 5: the `file` exporter never drops acknowledged data. A batch
//! larger than one store record (256 MiB compressed) is split into several
//! records, a failed write is retried until it succeeds, and the exporter's
//! metrics and log agree with what `sluice read --count` finds in the store.
//!
//! The split test moves ~270 MiB of incompressible spans through the real
//! binary (the record limit is not configurable); it takes some 10-30 s in a
//! debug build.

mod common;

use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

/// Requests sent, and spans per request.
const REQUESTS: u64 = 14;
const SPANS: u64 = 100;
/// Random bytes per span: a request is ~19.5 MiB, all of them ~273 MiB,
/// which LZ4 cannot bring below the 256 MiB record limit.
const BLOB: usize = 200 << 10;

fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A traces request of `spans` spans, each carrying `len` random bytes.
fn blob_request(seed: u64, spans: u64, len: usize) -> Vec<u8> {
    let mut req = traces_request(2, spans / 2, seed);
    let mut n = 0;
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                n += 1;
                span.attributes.push(KeyValue {
                    key: "blob".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::BytesValue(blob(seed * 1000 + n, len))),
                    }),
                });
            }
        }
    }
    prost::Message::encode_to_vec(&req)
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_over_the_record_limit_is_split_and_fully_stored() {
    let p = Ports::new();
    let store = tempfile::tempdir().unwrap();
    let total = REQUESTS * SPANS;
    // One batch of everything: it leaves when the last request arrives.
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}, max_recv_msg_size_mib: 32}}
processors:
  batch: {{send_batch_size: {total}, send_batch_max_size: 0, timeout: 120s}}
exporters:
  file: {{path: {dir}}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [file]}}
tuning: {{shards: 1, shutdown_timeout: 30s}}
",
        grpc = p.grpc,
        metrics = p.metrics,
        dir = store.path().display(),
    );
    let mut sluice = Sluice::start(&cfg);
    let mut c = GrpcConn::connect(p.grpc_addr()).await;
    let mut bytes = 0usize;
    for seed in 0..REQUESTS {
        let req = blob_request(seed, SPANS, BLOB);
        bytes += req.len();
        let r = c.call(TRACES_PATH, &req, false).await;
        assert_eq!(r.code, 0, "request {seed} refused: {}", r.message);
    }
    assert!(bytes > 260 << 20, "only {bytes} bytes sent");
    // Wait until the exporter settled every acknowledged span (stored or failed).
    let deadline = Instant::now() + Duration::from_secs(120);
    let (sent, failed) = loop {
        let m = scrape(p.metrics_addr());
        let sent = metric(&m, "otelcol_exporter_sent_spans_total");
        let failed = metric(&m, "otelcol_exporter_send_failed_spans_total");
        if sent + failed >= total as f64 || Instant::now() > deadline {
            break (sent, failed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (sent, failed),
        (total as f64, 0.0),
        "exporter metrics (sent, failed); stderr:\n{}",
        sluice.stderr_text()
    );
    sluice.stop(Duration::from_secs(60));
    let log = sluice.stderr_text();
    for bad in [
        "write failed",
        "cannot be stored",
        "not stored",
        "undelivered",
        "panicked",
    ] {
        assert!(!log.contains(bad), "log says {bad:?}:\n{log}");
    }
    // The store holds exactly what was acknowledged, in several records.
    let counts = read_count(store.path());
    assert_eq!(counts.spans, total, "{counts:?}");
    assert_eq!(counts.corrupt, 0, "{counts:?}");
    assert!(counts.trace_requests >= 2, "one record cannot hold it all: {counts:?}");
}

/// Polls the exporter's metrics until `cond` holds or `timeout` passes.
async fn wait_metrics(p: &Ports, timeout: Duration, cond: impl Fn(f64, f64, f64) -> bool) -> (f64, f64, f64) {
    let deadline = Instant::now() + timeout;
    loop {
        let m = scrape(p.metrics_addr());
        let got = (
            metric(&m, "otelcol_exporter_sent_spans_total"),
            metric(&m, "otelcol_exporter_send_failed_spans_total"),
            metric(&m, "sluice_exporter_retries_total"),
        );
        if cond(got.0, got.1, got.2) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The shard directory is replaced by a file while sluice runs: creating the
/// next segment fails, the batch is retried (not dropped, not counted failed)
/// and stored once the directory can be made again.
#[tokio::test(flavor = "multi_thread")]
async fn failed_store_writes_are_retried_until_stored() {
    let p = Ports::new();
    let store = tempfile::tempdir().unwrap();
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
processors:
  batch: {{timeout: 50ms}}
exporters:
  file: {{path: {dir}, segment_size_mib: 1}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [file]}}
tuning: {{shards: 1, shutdown_timeout: 10s}}
",
        grpc = p.grpc,
        metrics = p.metrics,
        dir = store.path().display(),
    );
    let mut sluice = Sluice::start(&cfg);
    let mut c = GrpcConn::connect(p.grpc_addr()).await;
    // Two ~600 KiB records fill the 1 MiB segment, which is then closed: the
    // next record needs a new segment file.
    for seed in 0..2 {
        let r = c.call(TRACES_PATH, &blob_request(seed, 10, 60 << 10), false).await;
        assert_eq!(r.code, 0, "{}", r.message);
        let want = 10.0 * (seed + 1) as f64;
        let got = wait_metrics(&p, Duration::from_secs(20), |s, _, _| s >= want).await;
        assert_eq!(got.0, want, "first records not stored");
    }
    let shard = store.path().join("shard-0");
    assert!(shard.is_dir());
    std::fs::remove_dir_all(&shard).unwrap();
    std::fs::write(&shard, b"not a directory").unwrap();

    for seed in 10..13 {
        let r = c
            .call(
                TRACES_PATH,
                &prost::Message::encode_to_vec(&traces_request(1, 5, seed)),
                false,
            )
            .await;
        assert_eq!(r.code, 0, "{}", r.message);
    }
    // Retries back off from 100 ms; three take ~0.7 s on an idle machine.
    let (sent, failed, retries) = wait_metrics(&p, Duration::from_secs(30), |_, _, r| r >= 3.0).await;
    assert!(
        retries >= 3.0,
        "no write retries: {retries}; stderr:\n{}",
        sluice.stderr_text()
    );
    assert_eq!((sent, failed), (20.0, 0.0), "while the store cannot be written");
    assert!(strip_ansi(&sluice.stderr_text()).contains("local store write failed; retrying"));

    // Repaired: the next retry (at most 5 s later) stores the waiting batches.
    std::fs::remove_file(&shard).unwrap();
    let (sent, failed, _) = wait_metrics(&p, Duration::from_secs(30), |s, _, _| s >= 35.0).await;
    assert_eq!((sent, failed), (35.0, 0.0), "stderr:\n{}", sluice.stderr_text());
    sluice.stop(Duration::from_secs(20));
    // The store holds exactly the 15 spans sent after the directory was
    // replaced (the first two records went with the removed directory).
    let counts = read_count(store.path());
    assert_eq!((counts.spans, counts.corrupt), (15, 0), "{counts:?}");
}

/// The log without its colour escapes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
