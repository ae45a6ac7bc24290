//! Reliable export against real sluice processes: retry with backoff through a
//! backend outage, the circuit breaker, server retry hints, and permanent
//! errors that must not be retried.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::*;

/// A one-shard config forwarding over gRPC to `port` with the given extra
/// exporter settings (e.g. `, retry_on_failure: {...}`).
fn config(p: &Ports, port: u16, extra: &str) -> String {
    config_yaml(
        p,
        "",
        "",
        &format!("  otlp: {{endpoint: 127.0.0.1:{port}, tls: {{insecure: true}}, compression: none{extra}}}"),
        "[otlp]",
        "{shards: 1}",
    )
}

async fn send_traces(p: &Ports, seeds: std::ops::Range<u64>) -> BTreeSet<String> {
    let mut g = GrpcConn::connect(p.grpc_addr()).await;
    let mut ids = BTreeSet::new();
    for seed in seeds {
        let req = traces_request(2, 5, seed);
        ids.extend(request_span_ids(&req));
        let r = g.call(TRACES_PATH, &prost::Message::encode_to_vec(&req), false).await;
        assert_eq!(r.code, 0, "request {seed} refused: {}", r.message);
    }
    ids
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn gaps_ms(times: &[std::time::Instant]) -> Vec<u128> {
    times.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_then_recovery_delivers_every_span_with_backoff() {
    let port = free_port();
    let dead = DeadPort::start(port).await;
    let p = Ports::new();
    let retry = ", sending_queue: {num_consumers: 1}, retry_on_failure: {initial_interval: 200ms, max_interval: 800ms, multiplier: 2, randomization_factor: 0, max_elapsed_time: 0}";
    let sluice = Sluice::start(&config(&p, port, retry));
    let sent = send_traces(&p, 0..6).await;
    // Six attempts take 200 + 400 + 800 + 800 + 800 ms of backoff; allow a
    // loaded machine several times that.
    let six = wait_until(Duration::from_secs(20), || dead.times().len() >= 6).await;
    let times = dead.times();
    dead.stop().await;
    // One batch is in flight at a time; its attempts follow 200, 400, 800, 800... ms.
    let gaps = gaps_ms(&times);
    assert!(six, "attempts during the outage: {} (gaps {gaps:?})", times.len());
    for (i, g) in gaps.iter().enumerate() {
        let expected = (200u128 << i.min(3)).min(800);
        assert!(
            *g + 30 >= expected,
            "gap {i} was {g} ms, backoff says {expected} ms (all: {gaps:?})"
        );
    }
    let backend = Backend::start_on(port).await;
    let ok = backend
        .wait_for(Duration::from_secs(20), |b| received_ids(b).len() >= sent.len())
        .await;
    assert!(
        ok,
        "only {} of {} spans arrived",
        received_ids(&backend).len(),
        sent.len()
    );
    assert_eq!(received_ids(&backend), sent);
    let m = scrape(p.metrics_addr());
    assert!(metric(&m, "sluice_exporter_retries_total") >= 3.0);
    assert_eq!(metric(&m, "otelcol_exporter_send_failed_spans_total"), 0.0);
    drop(sluice);
}

#[tokio::test(flavor = "multi_thread")]
async fn circuit_breaker_stops_attempts_until_recovery_timeout_then_probes_once() {
    let port = free_port();
    let dead = DeadPort::start(port).await;
    let p = Ports::new();
    let extra = ", sending_queue: {num_consumers: 1}, retry_on_failure: {initial_interval: 100ms, max_interval: 100ms, multiplier: 1, randomization_factor: 0, max_elapsed_time: 0}, circuit_breaker: {enabled: true, failure_threshold: 3, recovery_timeout: 2s}";
    let sluice = Sluice::start(&config(&p, port, extra));
    let sent = send_traces(&p, 0..3).await;
    // Threshold reached after 3 quick attempts; then silence for 2 s.
    let three = wait_until(Duration::from_secs(10), || dead.times().len() >= 3).await;
    assert!(three, "expected 3 attempts, got {}", dead.times().len());
    let open = wait_until(Duration::from_secs(10), || {
        let samples = scrape_samples(p.metrics_addr());
        labelled(
            &samples,
            "sluice_exporter_circuit_state",
            &["exporter=\"otlp\"", "shard=\"0\""],
        ) == 1.0
    })
    .await;
    assert!(open, "breaker should be open");
    // One probe after the recovery timeout (2 s); it fails and the breaker
    // reopens, so the next probe is another 2 s later.
    let probed = wait_until(Duration::from_secs(20), || dead.times().len() >= 5).await;
    let times = dead.times();
    dead.stop().await;
    let gaps = gaps_ms(&times);
    assert!(probed, "attempts: {} (gaps {gaps:?})", times.len());
    for g in &gaps[2..4] {
        assert!(
            *g >= 1950,
            "attempt {g} ms after the previous one while open (gaps {gaps:?})"
        );
    }
    // The backend comes back: the next probe carries the batch and closes the breaker.
    let backend = Backend::start_on(port).await;
    let ok = backend
        .wait_for(Duration::from_secs(15), |b| received_ids(b).len() >= sent.len())
        .await;
    assert!(ok, "spans did not arrive after recovery");
    assert_eq!(received_ids(&backend), sent);
    assert_eq!(backend.attempts(), 1, "exactly one probe reaches the recovered backend");
    // The response may still be on its way back to sluice: poll for the close.
    let mut state = -1.0;
    wait_until(Duration::from_secs(20), || {
        let samples = scrape_samples(p.metrics_addr());
        state = labelled(&samples, "sluice_exporter_circuit_state", &["exporter=\"otlp\""]);
        state == 0.0
    })
    .await;
    assert_eq!(state, 0.0, "breaker should be closed after a successful probe");
    // Normal flow again.
    let more = send_traces(&p, 100..103).await;
    let ok = backend
        .wait_for(Duration::from_secs(10), |b| {
            received_ids(b).len() >= sent.len() + more.len()
        })
        .await;
    assert!(ok, "normal flow did not resume");
    drop(sluice);
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_errors_are_not_retried_and_are_counted() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let retry = ", retry_on_failure: {initial_interval: 100ms, max_interval: 100ms, randomization_factor: 0}";
    let sluice = Sluice::start(&config(&p, backend.port, retry));
    let mut spans = 0.0;
    for (i, code) in [
        tonic::Code::InvalidArgument,
        tonic::Code::ResourceExhausted,
        tonic::Code::PermissionDenied,
    ]
    .into_iter()
    .enumerate()
    {
        backend.set_mode(Mode::Fail(code));
        let before = backend.attempts();
        let sent = send_traces(&p, i as u64..i as u64 + 1).await;
        spans += sent.len() as f64;
        assert!(
            backend
                .wait_for(Duration::from_secs(10), |b| b.attempts() > before)
                .await,
            "no attempt for {code:?}"
        );
        // Not a synchronisation: a window of 10 retry intervals in which a
        // retry would have shown up (load only makes retries rarer).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            backend.attempts(),
            before + 1,
            "{code:?} must be attempted exactly once"
        );
        let m = scrape(p.metrics_addr());
        assert_eq!(
            metric(&m, "otelcol_exporter_send_failed_spans_total"),
            spans,
            "{code:?}"
        );
        assert_eq!(metric(&m, "sluice_exporter_permanent_errors_total"), (i + 1) as f64);
        assert_eq!(metric(&m, "sluice_exporter_retries_total"), 0.0);
    }
    assert_eq!(backend.span_count(), 0);
    drop(sluice);
}

#[tokio::test(flavor = "multi_thread")]
async fn retryable_codes_are_retried_and_retry_info_is_honoured() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let retry = ", sending_queue: {num_consumers: 1}, retry_on_failure: {initial_interval: 50ms, max_interval: 50ms, randomization_factor: 0, max_elapsed_time: 0}";
    let sluice = Sluice::start(&config(&p, backend.port, retry));
    // RESOURCE_EXHAUSTED is retryable only with RetryInfo; UNAVAILABLE always.
    backend.set_mode(Mode::FailWithRetryInfo(Duration::from_millis(700)));
    let sent = send_traces(&p, 0..2).await;
    assert!(backend.wait_for(Duration::from_secs(10), |b| b.attempts() >= 1).await);
    let t0 = std::time::Instant::now();
    let a1 = backend.attempts();
    assert!(
        backend
            .wait_for(Duration::from_secs(10), |b| b.attempts() >= a1 + 2)
            .await
    );
    let hinted = backend.attempts();
    let took = t0.elapsed();
    // Attempt a1 + 1 came after t0, and a1 + 2 at least one hint later. With
    // the 50 ms backoff alone that would be ~50 ms; the 700 ms hint (longer
    // than max_interval, but honoured in full up to 30 s) makes it >= 700 ms.
    assert!(
        took >= Duration::from_millis(690),
        "attempts {a1} to {hinted} within {took:?} despite a 700 ms RetryInfo"
    );
    backend.set_mode(Mode::Fail(tonic::Code::Unavailable));
    let plain = backend
        .wait_for(Duration::from_secs(10), |b| b.attempts() >= hinted + 6)
        .await;
    assert!(
        plain,
        "UNAVAILABLE without a hint retried only {} times",
        backend.attempts() - hinted
    );
    backend.set_mode(Mode::Ok);
    let ok = backend
        .wait_for(Duration::from_secs(10), |b| received_ids(b).len() >= sent.len())
        .await;
    assert!(ok);
    assert_eq!(received_ids(&backend), sent);
    let m = scrape(p.metrics_addr());
    assert_eq!(metric(&m, "otelcol_exporter_send_failed_spans_total"), 0.0);
    assert_eq!(metric(&m, "sluice_exporter_permanent_errors_total"), 0.0);
    drop(sluice);
}
