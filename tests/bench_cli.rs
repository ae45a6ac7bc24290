//! `sluice bench` drives a real OTLP endpoint: every request is checked, the
//! summary's counts match what the collector accepted (its own metrics), and
//! failures are reported by code.

mod common;

use std::process::Command;

use common::*;

fn config(p: &Ports) -> String {
    // Traces and metrics pipelines only: logs requests are answered UNIMPLEMENTED / 404.
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
processors:
  batch: {{}}
exporters:
  nop:
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [nop]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [nop]}}
tuning: {{shards: 1}}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
    )
}

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).expect("a JSON summary")
}

#[test]
fn bench_counts_match_what_the_collector_accepted() {
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p));
    let grpc = p.grpc_addr().to_string();
    let s = bench(&[
        "--endpoint",
        &grpc,
        "--requests",
        "300",
        "--connections",
        "3",
        "--streams",
        "8",
        "--items-per-request",
        "50",
    ]);
    assert_eq!(s["ok_requests"], 300, "{s}");
    assert_eq!(s["ok_items"], 15_000, "{s}");
    assert_eq!(s["failed_requests"], 0, "{s}");
    assert!(s["p99_us"].as_u64().unwrap() >= s["p50_us"].as_u64().unwrap());

    let http = format!("http://{}", p.http_addr());
    let s = bench(&[
        "--endpoint",
        &http,
        "--protocol",
        "http",
        "--signal",
        "metrics",
        "--requests",
        "120",
        "--connections",
        "2",
        "--streams",
        "3",
        "--items-per-request",
        "40",
    ]);
    assert_eq!(s["ok_requests"], 120, "{s}");
    assert_eq!(s["ok_items"], 4_800, "{s}");

    let m = scrape(p.metrics_addr());
    assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total"), 15_000.0);
    assert_eq!(metric(&m, "otelcol_receiver_accepted_metric_points_total"), 4_800.0);
    sluice.stop(std::time::Duration::from_secs(15));
}

#[test]
fn bench_reports_failures_by_code() {
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p));
    let grpc = p.grpc_addr().to_string();
    let s = bench(&[
        "--endpoint",
        &grpc,
        "--signal",
        "logs",
        "--requests",
        "40",
        "--connections",
        "1",
        "--streams",
        "4",
    ]);
    assert_eq!(s["ok_requests"], 0, "{s}");
    assert_eq!(s["failures"]["grpc_Unimplemented"], 40, "{s}");

    let http = format!("http://{}", p.http_addr());
    let s = bench(&[
        "--endpoint",
        &http,
        "--protocol",
        "http",
        "--signal",
        "logs",
        "--requests",
        "10",
        "--connections",
        "1",
        "--streams",
        "2",
    ]);
    assert_eq!(s["failures"]["http_404"], 10, "{s}");
    sluice.stop(std::time::Duration::from_secs(15));

    // Nothing listening: a clear error, exit code 1.
    let out = Command::new(BIN)
        .args([
            "bench",
            "--endpoint",
            &grpc,
            "--requests",
            "5",
            "--connections",
            "1",
            "--streams",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no connection"), "{stderr}");
}
