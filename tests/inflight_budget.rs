//! Bounded memory for unfinished requests (issue 8 item 3): with a memory
//! limiter of 200 MiB, hundreds of uploads that stop part-way (HTTP/1.1 and
//! gRPC) and HTTP/2 connections that never open their receive window keep
//! sluice's RSS at most 220 MiB while well-behaved clients on other
//! connections are served; a stalled body is cut off after `body_timeout`
//! (408 / DEADLINE_EXCEEDED) and what it held is given back; memory returns
//! when the connections close. Also (issue 9 item 6): requests refused as too
//! large are counted in `otelcol_receiver_refused_*`.

mod common;

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{stalled::*, *};
use prost::Message;

const MIB: u64 = 1 << 20;
const RSS_CAP: u64 = 220 * MIB;
/// Each stalled upload declares this much and stops before the end.
const DECLARED: usize = 20 << 20;
const SENT: usize = 4 << 20;
const CONNS: usize = 200;

fn limited_config(p: &Ports, backend: u16, tuning: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}, max_recv_msg_size_mib: 32}}
      http: {{endpoint: 127.0.0.1:{http}, max_request_body_size: 33554432}}
processors:
  memory_limiter: {{limit_mib: 200, check_interval: 100ms}}
  batch: {{send_batch_size: 8192, timeout: 100ms}}
exporters:
  otlp: {{endpoint: 127.0.0.1:{backend}, tls: {{insecure: true}}, compression: none}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp]}}
tuning: {tuning}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
    )
}

fn small_traces(seed: u64) -> Vec<u8> {
    traces_request(1, 50, seed).encode_to_vec()
}

/// Well-behaved clients on fresh connections: one gRPC and one OTLP/HTTP
/// request each must be accepted (each within `within`).
async fn good_clients_are_served(p: &Ports, seed: u64, within: Duration) {
    let mut g = GrpcConn::connect(p.grpc_addr()).await;
    let r = tokio::time::timeout(within, g.call(TRACES_PATH, &small_traces(seed), false))
        .await
        .expect("the good gRPC client was not answered in time");
    assert_eq!(r.code, 0, "good gRPC client refused: {}", r.message);
    let addr = p.http_addr();
    let body = small_traces(seed + 1);
    let resp = tokio::time::timeout(
        within,
        tokio::task::spawn_blocking(move || {
            HttpConn::connect(addr).post("/v1/traces", "application/x-protobuf", None, &body)
        }),
    )
    .await
    .expect("the good HTTP client was not answered in time")
    .unwrap();
    assert_eq!(resp.status, 200, "good HTTP client refused: {}", resp.text());
}

