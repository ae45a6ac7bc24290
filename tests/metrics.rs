//! The self-telemetry endpoint: scrape it from a running sluice, parse the
//! OpenMetrics text, and check metric names, TYPE lines, label sets, and that
//! values agree with what was sent. Also the health_check endpoint.

mod common;

use std::{collections::HashMap, time::Duration};

use common::*;

/// `# TYPE` lines: metric family name → type.
fn types(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

fn config(p: &Ports, backend: u16, health: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
processors:
  batch: {{send_batch_size: 100, timeout: 50ms}}
exporters:
  otlp: {{endpoint: 127.0.0.1:{backend}, tls: {{insecure: true}}, compression: none}}
extensions:
  health_check: {{endpoint: 127.0.0.1:{health}}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
tuning: {{shards: 2}}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn metric_names_types_and_values() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let health = free_port();
    let mut sluice = Sluice::start(&config(&p, backend.port, health));
    let mut clients = OtlpClients::connect(&p).await;
    for i in 0..10 {
        clients.traces.export(traces_request(2, 25, i)).await.unwrap();
    }
    clients.logs.export(logs_request(1, 7, 1)).await.unwrap();
    backend.expect_counts(500, 0, 7, Duration::from_secs(20)).await;

    let mut conn = HttpConn::connect(p.metrics_addr());
    let resp = conn.request("GET", "/metrics", &[], &[]);
    assert_eq!(resp.status, 200);
    let ct = resp.header("content-type").unwrap_or_default().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "content-type {ct}");
    let text = resp.text();
    assert!(text.trim_end().ends_with("# EOF"), "no # EOF terminator:\n{text}");
    let t = types(&text);

    let mut want: Vec<(String, &str)> = Vec::new();
    for item in ["spans", "metric_points", "log_records"] {
        for m in ["receiver_accepted", "receiver_refused"] {
            want.push((format!("otelcol_{m}_{item}"), "counter"));
        }
        for m in ["exporter_sent", "exporter_send_failed", "exporter_enqueue_failed"] {
            want.push((format!("otelcol_{m}_{item}"), "counter"));
        }
    }
    for (n, k) in [
        ("otelcol_exporter_queue_size", "gauge"),
        ("otelcol_exporter_queue_capacity", "gauge"),
        ("otelcol_processor_batch_batch_send_size", "histogram"),
        ("otelcol_process_memory_rss", "gauge"),
        ("sluice_dropped_items", "counter"),
        ("sluice_exporter_queued_items", "gauge"),
        ("sluice_exporter_latency_seconds", "histogram"),
        ("sluice_shard_queue_size", "gauge"),
        ("sluice_shard_held_bytes", "gauge"),
        ("sluice_exporter_retries", "counter"),
        ("sluice_shutdown_dropped_items", "counter"),
    ] {
        want.push((n.to_string(), k));
    }
    for (name, kind) in &want {
        assert_eq!(
            t.get(name).map(String::as_str),
            Some(*kind),
            "TYPE of {name}; text:\n{text}"
        );
    }

    let samples = parse_prometheus(&text);
    let names: std::collections::HashSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    // Counters carry the `_total` suffix; histograms their series.
    for n in [
        "otelcol_receiver_accepted_spans_total",
        "otelcol_exporter_sent_log_records_total",
        "sluice_dropped_items_total",
        "otelcol_processor_batch_batch_send_size_bucket",
        "otelcol_processor_batch_batch_send_size_sum",
        "otelcol_processor_batch_batch_send_size_count",
        "sluice_exporter_latency_seconds_bucket",
        "sluice_exporter_latency_seconds_count",
    ] {
        assert!(names.contains(n), "no samples named {n}:\n{text}");
    }

    // Values agree with what was sent.
    assert_eq!(
        labelled(
            &samples,
            "otelcol_receiver_accepted_spans_total",
            &["receiver=\"otlp\""]
        ),
        500.0
    );
    assert_eq!(
        labelled(&samples, "otelcol_exporter_sent_spans_total", &["exporter=\"otlp\""]),
        500.0
    );
    assert_eq!(labelled(&samples, "otelcol_exporter_sent_log_records_total", &[]), 7.0);
    assert_eq!(
        labelled(&samples, "otelcol_exporter_queue_capacity", &["exporter=\"otlp\""]),
        2000.0
    );
    // Batch sizes: the histogram's sum is every item batched; +Inf equals the count.
    assert_eq!(
        labelled(
            &samples,
            "otelcol_processor_batch_batch_send_size_sum",
            &["processor=\"batch\""]
        ),
        507.0
    );
    let count = labelled(&samples, "otelcol_processor_batch_batch_send_size_count", &[]);
    assert!(count >= 2.0, "batches {count}");
    assert_eq!(
        labelled(
            &samples,
            "otelcol_processor_batch_batch_send_size_bucket",
            &["le=\"+Inf\""]
        ),
        count
    );
    // Every export of a batch was timed.
    assert_eq!(
        labelled(
            &samples,
            "sluice_exporter_latency_seconds_count",
            &["exporter=\"otlp\""]
        ),
        count
    );
    // Per-shard queue depth, one series per shard.
    for shard in ["shard=\"0\"", "shard=\"1\""] {
        assert!(
            samples
                .iter()
                .any(|s| s.name == "sluice_shard_queue_size" && s.labels.contains(shard)),
            "no queue depth for {shard}"
        );
    }
    // Nothing dropped, nothing left queued.
    assert_eq!(labelled(&samples, "sluice_dropped_items_total", &[]), 0.0);
    assert_eq!(labelled(&samples, "sluice_exporter_queued_items", &[]), 0.0);
    assert!(labelled(&samples, "otelcol_process_memory_rss", &[]) > 1_000_000.0);

    // The health endpoint.
    let mut h = HttpConn::connect(std::net::SocketAddr::from(([127, 0, 0, 1], health)));
    let r = h.request("GET", "/", &[], &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"status":"ok"}"#);
    assert_eq!(h.request("GET", "/nope", &[], &[]).status, 404);

    sluice.stop(Duration::from_secs(15));
}
