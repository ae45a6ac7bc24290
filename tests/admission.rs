//! Admission is exact: with `overflow: signal`, a request is acknowledged only
//! if every batch it makes the pipelines emit fits its sending queue, counting
//! the batches a split at `send_batch_max_size` produces and the demand of
//! several pipelines on one exporter. Nothing acknowledged is dropped "after
//! admission"; everything else is refused with a retry hint.

mod common;

use std::time::Duration;

use common::*;

fn config(p: &Ports, backend: u16, pipelines: &str, queue_size: usize) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
processors:
  batch: {{send_batch_size: 10, send_batch_max_size: 10, timeout: 10s}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{backend}
    tls: {{insecure: true}}
    compression: none
    retry_on_failure: {{initial_interval: 30s}}
    sending_queue: {{queue_size: {queue_size}, num_consumers: 1, overflow: signal}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
{pipelines}
tuning: {{shards: 1, shutdown_timeout: 1s}}
",
        grpc = p.grpc,
        metrics = p.metrics,
    )
}

async fn run(pipelines: &str, queue_size: usize, requests: u64, resources: u64, spans: u64) {
    // A backend that is down: the first batch stays in flight, retrying, and
    // the queue behind it fills up.
    let backend = Backend::start_new().await;
    backend.stop().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, backend.port, pipelines, queue_size));
    let mut c = OtlpClients::connect(&p).await;
    let (mut ok, mut refused) = (0u64, 0u64);
    for seed in 0..requests {
        match c.traces.export(traces_request(resources, spans, seed)).await {
            Ok(_) => ok += 1,
            Err(st) => {
                assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
                refused += 1;
            }
        }
    }
    assert!(
        ok > 0 && refused > 0,
        "ok {ok}, refused {refused}: the queue never filled"
    );
    let per = resources * spans;
    let m = scrape(p.metrics_addr());
    assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total"), (ok * per) as f64);
    assert_eq!(
        metric(&m, "otelcol_receiver_refused_spans_total"),
        (refused * per) as f64
    );
    // Every enqueue failure is a refused request, none an acknowledged one.
    assert_eq!(
        metric(&m, "otelcol_exporter_enqueue_failed_spans_total"),
        (refused * per) as f64
    );
    sluice.stop(Duration::from_secs(10));
    let log = sluice.stderr_text();
    assert!(
        !log.contains("after admission"),
        "an acknowledged batch was dropped:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn splits_are_counted_before_acknowledging() {
    // 5 resources of 6 spans: a cut at 10 spans gives 5 batches, more than the
    // estimate 30/10 + 1 = 4 a guess would make. With 8 slots, the second
    // request finds 4 free (one batch in flight) and must be refused.
    run(
        "    traces: {receivers: [otlp], processors: [batch], exporters: [otlp]}",
        8,
        6,
        5,
        6,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelines_sharing_an_exporter_add_up() {
    run(
        "    traces/a: {receivers: [otlp], exporters: [otlp]}\n    traces/b: {receivers: [otlp], exporters: [otlp]}",
        4,
        6,
        1,
        5,
    )
    .await;
}