/// Waits until the clients' byte counters stop growing (sluice stopped
/// reading), at most `within`.
async fn wait_until_settled(stalled: &[Stalled], within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    let total = || stalled.iter().map(|s| s.sent.load(Ordering::Relaxed)).sum::<u64>();
    let mut last = total();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = total();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Waits until sluice's RSS is at most `cap`, returning the last figure.
async fn wait_rss_below(pid: u32, cap: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let (rss, _) = rss_and_peak(pid);
        if rss <= cap || Instant::now() > deadline {
            return rss;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_grpc_uploads_and_zero_window_connections_stay_within_the_limit() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&limited_config(
        &p,
        backend.port,
        "{shards: 2, shutdown_timeout: 5s, body_timeout: 60s}",
    ));
    let (base, _) = rss_and_peak(sluice.pid());

    let mut uploads = Vec::new();
    for _ in 0..CONNS {
        uploads.push(grpc_upload(p.grpc_addr(), TRACES_PATH, DECLARED, SENT).await);
    }
    let msg = Bytes::from(grpc_frame(&traces_request(1, 1, 7).encode_to_vec(), false));
    let per_conn = 100;
    let mut zero = Vec::new();
    for _ in 0..CONNS {
        zero.push(zero_window(p.grpc_addr(), TRACES_PATH, msg.clone(), per_conn).await);
    }
    // Every zero-window call gets its headers (OK whose body cannot be sent,
    // or a headers-only refusal once the connection has too many unread).
    let deadline = Instant::now() + Duration::from_secs(60);
    while zero.iter().map(|z| z.answered()).sum::<u64>() < (CONNS * per_conn) as u64 {
        assert!(Instant::now() < deadline, "zero-window calls not all answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stuck: u64 = zero.iter().map(|z| z.stuck.load(Ordering::Relaxed)).sum();
    let refused: u64 = zero.iter().map(|z| z.refused.load(Ordering::Relaxed)).sum();
    assert!(refused > 0, "connections that leave responses unread were not refused");
    let sent = wait_until_settled(&uploads, Duration::from_secs(20)).await;
    assert!(
        sent < (CONNS * SENT) as u64 / 2,
        "sluice read {sent} bytes of unfinished uploads"
    );

    good_clients_are_served(&p, 100, Duration::from_secs(10)).await;
    let (rss, peak) = rss_and_peak(sluice.pid());
    eprintln!(
        "baseline {} MiB, rss {} MiB, peak {} MiB, uploads sent {} MiB, {stuck} stuck / {refused} refused calls",
        base / MIB,
        rss / MIB,
        peak / MIB,
        sent / MIB
    );
    assert!(
        peak <= RSS_CAP,
        "peak RSS {} MiB above {} MiB",
        peak / MIB,
        RSS_CAP / MIB
    );

    // Closing the connections gives the memory back.
    drop(uploads);
    drop(zero);
    let rss = wait_rss_below(sluice.pid(), base + 48 * MIB, Duration::from_secs(10)).await;
    assert!(
        rss <= base + 48 * MIB,
        "RSS {} MiB after the connections closed (baseline {} MiB)",
        rss / MIB,
        base / MIB
    );
    good_clients_are_served(&p, 200, Duration::from_secs(10)).await;
    sluice.stop(Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_http1_uploads_stay_within_the_limit() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&limited_config(
        &p,
        backend.port,
        "{shards: 2, shutdown_timeout: 5s, body_timeout: 60s}",
    ));
    let (base, _) = rss_and_peak(sluice.pid());
    let mut uploads = Vec::new();
    for _ in 0..CONNS {
        uploads.push(http1_upload(p.http_addr(), DECLARED, SENT).await);
    }
    let sent = wait_until_settled(&uploads, Duration::from_secs(20)).await;
    good_clients_are_served(&p, 300, Duration::from_secs(10)).await;
    let (rss, peak) = rss_and_peak(sluice.pid());
    eprintln!(
        "baseline {} MiB, rss {} MiB, peak {} MiB, uploads sent {} MiB",
        base / MIB,
        rss / MIB,
        peak / MIB,
        sent / MIB
    );
    assert!(
        peak <= RSS_CAP,
        "peak RSS {} MiB above {} MiB",
        peak / MIB,
        RSS_CAP / MIB
    );
    drop(uploads);
    let rss = wait_rss_below(sluice.pid(), base + 48 * MIB, Duration::from_secs(10)).await;
    assert!(
        rss <= base + 48 * MIB,
        "RSS {} MiB after the connections closed",
        rss / MIB
    );
    sluice.stop(Duration::from_secs(20));
}

/// Many unfinished gRPC calls multiplexed on few connections (4 × 250), as
/// in the issue: bounded by the budget and the connection windows.
#[tokio::test(flavor = "multi_thread")]
async fn many_stalled_streams_on_few_connections_stay_within_the_limit() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&limited_config(
        &p,
        backend.port,
        "{shards: 2, shutdown_timeout: 5s, body_timeout: 60s}",
    ));
    let (base, _) = rss_and_peak(sluice.pid());
    let mut uploads = Vec::new();
    for _ in 0..4 {
        uploads.extend(grpc_uploads_on_one_connection(p.grpc_addr(), TRACES_PATH, 250, DECLARED, 1 << 20).await);
    }
    let sent = wait_until_settled(&uploads, Duration::from_secs(20)).await;
    good_clients_are_served(&p, 400, Duration::from_secs(10)).await;
    let (rss, peak) = rss_and_peak(sluice.pid());
    eprintln!(
        "baseline {} MiB, rss {} MiB, peak {} MiB, uploads sent {} MiB",
        base / MIB,
        rss / MIB,
        peak / MIB,
        sent / MIB
    );
    assert!(
        peak <= RSS_CAP,
        "peak RSS {} MiB above {} MiB",
        peak / MIB,
        RSS_CAP / MIB
    );
    drop(uploads);
    let rss = wait_rss_below(sluice.pid(), base + 48 * MIB, Duration::from_secs(10)).await;
    assert!(
        rss <= base + 48 * MIB,
        "RSS {} MiB after the connections closed",
        rss / MIB
    );
    sluice.stop(Duration::from_secs(20));
}

/// A budget of 4 MiB and a 1 s body timeout: a stalled 3 MiB upload holds
/// the budget, a well-behaved 3 MiB request waits for it, the stalled one is
/// cut off (408 / DEADLINE_EXCEEDED) and the waiting one is then accepted.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_time_out_and_give_back_the_budget() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let cfg = config_yaml(
        &p,
        ", max_recv_msg_size_mib: 8",
        ", max_request_body_size: 8388608",
        &format!(
            "  otlp: {{endpoint: 127.0.0.1:{}, tls: {{insecure: true}}, compression: none}}",
            backend.port
        ),
        "[otlp]",
        "{shards: 1, shutdown_timeout: 5s, inflight_budget_mib: 4, body_timeout: 1s}",
    );
    let mut sluice = Sluice::start(&cfg);
    // About 3 MiB of spans.
    let big = traces_request(3, 2800, 9).encode_to_vec();
    assert!(big.len() > 2 << 20 && big.len() < 4 << 20, "{}", big.len());
    let within = Duration::from_secs(10);

    // gRPC: the stalled call gets DEADLINE_EXCEEDED.
    let mut stalled = grpc_upload(p.grpc_addr(), TRACES_PATH, 3 << 20, 1 << 20).await;
    wait_sent(&stalled, 1 << 20).await;
    let started = Instant::now();
    let mut good = GrpcConn::connect(p.grpc_addr()).await;
    let r = tokio::time::timeout(within, good.call(TRACES_PATH, &big, false))
        .await
        .expect("waiting gRPC call not answered");
    assert_eq!(r.code, 0, "the waiting call was refused: {}", r.message);
    assert_eq!(stalled.answer(within).await, Ok((200, Some(4))), "stalled gRPC call");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the budget was not held"
    );

    // HTTP/1.1: the stalled upload gets 408.
    let mut stalled = http1_upload(p.http_addr(), 3 << 20, 1 << 20).await;
    wait_sent(&stalled, 1 << 20).await;
    let addr = p.http_addr();
    let body = big.clone();
    let resp = tokio::task::spawn_blocking(move || {
        HttpConn::connect(addr).post("/v1/traces", "application/x-protobuf", None, &body)
    })
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "the waiting request was refused: {}", resp.text());
    assert_eq!(stalled.answer(within).await, Ok((408, None)), "stalled HTTP/1.1 upload");

    // Both stalled requests count as refused; both good ones arrive.
    backend.expect_counts(2 * 8400, 0, 0, within).await;
    let s = scrape_samples(p.metrics_addr());
    assert_eq!(
        labelled(&s, "otelcol_receiver_refused_spans_total", &["transport=\"grpc\""]),
        1.0
    );
    assert_eq!(
        labelled(&s, "otelcol_receiver_refused_spans_total", &["transport=\"http\""]),
        1.0
    );
    sluice.stop(Duration::from_secs(20));
}

