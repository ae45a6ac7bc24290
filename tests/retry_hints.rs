//! Issue 8 item 2: absurd server retry hints (gRPC `RetryInfo`, HTTP
//! `Retry-After`) must not crash sluice. Each hint is capped at the
//! exporter's `max_interval`; the batch keeps being retried and is delivered
//! once the backend accepts, or is accounted for at shutdown.

mod common;

use std::time::Duration;

use common::hint_backend::{Hint, HintBackend};
use common::*;

#[derive(Clone, Copy, Debug)]
enum Proto {
    Grpc,
    Http,
}

/// One shard, `consumers` concurrent exports, batches of exactly one 10-span
/// request, the given retry settings.
fn config(p: &Ports, proto: Proto, port: u16, consumers: usize, retry: &str) -> String {
    let queue = format!("sending_queue: {{num_consumers: {consumers}}}");
    let (name, exporter) = match proto {
        Proto::Grpc => (
            "otlp",
            format!(
                "  otlp: {{endpoint: 127.0.0.1:{port}, tls: {{insecure: true}}, compression: none, {queue}{retry}}}"
            ),
        ),
        Proto::Http => (
            "otlphttp",
            format!("  otlphttp: {{endpoint: http://127.0.0.1:{port}, compression: none, {queue}{retry}}}"),
        ),
    };
    config_yaml(
        p,
        "",
        "",
        &exporter,
        &format!("[{name}]"),
        "{shards: 1, shutdown_timeout: 2s}",
    )
    .replace(
        "send_batch_size: 8192, timeout: 200ms",
        "send_batch_size: 10, timeout: 50ms",
    )
}

fn grpc(code: tonic::Code, seconds: i64, nanos: i32) -> Hint {
    Hint::Grpc { code, seconds, nanos }
}

fn http(status: u16, retry_after: &'static str) -> Hint {
    Hint::Http { status, retry_after }
}

/// Every absurd hint we can think of, per protocol.
fn absurd_hints(proto: Proto) -> Vec<Hint> {
    use tonic::Code::{ResourceExhausted, Unavailable};
    match proto {
        Proto::Grpc => vec![
            // 2^63 - 1 s, as filed.
            grpc(Unavailable, i64::MAX, 0),
            grpc(Unavailable, i64::MAX, 999_999_999),
            // nanos past one second carry into the seconds.
            grpc(Unavailable, i64::MAX, i32::MAX),
            // RESOURCE_EXHAUSTED is retryable only because of the hint.
            grpc(ResourceExhausted, i64::MAX, 0),
            grpc(Unavailable, -1, -1),
            grpc(Unavailable, i64::MIN, i32::MIN),
            grpc(Unavailable, u32::MAX as i64 * 1000, 0),
        ],
        Proto::Http => vec![
            http(503, "18446744073709551615"),
            http(429, "18446744073709551616"),
            http(503, "99999999999999999999999999999999999999"),
            http(503, "Fri, 31 Dec 9999 23:59:59 GMT"),
            http(429, "-1"),
            http(503, "soon"),
            http(503, "Thu, 01 Jan 1970 00:00:00 GMT"),
        ],
    }
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

fn traces(seed: u64) -> Vec<u8> {
    prost::Message::encode_to_vec(&traces_request(2, 5, seed))
}

/// Sends one 10-span batch per absurd hint, all exported at once; each
/// batch's first attempt is refused with one of the hints, later attempts are
/// accepted. A hint waits at most 30 s (the cap), so everything arrives
/// after about 30 s.
async fn absurd_hints_delivered(proto: Proto, retry: &'static str) {
    let hints = absurd_hints(proto);
    let n = hints.len() as u64;
    let backend = match proto {
        Proto::Grpc => HintBackend::grpc(hints).await,
        Proto::Http => HintBackend::http(hints).await,
    };
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, proto, backend.port, n as usize + 1, retry));
    let mut c = GrpcConn::connect(p.grpc_addr()).await;
    for seed in 0..n {
        let r = c.call(TRACES_PATH, &traces(seed), false).await;
        assert_eq!(r.code, 0, "{}", r.message);
    }
    // One capped hint (30 s), plus a generous allowance for a loaded machine.
    let budget = Duration::from_secs(30 + 30);
    let delivered = backend.wait_for(budget, |b| b.spans() >= 10 * n).await;
    assert!(
        delivered,
        "{proto:?} {retry}: {} of {} spans delivered after {} attempts ({} hints left); running: {}; stderr:\n{}",
        backend.spans(),
        10 * n,
        backend.attempts(),
        backend.hints_left(),
        sluice.is_running(),
        sluice.stderr_text()
    );
    assert!(sluice.is_running(), "{proto:?}: sluice died");
    assert_eq!(backend.spans(), 10 * n);
    assert_eq!(backend.hints_left(), 0);
    // The last answers may still be on their way back to sluice.
    let want = (10 * n) as f64;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut m = scrape(p.metrics_addr());
    while metric(&m, "otelcol_exporter_sent_spans_total") < want && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = scrape(p.metrics_addr());
    }
    assert_eq!(metric(&m, "otelcol_exporter_sent_spans_total"), want);
    assert!(metric(&m, "sluice_exporter_retries_total") >= n as f64);
    assert_eq!(metric(&m, "otelcol_exporter_send_failed_spans_total"), 0.0);
    sluice.stop(Duration::from_secs(10));
}

