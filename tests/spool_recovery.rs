//! A node whose persistent queue holds a large spool starts listening at
//! once: while the spool is recovered it answers the retryable "full" answer
//! (gRPC RESOURCE_EXHAUSTED, HTTP 429 + Retry-After), then takes data, and every recovered record is
//! delivered.

mod common;

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use common::files::{traces_record, write_segment};
use common::*;

/// One shard forwarding traces over gRPC to `port` through a persistent queue in `dir`.
fn spool_config(p: &Ports, port: u16, dir: &Path) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
processors:
  batch: {{send_batch_size: 200, timeout: 100ms}}
extensions:
  file_storage/q: {{directory: {dir}, fsync: false}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{port}
    tls: {{insecure: true}}
    compression: none
    sending_queue: {{storage: file_storage/q, num_consumers: 2}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 400ms, max_elapsed_time: 0}}
service:
  extensions: [file_storage/q]
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
tuning: {{shards: 1, shutdown_timeout: 1s}}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
        dir = dir.display(),
    )
}

const RECOVERED: &str = "spool recovery finished";

#[tokio::test(flavor = "multi_thread")]
async fn listens_and_refuses_retryably_while_a_large_spool_is_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("otlp").join("shard-0");
    let mut expected = BTreeSet::new();
    // Segment 0: five records. Segments 1-2: 24 MiB of 0x01 each (slow to
    // scan: every offset looks like a header), the last one followed by two
    // more records that the scan must find. Recovery takes seconds in a
    // debug build; the test takes about ten.
    let mut seg = Vec::new();
    for seed in 0..5 {
        let r = traces_request(1, 4, seed);
        expected.extend(request_span_ids(&r));
        seg.extend_from_slice(&traces_record(&r));
    }
    write_segment(&shard, 0, &seg);
    for seq in 1..=2u64 {
        let mut seg = vec![0x01u8; 24 << 20];
        if seq == 2 {
            for seed in 10..12 {
                let r = traces_request(1, 4, seed);
                expected.extend(request_span_ids(&r));
                seg.extend_from_slice(&traces_record(&r));
            }
        }
        write_segment(&shard, seq, &seg);
    }

    let backend = Backend::start_new().await;
    let p = Ports::new();
    // `start` returns once the port accepts and "sluice is ready" is logged.
    let sluice = Sluice::start(&spool_config(&p, backend.port, tmp.path()));
    // OTLP/HTTP: 429 with Retry-After while the spool is being recovered.
    let http_req = traces_request(1, 2, 200);
    let http_body = prost::Message::encode_to_vec(&http_req);
    let addr = p.http_addr();
    let r = tokio::task::spawn_blocking(move || {
        HttpConn::connect(addr).post("/v1/traces", "application/x-protobuf", None, &http_body)
    })
    .await
    .unwrap();
    if r.status == 200 {
        // Recovery already finished (a loaded machine delayed this request).
        expected.extend(request_span_ids(&http_req));
    } else {
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(r.header("retry-after").is_some(), "no Retry-After");
    }
    let mut g = GrpcConn::connect(p.grpc_addr()).await;
    let req = traces_request(1, 3, 100);
    let body = prost::Message::encode_to_vec(&req);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut refused_while_recovering = 0;
    loop {
        let r = g.call(TRACES_PATH, &body, false).await;
        let recovered = sluice.stderr_text().contains(RECOVERED);
        if r.code == 0 {
            break;
        }
        assert_eq!(
            r.code, 8,
            "refusal must be RESOURCE_EXHAUSTED (retryable): {}",
            r.message
        );
        if !recovered {
            refused_while_recovering += 1;
        }
        assert!(
            Instant::now() < deadline,
            "spool not recovered in time; stderr:\n{}",
            sluice.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = sluice.stderr_text();
    let ready = log.find("sluice is ready").expect("ready logged");
    let done = log.find(RECOVERED).expect("recovery finish logged");
    assert!(ready < done, "listeners must be up before recovery ends:\n{log}");
    assert!(
        refused_while_recovering > 0,
        "the first request arrived after recovery finished; no retryable refusal seen:\n{log}"
    );

    expected.extend(request_span_ids(&req));
    let ok = backend
        .wait_for(Duration::from_secs(30), |b| received_ids(b).is_superset(&expected))
        .await;
    let got = received_ids(&backend);
    assert!(
        ok,
        "missing {} of {} spans: {:?}",
        expected.difference(&got).count(),
        expected.len(),
        expected.difference(&got).take(5).collect::<Vec<_>>()
    );
}