/// A slow upload that keeps trickling holds the budget; a request that finds
/// no room for twice `body_timeout` gets the retryable refusal (gRPC
/// RESOURCE_EXHAUSTED with RetryInfo, HTTP 429 with Retry-After), counted.
#[tokio::test(flavor = "multi_thread")]
async fn no_room_in_the_budget_gets_the_retryable_refusal() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let cfg = config_yaml(
        &p,
        ", max_recv_msg_size_mib: 8",
        ", max_request_body_size: 8388608",
        &format!(
            "  otlp: {{endpoint: 127.0.0.1:{}, tls: {{insecure: true}}, compression: none}}",
            backend.port
        ),
        "[otlp]",
        "{shards: 1, shutdown_timeout: 5s, inflight_budget_mib: 4, body_timeout: 1s}",
    );
    let mut sluice = Sluice::start(&cfg);
    let big = traces_request(3, 2800, 9).encode_to_vec();
    let slow = grpc_trickle(p.grpc_addr(), TRACES_PATH, 3 << 20, 1 << 20, Duration::from_millis(200)).await;
    wait_sent(&slow, 1 << 20).await;

    let started = Instant::now();
    let mut g = GrpcConn::connect(p.grpc_addr()).await;
    let r = g.call(TRACES_PATH, &big, false).await;
    assert_eq!(r.code, 8, "{}", r.message);
    assert!(r.message.contains("in-flight budget"), "{}", r.message);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "refused before waiting"
    );
    let addr = p.http_addr();
    let resp = tokio::task::spawn_blocking(move || {
        HttpConn::connect(addr).post("/v1/traces", "application/x-protobuf", None, &big)
    })
    .await
    .unwrap();
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert!(resp.header("retry-after").is_some());
    // Small requests still have their share.
    let mut g2 = GrpcConn::connect(p.grpc_addr()).await;
    let r = g2.call(TRACES_PATH, &small_traces(3), false).await;
    assert_eq!(r.code, 0, "{}", r.message);
    let s = scrape_samples(p.metrics_addr());
    assert_eq!(
        labelled(&s, "otelcol_receiver_refused_spans_total", &["transport=\"grpc\""]),
        1.0
    );
    assert_eq!(
        labelled(&s, "otelcol_receiver_refused_spans_total", &["transport=\"http\""]),
        1.0
    );
    drop(slow);
    sluice.stop(Duration::from_secs(20));
}

