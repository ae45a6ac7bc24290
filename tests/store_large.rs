//! Issue 8 item 5: a batch larger than one store record (256 MiB compressed)
//! is split into several records instead of being dropped after the clients
//! were acknowledged, and the exporter's metrics and log agree with what
//! `sluice read --count` finds in the store.
//!
//! This test moves ~270 MiB of incompressible spans through the real binary
//! (the record limit is not configurable); it takes some 10-30 s in a debug
//! build.

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

fn blob(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(BLOB);
    while out.len() < BLOB {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(BLOB);
    out
}

/// A traces request of `SPANS` spans, each carrying `BLOB` random bytes.
fn big_request(seed: u64) -> Vec<u8> {
    let mut req = traces_request(2, SPANS / 2, seed);
    let mut n = 0;
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                n += 1;
                span.attributes.push(KeyValue {
                    key: "blob".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::BytesValue(blob(seed * 1000 + n))),
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
        let req = big_request(seed);
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