const FOREVER: &str = ", retry_on_failure: {initial_interval: 50ms, max_interval: 300ms, max_elapsed_time: 0s}";
// Collector defaults (max_elapsed_time 300 s, multiplier 1.5, jitter 0.5)
// with short intervals.
const DEFAULTS_SHORT: &str = ", retry_on_failure: {initial_interval: 50ms, max_interval: 300ms}";

#[tokio::test(flavor = "multi_thread")]
async fn grpc_absurd_retry_info_is_capped_and_delivered() {
    tokio::join!(
        absurd_hints_delivered(Proto::Grpc, FOREVER),
        absurd_hints_delivered(Proto::Grpc, DEFAULTS_SHORT)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_absurd_retry_after_is_capped_and_delivered() {
    tokio::join!(
        absurd_hints_delivered(Proto::Http, FOREVER),
        absurd_hints_delivered(Proto::Http, DEFAULTS_SHORT)
    );
}

/// With the default retry settings (5 s initial, 30 s max interval) and the
/// README agent's `max_elapsed_time: 0s`, a backend that always answers
/// with a 2^63 s hint: sluice schedules the retry (it used to panic right
/// here), stays up, and at shutdown reports the batch as undelivered.
async fn huge_hint_with_default_intervals(proto: Proto, max_elapsed: &str) {
    let backend = match proto {
        Proto::Grpc => HintBackend::grpc(Vec::new()).await,
        Proto::Http => HintBackend::http(Vec::new()).await,
    };
    backend.refuse_forever(match proto {
        Proto::Grpc => grpc(tonic::Code::Unavailable, i64::MAX, 0),
        Proto::Http => http(503, "18446744073709551615"),
    });
    let p = Ports::new();
    let mut sluice = Sluice::start(&config(&p, proto, backend.port, 1, max_elapsed));
    let mut c = GrpcConn::connect(p.grpc_addr()).await;
    let r = c.call(TRACES_PATH, &traces(7), false).await;
    assert_eq!(r.code, 0, "{}", r.message);
    // The batch leaves after the batch timeout (200 ms) and is refused once.
    assert!(backend.wait_for(Duration::from_secs(15), |b| b.attempts() >= 1).await);
    let retried = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let m = scrape(p.metrics_addr());
            if metric(&m, "sluice_exporter_retries_total") >= 1.0 {
                return Some(m);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let m = retried
        .await
        .unwrap_or_else(|| panic!("{proto:?}: no retry scheduled; stderr:\n{}", sluice.stderr_text()));
    // Retrying, not given up: the capped hint (30 s) fits in any max_elapsed_time.
    assert_eq!(metric(&m, "otelcol_exporter_send_failed_spans_total"), 0.0);
    assert!(
        sluice.is_running(),
        "{proto:?}: sluice died; stderr:\n{}",
        sluice.stderr_text()
    );
    // The retry wait (up to 30 s) ends at the shutdown deadline (2 s).
    let t0 = std::time::Instant::now();
    sluice.stop(Duration::from_secs(15));
    assert!(
        t0.elapsed() < Duration::from_secs(12),
        "shutdown took {:?}",
        t0.elapsed()
    );
    let log = strip_ansi(&sluice.stderr_text());
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("acknowledged items undelivered") && log.contains("traces=10"),
        "{proto:?}: the 10 spans are not reported undelivered:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_huge_retry_info_default_intervals_agent_config() {
    huge_hint_with_default_intervals(Proto::Grpc, ", retry_on_failure: {max_elapsed_time: 0s}").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_huge_retry_info_all_defaults() {
    huge_hint_with_default_intervals(Proto::Grpc, "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_huge_retry_after_default_intervals_agent_config() {
    huge_hint_with_default_intervals(Proto::Http, ", retry_on_failure: {max_elapsed_time: 0s}").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_huge_retry_after_all_defaults() {
    huge_hint_with_default_intervals(Proto::Http, "").await;
}