async fn wait_sent(s: &Stalled, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.sent.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "the client could not send {n} bytes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 9 item 6: too-large requests are refused without RetryInfo / with
/// 413, and counted in `otelcol_receiver_refused_*`.
#[tokio::test(flavor = "multi_thread")]
async fn too_large_requests_are_counted_as_refused() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let cfg = config_yaml(
        &p,
        ", max_recv_msg_size_mib: 1",
        ", max_request_body_size: 1048576",
        &format!(
            "  otlp: {{endpoint: 127.0.0.1:{}, tls: {{insecure: true}}, compression: none}}",
            backend.port
        ),
        "[otlp]",
        "{shards: 1, shutdown_timeout: 5s}",
    );
    let mut sluice = Sluice::start(&cfg);
    let big = traces_request(2, 3000, 5).encode_to_vec();
    assert!(big.len() > 1 << 20);
    let mut g = GrpcConn::connect(p.grpc_addr()).await;
    let r = g.call(TRACES_PATH, &big, false).await;
    assert_eq!(r.code, 8, "{}", r.message);
    assert!(r.message.contains("max_recv_msg_size"), "{}", r.message);
    // A gzip bomb: small on the wire, too large decompressed.
    let r = g.call(TRACES_PATH, &vec![0u8; 4 << 20], true).await;
    assert_eq!(r.code, 8, "{}", r.message);
    let addr = p.http_addr();
    let body = big.clone();
    let resp = tokio::task::spawn_blocking(move || {
        let mut c = HttpConn::connect(addr);
        let a = c.post("/v1/traces", "application/x-protobuf", None, &body);
        let b = c.post(
            "/v1/traces",
            "application/x-protobuf",
            Some("gzip"),
            &gzip(&vec![0u8; 4 << 20]),
        );
        (a, b)
    })
    .await
    .unwrap();
    assert_eq!(resp.0.status, 413, "{}", resp.0.text());
    assert_eq!(resp.1.status, 413, "{}", resp.1.text());
    assert!(resp.0.header("retry-after").is_none());
    let s = scrape_samples(p.metrics_addr());
    assert_eq!(
        labelled(&s, "otelcol_receiver_refused_spans_total", &["transport=\"grpc\""]),
        2.0
    );
    assert_eq!(
        labelled(&s, "otelcol_receiver_refused_spans_total", &["transport=\"http\""]),
        2.0
    );
    assert_eq!(labelled(&s, "otelcol_receiver_accepted_spans_total", &[]), 0.0);
    sluice.stop(Duration::from_secs(20));
}
