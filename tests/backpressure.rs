//! Overflow policies of the sending queue against a slow backend: which data
//! is delivered (checked by id), what is dropped (counted by reason), and the
//! accounting identity accepted = delivered + dropped + still queued, read
//! from the metrics endpoint. One shard, so each scrape is a consistent
//! snapshot (the shard that counts also renders the scrape).

mod common;

use std::{collections::HashMap, time::Duration};

use common::*;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use prost::Message;

fn config(p: &Ports, backend: u16, queue: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{backend}
    tls: {{insecure: true}}
    compression: none
    retry_on_failure: {{enabled: false}}
    sending_queue: {{num_consumers: 1, {queue}}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
    logs: {{receivers: [otlp], exporters: [otlp]}}
tuning: {{shards: 1}}
",
        grpc = p.grpc,
        metrics = p.metrics,
    )
}

/// The request seed encoded in a span id by `traces_request`.
fn seed_of(span_id: &[u8]) -> u64 {
    let v = u64::from_be_bytes(span_id.try_into().unwrap());
    (v ^ 0x8000_0000_0000_0000) >> 40
}

/// (accepted, sent, dropped by reason, queued) for `signal` / `item`.
fn accounting(p: &Ports, signal: &str, item: &str) -> (f64, f64, HashMap<String, f64>, f64) {
    let s = scrape_samples(p.metrics_addr());
    let accepted = labelled(&s, &format!("otelcol_receiver_accepted_{item}_total"), &[]);
    let sent = labelled(&s, &format!("otelcol_exporter_sent_{item}_total"), &[]);
    let failed = labelled(&s, &format!("otelcol_exporter_send_failed_{item}_total"), &[]);
    assert_eq!(failed, 0.0, "no export may fail in these tests");
    let sig = format!("signal=\"{signal}\"");
    let mut dropped = HashMap::new();
    for reason in ["drop_new", "drop_oldest", "sample", "memory_limit"] {
        let r = format!("reason=\"{reason}\"");
        dropped.insert(
            reason.to_string(),
            labelled(&s, "sluice_dropped_items_total", &[&sig, &r]),
        );
    }
    let queued = labelled(&s, "sluice_exporter_queued_items", &[&sig]);
    (accepted, sent, dropped, queued)
}

/// Checks accepted = sent + dropped + queued exactly; returns the dropped map.
fn assert_identity(p: &Ports, signal: &str, item: &str) -> HashMap<String, f64> {
    let (accepted, sent, dropped, queued) = accounting(p, signal, item);
    let d: f64 = dropped.values().sum();
    assert_eq!(
        accepted,
        sent + d + queued,
        "{signal}: accepted {accepted} != sent {sent} + dropped {dropped:?} + queued {queued}"
    );
    dropped
}

async fn send_traces(p: &Ports, n: u64, spans: u64) {
    let mut c = OtlpClients::connect(p).await;
    for seed in 0..n {
        c.traces
            .export(traces_request(1, spans, seed))
            .await
            .expect("accepted: drop policies never refuse");
    }
}

/// Waits until nothing is queued and the backend has seen everything sent.
async fn settle(p: &Ports, backend: &Backend) {
    let ok = backend
        .wait_for(Duration::from_secs(30), |b| {
            let (_, sent, _, queued) = accounting(p, "traces", "spans");
            queued == 0.0 && b.span_count() as f64 == sent
        })
        .await;
    assert!(ok, "queue did not drain");
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_oldest_delivers_the_newest() {
    let backend = Backend::start_new().await;
    backend.set_mode(Mode::Delay(Duration::from_millis(500)));
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, backend.port, "queue_size: 5, overflow: drop_oldest"));
    send_traces(&p, 20, 3).await;
    // Mid-flight the identity holds too, with data still queued.
    let dropped = assert_identity(&p, "traces", "spans");
    assert!(dropped["drop_oldest"] > 0.0);
    settle(&p, &backend).await;
    let dropped = assert_identity(&p, "traces", "spans");
    let seeds: std::collections::BTreeSet<u64> = backend.spans().iter().map(|s| seed_of(&s.1)).collect();
    for newest in 15..20 {
        assert!(
            seeds.contains(&newest),
            "newest request {newest} lost; delivered {seeds:?}"
        );
    }
    assert!(!seeds.contains(&5), "an old request survived: {seeds:?}");
    assert_eq!(dropped["drop_oldest"], (20 - seeds.len()) as f64 * 3.0);
    assert_eq!(dropped["drop_new"] + dropped["sample"], 0.0);
    sluice.stop(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_new_delivers_the_oldest() {
    let backend = Backend::start_new().await;
    backend.set_mode(Mode::Delay(Duration::from_millis(500)));
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, backend.port, "queue_size: 5, overflow: drop_new"));
    send_traces(&p, 20, 3).await;
    assert_identity(&p, "traces", "spans");
    settle(&p, &backend).await;
    let dropped = assert_identity(&p, "traces", "spans");
    let seeds: std::collections::BTreeSet<u64> = backend.spans().iter().map(|s| seed_of(&s.1)).collect();
    for oldest in 0..6 {
        assert!(
            seeds.contains(&oldest),
            "old request {oldest} lost; delivered {seeds:?}"
        );
    }
    assert!(
        !seeds.contains(&19),
        "the newest request should have been dropped: {seeds:?}"
    );
    assert_eq!(dropped["drop_new"], (20 - seeds.len()) as f64 * 3.0);
    assert_eq!(dropped["drop_oldest"] + dropped["sample"], 0.0);
    sluice.stop(Duration::from_secs(15));
}

