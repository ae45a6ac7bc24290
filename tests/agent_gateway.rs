//! Two sluice processes chained, agent → gateway → slow backend. The gateway's
//! tiny sending queue with `overflow: signal` refuses with a retryable answer
//! (gRPC RESOURCE_EXHAUSTED + RetryInfo, HTTP 429 + Retry-After); the agent's
//! own exporter (`otlp` or `otlphttp`) honours it and retries, so every span
//! reaches the backend and nothing is counted as failed anywhere.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;

/// The gateway: one shard, small batches, a 1-batch queue with one consumer in
/// front of `backend`, refusing when full.
fn gateway_config(p: &Ports, backend: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
processors:
  batch: {{send_batch_size: 5, timeout: 50ms}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{backend}
    tls: {{insecure: true}}
    compression: none
    retry_on_failure: {{enabled: false}}
    sending_queue: {{queue_size: 1, num_consumers: 1, overflow: signal}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
tuning: {{shards: 1}}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
    )
}

/// The agent: one shard, batches of ~2 requests, an exporter of type `name`
/// (`otlp` or `otlphttp`) to `endpoint` with very quick retries of its own
/// (so a server hint it ignored would show) and a roomy queue.
fn agent_config(p: &Ports, name: &str, endpoint: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
processors:
  batch: {{send_batch_size: 10, timeout: 50ms}}
exporters:
  {name}:
    endpoint: {endpoint}
    compression: gzip
    retry_on_failure: {{initial_interval: 10ms, max_interval: 20ms, max_elapsed_time: 0}}
    sending_queue: {{queue_size: 1000, num_consumers: 4}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [{name}]}}
tuning: {{shards: 1}}
",
        grpc = p.grpc,
        metrics = p.metrics,
    )
}

fn total(p: &Ports, name: &str) -> f64 {
    labelled(&scrape_samples(p.metrics_addr()), name, &[])
}

async fn run_chain(agent_exporter: &str, via_http: bool) {
    let backend = Backend::start_new().await;
    backend.set_mode(Mode::Delay(Duration::from_millis(150)));
    let gp = Ports::new();
    let mut gateway = Sluice::start(&gateway_config(&gp, backend.port));
    let ap = Ports::new();
    let endpoint = if via_http {
        format!("http://127.0.0.1:{}", gp.http)
    } else {
        format!("127.0.0.1:{}\n    tls: {{insecure: true}}", gp.grpc)
    };
    let mut agent = Sluice::start(&agent_config(&ap, agent_exporter, &endpoint));

    // 40 requests of 5 distinct spans, sent back to back: the agent accepts
    // them all at once (roomy queue); the gateway can take ~1 batch per 150 ms.
    const N: u64 = 40;
    const PER: u64 = 5;
    let mut c = OtlpClients::connect(&ap).await;
    let started = std::time::Instant::now();
    let mut expected = Vec::new();
    for seed in 0..N {
        let req = traces_request(1, PER, seed);
        expected.extend(request_span_ids(&req));
        c.traces
            .export(req)
            .await
            .expect("the agent accepts: its queue is roomy");
    }
    expected.sort();
    assert_eq!(expected.len() as u64, N * PER, "span ids must be distinct");

    let arrived = backend
        .wait_for(Duration::from_secs(35), |b| {
            let mut ids: Vec<String> = b.spans().iter().map(|s| hex_id(&s.1)).collect();
            ids.sort();
            ids.dedup();
            ids.len() == expected.len()
        })
        .await;
    let mut per_id: BTreeMap<String, u32> = BTreeMap::new();
    for s in backend.spans() {
        *per_id.entry(hex_id(&s.1)).or_default() += 1;
    }
    let missing: Vec<&String> = expected.iter().filter(|id| !per_id.contains_key(*id)).collect();
    assert!(
        arrived,
        "{} of {} spans never reached the backend, e.g. {:?}",
        missing.len(),
        expected.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let unexpected: Vec<&String> = per_id.keys().filter(|id| expected.binary_search(id).is_err()).collect();
    assert!(unexpected.is_empty(), "spans nobody sent: {unexpected:?}");
    let dups = per_id.values().filter(|&&n| n > 1).count();

    // The gateway refused (the signal happened) and exported everything it accepted.
    let refused = total(&gp, "otelcol_receiver_refused_spans_total");
    assert!(
        refused > 0.0,
        "the gateway never refused: no backpressure was exercised"
    );
    assert!(total(&gp, "otelcol_receiver_accepted_spans_total") >= (N * PER) as f64);
    assert_eq!(total(&gp, "otelcol_exporter_send_failed_spans_total"), 0.0);
    assert_eq!(total(&gp, "sluice_dropped_items_total"), 0.0);

    // The agent honoured the refusals: retried, never gave up, dropped nothing.
    // Its counters settle once the last answers are back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut sent = 0.0;
    while std::time::Instant::now() < deadline {
        sent = total(&ap, "otelcol_exporter_sent_spans_total");
        if sent >= (N * PER) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let s = scrape_samples(ap.metrics_addr());
    let retries = labelled(&s, "sluice_exporter_retries_total", &[]);
    eprintln!(
        "{agent_exporter}: gateway refused {refused} spans; agent retried {retries} times; {dups} spans duplicated; backend attempts {}",
        backend.attempts()
    );
    assert!(retries > 0.0, "the agent never retried a refused batch");
    // The gateway's hint is 1 s, the agent's own backoff 10-20 ms: honouring
    // the hint, each of the 4 concurrent exports retries at most once a second.
    let bound = 4.0 * (elapsed.as_secs_f64().ceil() + 1.0);
    assert!(
        retries <= bound,
        "{retries} retries in {elapsed:?}: more than 4 exports retrying once a second ({bound}); the retry hint was not honoured"
    );
    assert_eq!(labelled(&s, "otelcol_exporter_send_failed_spans_total", &[]), 0.0);
    assert_eq!(labelled(&s, "sluice_exporter_permanent_errors_total", &[]), 0.0);
    assert_eq!(labelled(&s, "sluice_dropped_items_total", &[]), 0.0);
    assert_eq!(sent, (N * PER) as f64, "agent sent_spans");
    // The gateway delivered exactly what it accepted; anything beyond the
    // agent's sends is a resend of a batch whose answer the agent missed.
    let drained = backend
        .wait_for(Duration::from_secs(10), |b| {
            total(&gp, "otelcol_exporter_sent_spans_total") == total(&gp, "otelcol_receiver_accepted_spans_total")
                && b.span_count() as f64 == total(&gp, "otelcol_receiver_accepted_spans_total")
        })
        .await;
    assert!(
        drained,
        "gateway accepted {} spans, sent {}, backend has {}",
        total(&gp, "otelcol_receiver_accepted_spans_total"),
        total(&gp, "otelcol_exporter_sent_spans_total"),
        backend.span_count()
    );
    agent.stop(Duration::from_secs(15));
    gateway.stop(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_agent_honours_gateway_backpressure_without_loss() {
    run_chain("otlp", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_agent_honours_gateway_backpressure_without_loss() {
    run_chain("otlphttp", true).await;
}