/// 400 traces, each with one span in 5 different requests.
fn sampled_request(i: u64) -> ExportTraceServiceRequest {
    let spans = (0..40u64)
        .map(|j| {
            let t = (i * 40 + j) % 400;
            let mut tid = vec![0xab; 8];
            tid.extend_from_slice(&t.to_be_bytes());
            Span {
                trace_id: tid,
                span_id: (i * 1000 + j + 1).to_be_bytes().to_vec(),
                name: format!("span {i}-{j}"),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sample_keeps_the_configured_fraction() {
    let backend = Backend::start_new().await;
    backend.set_mode(Mode::Delay(Duration::from_millis(20)));
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(
        &p,
        backend.port,
        "queue_size: 1000, overflow: sample, sample_percentage: 30, high_water_percentage: 0",
    ));
    let mut c = OtlpClients::connect(&p).await;
    for i in 0..50 {
        let r = sampled_request(i);
        c.traces.export(r).await.unwrap();
    }
    for seed in 0..40 {
        c.logs.export(logs_request(1, 5, seed)).await.unwrap();
    }
    let ok = backend
        .wait_for(Duration::from_secs(30), |_| {
            let (_, _, _, tq) = accounting(&p, "traces", "spans");
            let (_, _, _, lq) = accounting(&p, "logs", "log_records");
            tq == 0.0 && lq == 0.0
        })
        .await;
    assert!(ok, "queue did not drain");
    let dropped = assert_identity(&p, "traces", "spans");
    let ldropped = assert_identity(&p, "logs", "log_records");

    // Traces: ~30% of spans, whole traces only (each trace has 5 spans).
    let spans = backend.spans();
    let kept = spans.len() as f64 / 2000.0;
    assert!((0.22..=0.38).contains(&kept), "kept {kept} of spans, want 0.30");
    let mut per_trace: HashMap<Vec<u8>, u32> = HashMap::new();
    for s in &spans {
        *per_trace.entry(s.0.clone()).or_default() += 1;
    }
    assert!(
        per_trace.values().all(|&n| n == 5),
        "a trace was split by sampling: {per_trace:?}"
    );
    assert_eq!(dropped["sample"], 2000.0 - spans.len() as f64);
    // Logs: whole requests, exactly 30% of them.
    assert_eq!(backend.log_records(), 12 * 5);
    assert_eq!(ldropped["sample"], 28.0 * 5.0);
    sluice.stop(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn signal_refuses_with_retry_hint_and_loses_nothing() {
    let backend = Backend::start_new().await;
    // Slower than the receiver's wait for room (250 ms), so a full queue stays
    // full long enough to be refused.
    backend.set_mode(Mode::Delay(Duration::from_millis(600)));
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, backend.port, "queue_size: 2, overflow: signal"));
    let mut c = OtlpClients::connect(&p).await;
    let mut refusals = 0u64;
    for seed in 0..15 {
        loop {
            match c.traces.export(traces_request(1, 4, seed)).await {
                Ok(_) => break,
                Err(st) => {
                    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
                    let details = RpcStatus::decode(st.details()).expect("grpc-status-details-bin");
                    assert!(
                        details
                            .details
                            .iter()
                            .any(|d| d.type_url.ends_with("google.rpc.RetryInfo")),
                        "no RetryInfo in {details:?}"
                    );
                    refusals += 1;
                    // A client that honours the hint would wait ~1 s; wait less to keep the test short.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    assert!(refusals > 0, "a 2-batch queue in front of a slow backend never refused");
    backend.expect_counts(60, 0, 0, Duration::from_secs(30)).await;
    let dropped = assert_identity(&p, "traces", "spans");
    assert_eq!(dropped.values().sum::<f64>(), 0.0);
    let s = scrape_samples(p.metrics_addr());
    assert_eq!(
        labelled(&s, "otelcol_receiver_refused_spans_total", &[]),
        refusals as f64 * 4.0
    );
    let mut seeds: Vec<u64> = backend.spans().iter().map(|s| seed_of(&s.1)).collect();
    seeds.sort();
    seeds.dedup();
    assert_eq!(seeds, (0..15).collect::<Vec<_>>());
    sluice.stop(Duration::from_secs(15));
}
